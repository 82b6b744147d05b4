//! GPUs, the signed-in user's account (password, API tokens) and the admin's users page.

use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use frontend::pages::{self, FormErrors};
use frontend::{Flash, Nav};
use serde::Deserialize;

use super::*;

// --- GPUs ----------------------------------------------------------------------------------

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
    uri: Uri,
) -> Response {
    let s = signed_in!(state, headers, uri);
    gpus_render(&state, &s, &headers, None, StatusCode::OK).await
}

#[derive(Debug, Deserialize)]
pub(super) struct GpuForm {
    csrf: String,
    action: String,
    #[serde(default)]
    reason: String,
}

pub(super) async fn change_gpu(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(address): Path<String>,
    Form(form): Form<GpuForm>,
) -> Response {
    let s = match form_session(&state, &headers, &uri, &form.csrf, Role::Operator).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let change = crate::http::gpus::PoolChange {
        action: form.action.clone(),
        reason: Some(form.reason.clone()),
    };
    match crate::http::gpus::apply_change(&state, &address, &change, &s.user.username).await {
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

// --- account and users ---------------------------------------------------------------------

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
    uri: Uri,
) -> Response {
    let s = signed_in!(state, headers, uri);
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
    csrf: String,
    current: String,
    new: String,
}

pub(super) async fn change_password(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Form(form): Form<PasswordForm>,
) -> Response {
    let s = match form_session(&state, &headers, &uri, &form.csrf, Role::Viewer).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    match state
        .auth()
        .change_password(&s.user, &form.current, &form.new)
        .await
    {
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
    csrf: String,
    name: String,
}

pub(super) async fn create_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Form(form): Form<TokenForm>,
) -> Response {
    let s = match form_session(&state, &headers, &uri, &form.csrf, Role::Viewer).await {
        Ok(s) => s,
        Err(r) => return r,
    };
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
    uri: Uri,
    Path(id): Path<i64>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let s = match form_session(&state, &headers, &uri, &form.csrf, Role::Viewer).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    match state.auth().delete_token(id, s.user.id).await {
        Ok(true) => see_other_with("/console/account", Flash::Ok("Token deleted.".into())),
        Ok(false) => see_other_with(
            "/console/account",
            Flash::Error("There is no such token of yours (already deleted?).".into()),
        ),
        Err(e) => problem(&state, Some(&s), &headers, e.into()).await,
    }
}

pub(super) async fn users_render(
    state: &AppState,
    s: &Session,
    headers: &HeaderMap,
    username: String,
    role: String,
    errors: FormErrors,
    status: StatusCode,
) -> Response {
    let users = match state.auth().list_users().await {
        Ok(u) => u,
        Err(e) => return problem(state, Some(s), headers, e.into()).await,
    };
    let view = pages::UsersView {
        users: users
            .into_iter()
            .map(|u| pages::UserRow {
                id: u.id,
                username: u.username,
                role: u.role.as_str().to_string(),
            })
            .collect(),
        csrf: s.csrf.clone(),
        username,
        role,
        errors,
    };
    render(
        state,
        Some(s),
        headers,
        Page::new("Users", Nav::Users).status(status),
        move || pages::users(view),
    )
    .await
}

pub(super) async fn users_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let s = signed_in!(state, headers, uri);
    if !s.user.role.allows(Role::Admin) {
        return problem(&state, Some(&s), &headers, forbidden(Role::Admin)).await;
    }
    users_render(
        &state,
        &s,
        &headers,
        String::new(),
        "viewer".into(),
        FormErrors::default(),
        StatusCode::OK,
    )
    .await
}

#[derive(Debug, Deserialize)]
pub(super) struct UserForm {
    csrf: String,
    username: String,
    password: String,
    role: String,
}

pub(super) async fn create_user(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Form(form): Form<UserForm>,
) -> Response {
    let s = match form_session(&state, &headers, &uri, &form.csrf, Role::Admin).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let mut errors = FormErrors::default();
    let Some(role) = Role::parse(&form.role) else {
        errors.add("role", "Choose viewer, operator or admin.");
        return users_render(
            &state,
            &s,
            &headers,
            form.username,
            form.role,
            errors,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    };
    match state
        .auth()
        .create_user(form.username.trim(), &form.password, role)
        .await
    {
        Ok(u) => {
            tracing::info!(target: "gevulot", by = %s.user.username, user = %u.username, role = %u.role, "user created");
            see_other_with(
                "/console/users",
                Flash::Ok(format!("{} can sign in now, as {}.", u.username, u.role)),
            )
        }
        Err(e) => {
            let e = ApiError::from(e);
            errors.add(
                if e.code == ErrorCode::WeakPassword {
                    "password"
                } else {
                    "username"
                },
                e.detail.clone(),
            );
            users_render(
                &state,
                &s,
                &headers,
                form.username,
                form.role,
                errors,
                e.status,
            )
            .await
        }
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct RoleForm {
    csrf: String,
    role: String,
}

pub(super) async fn set_role(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<i64>,
    Form(form): Form<RoleForm>,
) -> Response {
    let s = match form_session(&state, &headers, &uri, &form.csrf, Role::Admin).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Some(role) = Role::parse(&form.role) else {
        return see_other_with(
            "/console/users",
            Flash::Error(format!(
                "{:?} is not a role; choose viewer, operator or admin.",
                form.role
            )),
        );
    };
    if id == s.user.id && role != Role::Admin {
        return see_other_with(
            "/console/users",
            Flash::Error("You cannot take the admin role from yourself; ask another admin.".into()),
        );
    }
    match state.auth().set_role(id, role).await {
        Ok(true) => see_other_with("/console/users", Flash::Ok("Role changed.".into())),
        Ok(false) => see_other_with(
            "/console/users",
            Flash::Error("There is no such user.".into()),
        ),
        Err(e) => problem(&state, Some(&s), &headers, e.into()).await,
    }
}
