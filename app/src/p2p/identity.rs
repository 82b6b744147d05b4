//! The node key as a libp2p identity, and the pre-shared key of a passphrase.

use libp2p::PeerId;

use super::NetworkError;
use crate::crypto::{PublicKey, SecretKey};
use crate::tx::Hash;

/// The pre-shared key of a passphrase: SHA3-256, as in the original network.
pub fn psk(passphrase: &str) -> [u8; 32] {
    Hash::sha3(passphrase.as_bytes()).0
}

/// A short, non-reversible fingerprint of a passphrase's pre-shared key, safe to log and show.
pub fn psk_fingerprint(passphrase: &str) -> String {
    let mut fingerprint = Hash::sha3(&psk(passphrase)).to_hex();
    fingerprint.truncate(16);
    fingerprint
}

/// The libp2p identity of a node key: the same secp256k1 key.
pub fn identity(key: &SecretKey) -> Result<libp2p::identity::Keypair, NetworkError> {
    let secret = libp2p::identity::secp256k1::SecretKey::try_from_bytes(key.secret_bytes())
        .map_err(|e| NetworkError::Identity(e.to_string()))?;
    Ok(libp2p::identity::secp256k1::Keypair::from(secret).into())
}

/// The peer id of a node key.
pub fn peer_id(key: &PublicKey) -> Option<PeerId> {
    let key = libp2p::identity::secp256k1::PublicKey::try_from_bytes(key.as_bytes()).ok()?;
    Some(libp2p::identity::PublicKey::from(key).to_peer_id())
}

/// The node key a peer id stands for, when it is a secp256k1 id (every Gevulot node's is).
pub fn peer_key(peer: &PeerId) -> Option<PublicKey> {
    // Small keys are inlined in the id: identity multihash (code 0), length, protobuf key.
    let bytes = peer.to_bytes();
    let (&[0, len], protobuf) = bytes.split_first_chunk::<2>()? else {
        return None;
    };
    if usize::from(len) != protobuf.len() {
        return None;
    }
    let key = libp2p::identity::PublicKey::try_decode_protobuf(protobuf).ok()?;
    let key = key.try_into_secp256k1().ok()?;
    PublicKey::from_slice(&key.to_bytes_uncompressed()).ok()
}
