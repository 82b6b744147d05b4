//! The drain switch (operator): while the node drains no new task starts, running tasks
//! finish, and readiness says `draining`, so that it can be upgraded or restarted without losing
//! work; the operator's drain is kept across restarts until resumed. `SIGTERM` drains too, for
//! `GEVULOT_SHUTDOWN_GRACE` seconds before the node stops, and that drain is not kept.

use axum::Json;
use axum::extract::State;
use tracing::info;

use app::auth::Role;
use app::model::{Actor, AuditAction};

use super::AppState;
use super::auth::Caller;
use super::dto::Drain;
use super::error::{ApiError, NotSignedIn, Problem};

/// Whether the node drains, and what still runs and waits (any signed-in role).
#[utoipa::path(
    get,
    path = "/api/v1/node/drain",
    tag = "node",
    responses(
        (status = 200, description = "The drain state", body = Drain),
        NotSignedIn,
    )
)]
pub async fn state(State(state): State<AppState>, caller: Caller) -> Result<Json<Drain>, ApiError> {
    caller.require(Role::Viewer)?;
    Ok(Json(state.node.drain_state().into()))
}

/// Drain the node (operator): no new task starts; running tasks finish; new transactions are
/// still accepted. The node takes no new Run, and hands the Runs it holds whose step is not
/// running to other nodes (with none, they wait until a node can take them). The drain outlives
/// a restart: the node starts drained until it is resumed. Draining a draining node changes
/// nothing.
#[utoipa::path(
    post,
    path = "/api/v1/node/drain",
    tag = "node",
    responses(
        (status = 200, description = "The node drains", body = Drain),
        NotSignedIn,
        (status = 403, description = "Not an operator, or no CSRF token", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn start(State(state): State<AppState>, caller: Caller) -> Result<Json<Drain>, ApiError> {
    caller.require(Role::Operator)?;
    Ok(Json(drain(&state, &caller.actor()).await.into()))
}

/// Stop draining (operator): waiting tasks start as resources allow, now and after a restart.
#[utoipa::path(
    delete,
    path = "/api/v1/node/drain",
    tag = "node",
    responses(
        (status = 200, description = "The node takes work again", body = Drain),
        NotSignedIn,
        (status = 403, description = "Not an operator, or no CSRF token", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn stop(State(state): State<AppState>, caller: Caller) -> Result<Json<Drain>, ApiError> {
    caller.require(Role::Operator)?;
    Ok(Json(resume(&state, &caller.actor()).await.into()))
}

/// Drains on behalf of `by` (the REST API's and the console's switch).
pub async fn drain(state: &AppState, by: &Actor) -> app::node::DrainState {
    let (now, changed) = state.node.drain().await;
    if changed {
        info!(target: "gevulot", by = %by.name, running = now.running, waiting = now.waiting, "draining: no new task starts until the node is resumed");
        let detail = format!("{} running, {} waiting", now.running, now.waiting);
        state
            .node
            .record(by, AuditAction::Drain, None, Some(&detail), true)
            .await;
    }
    now
}

/// Resumes on behalf of `by`.
pub async fn resume(state: &AppState, by: &Actor) -> app::node::DrainState {
    let (now, changed) = state.node.resume().await;
    if changed {
        info!(target: "gevulot", by = %by.name, waiting = now.waiting, "resumed: waiting tasks start as resources allow");
        state
            .node
            .record(by, AuditAction::Resume, None, None, true)
            .await;
    }
    now
}
