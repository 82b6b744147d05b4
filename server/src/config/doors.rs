//! The limits at the node's doors: the public front doors per client address (see
//! `http::limits`), and the number of P2P peers.

use clap::Args;

use crate::http::limits::DoorLimits;

#[derive(Args, Debug, Clone)]
pub struct DoorArgs {
    /// Requests a second per client address on JSON-RPC and `POST /api/v1/transactions` (bursts of
    /// twice as many); 0 = no limit. Behind a reverse proxy, limit there and set 0.
    #[arg(long, env = "GEVULOT_RATE_LIMIT", default_value_t = 200)]
    pub rate_limit: u32,

    /// Requests in flight at once per client address on the same routes; 0 = no limit.
    #[arg(long, env = "GEVULOT_CONCURRENCY_LIMIT", default_value_t = 64)]
    pub concurrency_limit: u32,

    /// Requests a second per client address on the file download server; 0 = no limit.
    #[arg(long, env = "GEVULOT_FILES_RATE_LIMIT", default_value_t = 100)]
    pub files_rate_limit: u32,

    /// Downloads in flight at once per client address (a download counts until its last byte
    /// is sent); 0 = no limit.
    #[arg(long, env = "GEVULOT_FILES_CONCURRENCY_LIMIT", default_value_t = 16)]
    pub files_concurrency_limit: u32,

    /// Peers connected at once at most; a peer over it is refused at its handshake (two
    /// connections per peer and 32 handshakes in progress at most, whatever this says).
    #[arg(long, env = "GEVULOT_P2P_MAX_PEERS", default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..))]
    pub p2p_max_peers: u32,
}

impl DoorArgs {
    pub fn submission(&self) -> DoorLimits {
        DoorLimits {
            per_second: self.rate_limit,
            concurrent: self.concurrency_limit,
        }
    }

    pub fn files(&self) -> DoorLimits {
        DoorLimits {
            per_second: self.files_rate_limit,
            concurrent: self.files_concurrency_limit,
        }
    }
}
