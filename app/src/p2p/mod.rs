//! The private P2P network: libp2p over TCP, the pre-shared key applied before anything else
//! (pnet), then Noise and yamux. Transactions travel by gossipsub on one topic, peers find each
//! other through Kademlia seeded by the bootstrap list and identify.
//!
//! One event loop ([`Network::run`]) owns the `Swarm`. Everyone else holds cheap handles: the
//! [`Outbox`] the intake pushes newly stored transactions into (bounded; a full outbox drops
//! with a warning and a counter, the transaction itself stays stored), and [`P2p`], a read-only
//! view of the connected peers for the APIs and metrics.
//!
//! The node's P2P identity is its transaction key (secp256k1), so a peer's id names the same key
//! that signs its Proofs. With the ACL in whitelist mode the swarm admits only peers whose key is
//! on the whitelist: any other connection is closed when its handshake ends, before any protocol
//! (gossip, discovery) runs on it. The allowed set mirrors the database and is read again every
//! few seconds; a peer taken off the whitelist is disconnected.
//!
//! A transaction from a peer goes through the same intake as one from a client; gossipsub
//! forwards it only once the intake accepted it, so an invalid transaction stops at the first
//! node that sees it.
//!
//! Gossip reaches the peers connected at that moment. What it misses (a node that joins late or
//! was down, a burst beyond the outbox) arrives through the catch-up ([`sync`]): every node pulls
//! from each peer what that peer stored after a per-peer cursor, on connect and at every sync
//! interval, through the same intake.

mod address;
mod behaviour;
mod capacity;
mod event_loop;
mod gossip;
mod identity;
mod sync;

pub use address::check_bootstrap;
pub use capacity::{CAPACITY_TOPIC, Capacity, Ended, Executor, Hold, MAX_HOLDS};
pub use event_loop::Network;
pub use gossip::{BIG_TX_BYTES, MAX_MESSAGE_BYTES as MAX_GOSSIP_MESSAGE_BYTES};
pub use identity::{identity, peer_id, peer_key, psk, psk_fingerprint};
pub use sync::{PeerSync, SyncCounters};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use libp2p::{PeerId, StreamProtocol, gossipsub};

/// The gossip topic for transactions. The version is part of the name: a node speaking another
/// encoding simply is not subscribed to the same topic.
pub const TOPIC: &str = "gevulot/transactions/1";
/// What `identify` announces as the protocol; peers of another protocol are not added to the DHT.
pub const PROTOCOL_VERSION: &str = "/gevulot/1.0.0";
const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/gevulot/kad/1.0.0");
/// Transactions kept for publishing while no peer is subscribed yet, at most this many and this
/// many bytes (the oldest go first).
const BACKLOG_CAPACITY: usize = 1024;
const BACKLOG_MAX_BYTES: usize = 64 << 20;
/// Peer transactions being validated at once; more wait in a queue of at most `MAX_WAITING`
/// transactions and `MAX_WAITING_BYTES` of messages, and beyond that are ignored.
const MAX_VALIDATING: usize = 64;
const MAX_WAITING: usize = 8192;
const MAX_WAITING_BYTES: usize = 256 << 20;
/// How often the bootstrap peers that are not connected are dialled again.
const REDIAL_EVERY: Duration = Duration::from_secs(10);
/// Noise and yamux must be through within this time; a wrong PSK shows up as this timeout.
const UPGRADE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the whitelist is read again (it changes through `gevulot peer`, another process,
/// and through the sync with `GEVULOT_ACL_WHITELIST_URL`).
const ACL_REFRESH_EVERY: Duration = Duration::from_secs(10);
/// Refused peers remembered so that each is warned about once per whitelist change.
const MAX_WARNED: usize = 1024;

#[derive(Clone)]
pub struct Config {
    /// Where the node listens (port 0 picks one; [`P2p::listen_addr`] tells which).
    pub listen: SocketAddr,
    /// The address peers should dial when it differs from `listen` (NAT).
    pub advertised: Option<SocketAddr>,
    /// `host:port` of peers to join through.
    pub bootstrap: Vec<String>,
    pub passphrase: String,
    /// Whether peers must have their key on the ACL whitelist.
    pub whitelist_peers: bool,
    /// The sync with a published whitelist, whose changes apply at once (other changes within
    /// a few seconds).
    pub whitelist_sync: Option<crate::acl::SyncStatus>,
    /// The largest transaction message accepted or sent, in bytes.
    pub max_message_bytes: usize,
    /// Peers connected at once at most (see `event_loop::connection_limits`).
    pub max_peers: u32,
    /// How often every connected peer is asked for what it stored since the last round.
    pub sync_every: Duration,
    /// How often this node announces its capacity.
    pub announce_every: Duration,
    /// Newly stored transactions waiting to be gossiped at most; beyond it they are dropped
    /// from gossip (the catch-up still delivers them).
    pub outbox_capacity: usize,
    /// This node's capacity as it changes (set by `Node::start`); nothing is announced without.
    pub capacity: Option<tokio::sync::watch::Receiver<Option<Capacity>>>,
}

/// Shows everything but the passphrase (its fingerprint instead).
impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("advertised", &self.advertised)
            .field("bootstrap", &self.bootstrap)
            .field("psk_fingerprint", &psk_fingerprint(&self.passphrase))
            .field("whitelist_peers", &self.whitelist_peers)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("max_peers", &self.max_peers)
            .field("sync_every", &self.sync_every)
            .field("announce_every", &self.announce_every)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// The peer dialled this node.
    Inbound,
    /// This node dialled the peer.
    Outbound,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

/// A connected peer, as the APIs show it.
#[derive(Clone, Debug)]
pub struct Peer {
    pub peer_id: String,
    /// The peer's node key (hex, uncompressed), which also signs its Proofs.
    pub public_key: Option<String>,
    /// The address of the first connection.
    pub address: String,
    pub direction: Direction,
    pub connected_at: SystemTime,
    /// What the peer says it runs (`identify`), once known.
    pub agent_version: Option<String>,
    /// Where the peer says it listens, once known.
    pub listen_addresses: Vec<String>,
    /// The catch-up with this peer.
    pub sync: PeerSync,
}

/// Counters of what crossed the network since start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Transactions this node published.
    pub published: u64,
    /// Peer transactions the intake accepted (stored, or already stored).
    pub accepted: u64,
    /// Peer messages refused: not a transaction, invalid, or an author not whitelisted. Not
    /// forwarded.
    pub rejected: u64,
    /// Peer messages not judged: overload (the validation queue is full) or storage trouble.
    pub ignored: u64,
    /// Transactions that could not be handed to the network (outbox full, message too large).
    pub dropped: u64,
    /// Connections refused because the peer's key is not whitelisted.
    pub peers_refused: u64,
    /// Connections refused because the node holds as many as it may (`max_peers`).
    pub connections_over_limit: u64,
    /// Large transactions announced by peers and fetched from them by hash.
    pub fetched: u64,
    /// Peers disconnected and refused for a while for sending forged transactions or garbage
    /// (over gossip, or in catch-up pages).
    pub peers_penalised: u64,
    /// The catch-up.
    pub sync: SyncCounters,
}

impl Counters {
    fn record(&mut self, acceptance: &gossipsub::MessageAcceptance) {
        match acceptance {
            gossipsub::MessageAcceptance::Accept => self.accepted += 1,
            gossipsub::MessageAcceptance::Reject => self.rejected += 1,
            gossipsub::MessageAcceptance::Ignore => self.ignored += 1,
        }
    }
}

#[derive(Debug, Default)]
struct Shared {
    peers: RwLock<HashMap<PeerId, Peer>>,
    counters: RwLock<Counters>,
    /// Peers refused for misbehaving, and until when.
    penalised: RwLock<HashMap<PeerId, SystemTime>>,
    /// The latest capacity announcement of every node heard from.
    executors: RwLock<capacity::Executors>,
    /// The Runs this node holds, as its next announcement lists them.
    holds: RwLock<Vec<capacity::Hold>>,
    /// Asks the event loop to announce at once (the holds changed).
    announce_now: tokio::sync::Notify,
    /// True from start until the event loop is gone (ended, panicked or never run).
    running: AtomicBool,
}

/// Owned by the event loop: when it goes (even by a panic), the network reports itself down
/// and lists no peer.
#[derive(Debug)]
struct Alive(Arc<Shared>);

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.running.store(false, Ordering::Relaxed);
        if let Ok(mut peers) = self.0.peers.write() {
            peers.clear();
        }
    }
}

/// A read-only view of the running network.
#[derive(Clone, Debug)]
pub struct P2p {
    peer_id: PeerId,
    listen_addr: SocketAddr,
    advertised: Option<SocketAddr>,
    fingerprint: String,
    bootstrap: Vec<String>,
    sync_every: Duration,
    announce_every: Duration,
    shared: Arc<Shared>,
    outbox_dropped: Arc<AtomicU64>,
}

impl P2p {
    pub fn peer_id(&self) -> String {
        self.peer_id.to_string()
    }

    pub fn local_peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The address the network listens on (the real port when 0 was asked for).
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen_addr
    }

    pub fn advertised(&self) -> Option<SocketAddr> {
        self.advertised
    }

    pub fn psk_fingerprint(&self) -> &str {
        &self.fingerprint
    }

    pub fn bootstrap(&self) -> &[String] {
        &self.bootstrap
    }

    /// How often every connected peer is asked for what it stored since the last round.
    pub fn sync_every(&self) -> Duration {
        self.sync_every
    }

    /// The largest catch-up lag over the connected peers: how many of a peer's sequence
    /// numbers this node has not pulled yet (0 when every peer is caught up).
    pub fn sync_lag(&self) -> i64 {
        self.shared.peers.read().map_or(0, |p| {
            p.values().map(|peer| peer.sync.lag()).max().unwrap_or(0)
        })
    }

    /// Connected (and, in whitelist mode, admitted) peers, ordered by when they connected.
    pub fn peers(&self) -> Vec<Peer> {
        let mut peers: Vec<Peer> = self
            .shared
            .peers
            .read()
            .map(|p| p.values().cloned().collect())
            .unwrap_or_default();
        peers.sort_by(|a, b| (a.connected_at, &a.peer_id).cmp(&(b.connected_at, &b.peer_id)));
        peers
    }

    /// Whether the event loop runs (readiness).
    pub fn is_running(&self) -> bool {
        self.shared.running.load(Ordering::Relaxed)
    }

    /// The nodes whose capacity announcements keep coming (this one included), by peer id.
    pub fn executors(&self) -> Vec<Executor> {
        self.shared
            .executors
            .read()
            .map(|e| e.live(self.announce_every))
            .unwrap_or_default()
    }

    /// Replaces the Runs this node holds and announces them at once.
    pub fn set_holds(&self, holds: Vec<Hold>) {
        if let Ok(mut h) = self.shared.holds.write() {
            *h = holds;
        }
        self.shared.announce_now.notify_one();
    }

    /// How often nodes announce their capacity.
    pub fn announce_every(&self) -> Duration {
        self.announce_every
    }

    /// Peers refused for a while for misbehaving (their peer ids), and until when.
    pub fn penalised(&self) -> Vec<(String, SystemTime)> {
        let mut out: Vec<(String, SystemTime)> = self
            .shared
            .penalised
            .read()
            .map(|p| {
                p.iter()
                    .map(|(id, until)| (id.to_string(), *until))
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }

    pub fn peer_count(&self) -> usize {
        self.shared.peers.read().map_or(0, |p| p.len())
    }

    pub fn counters(&self) -> Counters {
        let mut c = self
            .shared
            .counters
            .read()
            .map_or_else(|_| Counters::default(), |c| *c);
        c.dropped += self.outbox_dropped.load(Ordering::Relaxed);
        c
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("cannot derive the P2P identity from the node key: {0}")]
    Identity(String),
    #[error("cannot set up the P2P transport: {0}")]
    Transport(String),
    #[error(
        "cannot listen for peers on {addr}: {reason}; free the port or set GEVULOT_P2P_LISTEN_ADDR"
    )]
    Listen { addr: SocketAddr, reason: String },
    #[error("cannot read the ACL whitelist, which decides who may connect")]
    Whitelist(#[source] crate::store::StoreError),
}

#[cfg(test)]
mod tests {
    use super::address::{multiaddr_socket, socket_multiaddr};
    use super::*;
    use crate::crypto::SecretKey;
    use crate::tx::Hash;

    #[test]
    fn the_configuration_never_shows_the_passphrase() {
        let config = Config {
            listen: "127.0.0.1:9999".parse().expect("addr"),
            advertised: None,
            bootstrap: vec![],
            passphrase: "pass-s3cret".into(),
            whitelist_peers: false,
            whitelist_sync: None,
            max_message_bytes: 1,
            max_peers: 1,
            sync_every: Duration::from_secs(1),
            announce_every: Duration::from_secs(1),
            outbox_capacity: crate::intake::OUTBOX_CAPACITY,
            capacity: None,
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("pass-s3cret"), "{shown}");
        assert!(shown.contains(&psk_fingerprint("pass-s3cret")), "{shown}");
    }

    #[test]
    fn the_fingerprint_does_not_reveal_the_key() {
        let f = psk_fingerprint("secret passphrase");
        assert_eq!(f.len(), 16);
        assert!(!Hash(psk("secret passphrase")).to_hex().starts_with(&f));
        assert_ne!(f, psk_fingerprint("secret passphrase."));
    }

    #[test]
    fn a_peer_id_names_the_node_key() {
        let key = SecretKey::from_bytes(&[7; 32]).expect("key");
        let peer = identity(&key).expect("identity").public().to_peer_id();
        assert_eq!(peer_key(&peer), Some(key.public_key()));
        assert_eq!(peer_id(&key.public_key()), Some(peer));
        // An id that inlines no secp256k1 key names no node key.
        assert_eq!(peer_key(&PeerId::random()), None);
    }

    #[test]
    fn bootstrap_entries() {
        assert!(check_bootstrap("10.0.0.2:9999").is_ok());
        assert!(check_bootstrap("node-a.internal:9999").is_ok());
        assert!(check_bootstrap("[::1]:9999").is_ok());
        for bad in ["10.0.0.2", ":9999", "host:0", "host:port", "host:70000"] {
            assert!(check_bootstrap(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn addresses_round_trip() {
        for text in ["127.0.0.1:9999", "[::1]:80"] {
            let addr: SocketAddr = text.parse().expect("addr");
            assert_eq!(multiaddr_socket(&socket_multiaddr(addr)), Some(addr));
        }
    }
}
