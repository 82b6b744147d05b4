//! The audit log end to end: each kind of operator action, over REST, the console and the host's
//! commands, leaves an entry with who, from where and what; admins read it over REST and in the
//! console; nothing changes or deletes an entry through any API.

use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

use crate::support::*;

const ADMIN: (&str, &str) = ("admin", "audit-admin-pass");

async fn audit_page(c: &Client, base: &str, token: &str, query: &str) -> Value {
    let r = c
        .get(format!("{base}/api/v1/audit{query}"))
        .bearer_auth(token)
        .send()
        .await
        .expect("audit");
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.expect("json")
}

#[tokio::test]
async fn every_kind_of_operator_action_is_recorded_and_cannot_be_changed() {
    let sysfs = testkit::tempdir();
    app::gpu::fixture::workstation(sysfs.path()).expect("fixture");
    let root = sysfs.path().display().to_string();
    let node = Running::start_with(
        None,
        &[
            ("GEVULOT_ADMIN_PASSWORD", ADMIN.1),
            ("GEVULOT_SYSFS_ROOT", &root),
            ("GEVULOT_NODE_NO_EXECUTION", "true"),
        ],
    );
    let c = Client::new();
    let base = node.base.clone();

    // A refused sign-in, then sign-ins, a token, a user, a password change, a sign-out.
    let r = c
        .post(format!("{base}/api/v1/session"))
        .json(&json!({"username": "admin", "password": "wrong-password-1"}))
        .send()
        .await
        .expect("sign in");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let token = api_token(&c, &base, ADMIN.0, ADMIN.1).await;
    let r = c
        .post(format!("{base}/api/v1/users"))
        .bearer_auth(&token)
        .json(&json!({"username": "olga", "password": "operator-pass-1", "role": "operator"}))
        .send()
        .await
        .expect("create user");
    assert_eq!(r.status(), StatusCode::CREATED);
    let (cookie, csrf) = sign_in(&c, &base, "olga", "operator-pass-1").await;
    let r = c
        .post(format!("{base}/api/v1/session/password"))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .json(&json!({"current_password": "operator-pass-1", "new_password": "operator-pass-2"}))
        .send()
        .await
        .expect("password");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let (cookie, csrf) = sign_in(&c, &base, "olga", "operator-pass-2").await;

    // Operator work: an upload, a deploy, a run and its cancel, a GPU pool change, a drain.
    let r = c
        .post(format!("{base}/api/v1/uploads?name=prover.img"))
        .bearer_auth(&token)
        .body(vec![7u8; 4096])
        .send()
        .await
        .expect("upload");
    assert_eq!(r.status(), StatusCode::CREATED);
    let checksum = r.json::<Value>().await.expect("json")["checksum"].clone();
    let r = c
        .post(format!("{base}/api/v1/programs"))
        .bearer_auth(&token)
        .json(&json!({
            "name": "pair",
            "prover": {"name": "prover", "upload": checksum, "image_file_name": "prover.img"},
            "verifier": {"name": "verifier", "upload": checksum, "image_file_name": "prover.img"},
        }))
        .send()
        .await
        .expect("deploy");
    assert_eq!(r.status(), StatusCode::CREATED);
    let deployed: Value = r.json().await.expect("json");
    let r = c
        .post(format!("{base}/api/v1/runs"))
        .bearer_auth(&token)
        .json(&json!({"steps": [{"program": deployed["prover"]}]}))
        .send()
        .await
        .expect("run");
    assert_eq!(r.status(), StatusCode::CREATED);
    let run = r.json::<Value>().await.expect("json")["hash"]
        .as_str()
        .expect("hash")
        .to_string();
    let r = c
        .post(format!("{base}/api/v1/transactions/{run}/cancel"))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .expect("cancel");
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = c
        .put(format!("{base}/api/v1/gpus/0000:02:00.0"))
        .bearer_auth(&token)
        .json(&json!({"action": "reserve", "reason": "burn-in"}))
        .send()
        .await
        .expect("gpu");
    assert_eq!(r.status(), StatusCode::OK);
    for method in [Method::POST, Method::DELETE] {
        let r = c
            .request(method, format!("{base}/api/v1/node/drain"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("drain");
        assert_eq!(r.status(), StatusCode::OK);
    }
    let r = c
        .delete(format!("{base}/api/v1/session"))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .expect("sign out");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    // A role change in the console (an admin's form).
    let users: Value = c
        .get(format!("{base}/api/v1/users"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("users")
        .json()
        .await
        .expect("json");
    let olga = users["items"]
        .as_array()
        .and_then(|u| u.iter().find(|u| u["username"] == "olga"))
        .and_then(|u| u["id"].as_i64())
        .expect("olga's id");
    let (admin_cookie, admin_csrf) = sign_in(&c, &base, ADMIN.0, ADMIN.1).await;
    let r = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .post(format!("{base}/console/users/{olga}/role"))
        .header("cookie", &admin_cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={admin_csrf}&role=operator"))
        .send()
        .await
        .expect("role");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    // A webhook registered and deleted.
    let created: Value = c
        .post(format!("{base}/api/v1/webhooks"))
        .bearer_auth(&token)
        .json(&json!({"url": "http://93.184.216.34/hook"}))
        .send()
        .await
        .expect("webhook")
        .json()
        .await
        .expect("json");
    let hook = format!("webhook {}", created["webhook"]["id"]);
    let r = c
        .delete(format!(
            "{base}/api/v1/webhooks/{}",
            created["webhook"]["id"]
        ))
        .bearer_auth(&token)
        .send()
        .await
        .expect("delete webhook");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    // A command on the host.
    let key = app::crypto::SecretKey::from_bytes(&[9u8; 32])
        .expect("key")
        .public_key()
        .to_hex();
    let out = output(
        gevulot()
            .args(["peer", &key, "whitelist"])
            .env("GEVULOT_DATA_DIRECTORY", node.data.path()),
    );
    assert!(out.status.success(), "{}", stderr(&out));

    let page = audit_page(&c, &base, &token, "?limit=1000").await;
    let items = page["items"].as_array().expect("items").clone();
    let find = |action: &str| -> Value {
        items
            .iter()
            .find(|e| e["action"] == action)
            .unwrap_or_else(|| panic!("no {action} entry in {page}"))
            .clone()
    };
    let refused = find("sign_in_failed");
    assert_eq!(
        (&refused["outcome"], &refused["target"], &refused["address"]),
        (&json!("refused"), &json!("admin"), &json!("127.0.0.1"))
    );
    for (action, actor, target) in [
        ("sign_in", "admin", Some("admin")),
        ("token_created", "admin", Some("test")),
        ("user_created", "admin", Some("olga")),
        ("password_changed", "olga", Some("olga")),
        ("upload", "admin", Some("prover.img")),
        ("deploy", "admin", deployed["hash"].as_str()),
        ("run", "admin", Some(run.as_str())),
        ("cancel", "olga", Some(run.as_str())),
        ("gpu_pool", "admin", Some("0000:02:00.0")),
        ("drain", "admin", None),
        ("resume", "admin", None),
        ("sign_out", "olga", Some("olga")),
        ("whitelist", "cli", Some(key.as_str())),
        ("webhook_created", "admin", Some(hook.as_str())),
        ("webhook_deleted", "admin", Some(hook.as_str())),
        (
            "role_changed",
            "admin",
            Some(format!("user {olga}").as_str()),
        ),
    ] {
        let e = items
            .iter()
            .find(|e| e["action"] == action && e["actor"] == actor)
            .unwrap_or_else(|| panic!("no {action} by {actor} in {page}"));
        assert_eq!(e["outcome"], "ok", "{e}");
        assert_eq!(e["target"].as_str(), target, "{e}");
        if actor != "cli" {
            assert_eq!(e["address"], "127.0.0.1", "{e}");
        }
    }
    assert!(
        find("gpu_pool")["detail"]
            .as_str()
            .is_some_and(|d| d.contains("reserved: burn-in")),
        "{page}"
    );
    // Paging and the filter.
    let one = audit_page(&c, &base, &token, "?limit=1").await;
    let next = one["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_string();
    let older = audit_page(&c, &base, &token, &format!("?limit=1&cursor={next}")).await;
    assert!(older["items"][0]["id"].as_i64() < one["items"][0]["id"].as_i64());
    let failed = audit_page(&c, &base, &token, "?action=sign_in_failed").await;
    assert_eq!(failed["items"].as_array().map(Vec::len), Some(1));
    let r = c
        .get(format!("{base}/api/v1/audit?action=nonsense"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("bad filter");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // Admins only; and no route changes or deletes an entry.
    let operator = api_token(&c, &base, "olga", "operator-pass-2").await;
    let r = c
        .get(format!("{base}/api/v1/audit"))
        .bearer_auth(&operator)
        .send()
        .await
        .expect("audit");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let id = items[0]["id"].as_i64().expect("id");
    for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
        for path in ["/api/v1/audit".to_string(), format!("/api/v1/audit/{id}")] {
            let r = c
                .request(method.clone(), format!("{base}{path}"))
                .bearer_auth(&token)
                .json(&json!({"actor": "someone else"}))
                .send()
                .await
                .expect("change");
            assert!(
                matches!(r.status().as_u16(), 404 | 405),
                "{method} {path}: {}",
                r.status()
            );
        }
    }
    let after = audit_page(&c, &base, &token, "?limit=1000").await;
    let unchanged: Vec<&Value> = after["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|e| e["id"].as_i64().is_some_and(|i| i <= id))
        .collect();
    assert_eq!(unchanged.len(), items.len());
    assert!(unchanged.iter().zip(&items).all(|(a, b)| *a == b));

    // The console's page shows it to admins.
    let html = c
        .get(format!("{base}/console/audit?action=gpu_pool"))
        .header("cookie", &admin_cookie)
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert!(html.contains(r#"data-action="gpu_pool""#), "{html}");
    assert!(
        !html.contains(r#"data-action="deploy""#),
        "the filter holds"
    );
    let (op_cookie, _) = sign_in(&c, &base, "olga", "operator-pass-2").await;
    let r = c
        .get(format!("{base}/console/audit"))
        .header("cookie", &op_cookie)
        .send()
        .await
        .expect("page");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}
