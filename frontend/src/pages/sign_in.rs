//! Signing in, and creating the first admin.

use super::*;

#[derive(Clone, Debug, Default)]
pub struct SignInView {
    pub username: String,
    pub error: Option<String>,
    /// Where to go after signing in (a console path).
    pub next: String,
    /// No users exist yet: say how to create the first admin.
    pub first_run: bool,
    /// The form's CSRF token (there is no session yet: it is also in a cookie).
    pub csrf: String,
}

pub fn sign_in(v: SignInView) -> impl IntoView {
    let error = v.error.clone();
    view! {
        <h1>"Sign in"</h1>
        <div class="panel" style="max-width: 28rem">
            {error.map(|e| view! { <div class="flash error" role="alert" id="sign-in-error">{e}</div> })}
            {v.first_run.then(|| view! {
                <p class="muted" id="first-run">
                    "No console users exist yet. " <a href="/console/setup">"Create the first admin"</a>
                    " with the one-time setup token the node printed when it started, or run "
                    <code>"gevulot user create admin --role admin"</code> "."
                </p>
            })}
            <form class="stack" method="post" action="/console/sign-in">
                {csrf_field(&v.csrf)}
                <input type="hidden" name="next" value=v.next/>
                <label>"Username"
                    <input id="username" name="username" value=v.username autocomplete="username" required=true autofocus=true/>
                </label>
                <label>"Password"
                    <input id="password" name="password" type="password" autocomplete="current-password" required=true/>
                </label>
                <div><button type="submit">"Sign in"</button></div>
            </form>
        </div>
    }
}

#[derive(Clone, Debug, Default)]
pub struct SetupView {
    pub username: String,
    pub errors: FormErrors,
    /// The form's CSRF token (there is no session yet: it is also in a cookie).
    pub csrf: String,
}

/// The first admin, with the setup token the node printed on its first start.
pub fn setup(v: SetupView) -> impl IntoView {
    let errors = v.errors.clone();
    view! {
        <h1>"Create the first admin"</h1>
        <div class="panel" style="max-width: 32rem">
            {errors.summary()}
            <form class="stack" method="post" action="/console/setup">
                {csrf_field(&v.csrf)}
                {input("Setup token", "token".into(), String::new(), &errors, Some("Printed by the node on standard output when it started without users."), "text")}
                {input("Username", "username".into(), v.username, &errors, None, "text")}
                <label>"Password" <span class="hint">{format!("At least {} characters.", app::auth::MIN_PASSWORD_LEN)}</span>
                    <input type="password" id="password" name="password" autocomplete="new-password" required=true/></label>
                <div><button type="submit">"Create and sign in"</button></div>
            </form>
        </div>
    }
}
