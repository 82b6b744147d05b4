//! The audit log page (admins).

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use frontend::Nav;
use frontend::pages;

use super::*;
use crate::http::dto::AuditQuery;

pub(super) async fn audit_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    s: Session,
    q: Result<Query<AuditQuery>, QueryRejection>,
) -> Response {
    if !s.user.role.allows(Role::Admin) {
        return problem(&state, Some(&s), &headers, forbidden(Role::Admin)).await;
    }
    let q = match q {
        Ok(Query(q)) => q,
        Err(e) => {
            let bad = ApiError::bad_request(ErrorCode::InvalidParameter, e.body_text());
            return problem(&state, Some(&s), &headers, bad).await;
        }
    };
    let (entries, next) = match crate::http::audit::page(&state, &q).await {
        Ok(found) => found,
        Err(e) => return problem(&state, Some(&s), &headers, e).await,
    };
    let action = q.action.clone().unwrap_or_default();
    let older = next.map(|cursor| {
        if action.is_empty() {
            format!("/console/audit?cursor={cursor}")
        } else {
            format!("/console/audit?action={action}&cursor={cursor}")
        }
    });
    let view = pages::AuditView {
        entries: entries
            .into_iter()
            .map(|e| pages::AuditRow {
                id: e.id,
                at_ms: e.at_ms,
                actor: e.entry.actor.name,
                address: e.entry.actor.address,
                action: e.entry.action.as_str().to_string(),
                target: e.entry.target,
                detail: e.entry.detail,
                ok: e.entry.ok,
            })
            .collect(),
        action,
        actions: AuditAction::ALL.iter().map(|a| a.as_str()).collect(),
        older,
    };
    render(
        &state,
        Some(&s),
        &headers,
        Page::new("Audit log", Nav::Audit),
        move || pages::audit(view),
    )
    .await
}
