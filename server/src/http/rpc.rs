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
use app::node::SubmitError;
use app::tx::rpc::{RpcTransaction, TransactionTree};
use app::tx::{Hash, Transaction};

use super::AppState;
use super::dto::{self, TransactionQuery};
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

fn internal<T>(error: &app::store::StoreError) -> Original<T> {
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
    match calls::submit(state, &tx, Source::Rpc).await {
        Ok(_) => Ok(Envelope::Ok(())),
        Err(SubmitError::Invalid(e)) => invalid(e.to_string()),
        Err(SubmitError::Store(e)) => internal(&e),
    }
}

async fn get_transaction(params: Params<'static>, state: &AppState) -> Original<RpcTransaction> {
    let hash: Hash = match one(&params, "a transaction hash (an array of 32 numbers)") {
        Ok(h) => h,
        Err(message) => return invalid(message),
    };
    match state.store().get_transaction(&hash).await {
        Ok(Some(stored)) => Ok(Envelope::Ok(RpcTransaction::from_transaction(
            &stored.tx,
            &state.file_base_url,
        ))),
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
    match state.store().transaction_tree(&hash).await {
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
            .map_err(|e| ApiError::bad_request("malformed_json", reason(&e)));
    }
    let mut seq = params.sequence();
    seq.optional_next::<T>()
        .map(Option::unwrap_or_default)
        .map_err(|e| ApiError::bad_request("malformed_json", reason(&e)))
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
            .map_err(|e| ApiError::bad_request("invalid_parameter", reason(&e)))?
    } else {
        params.one::<String>().map_err(|e| {
            ApiError::bad_request(
                "invalid_parameter",
                format!("expected a hex transaction hash: {}", reason(&e)),
            )
        })?
    };
    dto::parse_hash("hash", &text)
}

/// The core calls behind the new methods and the REST routes.
pub mod calls {
    use super::*;

    pub async fn node_info(state: &AppState) -> Result<dto::NodeInfo, ApiError> {
        let store = state.store();
        let uptime = state.started_at.elapsed().map(|d| d.as_secs()).unwrap_or(0);
        let started = state
            .started_at
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        Ok(dto::NodeInfo {
            version: env!("CARGO_PKG_VERSION").to_string(),
            public_key: state.node_key.public_key().to_hex(),
            database: store.backend().as_str().to_string(),
            database_version: store.server_version().await?,
            started_at: dto::rfc3339(started),
            uptime_seconds: uptime,
            execution: state.execution,
            file_base_url: state.file_base_url.clone(),
            transactions: store.count_transactions().await?,
        })
    }

    /// This node in the peer network (a signed-in caller's view: peer addresses are not public).
    pub async fn peer_network(state: &AppState) -> Result<dto::PeerNetwork, ApiError> {
        let Some(p2p) = &state.p2p else {
            return Err(ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "p2p_unavailable",
                "this node runs without its P2P network",
            ));
        };
        let counters = p2p.counters();
        let last_sync = state
            .acl_sync
            .as_ref()
            .and_then(|(_, status)| status.last());
        Ok(dto::PeerNetwork {
            peer_id: p2p.peer_id(),
            listen_addr: p2p.listen_addr().to_string(),
            advertised_addr: p2p.advertised().map(|a| a.to_string()),
            psk_fingerprint: p2p.psk_fingerprint().to_string(),
            bootstrap: p2p.bootstrap().to_vec(),
            peers: p2p
                .peers()
                .into_iter()
                .map(|p| dto::PeerInfo {
                    peer_id: p.peer_id,
                    public_key: p.public_key,
                    address: p.address,
                    direction: p.direction.as_str().to_string(),
                    connected_at: dto::system_rfc3339(p.connected_at),
                    agent_version: p.agent_version,
                    listen_addresses: p.listen_addresses,
                })
                .collect(),
            acl: dto::AclState {
                mode: state.intake.acl().as_str().to_string(),
                whitelisted_keys: state.store().acl_count().await?,
                url: state.acl_sync.as_ref().map(|(url, _)| url.clone()),
                last_sync: last_sync.map(|last| {
                    let (synced, error) = match last.outcome {
                        Ok(s) => (s, None),
                        Err(e) => (Default::default(), Some(e)),
                    };
                    dto::AclSync {
                        at: dto::system_rfc3339(last.at),
                        succeeded: error.is_none(),
                        added: synced.added,
                        removed: synced.removed,
                        bad_lines: synced.bad_lines,
                        error,
                    }
                }),
            },
            messages: dto::P2pMessages {
                published: counters.published,
                accepted: counters.accepted,
                rejected: counters.rejected,
                ignored: counters.ignored,
                dropped: counters.dropped,
                peers_refused: counters.peers_refused,
            },
        })
    }

    pub async fn list_transactions(
        state: &AppState,
        query: &TransactionQuery,
    ) -> Result<dto::TransactionPage, ApiError> {
        Ok((&query_transactions(state, query).await?).into())
    }

    /// The page of stored transactions `query` asks for (its filters checked).
    pub async fn query_transactions(
        state: &AppState,
        query: &TransactionQuery,
    ) -> Result<app::model::Page<app::model::StoredTransaction>, ApiError> {
        let (filter, before, limit) = query.to_filter()?;
        Ok(state
            .store()
            .list_transactions(&filter, before, limit)
            .await?)
    }

    /// Submits `tx` through intake and counts the outcome, whichever API it arrived on.
    pub async fn submit(
        state: &AppState,
        tx: &Transaction,
        source: Source,
    ) -> Result<app::node::Submitted, SubmitError> {
        let result = state.intake.submit(tx, source).await;
        let outcome = match &result {
            Ok(s) if s.new => "accepted",
            Ok(_) => "duplicate",
            Err(SubmitError::Invalid(e)) => e.code(),
            Err(SubmitError::Store(_)) => "database_unavailable",
        };
        state.metrics.submitted(tx.kind().as_str(), outcome);
        result
    }

    /// The node signs `payload` with its own key and submits it like any transaction. The
    /// nonce is the clock in milliseconds, so the same request twice in one millisecond is
    /// one transaction (a replay), not two.
    pub async fn sign_and_submit(
        state: &AppState,
        payload: app::tx::Payload,
        source: Source,
    ) -> Result<(Transaction, app::node::Submitted), SubmitError> {
        let nonce = u64::try_from(app::store::now_ms()).unwrap_or(0);
        let tx = Transaction::new_signed(payload, nonce, &state.node_key);
        let submitted = submit(state, &tx, source).await?;
        Ok((tx, submitted))
    }

    /// Cancels a Run: the node signs a `Cancel` naming it with its own key and submits it.
    /// (A Run's author can instead sign and submit a Cancel through the public paths.)
    pub async fn cancel(
        state: &AppState,
        run: &Hash,
        source: Source,
    ) -> Result<dto::Submitted, ApiError> {
        use app::tx::{Kind, Payload};
        match state.store().transaction_kind(run).await? {
            None => {
                return Err(ApiError::not_found(format!(
                    "no transaction {} on this node",
                    run.to_hex()
                )));
            }
            Some(Kind::Run) => {}
            Some(other) => {
                return Err(ApiError::new(
                    axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                    "parent_wrong_kind",
                    format!("only a Run can be cancelled; {} is a {other}", run.to_hex()),
                ));
            }
        }
        let (_, submitted) =
            sign_and_submit(state, Payload::Cancel { parent: *run }, source).await?;
        Ok(dto::Submitted {
            hash: submitted.hash.to_hex(),
            new: submitted.new,
        })
    }

    pub async fn transaction_status(
        state: &AppState,
        hash: &Hash,
    ) -> Result<dto::TransactionStatus, ApiError> {
        let store = state.store();
        let Some(kind) = store.transaction_kind(hash).await? else {
            return Err(ApiError::not_found(format!(
                "no transaction {} on this node",
                hash.to_hex()
            )));
        };
        let tasks = store.tasks_for_tx(hash).await?;
        let timelines = store.task_timelines(hash).await?;
        Ok(dto::TransactionStatus {
            hash: hash.to_hex(),
            kind: kind.as_str().to_string(),
            tasks: tasks
                .iter()
                .map(|t| {
                    let mut status = dto::TaskStatus::new(t, state.pipeline.as_ref());
                    status.timeline = timelines
                        .iter()
                        .filter(|c| c.task_id == t.id)
                        .map(dto::PhaseEntry::from)
                        .collect();
                    status
                })
                .collect(),
        })
    }
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
            "unauthorized",
            "this method needs an API token (`Authorization: Bearer …`) or a signed-in session",
        ));
    };
    if !csrf_ok {
        return Err(ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "csrf_required",
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
    let status = calls::transaction_status(state, hash)
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
        calls::node_info(&st).await.map_err(ErrorObjectOwned::from)
    });
    method!(m, "gevulot_listTransactions", |p, st| {
        match optional_object::<TransactionQuery>(&p) {
            Ok(query) => calls::list_transactions(&st, &query)
                .await
                .map_err(ErrorObjectOwned::from),
            Err(e) => Err(ErrorObjectOwned::from(e)),
        }
    });
    method!(m, "gevulot_getTransactionStatus", |p, st| {
        match hex_hash_param(&p) {
            Ok(hash) => calls::transaction_status(&st, &hash)
                .await
                .map_err(ErrorObjectOwned::from),
            Err(e) => Err(ErrorObjectOwned::from(e)),
        }
    });
    m.register_async_method("gevulot_cancel", |p, st, ext| async move {
        let start = std::time::Instant::now();
        let out = match (require(&ext, app::auth::Role::Operator), hex_hash_param(&p)) {
            (Err(e), _) | (_, Err(e)) => Err(ErrorObjectOwned::from(e)),
            (Ok(_), Ok(run)) => calls::cancel(&st, &run, Source::Rpc)
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
            Ok(_) => calls::peer_network(&st)
                .await
                .map_err(ErrorObjectOwned::from),
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
            if let Err(e) = calls::transaction_status(&st, &hash).await {
                pending.reject(ErrorObjectOwned::from(e)).await;
                return Ok(());
            }
            // Subscribe before the first read, so that no change falls between the two.
            let mut events = st.intake.events().subscribe();
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
        let store = app::store::Store::connect("sqlite::memory:", &Default::default())
            .await
            .expect("store");
        store.migrate().await.expect("migrate");
        let state = AppState::new(crate::http::Inner {
            intake: app::node::Intake::new(
                store.clone(),
                Default::default(),
                app::node::AclPolicy::Open,
            ),
            auth: app::auth::Auth::new(store).expect("auth"),
            secure_cookies: false,
            node_key: app::crypto::SecretKey::from_bytes(&[1; 32]).expect("key"),
            file_base_url: "http://127.0.0.1:9995".into(),
            started_at: std::time::SystemTime::now(),
            execution: true,
            metrics: Default::default(),
            max_request_bytes: 1 << 20,
            max_upload_bytes: 1 << 20,
            data_dir: std::env::temp_dir(),
            resources: dto::NodeResources {
                cpus: 1,
                mem_mib: 1,
                gpu_devices: vec![],
                execution: true,
                usage: None,
            },
            sysfs: app::gpu::Sysfs::new("/"),
            pipeline: None,
            p2p: None,
            acl_sync: None,
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
