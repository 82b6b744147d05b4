//! Webhooks end to end on a real node: hooks registered over REST (and refused for inward
//! addresses, bad URLs and bad filters), a Run executed in a VM notifies a local receiver with
//! signed notifications in order ending with `run.ended`, a failing receiver is retried then
//! given up on with the reason in the delivery log, and the console, the audit log and the
//! metrics show it all.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use app::crypto::SecretKey;
use hmac::{KeyInit, Mac};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

use crate::support::*;

const PASSWORD: &str = "hooks-Pa55word-xyz";

/// One notification: its `x-gevulot-*` headers and body.
#[derive(Clone, Debug)]
struct Notification {
    path: String,
    headers: axum::http::HeaderMap,
    body: String,
}

impl Notification {
    fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("JSON body")
    }
}

/// A receiver on 127.0.0.1: `POST /ok` answers 204, `POST /down` 503.
async fn receiver() -> (String, Arc<Mutex<Vec<Notification>>>) {
    let seen: Arc<Mutex<Vec<Notification>>> = Arc::default();
    let record = |status: StatusCode, seen: Arc<Mutex<Vec<Notification>>>| {
        move |uri: axum::http::Uri, headers: axum::http::HeaderMap, body: String| {
            let seen = seen.clone();
            async move {
                seen.lock().expect("log").push(Notification {
                    path: uri.path().to_string(),
                    headers,
                    body,
                });
                (status, "receiver says no")
            }
        }
    };
    let app = axum::Router::new()
        .route(
            "/ok",
            axum::routing::post(record(StatusCode::NO_CONTENT, seen.clone())),
        )
        .route(
            "/down",
            axum::routing::post(record(StatusCode::SERVICE_UNAVAILABLE, seen.clone())),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, seen)
}

fn signed_by(secret: &str, n: &Notification) -> bool {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(format!("{}.{}", n.header("x-gevulot-timestamp"), n.body).as_bytes());
    n.header("x-gevulot-signature")
        == format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

async fn call(
    c: &Client,
    method: reqwest::Method,
    url: String,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = c.request(method, url).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let r = request.send().await.expect("request");
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_run_notifies_its_hooks_signed_in_order_and_a_failing_one_is_given_up_on() {
    let Some(lab) = Lab::new().await else { return };
    let prover_img = lab.program_image("prover.img", "/bin/test-prover");
    let verifier_img = lab.program_image("verifier.img", "/bin/test-verifier");
    let (receiver, seen) = receiver().await;
    let node = lab.start(&[
        ("GEVULOT_ADMIN_PASSWORD", PASSWORD),
        ("GEVULOT_WEBHOOK_ALLOW_NETS", "127.0.0.0/8"),
        ("GEVULOT_WEBHOOK_MAX_ATTEMPTS", "2"),
        ("GEVULOT_WEBHOOK_RETRY_SECS", "1"),
    ]);
    let c = Client::new();
    let token = api_token(&c, &node.base, "admin", PASSWORD).await;
    let hooks = format!("{}/api/v1/webhooks", node.base);
    let user = SecretKey::generate().expect("key");

    // Refused, and nothing registered: inward addresses, a bad URL, a bad filter.
    for (url, code) in [
        (
            "http://169.254.169.254/latest/meta-data",
            "address_not_allowed",
        ),
        ("http://10.0.0.1/hook", "address_not_allowed"),
        ("http://[::1]:9/hook", "address_not_allowed"),
        ("ftp://example.com/hook", "bad_url"),
    ] {
        let (status, problem) = call(
            &c,
            reqwest::Method::POST,
            hooks.clone(),
            &token,
            Some(json!({"url": url})),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{url}: {problem}");
        assert_eq!(problem["code"], code, "{url}: {problem}");
    }
    let (status, problem) = call(
        &c,
        reqwest::Method::POST,
        hooks.clone(),
        &token,
        Some(json!({"url": format!("{receiver}/ok"), "author": "not a key"})),
    )
    .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_parameter")),
        "{problem}"
    );
    let (_, listed) = call(&c, reqwest::Method::GET, hooks.clone(), &token, None).await;
    assert_eq!(listed["items"], json!([]), "nothing was registered");

    // Two hooks: one for the user's Runs, one whose receiver always fails.
    let (status, ok) = call(
        &c,
        reqwest::Method::POST,
        hooks.clone(),
        &token,
        Some(json!({"url": format!("{receiver}/ok"), "author": user.public_key().to_hex()})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{ok}");
    let secret = ok["secret"].as_str().expect("secret").to_string();
    let (status, down) = call(
        &c,
        reqwest::Method::POST,
        hooks.clone(),
        &token,
        Some(json!({"url": format!("{receiver}/down")})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{down}");
    let down_id = down["webhook"]["id"].as_i64().expect("id");
    let (_, listed) = call(&c, reqwest::Method::GET, hooks.clone(), &token, None).await;
    assert_eq!(
        listed["items"].as_array().map(Vec::len),
        Some(2),
        "{listed}"
    );
    assert!(
        !listed.to_string().contains(&secret),
        "the secret is shown only once"
    );

    // A Run, executed in a VM.
    let prover = program("hooked-prover", &prover_img, 256, 1);
    let verifier = program("hooked-verifier", &verifier_img, 256, 1);
    accepted(
        &node.base,
        &deploy(&user, "hooked", prover.clone(), verifier.clone()),
    )
    .await;
    let r = run(&user, vec![step(&prover, &["--nonce", "5"], vec![])]);
    accepted(&node.base, &r).await;
    let ended = all_end(&node.base, &r.hash, 240).await;
    assert_eq!(phases(&ended), ["succeeded"], "{ended:?}");

    // The good receiver: every notification signed, in order, the Run's end last.
    let start = Instant::now();
    let got = loop {
        let got: Vec<Notification> = seen
            .lock()
            .expect("log")
            .iter()
            .filter(|n| n.path == "/ok")
            .cloned()
            .collect();
        if got
            .last()
            .is_some_and(|n| n.header("x-gevulot-event") == "run.ended")
        {
            break got;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no run.ended: {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        got.iter().all(|n| signed_by(&secret, n)),
        "every notification is signed"
    );
    let ids: Vec<i64> = got
        .iter()
        .map(|n| n.header("x-gevulot-delivery").parse().expect("id"))
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "in order: {ids:?}");
    let seen_phases: Vec<String> = got
        .iter()
        .filter(|n| n.header("x-gevulot-event") == "task.phase")
        .map(|n| {
            n.json()["task"]["phase"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert_eq!(
        seen_phases.first().map(String::as_str),
        Some("queued"),
        "{seen_phases:?}"
    );
    assert_eq!(
        seen_phases.last().map(String::as_str),
        Some("succeeded"),
        "{seen_phases:?}"
    );
    assert!(
        seen_phases.iter().any(|p| p == "running"),
        "{seen_phases:?}"
    );
    let end = got.last().expect("end").json();
    assert_eq!(end["run"], r.hash.to_hex());
    assert_eq!(end["outcome"], "succeeded", "{end}");

    // The failing receiver: its first notification tried twice, then given up on, with why.
    let deliveries = format!("{hooks}/{down_id}/deliveries?limit=200");
    let start = Instant::now();
    let oldest = loop {
        let (_, page) = call(&c, reqwest::Method::GET, deliveries.clone(), &token, None).await;
        let oldest = page["items"]
            .as_array()
            .and_then(|i| i.last())
            .cloned()
            .unwrap_or_default();
        if oldest["state"] == "gave_up" {
            break oldest;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "not given up: {page}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(oldest["attempts"], 2, "{oldest}");
    assert_eq!(oldest["last_status"], 503, "{oldest}");
    let why = oldest["last_error"].as_str().unwrap_or_default();
    assert!(
        why.contains("gave up after 2 attempts") && why.contains("503"),
        "{why}"
    );
    assert_eq!(oldest["payload"]["task"]["phase"], "queued", "{oldest}");
    let tries = seen
        .lock()
        .expect("log")
        .iter()
        .filter(|n| {
            n.path == "/down"
                && n.header("x-gevulot-delivery").parse::<i64>().ok() == oldest["id"].as_i64()
        })
        .count();
    assert_eq!(tries, 2);

    // The console shows the hooks and the log, and refuses an inward address with the reason.
    let (cookie, csrf) = sign_in(&c, &node.base, "admin", PASSWORD).await;
    let page = |path: String| {
        let c = c.clone();
        let cookie = cookie.clone();
        async move {
            c.get(path)
                .header("cookie", cookie)
                .send()
                .await
                .expect("page")
                .text()
                .await
                .expect("html")
        }
    };
    let list = page(format!("{}/console/webhooks", node.base)).await;
    assert!(
        list.contains(&format!("{receiver}/down")) && list.contains("127.0.0.0/8"),
        "{list}"
    );
    let log = page(format!("{}/console/webhooks/{down_id}", node.base)).await;
    assert!(
        log.contains(r#"data-state="gave_up""#) && log.contains("gave up after 2 attempts"),
        "{log}"
    );
    let refused = c
        .post(format!("{}/console/webhooks", node.base))
        .header("cookie", &cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "csrf={csrf}&url=http%3A%2F%2F192.168.1.1%2Fhook&run=&author="
        ))
        .send()
        .await
        .expect("form");
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = refused.text().await.expect("html");
    assert!(
        html.contains("GEVULOT_WEBHOOK_ALLOW_NETS") && html.contains("192.168.1.1"),
        "{html}"
    );

    // Deleting a hook; metrics and the audit log saw it all.
    let (status, _) = call(
        &c,
        reqwest::Method::DELETE,
        format!("{hooks}/{down_id}"),
        &token,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = call(
        &c,
        reqwest::Method::GET,
        format!("{hooks}/{down_id}"),
        &token,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let metrics = node.metrics_text().await;
    for series in [
        "gevulot_webhook_deliveries_total{outcome=\"delivered\"}",
        "gevulot_webhook_deliveries_total{outcome=\"gave_up\"}",
    ] {
        let value: f64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix(series))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0);
        assert!(value >= 1.0, "{series} in\n{metrics}");
    }
    let audit = |action: &'static str| {
        let c = c.clone();
        let url = format!("{}/api/v1/audit?action={action}", node.base);
        let token = token.clone();
        async move {
            call(&c, reqwest::Method::GET, url, &token, None).await.1["items"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        }
    };
    let created = audit("webhook_created").await;
    assert_eq!(
        created.iter().filter(|e| e["outcome"] == "ok").count(),
        2,
        "{created:?}"
    );
    assert!(
        created.iter().filter(|e| e["outcome"] == "refused").count() >= 5,
        "{created:?}"
    );
    let deleted = audit("webhook_deleted").await;
    assert_eq!(deleted.len(), 1, "{deleted:?}");
    assert_eq!(deleted[0]["target"], format!("webhook {down_id}"));
}
