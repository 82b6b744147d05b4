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

use api::rpc::GevulotServer as _;
use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use jsonrpsee::RpcModule;
use jsonrpsee::core::middleware::RpcServiceBuilder;
use jsonrpsee::server::{Server, ServerConfig, ServerHandle};
use jsonrpsee::types::{ErrorObjectOwned, Params};
use serde::{Deserialize, Serialize};
use tower::ServiceExt as _;

use app::model::Source;
use app::node::NodeError;
use app::tx::rpc::TransactionTree;
use app::tx::{Hash, Transaction};

mod calls;
mod gevulot;

pub use gevulot::identify_caller;

use super::AppState;
use super::error::ApiError;

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

/// Every method: the original three, registered by hand to keep their exact envelope, and the
/// `gevulot_*` methods of `api::rpc::Gevulot`.
pub fn module(state: AppState) -> anyhow::Result<RpcModule<AppState>> {
    let mut m = RpcModule::new(state.clone());
    m.register_async_method("sendTransaction", |p, st, _| async move {
        send_transaction(p, &st).await
    })?;
    m.register_async_method("getTransaction", |p, st, _| async move {
        get_transaction(p, &st).await
    })?;
    m.register_async_method("getTransactionTree", |p, st, _| async move {
        get_transaction_tree(p, &st).await
    })?;
    m.merge(gevulot::Gevulot { state }.into_rpc())?;
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
    let metrics = state.metrics.clone();
    let max_response_bytes = state.max_request_bytes;
    let module = module(state)?;
    let methods: std::sync::Arc<[&'static str]> = module.method_names().collect();
    let middleware = RpcServiceBuilder::new().layer_fn(move |inner| calls::Calls {
        inner,
        metrics: metrics.clone(),
        methods: methods.clone(),
        max_response_bytes,
    });
    let (stop_handle, server_handle) = jsonrpsee::server::stop_channel();
    // jsonrpsee counts each HTTP request it is handed as a connection and refuses beyond its
    // limit (100 by default) with "Too many connections"; connections are axum's, so that guard
    // is lifted here.
    let config = ServerConfig::builder()
        .max_connections(u32::MAX)
        .max_request_body_size(max)
        .max_response_body_size(max)
        .build();
    let svc = Server::builder()
        .set_config(config)
        .set_rpc_middleware(middleware)
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
            doors: crate::http::Doors::off(),
            settings: Vec::new(),
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
