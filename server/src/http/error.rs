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

/// Declares [`ErrorCode`]: each variant with its stable code and default HTTP status.
macro_rules! error_codes {
    ($($variant:ident => ($code:literal, $status:literal),)*) => {
        /// Every code the APIs return, each with its default status. `docs/API-DESIGN.md` lists
        /// the same codes with the same statuses (a test holds the two together).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($variant,)*
        }

        impl ErrorCode {
            pub const ALL: &[ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The stable snake_case code.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $code,)*
                }
            }

            /// The status this code is answered with unless a route says otherwise.
            pub fn status(self) -> StatusCode {
                let status: u16 = match self {
                    $(ErrorCode::$variant => $status,)*
                };
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }
        }
    };
}

error_codes! {
    MalformedJson => ("malformed_json", 400),
    MalformedTransaction => ("malformed_transaction", 400),
    UnsupportedMediaType => ("unsupported_media_type", 415),
    PayloadTooLarge => ("payload_too_large", 413),
    InvalidParameter => ("invalid_parameter", 400),
    UnknownParameter => ("unknown_parameter", 400),
    InvalidCursor => ("invalid_cursor", 400),
    NotFound => ("not_found", 404),
    DatabaseUnavailable => ("database_unavailable", 503),
    InternalError => ("internal_error", 500),
    HashMismatch => ("hash_mismatch", 422),
    BadSignature => ("bad_signature", 422),
    EmptyWorkflow => ("empty_workflow", 422),
    DuplicateProgram => ("duplicate_program", 422),
    OutputWithoutSource => ("output_without_source", 422),
    BadFileName => ("bad_file_name", 422),
    BadUrl => ("bad_url", 422),
    BadChecksum => ("bad_checksum", 422),
    ProgramHashMismatch => ("program_hash_mismatch", 422),
    BadResourceRequest => ("bad_resource_request", 422),
    FieldTooLong => ("field_too_long", 422),
    TooManyItems => ("too_many_items", 422),
    ValueTooLarge => ("value_too_large", 422),
    ParentWrongKind => ("parent_wrong_kind", 422),
    AuthorNotWhitelisted => ("author_not_whitelisted", 422),
    CancelNotAuthorized => ("cancel_not_authorized", 422),
    Unauthorized => ("unauthorized", 401),
    Forbidden => ("forbidden", 403),
    CsrfRequired => ("csrf_required", 403),
    BadCredentials => ("bad_credentials", 401),
    TooManyAttempts => ("too_many_attempts", 429),
    UsernameTaken => ("username_taken", 409),
    BadUsername => ("bad_username", 422),
    WeakPassword => ("weak_password", 422),
    SetupUnavailable => ("setup_unavailable", 403),
    BadRole => ("bad_role", 422),
    UnknownUpload => ("unknown_upload", 422),
    MalformedBody => ("malformed_body", 400),
    P2pUnavailable => ("p2p_unavailable", 503),
    SysfsUnavailable => ("sysfs_unavailable", 503),
    Timeout => ("timeout", 408),
}

impl ErrorCode {
    /// The code named `text` (the core's errors carry their codes as text).
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| c.as_str() == text)
    }

    /// A code of the core: unknown ones (which a test rules out) are reported as internal errors.
    pub fn of_core(text: &str) -> Self {
        Self::parse(text).unwrap_or_else(|| {
            tracing::error!(target: "gevulot", code = text, "an error code missing from the catalogue");
            ErrorCode::InternalError
        })
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The standard problem responses of the OpenAPI document, one type each, so a route lists them
/// by name instead of spelling them out (`responses(..., NotSignedIn, Unknown)`).
/// No session cookie or API token (or an unknown token).
#[derive(Debug, utoipa::IntoResponses)]
#[response(
    status = 401,
    description = "Not signed in",
    content_type = "application/problem+json"
)]
#[expect(
    dead_code,
    reason = "it only describes a response in the OpenAPI document"
)]
pub struct NotSignedIn(Problem);

/// The transaction, program or file named is not on this node.
#[derive(Debug, utoipa::IntoResponses)]
#[response(
    status = 404,
    description = "Unknown",
    content_type = "application/problem+json"
)]
#[expect(
    dead_code,
    reason = "it only describes a response in the OpenAPI document"
)]
pub struct Unknown(Problem);

/// An API failure: a status, a stable code and a precise message.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub detail: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
        }
    }

    /// `code` with its default status.
    pub fn of(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self::new(code.status(), code, detail)
    }

    pub fn bad_request(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::of(ErrorCode::NotFound, detail)
    }

    /// The storage layer failed: logged with its cause, reported without internals.
    pub fn unavailable(error: &dyn std::error::Error) -> Self {
        tracing::error!(target: "gevulot", error = %error, source = ?error.source(), "database request failed");
        Self::of(
            ErrorCode::DatabaseUnavailable,
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
        ApiError::new(status, ErrorCode::of_core(e.code()), e.to_string())
    }
}

impl From<ApiError> for ErrorObjectOwned {
    fn from(e: ApiError) -> Self {
        ErrorObjectOwned::owned(
            e.rpc_code(),
            e.detail.clone(),
            Some(serde_json::json!({ "code": e.code.as_str() })),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The catalogue in `docs/API-DESIGN.md`: (code, status) of each row of its table.
    fn documented() -> Vec<(String, u16)> {
        include_str!("../../../docs/API-DESIGN.md")
            .lines()
            .filter_map(|line| {
                let mut cells = line.split('|').map(str::trim).skip(1);
                let code = cells.next()?.strip_prefix('`')?.strip_suffix('`')?;
                let status = cells.next()?.parse().ok()?;
                code.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                    .then(|| (code.to_string(), status))
            })
            .collect()
    }

    #[test]
    fn the_catalogue_and_the_document_agree() {
        let documented = documented();
        for code in ErrorCode::ALL {
            assert!(
                documented
                    .iter()
                    .any(|(c, s)| c == code.as_str() && *s == code.status().as_u16()),
                "{code} ({}) is not in docs/API-DESIGN.md's table with that status",
                code.status()
            );
        }
        for (code, status) in &documented {
            assert_eq!(
                ErrorCode::parse(code).map(|c| c.status().as_u16()),
                Some(*status),
                "docs/API-DESIGN.md lists {code} ({status}), which the server does not know"
            );
        }
    }

    #[test]
    fn every_core_code_is_catalogued() {
        use app::validate::ValidationError as V;
        let h = app::tx::Hash::default();
        let validation = [
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
            V::CancelNotAuthorized {
                run: h,
                author: String::new(),
            },
        ];
        let node = [
            NodeError::NotFound(String::new()),
            NodeError::WrongKind(String::new()),
            NodeError::InvalidParameter(String::new()),
            NodeError::BadFileName(String::new()),
            NodeError::UnknownUpload(String::new()),
            NodeError::TooLarge(String::new()),
            NodeError::UploadBroken(String::new()),
            NodeError::P2pUnavailable,
            NodeError::SysfsUnavailable(String::new()),
            NodeError::Internal(String::new()),
        ];
        use app::auth::AuthError as A;
        let auth = [
            A::BadCredentials,
            A::Throttled {
                retry_after_secs: 1,
            },
            A::UsernameTaken(String::new()),
            A::BadUsername(""),
            A::WeakPassword(""),
            A::SetupUnavailable,
            A::Hashing,
        ];
        let codes = validation
            .iter()
            .map(|v| v.code())
            .chain(node.iter().map(NodeError::code))
            .chain(auth.iter().map(A::code));
        for code in codes {
            assert!(ErrorCode::parse(code).is_some(), "{code} is not catalogued");
        }
    }
}
