//! API failures as the server answers them: RFC 9457 `application/problem+json` for REST and
//! `error.data.code` for the new JSON-RPC methods, each with a code of the catalogue
//! (`api::ErrorCode`). (The original JSON-RPC methods keep the original's `{"Err": …}` envelope.)

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jsonrpsee::types::ErrorObjectOwned;
use serde::Serialize;
use utoipa::ToSchema;

pub use api::ErrorCode;
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

/// A parameter, query or body the server refuses as it stands: not the JSON it expects, a value
/// outside the document's rules (`code` says which: `invalid_parameter`, `unknown_parameter`,
/// `invalid_cursor`, `malformed_json`, …).
#[derive(Debug, utoipa::IntoResponses)]
#[response(
    status = 400,
    description = "Bad request: see `code` and `detail`",
    content_type = "application/problem+json"
)]
#[expect(
    dead_code,
    reason = "it only describes a response in the OpenAPI document"
)]
pub struct BadInput(Problem);

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
        Self::new(
            StatusCode::from_u16(code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            code,
            detail,
        )
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
            "the database is unavailable or failed; retry later (submitting a transaction again is safe: it is stored once)",
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

    /// The JSON-RPC application error code for this status.
    pub fn rpc_code(&self) -> i32 {
        api::rpc::rpc_code(self.status.as_u16())
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
            | NodeError::UnknownUpload(_)
            | NodeError::BadUrl(_)
            | NodeError::AddressNotAllowed(_)
            | NodeError::LimitReached(_) => StatusCode::UNPROCESSABLE_ENTITY,
            NodeError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            NodeError::UploadBroken(_) => StatusCode::BAD_REQUEST,
            NodeError::P2pUnavailable | NodeError::SysfsUnavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            NodeError::Unavailable(_) => StatusCode::BAD_GATEWAY,
            NodeError::Io { .. } | NodeError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, ErrorCode::of_core(e.code()), e.to_string())
    }
}

impl From<ApiError> for ErrorObjectOwned {
    fn from(e: ApiError) -> Self {
        api::rpc::error(e.status.as_u16(), e.code, e.detail)
    }
}

/// A request the API could not decode: 400 with its code.
impl From<api::BadRequest> for ApiError {
    fn from(e: api::BadRequest) -> Self {
        ApiError::bad_request(e.code, e.detail)
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

/// `axum::extract::Path` whose refusals are problem documents (`400 invalid_parameter`), like
/// every other refusal of the API, instead of axum's plain text.
#[derive(Debug, Clone)]
pub struct ApiPath<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for ApiPath<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(ApiPath(v)),
            Err(e) => Err(ApiError::bad_request(
                ErrorCode::InvalidParameter,
                format!("path: {}", e.body_text()),
            )),
        }
    }
}
