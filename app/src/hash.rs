//! The 32-byte hash every layer names things by: transactions, programs, file checksums. It sits
//! below both the keys (`crypto`) and the transaction model (`tx`), which use it.

use std::fmt;

use sha3::{Digest, Sha3_256};

/// A 32-byte hash (transaction hash, program hash, file checksum in `TxFile`).
/// JSON: an array of 32 numbers. Text: lowercase hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hexadecimal characters (either case).
    pub fn from_hex(text: &str) -> Option<Self> {
        if text.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).ok()?;
        Some(Self(out))
    }

    /// SHA3-256 of `data`.
    pub fn sha3(data: &[u8]) -> Self {
        Self(Sha3_256::digest(data).into())
    }

    /// The BLAKE3 of the file at `path` (a file checksum, as transactions name them) and its
    /// size, read in a stream.
    pub fn blake3_of_file(path: &std::path::Path) -> std::io::Result<(Self, u64)> {
        let mut file = std::fs::File::open(path)?;
        let mut hasher = blake3::Hasher::new();
        let size = std::io::copy(&mut file, &mut hasher)?;
        Ok((Self(*hasher.finalize().as_bytes()), size))
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}
