//! Program images come in two formats, told apart by content, never by name:
//!
//! - a **kernel bundle**: an uncompressed POSIX tar archive (the `ustar` magic at byte 257)
//!   holding `vmlinux` or `bzImage`, `initrd.img`, and optionally `cmdline` (extra kernel
//!   arguments). QEMU boots the kernel directly (PVH for an ELF `vmlinux`), which is the fast path
//!   under TCG.
//! - anything else is a **raw bootable disk image** (the original's format, e.g. a Nanos unikernel
//!   disk), attached read-only as a virtio-SCSI disk and booted by the firmware.

use std::io::Read;
use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageFormat {
    RawDisk,
    KernelBundle,
}

/// Offset and value of the POSIX tar magic.
const USTAR_OFFSET: usize = 257;
const USTAR_MAGIC: &[u8] = b"ustar";

/// Recognises the format from the first 512 bytes of `bytes`.
pub fn detect(bytes: &[u8]) -> ImageFormat {
    match bytes.get(USTAR_OFFSET..USTAR_OFFSET + USTAR_MAGIC.len()) {
        Some(magic) if magic == USTAR_MAGIC => ImageFormat::KernelBundle,
        _ => ImageFormat::RawDisk,
    }
}

/// Recognises the format of the image file at `path`.
pub fn detect_file(path: &Path) -> std::io::Result<ImageFormat> {
    let mut head = [0u8; 512];
    let mut file = std::fs::File::open(path)?;
    let mut filled = 0;
    while filled < head.len() {
        match file.read(&mut head[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(detect(&head[..filled]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundles_are_tar_archives_everything_else_is_a_disk() {
        let mut tar = vec![0u8; 512];
        tar[257..262].copy_from_slice(b"ustar");
        assert_eq!(detect(&tar), ImageFormat::KernelBundle);
        let mut mbr = vec![0u8; 512];
        mbr[510] = 0x55;
        mbr[511] = 0xaa;
        assert_eq!(detect(&mbr), ImageFormat::RawDisk);
        assert_eq!(detect(b"short"), ImageFormat::RawDisk);
    }
}
