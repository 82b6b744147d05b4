//! Authentication on the main server: console sessions (cookie `gevulot_session`, HttpOnly,
//! SameSite=Strict, `Secure` when `GEVULOT_SECURE_COOKIES` is set) and API tokens
//! (`Authorization: Bearer gvt_…`).
//!
//! *Invariant:* a state-changing request authenticated by a session cookie must carry the
//! session's CSRF token (`X-CSRF-Token` header, or the `csrf_token` form field for console forms);
//! a bearer token needs none, because browsers never send it on their own.
//!
//! What is public is deliberate (`docs/API-DESIGN.md`): the original JSON-RPC methods, reading,
//! and submitting signed transactions. Operator actions and user management need a role.

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use app::auth::{AuthError, Role, User};
use app::model::AuditAction;

use super::AppState;
use super::dto::{json_body, rfc3339};
use super::error::{ApiError, BadInput, ErrorCode, NotSignedIn, Problem};

pub const SESSION_COOKIE: &str = "gevulot_session";
pub const CSRF_HEADER: &str = "x-csrf-token";

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        let status = match &e {
            AuthError::BadCredentials => StatusCode::UNAUTHORIZED,
            AuthError::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
            AuthError::UsernameTaken(_) => StatusCode::CONFLICT,
            AuthError::BadUsername(_) | AuthError::WeakPassword(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            AuthError::SetupUnavailable => StatusCode::FORBIDDEN,
            AuthError::Hashing => StatusCode::INTERNAL_SERVER_ERROR,
            AuthError::Store(s) => return ApiError::unavailable(s),
        };
        ApiError::new(status, ErrorCode::of_core(e.code()), e.to_string())
    }
}

/// How the caller proved who they are.
#[derive(Clone, Debug)]
pub enum Via {
    Session { token: String, csrf: String },
    Token,
}

/// A signed-in caller. Extracting it answers 401 when there is none, and 403 when a
/// session-authenticated unsafe request lacks the session's CSRF token.
#[derive(Clone, Debug)]
pub struct Caller {
    pub user: User,
    pub via: Via,
}

impl Caller {
    /// Who acts, for the audit log: the user, from the request's client address.
    pub fn actor(&self) -> app::model::Actor {
        app::model::Actor::user(&self.user.username, super::client::address())
    }

    /// 403 unless the caller's role includes `role`.
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.user.role.allows(role) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                ErrorCode::Forbidden,
                format!(
                    "this needs the {role} role; {} is {}",
                    self.user.username, self.user.role
                ),
            ))
        }
    }
}

/// The value of cookie `name`, if the request sent it.
pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
}

fn unauthorized() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        ErrorCode::Unauthorized,
        "sign in (POST /api/v1/session) or send an API token as `Authorization: Bearer …`",
    )
}

/// The caller, if any, without requiring one.
pub async fn identify(state: &AppState, headers: &HeaderMap) -> Result<Option<Caller>, ApiError> {
    if let Some(token) = bearer(headers) {
        return match state.auth().token_user(&token).await? {
            Some(user) => Ok(Some(Caller {
                user,
                via: Via::Token,
            })),
            None => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                ErrorCode::Unauthorized,
                "the API token is unknown or was deleted",
            )),
        };
    }
    if let Some(token) = cookie(headers, SESSION_COOKIE)
        && let Some((user, csrf)) = state.auth().session(&token).await?
    {
        return Ok(Some(Caller {
            user,
            via: Via::Session { token, csrf },
        }));
    }
    Ok(None)
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = identify(state, &parts.headers)
            .await?
            .ok_or_else(unauthorized)?;
        let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        if let Via::Session { csrf, .. } = &caller.via
            && !safe
        {
            let sent = parts
                .headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !constant_time_eq(sent.as_bytes(), csrf.as_bytes()) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    ErrorCode::CsrfRequired,
                    "a signed-in change needs the session's CSRF token in the X-CSRF-Token header",
                ));
            }
        }
        Ok(caller)
    }
}

/// Records what a user did as themselves before a session existed (a sign-in, the first-admin
/// setup), from the request's client address.
pub async fn record_own(
    state: &AppState,
    username: &str,
    action: AuditAction,
    detail: Option<&str>,
) {
    let actor = app::model::Actor::user(username, super::client::address());
    state
        .node
        .record(&actor, action, Some(username), detail, true)
        .await;
}

/// Records a refused sign-in (the REST API's and the console's): who it claimed to be, from
/// where, and why (`code`).
pub async fn sign_in_refused(state: &AppState, username: &str, code: &str) {
    tracing::warn!(target: "gevulot", user = %username, reason = code, "sign-in refused");
    let claimed: String = username.chars().take(64).collect();
    let actor = app::model::Actor::user("anonymous", super::client::address());
    state
        .node
        .record(
            &actor,
            AuditAction::SignInFailed,
            Some(&claimed),
            Some(code),
            false,
        )
        .await;
}

/// Compares secrets without an early exit that would tell how much of them matched.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UserInfo {
    pub id: i64,
    pub username: String,
    /// `viewer`, `operator` or `admin`.
    pub role: String,
    pub created_at: String,
}

impl From<&User> for UserInfo {
    fn from(u: &User) -> Self {
        Self {
            id: u.id,
            username: u.username.clone(),
            role: u.role.as_str().to_string(),
            created_at: rfc3339(u.created_at_ms),
        }
    }
}

#[derive(Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, [redacted])", self.username)
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SessionInfo {
    pub user: UserInfo,
    /// Send as `X-CSRF-Token` with every change made through this session.
    pub csrf_token: Option<String>,
    pub expires_at: Option<String>,
}

pub(crate) fn session_cookie(state: &AppState, token: &str, max_age_secs: i64) -> HeaderValue {
    let secure = if state.secure_cookies { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age_secs}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("gevulot_session=; Max-Age=0; Path=/"))
}

/// Sign in.
#[utoipa::path(
    post,
    path = "/api/v1/session",
    tag = "auth",
    request_body = Credentials,
    responses(
        BadInput,
        (status = 200, description = "Signed in; the session cookie is set", body = SessionInfo),
        (status = 401, description = "Wrong username or password", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many failed attempts for this user", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn login(
    State(state): State<AppState>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let creds: Credentials = json_body(&body)?;
    match state.auth().login(&creds.username, &creds.password).await {
        Ok(session) => {
            record_own(&state, &session.user.username, AuditAction::SignIn, None).await;
            let mut response = Json(SessionInfo {
                user: (&session.user).into(),
                csrf_token: Some(session.csrf_token.clone()),
                expires_at: Some(rfc3339(session.expires_at_ms)),
            })
            .into_response();
            let ttl = session.max_age_secs();
            response.headers_mut().insert(
                header::SET_COOKIE,
                session_cookie(&state, &session.token, ttl),
            );
            Ok(response)
        }
        Err(e) => {
            sign_in_refused(&state, &creds.username, e.code()).await;
            let retry = match &e {
                AuthError::Throttled { retry_after_secs } => Some(*retry_after_secs),
                _ => None,
            };
            let mut response = ApiError::from(e).into_response();
            if let Some(secs) = retry
                && let Ok(v) = HeaderValue::from_str(&secs.to_string())
            {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
            Ok(response)
        }
    }
}

/// Who is signed in.
#[utoipa::path(
    get,
    path = "/api/v1/session",
    tag = "auth",
    responses(
        (status = 200, description = "The caller", body = SessionInfo),
        NotSignedIn,
    )
)]
pub async fn whoami(caller: Caller) -> Json<SessionInfo> {
    let csrf_token = match &caller.via {
        Via::Session { csrf, .. } => Some(csrf.clone()),
        Via::Token => None,
    };
    Json(SessionInfo {
        user: (&caller.user).into(),
        csrf_token,
        expires_at: None,
    })
}

/// Sign out.
#[utoipa::path(
    delete,
    path = "/api/v1/session",
    tag = "auth",
    responses((status = 204, description = "Signed out; the cookie is cleared"))
)]
pub async fn logout(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    if let Via::Session { token, .. } = &caller.via {
        state.auth().logout(token).await?;
        state
            .node
            .record(
                &caller.actor(),
                AuditAction::SignOut,
                Some(&caller.user.username),
                None,
                true,
            )
            .await;
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, session_cookie(&state, "", 0));
    Ok(response)
}

#[derive(Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    pub current_password: String,
    /// 10 to 256 characters.
    #[schema(min_length = 10, max_length = 256)]
    pub new_password: String,
}

/// Change your password (ends all your sessions).
#[utoipa::path(
    post,
    path = "/api/v1/session/password",
    tag = "auth",
    request_body = PasswordChange,
    responses(
        BadInput,
        (status = 204, description = "Changed; sign in again"),
        (status = 401, description = "Wrong current password", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The new password is too short or too long (`weak_password`)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn change_password(
    State(state): State<AppState>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    let change: PasswordChange = json_body(&body)?;
    let changed = state
        .auth()
        .change_password(&caller.user, &change.current_password, &change.new_password)
        .await;
    state
        .node
        .record(
            &caller.actor(),
            AuditAction::PasswordChanged,
            Some(&caller.user.username),
            changed.as_ref().err().map(|e| e.code()),
            changed.is_ok(),
        )
        .await;
    changed?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UserList {
    pub items: Vec<UserInfo>,
}

/// List console users (admin).
#[utoipa::path(
    get,
    path = "/api/v1/users",
    tag = "auth",
    responses(
        (status = 200, description = "Users", body = UserList),
        NotSignedIn,
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_users(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<UserList>, ApiError> {
    caller.require(Role::Admin)?;
    let users = state.auth().list_users().await?;
    Ok(Json(UserList {
        items: users.iter().map(UserInfo::from).collect(),
    }))
}

#[derive(Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// Letters, digits, `.`, `_` and `-`; 1 to 64 characters.
    #[schema(pattern = r"^[A-Za-z0-9._-]{1,64}$", min_length = 1, max_length = 64)]
    pub username: String,
    /// 10 to 256 characters.
    #[schema(min_length = 10, max_length = 256)]
    pub password: String,
    /// `viewer`, `operator` or `admin`.
    #[schema(value_type = api::dto::RoleName)]
    pub role: String,
}

/// Create a console user (admin).
#[utoipa::path(
    post,
    path = "/api/v1/users",
    tag = "auth",
    request_body = NewUser,
    responses(
        BadInput,
        (status = 201, description = "Created", body = UserInfo),
        (status = 403, description = "Not an admin, or no CSRF token", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Username taken", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad username, password or role", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_user(
    State(state): State<AppState>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<UserInfo>), ApiError> {
    caller.require(Role::Admin)?;
    let new: NewUser = json_body(&body)?;
    let role = Role::parse(&new.role).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::BadRole,
            format!("role {:?} is not one of viewer, operator, admin", new.role),
        )
    })?;
    let user = state
        .auth()
        .create_user(&new.username, &new.password, role)
        .await?;
    state
        .node
        .record(
            &caller.actor(),
            AuditAction::UserCreated,
            Some(&user.username),
            Some(user.role.as_str()),
            true,
        )
        .await;
    Ok((StatusCode::CREATED, Json((&user).into())))
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// What the token is for, e.g. `ci`: 1 to 128 characters.
    #[schema(min_length = 1, max_length = 128)]
    pub name: String,
}

#[derive(Clone, Serialize, ToSchema)]
pub struct CreatedToken {
    pub name: String,
    /// The token. It is shown only now; the node keeps only a digest.
    pub token: String,
}

/// Create an API token for yourself (shown once).
#[utoipa::path(
    post,
    path = "/api/v1/tokens",
    tag = "auth",
    request_body = NewToken,
    responses(
        BadInput,
        (status = 201, description = "Created", body = CreatedToken),
        NotSignedIn,
        (status = 422, description = "A name that is empty or longer than 128 characters", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    let new: NewToken = json_body(&body)?;
    if new.name.is_empty() || new.name.chars().count() > 128 {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::InvalidParameter,
            "name: 1 to 128 characters",
        ));
    }
    let token = state.auth().create_token(&caller.user, &new.name).await?;
    state
        .node
        .record(
            &caller.actor(),
            AuditAction::TokenCreated,
            Some(&new.name),
            None,
            true,
        )
        .await;
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            name: new.name,
            token,
        }),
    ))
}

#[derive(Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Setup {
    /// The one-time token the node printed on its first start.
    pub token: String,
    /// Letters, digits, `.`, `_` and `-`; 1 to 64 characters.
    #[schema(pattern = r"^[A-Za-z0-9._-]{1,64}$", min_length = 1, max_length = 64)]
    pub username: String,
    /// 10 to 256 characters.
    #[schema(min_length = 10, max_length = 256)]
    pub password: String,
}

/// Create the first admin with the one-time setup token.
#[utoipa::path(
    post,
    path = "/api/v1/setup",
    tag = "auth",
    request_body = Setup,
    responses(
        BadInput,
        (status = 201, description = "The first admin", body = UserInfo),
        (status = 403, description = "Wrong or used token, or users exist", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A bad username (`bad_username`) or password (`weak_password`)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn setup(
    State(state): State<AppState>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<UserInfo>), ApiError> {
    let setup: Setup = json_body(&body)?;
    let user = state
        .auth()
        .setup(&setup.token, &setup.username, &setup.password)
        .await?;
    record_own(
        &state,
        &user.username,
        AuditAction::Setup,
        Some("first admin created with the setup token"),
    )
    .await;
    Ok((StatusCode::CREATED, Json((&user).into())))
}
