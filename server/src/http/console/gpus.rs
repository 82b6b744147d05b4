//! The GPU pool page and its changes (operators).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use frontend::pages::{self};
use frontend::{Flash, Nav};
use serde::Deserialize;

use super::*;

pub(super) async fn gpus_render(
    state: &AppState,
    s: &Session,
    headers: &HeaderMap,
    error: Option<String>,
    status: StatusCode,
) -> Response {
    let (gpus, error) = match state.node.gpus().await {
        Ok(g) => (g, error),
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    let view = pages::GpusView {
        gpus,
        can_edit: s.user.role.allows(Role::Operator),
        csrf: s.csrf.clone(),
        error,
    };
    render(
        state,
        Some(s),
        headers,
        Page::new("GPUs", Nav::Gpus).status(status),
        move || pages::gpus(view),
    )
    .await
}

pub(super) async fn gpus_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    s: Session,
) -> Response {
    gpus_render(&state, &s, &headers, None, StatusCode::OK).await
}

#[derive(Debug, Deserialize)]
pub(super) struct GpuForm {
    pub(super) csrf: String,
    action: String,
    #[serde(default)]
    reason: String,
}

pub(super) async fn change_gpu(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(address): Path<String>,
    Posted { session: s, form }: Posted<GpuForm>,
) -> Response {
    let change = crate::http::gpus::PoolChange {
        action: form.action.clone(),
        reason: Some(form.reason.clone()),
    };
    match crate::http::gpus::apply_change(&state, &address, &change, &s.actor()).await {
        Ok(_) => see_other_with(
            "/console/gpus",
            Flash::Ok(format!("{address}: {} done.", form.action)),
        ),
        Err(e) => {
            gpus_render(
                &state,
                &s,
                &headers,
                Some(format!("{address}: {}", e.detail)),
                e.status,
            )
            .await
        }
    }
}
