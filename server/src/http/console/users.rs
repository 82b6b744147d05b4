//! Users and their roles (admins).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use frontend::pages::{self, FormErrors};
use frontend::{Flash, Nav};
use serde::Deserialize;

use super::*;

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
    s: Session,
) -> Response {
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
    pub(super) csrf: String,
    username: String,
    password: String,
    role: String,
}

pub(super) async fn create_user(
    State(state): State<AppState>,
    headers: HeaderMap,
    Posted { session: s, form }: Posted<UserForm>,
) -> Response {
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
            state
                .node
                .record(
                    &s.actor(),
                    AuditAction::UserCreated,
                    Some(&u.username),
                    Some(u.role.as_str()),
                    true,
                )
                .await;
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
    pub(super) csrf: String,
    role: String,
}

pub(super) async fn set_role(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Posted { session: s, form }: Posted<RoleForm>,
) -> Response {
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
        Ok(true) => {
            state
                .node
                .record(
                    &s.actor(),
                    AuditAction::RoleChanged,
                    Some(&format!("user {id}")),
                    Some(role.as_str()),
                    true,
                )
                .await;
            see_other_with("/console/users", Flash::Ok("Role changed.".into()))
        }
        Ok(false) => see_other_with(
            "/console/users",
            Flash::Error("There is no such user.".into()),
        ),
        Err(e) => problem(&state, Some(&s), &headers, e.into()).await,
    }
}
