//! Authentication: sessions, roles, CSRF, API tokens, throttling, first-run setup, and that
//! passwords never reach the log.

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

use crate::support::{Running, gevulot, output, sign_in, stderr, stdout};

const ADMIN_PASSWORD: &str = "admin-Pa55word-xyz";

async fn login(c: &Client, base: &str, user: &str, password: &str) -> reqwest::Response {
    c.post(format!("{base}/api/v1/session"))
        .json(&json!({"username": user, "password": password}))
        .send()
        .await
        .expect("request")
}

#[tokio::test]
async fn sessions_roles_csrf_and_tokens() {
    let node = Running::start_with(None, &[("GEVULOT_ADMIN_PASSWORD", ADMIN_PASSWORD)]);
    let c = Client::new();
    let base = &node.base;

    // No session: 401 on protected routes.
    for (method, path) in [
        ("GET", "/api/v1/users"),
        ("POST", "/api/v1/users"),
        ("POST", "/api/v1/tokens"),
        ("GET", "/api/v1/session"),
    ] {
        let r = c
            .request(method.parse().expect("method"), format!("{base}{path}"))
            .json(&json!({}))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
        let body: Value = r.json().await.expect("problem");
        assert_eq!(body["code"], "unauthorized");
    }

    // A wrong password is refused.
    let r = login(&c, base, "admin", "wrong-password-123").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.json::<Value>().await.expect("json")["code"],
        "bad_credentials"
    );

    let (cookie, csrf) = sign_in(&c, base, "admin", ADMIN_PASSWORD).await;
    let me: Value = c
        .get(format!("{base}/api/v1/session"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(me["user"]["role"], "admin");

    // A change through the session needs the CSRF token.
    let new_user = json!({"username": "vera", "password": "viewer-pass-123", "role": "viewer"});
    let r = c
        .post(format!("{base}/api/v1/users"))
        .header("cookie", &cookie)
        .json(&new_user)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        r.json::<Value>().await.expect("json")["code"],
        "csrf_required"
    );
    let r = c
        .post(format!("{base}/api/v1/users"))
        .header("cookie", &cookie)
        .header("x-csrf-token", "forged")
        .json(&new_user)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = c
        .post(format!("{base}/api/v1/users"))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .json(&new_user)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = c
        .post(format!("{base}/api/v1/users"))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .json(&new_user)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let weak = json!({"username": "w", "password": "short", "role": "viewer"});
    let r = c
        .post(format!("{base}/api/v1/users"))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .json(&weak)
        .send()
        .await
        .expect("request");
    assert_eq!(
        r.json::<Value>().await.expect("json")["code"],
        "weak_password"
    );

    // Wrong role: 403.
    let (viewer_cookie, _) = sign_in(&c, base, "vera", "viewer-pass-123").await;
    let r = c
        .get(format!("{base}/api/v1/users"))
        .header("cookie", &viewer_cookie)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(r.json::<Value>().await.expect("json")["code"], "forbidden");

    // API tokens: shown once, work without CSRF, carry the user's role.
    let r = c
        .post(format!("{base}/api/v1/tokens"))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .json(&json!({"name": "ci"}))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), StatusCode::CREATED);
    let token = r.json::<Value>().await.expect("json")["token"]
        .as_str()
        .expect("token")
        .to_string();
    assert!(token.starts_with("gvt_"));
    let r = c
        .get(format!("{base}/api/v1/users"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), StatusCode::OK);
    let users: Value = r.json().await.expect("json");
    assert_eq!(users["items"].as_array().expect("items").len(), 2);
    let r = c
        .post(format!("{base}/api/v1/users"))
        .bearer_auth(&token)
        .json(&json!({"username": "olga", "password": "operator-pass-1", "role": "operator"}))
        .send()
        .await
        .expect("request");
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "bearer tokens need no CSRF token"
    );
    let r = c
        .get(format!("{base}/api/v1/users"))
        .bearer_auth("gvt_forged")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // Changing a password needs the current one, ends the sessions, and the new one works.
    let (vcookie, vcsrf) = sign_in(&c, base, "vera", "viewer-pass-123").await;
    let change =
        |current: &str, new: &str| json!({"current_password": current, "new_password": new});
    let r = c
        .post(format!("{base}/api/v1/session/password"))
        .header("cookie", &vcookie)
        .header("x-csrf-token", &vcsrf)
        .json(&change("wrong-current-1", "viewer-pass-456"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = c
        .post(format!("{base}/api/v1/session/password"))
        .header("cookie", &vcookie)
        .header("x-csrf-token", &vcsrf)
        .json(&change("viewer-pass-123", "viewer-pass-456"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = c
        .get(format!("{base}/api/v1/session"))
        .header("cookie", &vcookie)
        .send()
        .await
        .expect("request");
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "the old session ended"
    );
    sign_in(&c, base, "vera", "viewer-pass-456").await;

    // Sign out ends the session.
    let r = c
        .delete(format!("{base}/api/v1/session"))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = c
        .get(format!("{base}/api/v1/users"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // Signed transactions stay public: the signature is the authority.
    let v = testkit::vector("empty");
    let r = c
        .post(format!("{base}/api/v1/transactions"))
        .header("content-type", "application/json")
        .body(v["input_json"].as_str().expect("json").to_string())
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), StatusCode::CREATED);

    let log = node.log_text();
    for secret in [
        ADMIN_PASSWORD,
        "viewer-pass-123",
        "operator-pass-1",
        "wrong-password-123",
        token.as_str(),
    ] {
        assert!(!log.contains(secret), "{secret} leaked into the log");
    }
}

#[tokio::test]
async fn session_lifetime_setting_and_throttling_after_repeated_failures() {
    let node = Running::start_with(
        None,
        &[
            ("GEVULOT_ADMIN_PASSWORD", ADMIN_PASSWORD),
            ("GEVULOT_SESSION_HOURS", "2"),
        ],
    );
    let c = Client::new();
    // A session lasts GEVULOT_SESSION_HOURS: the cookie and the answer say so.
    let r = login(&c, &node.base, "admin", ADMIN_PASSWORD).await;
    assert_eq!(r.status(), StatusCode::OK);
    let cookie = r
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .expect("a session cookie")
        .to_string();
    let max_age: i64 = cookie
        .split(';')
        .find_map(|part| part.trim().strip_prefix("Max-Age="))
        .and_then(|v| v.parse().ok())
        .expect("Max-Age");
    assert!((7_100..=7_200).contains(&max_age), "{cookie}");
    for _ in 0..5 {
        let r = login(&c, &node.base, "admin", "not-the-password").await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    // Locked now, even with the right password, and the answer says when to retry.
    let r = login(&c, &node.base, "admin", ADMIN_PASSWORD).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(
        r.json::<Value>().await.expect("json")["code"],
        "too_many_attempts"
    );
}

#[tokio::test]
async fn first_run_setup_and_commands() {
    let mut node = Running::start(None);
    let line = node.wait_for_line("\"token\":\"gsetup_");
    let at = line.find("gsetup_").expect("token");
    let token: String = line[at..].chars().take_while(|c| *c != '"').collect();
    let c = Client::new();
    let setup = |token: String| {
        let c = c.clone();
        let base = node.base.clone();
        async move {
            c.post(format!("{base}/api/v1/setup"))
                .json(&json!({"token": token, "username": "root", "password": "first-admin-pw"}))
                .send()
                .await
                .expect("request")
        }
    };
    let r = setup("gsetup_wrong".to_string()).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = setup(token.clone()).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = setup(token).await;
    assert_eq!(
        r.status(),
        StatusCode::FORBIDDEN,
        "the setup token works once"
    );
    sign_in(&c, &node.base, "root", "first-admin-pw").await;

    // The commands manage the same database.
    let db = format!("sqlite://{}", node.data.path().join("gevulot.db").display());
    let out = output(
        gevulot()
            .args([
                "user", "create", "ops", "--role", "operator", "--db-url", &db,
            ])
            .env("GEVULOT_USER_PASSWORD", "ops-password-1"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = output(gevulot().args(["user", "list", "--db-url", &db]));
    assert_eq!(stdout(&out), "ops\toperator\nroot\tadmin\n");
    let out = output(gevulot().args([
        "token", "create", "--user", "ops", "--name", "ci", "--db-url", &db,
    ]));
    let token = stdout(&out).trim().to_string();
    let me: Value = c
        .get(format!("{}/api/v1/session", node.base))
        .bearer_auth(&token)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(me["user"]["username"], "ops");
    let out = output(gevulot().args([
        "token", "create", "--user", "nobody", "--name", "x", "--db-url", &db,
    ]));
    assert!(!out.status.success() && stderr(&out).contains("gevulot user create"));
    let out = output(
        gevulot()
            .args(["user", "create", "weak", "--db-url", &db])
            .env("GEVULOT_USER_PASSWORD", "short"),
    );
    assert!(
        !out.status.success() && stderr(&out).contains("at least 10 characters"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn first_admin_through_the_console() {
    let mut node = Running::start(None);
    let line = node.wait_for_line("\"token\":\"gsetup_");
    let at = line.find("gsetup_").expect("token");
    let token: String = line[at..].chars().take_while(|c| *c != '"').collect();
    let c = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    // The sign-in page says how to start.
    let page = c
        .get(format!("{}/console/sign-in", node.base))
        .send()
        .await
        .expect("sign-in page")
        .text()
        .await
        .expect("body");
    assert!(page.contains("/console/setup"), "{page}");
    // The form's CSRF token comes with a cookie (there is no session yet).
    let form = c
        .get(format!("{}/console/setup", node.base))
        .send()
        .await
        .expect("setup page");
    let form_cookie = form
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("gevulot_form="))
        .and_then(|v| v.split(';').next())
        .expect("form cookie")
        .to_string();
    let html = form.text().await.expect("body");
    let at = html.find(r#"name="csrf" value=""#).expect("csrf field") + 19;
    let csrf: String = html[at..].chars().take_while(|c| *c != '"').collect();
    let post = |body: String, cookie: Option<String>| {
        let (c, base) = (c.clone(), node.base.clone());
        async move {
            let mut r = c
                .post(format!("{base}/console/setup"))
                .header("content-type", "application/x-www-form-urlencoded");
            if let Some(cookie) = cookie {
                r = r.header("cookie", cookie);
            }
            r.body(body).send().await.expect("setup")
        }
    };
    // Without the cookie (another site posting the form): refused, nothing created.
    let forged = post(
        format!("csrf={csrf}&token={token}&username=root&password=first-admin-pw"),
        None,
    )
    .await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert!(
        forged
            .text()
            .await
            .expect("body")
            .contains("came from another site")
    );
    let post = |body: String| post(format!("csrf={csrf}&{body}"), Some(form_cookie.clone()));
    let wrong = post("token=gsetup_wrong&username=root&password=first-admin-pw".into()).await;
    assert_eq!(wrong.status(), StatusCode::FORBIDDEN);
    let text = wrong.text().await.expect("body");
    assert!(
        text.contains("aria-invalid=\"true\"") && text.contains("value=\"root\""),
        "{text}"
    );
    let ok = post(format!(
        "token={token}&username=root&password=first-admin-pw"
    ))
    .await;
    assert_eq!(ok.status(), StatusCode::SEE_OTHER);
    assert_eq!(ok.headers()["location"], "/console");
    let session = ok
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("gevulot_session="))
        .and_then(|v| v.split(';').next())
        .expect("signed in")
        .to_string();
    let dashboard = c
        .get(format!("{}/console", node.base))
        .header("cookie", session)
        .send()
        .await
        .expect("dashboard");
    assert_eq!(dashboard.status(), StatusCode::OK);
    assert!(
        dashboard
            .text()
            .await
            .expect("body")
            .contains(r#"id="who">root"#)
    );
}
