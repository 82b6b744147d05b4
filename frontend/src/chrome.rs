//! The document around every page: head, top bar with navigation, the signed-in user and the
//! node's identity and health, and the flash message of the last action.

use app::auth::Role;
use leptos::prelude::*;

/// Which navigation entry a page belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nav {
    Dashboard,
    Programs,
    Runs,
    Transactions,
    Files,
    Gpus,
    Network,
    Account,
    Users,
    Settings,
    Audit,
    Webhooks,
    None,
}

/// The signed-in user.
#[derive(Clone, Debug)]
pub struct Viewer {
    pub username: String,
    pub role: Role,
}

/// The node at a glance, in the top bar.
#[derive(Clone, Debug)]
pub struct NodeBadge {
    /// The node's public key (hex).
    pub public_key: String,
    pub version: String,
    /// Whether the database answers.
    pub ready: bool,
}

/// The outcome of the previous action, shown once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Flash {
    Ok(String),
    Error(String),
}

/// Everything around a page's body.
#[derive(Clone, Debug)]
pub struct Chrome {
    pub title: String,
    pub nav: Nav,
    pub viewer: Option<Viewer>,
    pub node: NodeBadge,
    /// The session's CSRF token, for the sign-out form.
    pub csrf: String,
    pub flash: Option<Flash>,
    /// The transaction a page follows (live updates for it only).
    pub follows: Option<String>,
}

fn nav_link(href: &'static str, label: &'static str, this: Nav, current: Nav) -> impl IntoView {
    let current = (this == current).then_some("page");
    view! { <a href=href aria-current=current>{label}</a> }
}

pub(crate) fn document<V: IntoView + 'static>(
    chrome: Chrome,
    body: impl FnOnce() -> V + 'static,
) -> impl IntoView {
    let Chrome {
        title,
        nav,
        viewer,
        node,
        csrf,
        flash,
        follows,
    } = chrome;
    let flash = flash.map(|f| match f {
        Flash::Ok(text) => view! { <div class="flash ok" role="status">{text}</div> }.into_any(),
        Flash::Error(text) => {
            view! { <div class="flash error" role="alert">{text}</div> }.into_any()
        }
    });
    let admin = viewer.as_ref().is_some_and(|v| v.role == Role::Admin);
    let operator = viewer
        .as_ref()
        .is_some_and(|v| v.role.allows(Role::Operator));
    let top = viewer.map(|v| {
        view! {
            <nav aria-label="Main">
                {nav_link("/console", "Dashboard", Nav::Dashboard, nav)}
                {nav_link("/console/programs", "Programs", Nav::Programs, nav)}
                {nav_link("/console/runs/new", "New run", Nav::Runs, nav)}
                {nav_link("/console/transactions", "Transactions", Nav::Transactions, nav)}
                {nav_link("/console/files", "Downloads", Nav::Files, nav)}
                {nav_link("/console/gpus", "GPUs", Nav::Gpus, nav)}
                {nav_link("/console/network", "Network", Nav::Network, nav)}
                {operator.then(|| nav_link("/console/webhooks", "Webhooks", Nav::Webhooks, nav))}
                {admin.then(|| nav_link("/console/users", "Users", Nav::Users, nav))}
                {admin.then(|| nav_link("/console/audit", "Audit", Nav::Audit, nav))}
                {operator.then(|| nav_link("/console/settings", "Settings", Nav::Settings, nav))}
            </nav>
            <div class="who">
                <span
                    class=if node.ready { "health" } else { "health down" }
                    title=if node.ready { "the database answers" } else { "the database does not answer" }
                >
                    {if node.ready { "ready" } else { "not ready" }}
                </span>
                <span class="mono" title=node.public_key.clone()>
                    {crate::short(&node.public_key)}
                </span>
                <span class="muted">{format!("v{}", node.version)}</span>
                <a href="/console/account" id="who" aria-current=(nav == Nav::Account).then_some("page")>
                    {v.username.clone()}
                    " ("
                    {v.role.as_str()}
                    ")"
                </a>
                <form method="post" action="/console/sign-out">
                    <input type="hidden" name="csrf" value=csrf.clone()/>
                    <button type="submit">"Sign out"</button>
                </form>
            </div>
        }
    });
    view! {
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <title>{format!("{title} · Gevulot node")}</title>
                <link rel="stylesheet" href=crate::CSS_PATH/>
                <script src=crate::JS_PATH defer=true></script>
            </head>
            <body data-tx=follows>
                <header class="top">
                    <a class="brand" href="/console">"Gevulot node"</a>
                    {top}
                </header>
                <main>
                    {flash}
                    {body()}
                </main>
            </body>
        </html>
    }
}
