//! The client's address for the duration of a request, for the audit log: a middleware on the
//! main router puts the TCP peer's IP in a task-local, and the caller extractors (`Caller`, the
//! console's `Session`) read it, so no handler passes it along by hand. (The node does not trust
//! `X-Forwarded-For`: behind a proxy, the proxy's address is recorded.)

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request};
use axum::middleware::Next;
use axum::response::Response;

tokio::task_local! {
    static ADDRESS: Option<IpAddr>;
}

/// The middleware: runs the rest of the request with its client's address known.
pub async fn remember(req: Request, next: Next) -> Response {
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    ADDRESS.scope(ip, next.run(req)).await
}

/// The address of the client whose request this task serves, when known.
pub fn address() -> Option<IpAddr> {
    ADDRESS.try_with(|a| *a).ok().flatten()
}
