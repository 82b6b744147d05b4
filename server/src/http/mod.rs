//! The node's HTTP servers.
//!
//! - The main server (`GEVULOT_JSON_RPC_LISTEN_ADDR`): JSON-RPC at `POST /` and `/rpc` (and
//!   WebSocket), REST under `/api/v1`, the OpenAPI document at `/api-docs/openapi.json` and its
//!   docs UI at `/api-docs/ui/`. Later the console.
//! - The file download server (`GEVULOT_HTTP_PORT` on the P2P address): [`files`].
//! - The health server (`GEVULOT_HEALTHCHECK_LISTEN_ADDR`): [`health`].
//! - The metrics server (`GEVULOT_METRICS_LISTEN_ADDR`): [`metrics`].
//!
//! *Architecture invariant:* handlers extract, call `app`, and map the result; no SQL, QMP or
//! sysfs here. JSON-RPC and REST are two views of the same core calls.

pub mod audit;
pub mod auth;
pub mod client;
pub mod console;
pub mod drain;
pub use api::dto;
pub mod error;
pub mod files;
pub mod gpus;
pub mod health;
pub mod limits;
pub mod metrics;
pub mod operator;
pub mod rest;
pub mod rpc;
pub mod settings;
mod state;
pub mod webhooks;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderName, HeaderValue, Request, StatusCode, header};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

pub use state::{AppState, Doors, Inner};

use error::ErrorCode;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Request ids: a per-process random prefix and a counter (`3f9a1c2b-17`).
#[derive(Clone, Debug)]
struct RequestIds {
    prefix: Arc<str>,
    next: Arc<AtomicU64>,
}

impl RequestIds {
    fn new() -> Self {
        let mut bytes = [0u8; 4];
        // Without randomness the ids are still unique within this process.
        let _ = getrandom::fill(&mut bytes);
        Self {
            prefix: hex::encode(bytes).into(),
            next: Arc::new(AtomicU64::new(1)),
        }
    }
}

impl MakeRequestId for RequestIds {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        HeaderValue::from_str(&format!("{}-{n}", self.prefix))
            .ok()
            .map(RequestId::new)
    }
}

/// The layers every server shares: request ids, a tracing span per request, panics turned into
/// 500 responses (the node keeps running), security headers.
pub fn common_layers(router: Router) -> Router {
    router
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
            ),
        ))
        .layer(CatchPanicLayer::custom(|_| {
            error::ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::InternalError,
                "the node failed while handling this request; it logged the failure",
            )
            .into_response_parts()
        }))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request<axum::body::Body>| {
                let id = req
                    .headers()
                    .get(REQUEST_ID)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-");
                tracing::info_span!(target: "gevulot", "request", method = %req.method(), path = %req.uri().path(), request_id = %id)
            }),
        )
        .layer(SetRequestIdLayer::new(REQUEST_ID, RequestIds::new()))
}

impl error::ApiError {
    fn into_response_parts(self) -> axum::response::Response {
        axum::response::IntoResponse::into_response(self)
    }
}

/// The main server's router: JSON-RPC, REST, OpenAPI and its UI; and the handle that keeps the
/// JSON-RPC service running.
pub fn main_router(state: AppState) -> anyhow::Result<(Router, jsonrpsee::server::ServerHandle)> {
    let (rpc, rpc_handle) = rpc::service(state.clone())?;
    let (rest, api) = rest::router(state.clone());
    let docs = utoipa_swagger_ui::SwaggerUi::new("/api-docs/ui").url("/api-docs/openapi.json", api);
    let rpc_routes = Router::new()
        .route_service("/rpc", rpc.clone())
        .route(
            "/",
            axum::routing::post_service(rpc.clone()).get_service(rpc),
        )
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            rpc::identify_caller,
        ))
        .layer(axum::middleware::from_fn(browsers_to_console));
    let router = Router::new()
        .merge(rpc_routes)
        .merge(rest)
        .merge(console::router().with_state(state.clone()))
        .merge(docs)
        .fallback(rest::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            limit_submissions,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(
            state.max_request_bytes,
        ))
        .layer(axum::middleware::from_fn(request_timeout))
        .layer(axum::middleware::from_fn(client::remember));
    Ok((common_layers(router), rpc_handle))
}

/// The submission door's limits (`limits.rs`) on JSON-RPC (`/rpc`, `/`) and
/// `POST /api/v1/transactions`; the console and the rest of REST are not behind it.
async fn limit_submissions(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let path = req.uri().path();
    let answer = if path == "/rpc" || path == "/" {
        limits::Answer::JsonRpc
    } else if path == "/api/v1/transactions" && req.method() == axum::http::Method::POST {
        limits::Answer::Problem
    } else {
        return next.run(req).await;
    };
    limits::guard(&state.doors.submission, answer, req, next).await
}

/// How long a request may take, except uploads (which stream for as long as they need) and
/// long-lived streams (server-sent events, WebSocket upgrades answer at once).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

async fn request_timeout(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if req.uri().path() == "/api/v1/uploads" || console::is_upload(req.method(), req.uri().path()) {
        return next.run(req).await;
    }
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
        Ok(response) => response,
        Err(_) => axum::response::IntoResponse::into_response(error::ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            ErrorCode::Timeout,
            "the request took longer than 60 s and was abandoned; nothing is half-done, retry",
        )),
    }
}

/// A browser opening the node's address (`GET /` asking for HTML, not a WebSocket) lands on the
/// console; JSON-RPC clients are unaffected.
async fn browsers_to_console(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let wants_html = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));
    if req.method() == axum::http::Method::GET
        && req.uri().path() == "/"
        && wants_html
        && !req.headers().contains_key(header::UPGRADE)
    {
        return axum::response::IntoResponse::into_response(axum::response::Redirect::to(
            "/console",
        ));
    }
    next.run(req).await
}

/// Binds `addr`, saying which directive to change when the address is taken.
pub async fn bind(addr: SocketAddr, directive: &str) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot listen on {addr} ({e}); stop what uses it or set {directive} to another address"
        )
    })
}

/// Serves `router` on `listener` until `shutdown` fires, then finishes in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
    })
    .await
}
