//! The signed-in user's page: password and API tokens.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use frontend::pages::{self, FormErrors};
use frontend::{Flash, Nav};
use serde::Deserialize;

use super::*;

pub(super) async fn account_render(
    state: &AppState,
    s: &Session,
    headers: &HeaderMap,
    new_token: Option<String>,
    errors: FormErrors,
    status: StatusCode,
) -> Response {
    let tokens = match state.auth().api_tokens(s.user.id).await {
        Ok(t) => t,
        Err(e) => return problem(state, Some(s), headers, e.into()).await,
    };
    let view = pages::AccountView {
        username: s.user.username.clone(),
        role: s.user.role.as_str().to_string(),
        csrf: s.csrf.clone(),
        tokens: tokens
            .into_iter()
            .map(|t| pages::TokenRow {
                id: t.id,
                name: t.name,
                created_at_ms: t.created_at_ms,
            })
            .collect(),
        new_token,
        errors,
    };
    render(
        state,
        Some(s),
        headers,
        Page::new("Account", Nav::Account).status(status),
        move || pages::account(view),
    )
    .await
}

pub(super) async fn account_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    s: Session,
) -> Response {
    account_render(
        &state,
        &s,
        &headers,
        None,
        FormErrors::default(),
        StatusCode::OK,
    )
    .await
}

#[derive(Debug, Deserialize)]
pub(super) struct PasswordForm {
    pub(super) csrf: String,
    current: String,
    new: String,
}

pub(super) async fn change_password(
    State(state): State<AppState>,
    headers: HeaderMap,
    Posted { session: s, form }: Posted<PasswordForm>,
) -> Response {
    let changed = state
        .auth()
        .change_password(&s.user, &form.current, &form.new)
        .await;
    state
        .node
        .record(
            &s.actor(),
            AuditAction::PasswordChanged,
            Some(&s.user.username),
            changed.as_ref().err().map(|e| e.code()),
            changed.is_ok(),
        )
        .await;
    match changed {
        Ok(()) => see_other_with("/console/account", Flash::Ok("Password changed.".into())),
        Err(e) => {
            let e = ApiError::from(e);
            let mut errors = FormErrors::default();
            errors.add("", e.detail.clone());
            account_render(&state, &s, &headers, None, errors, e.status).await
        }
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct TokenForm {
    pub(super) csrf: String,
    name: String,
}

pub(super) async fn create_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    Posted { session: s, form }: Posted<TokenForm>,
) -> Response {
    let name = form.name.trim();
    let mut errors = FormErrors::default();
    if name.is_empty() {
        errors.add("", "Name the token, e.g. after the machine that uses it.");
        return account_render(
            &state,
            &s,
            &headers,
            None,
            errors,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    match state.auth().create_token(&s.user, name).await {
        // Shown once, on this page (not through a redirect).
        Ok(token) => {
            state
                .node
                .record(
                    &s.actor(),
                    AuditAction::TokenCreated,
                    Some(name),
                    None,
                    true,
                )
                .await;
            account_render(&state, &s, &headers, Some(token), errors, StatusCode::OK).await
        }
        Err(e) => {
            let e = ApiError::from(e);
            errors.add("", e.detail.clone());
            account_render(&state, &s, &headers, None, errors, e.status).await
        }
    }
}

pub(super) async fn delete_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Posted {
        session: s,
        form: _,
    }: Posted<CsrfForm>,
) -> Response {
    match state.auth().delete_token(id, s.user.id).await {
        Ok(true) => {
            state
                .node
                .record(
                    &s.actor(),
                    AuditAction::TokenDeleted,
                    Some(&format!("token {id}")),
                    None,
                    true,
                )
                .await;
            see_other_with("/console/account", Flash::Ok("Token deleted.".into()))
        }
        Ok(false) => see_other_with(
            "/console/account",
            Flash::Error("There is no such token of yours (already deleted?).".into()),
        ),
        Err(e) => problem(&state, Some(&s), &headers, e.into()).await,
    }
}
