//! The error catalogue shared by every API: a stable snake_case `code` per kind of failure,
//! served as RFC 9457 `application/problem+json` by REST and as `error.data.code` by the new
//! JSON-RPC methods. (The original JSON-RPC methods keep the original's `{"Err": …}` envelope.)

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jsonrpsee::types::ErrorObjectOwned;
use serde::Serialize;
use utoipa::ToSchema;

use app::node::NodeError;

/// An RFC 9457 problem document.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the problem type: `urn:gevulot:problem:<code>`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the problem type.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong in this request, and what to do about it.
    pub detail: String,
    /// The stable snake_case error code (the same in JSON-RPC's `error.data.code`).
    pub code: String,
}

/// An API failure: a status, a stable code and a precise message.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
        }
    }

    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", detail)
    }

    /// The storage layer failed: logged with its cause, reported without internals.
    pub fn unavailable(error: &dyn std::error::Error) -> Self {
        tracing::error!(target: "gevulot", error = %error, source = ?error.source(), "database request failed");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "database_unavailable",
            "the database is unavailable or failed; nothing was changed, retry later",
        )
    }

    pub fn problem(&self) -> Problem {
        Problem {
            kind: format!("urn:gevulot:problem:{}", self.code),
            title: self
                .status
                .canonical_reason()
                .unwrap_or("Error")
                .to_string(),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
            code: self.code.to_string(),
        }
    }

    /// The JSON-RPC application error code for this status (outside the reserved -32768..-32000).
    pub fn rpc_code(&self) -> i32 {
        match self.status.as_u16() {
            400 | 413 | 415 => 4000,
            401 => 4001,
            403 => 4003,
            404 => 4004,
            409 => 4009,
            422 => 4022,
            429 => 4029,
            503 => 5003,
            _ => 5000,
        }
    }
}

/// The core's errors with their HTTP status; the code and message are the core's own.
impl From<NodeError> for ApiError {
    fn from(e: NodeError) -> Self {
        let status = match &e {
            NodeError::Database(source) => return ApiError::unavailable(source),
            NodeError::NotFound(_) => StatusCode::NOT_FOUND,
            NodeError::Invalid(_)
            | NodeError::WrongKind(_)
            | NodeError::InvalidParameter(_)
            | NodeError::BadFileName(_)
            | NodeError::UnknownUpload(_) => StatusCode::UNPROCESSABLE_ENTITY,
            NodeError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            NodeError::UploadBroken(_) => StatusCode::BAD_REQUEST,
            NodeError::P2pUnavailable | NodeError::SysfsUnavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            NodeError::Io { .. } | NodeError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

impl From<ApiError> for ErrorObjectOwned {
    fn from(e: ApiError) -> Self {
        ErrorObjectOwned::owned(
            e.rpc_code(),
            e.detail.clone(),
            Some(serde_json::json!({ "code": e.code })),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.problem()).unwrap_or_default();
        let mut response = (self.status, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        response
    }
}

/// Every code the APIs return (also in `docs/API-DESIGN.md`); a test keeps it complete.
#[cfg(test)]
const CODES: &[(&str, &str)] = &[
    (
        "malformed_json",
        "the body is not valid JSON, or not the expected shape",
    ),
    (
        "malformed_transaction",
        "the body is not a transaction in the original JSON input form",
    ),
    (
        "unsupported_media_type",
        "the request body must be application/json",
    ),
    (
        "payload_too_large",
        "the request body is larger than the server accepts",
    ),
    (
        "invalid_parameter",
        "a path or query parameter is malformed",
    ),
    (
        "unknown_parameter",
        "a query parameter is not one this route knows",
    ),
    (
        "invalid_cursor",
        "the pagination cursor is not one this server issued",
    ),
    ("not_found", "no such transaction, program, file or route"),
    (
        "database_unavailable",
        "the database is down or failed; retry later",
    ),
    (
        "internal_error",
        "an unexpected failure; the node logged it",
    ),
    (
        "hash_mismatch",
        "the hash field does not match the transaction's content",
    ),
    ("bad_signature", "the signature does not verify"),
    ("empty_workflow", "a Run has no steps"),
    ("duplicate_program", "a Run names the same program twice"),
    (
        "output_without_source",
        "an Output input names no earlier step's program",
    ),
    (
        "bad_file_name",
        "a file name is not a VM path under /workspace or a plain file name",
    ),
    ("bad_url", "a URL is not an absolute http(s) URL"),
    ("bad_checksum", "a checksum is not 64 hex characters"),
    (
        "program_hash_mismatch",
        "a program hash does not match its metadata",
    ),
    (
        "bad_resource_request",
        "a resource request is out of bounds",
    ),
    ("field_too_long", "a string or byte field is over its limit"),
    ("too_many_items", "a list is over its limit"),
    ("value_too_large", "a big integer is over its limit"),
    (
        "parent_wrong_kind",
        "the parent transaction is of the wrong kind",
    ),
    (
        "author_not_whitelisted",
        "the author is not on this node's ACL whitelist",
    ),
    (
        "cancel_not_authorized",
        "only the Run's author or the node's operator may cancel it",
    ),
    ("p2p_unavailable", "the node runs without its P2P network"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_validation_code_is_catalogued() {
        use app::validate::ValidationError as V;
        let h = app::tx::Hash::default();
        let samples = [
            V::HashMismatch {
                claimed: h,
                computed: h,
            },
            V::Signature(app::crypto::SignatureError::Mismatch),
            V::EmptyWorkflow,
            V::DuplicateProgram {
                field: String::new(),
                program: h,
                first: 0,
            },
            V::OutputWithoutSource {
                field: String::new(),
                program: h,
            },
            V::BadFileName {
                field: String::new(),
                value: String::new(),
                reason: "",
            },
            V::BadUrl {
                field: String::new(),
                value: String::new(),
                reason: String::new(),
            },
            V::BadChecksum {
                field: String::new(),
                value: String::new(),
            },
            V::ProgramHashMismatch {
                field: String::new(),
                claimed: h,
                computed: h,
            },
            V::BadResourceRequest {
                field: String::new(),
                reason: String::new(),
            },
            V::FieldTooLong {
                field: String::new(),
                len: 0,
                max: 0,
            },
            V::TooMany {
                field: String::new(),
                len: 0,
                max: 0,
            },
            V::ValueTooLarge {
                field: String::new(),
                max_bits: 0,
            },
            V::ParentWrongKind {
                kind: app::tx::Kind::Proof,
                parent: h,
                found: app::tx::Kind::Run,
                expected: "",
            },
            V::AuthorNotWhitelisted(String::new()),
        ];
        for v in samples {
            assert!(
                CODES.iter().any(|(c, _)| *c == v.code()),
                "{} is not catalogued",
                v.code()
            );
        }
        let doc = include_str!("../../../docs/API-DESIGN.md");
        for (code, _) in CODES {
            assert!(
                doc.contains(&format!("`{code}`")),
                "{code} is not in docs/API-DESIGN.md"
            );
        }
    }
}
