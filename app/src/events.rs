//! The node's event bus: what changed, for live views (JSON-RPC subscriptions, server-sent
//! events, the console). Bounded: a subscriber that falls behind misses events and is told so
//! (`RecvError::Lagged`), so it re-reads the current state instead of the node buffering without
//! limit.

use tokio::sync::broadcast;

use crate::model::{Phase, Source};
use crate::tx::{Hash, Kind};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A transaction was stored for the first time.
    TransactionStored {
        hash: Hash,
        kind: Kind,
        parent: Option<Hash>,
        /// Where it came from: a Run is executed only by the node a client gave it to.
        source: Source,
    },
    /// A task of transaction `tx` entered `phase`.
    TaskChanged {
        tx: Hash,
        task_id: i64,
        phase: Phase,
        /// Why it failed, when it ended `failed` or `timed_out`.
        failure: Option<crate::model::FailureReason>,
    },
}

impl Event {
    /// Whether this event changes what `hash`'s status shows: the transaction itself, its tasks,
    /// or a new child (a Proof of a Run, a Verification of a Proof, a Cancel).
    pub fn concerns(&self, hash: &Hash) -> bool {
        match self {
            Event::TransactionStored {
                hash: h, parent, ..
            } => h == hash || parent.as_ref() == Some(hash),
            Event::TaskChanged { tx, .. } => tx == hash,
        }
    }
}

/// Events kept for slow subscribers before they lag.
pub const CAPACITY: usize = 1024;

#[derive(Clone, Debug)]
pub struct Events(broadcast::Sender<Event>);

impl Default for Events {
    fn default() -> Self {
        Self(broadcast::channel(CAPACITY).0)
    }
}

impl Events {
    pub fn publish(&self, event: Event) {
        // No subscribers is fine: nobody is watching.
        let _ = self.0.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.0.subscribe()
    }
}
