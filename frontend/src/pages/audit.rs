//! The audit log (admins): every operator action, newest first, filterable by action.

use super::*;

#[derive(Clone, Debug)]
pub struct AuditView {
    pub entries: Vec<AuditRow>,
    /// The action shown (`""`: all).
    pub action: String,
    /// Every action, for the filter.
    pub actions: Vec<&'static str>,
    /// The link to the next (older) page.
    pub older: Option<String>,
}

#[derive(Clone, Debug)]
pub struct AuditRow {
    pub id: i64,
    pub at_ms: i64,
    pub actor: String,
    pub address: Option<String>,
    pub action: String,
    pub target: Option<String>,
    pub detail: Option<String>,
    pub ok: bool,
}

pub fn audit(v: AuditView) -> impl IntoView {
    let selected = v.action.clone();
    let options = v.actions.into_iter().map(|a| {
        let chosen = a == selected;
        view! { <option value=a selected=chosen>{a.replace('_', " ")}</option> }
    });
    let table = if v.entries.is_empty() {
        empty("No entries.").into_any()
    } else {
        view! {
            <table id="audit">
                <thead><tr><th scope="col">"When (UTC)"</th><th scope="col">"Who"</th><th scope="col">"Action"</th><th scope="col">"On"</th><th scope="col">"Detail"</th></tr></thead>
                <tbody>
                    {v.entries.into_iter().map(|e| {
                        let class = if e.ok { "" } else { "refused" };
                        let action = e.action.clone();
                        view! {
                            <tr data-id=e.id data-action=action class=class>
                                <td>{time(e.at_ms)}</td>
                                <td>{e.actor}{e.address.map(|a| view! { " " <span class="muted mono">{a}</span> })}</td>
                                <td>{e.action.replace('_', " ")}{(!e.ok).then(|| view! { " " <strong>"(refused)"</strong> })}</td>
                                <td class="mono">{e.target.unwrap_or_default()}</td>
                                <td>{e.detail.unwrap_or_default()}</td>
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
        }
        .into_any()
    };
    view! {
        <h1>"Audit log"</h1>
        <p class="muted">"Every operator action with who, when, from where and what. Entries cannot be changed; they are kept for GEVULOT_AUDIT_RETENTION_DAYS."</p>
        <form method="get" action="/console/audit" class="inline">
            <label>"Action "
                <select name="action" id="action">
                    <option value="">"all"</option>
                    {options.collect_view()}
                </select>
            </label>
            <button type="submit">"Show"</button>
        </form>
        {table}
        {v.older.map(|href| view! { <p><a href=href id="older">"Older entries"</a></p> })}
    }
}
