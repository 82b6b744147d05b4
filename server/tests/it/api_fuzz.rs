//! API fuzzing: schemathesis (pinned, from PyPI; `scripts/test-all` installs it) runs every one
//! of its checks against the OpenAPI document the node serves, signed in with an admin's API
//! token: no 5xx, every status code and response documented and matching its schema, requests
//! the document refuses are refused, and requests it allows are accepted (the exceptions, each
//! for a fact no schema can state, are in `server/tests/api-fuzz/schemathesis.toml`).

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use crate::support::{Running, UNLIMITED, api_token};

const ADMIN_PASSWORD: &str = "fuzz-Pa55word-xyz";
/// Examples per operation and phase: bounded for CI (`GEVULOT_FUZZ_EXAMPLES` to explore more).
const EXAMPLES: &str = "20";
/// A fixed seed, so that a CI run is reproducible (`GEVULOT_FUZZ_SEED` to explore others).
const SEED: &str = "1";

/// The schemathesis that `scripts/test-all` installs, or `GEVULOT_SCHEMATHESIS`.
fn schemathesis() -> PathBuf {
    let path = std::env::var_os("GEVULOT_SCHEMATHESIS").map_or_else(
        || {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../target/tools/schemathesis/bin/schemathesis")
        },
        PathBuf::from,
    );
    assert!(
        path.exists(),
        "schemathesis is not installed at {}: run scripts/test-all once (it installs \
         server/tests/api-fuzz/requirements.txt there), or set GEVULOT_SCHEMATHESIS",
        path.display()
    );
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_nothing_in_the_served_document() {
    let program = schemathesis();
    let mut env = UNLIMITED.to_vec();
    env.extend([
        ("GEVULOT_ADMIN_PASSWORD", ADMIN_PASSWORD),
        ("GEVULOT_NODE_NO_EXECUTION", "true"),
        // Hooks may name any address here (there is no DNS: hostnames still fail to resolve).
        ("GEVULOT_WEBHOOK_ALLOW_NETS", "0.0.0.0/0,::/0"),
    ]);
    let node = Running::start_with(None, &env);
    let c = reqwest::Client::new();
    let token = api_token(&c, &node.base, "admin", ADMIN_PASSWORD).await;

    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/api-fuzz");
    let out = testkit::tempdir();
    let report = out.path().join("report.json");
    let examples = std::env::var("GEVULOT_FUZZ_EXAMPLES").unwrap_or_else(|_| EXAMPLES.into());
    let seed = std::env::var("GEVULOT_FUZZ_SEED").unwrap_or_else(|_| SEED.into());
    let (base, report_path, used_seed) = (node.base.clone(), report.clone(), seed.clone());
    let run = tokio::task::spawn_blocking(move || {
        Command::new(&program)
            .current_dir(&dir)
            .env("NO_COLOR", "1")
            .args(["--config-file", "schemathesis.toml", "run"])
            .arg(format!("{base}/api-docs/openapi.json"))
            .args(["--url", &base, "--checks", "all", "--no-color"])
            .args(["--max-examples", &examples, "--seed", &used_seed])
            .args(["--header", &format!("Authorization: Bearer {token}")])
            .args(["--report", "json", "--report-json-path"])
            .arg(&report_path)
            .output()
            .expect("schemathesis runs")
    })
    .await
    .expect("schemathesis");
    let text =
        String::from_utf8_lossy(&run.stdout).into_owned() + &String::from_utf8_lossy(&run.stderr);
    let report: Value = std::fs::read(&report)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| panic!("schemathesis wrote no report:\n{text}"));
    assert!(
        run.status.success(),
        "schemathesis found failures (exit {:?}):\n{text}",
        run.status.code()
    );

    let operations = report["operations"]["tested"].as_u64().expect("tested");
    let total = report["operations"]["total"].as_u64().expect("total");
    let generated = report["test_cases"]["generated"]
        .as_u64()
        .expect("generated");
    let failures = report["failures"].as_array().map_or(0, Vec::len);
    assert_eq!(operations, total, "every operation is tested:\n{text}");
    assert!(operations >= 30 && generated > operations * 10, "{report}");
    assert_eq!(failures, 0, "{report}");
    let summary = format!(
        "schemathesis {}: {operations} operations, {generated} test cases, {failures} failures \
         (5xx included), seed {seed}\n",
        report["schemathesis_version"].as_str().unwrap_or("?")
    );
    print!("{summary}");
    testkit::bench::Figures::new("fault-api-fuzz")
        .add("operations tested", operations as f64, "operations")
        .add("test cases generated", generated as f64, "cases")
        .add("failures, 5xx included", failures as f64, "failures")
        .write(&summary);
}
