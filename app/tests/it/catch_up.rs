//! The catch-up between peers on real libp2p networks: what gossip never carried (stored before
//! a peer joined, straight into the database) arrives by pulling, the per-peer cursor survives a
//! restart, and a peer that serves a forged transaction is penalised without it being stored.

use std::time::Duration;

use app::model::Source;
use app::node::AclPolicy;
use app::tx::{Payload, Transaction};

use app::intake::OUTBOX_CAPACITY;

use crate::p2p::{Node, WAIT, eventually, launch, network_config, node, store, unstarted};
use crate::support::{empty, key, run};

/// A node whose database holds `stored` before its network starts (so nothing of it is
/// gossiped), asking its peers for news every second.
async fn node_holding(seed: u8, bootstrap: &[String], stored: &[Transaction]) -> Node {
    let (dir, store) = store(&[]).await;
    store
        .insert_transactions(stored, Source::Rpc)
        .await
        .expect("stored");
    let mut config = network_config("net", bootstrap);
    config.sync_every = Duration::from_secs(1);
    launch(dir, store, seed, AclPolicy::Open, config).await
}

async fn count(node: &Node) -> i64 {
    node.store().count_transactions().await.expect("count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_joiner_pulls_what_gossip_never_carried() {
    // More than a page, stored on a before any peer exists.
    let history: Vec<_> = (0..700).map(|n| empty(&key(60), n)).collect();
    let a = node_holding(1, &[], &history).await;
    let b = node_holding(2, &[a.addr()], &[]).await;
    eventually(WAIT, "b holds a's history", || async {
        count(&b).await == 700
    })
    .await;
    for tx in [&history[0], &history[350], &history[699]] {
        assert!(b.has(&tx.hash).await);
    }
    // Nothing of it was gossiped; all of it was pulled, once (the counter follows the commit of
    // each page, so it is waited for).
    eventually(WAIT, "b counts 700 pulled", || async {
        b.p2p.counters().sync.pulled >= 700
    })
    .await;
    let counters = b.p2p.counters();
    assert_eq!(counters.accepted, 0, "{counters:?}");
    assert_eq!(counters.sync.pulled, 700, "{counters:?}");
    // a pulled b's nothing; b's cursor on a reaches a's head once the newest rows settle.
    eventually(WAIT, "b's cursor on a settles at a's head", || {
        let peer = b.p2p.peers().into_iter().next();
        async move { peer.is_some_and(|p| p.sync.lag() == 0 && p.sync.head > 0 && p.sync.pulled == 700) }
    })
    .await;
    assert_eq!(b.p2p.sync_lag(), 0);

    // What a stores next, bypassing gossip again, reaches b within a sync interval.
    let later = empty(&key(61), 0);
    a.store()
        .insert_transaction(&later, Source::Rpc)
        .await
        .expect("stored");
    eventually(WAIT, "b pulls a's newest", || b.has(&later.hash)).await;
    // The cursor row is written once the page is stored.
    eventually(WAIT, "b keeps its cursor on a", || async {
        b.store()
            .peer_cursor(&a.p2p.peer_id())
            .await
            .expect("read")
            .is_some_and(|c| c.pulled >= 701)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_serving_a_forged_transaction_is_penalised() {
    let genuine = empty(&key(70), 0);
    // Signed by one key, claiming another author: the signature does not hold.
    let mut forged = Transaction::new_signed(Payload::Empty, 1, &key(71));
    forged.author = key(72).public_key();
    let liar = node_holding(3, &[], &[genuine.clone(), forged.clone()]).await;
    let b = node_holding(4, &[liar.addr()], &[]).await;
    eventually(WAIT, "b penalises the liar", || {
        let penalised = b.p2p.counters().peers_penalised;
        async move { penalised == 1 }
    })
    .await;
    eventually(WAIT, "the liar is disconnected", || {
        let peers = b.p2p.peer_count();
        async move { peers == 0 }
    })
    .await;
    assert!(
        !b.has(&forged.hash).await,
        "the forged transaction is not stored"
    );
    assert_eq!(count(&b).await, 0, "the page was refused as a whole");
    let peer = liar.p2p.peer_id();
    let penalised = b.p2p.penalised();
    assert_eq!(penalised.len(), 1, "{penalised:?}");
    assert_eq!(penalised[0].0, peer);
    assert!(penalised[0].1 > std::time::SystemTime::now() + Duration::from_secs(60));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_beyond_the_outbox_still_reaches_every_peer() {
    // The network does not read its outbox yet: the burst overflows it for sure.
    let (a, network) = unstarted(21, "net").await;
    let burst: Vec<_> = (0..OUTBOX_CAPACITY as u64 + 100)
        .map(|n| empty(&key(62), n))
        .collect();
    a.core
        .submit_batch(&burst, Source::Rpc)
        .await
        .expect("stored");
    let dropped = a.p2p.counters().dropped;
    assert_eq!(dropped, 100, "{:?}", a.p2p.counters());
    let running = tokio::spawn(network.run());

    let b = node_holding(22, &[a.addr()], &[]).await;
    eventually(WAIT, "b holds the whole burst", || async {
        count(&b).await == burst.len() as i64
    })
    .await;
    // What the outbox dropped was pulled (the counter follows the page's commit).
    eventually(WAIT, "b counts what it pulled", || async {
        b.p2p.counters().sync.pulled >= 100
    })
    .await;
    running.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_transaction_is_announced_and_fetched() {
    let a = node(23, "net", &[], AclPolicy::Open).await;
    let b = node(24, "net", &[a.addr()], AclPolicy::Open).await;
    let c = node(25, "net", &[b.addr()], AclPolicy::Open).await;
    eventually(WAIT, "a, b and c are connected", || {
        let all = a.p2p.peer_count() == 2 && c.p2p.peer_count() == 2;
        async move { all }
    })
    .await;
    // A Proof of 200 kB: its JSON is far over the gossip size.
    let prover = key(63);
    let runs = run(&prover, &[app::tx::Hash([1; 32])], 0);
    let big = Transaction::new_signed(
        Payload::Proof {
            parent: runs.hash,
            prover: app::tx::Hash([1; 32]),
            proof: vec![7; 200_000],
            files: vec![],
        },
        1,
        &prover,
    );
    assert!(big.to_json().len() > app::p2p::BIG_TX_BYTES);
    a.core.submit(&big, Source::Rpc).await.expect("stored");
    eventually(WAIT, "b and c fetch it", || async {
        b.has(&big.hash).await && c.has(&big.hash).await
    })
    .await;
    // Every peer fetched it once, from whoever announced it to it first (each counts its fetch
    // once it is stored).
    eventually(WAIT, "b and c count their fetches", || async {
        b.p2p.counters().fetched + c.p2p.counters().fetched >= 2
    })
    .await;
    let fetched = b.p2p.counters().fetched + c.p2p.counters().fetched;
    assert_eq!(
        fetched,
        2,
        "b {:?} c {:?}",
        b.p2p.counters(),
        c.p2p.counters()
    );
    assert_eq!(
        b.p2p.counters().sync.pulled + c.p2p.counters().sync.pulled,
        0
    );
    let stored = c
        .store()
        .get_transaction(&big.hash)
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(stored.tx, big);
}
