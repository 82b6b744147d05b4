//! Users and their roles (admins).

use super::*;

#[derive(Clone, Debug)]
pub struct UserRow {
    pub id: i64,
    pub username: String,
    pub role: String,
}

#[derive(Clone, Debug)]
pub struct UsersView {
    pub users: Vec<UserRow>,
    pub csrf: String,
    pub username: String,
    pub role: String,
    pub errors: FormErrors,
}

pub fn users(v: UsersView) -> impl IntoView {
    let csrf = v.csrf.clone();
    let errors = v.errors.clone();
    let role_options = |current: String| {
        ["viewer", "operator", "admin"]
            .into_iter()
            .map(move |r| view! { <option value=r selected=r == current>{r}</option> })
            .collect_view()
    };
    view! {
        <h1>"Users"</h1>
        <section class="panel">
            <table id="users">
                <thead><tr><th scope="col">"User"</th><th scope="col">"Role"</th></tr></thead>
                <tbody>{v.users.into_iter().map(|u| {
                    let csrf = csrf.clone();
                    view! {
                        <tr><td>{u.username.clone()}</td><td>
                            <form method="post" action=format!("/console/users/{}/role", u.id) class="inline">
                                {csrf_field(&csrf)}
                                <label class="sr-only" for=format!("role-{}", u.id)>{format!("Role of {}", u.username)}</label>
                                <select id=format!("role-{}", u.id) name="role">{role_options(u.role.clone())}</select>
                                <button type="submit" class="secondary">"Save"</button>
                            </form>
                        </td></tr>
                    }
                }).collect_view()}</tbody>
            </table>
        </section>
        <section class="panel">
            <h2>"Add a user"</h2>
            {errors.summary()}
            <form class="stack" method="post" action="/console/users">
                {csrf_field(&v.csrf)}
                {input("Username", "username".into(), v.username, &errors, None, "text")}
                <label>"Password" <span class="hint">{format!("At least {} characters.", app::auth::MIN_PASSWORD_LEN)}</span>
                    <input type="password" id="password" name="password" autocomplete="new-password" required=true/></label>
                <label>"Role"<select id="role" name="role">{role_options(v.role)}</select></label>
                <div><button type="submit">"Add user"</button></div>
            </form>
        </section>
    }
}
