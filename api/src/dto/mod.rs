//! Wire types of the REST API and the new JSON-RPC methods: snake_case JSON, RFC 3339 times,
//! hashes and keys as lowercase hex. (The original JSON-RPC methods use the transaction model's
//! own forms from `app::tx`.)

use std::time::{Duration, UNIX_EPOCH};

use app::tx::Hash;

use crate::error::{BadRequest, ErrorCode};

mod files;
mod names;
mod network;
mod programs;
mod transactions;
mod webhooks;

pub use files::*;
pub use names::*;
pub use network::*;
pub use programs::*;
pub use transactions::*;
pub use webhooks::*;

/// A time as RFC 3339 (UTC, millisecond precision).
pub fn system_rfc3339(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Milliseconds since the epoch as RFC 3339 (UTC, millisecond precision).
pub fn rfc3339(ms: i64) -> String {
    system_rfc3339(UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
}

/// Decodes a JSON request body, with the decoder's words on failure (`malformed_json`).
pub fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, BadRequest> {
    serde_json::from_slice(body).map_err(|e| {
        BadRequest::new(
            ErrorCode::MalformedJson,
            format!("the body is not the expected JSON: {e}"),
        )
    })
}

/// Parses a 64-character hex hash from a path or parameter.
pub fn parse_hash(field: &str, text: &str) -> Result<Hash, BadRequest> {
    Hash::from_hex(text).ok_or_else(|| {
        BadRequest::new(
            ErrorCode::InvalidParameter,
            format!(
                "{field}: {:?} is not a hash (64 hexadecimal characters)",
                truncate(text)
            ),
        )
    })
}

pub fn truncate(text: &str) -> String {
    text.chars().take(80).collect()
}
