//! Webhooks: the hooks a user registered (an admin sees every hook), a form to register one
//! (its secret is shown once), and each hook's delivery log.

use super::*;

#[derive(Clone, Debug)]
pub struct HookRow {
    pub id: i64,
    pub owner: String,
    pub url: String,
    /// The Run it is limited to (hex), if any.
    pub run: Option<String>,
    /// The author it is limited to (hex), if any.
    pub author: Option<String>,
    pub created_at_ms: i64,
}

#[derive(Clone, Debug, Default)]
pub struct HookForm {
    pub url: String,
    pub run: String,
    pub author: String,
}

#[derive(Clone, Debug)]
pub struct WebhooksView {
    pub csrf: String,
    /// Whether the user may register and delete hooks (operator).
    pub can_change: bool,
    pub hooks: Vec<HookRow>,
    /// A hook just registered and its secret, shown this once.
    pub created: Option<(i64, String)>,
    pub form: HookForm,
    pub errors: FormErrors,
    /// The networks hooks may reach besides public addresses (`GEVULOT_WEBHOOK_ALLOW_NETS`).
    pub allowed: String,
}

fn filter_text(run: &Option<String>, author: &Option<String>) -> String {
    match (run, author) {
        (Some(r), _) => format!("Run {}", short(r)),
        (None, Some(a)) => format!("Runs by {}", short(a)),
        (None, None) => "every Run".to_string(),
    }
}

pub fn webhooks(v: WebhooksView) -> impl IntoView {
    let csrf = v.csrf.clone();
    let can_change = v.can_change;
    let table = if v.hooks.is_empty() {
        empty("No webhooks.").into_any()
    } else {
        view! {
            <table id="webhooks">
                <thead><tr><th scope="col">"Id"</th><th scope="col">"URL"</th><th scope="col">"Hears about"</th><th scope="col">"Owner"</th><th scope="col">"Registered"</th><th scope="col"></th></tr></thead>
                <tbody>{v.hooks.into_iter().map(|h| {
                    let csrf = csrf.clone();
                    view! {
                        <tr data-id=h.id>
                            <td><a href=format!("/console/webhooks/{}", h.id)>{h.id}</a></td>
                            <td class="mono">{h.url}</td>
                            <td>{filter_text(&h.run, &h.author)}</td>
                            <td>{h.owner}</td>
                            <td>{time(h.created_at_ms)}</td>
                            <td>{can_change.then(|| view! {
                                <form method="post" action=format!("/console/webhooks/{}/delete", h.id) class="inline">
                                    {csrf_field(&csrf)}
                                    <button type="submit" class="secondary">"Delete"</button>
                                </form>
                            })}</td>
                        </tr>
                    }
                }).collect_view()}</tbody>
            </table>
        }
        .into_any()
    };
    let allowed = if v.allowed.is_empty() {
        "public addresses only".to_string()
    } else {
        format!("public addresses and {}", v.allowed)
    };
    let errors = v.errors.clone();
    view! {
        <h1>"Webhooks"</h1>
        <p class="muted">"A hook receives a signed JSON POST when a Run it hears about changes phase (task.phase) and when it ends (run.ended). X-Gevulot-Signature is sha256= and the hex HMAC-SHA256, under the hook's secret, of X-Gevulot-Timestamp, a dot, and the body. Hooks may reach " {allowed} "."</p>
        {v.created.map(|(id, secret)| view! {
            <div class="flash ok" role="status">"Webhook " {id} " registered. Its secret (shown only now): " <code id="new-secret">{secret}</code></div>
        })}
        {table}
        {can_change.then(|| view! {
            <section class="panel">
                <h2>"Register a webhook"</h2>
                {errors.summary()}
                <form class="stack" method="post" action="/console/webhooks">
                    {csrf_field(&v.csrf)}
                    {input("URL", "url".into(), v.form.url, &errors, Some("http or https, e.g. https://ci.example.com/gevulot"), "url")}
                    {input("Only this Run", "run".into(), v.form.run, &errors, Some("Optional: a Run's hash."), "text")}
                    {input("Only Runs signed by", "author".into(), v.form.author, &errors, Some("Optional: a public key (hex)."), "text")}
                    <div><button type="submit">"Register"</button></div>
                </form>
            </section>
        })}
    }
}

#[derive(Clone, Debug)]
pub struct DeliveryRow {
    pub id: i64,
    pub event: String,
    pub run: String,
    /// `pending`, `delivered` or `gave_up`.
    pub state: String,
    pub attempts: i64,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub created_at_ms: i64,
    /// What it said: the phase of a `task.phase`, the outcome of a `run.ended`.
    pub summary: String,
}

#[derive(Clone, Debug)]
pub struct WebhookView {
    pub hook: HookRow,
    pub deliveries: Vec<DeliveryRow>,
    /// The link to the next (older) page.
    pub older: Option<String>,
}

pub fn webhook(v: WebhookView) -> impl IntoView {
    let log = if v.deliveries.is_empty() {
        empty("Nothing sent yet.").into_any()
    } else {
        view! {
            <table id="deliveries">
                <thead><tr><th scope="col">"Id"</th><th scope="col">"When (UTC)"</th><th scope="col">"Event"</th><th scope="col">"Run"</th><th scope="col">"State"</th><th scope="col">"Attempts"</th><th scope="col">"Last answer"</th></tr></thead>
                <tbody>{v.deliveries.into_iter().map(|d| {
                    let state = d.state.clone();
                    view! {
                        <tr data-id=d.id data-state=state>
                            <td>{d.id}</td>
                            <td>{time(d.created_at_ms)}</td>
                            <td>{d.event}" "<span class="muted">{d.summary}</span></td>
                            <td>{tx_link(&d.run)}</td>
                            <td>{d.state.replace('_', " ")}</td>
                            <td>{d.attempts}</td>
                            <td>{d.last_status.map(|s| s.to_string()).unwrap_or_default()}" "{d.last_error.unwrap_or_default()}</td>
                        </tr>
                    }
                }).collect_view()}</tbody>
            </table>
        }
        .into_any()
    };
    view! {
        <h1>{format!("Webhook {}", v.hook.id)}</h1>
        <dl>
            <dt>"URL"</dt><dd class="mono">{v.hook.url}</dd>
            <dt>"Hears about"</dt><dd>{filter_text(&v.hook.run, &v.hook.author)}</dd>
            <dt>"Owner"</dt><dd>{v.hook.owner}</dd>
            <dt>"Registered"</dt><dd>{time(v.hook.created_at_ms)}</dd>
        </dl>
        <h2>"Deliveries"</h2>
        {log}
        {v.older.map(|href| view! { <p><a href=href id="older">"Older deliveries"</a></p> })}
        <p><a href="/console/webhooks">"All webhooks"</a></p>
    }
}
