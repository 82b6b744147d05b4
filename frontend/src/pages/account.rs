//! The signed-in user's password and API tokens.

use super::*;

#[derive(Clone, Debug)]
pub struct TokenRow {
    pub id: i64,
    pub name: String,
    pub created_at_ms: i64,
}

#[derive(Clone, Debug)]
pub struct AccountView {
    pub username: String,
    pub role: String,
    pub csrf: String,
    pub tokens: Vec<TokenRow>,
    /// A token just created, shown this once.
    pub new_token: Option<String>,
    pub errors: FormErrors,
}

pub fn account(v: AccountView) -> impl IntoView {
    let csrf = v.csrf.clone();
    let errors = v.errors.clone();
    view! {
        <h1>"Account"</h1>
        <p>"Signed in as " <strong>{v.username}</strong> " (" {v.role} ")."</p>
        <section class="panel">
            <h2>"Change password"</h2>
            {errors.summary()}
            <form class="stack" method="post" action="/console/account/password">
                {csrf_field(&csrf)}
                <label>"Current password"<input type="password" id="current" name="current" autocomplete="current-password" required=true/></label>
                <label>"New password" <span class="hint">{format!("At least {} characters.", app::auth::MIN_PASSWORD_LEN)}</span>
                    <input type="password" id="new" name="new" autocomplete="new-password" required=true/></label>
                <div><button type="submit">"Change password"</button></div>
            </form>
        </section>
        <section class="panel">
            <h2>"API tokens"</h2>
            {v.new_token.map(|t| view! {
                <div class="flash ok" role="status">"Your new token (shown only now): " <code id="new-token">{t}</code></div>
            })}
            {if v.tokens.is_empty() {
                empty("No API tokens.").into_any()
            } else {
                view! {
                    <table>
                        <thead><tr><th scope="col">"Name"</th><th scope="col">"Created"</th><th scope="col"></th></tr></thead>
                        <tbody>{v.tokens.into_iter().map(|t| view! {
                            <tr><td>{t.name}</td><td>{time(t.created_at_ms)}</td><td>
                                <form method="post" action=format!("/console/account/tokens/{}/delete", t.id) class="inline">
                                    {csrf_field(&csrf)}
                                    <button type="submit" class="secondary">"Delete"</button>
                                </form>
                            </td></tr>
                        }).collect_view()}</tbody>
                    </table>
                }.into_any()
            }}
            <form method="post" action="/console/account/tokens" class="inline">
                {csrf_field(&v.csrf)}
                <label for="token-name">"Name"</label>
                <input id="token-name" name="name" required=true placeholder="e.g. ci"/>
                <button type="submit">"Create token"</button>
            </form>
        </section>
    }
}
