//! HTTP throughput and latency of a real `gevulot run` process over loopback, each figure next to
//! a baseline measured in the same run:
//! - JSON-RPC `sendTransaction` at c = 1, 8, 32, 128 on SQLite and PostgreSQL, as a share of what
//!   the machine allows: signature verification per second (this process, one core) and the same
//!   storage code storing batches of 100 transactions on a fresh database of that backend; and
//!   next to the most c clients can get while each waits for the durable commit that holds its
//!   transaction (the same storage code committing batches of exactly c); with the CPU time the
//!   node process, the load generator and (on this process's own throwaway cluster) the
//!   PostgreSQL server spend per transaction, the ceiling the node's own cost and its
//!   database's set (this machine's cores divided by them, as if the load generator cost
//!   nothing), and this machine's bound for any node (its cores divided by what the load
//!   generator, the signature check and the storage in commits of c cost per transaction, as if
//!   HTTP, JSON-RPC and group commit cost nothing), and from 8 clients on whether the aim, half
//!   the batched storage rate, is within that bound;
//! - `getTransaction` at c = 1, 8, 32, as a share of the HTTP + JSON-RPC floor (an unknown method
//!   answered by the same server at the same concurrency), and `GET /api/v1/transactions/{hash}`
//!   next to it as a share of the same floor; with the node's CPU per request of each, and each
//!   `sendTransaction` figure's node CPU split into the floor's, the signature check's and the
//!   rest (decoding, the other rules, group commit and, on SQLite, the storage itself);
//! - the file server against `python3 -m http.server` serving the same file.
//!
//! Prints a table and writes `target/bench/http.txt`.
//!
//! `cargo bench -p server --bench http` (`GEVULOT_BENCH_REQUESTS` sets requests per scenario).

mod common;

use std::fmt::Write as _;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use app::crypto::SecretKey;
use app::tx::{Payload, Transaction};
use common::start_node;

/// The share of the batched storage rate that `sendTransaction` aims at from 8 clients on.
const AIM: f64 = 0.5;

/// Whether the aim at `concurrency` clients is within this machine's bound for any node.
fn aim_verdict(concurrency: usize, machine: f64, batched: f64) -> String {
    if concurrency < 8 {
        return String::new();
    }
    let aim = AIM * batched;
    if machine < aim {
        format!("; the aim ({AIM:.2}: {aim:.0} tx/s) is beyond this machine")
    } else {
        format!("; the aim ({AIM:.2}: {aim:.0} tx/s) is within this machine's bound")
    }
}

/// The client counts of the `sendTransaction` scenarios.
const CONCURRENCY: [usize; 4] = [1, 8, 32, 128];

struct Report(String, testkit::bench::Figures);

impl Report {
    fn line(&mut self, text: String) {
        println!("{text}");
        let _ = writeln!(self.0, "{text}");
    }
}

struct Stats {
    per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    mib_per_second: f64,
}

/// Runs `requests` calls of `make(i)` with `concurrency` workers; latencies per call.
async fn load<F, Fut>(requests: usize, concurrency: usize, make: F) -> anyhow::Result<Stats>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<usize>> + Send,
{
    let make = Arc::new(make);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let make = make.clone();
        let next = next.clone();
        workers.spawn(async move {
            let mut latencies = Vec::new();
            let mut bytes = 0usize;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= requests {
                    break;
                }
                let t = Instant::now();
                bytes += make(i).await?;
                latencies.push(t.elapsed());
            }
            anyhow::Ok((latencies, bytes))
        });
    }
    let mut all = Vec::with_capacity(requests);
    let mut bytes = 0;
    while let Some(r) = workers.join_next().await {
        let (l, b) = r??;
        all.extend(l);
        bytes += b;
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort();
    let pct =
        |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)].as_secs_f64() * 1000.0;
    Ok(Stats {
        per_second: requests as f64 / elapsed,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        mib_per_second: bytes as f64 / elapsed / (1024.0 * 1024.0),
    })
}

/// Signatures verified per second (one core) over `txs`.
fn verification_rate(txs: &[Transaction]) -> anyhow::Result<f64> {
    let start = Instant::now();
    for tx in txs {
        tx.verify_signature()?;
    }
    Ok(txs.len() as f64 / start.elapsed().as_secs_f64())
}

/// How fast the node's storage code stores.
struct Storage {
    /// Transactions per second.
    rate: f64,
    /// CPU microseconds per transaction of this process and, on PostgreSQL, of its server
    /// where that is measured (see [`database_cpu_seconds`]).
    cpu_us: f64,
}

/// Transactions stored in batches of `batch` (one commit each) by the node's storage code on a
/// fresh database at `url`.
async fn storage_rate(url: &str, txs: &[Transaction], batch: usize) -> anyhow::Result<Storage> {
    let store = app::store::Store::connect(url, &Default::default()).await?;
    store.migrate().await?;
    let postgres = !url.starts_with("sqlite:");
    let cpu_now = || own_cpu_seconds() + database_cpu_seconds(postgres).unwrap_or(0.0);
    let (start, cpu) = (Instant::now(), cpu_now());
    for chunk in txs.chunks(batch) {
        store
            .insert_transactions(chunk, app::model::Source::Rpc)
            .await?;
    }
    let n = txs.len() as f64;
    let storage = Storage {
        rate: n / start.elapsed().as_secs_f64(),
        cpu_us: (cpu_now() - cpu) * 1e6 / n,
    };
    store.close().await;
    Ok(storage)
}

/// A fresh database of the backend: a SQLite file in `dir`, or a new PostgreSQL database.
async fn fresh_database(postgres: bool, dir: &std::path::Path) -> anyhow::Result<String> {
    Ok(if postgres {
        testkit::postgres_url().await?
    } else {
        testkit::sqlite_url(dir)
    })
}

/// POSTs one JSON-RPC request; its answer's text.
async fn post_rpc(client: &reqwest::Client, url: &str, body: String) -> anyhow::Result<String> {
    let r = client
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await?;
    Ok(r.text().await?)
}

/// What the node and this process have done so far, read before and after a scenario.
#[derive(Clone, Copy)]
struct Counters {
    /// The node's group commits.
    commits: f64,
    /// The transactions in them.
    committed: f64,
    /// CPU seconds the node process has used.
    node_cpu: f64,
    /// CPU seconds this process (the load generator) has used.
    client_cpu: f64,
    /// CPU seconds the PostgreSQL server has used, where it is measured (see
    /// [`database_cpu_seconds`]).
    db_cpu: Option<f64>,
}

impl Counters {
    /// The database server's CPU microseconds per request between `self` and `after`.
    fn db_us(&self, after: &Counters, requests: usize) -> Option<f64> {
        Some((after.db_cpu? - self.db_cpu?) * 1e6 / requests as f64)
    }
}

/// CPU seconds the PostgreSQL server has used so far, when it is this process's own throwaway
/// cluster (not a server named by `GEVULOT_TEST_DB_URL`); `None` on SQLite, whose work is done
/// inside the process that stores.
fn database_cpu_seconds(postgres: bool) -> Option<f64> {
    let external = std::env::var("GEVULOT_TEST_DB_URL").is_ok_and(|u| !u.is_empty());
    if !postgres || external {
        return None;
    }
    testkit::cluster().ok()?.server_cpu_seconds()
}

/// CPU seconds this process has used.
fn own_cpu_seconds() -> f64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_PROCESS_CPUTIME_ID)
        .map_or(0.0, |t| t.tv_sec() as f64 + t.tv_nsec() as f64 / 1e9)
}

async fn counters(
    client: &reqwest::Client,
    metrics: &str,
    postgres: bool,
) -> anyhow::Result<Counters> {
    let text = client.get(metrics).send().await?.text().await?;
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    Ok(Counters {
        commits: value("gevulot_intake_commits_total "),
        committed: value("gevulot_intake_committed_transactions_total "),
        node_cpu: value("process_cpu_seconds_total "),
        client_cpu: own_cpu_seconds(),
        db_cpu: database_cpu_seconds(postgres),
    })
}

async fn rpc_scenarios(
    report: &mut Report,
    backend: &str,
    db_url: Option<&str>,
    txs: &Arc<Vec<String>>,
    requests: usize,
) -> anyhow::Result<()> {
    // The baselines, on their own database and transactions.
    let key = SecretKey::from_bytes(&[7u8; 32])?;
    let spare: Vec<Transaction> = (0..requests.max(500) as u64)
        .map(|n| Transaction::new_signed(Payload::Empty, n, &key))
        .collect();
    let verify = verification_rate(&spare)?;
    let baseline_dir = testkit::tempdir();
    let url = fresh_database(db_url.is_some(), baseline_dir.path()).await?;
    let batched = storage_rate(&url, &spare, 100).await?.rate;
    report.line(format!(
        "{backend:<8} baseline: signatures verified {verify:>8.0} /s (one core); stored in batches of 100 {batched:>8.0} tx/s"
    ));
    // What c clients can get at best when each waits for the durable commit holding its
    // transaction: every commit holds exactly c of them, and nothing else costs anything.
    let mut bounds = Vec::with_capacity(CONCURRENCY.len());
    for concurrency in CONCURRENCY {
        let dir = testkit::tempdir();
        let url = fresh_database(db_url.is_some(), dir.path()).await?;
        let storage = storage_rate(&url, &spare, concurrency).await?;
        report.line(format!(
            "{backend:<8} baseline: stored in batches of {concurrency:<3} {:>8.0} tx/s (one commit per c transactions), this process's CPU {:>4.0} µs/tx",
            storage.rate, storage.cpu_us
        ));
        bounds.push((concurrency, storage));
    }

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let data = testkit::tempdir();
    let node = start_node(data.path(), db_url, &[])?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    let metrics_url = format!("{}/metrics", node.metrics);
    let mut offset = 0;
    let mut send_cpu = Vec::with_capacity(CONCURRENCY.len());
    for (
        concurrency,
        Storage {
            rate: bound,
            cpu_us: storage_us,
        },
    ) in bounds
    {
        let before = counters(&client, &metrics_url, db_url.is_some()).await?;
        let (http, url, txs) = (client.clone(), node.rpc.clone(), txs.clone());
        let base = offset;
        let stats = load(requests, concurrency, move |i| {
            let (client, url, txs) = (http.clone(), url.clone(), txs.clone());
            async move {
                let body = format!(
                    r#"{{"jsonrpc":"2.0","id":{i},"method":"sendTransaction","params":[{}]}}"#,
                    txs[base + i]
                );
                let text = post_rpc(&client, &url, body).await?;
                anyhow::ensure!(
                    text.contains(r#""result":{"Ok":null}"#),
                    "unexpected answer {text}"
                );
                Ok(text.len())
            }
        })
        .await?;
        offset += requests;
        let after = counters(&client, &metrics_url, db_url.is_some()).await?;
        let per_commit =
            (after.committed - before.committed) / (after.commits - before.commits).max(1.0);
        // CPU microseconds per transaction, and what the node could store if it had every core
        // of this machine to itself (the load generator gone): the ceiling its own cost sets.
        let node_us = (after.node_cpu - before.node_cpu) * 1e6 / requests as f64;
        let client_us = (after.client_cpu - before.client_cpu) * 1e6 / requests as f64;
        let db_us = before.db_us(&after, requests);
        let ceiling = cores * 1e6 / (node_us + db_us.unwrap_or(0.0)).max(1.0);
        // Where PostgreSQL's own CPU is not measured, figures that need it leave it out.
        let unmeasured = if db_url.is_some() && db_us.is_none() {
            "; PostgreSQL's CPU not counted"
        } else {
            ""
        };
        // What any node could reach on this machine at best, with HTTP, JSON-RPC and group
        // commit costing nothing: the cores shared by the load generator, the signature check
        // and the storage itself (in commits of c).
        let check_us = 1e6 / verify;
        let machine_us = client_us + check_us + storage_us;
        let machine = cores * 1e6 / machine_us.max(1.0);
        send_cpu.push((concurrency, node_us));
        report.1.against(
            &format!("{backend}: sendTransaction c={concurrency}"),
            stats.per_second,
            "tx/s",
            "batched storage",
            batched,
        );
        report.1.against(
            &format!("{backend}: sendTransaction c={concurrency} against one commit per c"),
            stats.per_second,
            "tx/s",
            &format!("stored in batches of {concurrency}"),
            bound,
        );
        report.1.add(
            &format!("{backend}: sendTransaction c={concurrency}, p99"),
            stats.p99_ms,
            "ms",
        );
        report.1.add(
            &format!("{backend}: sendTransaction c={concurrency}, node CPU per transaction"),
            node_us,
            "µs",
        );
        report.1.add(
            &format!(
                "{backend}: sendTransaction c={concurrency}, load generator CPU per transaction"
            ),
            client_us,
            "µs",
        );
        if let Some(us) = db_us {
            report.1.add(
                &format!(
                    "{backend}: sendTransaction c={concurrency}, PostgreSQL CPU per transaction"
                ),
                us,
                "µs",
            );
        }
        report.1.against(
            &format!("{backend}: sendTransaction c={concurrency}, the node's CPU ceiling ({cores:.0} cores / node and database CPU per transaction)"),
            ceiling,
            "tx/s",
            "batched storage",
            batched,
        );
        report.line(format!(
            "{backend:<8} sendTransaction  c={concurrency:<3} {:>8.0} req/s   p50 {:>7.2} ms   p99 {:>7.2} ms   {per_commit:>5.1} tx/commit   {:>4.2} of batched storage, {:>4.2} of one commit per c, {:>4.2} of verification",
            stats.per_second, stats.p50_ms, stats.p99_ms,
            stats.per_second / batched, stats.per_second / bound, stats.per_second / verify
        ));
        report.1.against(
            &format!("{backend}: sendTransaction c={concurrency}, this machine's bound for any node ({cores:.0} cores / (load generator + signature check + storage in commits of c))"),
            machine,
            "tx/s",
            "batched storage",
            batched,
        );
        report.line(format!(
            "{backend:<8}                  CPU per transaction: node {node_us:>5.0} µs,{} load generator {client_us:>5.0} µs; the node{} alone on {cores:.0} cores: at most {ceiling:>6.0} tx/s = {:>4.2} of batched storage{unmeasured}",
            db_us.map_or(String::new(), |us| format!(" PostgreSQL {us:>5.0} µs,")),
            if db_us.is_some() { " and its database" } else { "" },
            ceiling / batched
        ));
        report.line(format!(
            "{backend:<8}                  any node on this machine, HTTP and group commit free: {cores:.0} cores / (load generator {client_us:.0} + signature check {check_us:.0} + storage in commits of {concurrency} {storage_us:.0} µs/tx{unmeasured}) = at most {machine:>6.0} tx/s = {:>4.2} of batched storage{}",
            machine / batched,
            aim_verdict(concurrency, machine, batched)
        ));
    }
    let stored = offset;
    let hashes: Arc<Vec<String>> = Arc::new(
        txs[..stored]
            .iter()
            .map(|t| {
                let v: serde_json::Value = serde_json::from_str(t).unwrap_or_default();
                v["hash"].to_string()
            })
            .collect(),
    );
    let hexes: Arc<Vec<String>> = Arc::new(
        txs[..stored]
            .iter()
            .map(|t| {
                serde_json::from_str::<Transaction>(t)
                    .map(|tx| tx.hash.to_hex())
                    .unwrap_or_default()
            })
            .collect(),
    );
    for concurrency in [1, 8, 32] {
        let (http, url) = (client.clone(), node.rpc.clone());
        let before = counters(&client, &metrics_url, db_url.is_some()).await?;
        let floor = load(requests, concurrency, move |i| {
            let (client, url) = (http.clone(), url.clone());
            async move {
                let body = format!(r#"{{"jsonrpc":"2.0","id":{i},"method":"nope","params":[]}}"#);
                let text = post_rpc(&client, &url, body).await?;
                anyhow::ensure!(text.contains("-32601"), "unexpected answer {text}");
                Ok(text.len())
            }
        })
        .await?;
        let between = counters(&client, &metrics_url, db_url.is_some()).await?;
        let (http, url, ids) = (client.clone(), node.rpc.clone(), hashes.clone());
        let stats = load(requests, concurrency, move |i| {
            let (client, url, hashes) = (http.clone(), url.clone(), ids.clone());
            async move {
                let body = format!(
                    r#"{{"jsonrpc":"2.0","id":{i},"method":"getTransaction","params":[{}]}}"#,
                    hashes[i % hashes.len()]
                );
                let text = post_rpc(&client, &url, body).await?;
                anyhow::ensure!(
                    text.contains(r#""result":{"Ok":{"#),
                    "unexpected answer {text}"
                );
                Ok(text.len())
            }
        })
        .await?;
        let after = counters(&client, &metrics_url, db_url.is_some()).await?;
        let floor_us = (between.node_cpu - before.node_cpu) * 1e6 / requests as f64;
        let get_us = (after.node_cpu - between.node_cpu) * 1e6 / requests as f64;
        report.1.add(
            &format!("{backend}: unknown-method floor c={concurrency}, node CPU per request"),
            floor_us,
            "µs",
        );
        report.1.add(
            &format!("{backend}: getTransaction c={concurrency}, node CPU per request"),
            get_us,
            "µs",
        );
        report.1.against(
            &format!("{backend}: getTransaction c={concurrency}"),
            stats.per_second,
            "req/s",
            "unknown-method floor",
            floor.per_second,
        );
        report.line(format!(
            "{backend:<8} getTransaction   c={concurrency:<3} {:>8.0} req/s   p50 {:>7.2} ms   p99 {:>7.2} ms   floor (unknown method) {:>8.0} req/s   {:>4.2} of the floor; node CPU per request {get_us:.0} µs, floor {floor_us:.0} µs",
            stats.per_second, stats.p50_ms, stats.p99_ms, floor.per_second,
            stats.per_second / floor.per_second
        ));
        if let Some(send_us) = send_cpu
            .iter()
            .find_map(|(c, us)| (*c == concurrency).then_some(*us))
        {
            // Where the node's CPU goes per transaction: what any JSON-RPC call costs it, the
            // signature check, and the rest (decoding the transaction, its other rules, group
            // commit, and on SQLite the storage itself; PostgreSQL's own CPU is not counted).
            let check_us = 1e6 / verify;
            let rest_us = send_us - floor_us - check_us;
            report.1.add(
                &format!("{backend}: sendTransaction c={concurrency}, node CPU beyond the floor and the signature check"),
                rest_us,
                "µs",
            );
            report.line(format!(
                "{backend:<8}                  sendTransaction c={concurrency} node CPU {send_us:.0} µs/tx = floor {floor_us:.0} + signature check {check_us:.0} + the rest {rest_us:.0} (decoding, other rules, group commit{})",
                if db_url.is_some() { "; PostgreSQL's CPU not counted" } else { ", SQLite" }
            ));
        }
        let (http, base, ids) = (client.clone(), node.rpc.clone(), hexes.clone());
        let rest = load(requests, concurrency, move |i| {
            let (client, base, hexes) = (http.clone(), base.clone(), ids.clone());
            async move {
                let hash = &hexes[i % hexes.len()];
                let r = client
                    .get(format!("{base}api/v1/transactions/{hash}"))
                    .send()
                    .await?;
                anyhow::ensure!(r.status() == 200, "unexpected status {}", r.status());
                Ok(r.bytes().await?.len())
            }
        })
        .await?;
        report.1.against(
            &format!("{backend}: REST GET transaction c={concurrency}"),
            rest.per_second,
            "req/s",
            "JSON-RPC floor",
            floor.per_second,
        );
        report.line(format!(
            "{backend:<8} REST GET tx      c={concurrency:<3} {:>8.0} req/s   p50 {:>7.2} ms   p99 {:>7.2} ms   {:>4.2} of the JSON-RPC floor",
            rest.per_second, rest.p50_ms, rest.p99_ms,
            rest.per_second / floor.per_second
        ));
    }
    Ok(())
}

async fn file_scenarios(report: &mut Report, requests: usize) -> anyhow::Result<()> {
    let data = testkit::tempdir();
    let content: Vec<u8> = (0..4 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let checksum = blake3::hash(&content).to_hex().to_string();
    let rel = format!("txfiles/{}/{checksum}/proof.dat", "ab".repeat(32));
    let path = data.path().join(&rel);
    std::fs::create_dir_all(path.parent().ok_or_else(|| anyhow::anyhow!("no parent"))?)?;
    std::fs::write(&path, &content)?;
    let node = start_node(data.path(), None, &[])?;

    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut python = Command::new("python3")
        .args([
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            &port.to_string(),
        ])
        .current_dir(data.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let baseline = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;
    let mut up = false;
    for _ in 0..100 {
        if client
            .head(format!("{baseline}/{rel}"))
            .send()
            .await
            .is_ok()
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::ensure!(up, "python3 -m http.server did not start");
    for concurrency in [1, 8] {
        let mut results = Vec::new();
        for (name, base) in [
            ("gevulot", node.files.clone()),
            ("python", baseline.clone()),
        ] {
            let (client, url, expected) = (client.clone(), format!("{base}/{rel}"), content.len());
            let stats = load(requests / 4, concurrency, move |_| {
                let (client, url) = (client.clone(), url.clone());
                async move {
                    let body = client.get(&url).send().await?.bytes().await?;
                    anyhow::ensure!(body.len() == expected, "short body");
                    Ok(body.len())
                }
            })
            .await?;
            report.line(format!(
                "files    {name:<8} 4 MiB    c={concurrency:<3} {:>8.0} req/s {:>8.0} MiB/s   p50 {:>7.2} ms   p99 {:>7.2} ms",
                stats.per_second, stats.mib_per_second, stats.p50_ms, stats.p99_ms
            ));
            results.push(stats.mib_per_second);
        }
        report.1.against(
            &format!("download server, 4 MiB files, c={concurrency}"),
            results[0],
            "MiB/s",
            "python3 -m http.server",
            results[1],
        );
        report.line(format!(
            "files    ratio gevulot/python at c={concurrency}: {:.2}",
            results[0] / results[1]
        ));
    }
    let _ = python.kill();
    let _ = python.wait();
    Ok(())
}

fn main() -> anyhow::Result<()> {
    // reqwest is built with rustls but no default crypto provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let requests: usize = std::env::var("GEVULOT_BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let key = SecretKey::from_bytes(&[9u8; 32])?;
    // Distinct signed transactions for every sendTransaction of every scenario.
    let txs: Arc<Vec<String>> = Arc::new(
        (0..(requests * 4) as u64)
            .map(|n| Transaction::new_signed(Payload::Empty, n, &key).to_json())
            .collect(),
    );
    let mut report = Report(String::new(), testkit::bench::Figures::new("http"));
    report.line(format!(
        "http benchmark: a real gevulot process over loopback, {requests} requests per scenario, 2-core machine shared with the load generator"
    ));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        rpc_scenarios(&mut report, "sqlite", None, &txs, requests).await?;
        let pg = testkit::postgres_url().await?;
        rpc_scenarios(&mut report, "postgres", Some(&pg), &txs, requests).await?;
        file_scenarios(&mut report, requests).await
    })?;
    report.1.write(&report.0);
    Ok(())
}
