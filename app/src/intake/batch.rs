//! One writer that takes whatever is waiting, up to a bound, and handles it as one batch: the
//! shape of group commit, shared by the transactions' writer and the task phases' writer.
//!
//! A batch closes when it is full or when nothing more is waiting, once the tasks ready to run
//! have had their turn (those about to hand over an item join it: see `top_up`), so at low load
//! an item is handled alone at once (no timer adds latency) and under load one batch carries
//! many. Callers
//! wait for their own item's outcome; one who stops waiting misses only the answer. A batch
//! whose handling panics fails its own callers (nothing of it is acknowledged) and the writer
//! goes on with the next.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::FutureExt;
use tokio::sync::{mpsc, oneshot};

use crate::store::StoreError;

/// How a writer has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// Batches written (each one database commit).
    pub commits: u64,
    /// Items in them (transactions, new or already stored; or task phase changes).
    pub items: u64,
    /// Batches that failed and were retried one item at a time (or refused at once when the
    /// database could not be reached).
    pub failed_batches: u64,
}

#[derive(Debug, Default)]
struct Counters {
    commits: AtomicU64,
    items: AtomicU64,
    failed_batches: AtomicU64,
}

struct Item<I, O> {
    input: I,
    reply: oneshot::Sender<O>,
}

/// The submitting side of a batch writer.
pub(super) struct Batcher<I, O> {
    sender: mpsc::Sender<Item<I, O>>,
    counters: Arc<Counters>,
}

impl<I, O> Clone for Batcher<I, O> {
    fn clone(&self) -> Self {
        Self {
            sender: self.sender.clone(),
            counters: self.counters.clone(),
        }
    }
}

impl<I, O> std::fmt::Debug for Batcher<I, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher")
            .field(
                "queued",
                &(self.sender.max_capacity() - self.sender.capacity()),
            )
            .finish()
    }
}

impl<I: Send + 'static, O: Send + 'static> Batcher<I, O> {
    /// Starts the writer on the current runtime: `handle` gets up to `max` inputs in arrival
    /// order and returns one outcome per input, in the same order, and whether the batch as a
    /// whole failed (see [`settle`]). At most `4 * max` inputs
    /// wait; further callers wait for room. The writer ends when the last `Batcher` is dropped,
    /// after handling what was queued.
    pub(super) fn start<F, Fut>(max: usize, mut handle: F) -> Self
    where
        F: FnMut(Vec<I>) -> Fut + Send + 'static,
        Fut: Future<Output = (Vec<O>, bool)> + Send,
    {
        let (sender, mut receiver) = mpsc::channel::<Item<I, O>>(4 * max);
        let counters = Arc::new(Counters::default());
        let count = counters.clone();
        tokio::spawn(async move {
            let mut items = Vec::with_capacity(max);
            while receiver.recv_many(&mut items, max).await > 0 {
                top_up(&mut receiver, &mut items, max).await;
                let (inputs, replies): (Vec<I>, Vec<_>) =
                    items.drain(..).map(|i| (i.input, i.reply)).unzip();
                let n = inputs.len() as u64;
                let handled = std::panic::AssertUnwindSafe(handle(inputs))
                    .catch_unwind()
                    .await;
                let Ok((outcomes, failed)) = handled else {
                    // The callers' replies go unanswered: each is told its batch failed.
                    tracing::error!(target: "gevulot", items = n, "a batch writer panicked; its batch is refused and the writer goes on");
                    count.failed_batches.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                debug_assert_eq!(outcomes.len(), replies.len());
                count.commits.fetch_add(1, Ordering::Relaxed);
                count.items.fetch_add(n, Ordering::Relaxed);
                if failed && n > 1 {
                    count.failed_batches.fetch_add(1, Ordering::Relaxed);
                }
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(outcome);
                }
            }
        });
        Self { sender, counters }
    }

    pub(super) fn stats(&self) -> CommitStats {
        CommitStats {
            commits: self.counters.commits.load(Ordering::Relaxed),
            items: self.counters.items.load(Ordering::Relaxed),
            failed_batches: self.counters.failed_batches.load(Ordering::Relaxed),
        }
    }
}

/// How many times a writer lets the tasks ready to run go first while its batch grows.
const TOP_UPS: usize = 4;

/// Lets the tasks that are ready to run go first (submitters whose validation is about to hand
/// the writer more), then takes what they queued, while that brings more and the batch has
/// room: a writer that would otherwise commit the moment one item arrives gathers what is
/// already on its way under load, and at low load, with nothing else ready, loses only a turn
/// of the scheduler. No timer: it waits for ready work, never for time.
async fn top_up<I, O>(
    receiver: &mut mpsc::Receiver<Item<I, O>>,
    items: &mut Vec<Item<I, O>>,
    max: usize,
) {
    for _ in 0..TOP_UPS {
        if items.len() >= max {
            return;
        }
        tokio::task::yield_now().await;
        let before = items.len();
        while items.len() < max {
            match receiver.try_recv() {
                Ok(item) => items.push(item),
                Err(_) => break,
            }
        }
        if items.len() == before {
            return;
        }
    }
}

impl<I: Send + 'static, T: Send + 'static> Batcher<I, Result<T, StoreError>> {
    /// Hands `input` to the next batch and waits for its outcome. When the writer has stopped
    /// (the node is shutting down) or the batch's handling panicked, nothing of it was
    /// acknowledged and the caller is told so.
    pub(super) async fn call(&self, input: I) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        if self.sender.send(Item { input, reply }).await.is_err() {
            return Err(StoreError::Database(sqlx::Error::PoolClosed));
        }
        match answer.await {
            Ok(outcome) => outcome,
            Err(_) if self.sender.is_closed() => Err(StoreError::Database(sqlx::Error::PoolClosed)),
            Err(_) => Err(StoreError::BatchFailed),
        }
    }
}

/// The outcomes of a batch written in one database transaction (`written`), one per input.
/// When the database refused the batch (a constraint, a trigger, a busy SQLite file), each input
/// (by its index) is tried `alone`, so one that the database refuses never fails the others; when the database
/// cannot be reached, every input gets that error at once (each alone would wait to fail the
/// same way). The flag says whether the batch as a whole failed.
pub(super) async fn settle<T, F, Fut>(
    what: &str,
    len: usize,
    written: Result<Vec<T>, StoreError>,
    mut alone: F,
) -> (Vec<Result<T, StoreError>>, bool)
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    match written {
        Ok(outcomes) => (outcomes.into_iter().map(Ok).collect(), false),
        Err(e) if len == 1 => (vec![Err(e)], true),
        Err(e) if !refused_by_database(&e) => {
            tracing::warn!(target: "gevulot", error = %e, items = len, "a group commit of {what} failed: the database cannot be reached");
            let reason = e.to_string();
            let mut all = vec![Err(e)];
            all.extend((1..len).map(|_| Err(StoreError::Unavailable(reason.clone()))));
            (all, true)
        }
        Err(e) => {
            tracing::warn!(target: "gevulot", error = %e, items = len, "a group commit of {what} failed; writing them one at a time");
            let mut each = Vec::with_capacity(len);
            for i in 0..len {
                each.push(alone(i).await);
            }
            (each, true)
        }
    }
}

/// Whether a failed batch was refused by a database that answered, so that trying each item
/// alone may store all but one; rather than a database that cannot be reached.
fn refused_by_database(e: &StoreError) -> bool {
    matches!(e, StoreError::Database(sqlx::Error::Database(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_batch_fails_its_callers_and_the_writer_goes_on() {
        let writer = Batcher::start(8, |batch: Vec<u32>| async move {
            assert!(!batch.contains(&0), "a bug met while writing");
            (batch.into_iter().map(Ok).collect(), false)
        });
        let failed = writer.call(0).await;
        assert!(matches!(failed, Err(StoreError::BatchFailed)), "{failed:?}");
        assert_eq!(writer.call(7).await.expect("the next batch is written"), 7);
        let stats = writer.stats();
        assert_eq!((stats.commits, stats.failed_batches), (1, 1), "{stats:?}");
    }

    /// An item that a task ready to run is about to hand over joins the batch the writer is
    /// closing: on this one-thread runtime the second submitter is woken only after the writer
    /// (so the writer runs first), and still shares its commit.
    #[tokio::test]
    async fn a_writer_lets_ready_submitters_join_its_batch() {
        let sizes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = sizes.clone();
        let writer = Batcher::start(8, move |batch: Vec<u32>| {
            seen.lock().expect("sizes").push(batch.len());
            async move { (batch.into_iter().map(Ok).collect(), false) }
        });
        let go = Arc::new(tokio::sync::Notify::new());
        let second = tokio::spawn({
            let (writer, go) = (writer.clone(), go.clone());
            async move {
                go.notified().await;
                writer.call(2).await
            }
        });
        let first = tokio::spawn({
            let writer = writer.clone();
            async move {
                let call = writer.call(1);
                tokio::pin!(call);
                // Handed over (the writer is woken), then the second submitter is woken.
                assert!(futures::poll!(&mut call).is_pending());
                go.notify_one();
                call.await
            }
        });
        assert_eq!(first.await.expect("first").expect("stored"), 1);
        assert_eq!(second.await.expect("second").expect("stored"), 2);
        assert_eq!(*sizes.lock().expect("sizes"), [2], "one batch of both");
    }
}
