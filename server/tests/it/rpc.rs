//! The original JSON-RPC methods, driven with raw JSON exactly as the original client sends it
//! (the fixture vectors), and the new `gevulot_` methods.

use serde_json::{Value, json};

use crate::support::Running;

/// POSTs a raw JSON-RPC request and returns the raw text of `result` (key order preserved).
async fn call_raw(base: &str, path: &str, method: &str, params: &str) -> String {
    let body = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":{params}}}"#);
    let response = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let text = response.text().await.expect("body");
    let at = text
        .find(r#""result":"#)
        .unwrap_or_else(|| panic!("no result in {text}"));
    text[at + 9..text.len() - 1].to_string()
}

async fn call(base: &str, method: &str, params: Value) -> Value {
    reqwest::Client::new()
        .post(format!("{base}/rpc"))
        .json(&json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params}))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json")
}

/// Sends the named fixture vectors with `sendTransaction`, as the original client sends them.
async fn send_vectors(base: &str, names: &[&str]) {
    for name in names {
        let v = testkit::vector(name);
        call_raw(
            base,
            "/",
            "sendTransaction",
            &field(&v, "send_transaction_params_json"),
        )
        .await;
    }
}

fn field(v: &Value, name: &str) -> String {
    v[name]
        .as_str()
        .unwrap_or_else(|| panic!("{name}"))
        .to_string()
}

#[tokio::test]
async fn original_methods_with_the_original_client_bytes() {
    let node = Running::start(None);
    let host = node.file_base_url.trim_start_matches("http://").to_string();
    let names: Vec<String> = testkit::original_vectors()
        .into_iter()
        .filter(|v| v["type"] == "transaction")
        .map(|v| field(&v, "name"))
        .collect();
    // Deploy before Run before Proof before Verification: the vectors are in that order.
    for name in &names {
        let v = testkit::vector(name);
        let result = call_raw(
            &node.base,
            "/",
            "sendTransaction",
            &field(&v, "send_transaction_params_json"),
        )
        .await;
        assert_eq!(result, r#"{"Ok":null}"#, "{name}");
    }
    for name in &names {
        let v = testkit::vector(name);
        let expected = field(&v, "rpc_response_json").replace("127.0.0.1:9995", &host);
        let result = call_raw(
            &node.base,
            "/",
            "getTransaction",
            &field(&v, "get_transaction_params_json"),
        )
        .await;
        assert_eq!(result, expected, "{name}");
    }
    // The tree, queried by each of its members, on both paths.
    let tree = testkit::vector("tx_tree_run_proof_verification");
    for hash in tree["query_hashes_hex"].as_array().expect("hashes") {
        let bytes = hex::decode(hash.as_str().expect("hex")).expect("hex");
        let params = format!("[{}]", serde_json::to_string(&bytes).expect("json"));
        for path in ["/", "/rpc"] {
            let result = call_raw(&node.base, path, "getTransactionTree", &params).await;
            assert_eq!(
                result,
                field(&tree, "rpc_response_json"),
                "{hash} on {path}"
            );
        }
    }
    // A replay is acknowledged again.
    let v = testkit::vector("run");
    let again = call_raw(
        &node.base,
        "/",
        "sendTransaction",
        &field(&v, "send_transaction_params_json"),
    )
    .await;
    assert_eq!(again, r#"{"Ok":null}"#);
}

#[tokio::test]
async fn original_methods_say_precisely_why() {
    let node = Running::start(None);
    let neg = testkit::vector("neg_altered_hash_field");
    let r = call_raw(
        &node.base,
        "/",
        "sendTransaction",
        &format!("[{}]", field(&neg, "input_json")),
    )
    .await;
    assert!(
        r.starts_with(r#"{"Err":{"InvalidRequest":"the hash field cd15be3e"#),
        "{r}"
    );
    assert!(r.contains(&field(&neg, "true_hash_hex")), "{r}");
    let raw = testkit::vector("neg_signature_over_raw_hash");
    let r = call_raw(
        &node.base,
        "/",
        "sendTransaction",
        &format!("[{}]", field(&raw, "input_json")),
    )
    .await;
    assert!(r.contains("bad signature"), "{r}");
    let dup = testkit::vector("neg_run_duplicate_program");
    let r = call_raw(
        &node.base,
        "/",
        "sendTransaction",
        &format!("[{}]", field(&dup, "input_json")),
    )
    .await;
    assert!(
        r.contains("steps[1].program")
            && r.contains("each step of a workflow must name a different program"),
        "{r}"
    );
    let missing_state = testkit::vector("deser_state_field_missing");
    let r = call_raw(
        &node.base,
        "/",
        "sendTransaction",
        &format!("[{}]", field(&missing_state, "input_json")),
    )
    .await;
    assert!(
        r.contains("InvalidRequest") && r.contains("missing field `state`"),
        "{r}"
    );
    let r = call_raw(&node.base, "/", "sendTransaction", "[]").await;
    assert!(r.contains("InvalidRequest"), "{r}");
    let r = call_raw(
        &node.base,
        "/",
        "getTransaction",
        &format!("[{:?}]", vec![1u8; 32]),
    )
    .await;
    assert_eq!(
        r,
        format!(r#"{{"Err":{{"NotFound":"{}"}}}}"#, "01".repeat(32))
    );
    let r = call_raw(&node.base, "/", "getTransaction", r#"["0102"]"#).await;
    assert!(
        r.contains("InvalidRequest") && r.contains("array of 32 numbers"),
        "{r}"
    );
    let r = call_raw(
        &node.base,
        "/",
        "getTransactionTree",
        &format!("[{:?}]", vec![2u8; 32]),
    )
    .await;
    assert!(r.contains("NotFound"), "{r}");
    // Nothing was stored by any of this.
    let info = call(&node.base, "gevulot_nodeInfo", json!([])).await;
    assert_eq!(info["result"]["transactions"], 0, "{info}");
}

/// A tree read (and cached) before its Proof and Verification arrive is never served after
/// them: each answer is the tree as stored at that moment, ending with the original's bytes.
#[tokio::test]
async fn trees_follow_their_new_members() {
    let node = Running::start(None);
    send_vectors(&node.base, &["deploy", "run"]).await;
    let tree = testkit::vector("tx_tree_run_proof_verification");
    let run = hex::decode(field(&testkit::vector("run"), "hash_hex")).expect("hex");
    let params = format!("[{}]", serde_json::to_string(&run).expect("json"));
    let read = || call_raw(&node.base, "/", "getTransactionTree", &params);
    let alone = read().await;
    assert_eq!(read().await, alone, "read again (from the cache)");
    send_vectors(&node.base, &["proof"]).await;
    let with_proof = read().await;
    assert_ne!(with_proof, alone, "the Proof joined the tree");
    assert_eq!(read().await, with_proof);
    send_vectors(&node.base, &["verification"]).await;
    assert_eq!(read().await, field(&tree, "rpc_response_json"));
}

#[tokio::test]
async fn new_methods() {
    let node = Running::start(None);
    send_vectors(&node.base, &["deploy", "run", "proof", "empty", "stake"]).await;
    let info = call(&node.base, "gevulot_nodeInfo", json!([])).await;
    let info = &info["result"];
    assert_eq!(info["database"], "sqlite");
    assert_eq!(info["transactions"], 5);
    assert_eq!(info["public_key"].as_str().map(str::len), Some(130));

    let page = call(
        &node.base,
        "gevulot_listTransactions",
        json!([{"limit": 2}]),
    )
    .await;
    let items = page["result"]["items"].as_array().expect("items");
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["kind"], "stake", "newest first");
    let cursor = page["result"]["next_cursor"]
        .as_str()
        .expect("cursor")
        .to_string();
    let next = call(
        &node.base,
        "gevulot_listTransactions",
        json!({"cursor": cursor, "limit": 10}),
    )
    .await;
    assert_eq!(next["result"]["items"].as_array().expect("items").len(), 3);
    let runs = call(
        &node.base,
        "gevulot_listTransactions",
        json!([{"kind": "run"}]),
    )
    .await;
    assert_eq!(
        runs["result"]["items"][0]["hash"],
        field(&testkit::vector("run"), "hash_hex")
    );

    let bad = call(
        &node.base,
        "gevulot_listTransactions",
        json!([{"kind": "nope"}]),
    )
    .await;
    assert_eq!(bad["error"]["data"]["code"], "invalid_parameter", "{bad}");
    let bad = call(
        &node.base,
        "gevulot_listTransactions",
        json!([{"cursor": "zzz"}]),
    )
    .await;
    assert_eq!(bad["error"]["data"]["code"], "invalid_cursor", "{bad}");
    let bad = call(
        &node.base,
        "gevulot_listTransactions",
        json!([{"colour": "red"}]),
    )
    .await;
    assert_eq!(bad["error"]["data"]["code"], "malformed_json", "{bad}");

    let run_hash = field(&testkit::vector("run"), "hash_hex");
    crate::support::wait_planned(&node.base, &run_hash).await;
    let status = call(
        &node.base,
        "gevulot_getTransactionStatus",
        json!([run_hash]),
    )
    .await;
    assert_eq!(status["result"]["kind"], "run", "{status}");
    // One task per workflow step, whatever phase the pipeline has them in by now.
    assert_eq!(
        status["result"]["tasks"].as_array().map(Vec::len),
        Some(2),
        "{status}"
    );
    assert_eq!(status["result"]["tasks"][1]["kind"], "verification");
    let missing = call(
        &node.base,
        "gevulot_getTransactionStatus",
        json!({"hash": "ab".repeat(32)}),
    )
    .await;
    assert_eq!(missing["error"]["code"], 4004);
    assert_eq!(missing["error"]["data"]["code"], "not_found");
    let unknown = call(&node.base, "nope", json!([])).await;
    assert_eq!(unknown["error"]["code"], -32601);
}

/// The calls' `error.data.code`, from the generated client's error.
fn catalogue_code(e: &jsonrpsee::core::ClientError) -> Option<api::ErrorCode> {
    match e {
        jsonrpsee::core::ClientError::Call(e) => api::rpc::error_code(e),
        _ => None,
    }
}

/// The `gevulot_*` methods through the client generated from `api::rpc::Gevulot` (HTTP and
/// WebSocket): typed answers, the catalogue's codes in errors, authorisation by API token; and a
/// batch, whose calls pass the middleware one by one (by-name query object, decoder errors as
/// `malformed_json`, each call timed under its method).
#[tokio::test]
async fn the_typed_client() {
    use api::ErrorCode;
    use api::dto::TransactionQuery;
    use api::rpc::GevulotClient as _;
    use jsonrpsee::http_client::HttpClientBuilder;
    use jsonrpsee::ws_client::WsClientBuilder;

    crate::support::install_tls_provider();
    let node = Running::start_with(None, &[("GEVULOT_ADMIN_PASSWORD", "admin-password-1")]);
    send_vectors(&node.base, &["deploy", "run"]).await;
    let run = field(&testkit::vector("run"), "hash_hex");
    let client = HttpClientBuilder::default()
        .build(format!("{}/rpc", node.base))
        .expect("client");

    let info = client.node_info().await.expect("nodeInfo");
    assert_eq!((info.transactions, info.database.as_str()), (2, "sqlite"));
    let all = client.list_transactions(None).await.expect("list");
    assert_eq!(all.items.len(), 2);
    let runs = client
        .list_transactions(Some(TransactionQuery {
            kind: Some("run".into()),
            ..TransactionQuery::default()
        }))
        .await
        .expect("list runs");
    assert_eq!(runs.items.len(), 1);
    assert_eq!(runs.items[0].hash, run);
    crate::support::wait_planned(&node.base, &run).await;
    let status = client
        .transaction_status(run.clone())
        .await
        .expect("status");
    assert_eq!((status.kind.as_str(), status.tasks.len()), ("run", 2));

    let missing = client.transaction_status("ab".repeat(32)).await;
    assert_eq!(
        missing.as_ref().err().and_then(catalogue_code),
        Some(ErrorCode::NotFound),
        "{missing:?}"
    );
    let bad = client.transaction_status("nope".into()).await;
    assert_eq!(
        bad.as_ref().err().and_then(catalogue_code),
        Some(ErrorCode::InvalidParameter),
        "{bad:?}"
    );
    let anonymous = client.peers().await;
    assert_eq!(
        anonymous.as_ref().err().and_then(catalogue_code),
        Some(ErrorCode::Unauthorized),
        "{anonymous:?}"
    );

    let c = reqwest::Client::new();
    let token = crate::support::api_token(&c, &node.base, "admin", "admin-password-1").await;
    let mut headers = jsonrpsee::http_client::HeaderMap::new();
    headers.insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    let operator = HttpClientBuilder::default()
        .set_headers(headers.clone())
        .build(format!("{}/rpc", node.base))
        .expect("client");
    let network = operator.peers().await.expect("peers");
    assert!(network.peers.is_empty(), "{network:?}");

    // A subscription over WebSocket: the current status at once.
    let ws = WsClientBuilder::default()
        .build(format!("{}/rpc", node.base.replacen("http", "ws", 1)))
        .await
        .expect("ws client");
    let mut statuses = ws
        .subscribe_transaction_status(run.clone())
        .await
        .expect("subscribe");
    let first = statuses.next().await.expect("a status").expect("decoded");
    assert_eq!(first.hash, run);

    // An operator's cancel over a WebSocket is audited with the address it came from.
    let operator_ws = WsClientBuilder::default()
        .set_headers(headers)
        .build(format!("{}/rpc", node.base.replacen("http", "ws", 1)))
        .await
        .expect("ws client");
    let cancelled = operator_ws.cancel(run.clone()).await.expect("cancel");
    assert!(cancelled.new, "{cancelled:?}");
    let audit: Value = c
        .get(format!("{}/api/v1/audit?action=cancel", node.base))
        .bearer_auth(&token)
        .send()
        .await
        .expect("audit")
        .json()
        .await
        .expect("json");
    let entry = &audit["items"][0];
    assert_eq!(
        (&entry["actor"], &entry["target"], &entry["address"]),
        (&json!("admin"), &json!(run), &json!("127.0.0.1")),
        "{audit}"
    );

    let batch: Value = c
        .post(format!("{}/rpc", node.base))
        .json(&json!([
            {"jsonrpc": "2.0", "id": 1, "method": "gevulot_listTransactions", "params": {"kind": "run"}},
            {"jsonrpc": "2.0", "id": 2, "method": "gevulot_nodeInfo"},
            {"jsonrpc": "2.0", "id": 3, "method": "gevulot_getTransactionStatus", "params": [5]},
        ]))
        .send()
        .await
        .expect("batch")
        .json()
        .await
        .expect("json");
    let answer = |id: u64| {
        batch
            .as_array()
            .and_then(|a| a.iter().find(|r| r["id"] == id))
            .cloned()
            .unwrap_or_else(|| panic!("no answer {id} in {batch}"))
    };
    assert_eq!(answer(1)["result"]["items"][0]["hash"], run.as_str());
    assert_eq!(answer(2)["result"]["transactions"], 3, "the node's Cancel");
    assert_eq!(answer(3)["error"]["code"], 4000);
    assert_eq!(answer(3)["error"]["data"]["code"], "malformed_json");

    let metrics = node.metrics_text().await;
    for series in [
        r#"gevulot_http_request_duration_seconds_count{route="jsonrpc",method="gevulot_listTransactions"} 3"#,
        r#"gevulot_http_request_duration_seconds_count{route="jsonrpc",method="gevulot_nodeInfo"} 2"#,
        r#"gevulot_http_request_duration_seconds_count{route="jsonrpc",method="gevulot_getTransactionStatus"} 4"#,
        r#"gevulot_http_request_duration_seconds_count{route="jsonrpc",method="sendTransaction"} 2"#,
    ] {
        assert!(metrics.contains(series), "{series} missing from\n{metrics}");
    }
}
