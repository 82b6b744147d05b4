//! The operator console under `/console`: routes, sessions, CSRF and form handling over the
//! core API; the pages themselves come from the `frontend` crate. Every form is a plain HTML form
//! that carries the session's CSRF token; a change answers `303 See Other` to the page that shows
//! its result (with a one-time flash message), and a refused form is shown again with the user's
//! input and a message at each field to change. `console.js` asks for a page's live sections
//! alone with the `X-Console-Fragment` header.

use std::collections::HashMap;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Form, Multipart, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use frontend::pages::{self, FormErrors};
use frontend::{Chrome, Flash, Nav, NodeBadge, Viewer};
use leptos::prelude::IntoAny as _;
use serde::Deserialize;

use app::auth::{Role, User};
use app::store::{Phase, Source};
use app::tx::rpc::TransactionTree;
use app::tx::{Hash, Kind, Payload, ProgramData};

use super::AppState;
use super::auth::{Via, cookie, identify};
use super::error::ApiError;
use super::operator::{DeployRequest, InputSpec, ProgramSpec, ResourceSpec, RunRequest, StepSpec};
use super::rpc::calls;

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
    cookie(headers, FORM_COOKIE).is_some_and(|t| {
        t.len() == sent.len()
            && t.bytes()
                .zip(sent.bytes())
                .fold(0u8, |acc, (x, y)| acc | (x ^ y))
                == 0
    })
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
            public_key: state.node_key.public_key().to_hex(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            ready: state.store().ping().await.is_ok(),
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
        "forbidden",
        format!("this needs the {needed} role; ask an admin to change your role on the Users page"),
    )
}

fn csrf_ok(session: &Session, sent: &str) -> bool {
    let (a, b) = (session.csrf.as_bytes(), sent.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn csrf_refused() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "csrf_required",
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

macro_rules! signed_in {
    ($state:expr, $headers:expr, $uri:expr) => {
        match session(&$state, &$headers).await {
            Some(s) => s,
            None => return to_sign_in(&$uri),
        }
    };
}

// --- sign-in -------------------------------------------------------------------------------

#[derive(Debug, Deserialize, Default)]
struct NextQuery {
    next: Option<String>,
}

/// Only console paths are followed after sign-in (no open redirect).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with("/console") && !n.starts_with("//") && !n.contains('\\') => {
            n.to_string()
        }
        _ => "/console".to_string(),
    }
}

async fn sign_in_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<NextQuery>,
) -> Response {
    if session(&state, &headers).await.is_some() {
        return see_other(&safe_next(q.next.as_deref()));
    }
    let first_run = state.auth.list_users().await.is_ok_and(|u| u.is_empty());
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
struct SignInForm {
    #[serde(default)]
    csrf: String,
    username: String,
    password: String,
    next: Option<String>,
}

async fn sign_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<SignInForm>,
) -> Response {
    let next = safe_next(form.next.as_deref());
    let login = if form_token_ok(&headers, &form.csrf) {
        state
            .auth
            .login(&form.username, &form.password)
            .await
            .map_err(Some)
    } else {
        Err(None)
    };
    match login {
        Ok(s) => {
            tracing::info!(target: "gevulot", user = %s.user.username, via = "console", "signed in");
            let mut response = see_other(&next);
            let ttl = app::auth::SESSION_TTL.as_secs() as i64;
            response.headers_mut().append(
                header::SET_COOKIE,
                super::auth::session_cookie(&state, &s.token, ttl),
            );
            response
        }
        Err(e) => {
            let (status, error) = match e {
                None => (StatusCode::FORBIDDEN, STALE_FORM),
                Some(e) => {
                    tracing::warn!(target: "gevulot", user = %form.username, reason = e.code(), via = "console", "sign-in refused");
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

async fn setup_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
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
struct SetupForm {
    #[serde(default)]
    csrf: String,
    token: String,
    username: String,
    password: String,
}

/// Creates the first admin with the one-time token, then signs them in.
async fn setup(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<SetupForm>,
) -> Response {
    let username = form.username.trim().to_string();
    let login = if form_token_ok(&headers, &form.csrf) {
        let created = state
            .auth
            .setup(form.token.trim(), &username, &form.password)
            .await;
        match created {
            Ok(_) => state
                .auth
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
            tracing::info!(target: "gevulot", user = %s.user.username, "first admin created in the console");
            let mut response = see_other_with(
                "/console",
                Flash::Ok("Welcome: you are the node's first admin.".into()),
            );
            let ttl = app::auth::SESSION_TTL.as_secs() as i64;
            response.headers_mut().append(
                header::SET_COOKIE,
                super::auth::session_cookie(&state, &s.token, ttl),
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
                        "weak_password" => "password",
                        "bad_username" => "username",
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

#[derive(Debug, Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn sign_out(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Form(form): Form<CsrfForm>,
) -> Response {
    let s = match form_session(&state, &headers, &uri, &form.csrf, Role::Viewer).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let _ = state.auth.logout(&s.token).await;
    let mut response = see_other_with("/console/sign-in", Flash::Ok("Signed out.".into()));
    response.headers_mut().append(
        header::SET_COOKIE,
        super::auth::session_cookie(&state, "", 0),
    );
    response
}

// --- dashboard -----------------------------------------------------------------------------

async fn dashboard_view(state: &AppState) -> Result<pages::DashboardView, ApiError> {
    let store = state.store();
    let started_at_ms = state
        .started_at
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let mut queue = store.count_tasks_by_phase().await?;
    queue.sort_by_key(|(p, _)| Phase::ALL.iter().position(|x| x == p));
    Ok(pages::DashboardView {
        node: pages::NodeSummary {
            public_key: state.node_key.public_key().to_hex(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            database: store.backend().as_str().to_string(),
            started_at_ms,
            transactions: store.count_transactions().await?,
            execution: state.execution,
            file_base_url: state.file_base_url.clone(),
        },
        resources: state.pipeline.as_ref().map(|p| {
            let u = p.usage();
            pages::ResourceSummary {
                cpus: state.resources.cpus,
                mem_mib: state.resources.mem_mib,
                free_cpus: u.free_cpus,
                free_mem_mib: u.free_mem_mib,
                running: u.running,
                waiting: u.waiting,
            }
        }),
        gpus: super::gpus::statuses(state).await.unwrap_or_default(),
        queue,
        failures: store.recent_failures(10).await?,
    })
}

async fn dashboard(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let s = signed_in!(state, headers, uri);
    let view = match dashboard_view(&state).await {
        Ok(v) => v,
        Err(e) => return problem(&state, Some(&s), &headers, e).await,
    };
    let live = headers.contains_key(FRAGMENT_HEADER);
    render(
        &state,
        Some(&s),
        &headers,
        Page::new("Dashboard", Nav::Dashboard),
        move || {
            if live {
                pages::dashboard_live(view).into_any()
            } else {
                pages::dashboard(view).into_any()
            }
        },
    )
    .await
}

// --- programs ------------------------------------------------------------------------------

async fn programs_view(
    state: &AppState,
    s: &Session,
    form: pages::DeployForm,
) -> Result<pages::ProgramsView, ApiError> {
    Ok(pages::ProgramsView {
        programs: state.store().list_programs(500).await?,
        can_deploy: s.user.role.allows(Role::Operator),
        csrf: s.csrf.clone(),
        form,
        max_upload: state.max_upload_bytes,
    })
}

async fn programs_page(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let s = signed_in!(state, headers, uri);
    let form = pages::DeployForm {
        prover: default_program_form(),
        verifier: default_program_form(),
        ..Default::default()
    };
    show(
        &state,
        &s,
        &headers,
        Page::new("Programs", Nav::Programs),
        programs_view(&state, &s, form).await,
        pages::programs,
    )
    .await
}

fn default_program_form() -> pages::ProgramForm {
    pages::ProgramForm {
        mem_mib: "2048".into(),
        cpus: "2".into(),
        gpus: "0".into(),
        ..Default::default()
    }
}

/// The text fields of a multipart form, and its files (already stored as uploads).
struct Multi {
    fields: HashMap<String, String>,
    /// Field name → (uploaded name, checksum).
    files: HashMap<String, (String, String)>,
}

impl Multi {
    fn text(&self, name: &str) -> String {
        self.fields
            .get(name)
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    }
}

/// Reads a multipart console form. The CSRF token must come before any file (the pages put it
/// first), so nothing is stored for a forged request. Empty file inputs are skipped.
async fn read_multipart(
    state: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
    mut multipart: Multipart,
    needed: Role,
) -> Result<(Session, Multi, FormErrors), Response> {
    let mut fields = HashMap::new();
    let mut files = HashMap::new();
    let mut errors = FormErrors::default();
    let mut session_ok: Option<Session> = None;
    let bad = |detail: String| ApiError::bad_request("malformed_body", detail);
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                let s = session(state, headers).await;
                return Err(problem(
                    state,
                    s.as_ref(),
                    headers,
                    bad(format!("the form broke off: {e}")),
                )
                .await);
            }
        };
        let name = field.name().unwrap_or_default().to_string();
        if name == "csrf" {
            let sent = field.text().await.unwrap_or_default();
            session_ok = Some(form_session(state, headers, uri, &sent, needed).await?);
            continue;
        }
        let Some(s) = &session_ok else {
            let s = session(state, headers).await;
            return Err(problem(state, s.as_ref(), headers, csrf_refused()).await);
        };
        match field.file_name().map(str::to_string) {
            Some(file_name) if !file_name.is_empty() => {
                // Browsers may send a path; keep the last component.
                let base = file_name
                    .rsplit(['/', '\\'])
                    .next()
                    .unwrap_or(&file_name)
                    .to_string();
                match super::operator::save_upload(state, &name, &base, field, &s.user.username)
                    .await
                {
                    Ok((_, up)) if up.size > 0 => {
                        files.insert(name, (up.name, up.checksum));
                    }
                    Ok(_) => errors.add(name, "the chosen file is empty"),
                    Err(e) => errors.add(name, e.detail),
                }
            }
            Some(_) => {
                // An empty file input: drain it.
                let _ = field.bytes().await;
            }
            None => {
                let value = field.text().await.unwrap_or_default();
                fields.insert(name, value);
            }
        }
    }
    match session_ok {
        Some(s) => Ok((s, Multi { fields, files }, errors)),
        None => {
            let s = session(state, headers).await;
            Err(problem(state, s.as_ref(), headers, csrf_refused()).await)
        }
    }
}

fn program_form(m: &Multi, role: &str) -> pages::ProgramForm {
    pages::ProgramForm {
        name: m.text(&format!("{role}_name")),
        url: m.text(&format!("{role}_url")),
        checksum: m.text(&format!("{role}_checksum")).to_ascii_lowercase(),
        mem_mib: m.text(&format!("{role}_mem_mib")),
        cpus: m.text(&format!("{role}_cpus")),
        gpus: m.text(&format!("{role}_gpus")),
    }
}

fn is_checksum(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

fn number(
    errors: &mut FormErrors,
    field: String,
    value: &str,
    what: &str,
    example: &str,
) -> Option<u64> {
    match value.parse::<u64>() {
        Ok(n) => Some(n),
        Err(_) => {
            errors.add(
                field,
                format!("{what} must be a whole number, e.g. {example} (it is {value:?})"),
            );
            None
        }
    }
}

fn program_spec(
    m: &Multi,
    role: &str,
    form: &pages::ProgramForm,
    errors: &mut FormErrors,
) -> ProgramSpec {
    let label = if role == "prover" {
        "prover"
    } else {
        "verifier"
    };
    if form.name.is_empty() {
        errors.add(format!("{role}_name"), format!("Name the {label} program."));
    }
    let file = m.files.get(&format!("{role}_image"));
    let (upload, image_file_name, image_url, image_checksum) = match file {
        Some((name, checksum)) => (Some(checksum.clone()), Some(name.clone()), None, None),
        None => {
            if form.url.is_empty() {
                errors.add(
                    format!("{role}_image"),
                    format!("Upload the {label}'s image, or give its URL and BLAKE3 checksum."),
                );
            } else if !is_checksum(&form.checksum) {
                errors.add(
                    format!("{role}_checksum"),
                    "The checksum must be the image's BLAKE3 as 64 hexadecimal characters (`b3sum image`).",
                );
            }
            (
                None,
                None,
                Some(form.url.clone()),
                Some(form.checksum.clone()),
            )
        }
    };
    let mem = number(
        errors,
        format!("{role}_mem_mib"),
        &form.mem_mib,
        "Memory",
        "2048",
    );
    let cpus = number(errors, format!("{role}_cpus"), &form.cpus, "CPUs", "2");
    let gpus = number(errors, format!("{role}_gpus"), &form.gpus, "GPUs", "0");
    ProgramSpec {
        name: form.name.clone(),
        image_file_name,
        upload,
        image_url,
        image_checksum,
        resources: match (mem, cpus, gpus) {
            (Some(mem_mib), Some(cpus), Some(gpus)) => Some(ResourceSpec {
                mem_mib,
                cpus,
                gpus,
            }),
            _ => None,
        },
    }
}

async fn deploy(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    multipart: Multipart,
) -> Response {
    let (s, m, mut errors) =
        match read_multipart(&state, &headers, &uri, multipart, Role::Operator).await {
            Ok(v) => v,
            Err(r) => return r,
        };
    let form = pages::DeployForm {
        name: m.text("name"),
        prover: program_form(&m, "prover"),
        verifier: program_form(&m, "verifier"),
        errors: FormErrors::default(),
    };
    if form.name.is_empty() {
        errors.add(
            "name",
            "Name the pair, e.g. the proof system it implements.",
        );
    }
    let prover = program_spec(&m, "prover", &form.prover, &mut errors);
    let verifier = program_spec(&m, "verifier", &form.verifier, &mut errors);
    if errors.is_empty() {
        let request = DeployRequest {
            name: form.name.clone(),
            prover,
            verifier,
        };
        match super::operator::deploy_programs(&state, request, Source::Console, &s.user.username)
            .await
        {
            Ok(d) => {
                return after_upload(
                    &headers,
                    &format!("/console/programs/{}", d.prover),
                    Flash::Ok(format!(
                        "Deployed. The Deploy transaction is {}; runs can use the prover and the verifier now.",
                        d.hash
                    )),
                );
            }
            Err(e) => errors.add("", e.detail),
        }
    }
    let form = pages::DeployForm { errors, ..form };
    show(
        &state,
        &s,
        &headers,
        Page::new("Programs", Nav::Programs).status(StatusCode::UNPROCESSABLE_ENTITY),
        programs_view(&state, &s, form).await,
        pages::programs,
    )
    .await
}

async fn program_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(hash): Path<String>,
) -> Response {
    let s = signed_in!(state, headers, uri);
    let result = async {
        let hash = super::dto::parse_hash("hash", &hash)?;
        let program = state.store().get_program(&hash).await?.ok_or_else(|| {
            ApiError::not_found(format!(
                "no program {} is deployed on this node",
                hash.to_hex()
            ))
        })?;
        let runs = state
            .store()
            .runs_using_program(&hash, 50)
            .await?
            .iter()
            .map(Hash::to_hex)
            .collect();
        let image_url = format!(
            "{}/images/{}/{}",
            state.file_base_url,
            program.hash.to_hex(),
            program.image_file_name
        );
        Ok::<_, ApiError>(pages::ProgramView {
            program,
            runs,
            image_url,
        })
    }
    .await;
    match result {
        Ok(view) => {
            let title = view.program.name.clone();
            render(
                &state,
                Some(&s),
                &headers,
                Page::new(title, Nav::Programs),
                move || pages::program(view),
            )
            .await
        }
        Err(e) => problem(&state, Some(&s), &headers, e).await,
    }
}

// --- runs ----------------------------------------------------------------------------------

async fn runs_view(
    state: &AppState,
    s: &Session,
    form: pages::RunForm,
) -> Result<pages::RunsView, ApiError> {
    Ok(pages::RunsView {
        programs: state.store().list_programs(500).await?,
        can_run: s.user.role.allows(Role::Operator),
        csrf: s.csrf.clone(),
        form,
    })
}

async fn new_run_page(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let s = signed_in!(state, headers, uri);
    show(
        &state,
        &s,
        &headers,
        Page::new("New run", Nav::Runs),
        runs_view(&state, &s, pages::RunForm::default()).await,
        pages::new_run,
    )
    .await
}

fn run_request(m: &Multi, errors: &mut FormErrors) -> (Vec<pages::StepForm>, RunRequest) {
    let mut forms = Vec::new();
    let mut steps: Vec<StepSpec> = Vec::new();
    for i in 0..pages::RUN_FORM_STEPS {
        let key = |f: &str| format!("steps[{i}].{f}");
        let f = pages::StepForm {
            program: m.text(&key("program")),
            args: m.fields.get(&key("args")).cloned().unwrap_or_default(),
            input_path: m.text(&key("input_path")),
            input_url: m.text(&key("input_url")),
            input_checksum: m.text(&key("input_checksum")).to_ascii_lowercase(),
            previous_output: m.text(&key("previous_output")),
        };
        let file = m.files.get(&key("input_file"));
        let used = !f.program.is_empty();
        if !used {
            if i == 0 {
                errors.add(key("program"), "Choose the program of step 1.");
            } else if file.is_some() || !f.input_url.is_empty() || !f.previous_output.is_empty() {
                errors.add(
                    key("program"),
                    format!("Step {} has inputs but no program; choose one.", i + 1),
                );
            }
            forms.push(f);
            continue;
        }
        let mut inputs = Vec::new();
        let has_input = file.is_some() || !f.input_url.is_empty();
        if has_input && f.input_path.is_empty() {
            errors.add(
                key("input_path"),
                "Say where the program finds the input, e.g. /workspace/in.txt.",
            );
        }
        match (file, f.input_url.is_empty()) {
            (Some((name, checksum)), _) => inputs.push(InputSpec {
                file_name: f.input_path.clone(),
                url: None,
                checksum: None,
                upload: Some(checksum.clone()),
                upload_name: Some(name.clone()),
                from_program: None,
            }),
            (None, false) => {
                if !is_checksum(&f.input_checksum) {
                    errors.add(
                        key("input_checksum"),
                        "Give the input's BLAKE3 checksum as 64 hexadecimal characters (`b3sum file`).",
                    );
                }
                inputs.push(InputSpec {
                    file_name: f.input_path.clone(),
                    url: Some(f.input_url.clone()),
                    checksum: Some(f.input_checksum.clone()),
                    upload: None,
                    upload_name: None,
                    from_program: None,
                });
            }
            (None, true) => {}
        }
        if !f.previous_output.is_empty() {
            match steps.last() {
                Some(prev) => inputs.push(InputSpec {
                    file_name: f.previous_output.clone(),
                    url: None,
                    checksum: None,
                    upload: None,
                    upload_name: None,
                    from_program: Some(prev.program.clone()),
                }),
                None => errors.add(
                    key("previous_output"),
                    "There is no earlier step whose file could be passed on.",
                ),
            }
        }
        steps.push(StepSpec {
            program: f.program.clone(),
            args: f
                .args
                .lines()
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(str::to_string)
                .collect(),
            inputs,
        });
        forms.push(f);
    }
    (forms, RunRequest { steps })
}

async fn start_run(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    multipart: Multipart,
) -> Response {
    let (s, m, mut errors) =
        match read_multipart(&state, &headers, &uri, multipart, Role::Operator).await {
            Ok(v) => v,
            Err(r) => return r,
        };
    let (forms, request) = run_request(&m, &mut errors);
    if errors.is_empty() {
        match super::operator::start_run(&state, &request, Source::Console, &s.user.username).await
        {
            Ok(hash) => {
                return after_upload(
                    &headers,
                    &format!("/console/transactions/{}", hash.to_hex()),
                    Flash::Ok(
                        "The run was accepted; its steps appear below as they progress.".into(),
                    ),
                );
            }
            Err(e) => errors.add("", e.detail),
        }
    }
    let form = pages::RunForm {
        steps: forms,
        errors,
    };
    show(
        &state,
        &s,
        &headers,
        Page::new("New run", Nav::Runs).status(StatusCode::UNPROCESSABLE_ENTITY),
        runs_view(&state, &s, form).await,
        pages::new_run,
    )
    .await
}

// --- transactions --------------------------------------------------------------------------

#[derive(Debug, Deserialize, Default)]
struct TxSearch {
    #[serde(default)]
    hash: String,
    #[serde(default)]
    author: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    phase: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
    cursor: Option<String>,
}

/// A date alone means its midnight UTC.
fn time_param(text: &str) -> Option<String> {
    let t = text.trim();
    match t.len() {
        0 => None,
        10 => Some(format!("{t}T00:00:00Z")),
        _ => Some(t.to_string()),
    }
}

fn tx_row(s: &super::dto::TransactionSummary, received_at_ms: i64) -> pages::TxRow {
    pages::TxRow {
        hash: s.hash.clone(),
        kind: s.kind.clone(),
        author: s.author.clone(),
        parent: s.parent.clone(),
        source: s.source.clone(),
        received_at_ms,
    }
}

fn parse_ms(rfc3339: &str) -> i64 {
    humantime::parse_rfc3339_weak(rfc3339)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

async fn transactions_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Query<TxSearch>,
) -> Response {
    let s = signed_in!(state, headers, uri);
    let nonempty = |v: &str| (!v.trim().is_empty()).then(|| v.trim().to_ascii_lowercase());
    let query = super::dto::TransactionQuery {
        kind: nonempty(&q.kind),
        author: nonempty(&q.author),
        hash_prefix: nonempty(&q.hash),
        status: nonempty(&q.phase),
        since: time_param(&q.since),
        until: time_param(&q.until),
        cursor: q.cursor.clone(),
        limit: Some(50),
    };
    let mut errors = FormErrors::default();
    let (items, next) = match calls::list_transactions(&state, &query).await {
        Ok(page) => {
            let next = page.next_cursor.map(|c| {
                let mut params = url::form_urlencoded::Serializer::new(String::new());
                for (k, v) in [
                    ("hash", &q.hash),
                    ("author", &q.author),
                    ("kind", &q.kind),
                    ("phase", &q.phase),
                    ("since", &q.since),
                    ("until", &q.until),
                ] {
                    if !v.is_empty() {
                        params.append_pair(k, v);
                    }
                }
                params.append_pair("cursor", &c);
                format!("/console/transactions?{}", params.finish())
            });
            let items = page
                .items
                .iter()
                .map(|t| tx_row(t, parse_ms(&t.received_at)))
                .collect();
            (items, next)
        }
        Err(e) if e.status == StatusCode::BAD_REQUEST || e.status.as_u16() == 422 => {
            errors.add("", e.detail);
            (Vec::new(), None)
        }
        Err(e) => return problem(&state, Some(&s), &headers, e).await,
    };
    let view = pages::TransactionsView {
        query: pages::TxQuery {
            hash: q.hash,
            author: q.author,
            kind: q.kind,
            phase: q.phase,
            since: q.since,
            until: q.until,
        },
        items,
        next,
        errors,
    };
    render(
        &state,
        Some(&s),
        &headers,
        Page::new("Transactions", Nav::Transactions),
        move || pages::transactions(view),
    )
    .await
}

fn tree_row(t: &TransactionTree, depth: usize) -> pages::TreeRow {
    let kind = ["run", "proof", "verification"]
        .get(depth)
        .copied()
        .unwrap_or("transaction");
    let children = match t {
        TransactionTree::Root { children, .. } | TransactionTree::Node { children, .. } => {
            children.iter().map(|c| tree_row(c, depth + 1)).collect()
        }
        TransactionTree::Leaf { .. } => Vec::new(),
    };
    pages::TreeRow {
        hash: t.hash().to_hex(),
        kind,
        children,
    }
}

fn fields(payload: &Payload) -> Vec<(String, String)> {
    let mut out = Vec::new();
    match payload {
        Payload::Deploy {
            name,
            prover,
            verifier,
        } => {
            out.push(("Name".into(), name.clone()));
            for (label, p) in [("Prover", prover), ("Verifier", verifier)] {
                let r = p.resource_requirements.unwrap_or_default();
                out.push((
                    label.into(),
                    format!(
                        "{} — program {} — image {} at {} (BLAKE3 {}) — {} MiB, {} CPUs, {} GPUs",
                        p.name,
                        p.hash,
                        p.image_file_name,
                        p.image_file_url,
                        p.image_file_checksum,
                        r.mem,
                        r.cpus,
                        r.gpus
                    ),
                ));
            }
        }
        Payload::Run { workflow } => {
            for (i, step) in workflow.steps.iter().enumerate() {
                let inputs: Vec<String> = step
                    .inputs
                    .iter()
                    .map(|input| match input {
                        ProgramData::Input {
                            file_name,
                            file_url,
                            checksum,
                        } => format!("{file_name} ← {file_url} (BLAKE3 {checksum})"),
                        ProgramData::Output {
                            source_program,
                            file_name,
                        } => format!("{file_name} ← output of program {source_program}"),
                    })
                    .collect();
                out.push((
                    format!("Step {}", i + 1),
                    format!(
                        "program {} · args [{}] · inputs: {}",
                        step.program,
                        step.args.join(", "),
                        if inputs.is_empty() {
                            "none".to_string()
                        } else {
                            inputs.join("; ")
                        }
                    ),
                ));
            }
        }
        Payload::Proof { prover, proof, .. } => {
            out.push(("Prover".into(), prover.to_hex()));
            out.push(("Proof".into(), bytes_preview(proof)));
        }
        Payload::Verification {
            verifier,
            verification,
            ..
        } => {
            out.push(("Verifier".into(), verifier.to_hex()));
            out.push(("Verification".into(), bytes_preview(verification)));
        }
        Payload::ProofKey { key, .. } => out.push(("Key".into(), hex::encode(key))),
        Payload::Transfer { to, value } => {
            out.push(("To".into(), to.to_hex()));
            out.push(("Value".into(), value.to_string()));
        }
        Payload::Stake { value } | Payload::Unstake { value } => {
            out.push(("Value".into(), value.to_string()));
        }
        Payload::Cancel { .. } | Payload::Empty => {}
    }
    out
}

/// JSON laid out for reading: one field per line, but arrays of numbers (hashes, keys, the
/// signature's words) on one line.
fn readable_json(v: &serde_json::Value, indent: usize) -> String {
    use serde_json::Value;
    let pad = "  ".repeat(indent + 1);
    let end = "  ".repeat(indent);
    match v {
        Value::Array(items) if items.iter().all(Value::is_number) => {
            serde_json::to_string(v).unwrap_or_default()
        }
        Value::Array(items) if items.is_empty() => "[]".into(),
        Value::Array(items) => {
            let inner: Vec<String> = items
                .iter()
                .map(|i| format!("{pad}{}", readable_json(i, indent + 1)))
                .collect();
            format!("[\n{}\n{end}]", inner.join(",\n"))
        }
        Value::Object(map) if map.is_empty() => "{}".into(),
        Value::Object(map) => {
            let inner: Vec<String> = map
                .iter()
                .map(|(k, val)| {
                    format!(
                        "{pad}{}: {}",
                        serde_json::to_string(k).unwrap_or_default(),
                        readable_json(val, indent + 1)
                    )
                })
                .collect();
            format!("{{\n{}\n{end}}}", inner.join(",\n"))
        }
        other => serde_json::to_string(other).unwrap_or_default(),
    }
}

/// Short proof bytes as text when they are text, else their size and first bytes in hex.
fn bytes_preview(data: &[u8]) -> String {
    match std::str::from_utf8(data) {
        Ok(text) if data.len() <= 2048 && !text.chars().any(char::is_control) => {
            format!("{text} ({} bytes)", data.len())
        }
        _ => format!(
            "{} bytes: {}{}",
            data.len(),
            hex::encode(&data[..data.len().min(64)]),
            if data.len() > 64 { "…" } else { "" }
        ),
    }
}

/// The output files of `tx` and of the results under it in its tree.
async fn outputs(
    state: &AppState,
    tree: Option<&TransactionTree>,
    tx: &app::tx::Transaction,
) -> Result<Vec<pages::OutputRow>, ApiError> {
    let mut hashes = vec![tx.hash];
    fn collect(t: &TransactionTree, out: &mut Vec<Hash>) {
        if let TransactionTree::Root { children, .. } | TransactionTree::Node { children, .. } = t {
            for c in children {
                out.push(c.hash());
                collect(c, out);
            }
        }
    }
    if tx.kind() == Kind::Run
        && let Some(t) = tree
    {
        collect(t, &mut hashes);
    }
    let mut rows = Vec::new();
    for hash in hashes {
        let Some(stored) = state.store().get_transaction(&hash).await? else {
            continue;
        };
        let files = match &stored.tx.payload {
            Payload::Proof { files, .. } | Payload::Verification { files, .. } => files.clone(),
            _ => continue,
        };
        for f in files {
            let path = app::tx::rpc::output_file_path(&hash, &f);
            let size = std::fs::metadata(state.data_dir.join(&path))
                .ok()
                .map(|m| m.len());
            rows.push(pages::OutputRow {
                name: f.basename().to_string(),
                url: format!("{}/{path}", state.file_base_url),
                checksum: f.checksum.to_hex(),
                size,
            });
        }
    }
    Ok(rows)
}

async fn task_rows(state: &AppState, hash: &Hash) -> Result<Vec<pages::TaskRow>, ApiError> {
    let tasks = state.store().tasks_for_tx(hash).await?;
    let timelines = state.store().task_timelines(hash).await?;
    let mut rows = Vec::with_capacity(tasks.len());
    for t in tasks {
        let program_name = state.store().get_program(&t.program).await?.map(|p| p.name);
        let (log_tail, progress) = match &state.pipeline {
            Some(p) => (
                (t.attempt > 0).then(|| p.log_tail(t.id, 2048)).flatten(),
                p.download_progress(t.id).map(|d| match d.total {
                    Some(total) => format!(
                        "{} of {}",
                        frontend::bytes(d.received),
                        frontend::bytes(total)
                    ),
                    None => frontend::bytes(d.received),
                }),
            ),
            None => (None, None),
        };
        let timeline = timelines
            .iter()
            .filter(|c| c.task_id == t.id)
            .cloned()
            .collect();
        rows.push(pages::TaskRow {
            task: t,
            program_name,
            log_tail,
            progress,
            timeline,
        });
    }
    Ok(rows)
}

async fn transaction_view(
    state: &AppState,
    s: &Session,
    hash: &str,
) -> Result<pages::TransactionView, ApiError> {
    let hash = super::dto::parse_hash("hash", hash)?;
    let stored = state.store().get_transaction(&hash).await?.ok_or_else(|| {
        ApiError::not_found(format!(
            "no transaction {} on this node; check the hash, or search on the Transactions page",
            hash.to_hex()
        ))
    })?;
    let tree = state.store().transaction_tree(&hash).await?;
    let tasks = task_rows(state, &hash).await?;
    let outputs = outputs(state, tree.as_ref(), &stored.tx).await?;
    let summary = super::dto::TransactionSummary::from(&stored);
    let can_cancel = stored.tx.kind() == Kind::Run
        && s.user.role.allows(Role::Operator)
        && (tasks.is_empty() || tasks.iter().any(|t| !t.task.phase.is_terminal()));
    Ok(pages::TransactionView {
        row: tx_row(&summary, stored.received_at_ms),
        fields: fields(&stored.tx.payload),
        input_json: readable_json(&serde_json::to_value(&stored.tx).unwrap_or_default(), 0),
        tree: tree.as_ref().map(|t| tree_row(t, 0)),
        tasks,
        outputs,
        can_cancel,
        csrf: s.csrf.clone(),
    })
}

async fn transaction_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(hash): Path<String>,
) -> Response {
    let s = signed_in!(state, headers, uri);
    let view = match transaction_view(&state, &s, &hash).await {
        Ok(v) => v,
        Err(e) => return problem(&state, Some(&s), &headers, e).await,
    };
    let mut page = Page::new(
        format!("{} {}", view.row.kind, frontend::short(&view.row.hash)),
        Nav::Transactions,
    );
    page.follows = Some(view.row.hash.clone());
    if headers.contains_key(FRAGMENT_HEADER) {
        let live = pages::TransactionLive {
            hash: view.row.hash,
            tree: view.tree,
            tasks: view.tasks,
            outputs: view.outputs,
            can_cancel: view.can_cancel,
            csrf: view.csrf,
        };
        return render(&state, Some(&s), &headers, page, move || {
            pages::transaction_live(live)
        })
        .await;
    }
    render(&state, Some(&s), &headers, page, move || {
        pages::transaction(view)
    })
    .await
}

async fn cancel(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(hash): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let s = match form_session(&state, &headers, &uri, &form.csrf, Role::Operator).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let back = format!("/console/transactions/{hash}");
    let result = async {
        let run = super::dto::parse_hash("hash", &hash)?;
        calls::cancel(&state, &run, Source::Console).await
    }
    .await;
    match result {
        Ok(c) => {
            tracing::info!(target: "gevulot", by = %s.user.username, run = %hash, cancel = %c.hash, "run cancelled from the console");
            see_other_with(
                &back,
                Flash::Ok(format!(
                    "Cancelled: the Cancel transaction {} stops the run's VMs now.",
                    c.hash
                )),
            )
        }
        Err(e) => see_other_with(&back, Flash::Error(e.detail)),
    }
}

// --- downloads -----------------------------------------------------------------------------

#[derive(Debug, Deserialize, Default)]
struct FilesQuery {
    after: Option<String>,
}

async fn files_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Query<FilesQuery>,
) -> Response {
    let s = signed_in!(state, headers, uri);
    let after = q.after.as_deref().and_then(|a| {
        let (seq, index) = a.split_once('.')?;
        Some((seq.parse().ok()?, index.parse().ok()?))
    });
    let result = async {
        let (files, next) = state.store().list_output_files(after, 100).await?;
        let files = files
            .into_iter()
            .map(|file| {
                let path = file.relative_path();
                let size = std::fs::metadata(state.data_dir.join(&path))
                    .ok()
                    .map(|m| m.len());
                pages::FileRow {
                    url: format!("{}/{path}", state.file_base_url),
                    size,
                    file,
                }
            })
            .collect();
        let images = state
            .store()
            .list_programs(500)
            .await?
            .into_iter()
            .map(|program| {
                let path = format!(
                    "images/{}/{}",
                    program.hash.to_hex(),
                    program.image_file_name
                );
                let size = std::fs::metadata(state.data_dir.join(&path))
                    .ok()
                    .map(|m| m.len());
                pages::ImageRow {
                    url: format!("{}/{path}", state.file_base_url),
                    size,
                    program,
                }
            })
            .collect();
        Ok::<_, ApiError>(pages::FilesView {
            files,
            images,
            next: next.map(|(seq, index)| format!("/console/files?after={seq}.{index}")),
        })
    }
    .await;
    show(
        &state,
        &s,
        &headers,
        Page::new("Downloads", Nav::Files),
        result,
        pages::files,
    )
    .await
}

// --- GPUs ----------------------------------------------------------------------------------

async fn gpus_render(
    state: &AppState,
    s: &Session,
    headers: &HeaderMap,
    error: Option<String>,
    status: StatusCode,
) -> Response {
    let (gpus, error) = match super::gpus::statuses(state).await {
        Ok(g) => (g, error),
        Err(e) => (Vec::new(), Some(e.detail)),
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

async fn gpus_page(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let s = signed_in!(state, headers, uri);
    gpus_render(&state, &s, &headers, None, StatusCode::OK).await
}

#[derive(Debug, Deserialize)]
struct GpuForm {
    csrf: String,
    action: String,
    #[serde(default)]
    reason: String,
}

async fn change_gpu(
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
    let change = super::gpus::PoolChange {
        action: form.action.clone(),
        reason: Some(form.reason.clone()),
    };
    match super::gpus::apply_change(&state, &address, &change, &s.user.username).await {
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

async fn account_render(
    state: &AppState,
    s: &Session,
    headers: &HeaderMap,
    new_token: Option<String>,
    errors: FormErrors,
    status: StatusCode,
) -> Response {
    let tokens = match state.store().list_api_tokens(s.user.id).await {
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

async fn account_page(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
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
struct PasswordForm {
    csrf: String,
    current: String,
    new: String,
}

async fn change_password(
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
        .auth
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
struct TokenForm {
    csrf: String,
    name: String,
}

async fn create_token(
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
    match state.auth.create_token(&s.user, name).await {
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

async fn delete_token(
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
    match state.store().delete_api_token(id, s.user.id).await {
        Ok(true) => see_other_with("/console/account", Flash::Ok("Token deleted.".into())),
        Ok(false) => see_other_with(
            "/console/account",
            Flash::Error("There is no such token of yours (already deleted?).".into()),
        ),
        Err(e) => problem(&state, Some(&s), &headers, e.into()).await,
    }
}

async fn users_render(
    state: &AppState,
    s: &Session,
    headers: &HeaderMap,
    username: String,
    role: String,
    errors: FormErrors,
    status: StatusCode,
) -> Response {
    let users = match state.auth.list_users().await {
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

async fn users_page(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
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
struct UserForm {
    csrf: String,
    username: String,
    password: String,
    role: String,
}

async fn create_user(
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
        .auth
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
                if e.code == "weak_password" {
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
struct RoleForm {
    csrf: String,
    role: String,
}

async fn set_role(
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
    match state.store().set_user_role(id, role.as_str()).await {
        Ok(true) => see_other_with("/console/users", Flash::Ok("Role changed.".into())),
        Ok(false) => see_other_with(
            "/console/users",
            Flash::Error("There is no such user.".into()),
        ),
        Err(e) => problem(&state, Some(&s), &headers, e.into()).await,
    }
}
