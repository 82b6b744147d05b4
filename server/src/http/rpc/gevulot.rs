//! The `gevulot_*` methods: `api::rpc::Gevulot`'s server half over the core API.

use api::rpc::{GevulotServer, RpcResult};
use jsonrpsee::core::{SubscriptionResult, async_trait};
use jsonrpsee::types::ErrorObjectOwned;
use jsonrpsee::{Extensions, PendingSubscriptionSink, SubscriptionSink};

use app::model::Source;
use app::tx::Hash;

use crate::http::AppState;
use crate::http::auth::{CSRF_HEADER, Caller, Via, identify};
use crate::http::dto::{self, TransactionQuery};
use crate::http::error::{ApiError, ErrorCode};

pub(super) struct Gevulot {
    pub(super) state: AppState,
}

fn hash_param(text: &str) -> Result<Hash, ErrorObjectOwned> {
    dto::parse_hash("hash", text).map_err(|e| ApiError::from(e).into())
}

fn rpc_error(e: impl Into<ApiError>) -> ErrorObjectOwned {
    e.into().into()
}

#[async_trait]
impl GevulotServer for Gevulot {
    async fn node_info(&self) -> RpcResult<dto::NodeInfo> {
        let info = self.state.node.info().await.map_err(rpc_error)?;
        Ok(dto::NodeInfo::from(&info))
    }

    async fn list_transactions(
        &self,
        query: Option<TransactionQuery>,
    ) -> RpcResult<dto::TransactionPage> {
        list_transactions(&self.state, &query.unwrap_or_default())
            .await
            .map_err(rpc_error)
    }

    async fn transaction_status(&self, hash: String) -> RpcResult<dto::TransactionStatus> {
        let hash = hash_param(&hash)?;
        transaction_status(&self.state, &hash)
            .await
            .map_err(rpc_error)
    }

    async fn cancel(&self, ext: &Extensions, hash: String) -> RpcResult<dto::Submitted> {
        let caller = require(ext, app::auth::Role::Operator).map_err(rpc_error)?;
        let run = hash_param(&hash)?;
        // The address the request came from (a WebSocket's calls run outside its request).
        let address = ext.get::<RpcCaller>().and_then(|c| c.address);
        let actor = app::model::Actor::user(&caller.user.username, address);
        cancel(&self.state, &run, Source::Rpc, &actor)
            .await
            .map_err(rpc_error)
    }

    async fn peers(&self, ext: &Extensions) -> RpcResult<dto::PeerNetwork> {
        require(ext, app::auth::Role::Viewer).map_err(rpc_error)?;
        let network = self.state.node.network().await.map_err(rpc_error)?;
        Ok(dto::PeerNetwork::from(&network))
    }

    async fn subscribe_transaction_status(
        &self,
        pending: PendingSubscriptionSink,
        hash: String,
    ) -> SubscriptionResult {
        let state = &self.state;
        let hash = match hash_param(&hash) {
            Ok(h) => h,
            Err(e) => {
                pending.reject(e).await;
                return Ok(());
            }
        };
        if let Err(e) = transaction_status(state, &hash).await {
            pending.reject(ErrorObjectOwned::from(e)).await;
            return Ok(());
        }
        // Subscribe before the first read, so that no change falls between the two.
        let mut events = state.node.events().subscribe();
        let sink = pending.accept().await?;
        send_status(&sink, state, &hash).await?;
        loop {
            tokio::select! {
                () = sink.closed() => break,
                event = events.recv() => match event {
                    Ok(e) if !e.concerns(&hash) => {}
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        send_status(&sink, state, &hash).await?;
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                },
            }
        }
        Ok(())
    }
}

/// The page of transactions `query` asks for (its filters checked).
async fn list_transactions(
    state: &AppState,
    query: &TransactionQuery,
) -> Result<dto::TransactionPage, ApiError> {
    let (filter, before, limit) = query.to_filter()?;
    let page = state.node.transactions(&filter, before, limit).await?;
    Ok((&page).into())
}

async fn transaction_status(
    state: &AppState,
    hash: &Hash,
) -> Result<dto::TransactionStatus, ApiError> {
    Ok((&state.node.status(hash).await?).into())
}

async fn cancel(
    state: &AppState,
    run: &Hash,
    source: Source,
    by: &app::model::Actor,
) -> Result<dto::Submitted, ApiError> {
    let submitted = state.node.cancel(run, source, by).await?;
    Ok(dto::Submitted {
        hash: submitted.hash.to_hex(),
        new: submitted.new,
    })
}

/// Sends the current status of `hash` to a subscriber.
async fn send_status(sink: &SubscriptionSink, state: &AppState, hash: &Hash) -> Result<(), String> {
    let status = transaction_status(state, hash)
        .await
        .map_err(|e| e.detail)?;
    let raw = serde_json::value::to_raw_value(&status).map_err(|e| e.to_string())?;
    sink.send(raw).await.map_err(|e| e.to_string())
}

/// Who is calling, as resolved from the HTTP request by [`identify_caller`].
#[derive(Clone, Debug)]
pub struct RpcCaller {
    pub caller: Option<Caller>,
    /// False for a cookie session without the session's CSRF token.
    pub csrf_ok: bool,
    /// The client's address, for the audit log.
    pub address: Option<std::net::IpAddr>,
}

/// HTTP middleware for the JSON-RPC routes: resolves the session or token into the request's
/// extensions, which jsonrpsee hands to the methods.
pub async fn identify_caller(
    axum::extract::State(state): axum::extract::State<AppState>,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let caller = identify(&state, req.headers()).await.ok().flatten();
    let csrf_ok = match &caller {
        Some(Caller {
            via: Via::Session { csrf, .. },
            ..
        }) => req
            .headers()
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|sent| sent == csrf),
        _ => true,
    };
    req.extensions_mut().insert(RpcCaller {
        caller,
        csrf_ok,
        address: crate::http::client::address(),
    });
    next.run(req).await
}

/// The caller, when it has `role` (401/403 otherwise).
fn require(ext: &Extensions, role: app::auth::Role) -> Result<Caller, ApiError> {
    let Some(RpcCaller {
        caller: Some(caller),
        csrf_ok,
        ..
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
