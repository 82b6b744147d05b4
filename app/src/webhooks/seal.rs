//! Webhook secrets at rest: sealed (XChaCha20-Poly1305, a random nonce each) under a key derived
//! from the node key, so the database (a dump of it, a PostgreSQL server's other users) holds no
//! secret that could sign a notification. The node key opens them; a node whose key was
//! replaced cannot, and its deliveries say so. A backup holds both (`gevulot backup`), so a
//! restored node opens them again.
//!
//! Secrets stored in clear by earlier releases (`whsec_…`) still open, and the sender seals them
//! the first time it reads them.

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use crate::crypto::SecretKey;

/// What a sealed secret starts with: the format's version.
const SEALED: &str = "sealed1:";
/// What a secret stored in clear starts with.
const CLEAR: &str = "whsec_";
/// The key derivation's context (BLAKE3 `derive_key`): never reused for anything else.
const CONTEXT: &str = "gevulot node 2026-12 webhook secrets at rest";
/// Bound to every sealed secret, so a sealed value is not taken for something else's.
const ASSOCIATED: &[u8] = b"webhook secret";
const NONCE_LEN: usize = 24;

/// The key that seals and opens webhook secrets.
#[derive(Clone)]
pub struct Seal(XChaCha20Poly1305);

impl std::fmt::Debug for Seal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Seal(…)")
    }
}

/// What a stored secret turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Opened {
    /// Sealed by this node's key.
    Sealed(String),
    /// Stored in clear by an earlier release: to be sealed.
    Clear(String),
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error(
        "the hook's secret was sealed under another node key (was node.key replaced?); delete the hook and register it again"
    )]
    OtherKey,
    #[error("the hook's stored secret is not in a form this release knows")]
    Unknown,
    #[error("the node cannot make a random nonce now; retry")]
    NoRandom,
}

impl Seal {
    /// The seal of the node with key `key`.
    pub fn from_node_key(key: &SecretKey) -> Self {
        let derived = blake3::derive_key(CONTEXT, &key.secret_bytes());
        Self(XChaCha20Poly1305::new(&derived.into()))
    }

    /// `secret`, sealed for the database.
    pub(super) fn seal(&self, secret: &str) -> Result<String, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|_| SealError::NoRandom)?;
        let sealed = self
            .0
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: secret.as_bytes(),
                    aad: ASSOCIATED,
                },
            )
            .map_err(|_| SealError::Unknown)?;
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        Ok(format!(
            "{SEALED}{}",
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes)
        ))
    }

    /// The secret a stored value holds.
    pub(super) fn open(&self, stored: &str) -> Result<Opened, SealError> {
        if stored.starts_with(CLEAR) {
            return Ok(Opened::Clear(stored.to_string()));
        }
        let encoded = stored.strip_prefix(SEALED).ok_or(SealError::Unknown)?;
        let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(encoded)
            .map_err(|_| SealError::Unknown)?;
        if bytes.len() < NONCE_LEN {
            return Err(SealError::Unknown);
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| SealError::Unknown)?;
        let opened = self
            .0
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: sealed,
                    aad: ASSOCIATED,
                },
            )
            .map_err(|_| SealError::OtherKey)?;
        String::from_utf8(opened)
            .map(Opened::Sealed)
            .map_err(|_| SealError::Unknown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seal(seed: u8) -> Seal {
        Seal::from_node_key(&SecretKey::from_bytes(&[seed; 32]).expect("key"))
    }

    #[test]
    fn a_sealed_secret_opens_only_under_its_node_key() {
        let secret = "whsec_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
        let sealed = seal(1).seal(secret).expect("sealed");
        assert!(sealed.starts_with(SEALED), "{sealed}");
        assert!(!sealed.contains("abcdefghij"), "{sealed}");
        assert_ne!(
            sealed,
            seal(1).seal(secret).expect("sealed"),
            "a fresh nonce"
        );
        assert_eq!(
            seal(1).open(&sealed).expect("opened"),
            Opened::Sealed(secret.into())
        );
        assert_eq!(seal(2).open(&sealed), Err(SealError::OtherKey));
    }

    #[test]
    fn a_changed_or_strange_value_does_not_open() {
        let sealed = seal(1).seal("whsec_x").expect("sealed");
        let mut bytes = sealed.into_bytes();
        let inside = SEALED.len() + 40;
        bytes[inside] = if bytes[inside] == b'A' { b'B' } else { b'A' };
        let changed = String::from_utf8(bytes).expect("text");
        assert_eq!(seal(1).open(&changed), Err(SealError::OtherKey));
        for strange in ["", "sealed1:", "sealed1:!!", "sealed1:AAAA", "plain"] {
            assert!(seal(1).open(strange).is_err(), "{strange}");
        }
        assert_eq!(
            seal(1).open("whsec_legacy").expect("clear"),
            Opened::Clear("whsec_legacy".into())
        );
    }
}
