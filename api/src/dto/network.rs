//! The node, its resources and its peer network.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::*;

/// What this node is.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NodeInfo {
    pub version: String,
    /// The node's public key (hex): the author of its Proof and Verification transactions.
    pub public_key: String,
    /// `postgres` or `sqlite`.
    pub database: String,
    pub database_version: String,
    pub started_at: String,
    pub uptime_seconds: u64,
    /// False when the node accepts and relays but never executes.
    pub execution: bool,
    /// Base URL of this node's file download server.
    pub file_base_url: String,
    pub transactions: i64,
}

/// The answer to a submission.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Submitted {
    /// The transaction hash (hex).
    pub hash: String,
    /// False when the node already had this transaction (nothing changed).
    pub new: bool,
}

/// What this node offers to programs.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NodeResources {
    pub cpus: u64,
    pub mem_mib: u64,
    /// PCI addresses of the GPUs configured for programs (`GEVULOT_GPU_DEVICES`).
    pub gpu_devices: Vec<String>,
    /// False when the node never executes (`GEVULOT_NODE_NO_EXECUTION`).
    pub execution: bool,
    /// What is free now and how many tasks run and wait (absent when the node never executes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<ResourceUsage>,
}

/// This node in the peer network: who it is there, who it is connected to now, who may join,
/// and what crossed the network since it started.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PeerNetwork {
    /// The node's libp2p peer id, derived from its node key.
    pub peer_id: String,
    /// Where the node listens for peers (`GEVULOT_P2P_LISTEN_ADDR`).
    pub listen_addr: String,
    /// The address given to peers behind NAT (`GEVULOT_P2P_ADVERTISED_LISTEN_ADDR`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advertised_addr: Option<String>,
    /// A fingerprint of the pre-shared key: nodes of one network show the same one. It reveals
    /// nothing of the passphrase.
    pub psk_fingerprint: String,
    /// The peers this node joins through (`GEVULOT_P2P_DISCOVERY_ADDR`), dialled again while
    /// not connected.
    pub bootstrap: Vec<String>,
    /// Connected (and, in whitelist mode, admitted) peers, oldest connection first.
    pub peers: Vec<PeerInfo>,
    pub acl: AclState,
    pub messages: P2pMessages,
    pub sync: SyncState,
    /// Peers refused for a while for misbehaving (a forged transaction or garbage in a
    /// catch-up page).
    pub penalised: Vec<PenalisedPeer>,
    /// Seconds between capacity announcements (`GEVULOT_P2P_ANNOUNCE_INTERVAL_SECS`); a node
    /// silent for three intervals is left out of `nodes`.
    pub announce_interval_seconds: u64,
    /// Every node whose capacity announcements keep coming, this one included, by peer id.
    pub nodes: Vec<NodeCapacity>,
    /// How Runs are placed on the network's nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<PlacementInfo>,
}

/// How Runs are placed: each on one node that can fit it (or `redundancy` nodes), taken over by
/// another when its node goes.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PlacementInfo {
    /// Nodes that prove each step (`GEVULOT_PLACEMENT_REDUNDANCY`).
    pub redundancy: u64,
    /// Open Runs no node holds yet, and open Runs held.
    pub waiting_runs: u64,
    pub placed_runs: u64,
    /// Since this node started: Runs it took when first placed, took over from a node that
    /// went or drains, let go (another node held them first, or this node drains); steps it
    /// stopped because another node proved them first; Runs no node could fit.
    pub placed: u64,
    pub taken_over: u64,
    pub released: u64,
    pub duplicates_stopped: u64,
    pub unplaceable: u64,
}

impl From<&app::node::PlacementSummary> for PlacementInfo {
    fn from(p: &app::node::PlacementSummary) -> Self {
        Self {
            redundancy: p.redundancy as u64,
            waiting_runs: p.waiting as u64,
            placed_runs: p.placed as u64,
            placed: p.counters.placed,
            taken_over: p.counters.taken_over,
            released: p.counters.released,
            duplicates_stopped: p.counters.duplicates_stopped,
            unplaceable: p.counters.unplaceable,
        }
    }
}

/// What a node of the network offers, as it last announced (signed by its node key).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NodeCapacity {
    pub peer_id: String,
    /// The node key (hex) that signed the announcement.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// True for this node.
    pub local: bool,
    /// Whether the node runs programs at all.
    pub execution: bool,
    /// Whether it drains (starts no new task).
    pub draining: bool,
    pub cpus: u64,
    pub mem_mib: u64,
    /// The models of the GPUs programs may get (in its pool, ready, not reserved), one entry
    /// per GPU.
    pub gpus: Vec<String>,
    pub free_cpus: u64,
    pub free_mem_mib: u64,
    pub free_gpus: u64,
    /// Tasks holding resources, and waiting for them.
    pub running_tasks: u64,
    pub waiting_tasks: u64,
    /// Where its files are downloaded from.
    pub download_url: String,
    pub version: String,
    /// When this node received the announcement (RFC 3339).
    pub announced_at: String,
    /// The Runs it holds (executes) now.
    pub runs_held: u64,
}

impl From<&app::p2p::Executor> for NodeCapacity {
    fn from(e: &app::p2p::Executor) -> Self {
        let c = &e.capacity;
        Self {
            peer_id: e.peer_id.clone(),
            public_key: e.public_key.clone(),
            local: e.local,
            execution: c.execution,
            draining: c.draining,
            cpus: c.cpus,
            mem_mib: c.mem_mib,
            gpus: c.gpus.clone(),
            free_cpus: c.free_cpus,
            free_mem_mib: c.free_mem_mib,
            free_gpus: c.free_gpus,
            running_tasks: c.running,
            waiting_tasks: c.waiting,
            download_url: c.download_url.clone(),
            version: c.version.clone(),
            announced_at: system_rfc3339(e.announced_at),
            runs_held: c.holds.iter().filter(|h| h.ended.is_none()).count() as u64,
        }
    }
}

/// The catch-up: how this node pulls what its peers stored and gossip did not bring.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SyncState {
    /// Seconds between rounds with every connected peer (`GEVULOT_P2P_SYNC_INTERVAL_SECS`); a
    /// peer that connects gets a round at once.
    pub interval_seconds: u64,
    /// Transactions stored from peers' pages since start.
    pub pulled: u64,
    /// Rounds that reached the peer's newest transaction, and rounds that ended early.
    pub rounds: u64,
    pub failed_rounds: u64,
    /// Transactions in peers' pages this node does not accept (skipped).
    pub skipped: u64,
    /// The largest lag over the connected peers (see `PeerSyncInfo::lag`).
    pub lag: i64,
}

/// A peer refused for a while.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PenalisedPeer {
    pub peer_id: String,
    /// When it may connect again (RFC 3339).
    pub until: String,
}

/// The catch-up with one peer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PeerSyncInfo {
    /// The peer's sequence number up to which this node holds everything it stored.
    pub cursor: i64,
    /// The peer's newest sequence number when it last answered.
    pub head: i64,
    /// `head - cursor`: at most this many of the peer's transactions are not here yet.
    pub lag: i64,
    /// Transactions stored from this peer's pages since it connected.
    pub pulled: i64,
    /// When the last round with the peer ended (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_round: Option<String>,
    /// Why the last round ended early.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A connected peer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PeerInfo {
    pub peer_id: String,
    /// The peer's node key (hex, uncompressed): the author of its Proofs and Verifications.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// The remote address of the connection.
    pub address: String,
    /// `inbound` (the peer dialled this node) or `outbound`.
    pub direction: String,
    pub connected_at: String,
    /// What the peer runs, once it said so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
    /// Where the peer says it listens.
    pub listen_addresses: Vec<String>,
    pub sync: PeerSyncInfo,
}

/// Who may author transactions and connect as a peer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AclState {
    /// `open` (anyone with a valid signature or the pre-shared key) or `whitelist` (only keys on
    /// the whitelist, besides this node's own).
    pub mode: String,
    pub whitelisted_keys: i64,
    /// The published list the whitelist follows (any password redacted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The latest sync with that list; absent before the first one ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_sync: Option<AclSync>,
}

/// The latest whitelist sync.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AclSync {
    pub at: String,
    pub succeeded: bool,
    /// Keys added and removed by it.
    pub added: usize,
    pub removed: usize,
    /// Lines of the list that are not keys (1-based), skipped.
    pub bad_lines: Vec<usize>,
    /// Why nothing changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Transaction messages over the peer network since the node started.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct P2pMessages {
    /// Transactions this node published.
    pub published: u64,
    /// Transactions from peers that were accepted (stored, or already stored) and forwarded.
    pub accepted: u64,
    /// Messages from peers that were not valid transactions or not allowed: not stored, not
    /// forwarded.
    pub rejected: u64,
    /// Messages not judged: while overloaded (the validation queue is full) or while the
    /// database failed.
    pub ignored: u64,
    /// Transactions that could not be handed to the network.
    pub dropped: u64,
    /// Connections refused because the peer's key is not on the whitelist.
    pub peers_refused: u64,
    /// Large transactions (over 64 KiB) announced by hash and fetched from the announcing peer.
    pub fetched: u64,
}

/// What the node's tasks hold and wait for now.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ResourceUsage {
    pub free_cpus: u64,
    pub free_mem_mib: u64,
    /// GPUs of the pool that no task holds.
    pub free_gpus: usize,
    /// Tasks holding resources (booting, running or submitting).
    pub running_tasks: usize,
    /// Tasks waiting for resources.
    pub waiting_tasks: usize,
}

impl From<&app::node::NodeInfo> for NodeInfo {
    fn from(i: &app::node::NodeInfo) -> Self {
        Self {
            version: i.version.to_string(),
            public_key: i.public_key.to_hex(),
            database: i.database.to_string(),
            database_version: i.database_version.clone(),
            started_at: system_rfc3339(i.started_at),
            uptime_seconds: i.started_at.elapsed().map_or(0, |d| d.as_secs()),
            execution: i.execution,
            file_base_url: i.file_base_url.clone(),
            transactions: i.transactions,
        }
    }
}

impl NodeResources {
    pub fn new(r: &app::node::Resources, usage: Option<app::pipeline::Usage>) -> Self {
        Self {
            cpus: r.cpus,
            mem_mib: r.mem_mib,
            gpu_devices: r.gpu_devices.clone(),
            execution: r.execution,
            usage: usage.map(|u| ResourceUsage {
                free_cpus: u.free_cpus,
                free_mem_mib: u.free_mem_mib,
                free_gpus: u.free_gpus,
                running_tasks: u.running,
                waiting_tasks: u.waiting,
            }),
        }
    }
}

impl From<&app::p2p::Peer> for PeerInfo {
    fn from(p: &app::p2p::Peer) -> Self {
        Self {
            peer_id: p.peer_id.clone(),
            public_key: p.public_key.clone(),
            address: p.address.clone(),
            direction: p.direction.as_str().to_string(),
            connected_at: system_rfc3339(p.connected_at),
            agent_version: p.agent_version.clone(),
            listen_addresses: p.listen_addresses.clone(),
            sync: PeerSyncInfo {
                cursor: p.sync.cursor,
                head: p.sync.head,
                lag: p.sync.lag(),
                pulled: p.sync.pulled,
                last_round: p.sync.last_round.map(system_rfc3339),
                error: p.sync.error.clone(),
            },
        }
    }
}

impl From<&app::node::NetworkView> for PeerNetwork {
    fn from(n: &app::node::NetworkView) -> Self {
        let c = &n.counters;
        Self {
            peer_id: n.peer_id.clone(),
            listen_addr: n.listen_addr.to_string(),
            advertised_addr: n.advertised_addr.map(|a| a.to_string()),
            psk_fingerprint: n.psk_fingerprint.clone(),
            bootstrap: n.bootstrap.clone(),
            peers: n.peers.iter().map(PeerInfo::from).collect(),
            acl: AclState {
                mode: n.acl.policy.as_str().to_string(),
                whitelisted_keys: n.acl.whitelisted_keys,
                url: n.acl.url.clone(),
                last_sync: n.acl.last_sync.as_ref().map(|last| {
                    let (synced, error) = match &last.outcome {
                        Ok(s) => (s.clone(), None),
                        Err(e) => (Default::default(), Some(e.clone())),
                    };
                    AclSync {
                        at: system_rfc3339(last.at),
                        succeeded: error.is_none(),
                        added: synced.added,
                        removed: synced.removed,
                        bad_lines: synced.bad_lines,
                        error,
                    }
                }),
            },
            messages: P2pMessages {
                published: c.published,
                accepted: c.accepted,
                rejected: c.rejected,
                ignored: c.ignored,
                dropped: c.dropped,
                peers_refused: c.peers_refused,
                fetched: c.fetched,
            },
            sync: SyncState {
                interval_seconds: n.sync_every.as_secs(),
                pulled: c.sync.pulled,
                rounds: c.sync.rounds,
                failed_rounds: c.sync.failed_rounds,
                skipped: c.sync.skipped,
                lag: n.sync_lag,
            },
            penalised: n
                .penalised
                .iter()
                .map(|(peer_id, until)| PenalisedPeer {
                    peer_id: peer_id.clone(),
                    until: system_rfc3339(*until),
                })
                .collect(),
            announce_interval_seconds: n.announce_every.as_secs(),
            nodes: n.executors.iter().map(NodeCapacity::from).collect(),
            placement: n.placement.as_ref().map(PlacementInfo::from),
        }
    }
}

/// Whether the node drains: while it does, no new task starts (running ones finish) and its
/// readiness says `draining`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Drain {
    pub draining: bool,
    /// When draining began (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// Tasks still running (booting, running or submitting).
    pub running_tasks: usize,
    /// Tasks waiting for resources; while draining they do not start.
    pub waiting_tasks: usize,
}

impl From<app::node::DrainState> for Drain {
    fn from(d: app::node::DrainState) -> Self {
        Self {
            draining: d.draining(),
            since: d.since.map(super::system_rfc3339),
            running_tasks: d.running,
            waiting_tasks: d.waiting,
        }
    }
}

/// The node's effective configuration, its version and its data directory (operators).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NodeSettings {
    pub version: String,
    pub data_directory: String,
    /// What each area of the data directory holds (walked at most once a minute).
    pub data: Vec<DataArea>,
    /// Free and total bytes of the data directory's filesystem, when it can be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filesystem: Option<FilesystemSpace>,
    /// Every directive of `gevulot run`, by name.
    pub settings: Vec<SettingValue>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DataArea {
    /// `content`, `images`, `txfiles`, `tmp`, `vms`, `log` or `database`.
    pub area: String,
    pub path: String,
    pub bytes: u64,
    pub files: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FilesystemSpace {
    pub size_bytes: u64,
    pub free_bytes: u64,
    /// `GEVULOT_MIN_FREE_MB` in bytes: below it no download or VM starts.
    pub min_free_bytes: u64,
}

/// One directive and the value in effect.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SettingValue {
    /// The environment variable (`GEVULOT_*`), or the flag when it has none.
    pub name: String,
    /// The value in effect; a secret shows only as `set`; absent when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// `default`, `environment`, `command line` or `unset`.
    pub source: String,
    pub secret: bool,
    pub help: String,
}

impl From<&app::data_dir::AreaUse> for DataArea {
    fn from(a: &app::data_dir::AreaUse) -> Self {
        Self {
            area: a.area.to_string(),
            path: a.path.display().to_string(),
            bytes: a.bytes,
            files: a.files,
        }
    }
}

/// One entry of the audit log.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditEntryInfo {
    pub id: i64,
    /// When (RFC 3339).
    pub at: String,
    /// The user, or `cli` (a command on the host), `signal`, `whitelist sync`, `anonymous` (a
    /// refused sign-in).
    pub actor: String,
    /// The client's address, when the action came over the network.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// `sign_in`, `sign_in_failed`, `sign_out`, `setup`, `user_created`, `role_changed`,
    /// `password_changed`, `token_created`, `token_deleted`, `upload`, `deploy`, `run`, `cancel`,
    /// `gpu_pool`, `whitelist`, `drain`, `resume`, `webhook_created` or `webhook_deleted`.
    pub action: String,
    /// What it acted on: a username, a hash, a GPU address, a key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// `ok` or `refused`.
    pub outcome: String,
}

/// A page of the audit log, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    pub items: Vec<AuditEntryInfo>,
    /// Pass as `cursor` for the next (older) page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

impl From<&app::model::AuditEntry> for AuditEntryInfo {
    fn from(e: &app::model::AuditEntry) -> Self {
        Self {
            id: e.id,
            at: super::rfc3339(e.at_ms),
            actor: e.entry.actor.name.clone(),
            address: e.entry.actor.address.clone(),
            action: e.entry.action.as_str().to_string(),
            target: e.entry.target.clone(),
            detail: e.entry.detail.clone(),
            outcome: if e.entry.ok { "ok" } else { "refused" }.to_string(),
        }
    }
}

/// Which entries of the audit log to list.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// The `next_cursor` of the previous page.
    #[param(pattern = r"^[0-9]{0,18}$")]
    pub cursor: Option<String>,
    /// Page size, 1 to 1000 (default 50).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// Only this action, e.g. `sign_in_failed`.
    #[param(value_type = Option<AuditActionName>, inline)]
    pub action: Option<String>,
}
