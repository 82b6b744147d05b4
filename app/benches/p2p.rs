//! Transaction propagation over the private P2P network: two real libp2p nodes on loopback
//! (pre-shared key, Noise, yamux, gossipsub), each with its own SQLite store and intake. For
//! each transaction it measures submit on A → stored on B (A's intake, gossip, B's validation and
//! commit), against the baseline of the local submit alone (A's intake and commit) in the same
//! run, and the sustained rate at which a burst submitted on A is stored on B. Prints the figures
//! and their ratios, and writes them to `target/bench/p2p.txt`.
//!
//! `cargo bench -p app --bench p2p` (`GEVULOT_BENCH_SAMPLES` changes the sample count).

use std::time::{Duration, Instant};

use app::crypto::SecretKey;
use app::events::Event;
use app::model::Source;
use app::node::AclPolicy;
use app::p2p::{Config, P2p};
use app::store::Store;
use app::tx::{Hash, Payload, Transaction};
use app::validate::Limits;

struct Node {
    _dir: tempfile::TempDir,
    core: app::node::Node,
    store: Store,
    p2p: P2p,
}

/// A node started as `gevulot run` starts one (without execution), on its own SQLite store.
async fn node(seed: u8, bootstrap: Vec<String>) -> anyhow::Result<Node> {
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let store = Store::connect(&url, &Default::default()).await?;
    store.migrate().await?;
    let core = app::node::Node::start(app::node::Config {
        data: app::data_dir::DataDir::new(dir.path()),
        store: store.clone(),
        key: SecretKey::from_bytes(&[seed; 32])?,
        limits: Limits::default(),
        acl: AclPolicy::Open,
        acl_whitelist_url: None,
        p2p: Some(Config {
            listen: "127.0.0.1:0".parse()?,
            advertised: None,
            bootstrap,
            passphrase: "bench network".into(),
            whitelist_peers: false,
            whitelist_sync: None,
            max_message_bytes: 1 << 20,
            max_peers: 64,
            sync_every: std::time::Duration::from_secs(30),
            announce_every: std::time::Duration::from_secs(1),
            capacity: None,
        }),
        file_base_url: "http://127.0.0.1:9".into(),
        resources: Default::default(),
        sysfs_root: dir.path().join("sys"),
        max_upload_bytes: 1 << 20,
        execution: None,
        observer: None,
    })
    .await?;
    let p2p = core
        .p2p()
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("no network"))?;
    Ok(Node {
        _dir: dir,
        core,
        store,
        p2p,
    })
}

fn empty(author: &SecretKey, nonce: u64) -> Transaction {
    Transaction::new_signed(Payload::Empty, nonce, author)
}

/// Waits until `node` announces that it stored `hash`.
async fn stored(
    events: &mut tokio::sync::broadcast::Receiver<Event>,
    hash: &Hash,
) -> anyhow::Result<()> {
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match events.recv().await {
                Ok(Event::TransactionStored { hash: h, .. }) if h == *hash => return Ok(()),
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => return Err(anyhow::anyhow!("event bus closed: {e}")),
            }
        }
    })
    .await
    .map_err(|_| anyhow::anyhow!("{hash} did not arrive within 30 s"))?
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let samples: usize = std::env::var("GEVULOT_BENCH_SAMPLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let burst = samples * 5;
    let a = node(1, vec![]).await?;
    let b = node(2, vec![a.p2p.listen_addr().to_string()]).await?;
    let author = SecretKey::from_bytes(&[9; 32])?;
    let mut b_events = b.core.events().subscribe();

    // Warm up: the first transaction also waits for the connection and the subscription.
    let warm = empty(&author, 0);
    a.core.submit(&warm, Source::Rpc).await?;
    stored(&mut b_events, &warm.hash).await?;

    let mut local = Vec::with_capacity(samples);
    let mut network = Vec::with_capacity(samples);
    for n in 0..samples {
        let tx = empty(&author, 1 + n as u64);
        let start = Instant::now();
        a.core.submit(&tx, Source::Rpc).await?;
        local.push(start.elapsed());
        stored(&mut b_events, &tx.hash).await?;
        network.push(start.elapsed());
    }
    local.sort();
    network.sort();

    // A burst: everything submitted on A as fast as A stores it; B's rate of storing it.
    let first = 1 + samples as u64;
    let txs: Vec<Transaction> = (0..burst as u64)
        .map(|n| empty(&author, first + n))
        .collect();
    let before = b.store.count_transactions().await?;
    let start = Instant::now();
    for tx in &txs {
        a.core.submit(tx, Source::Rpc).await?;
    }
    let submitted = start.elapsed();
    let target = before + burst as i64;
    let deadline = Instant::now() + Duration::from_secs(120);
    while b.store.count_transactions().await? < target {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the burst did not arrive within 120 s: {} of {burst} on B; A {:?}, B {:?}",
            b.store.count_transactions().await? - before,
            a.p2p.counters(),
            b.p2p.counters()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let arrived = start.elapsed();
    let counters = b.p2p.counters();

    let p50 = |v: &[Duration]| percentile(v, 0.5);
    let p99 = |v: &[Duration]| percentile(v, 0.99);
    let report = format!(
        "P2P benchmark: two nodes on loopback (pnet + Noise + yamux + gossipsub), SQLite, {samples} transactions one by one, then a burst of {burst}\n\
         {:<58} {:>8.2} ms p50 {:>8.2} ms p99\n\
         {:<58} {:>8.2} ms p50 {:>8.2} ms p99\n\
         {:<58} {:>8.2} x p50 {:>8.2} x p99\n\
         {:<58} {:>8.0} tx/s\n\
         {:<58} {:>8.0} tx/s\n\
         {:<58} {:>8.2}\n\
         {:<58} {:>8}\n",
        "baseline: submit on A (validate + commit)",
        ms(p50(&local)),
        ms(p99(&local)),
        "submit on A -> stored on B",
        ms(p50(&network)),
        ms(p99(&network)),
        "ratio (network / local)",
        ms(p50(&network)) / ms(p50(&local)).max(1e-9),
        ms(p99(&network)) / ms(p99(&local)).max(1e-9),
        "burst: stored on A",
        burst as f64 / submitted.as_secs_f64(),
        "burst: stored on B",
        burst as f64 / arrived.as_secs_f64(),
        "ratio (B / A)",
        submitted.as_secs_f64() / arrived.as_secs_f64(),
        "transactions B accepted from A",
        counters.accepted,
    );
    print!("{report}");
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    let _ = std::fs::create_dir_all(&out);
    let _ = std::fs::write(out.join("p2p.txt"), report);
    Ok(())
}
