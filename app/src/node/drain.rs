//! Draining and stopping: an operator (or `SIGTERM`) drains the node so that no new task starts
//! while the running ones finish; a node that stops after its grace period stops what is left,
//! and the next start resumes it.

use std::time::{Duration, Instant, SystemTime};

use super::Node;

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
    /// Drains: no waiting task is given resources from now on; running tasks go on. New
    /// transactions are still accepted; with a network, placement gives this node no new Run and
    /// hands the Runs it holds that are not on a VM to other nodes (see `placement`). Draining
    /// twice keeps the first time. Returns the state after the change, and whether this call changed it.
    pub fn drain(&self) -> (DrainState, bool) {
        let changed = {
            let mut since = self.drain_since();
            let changed = since.is_none();
            since.get_or_insert_with(SystemTime::now);
            changed
        };
        if let Some(p) = &self.parts().pipeline {
            p.set_draining(true);
        }
        (self.drain_state(), changed)
    }

    /// Takes work again: waiting tasks start as resources allow. Returns the state after the
    /// change, and whether this call changed it.
    pub fn resume(&self) -> (DrainState, bool) {
        let changed = self.drain_since().take().is_some();
        if let Some(p) = &self.parts().pipeline {
            p.set_draining(false);
        }
        (self.drain_state(), changed)
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
        let at_start = self.drain().0.running;
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
