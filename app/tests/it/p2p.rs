//! Real libp2p networks on loopback, each with its own store: propagation, discovery, the
//! pre-shared key, the ACL whitelist for peers and authors, and capacity announcements.

use std::time::Duration;

use app::crypto::SecretKey;
use app::data_dir::DataDir;
use app::model::Source;
use app::node::{AclPolicy, Intake, Outbox};
use app::p2p::{Config, Network, P2p};
use app::store::Store;
use app::tx::Hash;
use app::validate::Limits;

use crate::support::{empty, key};

pub(crate) struct Node {
    _dir: tempfile::TempDir,
    pub(crate) key: SecretKey,
    /// The node's core API, as `gevulot run` builds it.
    pub(crate) core: app::node::Node,
    store: Store,
    pub(crate) p2p: P2p,
}

impl Node {
    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    pub(crate) fn addr(&self) -> String {
        self.p2p.listen_addr().to_string()
    }

    pub(crate) async fn has(&self, hash: &Hash) -> bool {
        self.store()
            .get_transaction(hash)
            .await
            .expect("read")
            .is_some()
    }
}

pub(crate) async fn node(seed: u8, passphrase: &str, bootstrap: &[String], acl: AclPolicy) -> Node {
    node_with(seed, passphrase, bootstrap, acl, &[]).await
}

pub(crate) fn network_config(passphrase: &str, bootstrap: &[String]) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().expect("addr"),
        advertised: None,
        bootstrap: bootstrap.to_vec(),
        passphrase: passphrase.to_string(),
        whitelist_peers: false,
        whitelist_sync: None,
        max_message_bytes: 1 << 20,
        max_peers: 64,
        sync_every: std::time::Duration::from_secs(30),
        announce_every: std::time::Duration::from_secs(1),
        outbox_capacity: app::intake::OUTBOX_CAPACITY,
        capacity: None,
    }
}

/// A store whose whitelist holds `whitelisted`.
pub(crate) async fn store(whitelisted: &[&SecretKey]) -> (tempfile::TempDir, Store) {
    let dir = testkit::tempdir();
    let store = Store::connect(&testkit::sqlite_url(dir.path()), &Default::default())
        .await
        .expect("store");
    store.migrate().await.expect("migrate");
    for k in whitelisted {
        store.acl_add(&k.public_key()).await.expect("whitelist");
    }
    (dir, store)
}

/// A running node (started like `gevulot run`, without execution) whose whitelist holds
/// `whitelisted` before its network starts.
async fn node_with(
    seed: u8,
    passphrase: &str,
    bootstrap: &[String],
    acl: AclPolicy,
    whitelisted: &[&SecretKey],
) -> Node {
    let (dir, store) = store(whitelisted).await;
    launch(dir, store, seed, acl, network_config(passphrase, bootstrap)).await
}

/// Starts a node on `store` with the network configured by `config`.
pub(crate) async fn launch(
    dir: tempfile::TempDir,
    store: Store,
    seed: u8,
    acl: AclPolicy,
    config: Config,
) -> Node {
    let key = key(seed);
    let core = app::node::Node::start(crate::support::node_config(
        dir.path(),
        store.clone(),
        key.clone(),
        acl,
        Some(config),
    ))
    .await
    .expect("node starts");
    let p2p = core.p2p().cloned().expect("a network");
    Node {
        _dir: dir,
        key,
        core,
        store,
        p2p,
    }
}

/// A node whose network is bound but whose event loop is not running yet (wired by hand: the
/// test drives the loop itself).
pub(crate) async fn unstarted(seed: u8, passphrase: &str) -> (Node, Network) {
    let (dir, store) = store(&[]).await;
    let key = key(seed);
    let (outbox, receiver) = Outbox::new();
    let intake = Intake::new(store.clone(), Limits::default(), AclPolicy::Open)
        .with_node_author(key.public_key())
        .with_gossip(outbox);
    let (network, p2p) = Network::start(
        network_config(passphrase, &[]),
        &key,
        intake.clone(),
        receiver,
    )
    .await
    .expect("network starts");
    let core = app::node::Node::from_parts(app::node::Parts {
        auth: app::auth::Auth::new(store.clone()).expect("auth"),
        intake,
        key: key.clone(),
        data: DataDir::new(dir.path()),
        file_base_url: "http://127.0.0.1:9".into(),
        resources: Default::default(),
        sysfs: app::gpu::Sysfs::new(dir.path()),
        pipeline: None,
        p2p: Some(p2p.clone()),
        acl_sync: None,
        max_upload_bytes: 1 << 20,
        webhooks: Default::default(),
        observer: None,
    });
    let node = Node {
        _dir: dir,
        key,
        core,
        store,
        p2p,
    };
    (node, network)
}

/// Polls `check` every 100 ms for up to `limit`.
pub(crate) async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = std::time::Instant::now();
    while !check().await {
        assert!(start.elapsed() < limit, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn peer_keys(node: &Node) -> Vec<String> {
    node.p2p
        .peers()
        .into_iter()
        .filter_map(|p| p.public_key)
        .collect()
}

pub(crate) const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_spread_and_peers_find_each_other() {
    let a = node(1, "net", &[], AclPolicy::Open).await;
    // Stored before anyone listens: gossiped once a peer subscribes.
    let early = empty(&key(50), 0);
    a.core.submit(&early, Source::Rpc).await.expect("stored");

    let b = node(2, "net", &[a.addr()], AclPolicy::Open).await;
    let c = node(3, "net", &[a.addr()], AclPolicy::Open).await;
    eventually(WAIT, "b has the early transaction", || b.has(&early.hash)).await;

    // C knew only A; it finds B through the DHT.
    eventually(WAIT, "c connects to b", || {
        let found = peer_keys(&c).contains(&b.key.public_key().to_hex());
        async move { found }
    })
    .await;
    let peers = a.p2p.peers();
    assert_eq!(peers.len(), 2, "{peers:?}");
    let b_seen = peers
        .iter()
        .find(|p| p.public_key.as_deref() == Some(b.key.public_key().to_hex().as_str()))
        .expect("a lists b by its node key");
    assert_eq!(b_seen.direction, app::p2p::Direction::Inbound);
    assert_eq!(b_seen.peer_id, b.p2p.peer_id());
    eventually(WAIT, "identify tells a b's agent", || {
        let agent = a
            .p2p
            .peers()
            .into_iter()
            .find(|p| p.peer_id == b.p2p.peer_id())
            .and_then(|p| p.agent_version);
        async move { agent.is_some_and(|v| v.starts_with("gevulot/")) }
    })
    .await;

    // A client's transaction on C reaches every node; each stores it once.
    let tx = empty(&key(51), 0);
    c.core.submit(&tx, Source::Rpc).await.expect("stored");
    eventually(WAIT, "a and b have c's transaction", || async {
        a.has(&tx.hash).await && b.has(&tx.hash).await
    })
    .await;
    assert_eq!(a.store().count_transactions().await.expect("count"), 2);
    assert!(c.p2p.counters().published >= 1, "{:?}", c.p2p.counters());
    // The acceptance is counted once the event loop hears the validation's outcome.
    eventually(WAIT, "a counts c's transaction as accepted", || async {
        a.p2p.counters().accepted >= 1
    })
    .await;

    // A burst stored in one commit, more than a peer validates at once: none is lost.
    let burst: Vec<_> = (1..=300).map(|n| empty(&key(53), n)).collect();
    c.core
        .submit_batch(&burst, Source::Rpc)
        .await
        .expect("stored");
    eventually(WAIT, "a and b have the whole burst", || async {
        a.store().count_transactions().await.expect("count") == 302
            && b.store().count_transactions().await.expect("count") == 302
    })
    .await;
    assert_eq!(a.p2p.counters().ignored, 0, "{:?}", a.p2p.counters());
}

/// Readiness follows the event loop: up from start, down once it is gone.
#[tokio::test]
async fn the_network_reports_whether_it_runs() {
    let (node, network) = unstarted(30, "net").await;
    let p2p = &node.p2p;
    assert!(p2p.is_running());
    let task = tokio::spawn(network.run());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(p2p.is_running());
    task.abort();
    let _ = task.await;
    assert!(!p2p.is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_another_passphrase_is_kept_out() {
    let a = node(11, "the network", &[], AclPolicy::Open).await;
    let intruder = node(12, "a guess", &[a.addr()], AclPolicy::Open).await;
    assert_ne!(a.p2p.psk_fingerprint(), intruder.p2p.psk_fingerprint());
    let tx = empty(&key(52), 0);
    intruder
        .core
        .submit(&tx, Source::Rpc)
        .await
        .expect("stored");
    // Longer than the upgrade timeout, so a dial that hangs has failed by then.
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert!(a.p2p.peers().is_empty(), "{:?}", a.p2p.peers());
    assert!(intruder.p2p.peers().is_empty());
    assert!(!a.has(&tx.hash).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whitelist_admits_peers_and_authors() {
    let friend_key = key(21);
    let author = key(60);
    // The guarded node whitelists the friend node and one author.
    let guarded = node_with(
        20,
        "net",
        &[],
        AclPolicy::Whitelist,
        &[&friend_key, &author],
    )
    .await;
    let friend = node(21, "net", &[guarded.addr()], AclPolicy::Open).await;
    let stranger = node(22, "net", &[guarded.addr()], AclPolicy::Open).await;

    eventually(WAIT, "the friend is admitted", || {
        let keys = peer_keys(&guarded);
        let friend = friend_key.public_key().to_hex();
        async move { keys == vec![friend] }
    })
    .await;
    eventually(WAIT, "the stranger is refused", || {
        let refused = guarded.p2p.counters().peers_refused;
        async move { refused >= 1 }
    })
    .await;
    assert!(
        !peer_keys(&guarded).contains(&stranger.key.public_key().to_hex()),
        "{:?}",
        guarded.p2p.peers()
    );

    // Through the friend: a whitelisted author's transaction gets in, another's does not.
    let allowed = empty(&author, 0);
    let refused = empty(&key(61), 0);
    friend
        .core
        .submit(&refused, Source::Rpc)
        .await
        .expect("open node");
    friend
        .core
        .submit(&allowed, Source::Rpc)
        .await
        .expect("open node");
    eventually(WAIT, "the allowed transaction arrives", || {
        guarded.has(&allowed.hash)
    })
    .await;
    assert!(!guarded.has(&refused.hash).await);
    eventually(WAIT, "the refusal is counted", || {
        let rejected = guarded.p2p.counters().rejected;
        async move { rejected >= 1 }
    })
    .await;
    // The stranger was turned away before any protocol ran: it heard nothing, learnt no peer.
    assert!(
        stranger.p2p.peers().is_empty(),
        "{:?}",
        stranger.p2p.peers()
    );
    assert!(!stranger.has(&allowed.hash).await);

    // Taken off the whitelist, the friend is disconnected within a refresh.
    guarded
        .store()
        .acl_remove(&friend_key.public_key())
        .await
        .expect("remove");
    eventually(WAIT, "the friend is disconnected", || {
        let peers = guarded.p2p.peers();
        async move { peers.is_empty() }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_hears_every_nodes_capacity() {
    let a = node(26, "net", &[], AclPolicy::Open).await;
    let b = node(27, "net", &[a.addr()], AclPolicy::Open).await;
    let c = node(28, "net", &[a.addr()], AclPolicy::Open).await;
    let ids = {
        let mut ids = vec![a.p2p.peer_id(), b.p2p.peer_id(), c.p2p.peer_id()];
        ids.sort();
        ids
    };
    for n in [&a, &b, &c] {
        eventually(WAIT, "each node hears all three", || {
            let heard: Vec<String> = n.p2p.executors().into_iter().map(|e| e.peer_id).collect();
            let want = ids.clone();
            async move { heard == want }
        })
        .await;
    }
    let heard = c.p2p.executors();
    let own: Vec<_> = heard.iter().filter(|e| e.local).collect();
    assert_eq!(own.len(), 1);
    assert_eq!(own[0].peer_id, c.p2p.peer_id());
    let of_a = heard
        .iter()
        .find(|e| e.peer_id == a.p2p.peer_id())
        .expect("a heard");
    // Signed by a's node key; a runs no pipeline here, so it does not execute.
    assert_eq!(
        of_a.public_key.as_deref(),
        Some(a.key.public_key().to_hex().as_str())
    );
    assert!(!of_a.capacity.execution);
    assert_eq!(of_a.capacity.download_url, "http://127.0.0.1:9");
    assert_eq!(of_a.capacity.version, env!("CARGO_PKG_VERSION"));
    assert!(of_a.capacity.at_ms > 0);
}
