//! Liveness and readiness on `GEVULOT_HEALTHCHECK_LISTEN_ADDR`, and the `gevulot healthcheck`
//! probe command.
//!
//! - `/livez`: 200 while the process serves requests.
//! - `/readyz` (and `/healthz`): 200 when every required subsystem works (the database answers,
//!   the P2P network runs, the data filesystem is above `GEVULOT_MIN_FREE_MB`, the node is not draining), 503 otherwise, with a JSON report per check
//!   (`status`: `ok`, `draining` when draining is the only reason, or `unavailable`). A busy queue or a node
//!   without peers is not a failure.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use super::AppState;

const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Serialize)]
pub(super) struct Check {
    status: &'static str,
    latency_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct Report {
    status: &'static str,
    checks: std::collections::BTreeMap<&'static str, Check>,
}

async fn database(state: &AppState) -> Check {
    let start = Instant::now();
    let outcome = tokio::time::timeout(CHECK_TIMEOUT, state.node.database_ready()).await;
    let latency_ms = start.elapsed().as_millis() as u64;
    match outcome {
        Ok(Ok(())) => Check {
            status: "ok",
            latency_ms,
            error: None,
        },
        Ok(Err(e)) => Check {
            status: "fail",
            latency_ms,
            error: Some(format!(
                "{e}: {}",
                std::error::Error::source(&e)
                    .map(|s| s.to_string())
                    .unwrap_or_default()
            )),
        },
        Err(_) => Check {
            status: "fail",
            latency_ms,
            error: Some(format!("no answer within {CHECK_TIMEOUT:?}")),
        },
    }
}

/// The data filesystem has at least `GEVULOT_MIN_FREE_MB` free.
fn disk(state: &AppState) -> Check {
    let floor = state.node.resources().min_free_bytes;
    match state.node.data_dir().below_floor(floor) {
        None => Check {
            status: "ok",
            latency_ms: 0,
            error: None,
        },
        Some(reason) => Check {
            status: "fail",
            latency_ms: 0,
            error: Some(format!(
                "{reason}; delete what the node no longer needs or lower GEVULOT_MIN_FREE_MB"
            )),
        },
    }
}

/// The P2P network's event loop runs (connected peers do not matter: a node may be alone).
fn p2p(network: &app::p2p::P2p) -> Check {
    if network.is_running() {
        Check {
            status: "ok",
            latency_ms: 0,
            error: None,
        }
    } else {
        Check {
            status: "fail",
            latency_ms: 0,
            error: Some("the P2P network stopped; the log says why; restart the node".to_string()),
        }
    }
}

/// Every readiness check, and whether all passed (`/readyz`; `gevulot_ready` in the metrics).
pub(super) async fn readiness(
    state: &AppState,
) -> (bool, std::collections::BTreeMap<&'static str, Check>) {
    let mut checks = std::collections::BTreeMap::new();
    checks.insert("database", database(state).await);
    if let Some(network) = state.node.p2p() {
        checks.insert("p2p", p2p(network));
    }
    checks.insert("disk", disk(state));
    checks.insert("drain", drain(state));
    (checks.values().all(|c| c.status == "ok"), checks)
}

/// The node takes work: not draining (an operator's switch, or a stop under way).
fn drain(state: &AppState) -> Check {
    let drain = state.node.drain_state();
    Check {
        status: if drain.draining() { "draining" } else { "ok" },
        latency_ms: 0,
        error: drain.draining().then(|| {
            format!(
                "draining: no new task starts; {} running, {} waiting (DELETE /api/v1/node/drain resumes)",
                drain.running, drain.waiting
            )
        }),
    }
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let (ok, checks) = readiness(&state).await;
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    // Draining alone is said as such: the node works, it just takes no new work.
    let draining = checks
        .values()
        .all(|c| c.status == "ok" || c.status == "draining")
        && !ok;
    (
        status,
        Json(Report {
            status: match (ok, draining) {
                (true, _) => "ok",
                (false, true) => "draining",
                (false, false) => "unavailable",
            },
            checks,
        }),
    )
}

async fn livez() -> impl IntoResponse {
    Json(serde_json::json!({ "status": "ok" }))
}

pub fn router(state: AppState) -> Router {
    let router = Router::new()
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/healthz", get(readyz))
        .with_state(state);
    super::common_layers(router)
}

/// Asks a node's readiness endpoint; `Ok` when it answers 200.
pub async fn probe(addr: SocketAddr) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let target = if addr.ip().is_unspecified() {
        SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
    } else {
        addr
    };
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(target).await?;
        stream
            .write_all(
                format!("GET /readyz HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await?;
        let mut response = Vec::new();
        stream.take(64 * 1024).read_to_end(&mut response).await?;
        std::io::Result::Ok(String::from_utf8_lossy(&response).into_owned())
    };
    let response = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .map_err(|_| anyhow::anyhow!("no answer from {target} within 10 s"))?
        .map_err(|e| anyhow::anyhow!("cannot reach the node's health endpoint at {target}: {e}"))?;
    let status_ok = response
        .lines()
        .next()
        .is_some_and(|l| l.split_whitespace().nth(1) == Some("200"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.trim().to_string())
        .unwrap_or_default();
    if status_ok {
        Ok(body)
    } else {
        anyhow::bail!("the node is not ready: {body}")
    }
}
