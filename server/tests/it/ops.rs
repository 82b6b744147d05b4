//! Health, readiness (following the database), metrics, and bad input that must never make the
//! server fail.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Running, api_token, gevulot, output, stderr, stdout};

async fn readyz(node: &Running) -> (u16, Value) {
    let r = reqwest::Client::new()
        .get(format!("http://{}/readyz", node.health))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("request");
    (r.status().as_u16(), r.json().await.expect("json"))
}

/// Submits `txs` all at once over REST; the status of each answer, in order.
async fn submit_all(base: &str, txs: &[app::tx::Transaction]) -> Vec<u16> {
    let c = reqwest::Client::new();
    futures::future::join_all(txs.iter().map(|tx| {
        c.post(format!("{base}/api/v1/transactions"))
            .header("content-type", "application/json")
            .body(tx.to_json())
            .send()
    }))
    .await
    .into_iter()
    .map(|r| r.expect("request").status().as_u16())
    .collect()
}

#[tokio::test]
async fn readiness_follows_postgres() {
    let (cluster, url) = testkit::own_cluster_database().await.expect("database");
    let node = Running::start(Some(&url));
    let live = reqwest::get(format!("http://{}/livez", node.health))
        .await
        .expect("livez");
    assert_eq!(live.status(), 200);
    let (status, report) = readyz(&node).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["checks"]["database"]["status"], "ok");
    assert_eq!(report["checks"]["p2p"]["status"], "ok", "{report}");
    let probe = output(gevulot().args([
        "healthcheck",
        "--http-healthcheck-listen-addr",
        &node.health.to_string(),
    ]));
    assert!(probe.status.success(), "{}", stderr(&probe));
    assert!(stdout(&probe).contains("\"database\""));

    // Acknowledged before the outage, by 8 clients at once: all of it must be there after.
    let key = app::crypto::SecretKey::from_bytes(&[8u8; 32]).expect("key");
    let before: Vec<app::tx::Transaction> = (100..164)
        .map(|n| app::tx::Transaction::new_signed(app::tx::Payload::Empty, n, &key))
        .collect();
    for chunk in before.chunks(8) {
        assert!(
            submit_all(&node.base, chunk)
                .await
                .iter()
                .all(|s| *s == 201)
        );
    }

    cluster.pause().expect("stop postgres");
    let down = std::time::Instant::now();
    let (status, report) = readyz(&node).await;
    let to_503 = down.elapsed();
    assert_eq!(status, 503, "{report}");
    assert_eq!(report["status"], "unavailable");
    assert_eq!(report["checks"]["database"]["status"], "fail");
    let probe = output(gevulot().args([
        "healthcheck",
        "--http-healthcheck-listen-addr",
        &node.health.to_string(),
    ]));
    assert!(!probe.status.success());
    assert!(stderr(&probe).contains("not ready"), "{}", stderr(&probe));
    // Liveness does not depend on the database.
    let live = reqwest::get(format!("http://{}/livez", node.health))
        .await
        .expect("livez");
    assert_eq!(live.status(), 200);
    // While the database is down, a submission is refused with a code, not lost or a crash.
    let v = testkit::vector("empty");
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/transactions", node.base))
        .header("content-type", "application/json")
        .body(v["input_json"].as_str().expect("json").to_string())
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 503);
    let problem: Value = r.json().await.expect("json");
    assert_eq!(problem["code"], "database_unavailable");
    // Many at once share a failed commit: each is refused together, not one after another
    // (sixteen attempts in turn would each wait for the pool's connect timeout).
    let started = std::time::Instant::now();
    let refused: Vec<app::tx::Transaction> = (0..16)
        .map(|n| app::tx::Transaction::new_signed(app::tx::Payload::Empty, n, &key))
        .collect();
    assert!(
        submit_all(&node.base, &refused)
            .await
            .iter()
            .all(|s| *s == 503)
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "concurrent submissions were refused one after another: {:?}",
        started.elapsed()
    );

    cluster.resume().expect("start postgres");
    let back = std::time::Instant::now();
    let mut ready = false;
    for _ in 0..60 {
        if readyz(&node).await.0 == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        ready,
        "readiness did not come back after PostgreSQL returned"
    );
    let to_ready = back.elapsed();
    let (status, _) = {
        let r = reqwest::Client::new()
            .post(format!("{}/api/v1/transactions", node.base))
            .header("content-type", "application/json")
            .body(v["input_json"].as_str().expect("json").to_string())
            .send()
            .await
            .expect("request");
        (r.status().as_u16(), ())
    };
    assert_eq!(
        status, 201,
        "the node works again after the database returns"
    );
    // Nothing acknowledged is missing, and nothing refused was stored.
    let mut missing = 0;
    for tx in &before {
        let r = reqwest::get(format!("{}/api/v1/transactions/{}", node.base, tx.hash))
            .await
            .expect("request");
        if r.status() != 200 {
            missing += 1;
        }
    }
    assert_eq!(
        missing, 0,
        "acknowledged transactions missing after the outage"
    );
    for tx in &refused {
        let r = reqwest::get(format!("{}/api/v1/transactions/{}", node.base, tx.hash))
            .await
            .expect("request");
        assert_eq!(r.status(), 404, "a refused submission was stored");
    }
    let report = format!(
        "PostgreSQL outage: readiness 503 after {:.2} s, ready again {:.2} s after it returned, 17 submissions refused with 503, none acknowledged; {} acknowledged before it, {missing} missing after\n",
        to_503.as_secs_f64(),
        to_ready.as_secs_f64(),
        before.len()
    );
    print!("{report}");
    testkit::bench::Figures::new("fault-postgres-outage")
        .add(
            "PostgreSQL stopped -> readiness 503",
            to_503.as_secs_f64(),
            "s",
        )
        .add(
            "PostgreSQL back -> ready (no restart)",
            to_ready.as_secs_f64(),
            "s",
        )
        .add(
            "submissions refused while down (503, never acknowledged)",
            17.0,
            "requests",
        )
        .add(
            &format!(
                "acknowledged before the outage and missing after (of {})",
                before.len()
            ),
            f64::from(missing),
            "tx",
        )
        .write(&report);
}

#[tokio::test]
async fn metrics_expose_the_series() {
    let node = Running::start(None);
    let c = reqwest::Client::new();
    let v = testkit::vector("empty");
    c.post(format!("{}/api/v1/transactions", node.base))
        .header("content-type", "application/json")
        .body(v["input_json"].as_str().expect("json").to_string())
        .send()
        .await
        .expect("submit");
    c.post(format!("{}/rpc", node.base))
        .json(&serde_json::json!({"jsonrpc":"2.0","id":1,"method":"getTransaction","params":[[0,1,2]]}))
        .send()
        .await
        .expect("rpc");
    let text = node.metrics_text().await;
    for series in [
        "gevulot_http_requests_total{route=\"/api/v1/transactions\",method=\"POST\",status=\"201\"} 1",
        "gevulot_http_request_duration_seconds_bucket{",
        "gevulot_http_request_duration_seconds_count{route=\"jsonrpc\",method=\"getTransaction\"} 1",
        "gevulot_transactions_submitted_total{kind=\"empty\",outcome=\"accepted\"} 1",
        "gevulot_tasks{phase=\"queued\"} 0",
        "gevulot_queue_depth 0",
        "gevulot_vms_running ",
        "gevulot_gpus_in_use ",
        "gevulot_cpus_in_use ",
        "gevulot_memory_in_use_bytes ",
        "gevulot_downloads_in_progress ",
        "gevulot_peers_connected 0",
        "gevulot_p2p_transactions_total{outcome=\"published\"} 0",
        "gevulot_p2p_transactions_total{outcome=\"rejected\"} 0",
        // One submission so far: one commit holding it.
        "gevulot_intake_commits_total 1",
        "gevulot_intake_committed_transactions_total 1",
        "gevulot_intake_unknown_outcomes_total{outcome=\"stored\"} 0",
        "gevulot_intake_unknown_outcomes_total{outcome=\"not_stored\"} 0",
        "gevulot_intake_unknown_outcomes_total{outcome=\"dropped\"} 0",
        // No task yet: no phase change written.
        "gevulot_task_phase_commits_total 0",
        "gevulot_task_phase_changes_total 0",
        "gevulot_requests_refused_total{door=\"submission\"} 0",
        "gevulot_requests_refused_total{door=\"files\"} 0",
        // The standard process series, unprefixed, as every exporter names them.
        "\nprocess_cpu_seconds_total ",
        "\nprocess_resident_memory_bytes ",
        "\nprocess_open_fds ",
        "\nprocess_max_fds ",
        "\nprocess_threads ",
        "\nprocess_start_time_seconds ",
    ] {
        assert!(text.contains(series), "{series} missing from:\n{text}");
    }
    // One exposition: a single end marker, at the end.
    assert_eq!(text.matches("# EOF").count(), 1, "{text}");
    assert!(text.ends_with("# EOF\n"), "{text}");
}

/// Generated bad requests: none gets a 5xx, the node stays up, and nothing is stored.
#[tokio::test]
async fn bad_requests_never_fail_the_server() {
    let node = Running::start_with(None, &[("GEVULOT_ADMIN_PASSWORD", "fuzz-admin-pass")]);
    let c = reqwest::Client::new();
    // Half the requests carry an admin's token, so that operator routes parse their bodies too.
    let token = api_token(&c, &node.base, "admin", "fuzz-admin-pass").await;
    let valid = testkit::vector("stake")["input_json"]
        .as_str()
        .expect("json")
        .to_string();
    let mut bodies: Vec<String> = vec![
        String::new(),
        "{".into(),
        "null".into(),
        "[]".into(),
        "\"x\"".into(),
        "{\"jsonrpc\":\"2.0\"}".into(),
        "\u{0}\u{1}".into(),
        "{\"a\":".repeat(200),
    ];
    // Mutations of a valid transaction: truncations and replaced fields.
    for cut in (1..valid.len()).step_by(97) {
        bodies.push(valid[..cut].to_string());
    }
    for (from, to) in [
        ("\"nonce\":0", "\"nonce\":-1"),
        ("\"state\":null", "\"state\":{}"),
        ("[1,[1000]]", "[7,[1000]]"),
        ("\"Stake\"", "\"Steak\""),
    ] {
        bodies.push(valid.replace(from, to));
    }
    let rpc_methods = [
        "sendTransaction",
        "getTransaction",
        "getTransactionTree",
        "gevulot_listTransactions",
        "gevulot_getTransactionStatus",
        "gevulot_nodeInfo",
        "gevulot_peers",
    ];
    let paths = [
        "/",
        "/rpc",
        "/api/v1/transactions",
        "/api/v1/transactions/00",
        "/api/v1/programs/zz",
        "/api/v1/node",
        "/api/v1/node/peers",
        "/api-docs/openapi.json",
        "/api/v1/transactions?limit=-1",
        "/%ff",
        "/api/v1/transactions/%2e%2e",
    ];
    let mut count = 0;
    for body in &bodies {
        for path in paths {
            for method in [
                reqwest::Method::POST,
                reqwest::Method::GET,
                reqwest::Method::PUT,
                reqwest::Method::DELETE,
            ] {
                let mut req = c
                    .request(method.clone(), format!("{}{path}", node.base))
                    .header("content-type", "application/json")
                    .body(body.clone());
                if count % 2 == 0 {
                    req = req.bearer_auth(&token);
                }
                let r = req.send().await.expect("the node answers");
                assert!(
                    r.status().as_u16() < 500,
                    "{method} {path} {body:?}: {}",
                    r.status()
                );
                count += 1;
            }
        }
        for m in rpc_methods {
            let raw = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{m}","params":[{body}]}}"#);
            let r = c
                .post(format!("{}/rpc", node.base))
                .header("content-type", "application/json")
                .body(raw)
                .send()
                .await
                .expect("the node answers");
            assert!(r.status().as_u16() < 500, "{m} {body:?}: {}", r.status());
            count += 1;
        }
    }
    assert!(count > 500, "{count}");
    let info: Value = c
        .get(format!("{}/api/v1/node", node.base))
        .send()
        .await
        .expect("alive")
        .json()
        .await
        .expect("json");
    assert_eq!(info["transactions"], 0, "bad input stored nothing");
    // The admin can still sign in: the bad requests changed nothing.
    let r = c
        .post(format!("{}/api/v1/session", node.base))
        .json(&serde_json::json!({"username": "admin", "password": "fuzz-admin-pass"}))
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), 200);
}

/// Under its disk floor (`GEVULOT_MIN_FREE_MB`, here more than any disk has) the node says so in
/// readiness, the metrics and the console, and a Run's task waits before its downloads with the
/// reason.
#[tokio::test]
async fn under_the_disk_floor_tasks_wait_and_the_node_is_not_ready() {
    let node = Running::start_with(
        None,
        &[
            ("GEVULOT_MIN_FREE_MB", "1000000000000"),
            ("GEVULOT_ADMIN_PASSWORD", "disk-admin-pass"),
        ],
    );
    let (status, report) = readyz(&node).await;
    assert_eq!(status, 503, "{report}");
    assert_eq!(report["checks"]["disk"]["status"], "fail", "{report}");
    let why = report["checks"]["disk"]["error"].as_str().unwrap_or("");
    assert!(why.contains("GEVULOT_MIN_FREE_MB"), "{report}");
    assert_eq!(report["checks"]["database"]["status"], "ok", "{report}");
    let metrics = node.metrics_text().await;
    assert!(metrics.contains("gevulot_ready 0"), "{metrics}");

    let c = reqwest::Client::new();
    let (session, _) = crate::support::sign_in(&c, &node.base, "admin", "disk-admin-pass").await;
    let page = c
        .get(format!("{}/console", node.base))
        .header("cookie", session)
        .send()
        .await
        .expect("dashboard")
        .text()
        .await
        .expect("html");
    assert!(page.contains("GiB free of"), "{page}");
    assert!(
        page.contains(r#"role="alert""#) && page.contains("GEVULOT_MIN_FREE_MB"),
        "{page}"
    );
    for name in ["deploy", "run"] {
        let r = c
            .post(format!("{}/api/v1/transactions", node.base))
            .header("content-type", "application/json")
            .body(
                testkit::vector(name)["input_json"]
                    .as_str()
                    .expect("json")
                    .to_string(),
            )
            .send()
            .await
            .expect("submit");
        assert_eq!(r.status(), 201, "{name}");
    }
    let run = app::tx::Hash::from_hex(testkit::vector("run")["hash_hex"].as_str().expect("hash"))
        .expect("hash");
    let tasks = crate::support::wait_tasks(
        &node.base,
        &run,
        Duration::from_secs(30),
        "the first task waits for disk space",
        |t| {
            t.first().is_some_and(|t| {
                t["phase"] == "waiting_for_resources"
                    && t["error"]
                        .as_str()
                        .is_some_and(|e| e.contains("GEVULOT_MIN_FREE_MB"))
            })
        },
    )
    .await;
    assert_eq!(tasks[1]["phase"], "queued", "{tasks:?}");
}

/// The drain switch over REST and the console: readiness says `draining`, the metric follows,
/// viewers may look but not flip it, and resuming makes the node ready again.
#[tokio::test]
async fn the_drain_switch_over_rest_and_the_console() {
    let node = Running::start_with(None, &[("GEVULOT_ADMIN_PASSWORD", "drain-admin-pass")]);
    let c = reqwest::Client::new();
    let drain = format!("{}/api/v1/node/drain", node.base);
    assert_eq!(
        c.get(&drain).send().await.expect("get").status(),
        401,
        "the drain state needs a signed-in caller"
    );
    let token = api_token(&c, &node.base, "admin", "drain-admin-pass").await;
    let call =
        |method: reqwest::Method, token: &str| c.request(method, &drain).bearer_auth(token).send();
    let state: Value = call(reqwest::Method::GET, &token)
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(state["draining"], false, "{state}");
    assert!(state.get("since").is_none(), "{state}");
    assert_eq!(readyz(&node).await.0, 200);

    let r = call(reqwest::Method::POST, &token).await.expect("drain");
    assert_eq!(r.status(), 200);
    let state: Value = r.json().await.expect("json");
    assert_eq!(state["draining"], true, "{state}");
    let since = state["since"].as_str().expect("since").to_string();
    // Draining twice keeps the first time.
    let again: Value = call(reqwest::Method::POST, &token)
        .await
        .expect("drain")
        .json()
        .await
        .expect("json");
    assert_eq!(again["since"], since.as_str());
    let (status, report) = readyz(&node).await;
    assert_eq!(status, 503, "{report}");
    assert_eq!(report["status"], "draining", "{report}");
    assert_eq!(report["checks"]["drain"]["status"], "draining", "{report}");
    assert_eq!(report["checks"]["database"]["status"], "ok", "{report}");
    let metrics = node.metrics_text().await;
    assert!(metrics.contains("gevulot_draining 1"), "{metrics}");
    assert!(metrics.contains("gevulot_ready 0"), "{metrics}");

    // A viewer may look, not flip the switch.
    let r = c
        .post(format!("{}/api/v1/users", node.base))
        .bearer_auth(&token)
        .json(&serde_json::json!({"username": "vic", "password": "viewer-pass-123", "role": "viewer"}))
        .send()
        .await
        .expect("create viewer");
    assert_eq!(r.status(), 201);
    let viewer = api_token(&c, &node.base, "vic", "viewer-pass-123").await;
    assert_eq!(
        call(reqwest::Method::GET, &viewer)
            .await
            .expect("get")
            .status(),
        200
    );
    for method in [reqwest::Method::POST, reqwest::Method::DELETE] {
        let r = call(method.clone(), &viewer).await.expect("flip");
        assert_eq!(r.status(), 403, "{method}");
    }

    // The console shows the state and flips it (an operator's form with the CSRF token).
    let (cookie, csrf) = crate::support::sign_in(&c, &node.base, "admin", "drain-admin-pass").await;
    let page = |cookie: String| {
        let c = c.clone();
        let url = format!("{}/console", node.base);
        async move {
            c.get(url)
                .header("cookie", cookie)
                .send()
                .await
                .expect("dashboard")
                .text()
                .await
                .expect("html")
        }
    };
    let html = page(cookie.clone()).await;
    assert!(html.contains("Draining since"), "{html}");
    assert!(html.contains(r#"action="/console/drain/resume""#), "{html}");
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let r = no_redirects
        .post(format!("{}/console/drain/resume", node.base))
        .header("cookie", &cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("csrf=forged")
        .send()
        .await
        .expect("forged resume");
    assert_eq!(r.status(), 403, "a forged form changes nothing");
    assert_eq!(readyz(&node).await.0, 503);
    let r = no_redirects
        .post(format!("{}/console/drain/resume", node.base))
        .header("cookie", &cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}"))
        .send()
        .await
        .expect("resume");
    assert_eq!(r.status(), 303);
    let (status, report) = readyz(&node).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["checks"]["drain"]["status"], "ok", "{report}");
    let html = page(cookie.clone()).await;
    assert!(html.contains("Takes work."), "{html}");
    assert!(html.contains(r#"action="/console/drain""#), "{html}");
    assert!(node.metrics_text().await.contains("gevulot_draining 0"));

    let r = no_redirects
        .post(format!("{}/console/drain", node.base))
        .header("cookie", &cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}"))
        .send()
        .await
        .expect("drain from the console");
    assert_eq!(r.status(), 303);
    assert_eq!(readyz(&node).await.1["status"], "draining");
    let state: Value = call(reqwest::Method::DELETE, &token)
        .await
        .expect("resume")
        .json()
        .await
        .expect("json");
    assert_eq!(state["draining"], false, "{state}");
    assert_eq!(readyz(&node).await.0, 200);
}

/// The settings page and API: every directive with its value and source, secrets only as
/// `set`, the version, and what each area of the data directory holds.
#[tokio::test]
async fn settings_show_the_effective_configuration_without_secrets() {
    let node = Running::start_with(
        None,
        &[
            ("GEVULOT_ADMIN_PASSWORD", "settings-admin-pass"),
            ("GEVULOT_MIN_FREE_MB", "1"),
        ],
    );
    let c = reqwest::Client::new();
    let url = format!("{}/api/v1/node/settings", node.base);
    assert_eq!(c.get(&url).send().await.expect("get").status(), 401);
    let token = api_token(&c, &node.base, "admin", "settings-admin-pass").await;
    let text = c
        .get(&url)
        .bearer_auth(&token)
        .send()
        .await
        .expect("settings")
        .text()
        .await
        .expect("text");
    for secret in ["settings-admin-pass", "test network"] {
        assert!(!text.contains(secret), "a secret is shown: {text}");
    }
    let body: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(
        body["data_directory"],
        node.data.path().display().to_string()
    );
    let setting = |name: &str| -> Value {
        body["settings"]
            .as_array()
            .expect("settings")
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {body}"))
            .clone()
    };
    let psk = setting("GEVULOT_PSK_PASSPHRASE");
    assert_eq!(
        (&psk["value"], &psk["source"], &psk["secret"]),
        (&json!("set"), &json!("environment"), &json!(true))
    );
    assert_eq!(setting("GEVULOT_ADMIN_PASSWORD")["value"], "set");
    let floor = setting("GEVULOT_MIN_FREE_MB");
    assert_eq!(
        (&floor["value"], &floor["source"]),
        (&json!("1"), &json!("environment"))
    );
    let run_time = setting("GEVULOT_MAX_VM_RUN_TIME");
    assert_eq!(
        (&run_time["value"], &run_time["source"]),
        (&json!("1800"), &json!("default"))
    );
    let gpus = setting("GEVULOT_GPU_DEVICES");
    assert_eq!(gpus["source"], "unset", "{gpus}");
    assert!(gpus.get("value").is_none(), "{gpus}");
    let areas = body["data"].as_array().expect("areas");
    let database = areas
        .iter()
        .find(|a| a["area"] == "database")
        .expect("database area");
    assert!(database["bytes"].as_u64().unwrap_or(0) > 0, "{database}");
    for area in ["content", "images", "txfiles", "tmp", "vms", "log"] {
        assert!(areas.iter().any(|a| a["area"] == area), "{area}");
    }
    assert_eq!(body["filesystem"]["min_free_bytes"], 1 << 20);
    let metrics = node.metrics_text().await;
    assert!(
        metrics.contains(r#"gevulot_data_area_bytes{area="database"}"#),
        "{metrics}"
    );

    // Operators only.
    let r = c
        .post(format!("{}/api/v1/users", node.base))
        .bearer_auth(&token)
        .json(&json!({"username": "val", "password": "viewer-pass-123", "role": "viewer"}))
        .send()
        .await
        .expect("create viewer");
    assert_eq!(r.status(), 201);
    let viewer = api_token(&c, &node.base, "val", "viewer-pass-123").await;
    assert_eq!(
        c.get(&url)
            .bearer_auth(&viewer)
            .send()
            .await
            .expect("get")
            .status(),
        403
    );

    // The console's page shows the same.
    let (cookie, _) = crate::support::sign_in(&c, &node.base, "admin", "settings-admin-pass").await;
    let html = c
        .get(format!("{}/console/settings", node.base))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert!(
        html.contains(r#"data-setting="GEVULOT_MIN_FREE_MB""#),
        "{html}"
    );
    assert!(html.contains(r#"data-area="database""#), "{html}");
    assert!(html.contains(r#"href="/console/settings""#), "{html}");
    for secret in ["settings-admin-pass", "test network"] {
        assert!(!html.contains(secret), "a secret is shown");
    }
    let (viewer_cookie, _) =
        crate::support::sign_in(&c, &node.base, "val", "viewer-pass-123").await;
    let r = c
        .get(format!("{}/console/settings", node.base))
        .header("cookie", &viewer_cookie)
        .send()
        .await
        .expect("page");
    assert_eq!(r.status(), 403);
}
