//! Accepting a guest's output files. *Security invariant:* a guest can never make the node
//! touch a host path outside that VM's workspace directory: every reported path must be a VM
//! path under `/workspace/` (no `.`/`..`/empty parts), no component on the host may be a
//! symlink, the file must be regular and within the size limit, and its BLAKE3 is recomputed
//! by the node (the guest's checksum is only compared, never trusted).

use std::path::{Path, PathBuf};

use crate::tx::Hash;
use crate::validate::{WORKSPACE, vm_path_problem};

/// An output file the node accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcceptedOutput {
    /// The path the guest reported, e.g. `/workspace/proof.dat`.
    pub vm_path: String,
    /// Where it is on the host (inside the VM's workspace directory).
    pub host_path: PathBuf,
    pub checksum: Hash,
    pub size: u64,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum OutputError {
    #[error("output {path:?} refused: {reason}")]
    BadPath { path: String, reason: String },
    #[error("output {path} is missing from the workspace")]
    Missing { path: String },
    #[error("output {path} is {size} bytes, over the limit of {max}")]
    TooLarge { path: String, size: u64, max: u64 },
    #[error(
        "output {path} refused: the guest reported checksum {reported}, but the file's BLAKE3 is {actual}"
    )]
    ChecksumMismatch {
        path: String,
        reported: String,
        actual: String,
    },
}

/// Checks one reported output against the VM's workspace directory (`workspace` is the host
/// directory shared as `/workspace`).
pub fn accept(
    workspace: &Path,
    vm_path: &str,
    reported_checksum: &[u8],
    max_bytes: u64,
) -> Result<AcceptedOutput, OutputError> {
    let bad = |reason: &str| OutputError::BadPath {
        path: vm_path.chars().take(200).collect(),
        reason: reason.to_string(),
    };
    if let Some(problem) = vm_path_problem(vm_path) {
        return Err(bad(problem));
    }
    let relative = &vm_path[WORKSPACE.len() + 1..];
    let mut host = workspace.to_path_buf();
    for part in relative.split('/') {
        host.push(part);
        let meta = std::fs::symlink_metadata(&host).map_err(|_| OutputError::Missing {
            path: vm_path.to_string(),
        })?;
        if meta.file_type().is_symlink() {
            return Err(bad("a symbolic link; outputs must be regular files"));
        }
    }
    let meta = std::fs::metadata(&host).map_err(|_| OutputError::Missing {
        path: vm_path.to_string(),
    })?;
    if !meta.is_file() {
        return Err(bad("not a regular file"));
    }
    if meta.len() > max_bytes {
        return Err(OutputError::TooLarge {
            path: vm_path.to_string(),
            size: meta.len(),
            max: max_bytes,
        });
    }
    let (actual, _) = Hash::blake3_of_file(&host).map_err(|_| OutputError::Missing {
        path: vm_path.to_string(),
    })?;
    if reported_checksum != actual.0 {
        return Err(OutputError::ChecksumMismatch {
            path: vm_path.to_string(),
            reported: hex::encode(reported_checksum),
            actual: actual.to_hex(),
        });
    }
    Ok(AcceptedOutput {
        vm_path: vm_path.to_string(),
        host_path: host,
        checksum: actual,
        size: meta.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_inside_the_workspace_with_the_right_checksum() {
        let tmp = tempfile::tempdir().expect("tmp");
        let ws = tmp.path().join("workspace");
        std::fs::create_dir_all(ws.join("out")).expect("mkdir");
        std::fs::write(ws.join("out/proof.dat"), b"proof").expect("write");
        std::fs::write(tmp.path().join("node.key"), b"secret").expect("write");
        std::os::unix::fs::symlink(tmp.path().join("node.key"), ws.join("link")).expect("symlink");
        std::os::unix::fs::symlink(tmp.path(), ws.join("dir-link")).expect("symlink");
        let sum = blake3::hash(b"proof");
        let ok = accept(&ws, "/workspace/out/proof.dat", sum.as_bytes(), 1024).expect("accepted");
        assert_eq!(ok.checksum.0, *sum.as_bytes());
        assert_eq!(ok.host_path, ws.join("out/proof.dat"));

        for path in [
            "../../etc/passwd",
            "/etc/passwd",
            "/workspace/../node.key",
            "/workspace/./x",
            "/workspace",
        ] {
            assert!(
                matches!(
                    accept(&ws, path, &[0; 32], 1024),
                    Err(OutputError::BadPath { .. })
                ),
                "{path}"
            );
        }
        let key_sum = blake3::hash(b"secret");
        for path in ["/workspace/link", "/workspace/dir-link/node.key"] {
            assert!(
                matches!(
                    accept(&ws, path, key_sum.as_bytes(), 1024),
                    Err(OutputError::BadPath { .. })
                ),
                "{path}"
            );
        }
        assert!(matches!(
            accept(&ws, "/workspace/out", &[0; 32], 1024),
            Err(OutputError::BadPath { .. })
        ));
        assert!(matches!(
            accept(&ws, "/workspace/nope", &[0; 32], 1024),
            Err(OutputError::Missing { .. })
        ));
        assert!(matches!(
            accept(&ws, "/workspace/out/proof.dat", &[0; 32], 1024),
            Err(OutputError::ChecksumMismatch { .. })
        ));
        assert!(matches!(
            accept(&ws, "/workspace/out/proof.dat", sum.as_bytes(), 3),
            Err(OutputError::TooLarge { .. })
        ));
        assert_eq!(
            std::fs::read(tmp.path().join("node.key")).expect("read"),
            b"secret"
        );
    }
}
