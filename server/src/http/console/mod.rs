//! The operator console under `/console`: routes, sessions, CSRF and form handling over the
//! core API; the pages themselves come from the `frontend` crate. Every form is a plain HTML form
//! that carries the session's CSRF token; a change answers `303 See Other` to the page that shows
//! its result (with a one-time flash message), and a refused form is shown again with the user's
//! input and a message at each field to change. `console.js` asks for a page's live sections
//! alone with the `X-Console-Fragment` header.

use std::collections::HashMap;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Form, FromRequest, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use frontend::pages;
use frontend::{Chrome, Flash, Nav, NodeBadge, Viewer};
use leptos::prelude::IntoAny as _;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use app::auth::{Role, User};
use app::model::{AuditAction, Phase, Source};
use app::tx::rpc::TransactionTree;
use app::tx::{Hash, Kind, Payload, ProgramData};

use super::AppState;
use super::auth::{Via, constant_time_eq, cookie, identify};
use super::error::{ApiError, ErrorCode};
use app::node::{ImageSource, InputSource, InputSpec, ProgramSpec, StepSpec};
use app::tx::ResourceRequest;

const FLASH_COOKIE: &str = "gevulot_flash";
const FRAGMENT_HEADER: &str = "x-console-fragment";
/// The CSRF token of the forms used before there is a session (sign-in, first admin), sent both
/// as a cookie and in the form (double submit).
const FORM_COOKIE: &str = "gevulot_form";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/console", get(dashboard))
        .route("/console/", get(dashboard))
        .route("/console/assets/console.css", get(css))
        .route("/console/assets/console.js", get(js))
        .route("/console/sign-in", get(sign_in_page).post(sign_in))
        .route("/console/sign-out", post(sign_out))
        .route("/console/drain", post(dashboard::drain))
        .route("/console/drain/resume", post(dashboard::resume))
        .route("/console/setup", get(setup_page).post(setup))
        .route(
            "/console/programs",
            get(programs_page)
                .post(deploy)
                .layer(DefaultBodyLimit::disable()),
        )
        .route("/console/programs/{hash}", get(program_page))
        .route("/console/runs/new", get(new_run_page))
        .route(
            "/console/runs",
            post(start_run).layer(DefaultBodyLimit::disable()),
        )
        .route("/console/transactions", get(transactions_page))
        .route("/console/transactions/{hash}", get(transaction_page))
        .route("/console/transactions/{hash}/cancel", post(cancel))
        .route("/console/files", get(files_page))
        .route("/console/gpus", get(gpus_page))
        .route("/console/gpus/{address}", post(change_gpu))
        .route("/console/account", get(account_page))
        .route("/console/account/password", post(change_password))
        .route("/console/account/tokens", post(create_token))
        .route("/console/account/tokens/{id}/delete", post(delete_token))
        .route("/console/users", get(users_page).post(create_user))
        .route("/console/settings", get(settings_page))
        .route("/console/network", get(network_page))
        .route("/console/audit", get(audit_page))
        .route(
            "/console/webhooks",
            get(webhooks::webhooks_page).post(webhooks::create_webhook),
        )
        .route("/console/webhooks/{id}", get(webhooks::webhook_page))
        .route(
            "/console/webhooks/{id}/delete",
            post(webhooks::delete_webhook),
        )
        .route("/console/users/{id}/role", post(set_role))
}

/// Whether a request is a console upload (exempt from the request timeout).
pub fn is_upload(method: &axum::http::Method, path: &str) -> bool {
    method == axum::http::Method::POST && matches!(path, "/console/programs" | "/console/runs")
}

async fn css() -> Response {
    asset("text/css; charset=utf-8", frontend::CSS)
}

async fn js() -> Response {
    asset("text/javascript; charset=utf-8", frontend::JS)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        body,
    )
        .into_response()
}

// --- sessions, flash, rendering ------------------------------------------------------------

/// A signed-in browser session.
struct Session {
    user: User,
    token: String,
    csrf: String,
}

async fn session(state: &AppState, headers: &HeaderMap) -> Option<Session> {
    match identify(state, headers).await {
        Ok(Some(super::auth::Caller {
            user,
            via: Via::Session { token, csrf },
        })) => Some(Session { user, token, csrf }),
        _ => None,
    }
}

impl Session {
    /// Who acts, for the audit log: the user, from the request's client address.
    fn actor(&self) -> app::model::Actor {
        app::model::Actor::user(&self.user.username, super::client::address())
    }
}

fn see_other(location: &str) -> Response {
    (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, location.to_string())],
    )
        .into_response()
}

/// Redirects to `location`, showing `flash` there once.
fn see_other_with(location: &str, flash: Flash) -> Response {
    let (kind, text) = match &flash {
        Flash::Ok(t) => ("ok", t),
        Flash::Error(t) => ("error", t),
    };
    let raw = format!("{kind}:{text}");
    let value = percent_encoding::utf8_percent_encode(&raw, percent_encoding::NON_ALPHANUMERIC);
    let mut response = see_other(location);
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{FLASH_COOKIE}={value}; Path=/console; Max-Age=60; HttpOnly; SameSite=Lax"
    )) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

/// After an upload form: `console.js` posts it with `X-Console-Upload` (to show progress) and
/// follows `X-Console-Location` itself; a plain form gets the redirect.
fn after_upload(headers: &HeaderMap, location: &str, flash: Flash) -> Response {
    let mut response = see_other_with(location, flash);
    if headers.contains_key("x-console-upload") {
        *response.status_mut() = StatusCode::OK;
        if let Some(l) = response.headers_mut().remove(header::LOCATION) {
            response.headers_mut().insert("x-console-location", l);
        }
    }
    response
}

/// The pre-session form token: the browser's, or a new one with the cookie that carries it.
fn form_token(headers: &HeaderMap) -> (String, Option<HeaderValue>) {
    if let Some(t) = cookie(headers, FORM_COOKIE).filter(|t| t.len() == 32) {
        return (t, None);
    }
    let mut bytes = [0u8; 16];
    let _ = getrandom::fill(&mut bytes);
    let token = hex::encode(bytes);
    let set = HeaderValue::from_str(&format!(
        "{FORM_COOKIE}={token}; Path=/console; Max-Age=86400; HttpOnly; SameSite=Strict"
    ))
    .ok();
    (token, set)
}

/// Whether a pre-session form carries the token of its cookie.
fn form_token_ok(headers: &HeaderMap, sent: &str) -> bool {
    cookie(headers, FORM_COOKIE).is_some_and(|t| constant_time_eq(t.as_bytes(), sent.as_bytes()))
}

fn with_cookie(mut response: Response, cookie: Option<HeaderValue>) -> Response {
    if let Some(c) = cookie {
        response.headers_mut().append(header::SET_COOKIE, c);
    }
    response
}

const STALE_FORM: &str =
    "This form had expired or came from another site; it is fresh now, please submit it again.";

fn read_flash(headers: &HeaderMap) -> Option<Flash> {
    let raw = cookie(headers, FLASH_COOKIE)?;
    let text = percent_encoding::percent_decode_str(&raw)
        .decode_utf8()
        .ok()?
        .into_owned();
    match text.split_once(':') {
        Some(("ok", t)) => Some(Flash::Ok(t.to_string())),
        Some(("error", t)) => Some(Flash::Error(t.to_string())),
        _ => None,
    }
}

/// Sends signed-out visitors to the sign-in page, then back to where they were going.
fn to_sign_in(uri: &Uri) -> Response {
    let next = uri
        .path_and_query()
        .map_or("/console", |p| p.as_str())
        .to_string();
    let next = percent_encoding::utf8_percent_encode(&next, percent_encoding::NON_ALPHANUMERIC);
    see_other(&format!("/console/sign-in?next={next}"))
}

struct Page {
    title: String,
    nav: Nav,
    follows: Option<String>,
    status: StatusCode,
}

impl Page {
    fn new(title: impl Into<String>, nav: Nav) -> Self {
        Self {
            title: title.into(),
            nav,
            follows: None,
            status: StatusCode::OK,
        }
    }

    fn status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }
}

async fn chrome(
    state: &AppState,
    session: Option<&Session>,
    headers: &HeaderMap,
    page: &Page,
) -> Chrome {
    Chrome {
        title: page.title.clone(),
        nav: page.nav,
        viewer: session.map(|s| Viewer {
            username: s.user.username.clone(),
            role: s.user.role,
        }),
        node: NodeBadge {
            public_key: state.node.public_key().to_hex(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            ready: state.node.database_ready().await.is_ok(),
        },
        csrf: session.map(|s| s.csrf.clone()).unwrap_or_default(),
        flash: read_flash(headers),
        follows: page.follows.clone(),
    }
}

fn html(status: StatusCode, body: String, clear_flash: bool) -> Response {
    let mut response = (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response();
    if clear_flash {
        response.headers_mut().append(
            header::SET_COOKIE,
            HeaderValue::from_static("gevulot_flash=; Path=/console; Max-Age=0"),
        );
    }
    response
}

/// Renders a whole page, or only the live section the script asked for.
async fn render<V: leptos::prelude::IntoView + 'static>(
    state: &AppState,
    session: Option<&Session>,
    headers: &HeaderMap,
    page: Page,
    body: impl FnOnce() -> V + 'static,
) -> Response {
    if headers.contains_key(FRAGMENT_HEADER) {
        return html(page.status, frontend::fragment(body), false);
    }
    let chrome = chrome(state, session, headers, &page).await;
    let clear = chrome.flash.is_some();
    html(page.status, frontend::page(chrome, body), clear)
}

/// The page `view` makes of `result`, or the problem page for its error.
async fn show<T: 'static, V: leptos::prelude::IntoView + 'static>(
    state: &AppState,
    s: &Session,
    headers: &HeaderMap,
    page: Page,
    result: Result<T, ApiError>,
    view: impl FnOnce(T) -> V + 'static,
) -> Response {
    match result {
        Ok(v) => render(state, Some(s), headers, page, move || view(v)).await,
        Err(e) => problem(state, Some(s), headers, e).await,
    }
}

/// A page that says what went wrong and what to do.
async fn problem(
    state: &AppState,
    session: Option<&Session>,
    headers: &HeaderMap,
    e: ApiError,
) -> Response {
    let title = match e.status.as_u16() {
        403 => "Not allowed",
        404 => "Not found",
        503 => "The database is not answering",
        _ => "Something went wrong",
    };
    let detail = e.detail.clone();
    render(
        state,
        session,
        headers,
        Page::new(title, Nav::None).status(e.status),
        move || pages::problem(title.to_string(), detail),
    )
    .await
}

fn forbidden(needed: Role) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        ErrorCode::Forbidden,
        format!("this needs the {needed} role; ask an admin to change your role on the Users page"),
    )
}

/// A form whose only field is the CSRF token.
#[derive(Debug, Deserialize)]
struct CsrfForm {
    csrf: String,
}

/// The cancel button's form (an operator's).
#[derive(Debug, Deserialize)]
struct CancelForm {
    csrf: String,
}

fn csrf_ok(session: &Session, sent: &str) -> bool {
    constant_time_eq(session.csrf.as_bytes(), sent.as_bytes())
}

fn csrf_refused() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        ErrorCode::CsrfRequired,
        "this form is stale or came from another site; reload the page and submit it again",
    )
}

/// The signed-in session of a form post whose CSRF token matches, or the response to send.
async fn form_session(
    state: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
    csrf: &str,
    needed: Role,
) -> Result<Session, Response> {
    let Some(s) = session(state, headers).await else {
        return Err(to_sign_in(uri));
    };
    if !csrf_ok(&s, csrf) {
        return Err(problem(state, Some(&s), headers, csrf_refused()).await);
    }
    if !s.user.role.allows(needed) {
        return Err(problem(state, Some(&s), headers, forbidden(needed)).await);
    }
    Ok(s)
}

/// The signed-in session of a page request; a signed-out visitor is sent to sign in, and back
/// to the page afterwards.
impl FromRequestParts<AppState> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        match session(state, &parts.headers).await {
            Some(s) => Ok(s),
            None => Err(to_sign_in(&parts.uri)),
        }
    }
}

/// A console form: its CSRF field and the role it needs.
trait ConsoleForm: DeserializeOwned + Send {
    const ROLE: Role;
    fn csrf(&self) -> &str;
}

/// Declares which role each form needs.
macro_rules! console_forms {
    ($($form:ty => $role:ident),* $(,)?) => {
        $(impl ConsoleForm for $form {
            const ROLE: Role = Role::$role;
            fn csrf(&self) -> &str {
                &self.csrf
            }
        })*
    };
}

console_forms! {
    CsrfForm => Viewer,
    CancelForm => Operator,
    account::PasswordForm => Viewer,
    account::TokenForm => Viewer,
    gpus::GpuForm => Operator,
    dashboard::DrainForm => Operator,
    users::UserForm => Admin,
    users::RoleForm => Admin,
    webhooks::HookForm => Operator,
    webhooks::DeleteHookForm => Operator,
}

/// A signed-in form post whose CSRF token is the session's and whose user has the form's role;
/// otherwise the sign-in redirect or the page that says what is wrong. Nothing is changed for
/// a refused post.
struct Posted<T> {
    session: Session,
    form: T,
}

impl<T: ConsoleForm> FromRequest<AppState> for Posted<T> {
    type Rejection = Response;

    async fn from_request(req: axum::extract::Request, state: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let session = Session::from_request_parts(&mut parts, state).await?;
        let headers = parts.headers.clone();
        let req = axum::extract::Request::from_parts(parts, body);
        let form = match Form::<T>::from_request(req, state).await {
            Ok(Form(form)) => form,
            Err(e) => {
                let bad = ApiError::bad_request(ErrorCode::InvalidParameter, e.body_text());
                return Err(problem(state, Some(&session), &headers, bad).await);
            }
        };
        if !csrf_ok(&session, form.csrf()) {
            return Err(problem(state, Some(&session), &headers, csrf_refused()).await);
        }
        if !session.user.role.allows(T::ROLE) {
            return Err(problem(state, Some(&session), &headers, forbidden(T::ROLE)).await);
        }
        Ok(Posted { session, form })
    }
}

// The page groups; they share this module's imports.
mod account;
mod audit;
mod dashboard;
mod files;
mod gpus;
mod multipart;
mod network;
mod programs;
mod runs;
mod settings;
mod sign_in;
mod transactions;
mod users;
mod webhooks;

use account::{account_page, change_password, create_token, delete_token};
use audit::audit_page;
use dashboard::dashboard;
use files::files_page;
use gpus::{change_gpu, gpus_page};
use multipart::{Multi, is_checksum, number, read_multipart};
use network::network_page;
use programs::{deploy, program_page, programs_page};
use runs::{new_run_page, start_run};
use settings::settings_page;
use sign_in::{setup, setup_page, sign_in, sign_in_page, sign_out};
use transactions::{cancel, transaction_page, transactions_page};
use users::{create_user, set_role, users_page};
