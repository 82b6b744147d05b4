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

#[tokio::test]
async fn new_methods() {
    let node = Running::start(None);
    for name in ["deploy", "run", "proof", "empty", "stake"] {
        let v = testkit::vector(name);
        call_raw(
            &node.base,
            "/",
            "sendTransaction",
            &field(&v, "send_transaction_params_json"),
        )
        .await;
    }
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
    let status = call(
        &node.base,
        "gevulot_getTransactionStatus",
        json!([run_hash]),
    )
    .await;
    assert_eq!(status["result"]["kind"], "run", "{status}");
    // One task per workflow step (whatever phase the pipeline has them in by now).
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
