//! `gevulot-cli` against a running node: its node commands go through the client generated from
//! `api::rpc::Gevulot`.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use crate::support::{Running, api_token};

/// The `gevulot-cli` binary of this build (a workspace test run builds it beside `gevulot`; a
/// run of this package alone builds it here).
fn cli_binary() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_BIN_EXE_gevulot")).with_file_name("gevulot-cli");
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--locked", "-p", "cli", "--bin", "gevulot-cli"])
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building gevulot-cli failed");
    }
    path
}

/// Runs the CLI with `args` against `url`: (success, stdout, stderr).
fn cli(url: &str, token: Option<&str>, args: &[&str]) -> (bool, String, String) {
    let mut cmd = Command::new(cli_binary());
    cmd.env_remove("GEVULOT_API_TOKEN")
        .arg("-j")
        .arg(url)
        .args(args);
    if let Some(token) = token {
        cmd.env("GEVULOT_API_TOKEN", token);
    }
    let out = cmd.output().expect("gevulot-cli runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[tokio::test]
async fn the_node_commands() {
    crate::support::install_tls_provider();
    let node = Running::start_with(None, &[("GEVULOT_ADMIN_PASSWORD", "admin-password-1")]);
    let c = reqwest::Client::new();
    for name in ["deploy", "run"] {
        let v = testkit::vector(name);
        let r = c
            .post(format!("{}/api/v1/transactions", node.base))
            .header("content-type", "application/json")
            .body(v["input_json"].as_str().expect("json").to_string())
            .send()
            .await
            .expect("submit");
        assert_eq!(r.status(), 201);
    }
    let run = testkit::vector("run")["hash_hex"]
        .as_str()
        .expect("hash")
        .to_string();
    let url = format!("{}/rpc", node.base);
    let url = url.as_str();

    let (ok, out, err) = cli(url, None, &["info", "--json"]);
    assert!(ok, "{err}");
    assert_eq!(json(&out)["transactions"], 2, "{out}");
    let (ok, out, err) = cli(url, None, &["info"]);
    assert!(ok && out.contains("transactions  2"), "{out}{err}");

    crate::support::wait_planned(&node.base, &run).await;
    let (ok, out, err) = cli(url, None, &["status", &run, "--json"]);
    assert!(ok, "{err}");
    let status = json(&out);
    assert_eq!(status["kind"], "run");
    assert_eq!(status["tasks"].as_array().map(Vec::len), Some(2), "{out}");
    let (ok, out, err) = cli(url, None, &["status", &run]);
    assert!(ok && out.starts_with(&format!("run {run}")), "{out}{err}");
    assert!(out.contains("step 1 verification"), "{out}");

    let (ok, out, err) = cli(url, None, &["list", "--kind", "run", "--json"]);
    assert!(ok, "{err}");
    assert_eq!(json(&out)["items"][0]["hash"], run.as_str(), "{out}");
    let (ok, out, err) = cli(url, None, &["list", "--limit", "1"]);
    assert!(ok && out.contains("more: --cursor "), "{out}{err}");

    // The node's own words and code on refusals; a clear message when it cannot be reached.
    let (ok, _, err) = cli(url, None, &["status", "nope"]);
    assert!(!ok && err.contains("(invalid_parameter)"), "{err}");
    let (ok, _, err) = cli(url, None, &["list", "--kind", "nope"]);
    assert!(!ok && err.contains("kind: \"nope\" is not one of"), "{err}");
    let (ok, _, err) = cli(url, None, &["peers"]);
    assert!(!ok && err.contains("(unauthorized)"), "{err}");
    let token = api_token(&c, &node.base, "admin", "admin-password-1").await;
    let (ok, out, err) = cli(url, Some(&token), &["peers", "--json"]);
    assert!(ok, "{err}");
    assert!(json(&out)["peer_id"].is_string(), "{out}");
    assert!(!out.contains(&token) && !err.contains(&token));

    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let nowhere = format!("http://{}/rpc", closed.local_addr().expect("addr"));
    drop(closed);
    let (ok, _, err) = cli(&nowhere, None, &["info"]);
    assert!(!ok && err.contains("cannot reach the node at"), "{err}");
}
