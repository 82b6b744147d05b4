//! The public front doors' limits per client address: JSON-RPC and `POST /api/v1/transactions`
//! (the submission door) and the file download server. Over a limit: `429`, `Retry-After`, the
//! catalogue's `rate_limited` (problem+json, or a JSON-RPC error object), counted in
//! `gevulot_requests_refused_total`; and a flood leaves the node's memory where it was.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::Running;

/// Sends `request` until one is refused (at most 50 times); returns it and how many passed.
async fn until_refused(
    request: impl Fn() -> reqwest::RequestBuilder,
) -> (reqwest::Response, usize) {
    for passed in 0..50 {
        let r = request().send().await.expect("request");
        if r.status() == 429 {
            return (r, passed);
        }
    }
    panic!("50 requests passed a limit of 1 a second");
}

fn retry_after(r: &reqwest::Response) -> u64 {
    r.headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("a Retry-After in seconds")
}

/// A rate of one request a second (bursts of two): the third request in a row is refused on
/// JSON-RPC (an error object with code 4029) and on REST submission (problem+json), with
/// `Retry-After`; reads outside the door are not limited; the download server has its own door.
#[tokio::test]
async fn over_the_rate_the_doors_answer_429() {
    let node = Running::start_with(
        None,
        &[
            ("GEVULOT_RATE_LIMIT", "1"),
            ("GEVULOT_CONCURRENCY_LIMIT", "0"),
            ("GEVULOT_FILES_RATE_LIMIT", "1"),
        ],
    );
    let c = reqwest::Client::new();

    let (refused, passed) = until_refused(|| {
        c.post(format!("{}/rpc", node.base))
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "gevulot_nodeInfo"}))
    })
    .await;
    assert!(passed >= 2, "the burst of two passes first ({passed})");
    assert!(retry_after(&refused) >= 1);
    let body: Value = refused.json().await.expect("json");
    assert_eq!(body["error"]["code"], 4029, "{body}");
    assert_eq!(body["error"]["data"]["code"], "rate_limited", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("retry in")),
        "{body}"
    );

    let run = testkit::vector("run")["input_json"]
        .as_str()
        .expect("json")
        .to_string();
    let (refused, _) = until_refused(|| {
        c.post(format!("{}/api/v1/transactions", node.base))
            .header("content-type", "application/json")
            .body(run.clone())
    })
    .await;
    assert!(retry_after(&refused) >= 1);
    assert_eq!(
        refused.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = refused.json().await.expect("json");
    assert_eq!(problem["code"], "rate_limited", "{problem}");
    assert_eq!(problem["status"], 429, "{problem}");

    for _ in 0..10 {
        let r = c
            .get(format!("{}/api/v1/transactions", node.base))
            .send()
            .await
            .expect("list");
        assert_eq!(r.status(), 200, "reads are not behind the submission door");
    }

    let (refused, _) = until_refused(|| {
        c.get(format!(
            "http://{}/txfiles/{}/missing.bin",
            node.files,
            "ab".repeat(32)
        ))
    })
    .await;
    assert!(retry_after(&refused) >= 1);
    let problem: Value = refused.json().await.expect("json");
    assert_eq!(problem["code"], "rate_limited", "{problem}");

    let metrics = node.metrics_text().await;
    let refused_at = |door: &str| -> u64 {
        let series = format!("gevulot_requests_refused_total{{door=\"{door}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&series))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{series} missing from\n{metrics}"))
    };
    assert!(refused_at("submission") >= 2, "{metrics}");
    assert!(refused_at("files") >= 1, "{metrics}");
}

/// One download at a time per address: a download counts as in flight until its last byte is
/// sent, not only while its handler runs; once the client goes away, the next one passes.
#[tokio::test]
async fn a_download_is_in_flight_until_its_last_byte() {
    let node = Running::start_with(
        None,
        &[
            ("GEVULOT_FILES_RATE_LIMIT", "0"),
            ("GEVULOT_FILES_CONCURRENCY_LIMIT", "1"),
        ],
    );
    let dir = node.data.path().join("txfiles").join("cd".repeat(32));
    std::fs::create_dir_all(&dir).expect("mkdir");
    // Far more than the sockets buffer: the first download is still sending while we ask again.
    std::fs::write(dir.join("big.bin"), vec![7u8; 64 << 20]).expect("write");
    let url = format!("http://{}/txfiles/{}/big.bin", node.files, "cd".repeat(32));

    let first = reqwest::get(&url).await.expect("first");
    assert_eq!(first.status(), 200);
    let second = reqwest::Client::new()
        .get(&url)
        .send()
        .await
        .expect("second");
    assert_eq!(second.status(), 429);
    assert_eq!(retry_after(&second), 1);
    let problem: Value = second.json().await.expect("json");
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("in flight")),
        "{problem}"
    );

    drop(first);
    let start = Instant::now();
    loop {
        let r = reqwest::Client::new()
            .head(&url)
            .send()
            .await
            .expect("again");
        if r.status() == 200 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the abandoned download still counts: {}",
            r.status()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The node's resident memory in KiB (`VmRSS`).
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("status")
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// A flood from one address under the default limits: 64 clients, 6,400 requests. Most are
/// refused at once, the node keeps answering, and its memory afterwards is where it was
/// (within 64 MiB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_is_refused_in_bounded_memory() {
    let node = Running::start(None);
    let c = reqwest::Client::new();
    let before = rss_kib(node.pid());
    let tx = testkit::vector("run")["input_json"]
        .as_str()
        .expect("json")
        .to_string();
    let request = json!({
        "jsonrpc": "2.0", "id": 1, "method": "sendTransaction",
        "params": [serde_json::from_str::<Value>(&tx).expect("tx")],
    })
    .to_string();
    let clients: Vec<_> = (0..64)
        .map(|_| {
            let (c, url, body) = (c.clone(), format!("{}/rpc", node.base), request.clone());
            tokio::spawn(async move {
                let mut refused = 0u32;
                for _ in 0..100 {
                    let r = c
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await
                        .expect("request");
                    match r.status().as_u16() {
                        200 => {}
                        429 => refused += 1,
                        other => panic!("status {other}"),
                    }
                }
                refused
            })
        })
        .collect();
    let mut refused = 0;
    for client in clients {
        refused += client.await.expect("client");
    }
    let after = rss_kib(node.pid());
    let report = format!(
        "flood: 6400 requests, {refused} refused; RSS {} MiB before, {} MiB after\n",
        before / 1024,
        after / 1024
    );
    print!("{report}");
    testkit::bench::Figures::new("fault-flood")
        .add("flood requests from one address", 6400.0, "requests")
        .add("refused (429)", refused as f64, "requests")
        .against(
            "RSS after the flood",
            after as f64 / 1024.0,
            "MiB",
            "RSS before",
            before as f64 / 1024.0,
        )
        .write(&report);
    assert!(refused > 0, "the flood went over the default limits");
    assert!(
        after < before + 64 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
    // The node answers as before once the flood's address is under its rate again.
    let start = Instant::now();
    let info: Value = loop {
        let r = c
            .post(format!("{}/rpc", node.base))
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "gevulot_nodeInfo"}))
            .send()
            .await
            .expect("after the flood");
        if r.status() == 200 {
            break r.json().await.expect("json");
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{}", r.status());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(info["result"]["transactions"], 1, "{info}");
}
