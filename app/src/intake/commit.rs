//! Group commit: concurrent submissions are written by one writer per database, many to a
//! commit.
//!
//! Submitters validate in parallel (each on its own task) and hand the writer only what passed.
//! The writer takes whatever is waiting, up to [`MAX_BATCH`], and stores it in one database
//! transaction: a batch closes when it is full or when nothing more is waiting (the tasks ready
//! to run having had their turn to add to it), so at low load a submission is committed alone
//! at once (no timer adds latency) and under load one commit carries many. A submitter waits
//! for the commit that holds its transaction: an acknowledgement still means durably stored.
//!
//! A batch the database refused stored nothing: each of its transactions is then tried alone,
//! so one that the database refuses never fails the others and each submitter gets its own
//! outcome. When the database cannot be reached, every submitter of the batch is told so at
//! once; if the connection was lost during the commit the database may have stored the batch
//! all the same, and the writer finds out later (`unknown.rs`). Events and gossip for the new
//! transactions go out after their commit, from the writer, whether or not their submitter is
//! still waiting.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::Outbox;
use super::batch::{Batcher, CommitStats, settle};
use super::unknown::{Unresolved, outcome_unknown};
use crate::events::{Event, Events};
use crate::model::Source;
use crate::store::{Inserted, Store, StoreError};
use crate::tx::Transaction;

/// The most transactions in one commit.
pub const MAX_BATCH: usize = 256;

/// The submitting side of the writer.
#[derive(Clone, Debug)]
pub(super) struct Committer {
    writer: Batcher<(Transaction, Source), Result<Inserted, StoreError>>,
}

/// Who hears of a newly stored transaction: the node's events and the gossip outbox.
#[derive(Clone, Debug)]
pub(super) struct Announce {
    pub(super) events: Events,
    pub(super) gossip: Option<Outbox>,
    /// New transactions that can change a transaction tree: those with a parent, and Runs.
    pub(super) tree_changes: Arc<AtomicU64>,
}

impl Announce {
    pub(super) fn stored(&self, tx: &Transaction, source: Source) {
        if tx.payload.parent().is_some() || tx.kind() == crate::tx::Kind::Run {
            self.tree_changes.fetch_add(1, Ordering::SeqCst);
        }
        self.events.publish(Event::TransactionStored {
            hash: tx.hash,
            kind: tx.kind(),
            parent: tx.payload.parent(),
            source,
        });
        // What a peer sent is forwarded by gossip itself once accepted.
        if source != Source::P2p
            && let Some(outbox) = &self.gossip
        {
            outbox.push(tx);
        }
    }
}

impl Committer {
    /// Starts the writer for `store` on the current runtime. It ends when the last committer
    /// is dropped, after storing what was queued.
    pub(super) fn start(store: Store, unresolved: Arc<Unresolved>) -> Self {
        let writer = Batcher::start(MAX_BATCH, move |batch| {
            write(store.clone(), unresolved.clone(), batch)
        });
        Self { writer }
    }

    /// Stores `tx` in the next commit and waits for that commit.
    pub(super) async fn insert(
        &self,
        tx: &Transaction,
        source: Source,
    ) -> Result<Inserted, StoreError> {
        self.writer.call((tx.clone(), source)).await
    }

    pub(super) fn stats(&self) -> CommitStats {
        self.writer.stats()
    }
}

/// Stores one batch in one commit (see the module's comment), announces what is new, keeps what
/// a failure left unknown (see `unknown.rs`; what earlier failures left unknown is settled
/// first), and returns each transaction's outcome and whether the batch failed.
async fn write(
    store: Store,
    unresolved: Arc<Unresolved>,
    batch: Vec<(Transaction, Source)>,
) -> (Vec<Result<Inserted, StoreError>>, bool) {
    unresolved.before_write().await;
    let items: Vec<(&Transaction, Source)> = batch.iter().map(|(tx, s)| (tx, *s)).collect();
    let written = store.insert_from(&items).await;
    let (outcomes, failed) = settle("transactions", batch.len(), written, |i| {
        store.insert_transaction(&batch[i].0, batch[i].1)
    })
    .await;
    let mut new = Vec::new();
    let mut unknown = Vec::new();
    for (&(tx, source), outcome) in items.iter().zip(outcomes.iter()) {
        match outcome {
            Ok(Inserted::New(_)) => new.push((tx, source)),
            Err(e) if outcome_unknown(e) => unknown.push((tx.clone(), source)),
            Ok(Inserted::AlreadyPresent) | Err(_) => {}
        }
    }
    unresolved.written(&new, unknown).await;
    (outcomes, failed)
}
