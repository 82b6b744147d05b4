//! The data directory's layout, named once. Every path below it is built here, from values that
//! validation already confined (hashes, plain file names, VM paths under `/workspace/`), and
//! `DataDir::served` maps a download path onto the disk only when each segment is safe.
//!
//! ```text
//! <data>/
//!   content/<blake3>                         downloaded and uploaded content, once per checksum
//!   images/<program hash>/<image file name>  program images, as the download server serves them
//!   txfiles/<run hash>/<vm path>             a Run's input files
//!   txfiles/<result hash>/<blake3>/<name>    output files of Proofs and Verifications
//!   txfiles/<blake3>/<name>                  operator uploads
//!   tmp/.<prefix>-<random>                   files being written (never served: dot-prefixed)
//!   vms/<vm name>/                           one directory per running VM
//!   log/                                     logs (unless GEVULOT_LOG_DIRECTORY says otherwise)
//!   node.key, gevulot.db                     the default node key and SQLite database
//! ```

use std::path::{Path, PathBuf};

use crate::tx::Hash;

/// The node's data directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataDir {
    root: PathBuf,
}

/// What one area of the data directory holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AreaUse {
    /// `content`, `images`, `txfiles`, `tmp`, `vms`, `log` or `database`.
    pub area: &'static str,
    pub path: PathBuf,
    /// Bytes of the regular files in it (a symbolic link counts as itself, never what it names;
    /// a file hard-linked into two areas counts in each).
    pub bytes: u64,
    pub files: u64,
}

/// The two trees the download server serves.
pub const SERVED_TREES: [&str; 2] = ["images", "txfiles"];

/// The size of the data directory's filesystem and the space in it that the node may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Space {
    pub size_bytes: u64,
    /// Free to an unprivileged writer (what `df` shows as available).
    pub free_bytes: u64,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// What is wrong when the data filesystem has less than `floor` bytes free (`None` when it
    /// has enough, when `floor` is 0, or when the space cannot be read: nothing is held back on a
    /// guess).
    pub fn below_floor(&self, floor: u64) -> Option<String> {
        if floor == 0 {
            return None;
        }
        self.under_floor(&self.space().ok()?, floor)
    }

    /// What is wrong when `space` (read from this directory's filesystem) has less than `floor`
    /// bytes free.
    pub fn under_floor(&self, space: &Space, floor: u64) -> Option<String> {
        (space.free_bytes < floor).then(|| {
            format!(
                "the data filesystem ({}) has {} MiB free, under the floor of {} MiB (GEVULOT_MIN_FREE_MB): new downloads and VMs wait until space is freed",
                self.root.display(),
                space.free_bytes >> 20,
                floor >> 20
            )
        })
    }

    /// The size and free space of the filesystem holding the data directory.
    pub fn space(&self) -> std::io::Result<Space> {
        let s = nix::sys::statvfs::statvfs(&self.root).map_err(std::io::Error::from)?;
        let fragment = s.fragment_size();
        Ok(Space {
            size_bytes: s.blocks().saturating_mul(fragment),
            free_bytes: s.blocks_available().saturating_mul(fragment),
        })
    }

    /// Downloaded and uploaded content by checksum.
    pub fn content(&self) -> PathBuf {
        self.root.join("content")
    }

    pub fn content_file(&self, checksum: &Hash) -> PathBuf {
        self.content().join(checksum.to_hex())
    }

    /// Files being written; their names start with a dot.
    pub fn tmp(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// A fresh dot-prefixed name under [`DataDir::tmp`].
    pub fn temp_file(&self, prefix: &str) -> PathBuf {
        let mut suffix = [0u8; 8];
        // Without randomness the name still differs by time and process.
        if getrandom::fill(&mut suffix).is_err() {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            suffix = (nanos as u64 ^ u64::from(std::process::id())).to_le_bytes();
        }
        self.tmp()
            .join(format!(".{prefix}-{}", hex::encode(suffix)))
    }

    /// Where the download server serves a program's image.
    pub fn image(&self, program: &Hash, file_name: &str) -> PathBuf {
        self.root
            .join("images")
            .join(program.to_hex())
            .join(file_name)
    }

    /// Where the download server serves a Run's input file (a VM path under `/workspace/`).
    pub fn run_input(&self, run: &Hash, vm_path: &str) -> PathBuf {
        self.root
            .join("txfiles")
            .join(run.to_hex())
            .join(vm_path.trim_start_matches('/'))
    }

    /// The directory of a result's output files with checksum `checksum`.
    pub fn output_dir(&self, result: &Hash, checksum: &Hash) -> PathBuf {
        self.root
            .join("txfiles")
            .join(result.to_hex())
            .join(checksum.to_hex())
    }

    /// Where a result's output file is stored and served.
    pub fn output_file(&self, result: &Hash, checksum: &Hash, basename: &str) -> PathBuf {
        self.output_dir(result, checksum).join(basename)
    }

    /// Where an operator's upload is stored and served.
    pub fn upload(&self, checksum: &Hash, name: &str) -> PathBuf {
        self.root.join("txfiles").join(checksum.to_hex()).join(name)
    }

    /// The path of an upload on the download server, relative to its base URL.
    pub fn upload_url_path(checksum: &Hash, name: &str) -> String {
        format!("txfiles/{}/{name}", checksum.to_hex())
    }

    /// The VMs' directories.
    pub fn vms(&self) -> PathBuf {
        self.root.join("vms")
    }

    /// The default log directory.
    pub fn log(&self) -> PathBuf {
        self.root.join("log")
    }

    /// What each area holds, walking every tree (not cheap on a large directory: callers
    /// cache it). Areas that do not exist count as empty.
    pub fn usage(&self) -> Vec<AreaUse> {
        let mut areas: Vec<AreaUse> = [
            ("content", self.content()),
            ("images", self.root.join("images")),
            ("txfiles", self.root.join("txfiles")),
            ("tmp", self.tmp()),
            ("vms", self.vms()),
            ("log", self.log()),
        ]
        .into_iter()
        .map(|(area, path)| {
            let (bytes, files) = tree_size(&path);
            AreaUse {
                area,
                path,
                bytes,
                files,
            }
        })
        .collect();
        let db = self.database();
        let (mut bytes, mut files) = (0, 0);
        for suffix in ["", "-wal", "-shm"] {
            let mut name = db.clone().into_os_string();
            name.push(suffix);
            if let Ok(m) = std::fs::symlink_metadata(&name) {
                bytes += m.len();
                files += 1;
            }
        }
        areas.push(AreaUse {
            area: "database",
            path: db,
            bytes,
            files,
        });
        areas
    }

    /// The default node key file.
    pub fn node_key(&self) -> PathBuf {
        self.root.join("node.key")
    }

    /// The default SQLite database.
    pub fn database(&self) -> PathBuf {
        self.root.join("gevulot.db")
    }

    /// A path relative to the data directory (as the download server and file lists name files,
    /// e.g. `txfiles/<tx>/<checksum>/<name>`), confined: `None` unless it lies in one of the
    /// served trees and every segment is a plain, non-hidden name.
    pub fn served(&self, relative: &str) -> Option<PathBuf> {
        let mut parts = relative.split('/');
        let tree = parts.next()?;
        if !SERVED_TREES.contains(&tree) {
            return None;
        }
        let mut path = self.root.join(tree);
        let mut any = false;
        for part in parts {
            if part.is_empty()
                || part.starts_with('.')
                || part.contains('\\')
                || part.chars().any(char::is_control)
            {
                return None;
            }
            path.push(part);
            any = true;
        }
        any.then_some(path)
    }
}

/// Bytes and count of the regular files below `dir`, never following links.
pub(crate) fn tree_size(dir: &Path) -> (u64, u64) {
    let (mut bytes, mut files) = (0, 0);
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                pending.push(entry.path());
            } else if let Ok(m) = entry.metadata() {
                bytes += m.len();
                files += 1;
            }
        }
    }
    (bytes, files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout() {
        let d = DataDir::new("/d");
        let h = Hash([0xab; 32]);
        let c = Hash([0xcd; 32]);
        let (hh, ch) = (h.to_hex(), c.to_hex());
        assert_eq!(
            d.image(&h, "p.img"),
            PathBuf::from(format!("/d/images/{hh}/p.img"))
        );
        assert_eq!(
            d.run_input(&h, "/workspace/in.txt"),
            PathBuf::from(format!("/d/txfiles/{hh}/workspace/in.txt"))
        );
        assert_eq!(
            d.output_file(&h, &c, "out.dat"),
            PathBuf::from(format!("/d/txfiles/{hh}/{ch}/out.dat"))
        );
        assert_eq!(
            d.upload(&c, "x"),
            PathBuf::from(format!("/d/txfiles/{ch}/x"))
        );
        assert_eq!(
            d.content_file(&c),
            PathBuf::from(format!("/d/content/{ch}"))
        );
        let tmp = d.temp_file("upload");
        assert!(tmp.starts_with("/d/tmp"));
        assert!(
            tmp.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(".upload-"))
        );
        assert_ne!(tmp, d.temp_file("upload"));
    }

    #[test]
    fn served_paths_are_confined() {
        let d = DataDir::new("/d");
        assert_eq!(
            d.served("txfiles/a/b/c"),
            Some(PathBuf::from("/d/txfiles/a/b/c"))
        );
        assert_eq!(d.served("images/a/b"), Some(PathBuf::from("/d/images/a/b")));
        for bad in [
            "",
            "txfiles",
            "txfiles/",
            "content/abc",
            "tmp/x",
            "txfiles/../node.key",
            "txfiles/a/../../x",
            "txfiles/a/.upload-1",
            "txfiles/a//b",
            "txfiles/a\\..\\b",
            "/txfiles/a",
            "node.key",
        ] {
            assert_eq!(d.served(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn usage_counts_each_area_without_following_links() {
        let dir = tempfile::tempdir().expect("dir");
        let data = DataDir::new(dir.path());
        std::fs::create_dir_all(data.content()).expect("content");
        std::fs::write(data.content().join("a"), vec![0u8; 1000]).expect("a");
        std::fs::create_dir_all(data.root().join("images/p")).expect("images");
        std::fs::write(data.root().join("images/p/x.img"), vec![0u8; 10]).expect("x");
        std::os::unix::fs::symlink(data.content().join("a"), data.root().join("images/p/link"))
            .expect("link");
        std::fs::write(data.database(), vec![0u8; 4096]).expect("db");
        let usage = data.usage();
        let area = |name: &str| usage.iter().find(|a| a.area == name).expect(name).clone();
        assert_eq!((area("content").bytes, area("content").files), (1000, 1));
        let images = area("images");
        assert_eq!(images.files, 2);
        assert!(images.bytes < 1000, "the link is not followed: {images:?}");
        assert_eq!((area("database").bytes, area("database").files), (4096, 1));
        assert_eq!((area("vms").bytes, area("vms").files), (0, 0));
    }
}
