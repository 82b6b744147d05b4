//! How a Run ends for placement, as each node learns it: a Cancel, its last step's results,
//! a task of this node that failed, or another node's announcement that it failed there. Each
//! ending is recorded in `run_endings`, and the Run is no longer placed.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::Instant;

use tracing::warn;

use crate::model::Phase;
use crate::p2p::{Ended, Executor};
use crate::store::StoreError;
use crate::tx::{Hash, Payload};

use super::Placer;

impl Placer {
    /// A Cancel (by the Run's author or a node of the network, as the intake admits) ends the
    /// Run everywhere (the pipeline stops its tasks).
    pub(super) async fn cancelled(&mut self, run: Hash) -> Result<(), StoreError> {
        if let Some(cancel) = self.store.first_cancel(&run).await? {
            let reason = format!("cancelled by the Cancel transaction {cancel}");
            self.store
                .end_run(&run, "cancelled", Some(&reason), None)
                .await?;
            self.forget(&run);
            self.publish_holds();
        }
        Ok(())
    }

    /// A Proof or Verification: another node's stops this node's duplicate step (one result per
    /// step), and the Run ends once its last step has its results.
    pub(super) async fn result_stored(
        &mut self,
        hash: Hash,
        source: crate::model::Source,
    ) -> Result<(), StoreError> {
        let Some(stored) = self.store.get_transaction(&hash).await? else {
            return Ok(());
        };
        if source == crate::model::Source::P2p
            && let Some(pipeline) = &self.pipeline
            && pipeline.peer_result(&stored.tx).await?
        {
            self.shared
                .counters
                .duplicates_stopped
                .fetch_add(1, Ordering::Relaxed);
        }
        let run = match &stored.tx.payload {
            Payload::Proof { parent, .. } => *parent,
            Payload::Verification { parent, .. } => match self.store.get_transaction(parent).await?
            {
                Some(proof) => match proof.tx.payload {
                    Payload::Proof { parent, .. } => parent,
                    _ => return Ok(()),
                },
                None => return Ok(()),
            },
            _ => return Ok(()),
        };
        if self.open.contains_key(&run) || self.holds.contains_key(&run) {
            self.check_done(run).await?;
        }
        Ok(())
    }

    /// Ends `run` when its last step has a result from `redundancy` different nodes.
    pub(super) async fn check_done(&mut self, run: Hash) -> Result<(), StoreError> {
        let Some(stored) = self.store.get_transaction(&run).await? else {
            return Ok(());
        };
        let Payload::Run { workflow } = &stored.tx.payload else {
            return Ok(());
        };
        let Some(last) = workflow.steps.last() else {
            return Ok(());
        };
        let results = self.store.results_of_run(&run, None).await?;
        let authors: BTreeSet<_> = results
            .iter()
            .filter(|r| match &r.tx.payload {
                Payload::Proof { prover, .. } => *prover == last.program,
                Payload::Verification { verifier, .. } => *verifier == last.program,
                _ => false,
            })
            .map(|r| r.tx.author)
            .collect();
        if authors.len() >= self.redundancy {
            self.store.end_run(&run, "done", None, None).await?;
            self.forget(&run);
            self.publish_holds();
        }
        Ok(())
    }

    /// A task of this node failed for good: the Run ended here, and every node learns it from
    /// this node's announcements (while it holds the Run).
    pub(super) async fn failed_here(&mut self, run: Hash) -> Result<(), StoreError> {
        let tasks = self.store.tasks_for_tx(&run).await?;
        let Some(failed) = tasks
            .iter()
            .find(|t| matches!(t.phase, Phase::Failed | Phase::TimedOut))
        else {
            return Ok(());
        };
        let reason = format!(
            "step {} {}: {}",
            failed.step_index + 1,
            if failed.phase == Phase::TimedOut {
                "timed out"
            } else {
                "failed"
            },
            failed.error.as_deref().unwrap_or("no reason recorded")
        );
        self.store
            .end_run(&run, "failed", Some(&reason), Some(&self.me))
            .await?;
        if let Some(mine) = self.holds.remove(&run) {
            let mut hold = mine.hold;
            hold.ended = Some(Ended {
                outcome: "failed".into(),
                reason,
            });
            self.ended.push_back((hold, Instant::now()));
        }
        self.forget(&run);
        self.publish_holds();
        Ok(())
    }

    /// Records the Runs that ended on other nodes (failed there), as their announcements say.
    pub(super) async fn learn_endings(&mut self, live: &[Executor]) -> bool {
        let mut changed = false;
        for e in live.iter().filter(|e| !e.local) {
            for hold in &e.capacity.holds {
                let (Some(ended), Some(run)) = (&hold.ended, Hash::from_hex(&hold.run)) else {
                    continue;
                };
                if !self.open.contains_key(&run) {
                    continue;
                }
                if let Err(e) = self
                    .store
                    .end_run(&run, &ended.outcome, Some(&ended.reason), Some(&e.peer_id))
                    .await
                {
                    warn!(target: "gevulot", run = %run, error = %e, "cannot record how the Run ended");
                    continue;
                }
                if self.holds.contains_key(&run) {
                    self.release(run, &e.peer_id).await;
                }
                self.forget(&run);
                changed = true;
            }
        }
        changed
    }
}
