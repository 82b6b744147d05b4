//! The node's effective configuration (secrets shown only as set), version and data directory
//! with what each area holds: for operators, in REST and on the console's settings page.

use axum::Json;
use axum::extract::State;

use app::auth::Role;

use super::AppState;
use super::auth::Caller;
use super::dto::{DataArea, FilesystemSpace, NodeSettings, SettingValue};
use super::error::{ApiError, NotSignedIn, Problem};

/// The node's settings, version and data directory (operator).
#[utoipa::path(
    get,
    path = "/api/v1/node/settings",
    tag = "node",
    responses(
        (status = 200, description = "The effective configuration", body = NodeSettings),
        NotSignedIn,
        (status = 403, description = "Not an operator", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<NodeSettings>, ApiError> {
    caller.require(Role::Operator)?;
    Ok(Json(settings(&state).await))
}

/// What the settings page and the API show.
pub async fn settings(state: &AppState) -> NodeSettings {
    let node = &state.node;
    NodeSettings {
        version: env!("CARGO_PKG_VERSION").to_string(),
        data_directory: node.data_dir().root().display().to_string(),
        data: node.data_use().await.iter().map(DataArea::from).collect(),
        filesystem: node.data_dir().space().ok().map(|s| FilesystemSpace {
            size_bytes: s.size_bytes,
            free_bytes: s.free_bytes,
            min_free_bytes: node.resources().min_free_bytes,
        }),
        settings: state
            .settings
            .iter()
            .map(|s| SettingValue {
                name: s.name.clone(),
                value: s.value.clone(),
                source: s.source.to_string(),
                secret: s.secret,
                help: s.help.clone(),
            })
            .collect(),
    }
}
