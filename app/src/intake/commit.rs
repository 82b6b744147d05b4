//! Group commit: concurrent submissions are written by one writer per database, many to a
//! commit.
//!
//! Submitters validate in parallel (each on its own task) and hand the writer only what passed.
//! The writer takes whatever is waiting, up to [`MAX_BATCH`], and stores it in one database
//! transaction: a batch closes when it is full or when nothing more is waiting, so at low load a
//! submission is committed alone at once (no timer adds latency) and under load one commit
//! carries many. A submitter waits for the commit that holds its transaction: an acknowledgement
//! still means durably stored. When a batch fails, nothing of it was stored. If the database
//! refused it, each of its transactions is then tried alone, so one that the database refuses
//! never fails the others and each submitter gets its own outcome; if the database cannot be
//! reached, every submitter of the batch is told so at once. Events and gossip for the new transactions go out after
//! their commit, from the writer, whether or not their submitter is still waiting.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{mpsc, oneshot};

use super::Outbox;
use crate::events::{Event, Events};
use crate::model::Source;
use crate::store::{Inserted, Store, StoreError};
use crate::tx::Transaction;

/// The most transactions in one commit.
pub const MAX_BATCH: usize = 256;
/// Submissions waiting for the writer; further submitters wait for room.
const QUEUE: usize = 4 * MAX_BATCH;

/// How the writer has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// Batches committed (each one database commit).
    pub commits: u64,
    /// Transactions in them (new or already stored).
    pub transactions: u64,
    /// Batches that failed and were retried one transaction at a time.
    pub failed_batches: u64,
}

#[derive(Debug, Default)]
struct Counters {
    commits: AtomicU64,
    transactions: AtomicU64,
    failed_batches: AtomicU64,
}

struct Pending {
    tx: Transaction,
    source: Source,
    reply: oneshot::Sender<Result<Inserted, StoreError>>,
}

/// The submitting side of the writer.
#[derive(Clone, Debug)]
pub(super) struct Committer {
    sender: mpsc::Sender<Pending>,
    counters: Arc<Counters>,
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
    pub(super) fn start(store: Store, announce: Announce) -> Self {
        let (sender, receiver) = mpsc::channel(QUEUE);
        let counters = Arc::new(Counters::default());
        tokio::spawn(write(store, announce, receiver, counters.clone()));
        Self { sender, counters }
    }

    /// Stores `tx` in the next commit and waits for that commit.
    pub(super) async fn insert(
        &self,
        tx: &Transaction,
        source: Source,
    ) -> Result<Inserted, StoreError> {
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            tx: tx.clone(),
            source,
            reply,
        };
        // The writer stops only when the node shuts down, as the pool closes.
        let gone = || StoreError::Database(sqlx::Error::PoolClosed);
        self.sender.send(pending).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    pub(super) fn stats(&self) -> CommitStats {
        CommitStats {
            commits: self.counters.commits.load(Ordering::Relaxed),
            transactions: self.counters.transactions.load(Ordering::Relaxed),
            failed_batches: self.counters.failed_batches.load(Ordering::Relaxed),
        }
    }
}

/// Whether a failed batch was refused by a database that answered (a constraint, a trigger, a
/// busy SQLite file), so that trying each transaction alone may store all but one; rather than a
/// database that cannot be reached, where every attempt would wait to fail the same way.
fn refused_by_database(e: &StoreError) -> bool {
    matches!(e, StoreError::Database(sqlx::Error::Database(_)))
}

async fn write(
    store: Store,
    announce: Announce,
    mut receiver: mpsc::Receiver<Pending>,
    counters: Arc<Counters>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let items: Vec<(&Transaction, Source)> = batch.iter().map(|p| (&p.tx, p.source)).collect();
        let outcomes = match store.insert_from(&items).await {
            Ok(outcomes) => outcomes.into_iter().map(Ok).collect(),
            Err(e) if batch.len() == 1 => vec![Err(e)],
            // Unreachable, not refusing: each alone would wait to fail the same way.
            Err(e) if !refused_by_database(&e) => {
                counters.failed_batches.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(target: "gevulot", error = %e, transactions = batch.len(), "a group commit failed: the database cannot be reached");
                let reason = e.to_string();
                let mut all = vec![Err(e)];
                all.extend((1..batch.len()).map(|_| Err(StoreError::Unavailable(reason.clone()))));
                all
            }
            Err(e) => {
                counters.failed_batches.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(target: "gevulot", error = %e, transactions = batch.len(), "a group commit failed; storing its transactions one at a time");
                let mut alone = Vec::with_capacity(batch.len());
                for p in &batch {
                    alone.push(store.insert_transaction(&p.tx, p.source).await);
                }
                alone
            }
        };
        counters.commits.fetch_add(1, Ordering::Relaxed);
        counters
            .transactions
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        for (pending, outcome) in batch.drain(..).zip(outcomes) {
            if matches!(outcome, Ok(Inserted::New(_))) {
                announce.stored(&pending.tx, pending.source);
            }
            // A submitter that stopped waiting (its client went away) misses only the answer.
            let _ = pending.reply.send(outcome);
        }
    }
}
