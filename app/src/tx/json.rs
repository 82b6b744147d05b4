//! The original's JSON input encodings for hashes, keys and signatures.
//!
//! | type | JSON |
//! |---|---|
//! | hash | array of 32 numbers (a hex string is refused, as by the original) |
//! | author / Transfer `to` | standard base64 of the 65-byte key (33- and 64-byte forms accepted) |
//! | signature | `{"r":[u32 ×8],"s":[u32 ×8]}`, limb 0 the least significant 32 bits |

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::Hash;
use crate::crypto::{PublicKey, Signature};

impl Serialize for Hash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Hash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        <[u8; 32]>::deserialize(deserializer).map(Hash)
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(self.as_bytes()))
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        let bytes = STANDARD.decode(text.as_bytes()).map_err(|e| {
            D::Error::custom(format_args!(
                "a public key is standard base64 of its 65-byte uncompressed form: {e}"
            ))
        })?;
        PublicKey::from_slice(&bytes).map_err(D::Error::custom)
    }
}

#[derive(Serialize, Deserialize)]
struct Limbs {
    r: [u32; 8],
    s: [u32; 8],
}

fn to_limbs(bytes: &[u8; 32]) -> [u32; 8] {
    let mut limbs = [0u32; 8];
    for (i, limb) in limbs.iter_mut().enumerate() {
        let at = 28 - 4 * i;
        *limb = u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    }
    limbs
}

fn from_limbs(limbs: &[u32; 8]) -> [u8; 32] {
    let mut bytes = [0u8; 32];
    for (i, limb) in limbs.iter().enumerate() {
        let at = 28 - 4 * i;
        bytes[at..at + 4].copy_from_slice(&limb.to_be_bytes());
    }
    bytes
}

impl Serialize for Signature {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Limbs {
            r: to_limbs(&self.r),
            s: to_limbs(&self.s),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let limbs = Limbs::deserialize(deserializer)?;
        Ok(Signature {
            r: from_limbs(&limbs.r),
            s: from_limbs(&limbs.s),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limbs_round_trip() {
        let mut bytes = [0u8; 32];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = i as u8 * 7;
        }
        let limbs = to_limbs(&bytes);
        assert_eq!(
            limbs[0],
            u32::from_be_bytes([bytes[28], bytes[29], bytes[30], bytes[31]])
        );
        assert_eq!(from_limbs(&limbs), bytes);
    }

    #[test]
    fn hash_hex_string_is_refused() {
        let err = serde_json::from_str::<Hash>("\"00\"").expect_err("hex refused");
        assert!(err.to_string().contains("array of length 32"), "{err}");
    }
}
