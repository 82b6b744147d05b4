//! The `gevulot_*` JSON-RPC methods, declared once. The node implements [`GevulotServer`]; clients
//! call through the generated [`GevulotClient`] (over `jsonrpsee`'s HTTP or WebSocket client).
//!
//! Failures are standard JSON-RPC errors whose `data.code` is a stable [`ErrorCode`] of the
//! catalogue, and whose `code` is derived from the HTTP status REST would answer ([`rpc_code`]).
//! `gevulot_listTransactions` also accepts its query object as the whole `params` (by-name
//! parameters), as documented in `docs/API-DESIGN.md`.

use jsonrpsee::proc_macros::rpc;
use jsonrpsee::types::ErrorObjectOwned;

use crate::dto::{
    NodeInfo, PeerNetwork, Submitted, TransactionPage, TransactionQuery, TransactionStatus,
};
use crate::error::ErrorCode;

/// The methods' result: the answer, or a JSON-RPC error carrying a catalogue code.
pub type RpcResult<T> = Result<T, ErrorObjectOwned>;

#[cfg_attr(feature = "server", rpc(server, client, namespace = "gevulot"))]
#[cfg_attr(not(feature = "server"), rpc(client, namespace = "gevulot"))]
pub trait Gevulot {
    /// What this node is: version, key, database, uptime, whether it executes.
    #[method(name = "nodeInfo")]
    async fn node_info(&self) -> RpcResult<NodeInfo>;

    /// A page of transactions, newest first, filtered by `query` (none: the first 50).
    #[method(name = "listTransactions")]
    async fn list_transactions(
        &self,
        query: Option<TransactionQuery>,
    ) -> RpcResult<TransactionPage>;

    /// Where a transaction's execution stands (hex hash): its tasks, phases and children.
    #[method(name = "getTransactionStatus")]
    async fn transaction_status(&self, hash: String) -> RpcResult<TransactionStatus>;

    /// Cancels a Run (hex hash) with a Cancel signed by the node key. Needs an operator's API
    /// token (or a signed-in session with its CSRF token).
    #[method(name = "cancel", with_extensions)]
    async fn cancel(&self, hash: String) -> RpcResult<Submitted>;

    /// The peer network as this node sees it. Needs any signed-in role.
    #[method(name = "peers", with_extensions)]
    async fn peers(&self) -> RpcResult<PeerNetwork>;

    /// The status of a transaction (hex hash) at once, then again on every change of it, its
    /// tasks or its children (WebSocket only).
    #[subscription(
        name = "subscribeTransactionStatus" => "transactionStatus",
        unsubscribe = "unsubscribeTransactionStatus",
        item = TransactionStatus
    )]
    async fn subscribe_transaction_status(
        &self,
        hash: String,
    ) -> jsonrpsee::core::SubscriptionResult;
}

/// The JSON-RPC error code for an HTTP status (application codes, outside the reserved
/// -32768..-32000): 4xx as 4000-range, 5xx as 5000-range.
pub fn rpc_code(status: u16) -> i32 {
    match status {
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

/// A JSON-RPC error for `code`, answered with `status`'s JSON-RPC code.
pub fn error(status: u16, code: ErrorCode, detail: impl Into<String>) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(
        rpc_code(status),
        detail.into(),
        Some(serde_json::json!({ "code": code.as_str() })),
    )
}

/// The catalogue code of a JSON-RPC error from the node (`error.data.code`), when it has one.
pub fn error_code(error: &ErrorObjectOwned) -> Option<ErrorCode> {
    #[derive(serde::Deserialize)]
    struct Data {
        code: ErrorCode,
    }
    let data = error.data()?;
    serde_json::from_str::<Data>(data.get())
        .ok()
        .map(|d| d.code)
}
