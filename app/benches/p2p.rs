//! The private P2P network at five nodes: real libp2p nodes on loopback (pre-shared key, Noise,
//! yamux, gossipsub), each with its own SQLite store and intake. It measures, against baselines
//! run in the same process:
//!
//! - propagation: submit on one node → stored on all four others (the submitting node's intake,
//!   gossip, each peer's validation and commit), p50 and p99, against the local submit alone;
//! - gossip throughput with validation on: a burst submitted on one node, the rate at which the
//!   slowest peer stores it, against the rate the submitting node stores it;
//! - catch-up: a sixth node started after everything was published pulls it all from its peers
//!   (request-response pages through its intake); its rate against the local ingest rate above;
//! - placement: a Run submitted on each node in turn → one node takes it (its tasks exist), p50
//!   and p99, against propagation. (The nodes execute, but no VM starts: the Runs' program is
//!   never deployed, so each Run ends after its program wait.)
//!
//! Prints the figures and their ratios, and writes them to `target/bench/p2p.txt`.
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

/// How the nodes execute: a pipeline whose VMs never start (no VM is needed to measure
/// placement).
fn execution(dir: &std::path::Path) -> app::node::Execution {
    app::node::Execution {
        executor: app::vm::executor::ExecutorConfig {
            qemu: dir.join("no-qemu"),
            vms_dir: dir.join("vms"),
            log_dir: dir.join("logs"),
            accel: app::vm::qemu::Accel::Tcg,
            vsock: app::vm::executor::VsockMode::Unavailable {
                reason: "benchmark".into(),
            },
            port: 8080,
            timeouts: Default::default(),
            max_output_bytes: 1 << 20,
            max_workspace_bytes: 1 << 20,
            confinement: Default::default(),
            max_guest_message_bytes: app::vm::executor::guest_message_bytes(1 << 20),
        },
        downloads: Default::default(),
        max_run_time: Duration::from_secs(10),
        max_attempts: 1,
        retry_backoff: Duration::from_secs(1),
        program_wait: Duration::from_secs(1),
        per_program_limit: None,
    }
}

/// A node started as `gevulot run` starts one, on its own SQLite store.
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
            outbox_capacity: app::intake::OUTBOX_CAPACITY,
            capacity: None,
        }),
        file_base_url: "http://127.0.0.1:9".into(),
        resources: app::node::Resources {
            cpus: 4,
            mem_mib: 4096,
            gpu_devices: Vec::new(),
            execution: true,
            min_free_bytes: 0,
        },
        sysfs_root: dir.path().join("sys"),
        max_upload_bytes: 1 << 20,
        session_ttl: app::auth::DEFAULT_SESSION_TTL,
        placement_redundancy: 1,
        webhooks: Default::default(),
        execution: Some(execution(dir.path())),
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

/// A Run of one step whose program nobody deployed.
fn run_tx(author: &SecretKey, nonce: u64) -> Transaction {
    Transaction::new_signed(
        Payload::Run {
            workflow: app::tx::Workflow {
                steps: vec![app::tx::WorkflowStep {
                    program: Hash([7; 32]),
                    args: Vec::new(),
                    inputs: Vec::new(),
                }],
            },
        },
        nonce,
        author,
    )
}

/// Waits until a node takes `run`: its tasks appear on one of `subs`.
async fn claimed(
    subs: &mut [tokio::sync::broadcast::Receiver<Event>],
    run: &Hash,
) -> anyhow::Result<()> {
    let waits = subs.iter_mut().map(|events| {
        Box::pin(async move {
            loop {
                match events.recv().await {
                    Ok(Event::TaskChanged { tx, .. }) if tx == *run => return Ok(()),
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(e) => return Err(anyhow::anyhow!("event bus closed: {e}")),
                }
            }
        })
    });
    tokio::time::timeout(Duration::from_secs(30), futures::future::select_all(waits))
        .await
        .map_err(|_| anyhow::anyhow!("no node took {run} within 30 s"))?
        .0
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
    const NODES: usize = 5;
    let a = node(1, vec![]).await?;
    let mut nodes = vec![a];
    for seed in 2..=NODES as u8 {
        nodes.push(node(seed, vec![nodes[0].p2p.listen_addr().to_string()]).await?);
    }
    // A full mesh: each node connected to every other (found through the first one's DHT).
    let deadline = Instant::now() + Duration::from_secs(60);
    while nodes.iter().any(|n| n.p2p.peer_count() < NODES - 1) {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the five nodes did not form a mesh within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let author = SecretKey::from_bytes(&[9; 32])?;
    let mut events: Vec<_> = nodes.iter().map(|n| n.core.events().subscribe()).collect();

    // Warm up: the first transaction also waits for every subscription.
    let warm = empty(&author, 0);
    nodes[0].core.submit(&warm, Source::Rpc).await?;
    for e in events.iter_mut().skip(1) {
        stored(e, &warm.hash).await?;
    }

    // One by one, each from the next node in turn; stored on all the others.
    let mut local = Vec::with_capacity(samples);
    let mut network = Vec::with_capacity(samples);
    for n in 0..samples {
        let from = n % NODES;
        let tx = empty(&author, 1 + n as u64);
        let start = Instant::now();
        nodes[from].core.submit(&tx, Source::Rpc).await?;
        local.push(start.elapsed());
        for (i, e) in events.iter_mut().enumerate() {
            if i != from {
                stored(e, &tx.hash).await?;
            }
        }
        network.push(start.elapsed());
    }
    local.sort();
    network.sort();
    drop(events);

    // Placement: a Run submitted on each node in turn; the time until one node takes it. The
    // first one also waits for every node to have heard the others.
    let placed_runs = (samples / 10).max(10);
    let mut subs: Vec<_> = nodes.iter().map(|n| n.core.events().subscribe()).collect();
    let warm = run_tx(&author, 1 << 40);
    nodes[0].core.submit(&warm, Source::Rpc).await?;
    claimed(&mut subs, &warm.hash).await?;
    let mut claims = Vec::with_capacity(placed_runs);
    for n in 0..placed_runs {
        let run = run_tx(&author, (1 << 40) + 1 + n as u64);
        let start = Instant::now();
        nodes[n % NODES].core.submit(&run, Source::Rpc).await?;
        claimed(&mut subs, &run.hash).await?;
        claims.push(start.elapsed());
    }
    claims.sort();
    drop(subs);
    let a = &nodes[0];

    // A burst: everything submitted on A as fast as A stores it; B's rate of storing it.
    let first = 1 + samples as u64;
    let txs: Vec<Transaction> = (0..burst as u64)
        .map(|n| empty(&author, first + n))
        .collect();
    let before = a.store.count_transactions().await?;
    let start = Instant::now();
    for tx in &txs {
        a.core.submit(tx, Source::Rpc).await?;
    }
    let submitted = start.elapsed();
    let target = before + burst as i64;
    let deadline = Instant::now() + Duration::from_secs(300);
    for peer in &nodes[1..] {
        while peer.store.count_transactions().await? < target {
            anyhow::ensure!(
                Instant::now() < deadline,
                "the burst did not arrive within 300 s: {} of {burst} on a peer; A {:?}, peer {:?}",
                peer.store.count_transactions().await? - before,
                a.p2p.counters(),
                peer.p2p.counters()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let arrived = start.elapsed();
    let accepted: u64 = nodes[1..].iter().map(|n| n.p2p.counters().accepted).sum();

    // A late joiner: everything above reaches it only through the catch-up.
    let total = a.store.count_transactions().await?;
    let start = Instant::now();
    let late = node(
        NODES as u8 + 1,
        vec![nodes[NODES - 1].p2p.listen_addr().to_string()],
    )
    .await?;
    let deadline = Instant::now() + Duration::from_secs(300);
    while late.store.count_transactions().await? < total {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the late joiner did not catch up within 300 s: {} of {total}; {:?}",
            late.store.count_transactions().await?,
            late.p2p.counters()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let caught_up = start.elapsed();
    let pulled = late.p2p.counters().sync.pulled;

    let p50 = |v: &[Duration]| percentile(v, 0.5);
    let p99 = |v: &[Duration]| percentile(v, 0.99);
    let local_rate = burst as f64 / submitted.as_secs_f64();
    let catch_up_rate = total as f64 / caught_up.as_secs_f64();
    let report = format!(
        "P2P benchmark: {NODES} nodes on loopback (pnet + Noise + yamux + gossipsub), SQLite, {samples} transactions one by one, a burst of {burst}, then a late joiner\n\
         {:<58} {:>8.2} ms p50 {:>8.2} ms p99\n\
         {:<58} {:>8.2} ms p50 {:>8.2} ms p99\n\
         {:<58} {:>8.2} x p50 {:>8.2} x p99\n\
         {:<58} {:>8.0} tx/s\n\
         {:<58} {:>8.0} tx/s\n\
         {:<58} {:>8.2}\n\
         {:<58} {:>8}\n\
         {:<58} {:>8.0} tx/s\n\
         {:<58} {:>8.2}\n\
         {:<58} {:>8}\n\
         {:<58} {:>8.2} ms p50 {:>8.2} ms p99\n\
         {:<58} {:>8.2} x p50 {:>8.2} x p99\n",
        "baseline: submit on one node (validate + commit)",
        ms(p50(&local)),
        ms(p99(&local)),
        "propagation: submit -> stored on all 4 peers",
        ms(p50(&network)),
        ms(p99(&network)),
        "ratio (propagation / local)",
        ms(p50(&network)) / ms(p50(&local)).max(1e-9),
        ms(p99(&network)) / ms(p99(&local)).max(1e-9),
        "burst: stored on the submitting node (local ingest)",
        local_rate,
        "burst: stored on all 4 peers (gossip, validation on)",
        burst as f64 / arrived.as_secs_f64(),
        "ratio (peers / local)",
        submitted.as_secs_f64() / arrived.as_secs_f64(),
        "transactions the peers accepted by gossip",
        accepted,
        &format!("catch-up: a late joiner pulls {total}"),
        catch_up_rate,
        "ratio (catch-up / local ingest)",
        catch_up_rate / local_rate.max(1e-9),
        "transactions the late joiner pulled",
        pulled,
        &format!("placement: Run stored -> taken by a node ({placed_runs} Runs)"),
        ms(p50(&claims)),
        ms(p99(&claims)),
        "ratio (placement / propagation)",
        ms(p50(&claims)) / ms(p50(&network)).max(1e-9),
        ms(p99(&claims)) / ms(p99(&network)).max(1e-9),
    );
    print!("{report}");
    let (local50, local99) = (ms(p50(&local)), ms(p99(&local)));
    let peers_rate = burst as f64 / arrived.as_secs_f64();
    testkit::bench::Figures::new("p2p")
        .against(
            "propagation to all 4 peers, p50",
            ms(p50(&network)),
            "ms",
            "local submit p50",
            local50,
        )
        .against(
            "propagation to all 4 peers, p99",
            ms(p99(&network)),
            "ms",
            "local submit p99",
            local99,
        )
        .against(
            "burst stored on all 4 peers",
            peers_rate,
            "tx/s",
            "local ingest",
            local_rate,
        )
        .against(
            "placement: Run stored -> taken by a node, p50",
            ms(p50(&claims)),
            "ms",
            "propagation p50",
            ms(p50(&network)),
        )
        .against(
            "placement: Run stored -> taken by a node, p99",
            ms(p99(&claims)),
            "ms",
            "propagation p99",
            ms(p99(&network)),
        )
        .against(
            "catch-up of a late joiner",
            catch_up_rate,
            "tx/s",
            "local ingest",
            local_rate,
        )
        .write(&report);
    Ok(())
}
