//! The bounded queue between the intake and the P2P network: newly stored transactions that did
//! not come from a peer wait here to be gossiped.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;
use tracing::warn;

use crate::tx::Transaction;

/// Transactions waiting in the outbox for the event loop.
pub const OUTBOX_CAPACITY: usize = 1024;

/// Where the intake puts newly stored transactions for gossip.
#[derive(Clone, Debug)]
pub struct Outbox {
    sender: mpsc::Sender<Transaction>,
    dropped: Arc<AtomicU64>,
}

impl Outbox {
    /// An outbox of [`OUTBOX_CAPACITY`] and its receiving end (for the P2P network's event loop).
    pub fn new() -> (Self, OutboxReceiver) {
        Self::with_capacity(OUTBOX_CAPACITY)
    }

    /// An outbox holding at most `capacity` transactions (at least 1).
    pub fn with_capacity(capacity: usize) -> (Self, OutboxReceiver) {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
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
    pub(crate) receiver: mpsc::Receiver<Transaction>,
    pub(crate) dropped: Arc<AtomicU64>,
}
