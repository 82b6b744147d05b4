//! Disk space for tasks: the floor new work waits above (`GEVULOT_MIN_FREE_MB`), and what a task
//! does when the data directory's filesystem fills under it: it waits, in phase
//! `waiting_for_resources` with the reason, until the space it needs is free, then tries again.
//! Nothing half-written is ever served meanwhile: downloads, inputs and outputs appear under their
//! final names only once complete.

use std::time::Duration;

use tokio::sync::watch;
use tracing::{info, warn};

use crate::data_dir::Space;
use crate::model::{Phase, Task};

use super::driver::Failure;
use super::{Execute, Pipeline, switched};

/// How often a task waiting for disk space looks again.
const SPACE_CHECK_EVERY: Duration = Duration::from_secs(5);
/// Less free than this when an attempt ends, and the filesystem counts as full.
const FULL_BELOW: u64 = 1 << 20;

impl<E: Execute> Pipeline<E> {
    /// Waits while the data filesystem is under its floor (`GEVULOT_MIN_FREE_MB`), in phase
    /// `waiting_for_resources` with the reason, looking again every few seconds; the task's next
    /// phase follows as usual. Nothing is started that would fail half-way.
    pub(super) async fn wait_for_space(
        &self,
        task: &mut Task,
        cancel: &mut watch::Receiver<bool>,
    ) -> Result<(), Failure> {
        let config = &self.inner.config;
        let mut said = false;
        while let Some(reason) = config.data_dir.below_floor(config.min_free_bytes) {
            if !said {
                warn!(target: "gevulot", task = task.id, "{reason}");
                self.set_phase(task, Phase::WaitingForResources, Some(&reason))
                    .await?;
                said = true;
            }
            tokio::select! {
                () = tokio::time::sleep(SPACE_CHECK_EVERY) => {}
                () = switched(cancel) => return Err(Failure::Cancelled),
            }
        }
        Ok(())
    }

    /// An attempt's failure as [`Failure::NoSpace`] when the filesystem was full as it ended
    /// (`at_end`, read before its VM's directory was removed): the attempt's writes are gone now,
    /// and the task waits until the disk has gained at least what the attempt used.
    pub(super) fn full_disk(&self, failure: Failure, at_end: Option<Space>) -> Failure {
        let reason = match &failure {
            Failure::Fatal(r) | Failure::Retryable { reason: r, .. } => r,
            _ => return failure,
        };
        let Some(at_end) = at_end.filter(|s| s.free_bytes < FULL_BELOW) else {
            return failure;
        };
        let now = self
            .inner
            .config
            .data_dir
            .space()
            .map_or(at_end.free_bytes, |s| s.free_bytes);
        let used = now.saturating_sub(at_end.free_bytes).max(FULL_BELOW);
        Failure::NoSpace {
            reason: format!(
                "the data directory's filesystem was full when the attempt ended ({} KiB free): {reason}",
                at_end.free_bytes >> 10
            ),
            need: Some(now.saturating_add(used)),
        }
    }

    /// After [`Failure::NoSpace`]: waits until `need` bytes (and at least 1 MiB more than now)
    /// are free above the floor, saying why in the task's phase.
    pub(super) async fn wait_for_room(
        &self,
        task: &mut Task,
        reason: &str,
        need: Option<u64>,
        cancel: &mut watch::Receiver<bool>,
    ) -> Result<(), Failure> {
        let config = &self.inner.config;
        let free = || config.data_dir.space().map(|s| s.free_bytes).unwrap_or(0);
        let target = need
            .unwrap_or(0)
            .max(free().saturating_add(FULL_BELOW))
            .saturating_add(config.min_free_bytes);
        let note = format!(
            "{reason}; waiting until {} MiB are free, then trying again",
            target.div_ceil(1 << 20)
        );
        warn!(target: "gevulot", task = task.id, "{note}");
        self.set_phase(task, Phase::WaitingForResources, Some(&note))
            .await?;
        while free() < target {
            tokio::select! {
                () = tokio::time::sleep(SPACE_CHECK_EVERY) => {}
                () = switched(cancel) => return Err(Failure::Cancelled),
            }
        }
        info!(target: "gevulot", task = task.id, "space is free again; the task tries again");
        Ok(())
    }
}
