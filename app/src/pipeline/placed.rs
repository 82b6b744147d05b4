//! The pipeline under placement (see [`crate::placement`]): the network decides which node
//! executes each Run. This node plans a Run when it takes it, gives it up when another node holds
//! it, and, when each step needs one result, stops a step that another node proved first.

use std::time::Duration;

use tracing::info;

use crate::model::Phase;
use crate::store::StoreError;
use crate::tx::{Hash, Payload, Transaction};

use super::{Execute, Pipeline};

impl<E: Execute> Pipeline<E> {
    /// From now on the placement hands this node its Runs, each step needing `redundancy`
    /// results from different nodes (1: the first result of a step is the step's).
    pub fn set_placed(&self, redundancy: usize) {
        let _ = self.inner.placement.set(redundancy.max(1));
    }

    /// The results a step needs when placement is on; `None` when it is off.
    pub(super) fn redundancy(&self) -> Option<usize> {
        self.inner.placement.get().copied()
    }

    /// Plans `run` here: this node holds it now. Steps that already have their result (proven
    /// by a node that held the Run before) are not run again.
    pub async fn take(&self, run: Hash) -> Result<(), StoreError> {
        self.plan_run(run).await
    }

    /// Gives `run` up (another node holds it): its drivers stop, their VMs with them, and its
    /// tasks that have not succeeded are forgotten here. Returns how many were.
    pub async fn release(&self, run: Hash) -> Result<u64, StoreError> {
        let ids: Vec<i64> = self
            .store()
            .tasks_for_tx(&run)
            .await?
            .iter()
            .map(|t| t.id)
            .collect();
        {
            let st = self.state();
            for id in &ids {
                if let Some(driver) = st.drivers.get(id) {
                    driver.abort();
                }
            }
        }
        // A driver leaves `active` when its future is dropped (its VM with it).
        for _ in 0..500 {
            if !ids.iter().any(|id| self.state().active.contains_key(id)) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.store().drop_unfinished_tasks(&run).await
    }

    /// Another node's result: when a step needs one result, this node's unfinished task of the
    /// same program in that Run ends (the first result wins, the loser's VM stops). Returns
    /// whether a task was stopped.
    pub async fn peer_result(&self, result: &Transaction) -> Result<bool, StoreError> {
        if self.redundancy() != Some(1) || result.author == self.inner.key.public_key() {
            return Ok(false);
        }
        let (run, program) = match &result.payload {
            Payload::Proof { parent, prover, .. } => (*parent, *prover),
            Payload::Verification {
                parent, verifier, ..
            } => match self.store().get_transaction(parent).await? {
                Some(proof) => match proof.tx.payload {
                    Payload::Proof { parent: run, .. } => (run, *verifier),
                    _ => return Ok(false),
                },
                None => return Ok(false),
            },
            _ => return Ok(false),
        };
        let tasks = self.store().tasks_for_tx(&run).await?;
        let Some(task) = tasks
            .into_iter()
            .find(|t| t.program == program && !t.phase.is_terminal())
        else {
            return Ok(false);
        };
        let reason = format!(
            "proven first by another node ({} {})",
            result.kind().as_str(),
            result.hash
        );
        info!(target: "gevulot", run = %run, task = task.id, result = %result.hash, "another node proved the step first; stopping it here");
        self.end_tasks(std::slice::from_ref(&task), Phase::Succeeded, &reason)
            .await?;
        Ok(true)
    }
}
