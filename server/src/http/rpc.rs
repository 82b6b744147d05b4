//! JSON-RPC (jsonrpsee), mounted at `POST /` and `/rpc` on the main server, HTTP and WebSocket.
//!
//! The original node's three methods keep their names and shapes exactly (`wire-format.md`):
//! positional parameters, and every application result wrapped in `{"Ok": …}` or
//! `{"Err": {"InvalidRequest" | "NotFound" | "InternalError": "…"}}` inside a successful
//! JSON-RPC response. Unlike the original, a rejection says precisely why.
//!
//! New methods carry the `gevulot_` prefix and use standard JSON-RPC errors whose `data.code` is
//! the stable code of the REST API's problem documents.

use std::convert::Infallible;

use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use jsonrpsee::RpcModule;
use jsonrpsee::server::{Server, ServerConfig, ServerHandle};
use jsonrpsee::types::{ErrorObjectOwned, Params};
use serde::{Deserialize, Serialize};
use tower::ServiceExt as _;

use app::model::Source;
use app::node::NodeError;
use app::tx::rpc::TransactionTree;
use app::tx::{Hash, Transaction};

use super::AppState;
use super::dto::{self, TransactionQuery};
use super::error::{ApiError, ErrorCode};

/// The original's result envelope.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Envelope<T> {
    Ok(T),
    Err(RpcError),
}

/// The original's error variants.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum RpcError {
    NotFound(String),
    MissingTx(String),
    InvalidRequest(String),
    Unauthorized,
    InternalError(String),
}

type Original<T> = Result<Envelope<T>, ErrorObjectOwned>;

fn invalid<T>(message: String) -> Original<T> {
    Ok(Envelope::Err(RpcError::InvalidRequest(message)))
}

fn internal<T>(error: &NodeError) -> Original<T> {
    let _ = ApiError::unavailable(error);
    Ok(Envelope::Err(RpcError::InternalError(
        "the database is unavailable or failed; retry later".into(),
    )))
}

/// The decoder's own words for a parameter error (jsonrpsee puts them in `data`).
fn reason(e: &ErrorObjectOwned) -> String {
    match e.data() {
        Some(data) => {
            serde_json::from_str::<String>(data.get()).unwrap_or_else(|_| data.get().to_string())
        }
        None => e.message().to_string(),
    }
}

/// Decodes the single positional parameter, with the decoder's precise message on failure.
fn one<T: serde::de::DeserializeOwned>(params: &Params<'_>, what: &str) -> Result<T, String> {
    params
        .one::<T>()
        .map_err(|e| format!("the parameter is not {what}: {}", reason(&e)))
}

async fn send_transaction(params: Params<'static>, state: &AppState) -> Original<()> {
    let tx: Transaction = match one(&params, "a transaction in the original JSON input form") {
        Ok(tx) => tx,
        Err(message) => {
            state.metrics.submitted("unknown", "malformed");
            return invalid(message);
        }
    };
    match state.node.submit(&tx, Source::Rpc).await {
        Ok(_) => Ok(Envelope::Ok(())),
        Err(NodeError::Invalid(e)) => invalid(e.to_string()),
        Err(e) => internal(&e),
    }
}

/// The original output form, from the node's cache of serialised answers (byte for byte what
/// serialising `RpcTransaction` gives).
async fn get_transaction(
    params: Params<'static>,
    state: &AppState,
) -> Original<Box<serde_json::value::RawValue>> {
    let hash: Hash = match one(&params, "a transaction hash (an array of 32 numbers)") {
        Ok(h) => h,
        Err(message) => return invalid(message),
    };
    match state.node.transaction_output(&hash).await {
        Ok(Some(json)) => Ok(Envelope::Ok(json)),
        Ok(None) => Ok(Envelope::Err(RpcError::NotFound(hash.to_hex()))),
        Err(e) => internal(&e),
    }
}

async fn get_transaction_tree(
    params: Params<'static>,
    state: &AppState,
) -> Original<TransactionTree> {
    let hash: Hash = match one(&params, "a transaction hash (an array of 32 numbers)") {
        Ok(h) => h,
        Err(message) => return invalid(message),
    };
    match state.node.tree(&hash).await {
        Ok(Some(tree)) => Ok(Envelope::Ok(tree)),
        Ok(None) => Ok(Envelope::Err(RpcError::NotFound(format!(
            "no root tx found for {}: it is not a Run, Proof or Verification known to this node",
            hash.to_hex()
        )))),
        Err(e) => internal(&e),
    }
}

/// Decodes an optional single object parameter (`[]`, no params, or `[{…}]`).
fn optional_object<T: serde::de::DeserializeOwned + Default>(
    params: &Params<'_>,
) -> Result<T, ApiError> {
    if params.is_object() {
        return params
            .parse::<T>()
            .map_err(|e| ApiError::bad_request(ErrorCode::MalformedJson, reason(&e)));
    }
    let mut seq = params.sequence();
    seq.optional_next::<T>()
        .map(Option::unwrap_or_default)
        .map_err(|e| ApiError::bad_request(ErrorCode::MalformedJson, reason(&e)))
}

fn hex_hash_param(params: &Params<'_>) -> Result<Hash, ApiError> {
    let text: String = if params.is_object() {
        #[derive(Deserialize)]
        struct Named {
            hash: String,
        }
        params
            .parse::<Named>()
            .map(|n| n.hash)
            .map_err(|e| ApiError::bad_request(ErrorCode::InvalidParameter, reason(&e)))?
    } else {
        params.one::<String>().map_err(|e| {
            ApiError::bad_request(
                ErrorCode::InvalidParameter,
                format!("expected a hex transaction hash: {}", reason(&e)),
            )
        })?
    };
    dto::parse_hash("hash", &text)
}

/// The page of transactions `query` asks for (its filters checked): `gevulot_listTransactions`
/// and `GET /api/v1/transactions`.
pub(crate) async fn list_transactions(
    state: &AppState,
    query: &TransactionQuery,
) -> Result<dto::TransactionPage, ApiError> {
    let (filter, before, limit) = query.to_filter()?;
    let page = state.node.transactions(&filter, before, limit).await?;
    Ok((&page).into())
}

pub(crate) async fn transaction_status(
    state: &AppState,
    hash: &Hash,
) -> Result<dto::TransactionStatus, ApiError> {
    Ok((&state.node.status(hash).await?).into())
}

pub(crate) async fn cancel(
    state: &AppState,
    run: &Hash,
    source: Source,
) -> Result<dto::Submitted, ApiError> {
    let submitted = state.node.cancel(run, source).await?;
    Ok(dto::Submitted {
        hash: submitted.hash.to_hex(),
        new: submitted.new,
    })
}

/// Registers `$name` with a body that gets the params `$p` and state `$st`, timing each call.
macro_rules! method {
    ($m:expr, $name:literal, |$p:ident, $st:ident| $body:expr) => {
        $m.register_async_method($name, |$p, $st, _| async move {
            let start = std::time::Instant::now();
            let out = $body;
            $st.metrics.rpc_call($name, start.elapsed().as_secs_f64());
            out
        })?;
    };
}

/// Who is calling, as resolved from the HTTP request by [`identify_caller`].
#[derive(Clone, Debug)]
pub struct RpcCaller {
    pub caller: Option<super::auth::Caller>,
    /// False for a cookie session without the session's CSRF token.
    pub csrf_ok: bool,
}

/// HTTP middleware for the JSON-RPC routes: resolves the session or token into the request's
/// extensions, which jsonrpsee hands to the methods.
pub async fn identify_caller(
    axum::extract::State(state): axum::extract::State<AppState>,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use super::auth::{CSRF_HEADER, Via, identify};
    let caller = identify(&state, req.headers()).await.ok().flatten();
    let csrf_ok = match &caller {
        Some(super::auth::Caller {
            via: Via::Session { csrf, .. },
            ..
        }) => req
            .headers()
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|sent| sent == csrf),
        _ => true,
    };
    req.extensions_mut().insert(RpcCaller { caller, csrf_ok });
    next.run(req).await
}

/// The caller, when it has `role` (401/403 otherwise).
fn require(
    ext: &jsonrpsee::Extensions,
    role: app::auth::Role,
) -> Result<super::auth::Caller, ApiError> {
    let Some(RpcCaller {
        caller: Some(caller),
        csrf_ok,
    }) = ext.get::<RpcCaller>()
    else {
        return Err(ApiError::new(
            axum::http::StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            "this method needs an API token (`Authorization: Bearer …`) or a signed-in session",
        ));
    };
    if !csrf_ok {
        return Err(ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            ErrorCode::CsrfRequired,
            "a session-authenticated call needs the session's CSRF token in the X-CSRF-Token header",
        ));
    }
    caller.require(role)?;
    Ok(caller.clone())
}

/// Sends the current status of `hash` to a subscriber.
async fn send_status(
    sink: &jsonrpsee::SubscriptionSink,
    state: &AppState,
    hash: &Hash,
) -> Result<(), String> {
    let status = transaction_status(state, hash)
        .await
        .map_err(|e| e.detail)?;
    let raw = serde_json::value::to_raw_value(&status).map_err(|e| e.to_string())?;
    sink.send(raw).await.map_err(|e| e.to_string())
}

pub fn module(state: AppState) -> anyhow::Result<RpcModule<AppState>> {
    let mut m = RpcModule::new(state);
    method!(m, "sendTransaction", |p, st| send_transaction(p, &st).await);
    method!(m, "getTransaction", |p, st| get_transaction(p, &st).await);
    method!(m, "getTransactionTree", |p, st| get_transaction_tree(
        p, &st
    )
    .await);
    method!(m, "gevulot_nodeInfo", |_p, st| {
        match st.node.info().await {
            Ok(info) => Ok(dto::NodeInfo::from(&info)),
            Err(e) => Err(ErrorObjectOwned::from(ApiError::from(e))),
        }
    });
    method!(m, "gevulot_listTransactions", |p, st| {
        match optional_object::<TransactionQuery>(&p) {
            Ok(query) => list_transactions(&st, &query)
                .await
                .map_err(ErrorObjectOwned::from),
            Err(e) => Err(ErrorObjectOwned::from(e)),
        }
    });
    method!(m, "gevulot_getTransactionStatus", |p, st| {
        match hex_hash_param(&p) {
            Ok(hash) => transaction_status(&st, &hash)
                .await
                .map_err(ErrorObjectOwned::from),
            Err(e) => Err(ErrorObjectOwned::from(e)),
        }
    });
    m.register_async_method("gevulot_cancel", |p, st, ext| async move {
        let start = std::time::Instant::now();
        let out = match (require(&ext, app::auth::Role::Operator), hex_hash_param(&p)) {
            (Err(e), _) | (_, Err(e)) => Err(ErrorObjectOwned::from(e)),
            (Ok(_), Ok(run)) => cancel(&st, &run, Source::Rpc)
                .await
                .map_err(ErrorObjectOwned::from),
        };
        st.metrics
            .rpc_call("gevulot_cancel", start.elapsed().as_secs_f64());
        out
    })?;
    m.register_async_method("gevulot_peers", |_p, st, ext| async move {
        let start = std::time::Instant::now();
        let out = match require(&ext, app::auth::Role::Viewer) {
            Err(e) => Err(ErrorObjectOwned::from(e)),
            Ok(_) => match st.node.network().await {
                Ok(network) => Ok(dto::PeerNetwork::from(&network)),
                Err(e) => Err(ErrorObjectOwned::from(ApiError::from(e))),
            },
        };
        st.metrics
            .rpc_call("gevulot_peers", start.elapsed().as_secs_f64());
        out
    })?;
    m.register_subscription(
        "gevulot_subscribeTransactionStatus",
        "gevulot_transactionStatus",
        "gevulot_unsubscribeTransactionStatus",
        |p, pending, st, _| async move {
            let hash = match hex_hash_param(&p) {
                Ok(h) => h,
                Err(e) => {
                    pending.reject(ErrorObjectOwned::from(e)).await;
                    return Ok(());
                }
            };
            if let Err(e) = transaction_status(&st, &hash).await {
                pending.reject(ErrorObjectOwned::from(e)).await;
                return Ok(());
            }
            // Subscribe before the first read, so that no change falls between the two.
            let mut events = st.node.events().subscribe();
            let sink = pending.accept().await?;
            send_status(&sink, &st, &hash).await?;
            loop {
                tokio::select! {
                    () = sink.closed() => break,
                    event = events.recv() => match event {
                        Ok(e) if !e.concerns(&hash) => {}
                        Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                            send_status(&sink, &st, &hash).await?;
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                    },
                }
            }
            Ok(())
        },
    )?;
    Ok(m)
}

/// The JSON-RPC endpoint as an axum-compatible service (HTTP POST and WebSocket upgrades), and
/// the handle that keeps it running (dropping it stops the service).
pub fn service(
    state: AppState,
) -> anyhow::Result<(
    impl tower::Service<
        Request<Body>,
        Response = Response<Body>,
        Error = Infallible,
        Future = impl Send + 'static,
    > + Clone
    + Send
    + Sync
    + 'static,
    ServerHandle,
)> {
    let max = u32::try_from(state.max_request_bytes).unwrap_or(u32::MAX);
    let module = module(state)?;
    let (stop_handle, server_handle) = jsonrpsee::server::stop_channel();
    let config = ServerConfig::builder()
        .max_request_body_size(max)
        .max_response_body_size(max)
        .build();
    let svc = Server::builder()
        .set_config(config)
        .to_service_builder()
        .build(module, stop_handle);
    let svc = tower::service_fn(move |req: Request<Body>| {
        let svc = svc.clone();
        async move {
            match svc.oneshot(req).await {
                Ok(response) => Ok::<_, Infallible>(response.map(Body::new)),
                Err(e) => {
                    tracing::error!(target: "gevulot", error = %e, "JSON-RPC service failed");
                    Ok(Response::builder()
                        .status(StatusCode::INTERNAL_SERVER_ERROR)
                        .body(Body::from("internal error"))
                        .unwrap_or_default())
                }
            }
        }
    });
    Ok((svc, server_handle))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The registered JSON-RPC methods, in a committed snapshot: adding, renaming or removing a
    /// method is a deliberate change to `server/tests/snapshots/rpc-methods.txt`.
    #[tokio::test]
    async fn registered_methods_snapshot() {
        let state = AppState::new(crate::http::Inner {
            node: crate::setup::lone_node().await.expect("node"),
            secure_cookies: false,
            metrics: Default::default(),
            max_request_bytes: 1 << 20,
        });
        let module = module(state).expect("module");
        let mut names: Vec<&str> = module.method_names().collect();
        names.sort_unstable();
        let actual = names.join("\n") + "\n";
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/snapshots/rpc-methods.txt"
        );
        if std::env::var("UPDATE_SNAPSHOTS").is_ok_and(|v| v == "1") {
            std::fs::write(path, &actual).expect("write snapshot");
        }
        let expected = std::fs::read_to_string(path).unwrap_or_default();
        assert_eq!(
            actual, expected,
            "the JSON-RPC method list changed; if deliberate, run with UPDATE_SNAPSHOTS=1 and commit"
        );
    }
}
