//! The webhooks pages: a user's hooks (an admin's: every hook), registering one (operator; the
//! secret is shown once, on the page itself), deleting one, and a hook's delivery log.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use frontend::pages::{self, FormErrors};
use frontend::{Flash, Nav};
use serde::Deserialize;

use super::*;
use crate::http::dto::{DeliveryQuery, NewWebhook};
use crate::http::webhooks::scope;

fn row(h: &app::model::Webhook) -> pages::HookRow {
    pages::HookRow {
        id: h.id,
        owner: h.owner.clone(),
        url: h.url.clone(),
        run: h.filter.run.map(|r| r.to_hex()),
        author: h.filter.author.map(|a| a.to_hex()),
        created_at_ms: h.created_at_ms,
    }
}

async fn list_render(
    state: &AppState,
    s: &Session,
    headers: &HeaderMap,
    created: Option<(i64, String)>,
    form: pages::HookForm,
    errors: FormErrors,
    status: StatusCode,
) -> Response {
    let hooks = match state.node.webhooks_of(scope(&s.user)).await {
        Ok(h) => h,
        Err(e) => return problem(state, Some(s), headers, e.into()).await,
    };
    let allowed = state.node.webhook_settings().allowed.nets();
    let view = pages::WebhooksView {
        csrf: s.csrf.clone(),
        can_change: s.user.role.allows(Role::Operator),
        hooks: hooks.iter().map(row).collect(),
        created,
        form,
        errors,
        allowed: allowed
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
    };
    render(
        state,
        Some(s),
        headers,
        Page::new("Webhooks", Nav::Webhooks).status(status),
        move || pages::webhooks(view),
    )
    .await
}

pub(super) async fn webhooks_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    s: Session,
) -> Response {
    list_render(
        &state,
        &s,
        &headers,
        None,
        pages::HookForm::default(),
        FormErrors::default(),
        StatusCode::OK,
    )
    .await
}

#[derive(Debug, Deserialize)]
pub(super) struct HookForm {
    pub(super) csrf: String,
    url: String,
    #[serde(default)]
    run: String,
    #[serde(default)]
    author: String,
}

pub(super) async fn create_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    Posted { session: s, form }: Posted<HookForm>,
) -> Response {
    let kept = pages::HookForm {
        url: form.url.clone(),
        run: form.run.clone(),
        author: form.author.clone(),
    };
    let new = NewWebhook {
        url: form.url.trim().to_string(),
        run: Some(form.run),
        author: Some(form.author),
    };
    let mut errors = FormErrors::default();
    let filter = match new.filter() {
        Ok(f) => f,
        Err(e) => {
            let field = if e.detail.starts_with("run") {
                "run"
            } else {
                "author"
            };
            errors.add(field, e.detail);
            let status = StatusCode::UNPROCESSABLE_ENTITY;
            return list_render(&state, &s, &headers, None, kept, errors, status).await;
        }
    };
    match state
        .node
        .create_webhook(&s.actor(), &new.url, filter)
        .await
    {
        // Shown once, on this page (not through a redirect).
        Ok(created) => {
            let shown = Some((created.hook.id, created.secret));
            let (form, status) = (pages::HookForm::default(), StatusCode::OK);
            list_render(&state, &s, &headers, shown, form, errors, status).await
        }
        Err(e) => {
            let e = ApiError::from(e);
            errors.add("url", e.detail.clone());
            list_render(&state, &s, &headers, None, kept, errors, e.status).await
        }
    }
}

pub(super) async fn delete_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Posted {
        session: s,
        form: _,
    }: Posted<DeleteHookForm>,
) -> Response {
    match state
        .node
        .delete_webhook(&s.actor(), id, scope(&s.user))
        .await
    {
        Ok(()) => see_other_with(
            "/console/webhooks",
            Flash::Ok(format!("Webhook {id} deleted.")),
        ),
        Err(e) => problem(&state, Some(&s), &headers, e.into()).await,
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct DeleteHookForm {
    pub(super) csrf: String,
}

/// What a delivery said, in a few words.
fn summary(payload: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(payload).unwrap_or_default();
    match (v["outcome"].as_str(), v["task"]["phase"].as_str()) {
        (Some(outcome), _) => outcome.replace('_', " "),
        (None, Some(phase)) => format!("step {}: {}", v["task"]["step"], phase.replace('_', " ")),
        _ => String::new(),
    }
}

pub(super) async fn webhook_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    s: Session,
    q: Result<Query<DeliveryQuery>, QueryRejection>,
) -> Response {
    let q = match q {
        Ok(Query(q)) => q,
        Err(e) => {
            let bad = ApiError::bad_request(ErrorCode::InvalidParameter, e.body_text());
            return problem(&state, Some(&s), &headers, bad).await;
        }
    };
    let hook = match state.node.webhook(id, scope(&s.user)).await {
        Ok(h) => h,
        Err(e) => return problem(&state, Some(&s), &headers, e.into()).await,
    };
    let (items, next) = match crate::http::webhooks::page(&state, scope(&s.user), id, &q).await {
        Ok(found) => found,
        Err(e) => return problem(&state, Some(&s), &headers, e).await,
    };
    let view = pages::WebhookView {
        hook: row(&hook),
        deliveries: items
            .into_iter()
            .map(|d| pages::DeliveryRow {
                id: d.id,
                summary: summary(&d.payload),
                event: d.event,
                run: d.run.to_hex(),
                state: d.state.as_str().to_string(),
                attempts: d.attempts,
                last_status: d.last_status,
                last_error: d.last_error,
                created_at_ms: d.created_at_ms,
            })
            .collect(),
        older: next.map(|cursor| format!("/console/webhooks/{id}?cursor={cursor}")),
    };
    render(
        &state,
        Some(&s),
        &headers,
        Page::new(format!("Webhook {id}"), Nav::Webhooks),
        move || pages::webhook(view),
    )
    .await
}
