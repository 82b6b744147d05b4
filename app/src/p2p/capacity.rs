//! Capacity announcements: every node says, at a steady interval on its own gossip topic, what
//! it offers (CPUs, memory, GPUs and their models, what is free now, its queue, whether it
//! executes or drains, its download URL). Gossipsub signs each message with the node's key and
//! checks the signature, so an announcement names its author. Each node keeps the latest
//! announcement of every peer; an executor is live while its announcements keep coming.
//!
//! An announcement also lists the Runs its node holds (see `placement`): a hold is a lease that
//! lasts as long as the announcements keep coming, so a node that stops or leaves loses its
//! holds within `LIVE_INTERVALS` intervals. A Run that ended on its holder (failed, cancelled)
//! stays listed with its ending for a while, so every node learns it.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use libp2p::{PeerId, gossipsub};
use serde::{Deserialize, Serialize};
use tracing::debug;

use super::Network;
use super::identity::peer_key;

/// The gossip topic of capacity announcements.
pub const CAPACITY_TOPIC: &str = "gevulot/capacity/1";
/// An announcement older than this many intervals means its node is gone.
const LIVE_INTERVALS: u32 = 3;
/// Announcements kept at most (one per peer).
const MAX_KNOWN: usize = 1024;
/// The largest announcement accepted, in bytes (room for [`MAX_HOLDS`] holds).
pub(super) const MAX_ANNOUNCEMENT_BYTES: usize = 96 * 1024;
/// Runs one node holds at most (ended ones included); a node holding this many takes no more.
pub const MAX_HOLDS: usize = 512;

/// A Run a node holds: it executes it, or executed it and says how it ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    /// The Run's hash (hex).
    pub run: String,
    /// When the node took it (ms since the Unix epoch).
    pub since_ms: i64,
    /// The peer id of the node it took the Run over from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// How the Run ended on this node, when it did (`failed` or `cancelled`, and why).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<Ended>,
}

/// How a held Run ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ended {
    pub outcome: String,
    pub reason: String,
}

/// What a node offers, as it announces it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capacity {
    /// Whether the node runs programs at all (`GEVULOT_NODE_NO_EXECUTION` says no).
    pub execution: bool,
    /// Whether it drains: it starts no new task.
    pub draining: bool,
    pub cpus: u64,
    pub mem_mib: u64,
    /// The models of the GPUs programs may get (in its pool, ready, not reserved), one entry per
    /// GPU.
    pub gpus: Vec<String>,
    pub free_cpus: u64,
    pub free_mem_mib: u64,
    pub free_gpus: u64,
    /// Tasks holding resources, and waiting for them.
    pub running: u64,
    pub waiting: u64,
    /// Where its files are downloaded from.
    pub download_url: String,
    pub version: String,
    /// When the node announced it (ms since the Unix epoch; also makes every announcement a new
    /// gossip message).
    #[serde(default)]
    pub at_ms: i64,
    /// The Runs it holds (see [`Hold`]).
    #[serde(default)]
    pub holds: Vec<Hold>,
}

impl Capacity {
    /// `executing` (takes work), `draining` (finishes what runs, starts nothing), or `relaying`
    /// (never executes).
    pub fn state(&self) -> &'static str {
        match (self.execution, self.draining) {
            (false, _) => "relaying",
            (true, true) => "draining",
            (true, false) => "executing",
        }
    }
}

/// A node's latest announcement, as this node received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Executor {
    pub peer_id: String,
    /// The node key (hex) that signed it.
    pub public_key: Option<String>,
    /// This node's own announcement.
    pub local: bool,
    pub capacity: Capacity,
    pub announced_at: SystemTime,
}

/// The latest announcement of every node heard from (this one included).
#[derive(Debug, Default)]
pub(super) struct Executors {
    known: HashMap<PeerId, Executor>,
}

impl Executors {
    pub(super) fn insert(&mut self, peer: PeerId, executor: Executor) {
        if self.known.len() >= MAX_KNOWN && !self.known.contains_key(&peer) {
            return;
        }
        self.known.insert(peer, executor);
    }

    /// The nodes heard from within `LIVE_INTERVALS` announcement intervals, by peer id.
    pub(super) fn live(&self, every: Duration) -> Vec<Executor> {
        let horizon = every * LIVE_INTERVALS;
        let now = SystemTime::now();
        let mut live: Vec<Executor> = self
            .known
            .values()
            .filter(|e| now.duration_since(e.announced_at).unwrap_or_default() <= horizon)
            .cloned()
            .collect();
        live.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
        live
    }

    /// Forgets nodes silent for much longer than the live horizon.
    pub(super) fn prune(&mut self, every: Duration) {
        let horizon = every * LIVE_INTERVALS * 10;
        let now = SystemTime::now();
        self.known
            .retain(|_, e| now.duration_since(e.announced_at).unwrap_or_default() <= horizon);
    }
}

impl Network {
    /// Publishes this node's capacity (and keeps it in the view).
    pub(super) fn announce_capacity(&mut self) {
        let Some(mut capacity) = self.capacity.as_ref().and_then(|rx| rx.borrow().clone()) else {
            return;
        };
        capacity.at_ms = crate::store::now_ms();
        if let Ok(holds) = self.shared.holds.read() {
            capacity.holds = holds.iter().take(MAX_HOLDS).cloned().collect();
        }
        let me = *self.swarm.local_peer_id();
        let own = Executor {
            peer_id: me.to_string(),
            public_key: peer_key(&me).map(|k| k.to_hex()),
            local: true,
            capacity: capacity.clone(),
            announced_at: SystemTime::now(),
        };
        if let Ok(mut executors) = self.shared.executors.write() {
            executors.insert(me, own);
            executors.prune(self.announce_every);
        }
        let Ok(data) = serde_json::to_vec(&capacity) else {
            return;
        };
        match self
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(self.capacity_topic.clone(), data)
        {
            Ok(_) | Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => {}
            Err(e) => {
                debug!(target: "gevulot::p2p", error = %e, "cannot announce this node's capacity")
            }
        }
    }

    /// A peer's announcement: kept when it parses and names its author, forwarded once kept.
    pub(super) fn on_capacity(
        &mut self,
        id: &gossipsub::MessageId,
        via: &PeerId,
        message: &gossipsub::Message,
    ) {
        let author = message.source;
        let parsed = serde_json::from_slice::<Capacity>(&message.data);
        let acceptance = match (author, parsed) {
            (Some(author), Ok(capacity))
                if message.data.len() <= MAX_ANNOUNCEMENT_BYTES
                    && author != *self.swarm.local_peer_id()
                    && self.may_connect(&author) =>
            {
                let executor = Executor {
                    peer_id: author.to_string(),
                    public_key: peer_key(&author).map(|k| k.to_hex()),
                    local: false,
                    capacity,
                    announced_at: SystemTime::now(),
                };
                if let Ok(mut executors) = self.shared.executors.write() {
                    executors.insert(author, executor);
                }
                gossipsub::MessageAcceptance::Accept
            }
            _ => {
                debug!(target: "gevulot::p2p", peer = %via, "refused a capacity announcement that is not one");
                gossipsub::MessageAcceptance::Reject
            }
        };
        self.swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(id, via, acceptance);
    }
}
