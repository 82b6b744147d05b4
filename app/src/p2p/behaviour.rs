//! The one composed libp2p behaviour: who may connect and how many, gossip, catch-up,
//! identify, discovery.

use libp2p::allow_block_list::{self, AllowedPeers, BlockedPeers};
use libp2p::connection_limits;
use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{gossipsub, identify, kad, request_response};

use super::sync::{SyncRequest, SyncResponse};

#[derive(NetworkBehaviour)]
pub(super) struct Behaviour {
    /// In whitelist mode, the peers allowed to connect; absent (everyone) otherwise.
    pub(super) allow: Toggle<allow_block_list::Behaviour<AllowedPeers>>,
    /// Peers refused for a while for misbehaving (see `sync::PENALTY`).
    pub(super) blocked: allow_block_list::Behaviour<BlockedPeers>,
    /// Connections at once: in total, per peer, and handshakes in progress.
    pub(super) limits: connection_limits::Behaviour,
    pub(super) gossipsub: gossipsub::Behaviour,
    /// Catch-up: pages of transactions stored after a cursor.
    pub(super) sync: request_response::json::Behaviour<SyncRequest, SyncResponse>,
    pub(super) identify: identify::Behaviour,
    pub(super) kad: kad::Behaviour<kad::store::MemoryStore>,
}
