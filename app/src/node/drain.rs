//! Draining and stopping: an operator (or `SIGTERM`) drains the node so that no new task starts
//! while the running ones finish; a node that stops after its grace period stops what is left,
//! and the next start resumes it. An operator's drain is kept in the database and outlives a
//! restart; a stop's is not.

use std::time::{Duration, Instant, SystemTime};

use tracing::warn;

use super::Node;
use crate::store::epoch_ms;

/// Whether the node drains, since when, and what still runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DrainState {
    /// When draining began; `None` while the node takes work.
    pub since: Option<SystemTime>,
    /// Tasks holding resources (booting, running, submitting).
    pub running: usize,
    /// Tasks waiting for resources, which do not start while draining.
    pub waiting: usize,
}

impl DrainState {
    pub fn draining(&self) -> bool {
        self.since.is_some()
    }
}

/// How a stop went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stopped {
    /// Tasks that finished during the grace period.
    pub finished: usize,
    /// Tasks stopped on a VM when the grace period ended; the next start runs them again.
    pub interrupted: usize,
}

impl Node {
    /// Drains on an operator's behalf: no waiting task is given resources from now on; running
    /// tasks go on. New transactions are still accepted; with a network, placement gives this
    /// node no new Run and hands the Runs it holds that are not on a VM to other nodes (see
    /// `placement`). Draining twice keeps the first time. The drain outlives a restart (the node
    /// starts drained until [`Node::resume`]); if the database cannot keep it, the node drains
    /// all the same, for this run of the process, and says so in its log; draining again tries
    /// once more. Returns the state after the change, and whether this call changed it.
    pub async fn drain(&self) -> (DrainState, bool) {
        let (state, changed) = self.drain_for_now(SystemTime::now());
        // Also when nothing changed here: a drain the database could not keep the first time,
        // or the drain of a stop in progress, which an operator's drain makes lasting.
        let since = state.since.map(epoch_ms);
        if let Err(e) = self.store().set_drained(since).await {
            warn!(target: "gevulot", error = %e, "the drain holds, but cannot be kept in the database: a restart would take work again (drain again to retry)");
        }
        (state, changed)
    }

    /// Takes work again: waiting tasks start as resources allow, now and after a restart.
    /// Returns the state after the change, and whether this call changed it.
    pub async fn resume(&self) -> (DrainState, bool) {
        let changed = self.drain_since().take().is_some();
        if let Some(p) = &self.parts().pipeline {
            p.set_draining(false);
        }
        // Also when nothing changed here: a drain kept while the database could not forget it.
        if let Err(e) = self.store().set_drained(None).await {
            warn!(target: "gevulot", error = %e, "resumed, but the database still holds the drain: a restart would start drained");
        }
        (self.drain_state(), changed)
    }

    /// Drains this run of the process (since `at`, unless it already drains): what an
    /// operator's drain, a kept drain at start and a stop share.
    fn drain_for_now(&self, at: SystemTime) -> (DrainState, bool) {
        let changed = {
            let mut since = self.drain_since();
            let changed = since.is_none();
            since.get_or_insert(at);
            changed
        };
        if let Some(p) = &self.parts().pipeline {
            p.set_draining(true);
        }
        (self.drain_state(), changed)
    }

    /// Drains again at start if an operator drained the node before it stopped.
    pub(super) async fn restore_drain(&self) {
        match self.store().drained_since().await {
            Ok(Some(ms)) => {
                let at =
                    SystemTime::UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
                self.drain_for_now(at);
                warn!(target: "gevulot", "starting drained: an operator drained this node before it stopped; no task starts until it is resumed (the console's Resume, or DELETE /api/v1/node/drain)");
            }
            Ok(None) => {}
            Err(e) => {
                warn!(target: "gevulot", error = %e, "cannot read whether an operator drained this node; starting undrained");
            }
        }
    }

    pub fn drain_state(&self) -> DrainState {
        let usage = self.usage();
        DrainState {
            since: *self.drain_since(),
            running: usage.map_or(0, |u| u.running),
            waiting: usage.map_or(0, |u| u.waiting),
        }
    }

    /// Drains, waits up to `grace` for the running tasks to finish, then stops the rest (their
    /// VMs are killed and they go back to `queued`, that attempt not counting, so the next start
    /// runs them again). Call before [`Node::shutdown`].
    pub async fn stop(&self, grace: Duration) -> Stopped {
        // Only for this run of the process: the next start takes work again (unless an
        // operator drained the node).
        let at_start = self.drain_for_now(SystemTime::now()).0.running;
        let until = Instant::now() + grace;
        let mut running = at_start;
        while running > 0 && Instant::now() < until {
            let left = until.saturating_duration_since(Instant::now());
            tokio::time::sleep(left.min(Duration::from_millis(100))).await;
            running = self.drain_state().running;
        }
        let interrupted = match &self.parts().pipeline {
            Some(p) => p.stop_tasks().await,
            None => 0,
        };
        Stopped {
            finished: at_start.saturating_sub(running),
            interrupted,
        }
    }

    fn drain_since(&self) -> std::sync::MutexGuard<'_, Option<SystemTime>> {
        self.inner
            .draining
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
