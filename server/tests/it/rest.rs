//! Every REST route against a running node, its errors, and the OpenAPI drift check.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::Running;

fn input(name: &str) -> String {
    testkit::vector(name)["input_json"]
        .as_str()
        .expect("input_json")
        .to_string()
}

fn hash(name: &str) -> String {
    testkit::vector(name)["hash_hex"]
        .as_str()
        .expect("hash_hex")
        .to_string()
}

async fn submit(client: &reqwest::Client, base: &str, body: &str) -> (StatusCode, Value) {
    let r = client
        .post(format!("{base}/api/v1/transactions"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("request");
    let status = r.status();
    (status, r.json().await.expect("json"))
}

async fn get(client: &reqwest::Client, url: String) -> (StatusCode, Value) {
    let r = client.get(url).send().await.expect("request");
    let status = r.status();
    let problem = r
        .headers()
        .get("content-type")
        .is_some_and(|v| v == "application/problem+json");
    let body: Value = r.json().await.expect("json");
    if !status.is_success() {
        assert!(problem, "errors are problem+json: {body}");
        assert!(
            body["code"].is_string() && body["detail"].is_string(),
            "{body}"
        );
    }
    (status, body)
}

#[tokio::test]
async fn every_route() {
    let node = Running::start(None);
    let c = reqwest::Client::new();
    let base = &node.base;

    // Submit: stored, then a replay changes nothing.
    for name in [
        "deploy",
        "run",
        "proof",
        "verification",
        "empty",
        "transfer_2pow40",
    ] {
        let (status, body) = submit(&c, base, &input(name)).await;
        assert_eq!(status, StatusCode::CREATED, "{name}: {body}");
        assert_eq!(body, json!({"hash": hash(name), "new": true}));
    }
    let (status, body) = submit(&c, base, &input("run")).await;
    assert_eq!(
        (status, body["new"].clone()),
        (StatusCode::OK, json!(false))
    );

    // Refusals say which rule, with a stable code, and store nothing.
    let (status, body) = submit(&c, base, &input("neg_altered_hash_field")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("hash_mismatch"))
    );
    let (status, body) = submit(&c, base, "{\"author\": 1}").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("malformed_transaction"))
    );
    let (status, body) = submit(&c, base, "not json").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("malformed_transaction"))
    );
    let r = c
        .post(format!("{base}/api/v1/transactions"))
        .header("content-type", "text/plain")
        .body(input("empty"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["code"], "unsupported_media_type");
    assert_eq!(body["type"], "urn:gevulot:problem:unsupported_media_type");

    // Get.
    let (status, tx) = get(&c, format!("{base}/api/v1/transactions/{}", hash("proof"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(tx["kind"], "proof");
    assert_eq!(tx["parent"], hash("run"));
    assert_eq!(tx["source"], "rest");
    assert!(
        tx["received_at"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{tx}"
    );
    let original: Value = serde_json::from_str(&input("proof")).expect("json");
    assert_eq!(tx["input_form"], original);
    assert_eq!(tx["output_form"]["payload"]["Proof"]["proof"], "AQID");
    let (status, _) = get(
        &c,
        format!("{base}/api/v1/transactions/{}", "ab".repeat(32)),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = get(&c, format!("{base}/api/v1/transactions/xyz")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_parameter"))
    );

    // List, filter, paginate.
    let (_, page) = get(&c, format!("{base}/api/v1/transactions?limit=4")).await;
    assert_eq!(page["items"].as_array().expect("items").len(), 4);
    assert_eq!(page["items"][0]["kind"], "transfer");
    let cursor = page["next_cursor"].as_str().expect("cursor");
    let (_, rest) = get(
        &c,
        format!("{base}/api/v1/transactions?limit=4&cursor={cursor}"),
    )
    .await;
    assert_eq!(rest["items"].as_array().expect("items").len(), 2);
    assert!(rest["next_cursor"].is_null());
    let (_, proofs) = get(&c, format!("{base}/api/v1/transactions?kind=proof")).await;
    assert_eq!(proofs["items"][0]["hash"], hash("proof"));
    let author = testkit::vector("keys")["keys"][0]["pubkey_65_hex"]
        .as_str()
        .expect("key")
        .to_string();
    let (_, by_author) = get(&c, format!("{base}/api/v1/transactions?author={author}")).await;
    assert_eq!(by_author["items"].as_array().expect("items").len(), 6);
    let (_, by_prefix) = get(
        &c,
        format!(
            "{base}/api/v1/transactions?hash_prefix={}",
            &hash("deploy")[..8]
        ),
    )
    .await;
    assert_eq!(by_prefix["items"][0]["hash"], hash("deploy"));
    let (_, later) = get(
        &c,
        format!("{base}/api/v1/transactions?since=2999-01-01T00:00:00Z"),
    )
    .await;
    assert_eq!(later["items"], json!([]));
    let (_, none_failed) = get(&c, format!("{base}/api/v1/transactions?status=failed")).await;
    assert_eq!(none_failed["items"], json!([]));
    for (query, code) in [
        ("kind=bogus", "invalid_parameter"),
        ("limit=0", "invalid_parameter"),
        ("limit=x", "invalid_parameter"),
        ("since=yesterday", "invalid_parameter"),
        ("cursor=abc", "invalid_cursor"),
        ("author=04", "invalid_parameter"),
        ("hash_prefix=xyz", "invalid_parameter"),
        ("status=sleeping", "invalid_parameter"),
        ("colour=red", "unknown_parameter"),
    ] {
        let (status, body) = get(&c, format!("{base}/api/v1/transactions?{query}")).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some(code)),
            "{query}: {body}"
        );
    }

    // Tree and status.
    let (_, tree) = get(
        &c,
        format!("{base}/api/v1/transactions/{}/tree", hash("verification")),
    )
    .await;
    assert_eq!(
        tree,
        json!({"hash": hash("run"), "kind": "run", "children": [
            {"hash": hash("proof"), "kind": "proof", "children": [
                {"hash": hash("verification"), "kind": "verification", "children": []}]}]})
    );
    let (status, _) = get(
        &c,
        format!("{base}/api/v1/transactions/{}/tree", hash("deploy")),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    crate::support::wait_planned(base, &hash("run")).await;
    let (_, status_doc) = get(
        &c,
        format!("{base}/api/v1/transactions/{}/status", hash("run")),
    )
    .await;
    assert_eq!(status_doc["hash"], hash("run"));
    assert_eq!(status_doc["kind"], "run");
    // One task per workflow step, whatever phase the pipeline has them in by now.
    let tasks = status_doc["tasks"].as_array().expect("tasks");
    let steps: Vec<(i64, &str)> = tasks
        .iter()
        .map(|t| {
            (
                t["step_index"].as_i64().unwrap_or(-1),
                t["kind"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(steps, [(0, "proof"), (1, "verification")], "{status_doc}");

    // Programs.
    let (_, programs) = get(&c, format!("{base}/api/v1/programs")).await;
    let items = programs["items"].as_array().expect("items");
    assert_eq!(items.len(), 2);
    let prover = testkit::vector("program_prover");
    let prover_hash = prover["hash_hex"].as_str().expect("hash");
    let (_, program) = get(&c, format!("{base}/api/v1/programs/{prover_hash}")).await;
    assert_eq!(program["name"], "prover");
    assert_eq!(
        program["resources"],
        json!({"mem_mib": 512, "cpus": 1, "gpus": 0})
    );
    assert_eq!(program["resources_defaulted"], false);
    assert_eq!(program["runs"], json!([hash("run")]));
    let verifier_hash = testkit::vector("program_verifier")["hash_hex"]
        .as_str()
        .expect("hash")
        .to_string();
    let (_, verifier) = get(&c, format!("{base}/api/v1/programs/{verifier_hash}")).await;
    assert_eq!(
        verifier["resources"],
        json!({"mem_mib": 2048, "cpus": 2, "gpus": 0})
    );
    assert_eq!(verifier["resources_defaulted"], true);
    let (status, _) = get(&c, format!("{base}/api/v1/programs/{}", "cd".repeat(32))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Node.
    let (_, info) = get(&c, format!("{base}/api/v1/node")).await;
    assert_eq!(info["transactions"], 6);
    assert_eq!(info["execution"], true);
    assert_eq!(info["file_base_url"], node.file_base_url);

    // Unknown routes are problems too.
    let (status, body) = get(&c, format!("{base}/api/v1/nope")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );

    // Security headers and request ids.
    let r = c
        .get(format!("{base}/api/v1/node"))
        .send()
        .await
        .expect("request");
    for h in [
        "x-content-type-options",
        "x-frame-options",
        "content-security-policy",
        "x-request-id",
    ] {
        assert!(r.headers().contains_key(h), "{h} missing");
    }
}

#[tokio::test]
async fn oversized_bodies_are_refused_with_a_code() {
    let node = Running::start_with(None, &[("GEVULOT_MAX_PROOF_BYTES", "1024")]);
    let c = reqwest::Client::new();
    let big = format!(
        "{{\"pad\":\"{}\"}}",
        "x".repeat(64 * 1024 + 1024 * 4 + (1 << 20))
    );
    let r = c
        .post(format!("{}/api/v1/transactions", node.base))
        .header("content-type", "application/json")
        .body(big.clone())
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = r.json().await.expect("problem");
    assert_eq!(body["code"], "payload_too_large");
    let r = c
        .post(format!("{}/rpc", node.base))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .expect("request");
    assert!(r.status().is_client_error(), "{}", r.status());
}

#[tokio::test]
async fn openapi_document_matches_the_committed_copy() {
    let node = Running::start(None);
    let c = reqwest::Client::new();
    let served: Value = c
        .get(format!("{}/api-docs/openapi.json", node.base))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../openapi/openapi.json");
    let pretty = serde_json::to_string_pretty(&served).expect("json") + "\n";
    if std::env::var("UPDATE_OPENAPI").is_ok_and(|v| v == "1") {
        std::fs::write(&path, &pretty).expect("write openapi.json");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == pretty,
        "openapi/openapi.json differs from what the server serves; run \
         `UPDATE_OPENAPI=1 cargo nextest run -p server openapi` and commit the result"
    );
    // The docs UI is served from the binary.
    let ui = c
        .get(format!("{}/api-docs/ui/", node.base))
        .send()
        .await
        .expect("request");
    assert_eq!(ui.status(), StatusCode::OK);
    assert!(ui.text().await.expect("html").contains("swagger"));
    let bundle = c
        .get(format!("{}/api-docs/ui/swagger-ui-bundle.js", node.base))
        .send()
        .await
        .expect("request");
    assert_eq!(bundle.status(), StatusCode::OK);
}
