//! Transactions whose commit has an unknown outcome.
//!
//! When the connection fails while a commit is under way (the server crashed, the network cut
//! the answer off) the database may have stored the transactions although the node never heard
//! it say so. Their submitters are told that nothing was acknowledged and to retry, and a retry
//! finds them already stored, which is acknowledged without an announcement: the events and the
//! gossip that a new transaction gets would never go out, so the pipeline and the peers would
//! learn of it only from their next pass over what is stored.
//!
//! So the intake keeps such transactions here, bounded, and as soon as the database answers
//! again (before its next write, or from a watcher that retries on its own while the node is
//! idle) reads which of them it holds: those are announced, once; the rest were never stored
//! and are forgotten (their submitters were told so, and a retry is new).
//!
//! A task phase change whose commit went unanswered is settled by its caller instead
//! ([`phase_stored`]): it waits for the answer, and only its task's driver moves the task.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::Mutex;

use super::commit::Announce;
use crate::model::{Phase, Source, Task};
use crate::store::{Store, StoreError};
use crate::tx::{Hash, Transaction};

/// The most transactions kept at once; beyond it further ones are not announced if stored
/// (their storage is unaffected) and are counted as dropped.
pub const UNKNOWN_CAPACITY: usize = 4096;

/// How long a write waits for the database to settle earlier unknown outcomes first.
const BEFORE_WRITE: Duration = Duration::from_secs(1);
/// How long [`phase_stored`] asks a database that does not answer.
const PHASE_ASKING: Duration = Duration::from_secs(6);

/// The watcher's first wait before it asks the database, and its longest.
const FIRST_WAIT: Duration = Duration::from_millis(50);
const LONGEST_WAIT: Duration = Duration::from_secs(5);

/// What became of commits whose outcome was unknown, in total.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UnknownOutcomes {
    /// Transactions found stored and then announced.
    pub stored: u64,
    /// Transactions found not stored (and forgotten).
    pub not_stored: u64,
    /// Transactions not kept because [`UNKNOWN_CAPACITY`] were already waiting.
    pub dropped: u64,
    /// Transactions waiting for the database to answer now.
    pub waiting: u64,
}

/// The transactions of failed commits that the database may hold, until it says.
#[derive(Debug)]
pub(super) struct Unresolved {
    store: Store,
    announce: Announce,
    pending: Mutex<HashMap<Hash, (Transaction, Source)>>,
    /// `pending`'s size, read without the lock on every write.
    waiting: AtomicUsize,
    /// Whether a watcher task is running.
    watching: AtomicBool,
    stored: AtomicU64,
    not_stored: AtomicU64,
    dropped: AtomicU64,
}

/// Whether `e`, the failure of a write, leaves its outcome unknown: anything but a refusal by a
/// database that answered (which stored nothing).
pub(super) fn outcome_unknown(e: &StoreError) -> bool {
    !matches!(e, StoreError::Database(sqlx::Error::Database(_)))
}

impl Unresolved {
    pub(super) fn new(store: Store, announce: Announce) -> Arc<Self> {
        Arc::new(Self {
            store,
            announce,
            pending: Mutex::default(),
            waiting: AtomicUsize::new(0),
            watching: AtomicBool::new(false),
            stored: AtomicU64::new(0),
            not_stored: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        })
    }

    pub(super) fn counts(&self) -> UnknownOutcomes {
        UnknownOutcomes {
            stored: self.stored.load(Ordering::Relaxed),
            not_stored: self.not_stored.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            waiting: self.waiting.load(Ordering::Relaxed) as u64,
        }
    }

    /// Keeps `items` until the database says whether it holds them, and makes sure a watcher
    /// asks it (on the current runtime).
    async fn keep(self: &Arc<Self>, items: Vec<(Transaction, Source)>) {
        if items.is_empty() {
            return;
        }
        let mut pending = self.pending.lock().await;
        let mut dropped = 0;
        for (tx, source) in items {
            if pending.len() >= UNKNOWN_CAPACITY && !pending.contains_key(&tx.hash) {
                dropped += 1;
                continue;
            }
            pending.insert(tx.hash, (tx, source));
        }
        self.waiting.store(pending.len(), Ordering::Release);
        drop(pending);
        if dropped > 0 {
            self.dropped.fetch_add(dropped, Ordering::Relaxed);
            tracing::warn!(target: "gevulot", dropped, "transactions whose commit has an unknown outcome will not be announced if they were stored: {UNKNOWN_CAPACITY} such transactions are waiting already");
        }
        if !self.watching.swap(true, Ordering::AcqRel) {
            tokio::spawn(watch(Arc::downgrade(self)));
        }
    }

    /// After a write: announces the transactions it stored anew (forgetting any kept from an
    /// earlier commit, which did not store them after all) and keeps those whose outcome it left
    /// unknown.
    pub(super) async fn written(
        self: &Arc<Self>,
        new: &[(&Transaction, Source)],
        unknown: Vec<(Transaction, Source)>,
    ) {
        for (tx, source) in new {
            self.announce.stored(tx, *source);
        }
        if !new.is_empty() && self.waiting.load(Ordering::Acquire) > 0 {
            let mut pending = self.pending.lock().await;
            for (tx, _) in new {
                if pending.remove(&tx.hash).is_some() {
                    self.not_stored.fetch_add(1, Ordering::Relaxed);
                }
            }
            self.waiting.store(pending.len(), Ordering::Release);
        }
        self.keep(unknown).await;
    }

    /// Settles what earlier failures left unknown before a write, so that a retry in it finds
    /// its transaction announced already if it was stored (or new if it was not). When the
    /// database does not answer within [`BEFORE_WRITE`] the write goes ahead (it will likely
    /// fail too) and the watcher goes on asking: a retry may then be acknowledged before its
    /// transaction is announced, never instead.
    pub(super) async fn before_write(&self) {
        match tokio::time::timeout(BEFORE_WRITE, self.resolve()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::debug!(target: "gevulot", error = %e, "the outcome of an unanswered commit is still unknown");
            }
            Err(_) => {
                tracing::debug!(target: "gevulot", "the outcome of an unanswered commit is still unknown: the database is slow to answer");
            }
        }
    }

    /// Asks the database which kept transactions it holds, announces those and forgets the
    /// rest. Costs nothing while none are kept. When the database does not answer, all stay
    /// kept and the error is returned.
    async fn resolve(&self) -> Result<(), StoreError> {
        if self.waiting.load(Ordering::Acquire) == 0 {
            return Ok(());
        }
        let mut pending = self.pending.lock().await;
        if pending.is_empty() {
            return Ok(());
        }
        let hashes: Vec<Hash> = pending.keys().copied().collect();
        for hash in self.store.known_transactions(&hashes).await? {
            if let Some((tx, source)) = pending.remove(&hash) {
                tracing::info!(target: "gevulot", tx = %tx.hash, "a transaction whose commit went unanswered was stored; announcing it now");
                self.announce.stored(&tx, source);
                self.stored.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.not_stored
            .fetch_add(pending.len() as u64, Ordering::Relaxed);
        pending.clear();
        self.waiting.store(0, Ordering::Release);
        Ok(())
    }
}

/// Asks the database, with growing waits, until nothing is kept; ends with the intake.
async fn watch(unresolved: Weak<Unresolved>) {
    let mut wait = FIRST_WAIT;
    loop {
        tokio::time::sleep(wait).await;
        let Some(u) = unresolved.upgrade() else {
            return;
        };
        if let Err(e) = u.resolve().await {
            tracing::debug!(target: "gevulot", error = %e, "the outcome of an unanswered commit is still unknown: the database does not answer");
            wait = (wait * 2).min(LONGEST_WAIT);
            continue;
        }
        u.watching.store(false, Ordering::Release);
        // Kept meanwhile by a `keep` that saw this watcher still running: carry on.
        if u.waiting.load(Ordering::Acquire) == 0 || u.watching.swap(true, Ordering::AcqRel) {
            return;
        }
        wait = FIRST_WAIT;
    }
}

/// Whether a change of `task` (as its caller last knew it) to `phase`, whose commit went
/// unanswered, was stored: the task is now in `phase`, having been in another. Asks, with
/// growing waits, while the database does not answer, for at most [`PHASE_ASKING`] in all;
/// false when it never did or the task is not in `phase`.
pub(super) async fn phase_stored(store: &Store, task: &Task, phase: Phase) -> bool {
    if task.phase == phase {
        return false;
    }
    let ask = async {
        let mut wait = FIRST_WAIT * 2;
        loop {
            tokio::time::sleep(wait).await;
            match store.tasks_for_tx(&task.tx).await {
                Ok(tasks) => return tasks.iter().any(|t| t.id == task.id && t.phase == phase),
                Err(_) => wait = (wait * 2).min(LONGEST_WAIT),
            }
        }
    };
    tokio::time::timeout(PHASE_ASKING, ask)
        .await
        .unwrap_or(false)
}
