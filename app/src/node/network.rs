//! This node in the peer network: who it is there, its peers, who may join.

use crate::acl::LastSync;
use crate::p2p::{Counters, Peer};

use super::{AclPolicy, Node, NodeError};

/// The network as this node sees it now.
#[derive(Clone, Debug)]
pub struct NetworkView {
    pub peer_id: String,
    pub listen_addr: std::net::SocketAddr,
    pub advertised_addr: Option<std::net::SocketAddr>,
    pub psk_fingerprint: String,
    pub bootstrap: Vec<String>,
    pub peers: Vec<Peer>,
    pub acl: AclView,
    pub counters: Counters,
    /// How often every peer is asked for what it stored since the last round.
    pub sync_every: std::time::Duration,
    /// The largest catch-up lag over the connected peers.
    pub sync_lag: i64,
    /// Peers refused for misbehaving, and until when.
    pub penalised: Vec<(String, std::time::SystemTime)>,
    /// Every node whose capacity announcements keep coming, this one included.
    pub executors: Vec<crate::p2p::Executor>,
    /// How often nodes announce their capacity.
    pub announce_every: std::time::Duration,
    /// How Runs are placed: the redundancy, the open Runs by state, what this node did.
    pub placement: Option<PlacementSummary>,
}

/// Placement as this node sees it.
#[derive(Clone, Debug)]
pub struct PlacementSummary {
    pub redundancy: usize,
    pub waiting: usize,
    pub placed: usize,
    pub counters: crate::placement::Counters,
}

/// Who may join and submit.
#[derive(Clone, Debug)]
pub struct AclView {
    pub policy: AclPolicy,
    pub whitelisted_keys: i64,
    /// The published whitelist this node follows (any password redacted).
    pub url: Option<String>,
    pub last_sync: Option<LastSync>,
}

impl Node {
    /// The peer network; [`NodeError::P2pUnavailable`] on a node built without one.
    pub async fn network(&self) -> Result<NetworkView, NodeError> {
        let Some(p2p) = self.p2p() else {
            return Err(NodeError::P2pUnavailable);
        };
        Ok(NetworkView {
            peer_id: p2p.peer_id(),
            listen_addr: p2p.listen_addr(),
            advertised_addr: p2p.advertised(),
            psk_fingerprint: p2p.psk_fingerprint().to_string(),
            bootstrap: p2p.bootstrap().to_vec(),
            peers: p2p.peers(),
            acl: self.acl().await?,
            counters: p2p.counters(),
            sync_every: p2p.sync_every(),
            sync_lag: p2p.sync_lag(),
            penalised: p2p.penalised(),
            executors: p2p.executors(),
            announce_every: p2p.announce_every(),
            placement: self.placement().map(|view| {
                let (waiting, placed) = view.open_counts();
                PlacementSummary {
                    redundancy: view.redundancy(),
                    waiting,
                    placed,
                    counters: view.counters(),
                }
            }),
        })
    }

    /// The whitelist's state.
    pub async fn acl(&self) -> Result<AclView, NodeError> {
        let sync = self.parts().acl_sync.as_ref();
        Ok(AclView {
            policy: self.acl_policy(),
            whitelisted_keys: self.store().acl_count().await?,
            url: sync.map(|(url, _)| url.clone()),
            last_sync: sync.and_then(|(_, status)| status.last()),
        })
    }
}
