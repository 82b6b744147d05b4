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

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use libp2p::allow_block_list::{self, AllowedPeers, NotAllowed};
use libp2p::core::upgrade;
use libp2p::futures::StreamExt;
use libp2p::multiaddr::Protocol;
use libp2p::pnet::{PnetConfig, PreSharedKey};
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::{DialError, ListenError, NetworkBehaviour, SwarmEvent};
use libp2p::{
    Multiaddr, PeerId, StreamProtocol, Swarm, SwarmBuilder, Transport, gossipsub, identify, kad,
    noise, tcp, yamux,
};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::crypto::{PublicKey, SecretKey};
use crate::model::Source;
use crate::node::{Intake, SubmitError};
use crate::store::Store;
use crate::tx::{Hash, Transaction};

/// The gossip topic for transactions. The version is part of the name: a node speaking another
/// encoding simply is not subscribed to the same topic.
pub const TOPIC: &str = "gevulot/transactions/1";
/// What `identify` announces as the protocol; peers of another protocol are not added to the DHT.
pub const PROTOCOL_VERSION: &str = "/gevulot/1.0.0";
const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/gevulot/kad/1.0.0");
/// Transactions waiting in the outbox for the event loop.
pub const OUTBOX_CAPACITY: usize = 1024;
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

/// The pre-shared key of a passphrase: SHA3-256, as in the original network.
pub fn psk(passphrase: &str) -> [u8; 32] {
    Hash::sha3(passphrase.as_bytes()).0
}

/// A short, non-reversible fingerprint of a passphrase's pre-shared key, safe to log and show.
pub fn psk_fingerprint(passphrase: &str) -> String {
    let mut fingerprint = Hash::sha3(&psk(passphrase)).to_hex();
    fingerprint.truncate(16);
    fingerprint
}

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
            .finish_non_exhaustive()
    }
}

/// Where the intake puts newly stored transactions for gossip.
#[derive(Clone, Debug)]
pub struct Outbox {
    sender: mpsc::Sender<Transaction>,
    dropped: Arc<AtomicU64>,
}

impl Outbox {
    /// An outbox and its receiving end, for [`Network::start`].
    pub fn new() -> (Self, OutboxReceiver) {
        let (sender, receiver) = mpsc::channel(OUTBOX_CAPACITY);
        let dropped = Arc::new(AtomicU64::new(0));
        (
            Self {
                sender,
                dropped: dropped.clone(),
            },
            OutboxReceiver { receiver, dropped },
        )
    }

    /// Queues `tx` for gossip without waiting. A full outbox (the network cannot keep up, or is
    /// gone) drops it: the transaction is stored, only its propagation is lost.
    pub fn push(&self, tx: &Transaction) {
        if let Err(e) = self.sender.try_send(tx.clone()) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            warn!(target: "gevulot::p2p", tx = %tx.hash, reason = %e, "transaction not gossiped: the P2P outbox is full or closed");
        }
    }
}

#[derive(Debug)]
pub struct OutboxReceiver {
    receiver: mpsc::Receiver<Transaction>,
    dropped: Arc<AtomicU64>,
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
    shared: Arc<Shared>,
    outbox_dropped: Arc<AtomicU64>,
}

impl P2p {
    pub fn peer_id(&self) -> String {
        self.peer_id.to_string()
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

#[derive(NetworkBehaviour)]
struct Behaviour {
    /// In whitelist mode, the peers allowed to connect; absent (everyone) otherwise.
    allow: Toggle<allow_block_list::Behaviour<AllowedPeers>>,
    gossipsub: gossipsub::Behaviour,
    identify: identify::Behaviour,
    kad: kad::Behaviour<kad::store::MemoryStore>,
}

/// The libp2p identity of a node key: the same secp256k1 key.
pub fn identity(key: &SecretKey) -> Result<libp2p::identity::Keypair, NetworkError> {
    let secret = libp2p::identity::secp256k1::SecretKey::try_from_bytes(key.secret_bytes())
        .map_err(|e| NetworkError::Identity(e.to_string()))?;
    Ok(libp2p::identity::secp256k1::Keypair::from(secret).into())
}

/// The peer id of a node key.
pub fn peer_id(key: &PublicKey) -> Option<PeerId> {
    let key = libp2p::identity::secp256k1::PublicKey::try_from_bytes(key.as_bytes()).ok()?;
    Some(libp2p::identity::PublicKey::from(key).to_peer_id())
}

/// The node key a peer id stands for, when it is a secp256k1 id (every Gevulot node's is).
pub fn peer_key(peer: &PeerId) -> Option<PublicKey> {
    // Small keys are inlined in the id: identity multihash (code 0), length, protobuf key.
    let bytes = peer.to_bytes();
    let (&[0, len], protobuf) = bytes.split_first_chunk::<2>()? else {
        return None;
    };
    if usize::from(len) != protobuf.len() {
        return None;
    }
    let key = libp2p::identity::PublicKey::try_decode_protobuf(protobuf).ok()?;
    let key = key.try_into_secp256k1().ok()?;
    PublicKey::from_slice(&key.to_bytes_uncompressed()).ok()
}

/// Waits for a whitelist sync that changed something; forever without a sync.
async fn synced(sync: Option<&crate::acl::SyncStatus>) {
    match sync {
        Some(sync) => sync.changed().await,
        None => std::future::pending().await,
    }
}

/// The peer ids of the keys on the whitelist.
async fn allowed_peers(store: &Store) -> Result<HashSet<PeerId>, crate::store::StoreError> {
    Ok(store.acl_list().await?.iter().filter_map(peer_id).collect())
}

fn socket_multiaddr(addr: SocketAddr) -> Multiaddr {
    let ip = match addr.ip() {
        IpAddr::V4(ip) => Protocol::Ip4(ip),
        IpAddr::V6(ip) => Protocol::Ip6(ip),
    };
    Multiaddr::empty().with(ip).with(Protocol::Tcp(addr.port()))
}

fn multiaddr_socket(addr: &Multiaddr) -> Option<SocketAddr> {
    let mut ip = None;
    for part in addr.iter() {
        match part {
            Protocol::Ip4(v4) => ip = Some(IpAddr::V4(v4)),
            Protocol::Ip6(v6) => ip = Some(IpAddr::V6(v6)),
            Protocol::Tcp(port) => return ip.map(|ip| SocketAddr::new(ip, port)),
            _ => {}
        }
    }
    None
}

/// Checks a `host:port` bootstrap entry's form (the host is resolved at each dial).
pub fn check_bootstrap(entry: &str) -> Result<(), String> {
    let Some((host, port)) = entry.rsplit_once(':') else {
        return Err(format!(
            "{entry:?} has no port; write host:port, e.g. 10.0.0.2:9999"
        ));
    };
    if host.is_empty() {
        return Err(format!(
            "{entry:?} has no host; write host:port, e.g. 10.0.0.2:9999"
        ));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(format!("{entry:?} has no valid port (1-65535)")),
    }
}

enum Internal {
    /// Addresses the resolver found for bootstrap entries.
    Dial(Vec<Multiaddr>),
    /// The peers the whitelist allows, as read from the database.
    Allowed(HashSet<PeerId>),
}

/// The event loop that owns the swarm.
pub struct Network {
    swarm: Swarm<Behaviour>,
    topic: gossipsub::IdentTopic,
    intake: Intake,
    /// Where the whitelist is read from, in whitelist mode.
    acl: Option<Store>,
    whitelist_sync: Option<crate::acl::SyncStatus>,
    outbox: mpsc::Receiver<Transaction>,
    internal: mpsc::Receiver<Internal>,
    internal_tx: mpsc::Sender<Internal>,
    bootstrap: Vec<String>,
    shared: Arc<Shared>,
    /// Published while nobody was subscribed: sent again when a peer subscribes.
    backlog: VecDeque<Vec<u8>>,
    backlog_bytes: usize,
    /// Whether the backlog has dropped transactions since a peer last listened.
    backlog_overflowed: bool,
    /// Refused peers already warned about since the whitelist last changed.
    warned: HashSet<PeerId>,
    validating: JoinSet<(gossipsub::MessageId, PeerId, gossipsub::MessageAcceptance)>,
    /// Peer transactions waiting for a validation slot, with their message sizes.
    waiting: VecDeque<(gossipsub::MessageId, PeerId, Transaction, usize)>,
    waiting_bytes: usize,
    /// Bootstrap addresses with a dial in flight or an outbound connection.
    dialled: HashSet<Multiaddr>,
    _alive: Alive,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("peer_id", self.swarm.local_peer_id())
            .finish_non_exhaustive()
    }
}

impl Network {
    /// Builds the swarm and starts listening. Returns once the listener is bound, so a taken
    /// port is a startup error; [`Network::run`] then drives it.
    pub async fn start(
        config: Config,
        key: &SecretKey,
        intake: Intake,
        outbox: OutboxReceiver,
    ) -> Result<(Network, P2p), NetworkError> {
        let keypair = identity(key)?;
        let acl = config.whitelist_peers.then(|| intake.store().clone());
        let allowed = match &acl {
            Some(store) => Some(
                allowed_peers(store)
                    .await
                    .map_err(NetworkError::Whitelist)?,
            ),
            None => None,
        };
        let psk = PreSharedKey::new(psk(&config.passphrase));
        let topic = gossipsub::IdentTopic::new(TOPIC);
        let max_bytes = config.max_message_bytes.saturating_add(64 * 1024);
        let gossip_config = gossipsub::ConfigBuilder::default()
            .max_transmit_size(max_bytes)
            .validation_mode(gossipsub::ValidationMode::Strict)
            .validate_messages()
            .message_id_fn(|m: &gossipsub::Message| {
                gossipsub::MessageId::from(blake3::hash(&m.data).as_bytes().to_vec())
            })
            .build()
            .map_err(|e| NetworkError::Transport(e.to_string()))?;
        let mut swarm = SwarmBuilder::with_existing_identity(keypair)
            .with_tokio()
            .with_other_transport(|key| {
                let noise = noise::Config::new(key)?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(
                    tcp::tokio::Transport::new(tcp::Config::new().nodelay(true))
                        // The pre-shared key wraps the raw socket, before Noise: a node without it
                        // cannot even negotiate a protocol.
                        .and_then(move |socket, _| PnetConfig::new(psk).handshake(socket))
                        .upgrade(upgrade::Version::V1Lazy)
                        .authenticate(noise)
                        .multiplex(yamux::Config::default())
                        .timeout(UPGRADE_TIMEOUT),
                )
            })
            .map_err(|e| NetworkError::Transport(e.to_string()))?
            .with_behaviour(|key| {
                let gossipsub = gossipsub::Behaviour::new(
                    gossipsub::MessageAuthenticity::Signed(key.clone()),
                    gossip_config,
                )?;
                let identify = identify::Behaviour::new(
                    identify::Config::new(PROTOCOL_VERSION.to_string(), key.public())
                        .with_agent_version(format!("gevulot/{}", env!("CARGO_PKG_VERSION"))),
                );
                let mut kad_config = kad::Config::new(KAD_PROTOCOL);
                kad_config.set_periodic_bootstrap_interval(Some(Duration::from_secs(60)));
                let peer_id = key.public().to_peer_id();
                let mut kad = kad::Behaviour::with_config(
                    peer_id,
                    kad::store::MemoryStore::new(peer_id),
                    kad_config,
                );
                // A private network has no public addresses to confirm; every node serves.
                kad.set_mode(Some(kad::Mode::Server));
                let allow = allowed.map(|peers| {
                    let mut allow = allow_block_list::Behaviour::<AllowedPeers>::default();
                    for peer in peers {
                        allow.allow_peer(peer);
                    }
                    allow
                });
                Ok(Behaviour {
                    allow: Toggle::from(allow),
                    gossipsub,
                    identify,
                    kad,
                })
            })
            .map_err(|e| NetworkError::Transport(e.to_string()))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(300)))
            .build();
        swarm
            .behaviour_mut()
            .gossipsub
            .subscribe(&topic)
            .map_err(|e| NetworkError::Transport(e.to_string()))?;
        if let Some(addr) = config.advertised {
            swarm.add_external_address(socket_multiaddr(addr));
        }
        let listen_err = |reason: String| NetworkError::Listen {
            addr: config.listen,
            reason,
        };
        swarm
            .listen_on(socket_multiaddr(config.listen))
            .map_err(|e| listen_err(e.to_string()))?;
        // The listener binds on the first poll; wait for it to say where.
        let bound = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match swarm.select_next_some().await {
                    SwarmEvent::NewListenAddr { address, .. } => {
                        if let Some(addr) = multiaddr_socket(&address) {
                            return Ok(addr);
                        }
                    }
                    SwarmEvent::ListenerError { error, .. } => return Err(error.to_string()),
                    SwarmEvent::ListenerClosed { reason, .. } => {
                        return Err(match reason {
                            Err(e) => e.to_string(),
                            Ok(()) => "the listener closed".to_string(),
                        });
                    }
                    _ => {}
                }
            }
        })
        .await
        .map_err(|_| listen_err("no listener after 10 s".to_string()))?
        .map_err(listen_err)?;
        let listen_addr = SocketAddr::new(config.listen.ip(), bound.port());

        let shared = Arc::new(Shared::default());
        shared.running.store(true, Ordering::Relaxed);
        let (internal_tx, internal) = mpsc::channel(16);
        let view = P2p {
            peer_id: *swarm.local_peer_id(),
            listen_addr,
            advertised: config.advertised,
            fingerprint: psk_fingerprint(&config.passphrase),
            bootstrap: config.bootstrap.clone(),
            shared: shared.clone(),
            outbox_dropped: outbox.dropped.clone(),
        };
        let network = Network {
            swarm,
            topic,
            intake,
            acl,
            whitelist_sync: config.whitelist_sync,
            outbox: outbox.receiver,
            internal,
            internal_tx,
            bootstrap: config.bootstrap,
            _alive: Alive(shared.clone()),
            shared,
            backlog: VecDeque::new(),
            backlog_bytes: 0,
            backlog_overflowed: false,
            warned: HashSet::new(),
            validating: JoinSet::new(),
            waiting: VecDeque::new(),
            waiting_bytes: 0,
            dialled: HashSet::new(),
        };
        Ok((network, view))
    }

    /// Drives the network until the process ends.
    pub async fn run(mut self) {
        let mut redial = tokio::time::interval(REDIAL_EVERY);
        redial.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut acl_refresh = tokio::time::interval(ACL_REFRESH_EVERY);
        acl_refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm(event),
                Some(tx) = self.outbox.recv() => self.publish(tx.to_json().into_bytes()),
                Some(internal) = self.internal.recv() => match internal {
                    Internal::Dial(addrs) => self.dial(addrs),
                    Internal::Allowed(peers) => self.allow(peers),
                },
                Some(done) = self.validating.join_next(), if !self.validating.is_empty() => {
                    if let Ok((id, source, acceptance)) = done {
                        self.swarm.behaviour_mut().gossipsub.report_message_validation_result(&id, &source, acceptance);
                    }
                    // A slot is free (even after a panicked validation): the next one starts.
                    if let Some((id, source, tx, bytes)) = self.waiting.pop_front() {
                        self.waiting_bytes -= bytes;
                        self.validate(id, source, tx);
                    }
                }
                _ = redial.tick() => self.resolve_bootstrap(),
                _ = acl_refresh.tick(), if self.acl.is_some() => self.refresh_whitelist(),
                () = synced(self.whitelist_sync.as_ref()), if self.acl.is_some() => self.refresh_whitelist(),
            }
        }
    }

    /// Reads the whitelist off the event loop; [`Network::allow`] applies it.
    fn refresh_whitelist(&self) {
        let Some(store) = self.acl.clone() else {
            return;
        };
        let back = self.internal_tx.clone();
        tokio::spawn(async move {
            match allowed_peers(&store).await {
                Ok(peers) => {
                    let _ = back.send(Internal::Allowed(peers)).await;
                }
                Err(e) => {
                    warn!(target: "gevulot::p2p", error = %e, "cannot read the ACL whitelist; peers stay as they are")
                }
            }
        });
    }

    /// Makes the allowed peers equal to `peers`: newcomers may connect, and the connections of
    /// peers taken off the whitelist are closed.
    fn allow(&mut self, peers: HashSet<PeerId>) {
        let Some(allow) = self.swarm.behaviour_mut().allow.as_mut() else {
            return;
        };
        let current = allow.allowed_peers().clone();
        if current == peers {
            return;
        }
        for peer in peers.difference(&current) {
            allow.allow_peer(*peer);
        }
        let removed: Vec<PeerId> = current.difference(&peers).copied().collect();
        for peer in &removed {
            // Closes its connections.
            allow.disallow_peer(*peer);
        }
        for peer in &removed {
            if self.swarm.is_connected(peer) {
                info!(target: "gevulot::p2p", %peer, "disconnecting a peer taken off the ACL whitelist");
            }
            self.swarm.behaviour_mut().kad.remove_peer(peer);
        }
        self.warned.clear();
    }

    /// A connection refused because the peer's key is not whitelisted (in either direction).
    fn refused(&mut self, peer: Option<PeerId>, address: Option<&Multiaddr>) {
        self.count(|c| c.peers_refused += 1);
        let Some(peer) = peer else { return };
        if self.warned.len() < MAX_WARNED && self.warned.insert(peer) {
            let key = peer_key(&peer).map_or_else(|| "unknown".to_string(), |k| k.to_hex());
            let address = address.map_or_else(String::new, ToString::to_string);
            warn!(target: "gevulot::p2p", %peer, public_key = %key, %address,
                "refused a peer whose key is not on the ACL whitelist; whitelist it with `gevulot peer <public key> whitelist` to admit it");
        }
    }

    /// Whether `peer` may connect: always, unless the whitelist leaves it out.
    fn may_connect(&self, peer: &PeerId) -> bool {
        self.swarm
            .behaviour()
            .allow
            .as_ref()
            .is_none_or(|allow| allow.allowed_peers().contains(peer))
    }

    /// Forgets every bootstrap dial that has no connection: the next round dials it again.
    fn forget_failed_dials(&mut self) {
        let connected: HashSet<String> = self
            .shared
            .peers
            .read()
            .map(|p| p.values().map(|peer| peer.address.clone()).collect())
            .unwrap_or_default();
        self.dialled
            .retain(|addr| connected.contains(&addr.to_string()));
    }

    fn add_peer(&mut self, peer_id: PeerId, peer: Peer) {
        info!(target: "gevulot::p2p", peer = %peer_id, address = %peer.address, direction = peer.direction.as_str(), "peer connected");
        if let Ok(mut peers) = self.shared.peers.write() {
            peers.insert(peer_id, peer);
        }
    }

    fn count(&self, change: impl FnOnce(&mut Counters)) {
        if let Ok(mut c) = self.shared.counters.write() {
            change(&mut c);
        }
    }

    fn publish(&mut self, data: Vec<u8>) {
        let topic = self.topic.hash();
        let subscribed = self
            .swarm
            .behaviour()
            .gossipsub
            .all_peers()
            .any(|(_, topics)| topics.contains(&&topic));
        if !subscribed {
            return self.keep_for_later(data);
        }
        match self
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(self.topic.clone(), data)
        {
            Ok(_) => self.count(|c| c.published += 1),
            Err(gossipsub::PublishError::Duplicate) => {}
            Err(e) => {
                self.count(|c| c.dropped += 1);
                warn!(target: "gevulot::p2p", error = %e, "cannot gossip a transaction");
            }
        }
    }

    /// Keeps a transaction published while no peer listens, within the backlog's bounds.
    fn keep_for_later(&mut self, data: Vec<u8>) {
        self.backlog_bytes += data.len();
        self.backlog.push_back(data);
        while self.backlog.len() > BACKLOG_CAPACITY || self.backlog_bytes > BACKLOG_MAX_BYTES {
            let Some(oldest) = self.backlog.pop_front() else {
                break;
            };
            self.backlog_bytes -= oldest.len();
            self.count(|c| c.dropped += 1);
            // Once until a peer listens again, not for every transaction of a lone node.
            if !self.backlog_overflowed {
                self.backlog_overflowed = true;
                warn!(target: "gevulot::p2p", "no peer has listened for a while; the oldest transactions waiting to be gossiped are dropped from now on (they stay stored here; gevulot_p2p_transactions_total{{outcome=\"dropped\"}} counts them)");
            }
        }
    }

    /// Resolves the bootstrap entries off the event loop (DNS may be slow) and dials them.
    fn resolve_bootstrap(&mut self) {
        if self.bootstrap.is_empty() {
            return;
        }
        let entries = self.bootstrap.clone();
        let back = self.internal_tx.clone();
        tokio::spawn(async move {
            let mut addrs = Vec::new();
            for entry in entries {
                match tokio::net::lookup_host(entry.as_str()).await {
                    // The first address, as the original node did.
                    Ok(mut found) => {
                        if let Some(addr) = found.next() {
                            addrs.push(socket_multiaddr(addr));
                        }
                    }
                    Err(e) => {
                        warn!(target: "gevulot::p2p", peer = %entry, error = %e, "cannot resolve a bootstrap peer")
                    }
                }
            }
            let _ = back.send(Internal::Dial(addrs)).await;
        });
    }

    fn dial(&mut self, addrs: Vec<Multiaddr>) {
        let known: HashSet<String> = self
            .shared
            .peers
            .read()
            .map(|p| {
                p.values()
                    .flat_map(|peer| peer.listen_addresses.iter().cloned())
                    .collect()
            })
            .unwrap_or_default();
        for addr in addrs {
            if self.dialled.contains(&addr) || known.contains(&addr.to_string()) {
                continue;
            }
            match self.swarm.dial(addr.clone()) {
                Ok(()) => {
                    debug!(target: "gevulot::p2p", %addr, "dialling a bootstrap peer");
                    self.dialled.insert(addr);
                }
                Err(e) => {
                    warn!(target: "gevulot::p2p", %addr, error = %e, "cannot dial a bootstrap peer")
                }
            }
        }
    }

    fn on_swarm(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                info!(target: "gevulot::p2p", %address, "listening for peers");
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                endpoint,
                num_established,
                ..
            } => {
                if num_established.get() > 1 {
                    return;
                }
                let peer = Peer {
                    peer_id: peer_id.to_string(),
                    public_key: peer_key(&peer_id).map(|k| k.to_hex()),
                    address: endpoint.get_remote_address().to_string(),
                    direction: if endpoint.is_dialer() {
                        Direction::Outbound
                    } else {
                        Direction::Inbound
                    },
                    connected_at: SystemTime::now(),
                    agent_version: None,
                    listen_addresses: Vec::new(),
                };
                // In whitelist mode only allowed peers get this far.
                self.add_peer(peer_id, peer);
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                endpoint,
                num_established,
                cause,
                ..
            } => {
                if endpoint.is_dialer() {
                    self.dialled.remove(endpoint.get_remote_address());
                }
                if num_established == 0 {
                    let removed = self
                        .shared
                        .peers
                        .write()
                        .ok()
                        .and_then(|mut p| p.remove(&peer_id));
                    if removed.is_some() {
                        info!(target: "gevulot::p2p", peer = %peer_id, cause = ?cause.map(|c| c.to_string()), "peer disconnected");
                    }
                }
            }
            SwarmEvent::OutgoingConnectionError {
                error: DialError::Denied { cause },
                peer_id,
                ..
            } if cause.downcast_ref::<NotAllowed>().is_some() => {
                self.refused(peer_id, None);
                self.forget_failed_dials();
            }
            SwarmEvent::IncomingConnectionError {
                error: ListenError::Denied { cause },
                peer_id,
                send_back_addr,
                ..
            } if cause.downcast_ref::<NotAllowed>().is_some() => {
                self.refused(peer_id, Some(&send_back_addr));
            }
            SwarmEvent::OutgoingConnectionError { error, .. } => {
                self.forget_failed_dials();
                debug!(target: "gevulot::p2p", error = %error, "cannot connect to a peer");
            }
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                error,
                ..
            } => {
                // A wrong pre-shared key ends here: the bytes make no sense after pnet.
                info!(target: "gevulot::p2p", from = %send_back_addr, error = %error, "refused an incoming connection (a peer with another GEVULOT_PSK_PASSPHRASE fails this way)");
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(event)) => self.on_gossip(event),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                if info.protocol_version != PROTOCOL_VERSION {
                    debug!(target: "gevulot::p2p", peer = %peer_id, protocol = %info.protocol_version, "a peer of another protocol");
                    return;
                }
                let listen: Vec<Multiaddr> = info
                    .listen_addrs
                    .into_iter()
                    .filter(|a| multiaddr_socket(a).is_some_and(|s| !s.ip().is_unspecified()))
                    .collect();
                for addr in &listen {
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .add_address(&peer_id, addr.clone());
                }
                if let Ok(mut peers) = self.shared.peers.write()
                    && let Some(peer) = peers.get_mut(&peer_id)
                {
                    peer.agent_version = Some(info.agent_version);
                    peer.listen_addresses = listen.iter().map(ToString::to_string).collect();
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Kad(kad::Event::RoutingUpdated {
                peer,
                addresses,
                ..
            })) if peer != *self.swarm.local_peer_id()
                && !self.swarm.is_connected(&peer)
                && self.may_connect(&peer) =>
            {
                // A small private network is a full mesh: connect to every peer the DHT finds
                // (and, in whitelist mode, may admit).
                let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(peer)
                    .addresses(addresses.into_vec())
                    .build();
                if let Err(e) = self.swarm.dial(opts) {
                    debug!(target: "gevulot::p2p", %peer, error = %e, "cannot dial a discovered peer");
                }
            }
            _ => {}
        }
    }

    /// Takes a peer's transaction through the intake; gossipsub forwards it only once accepted.
    fn validate(&mut self, id: gossipsub::MessageId, source: PeerId, tx: Transaction) {
        let intake = self.intake.clone();
        let shared = self.shared.clone();
        self.validating.spawn(async move {
            let acceptance = match intake.submit(&tx, Source::P2p).await {
                Ok(submitted) => {
                    if submitted.new {
                        debug!(target: "gevulot::p2p", tx = %tx.hash, kind = tx.kind().as_str(), peer = %source, "stored a transaction from a peer");
                    }
                    gossipsub::MessageAcceptance::Accept
                }
                Err(SubmitError::Invalid(e)) => {
                    info!(target: "gevulot::p2p", tx = %tx.hash, peer = %source, reason = %e, "refused a transaction from a peer");
                    gossipsub::MessageAcceptance::Reject
                }
                Err(e) => {
                    warn!(target: "gevulot::p2p", tx = %tx.hash, error = %e, "cannot take a transaction from a peer");
                    gossipsub::MessageAcceptance::Ignore
                }
            };
            if let Ok(mut c) = shared.counters.write() {
                c.record(&acceptance);
            }
            (id, source, acceptance)
        });
    }

    /// Counts a message judged without the intake and tells gossipsub.
    fn judged(
        &mut self,
        id: &gossipsub::MessageId,
        source: &PeerId,
        acceptance: gossipsub::MessageAcceptance,
    ) {
        self.count(|c| c.record(&acceptance));
        self.swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(id, source, acceptance);
    }

    fn on_gossip(&mut self, event: gossipsub::Event) {
        match event {
            gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            } => {
                let bytes = message.data.len();
                let busy = self.validating.len() >= MAX_VALIDATING;
                if busy
                    && (self.waiting.len() >= MAX_WAITING
                        || self.waiting_bytes + bytes > MAX_WAITING_BYTES)
                {
                    debug!(target: "gevulot::p2p", peer = %propagation_source, "ignored a message: too many transactions waiting to be validated");
                    return self.judged(
                        &message_id,
                        &propagation_source,
                        gossipsub::MessageAcceptance::Ignore,
                    );
                }
                let tx: Transaction = match serde_json::from_slice(&message.data) {
                    Ok(tx) => tx,
                    Err(e) => {
                        warn!(target: "gevulot::p2p", peer = %propagation_source, error = %e, "a peer sent a message that is not a transaction");
                        return self.judged(
                            &message_id,
                            &propagation_source,
                            gossipsub::MessageAcceptance::Reject,
                        );
                    }
                };
                if busy {
                    self.waiting_bytes += bytes;
                    self.waiting
                        .push_back((message_id, propagation_source, tx, bytes));
                } else {
                    self.validate(message_id, propagation_source, tx);
                }
            }
            gossipsub::Event::Subscribed { peer_id, topic } if topic == self.topic.hash() => {
                debug!(target: "gevulot::p2p", peer = %peer_id, "a peer subscribed to transactions");
                let backlog = std::mem::take(&mut self.backlog);
                self.backlog_bytes = 0;
                self.backlog_overflowed = false;
                if !backlog.is_empty() {
                    info!(target: "gevulot::p2p", transactions = backlog.len(), "gossiping transactions stored while no peer listened");
                }
                for data in backlog {
                    self.publish(data);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
