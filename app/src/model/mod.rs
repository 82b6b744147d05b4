//! The node's domain types: what it stores and what its core API ([`crate::node::Node`]) returns.
//! They know nothing of SQL (the [`crate::store`] maps them to rows) nor of any wire format.

mod audit;
mod files;
mod program;
mod task;
mod webhook;

pub use audit::{Actor, AuditAction, AuditEntry, NewAuditEntry};
pub use files::OutputFile;
pub use program::{Program, ProgramRole};
pub use task::{FailureReason, NewTask, Phase, PhaseChange, PhaseChangeOf, Task, TaskKind};
pub use webhook::{Delivery, DeliveryState, Webhook, WebhookFilter};

use crate::tx::{Hash, Kind, Transaction};

/// How a transaction reached this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// JSON-RPC.
    Rpc,
    /// The REST API.
    Rest,
    /// The web console.
    Console,
    /// A peer over P2P.
    P2p,
    /// Produced by this node (Proof, Verification).
    Node,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Rpc => "rpc",
            Source::Rest => "rest",
            Source::Console => "console",
            Source::P2p => "p2p",
            Source::Node => "node",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            Source::Rpc,
            Source::Rest,
            Source::Console,
            Source::P2p,
            Source::Node,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// A transaction as stored, with what the node knows about its arrival.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredTransaction {
    pub tx: Transaction,
    /// Insertion order; the keyset for pagination.
    pub seq: i64,
    pub source: Source,
    /// Milliseconds since the Unix epoch.
    pub received_at_ms: i64,
}

/// Filters for listing transactions; all present filters must match.
#[derive(Clone, Debug, Default)]
pub struct TxFilter {
    pub kind: Option<Kind>,
    /// Lowercase hex of the author's public key (a key no transaction has matches nothing).
    pub author: Option<String>,
    /// Lowercase hex prefix of the hash (at most 64 characters).
    pub hash_prefix: Option<String>,
    pub parent: Option<Hash>,
    /// Only transactions with a task in this phase.
    pub phase: Option<Phase>,
    /// Received at or after (ms since the epoch).
    pub since_ms: Option<i64>,
    /// Received before (ms since the epoch).
    pub until_ms: Option<i64>,
}

/// One page of a newest-first listing. `next` is the keyset to pass as `before` for the next page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<i64>,
}
