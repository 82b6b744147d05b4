//! The event loop that owns the swarm: connections, dialling, the whitelist, and what
//! arrives from the intake's outbox.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use libp2p::allow_block_list::{self, AllowedPeers, Blocked, NotAllowed};
use libp2p::connection_limits::{self, ConnectionLimits, Exceeded};
use libp2p::core::upgrade;
use libp2p::futures::StreamExt;
use libp2p::pnet::{PnetConfig, PreSharedKey};
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::{DialError, ListenError, SwarmEvent};
use libp2p::{
    Multiaddr, PeerId, Swarm, SwarmBuilder, Transport, gossipsub, identify, kad, noise,
    request_response, tcp, yamux,
};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use super::address::{multiaddr_socket, socket_multiaddr};
use super::behaviour::{Behaviour, BehaviourEvent};
use super::identity::{identity, peer_id, peer_key, psk, psk_fingerprint};
use super::sync::{self, SyncState};
use super::{
    ACL_REFRESH_EVERY, Alive, Config, Counters, Direction, KAD_PROTOCOL, MAX_WARNED, NetworkError,
    P2p, PROTOCOL_VERSION, Peer, REDIAL_EVERY, Shared, TOPIC, UPGRADE_TIMEOUT,
};

use crate::crypto::SecretKey;
use crate::intake::Intake;
use crate::intake::OutboxReceiver;
use crate::store::Store;
use crate::tx::Transaction;

/// Connections per peer at most: two nodes dialling each other at once briefly hold two.
const CONNECTIONS_PER_PEER: u32 = 2;
/// The shortest time between two announcements asked for at once.
const ANNOUNCE_AT_MOST_EVERY: Duration = Duration::from_millis(100);

/// Incoming connections still in their handshake (pre-shared key, Noise) at most.
const PENDING_INCOMING: u32 = 32;

/// The connection limits for a node of at most `max_peers` peers: established connections in
/// total (one per peer, as a connection usually is) and per peer, and incoming handshakes.
fn connection_limits(max_peers: u32) -> ConnectionLimits {
    ConnectionLimits::default()
        .with_max_established(Some(max_peers.max(1)))
        .with_max_established_per_peer(Some(CONNECTIONS_PER_PEER))
        .with_max_pending_incoming(Some(PENDING_INCOMING))
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

pub(super) enum Internal {
    /// Addresses the resolver found for bootstrap entries.
    Dial(Vec<Multiaddr>),
    /// The peers the whitelist allows, as read from the database.
    Allowed(HashSet<PeerId>),
}

/// The event loop that owns the swarm.
pub struct Network {
    pub(super) swarm: Swarm<Behaviour>,
    pub(super) topic: gossipsub::IdentTopic,
    pub(super) capacity_topic: gossipsub::IdentTopic,
    pub(super) capacity: Option<tokio::sync::watch::Receiver<Option<super::Capacity>>>,
    pub(super) announce_every: Duration,
    pub(super) intake: Intake,
    /// Where the whitelist is read from, in whitelist mode.
    pub(super) acl: Option<Store>,
    pub(super) whitelist_sync: Option<crate::acl::SyncStatus>,
    pub(super) outbox: mpsc::Receiver<Transaction>,
    pub(super) internal: mpsc::Receiver<Internal>,
    pub(super) internal_tx: mpsc::Sender<Internal>,
    pub(super) bootstrap: Vec<String>,
    pub(super) shared: Arc<Shared>,
    /// Published while nobody was subscribed: sent again when a peer subscribes.
    pub(super) backlog: VecDeque<Vec<u8>>,
    pub(super) backlog_bytes: usize,
    /// Whether the backlog has dropped transactions since a peer last listened.
    pub(super) backlog_overflowed: bool,
    /// Refused peers already warned about since the whitelist last changed.
    pub(super) warned: HashSet<PeerId>,
    pub(super) validating: JoinSet<super::gossip::Validated>,
    /// Forged or unreadable messages each peer forwarded (see `gossip::MAX_STRIKES`).
    pub(super) strikes: HashMap<PeerId, u32>,
    /// Peer transactions waiting for a validation slot, with their message sizes.
    pub(super) waiting: VecDeque<(gossipsub::MessageId, PeerId, Transaction, usize)>,
    pub(super) waiting_bytes: usize,
    /// Bootstrap addresses with a dial in flight or an outbound connection.
    pub(super) dialled: HashSet<Multiaddr>,
    pub(super) sync: SyncState,
    pub(super) sync_every: Duration,
    /// Announced transactions being fetched, by request.
    pub(super) fetches: HashMap<request_response::OutboundRequestId, super::gossip::Fetch>,
    /// The largest transaction accepted, in bytes.
    pub(super) max_message_bytes: usize,
    pub(super) _alive: Alive,
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
        let capacity_topic = gossipsub::IdentTopic::new(super::CAPACITY_TOPIC);
        // Large transactions travel as announcements (see `gossip.rs`): a gossip message is a
        // small transaction or an announcement. Frames up to `MAX_FRAME_BYTES` are read, so
        // that a message over `MAX_MESSAGE_BYTES` is judged (and counts against its forwarder).
        let gossip_config = gossipsub::ConfigBuilder::default()
            .max_transmit_size(super::gossip::MAX_FRAME_BYTES)
            .validation_mode(gossipsub::ValidationMode::Strict)
            .validate_messages()
            .message_id_fn(super::gossip::message_id)
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
                let sync = request_response::json::Behaviour::with_codec(
                    request_response::json::codec::Codec::default()
                        .set_request_size_maximum(4096)
                        .set_response_size_maximum(sync::response_max(config.max_message_bytes)),
                    [(sync::SYNC_PROTOCOL, request_response::ProtocolSupport::Full)],
                    request_response::Config::default().with_request_timeout(sync::REQUEST_TIMEOUT),
                );
                Ok(Behaviour {
                    allow: Toggle::from(allow),
                    blocked: allow_block_list::Behaviour::default(),
                    limits: connection_limits::Behaviour::new(connection_limits(config.max_peers)),
                    gossipsub,
                    sync,
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
        swarm
            .behaviour_mut()
            .gossipsub
            .subscribe(&capacity_topic)
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
            sync_every: config.sync_every,
            announce_every: config.announce_every,
            shared: shared.clone(),
            outbox_dropped: outbox.dropped.clone(),
        };
        let network = Network {
            swarm,
            topic,
            capacity_topic,
            capacity: config.capacity,
            announce_every: config.announce_every,
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
            strikes: HashMap::new(),
            waiting: VecDeque::new(),
            waiting_bytes: 0,
            dialled: HashSet::new(),
            sync: SyncState::default(),
            sync_every: config.sync_every,
            fetches: HashMap::new(),
            max_message_bytes: config.max_message_bytes,
        };
        Ok((network, view))
    }

    /// Drives the network until the process ends.
    pub async fn run(mut self) {
        let mut redial = tokio::time::interval(REDIAL_EVERY);
        redial.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut acl_refresh = tokio::time::interval(ACL_REFRESH_EVERY);
        acl_refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sync_tick = tokio::time::interval(self.sync_every);
        sync_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first announcement once the node has said what it offers (it does at start).
        let first = tokio::time::Instant::now() + self.announce_every.min(Duration::from_secs(1));
        let mut announce_tick = tokio::time::interval_at(first, self.announce_every);
        announce_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Announcements asked for at once (the holds changed) go out at most this often, so a
        // burst of placements is a few messages, not one per Run.
        let mut soon_tick = tokio::time::interval(ANNOUNCE_AT_MOST_EVERY);
        soon_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut announce_soon = false;
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm(event),
                Some(tx) = self.outbox.recv() => self.publish(super::gossip::gossip_message(&tx)),
                Some(internal) = self.internal.recv() => match internal {
                    Internal::Dial(addrs) => self.dial(addrs),
                    Internal::Allowed(peers) => self.allow(peers),
                },
                Some(done) = self.validating.join_next(), if !self.validating.is_empty() => {
                    if let Ok(v) = done {
                        self.swarm.behaviour_mut().gossipsub.report_message_validation_result(&v.id, &v.source, v.acceptance);
                        if v.forged {
                            self.strike(v.source, "forged transactions");
                        }
                    }
                    // A slot is free (even after a panicked validation): the next one starts.
                    if let Some((id, source, tx, bytes)) = self.waiting.pop_front() {
                        self.waiting_bytes -= bytes;
                        self.validate(id, source, tx);
                    }
                }
                Some(done) = self.sync.steps.join_next(), if !self.sync.steps.is_empty() => match done {
                    Ok((peer, step)) => self.on_step(peer, step),
                    Err(e) => warn!(target: "gevulot::p2p", error = %e, "a catch-up step failed"),
                },
                Some(done) = self.sync.serving.join_next(), if !self.sync.serving.is_empty() => {
                    if let Ok((channel, page)) = done {
                        self.respond(channel, page);
                    }
                }
                _ = sync_tick.tick() => {
                    self.forgive();
                    self.sync_all();
                }
                _ = announce_tick.tick() => self.announce_capacity(),
                () = self.shared.announce_now.notified() => announce_soon = true,
                _ = soon_tick.tick(), if announce_soon => {
                    announce_soon = false;
                    self.announce_capacity();
                }
                _ = redial.tick() => self.resolve_bootstrap(),
                _ = acl_refresh.tick(), if self.acl.is_some() => self.refresh_whitelist(),
                () = synced(self.whitelist_sync.as_ref()), if self.acl.is_some() => self.refresh_whitelist(),
            }
        }
    }

    /// Reads the whitelist off the event loop; [`Network::allow`] applies it.
    pub(super) fn refresh_whitelist(&self) {
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
    pub(super) fn allow(&mut self, peers: HashSet<PeerId>) {
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

    /// An incoming connection refused because the node holds as many as it may.
    pub(super) fn over_limit(&mut self, from: &Multiaddr) {
        let mut first = false;
        self.count(|c| {
            c.connections_over_limit += 1;
            first = c.connections_over_limit == 1;
        });
        if first {
            warn!(target: "gevulot::p2p", %from, "refused an incoming connection: the node holds as many peers as GEVULOT_P2P_MAX_PEERS allows (further refusals are counted in gevulot_p2p_connections_refused_total, not logged)");
        } else {
            debug!(target: "gevulot::p2p", %from, "refused an incoming connection: the peer limit is reached");
        }
    }

    /// A connection refused because the peer's key is not whitelisted (in either direction).
    pub(super) fn refused(&mut self, peer: Option<PeerId>, address: Option<&Multiaddr>) {
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
    pub(super) fn may_connect(&self, peer: &PeerId) -> bool {
        self.swarm
            .behaviour()
            .allow
            .as_ref()
            .is_none_or(|allow| allow.allowed_peers().contains(peer))
    }

    /// Forgets every bootstrap dial that has no connection: the next round dials it again.
    pub(super) fn forget_failed_dials(&mut self) {
        let connected: HashSet<String> = self
            .shared
            .peers
            .read()
            .map(|p| p.values().map(|peer| peer.address.clone()).collect())
            .unwrap_or_default();
        self.dialled
            .retain(|addr| connected.contains(&addr.to_string()));
    }

    pub(super) fn add_peer(&mut self, peer_id: PeerId, peer: Peer) {
        info!(target: "gevulot::p2p", peer = %peer_id, address = %peer.address, direction = peer.direction.as_str(), "peer connected");
        if let Ok(mut peers) = self.shared.peers.write() {
            peers.insert(peer_id, peer);
        }
    }

    pub(super) fn count(&self, change: impl FnOnce(&mut Counters)) {
        if let Ok(mut c) = self.shared.counters.write() {
            change(&mut c);
        }
    }

    /// Resolves the bootstrap entries off the event loop (DNS may be slow) and dials them.
    pub(super) fn resolve_bootstrap(&mut self) {
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

    pub(super) fn dial(&mut self, addrs: Vec<Multiaddr>) {
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

    pub(super) fn on_swarm(&mut self, event: SwarmEvent<BehaviourEvent>) {
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
                    sync: sync::PeerSync::default(),
                };
                // In whitelist mode only allowed peers get this far.
                self.add_peer(peer_id, peer);
                // Whatever it stored while this node was away (or before it joined).
                self.sync_with(peer_id);
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
                    self.strikes.remove(&peer_id);
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
            SwarmEvent::IncomingConnectionError {
                error: ListenError::Denied { cause },
                send_back_addr,
                peer_id,
                ..
            } if cause.downcast_ref::<Blocked>().is_some() => {
                debug!(target: "gevulot::p2p", peer = ?peer_id, from = %send_back_addr, "refused a penalised peer");
            }
            SwarmEvent::IncomingConnectionError {
                error: ListenError::Denied { cause },
                send_back_addr,
                ..
            } if cause.downcast_ref::<Exceeded>().is_some() => {
                self.over_limit(&send_back_addr);
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
            SwarmEvent::Behaviour(BehaviourEvent::Sync(event)) => self.on_sync(event),
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
}
