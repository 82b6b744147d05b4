//! Unpacking a kernel bundle (see [`super::image`]): an uncompressed POSIX tar archive with
//! `vmlinux` or `bzImage`, `initrd.img`, and optionally `cmdline`. Only those names, only regular
//! files, nothing else is written: an archive cannot place files anywhere but the target
//! directory.

use std::io::Read;
use std::path::{Path, PathBuf};

/// An unpacked bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bundle {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// Extra kernel arguments (e.g. `gevulot.program=/bin/prover`).
    pub cmdline: String,
}

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("cannot read the kernel bundle")]
    Io(#[from] std::io::Error),
    #[error("the kernel bundle is malformed: {0}")]
    Malformed(String),
    #[error("the kernel bundle has no {0}")]
    Missing(&'static str),
}

const BLOCK: usize = 512;
/// The largest member accepted (kernels and initramfs are far smaller).
const MAX_MEMBER: u64 = 2 << 30;

fn octal(field: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(field).ok()?;
    let text = text.trim_matches(|c: char| c == '\0' || c == ' ');
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(text, 8).ok()
}

/// Unpacks `image` into `dir`.
pub fn unpack(image: &Path, dir: &Path) -> Result<Bundle, BundleError> {
    std::fs::create_dir_all(dir)?;
    let mut file = std::io::BufReader::new(std::fs::File::open(image)?);
    let (mut kernel, mut initrd, mut cmdline) = (None, None, String::new());
    let mut header = [0u8; BLOCK];
    loop {
        if file.read_exact(&mut header).is_err() || header.iter().all(|b| *b == 0) {
            break;
        }
        let name_end = header[..100].iter().position(|b| *b == 0).unwrap_or(100);
        let name = std::str::from_utf8(&header[..name_end])
            .map_err(|_| BundleError::Malformed("a member name is not UTF-8".into()))?
            .trim_start_matches("./")
            .to_string();
        let size = octal(&header[124..136])
            .ok_or_else(|| BundleError::Malformed(format!("bad size for {name}")))?;
        if size > MAX_MEMBER {
            return Err(BundleError::Malformed(format!("{name} is too large")));
        }
        let typeflag = header[156];
        let padded = size.div_ceil(BLOCK as u64) * BLOCK as u64;
        let mut data = (&mut file).take(padded);
        let keep = matches!(typeflag, b'0' | 0)
            && matches!(
                name.as_str(),
                "vmlinux" | "bzImage" | "initrd.img" | "cmdline"
            );
        if keep {
            let target = dir.join(&name);
            let mut out = std::fs::File::create(&target)?;
            let copied = std::io::copy(&mut (&mut data).take(size), &mut out)?;
            if copied != size {
                return Err(BundleError::Malformed(format!("{name} is truncated")));
            }
            match name.as_str() {
                "cmdline" => {
                    cmdline = std::fs::read_to_string(&target)
                        .map_err(|_| BundleError::Malformed("cmdline is not text".into()))?
                        .trim()
                        .to_string();
                }
                "initrd.img" => initrd = Some(target),
                _ => kernel = Some(target),
            }
        }
        std::io::copy(&mut data, &mut std::io::sink())?;
    }
    Ok(Bundle {
        kernel: kernel.ok_or(BundleError::Missing("vmlinux or bzImage"))?,
        initrd: initrd.ok_or(BundleError::Missing("initrd.img"))?,
        cmdline,
    })
}
