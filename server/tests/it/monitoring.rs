//! The Grafana dashboard and the Prometheus alert rules in `monitoring/` load, and every
//! `gevulot_*` and `process_*` metric they name is one a running node exposes.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::Value;

use crate::support::Running;

fn monitoring(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../monitoring")
        .join(file)
}

/// Every `gevulot_…` and `process_…` name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for prefix in ["gevulot_", "process_"] {
        for (at, _) in text.match_indices(prefix) {
            let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
            if text[..at].ends_with(word) {
                continue;
            }
            names.insert(text[at..].chars().take_while(|c| word(*c)).collect());
        }
    }
    names
}

/// Every `expr` of the dashboard's panels.
fn dashboard_exprs(dashboard: &Value) -> Vec<String> {
    let mut exprs = Vec::new();
    let mut panels: Vec<&Value> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .collect();
    while let Some(panel) = panels.pop() {
        if let Some(inner) = panel["panels"].as_array() {
            panels.extend(inner);
        }
        for target in panel["targets"].as_array().into_iter().flatten() {
            exprs.push(target["expr"].as_str().expect("expr").to_string());
        }
    }
    exprs
}

/// The rules of `alerts.yml`: (alert, expr), the expr folded from its block when it has one.
fn alert_rules(yaml: &str) -> Vec<(String, String)> {
    let mut rules = Vec::new();
    let mut lines = yaml.lines().peekable();
    let mut alert = None;
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if let Some(name) = trimmed.strip_prefix("- alert: ") {
            alert = Some(name.trim().to_string());
        } else if let Some(expr) = trimmed.strip_prefix("expr: ") {
            let indent = line.len() - trimmed.len();
            let mut text = expr.trim().to_string();
            if text == "|" {
                text.clear();
                while let Some(next) = lines.peek() {
                    let t = next.trim_start();
                    if !t.is_empty() && next.len() - t.len() <= indent {
                        break;
                    }
                    text.push_str(t);
                    text.push(' ');
                    lines.next();
                }
            }
            let name = alert.take().expect("an expr belongs to an alert");
            rules.push((name, text.trim().to_string()));
        }
    }
    rules
}

/// The metric families a node's exposition declares (`# TYPE <name> …`), with the names their
/// samples carry (`_total`, `_bucket`, `_sum`, `_count`).
fn exposed(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut parts = rest.split_whitespace();
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        names.insert(name.to_string());
        let suffixes: &[&str] = match kind {
            "counter" => &["_total"],
            "histogram" => &["_bucket", "_sum", "_count"],
            _ => &[],
        };
        for s in suffixes {
            names.insert(format!("{name}{s}"));
        }
    }
    names
}

#[tokio::test]
async fn dashboard_and_alerts_name_only_metrics_the_node_exposes() {
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(monitoring("grafana/gevulot-node.json")).expect("dashboard"),
    )
    .expect("the dashboard is JSON");
    assert_eq!(dashboard["uid"], "gevulot-node");
    let exprs = dashboard_exprs(&dashboard);
    assert!(exprs.len() >= 20, "{} panel queries", exprs.len());

    let yaml = std::fs::read_to_string(monitoring("prometheus/alerts.yml")).expect("rules");
    let rules = alert_rules(&yaml);
    let alerts: BTreeSet<&str> = rules.iter().map(|(a, _)| a.as_str()).collect();
    for expected in [
        "GevulotNodeDown",
        "GevulotNotReady",
        "GevulotDiskLow",
        "GevulotTasksFailing",
        "GevulotQueueStuck",
        "GevulotNoPeers",
        "GevulotIngestSlow",
    ] {
        assert!(alerts.contains(expected), "{expected} missing: {alerts:?}");
    }
    assert!(rules.iter().all(|(_, e)| !e.is_empty()), "{rules:?}");
    let prometheus = std::fs::read_to_string(monitoring("prometheus/prometheus.yml")).expect("cfg");
    assert!(prometheus.contains("- alerts.yml") && prometheus.contains("job_name: gevulot"));

    // A node with a GPU (a fixture sysfs tree) that has answered a request and a submission,
    // so that every family has a series.
    let sysfs = testkit::tempdir();
    app::gpu::fixture::workstation(sysfs.path()).expect("fixture");
    let root = sysfs.path().display().to_string();
    let node = Running::start_with(
        None,
        &[
            ("GEVULOT_SYSFS_ROOT", &root),
            ("GEVULOT_GPU_DEVICES", "0000:01:00.0"),
        ],
    );
    let deploy = testkit::vector("deploy")["input_json"]
        .as_str()
        .expect("json")
        .to_string();
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/transactions", node.base))
        .header("content-type", "application/json")
        .body(deploy)
        .send()
        .await
        .expect("submit");
    assert_eq!(r.status(), 201);
    let text = node.metrics_text().await;
    let exposed = exposed(&text);
    let mut used = BTreeSet::new();
    for expr in exprs.iter().chain(rules.iter().map(|(_, e)| e)) {
        used.extend(metric_names(expr));
    }
    assert!(used.len() >= 20, "{used:?}");
    let missing: Vec<&String> = used.iter().filter(|n| !exposed.contains(*n)).collect();
    assert!(
        missing.is_empty(),
        "named by the dashboard or the rules but not exposed: {missing:?}\n{text}"
    );
    // The node's own view of itself: ready, with its data filesystem measured.
    assert!(text.contains("gevulot_ready 1"), "{text}");
    let free = text
        .lines()
        .find_map(|l| l.strip_prefix("gevulot_data_free_bytes "))
        .and_then(|v| v.parse::<u64>().ok())
        .expect("free bytes");
    assert!(free > 0, "{text}");
}
