//! Signing in and out, and creating the first admin with the setup token.

use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use frontend::pages::{self, FormErrors};
use frontend::{Flash, Nav};
use serde::Deserialize;

use super::*;

// --- sign-in -------------------------------------------------------------------------------

#[derive(Debug, Deserialize, Default)]
pub(super) struct NextQuery {
    next: Option<String>,
}

/// Only console paths are followed after sign-in (no open redirect).
pub(super) fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with("/console") && !n.starts_with("//") && !n.contains('\\') => {
            n.to_string()
        }
        _ => "/console".to_string(),
    }
}

pub(super) async fn sign_in_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<NextQuery>,
) -> Response {
    if session(&state, &headers).await.is_some() {
        return see_other(&safe_next(q.next.as_deref()));
    }
    let first_run = state.auth().list_users().await.is_ok_and(|u| u.is_empty());
    let (csrf, set) = form_token(&headers);
    let view = pages::SignInView {
        next: safe_next(q.next.as_deref()),
        first_run,
        csrf,
        ..Default::default()
    };
    let page = render(
        &state,
        None,
        &headers,
        Page::new("Sign in", Nav::None),
        move || pages::sign_in(view),
    )
    .await;
    with_cookie(page, set)
}

#[derive(Debug, Deserialize)]
pub(super) struct SignInForm {
    #[serde(default)]
    csrf: String,
    username: String,
    password: String,
    next: Option<String>,
}

pub(super) async fn sign_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<SignInForm>,
) -> Response {
    let next = safe_next(form.next.as_deref());
    let login = if form_token_ok(&headers, &form.csrf) {
        state
            .auth()
            .login(&form.username, &form.password)
            .await
            .map_err(Some)
    } else {
        Err(None)
    };
    match login {
        Ok(s) => {
            crate::http::auth::record_own(
                &state,
                &s.user.username,
                AuditAction::SignIn,
                Some("console"),
            )
            .await;
            let mut response = see_other(&next);
            let ttl = s.max_age_secs();
            response.headers_mut().append(
                header::SET_COOKIE,
                crate::http::auth::session_cookie(&state, &s.token, ttl),
            );
            response
        }
        Err(e) => {
            let (status, error) = match e {
                None => (StatusCode::FORBIDDEN, STALE_FORM),
                Some(e) => {
                    crate::http::auth::sign_in_refused(&state, &form.username, e.code()).await;
                    let status = ApiError::from(e).status;
                    let error = match status {
                        StatusCode::TOO_MANY_REQUESTS => {
                            "Too many failed attempts for this user; wait a minute and try again."
                        }
                        StatusCode::UNAUTHORIZED => "Wrong username or password.",
                        _ => "Signing in is not possible right now; check that the database is up.",
                    };
                    (status, error)
                }
            };
            let (csrf, set) = form_token(&headers);
            let view = pages::SignInView {
                username: form.username,
                error: Some(error.to_string()),
                next,
                first_run: false,
                csrf,
            };
            let page = render(
                &state,
                None,
                &headers,
                Page::new("Sign in", Nav::None).status(status),
                move || pages::sign_in(view),
            )
            .await;
            with_cookie(page, set)
        }
    }
}

pub(super) async fn setup_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let (csrf, set) = form_token(&headers);
    let view = pages::SetupView {
        username: "admin".into(),
        csrf,
        ..Default::default()
    };
    let page = render(
        &state,
        None,
        &headers,
        Page::new("Create the first admin", Nav::None),
        move || pages::setup(view),
    )
    .await;
    with_cookie(page, set)
}

#[derive(Debug, Deserialize)]
pub(super) struct SetupForm {
    #[serde(default)]
    csrf: String,
    token: String,
    username: String,
    password: String,
}

/// Creates the first admin with the one-time token, then signs them in.
pub(super) async fn setup(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<SetupForm>,
) -> Response {
    let username = form.username.trim().to_string();
    let login = if form_token_ok(&headers, &form.csrf) {
        let created = state
            .auth()
            .setup(form.token.trim(), &username, &form.password)
            .await;
        match created {
            Ok(_) => state
                .auth()
                .login(&username, &form.password)
                .await
                .map_err(Some),
            Err(e) => Err(Some(e)),
        }
    } else {
        Err(None)
    };
    match login {
        Ok(s) => {
            crate::http::auth::record_own(
                &state,
                &s.user.username,
                AuditAction::Setup,
                Some("first admin created in the console"),
            )
            .await;
            let mut response = see_other_with(
                "/console",
                Flash::Ok("Welcome: you are the node's first admin.".into()),
            );
            let ttl = s.max_age_secs();
            response.headers_mut().append(
                header::SET_COOKIE,
                crate::http::auth::session_cookie(&state, &s.token, ttl),
            );
            response
        }
        Err(e) => {
            let mut errors = FormErrors::default();
            let status = match e {
                None => {
                    errors.add("", STALE_FORM);
                    StatusCode::FORBIDDEN
                }
                Some(e) => {
                    let e = ApiError::from(e);
                    let field = match e.code {
                        ErrorCode::WeakPassword => "password",
                        ErrorCode::BadUsername => "username",
                        _ => "token",
                    };
                    errors.add(field, e.detail.clone());
                    e.status
                }
            };
            let (csrf, set) = form_token(&headers);
            let view = pages::SetupView {
                username,
                errors,
                csrf,
            };
            let page = render(
                &state,
                None,
                &headers,
                Page::new("Create the first admin", Nav::None).status(status),
                move || pages::setup(view),
            )
            .await;
            with_cookie(page, set)
        }
    }
}

pub(super) async fn sign_out(
    State(state): State<AppState>,
    _headers: HeaderMap,
    Posted {
        session: s,
        form: _,
    }: Posted<CsrfForm>,
) -> Response {
    if state.auth().logout(&s.token).await.is_ok() {
        let who = s.user.username.clone();
        state
            .node
            .record(&s.actor(), AuditAction::SignOut, Some(&who), None, true)
            .await;
    }
    let mut response = see_other_with("/console/sign-in", Flash::Ok("Signed out.".into()));
    response.headers_mut().append(
        header::SET_COOKIE,
        crate::http::auth::session_cookie(&state, "", 0),
    );
    response
}
