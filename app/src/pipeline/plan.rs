//! Planning: a stored Run becomes one task per step; the step that is due is admitted, a Cancel
//! ends the unfinished ones.

use tokio::sync::watch;
use tracing::{info, warn};

use crate::events::Event;
use crate::model::{NewTask, Phase, Task, TaskKind};
use crate::store::StoreError;
use crate::tx::{Hash, Payload, Transaction};

use super::{Admitted, Execute, Pipeline, cancelled_by, result_kind};

impl<E: Execute> Pipeline<E> {
    /// Plans every Run with unfinished business. Returns false when the database failed. With
    /// placement on, the placement hands this node its Runs instead (see `placed.rs`).
    pub(super) async fn plan_open_runs(&self) -> bool {
        if self.redundancy().is_some() {
            return true;
        }
        let runs = match self.store().runs_to_plan().await {
            Ok(runs) => runs,
            Err(e) => {
                warn!(target: "gevulot", error = %e, "cannot read unfinished runs; retrying");
                return false;
            }
        };
        if !runs.is_empty() {
            info!(target: "gevulot", runs = runs.len(), "picking up unfinished runs");
        }
        let mut ok = true;
        for run in runs {
            if let Err(e) = self.plan_run(run).await {
                warn!(target: "gevulot", run = %run, error = %e, "cannot plan the run; retrying");
                ok = false;
            }
        }
        ok
    }

    /// Creates the Run's missing tasks, honours a stored Cancel, and admits the step that is due
    /// (or ends the steps after one that failed).
    pub(super) async fn plan_run(&self, run: Hash) -> Result<(), StoreError> {
        let store = self.store();
        let Some(stored) = store.get_transaction(&run).await? else {
            return Ok(());
        };
        let Payload::Run { workflow } = &stored.tx.payload else {
            return Ok(());
        };
        let mut tasks = store.tasks_for_tx(&run).await?;
        if tasks.len() < workflow.steps.len() {
            let mut missing = Vec::new();
            for (i, step) in workflow.steps.iter().enumerate() {
                let index = i as i64;
                if tasks.iter().any(|t| t.step_index == index) {
                    continue;
                }
                let kind = match store.get_program(&step.program).await? {
                    Some(p) => result_kind(&p),
                    None => TaskKind::Proof,
                };
                missing.push(NewTask {
                    tx: run,
                    step_index: index,
                    program: step.program,
                    kind,
                });
            }
            for task in store.create_tasks(&missing).await? {
                self.inner.intake.events().publish(Event::TaskChanged {
                    tx: run,
                    task_id: task.id,
                    phase: task.phase,
                    failure: None,
                });
            }
            tasks = store.tasks_for_tx(&run).await?;
        }
        if let Some(cancel) = self.stored_cancel(&stored.tx).await? {
            self.end_tasks(&tasks, Phase::Cancelled, &cancelled_by(&cancel))
                .await?;
            return Ok(());
        }
        for (i, task) in tasks.iter().enumerate() {
            match task.phase {
                Phase::Succeeded => continue,
                phase if phase.is_terminal() => {
                    let how = match phase {
                        Phase::TimedOut => "timed out",
                        Phase::Cancelled => "was cancelled",
                        _ => "failed",
                    };
                    let reason = format!("not run: step {} {how}", i + 1);
                    self.end_tasks(&tasks[i + 1..], Phase::Cancelled, &reason)
                        .await?;
                }
                _ => self.admit(task.clone(), stored.tx.clone()),
            }
            break;
        }
        Ok(())
    }

    /// A Cancel of `run` stored on this node (the intake admitted it: by the Run's author, this
    /// node, or another node of the network).
    pub(super) async fn stored_cancel(
        &self,
        run: &Transaction,
    ) -> Result<Option<Hash>, StoreError> {
        self.store().first_cancel(&run.hash).await
    }

    /// Moves every unfinished task of `tasks` to `phase` with `reason`, and stops their drivers.
    pub(super) async fn end_tasks(
        &self,
        tasks: &[Task],
        phase: Phase,
        reason: &str,
    ) -> Result<(), StoreError> {
        for task in tasks.iter().filter(|t| !t.phase.is_terminal()) {
            self.inner
                .intake
                .set_task_phase(task, phase, Some(reason))
                .await?;
            if let Some(switch) = self.state().active.get(&task.id) {
                let _ = switch.send(true);
            }
        }
        Ok(())
    }

    pub(super) async fn cancel_run(&self, run: Hash, cancel: Hash) -> Result<(), StoreError> {
        let tasks = self.store().tasks_for_tx(&run).await?;
        if !tasks.is_empty() {
            info!(target: "gevulot", run = %run, cancel = %cancel, "cancelling the run");
        }
        self.end_tasks(&tasks, Phase::Cancelled, &cancelled_by(&cancel))
            .await
    }

    /// Starts driving `task` unless this process already does.
    pub(super) fn admit(&self, task: Task, run: Transaction) {
        let (switch, cancel) = watch::channel(false);
        {
            let mut st = self.state();
            if st.active.contains_key(&task.id) {
                return;
            }
            st.active.insert(task.id, switch);
        }
        let this = self.clone();
        let id = task.id;
        let driver = tokio::spawn(async move {
            let run_hash = run.hash;
            {
                let _admitted = Admitted {
                    pipeline: this.clone(),
                    id: task.id,
                };
                this.drive(task, run, cancel).await;
            }
            // The next step is due now (or the later ones end).
            if let Err(e) = this.plan_run(run_hash).await {
                warn!(target: "gevulot", run = %run_hash, error = %e, "cannot plan the run's next step; it is picked up again later");
            }
        });
        let mut st = self.state();
        // A driver that already ended has left `active` (and must not be remembered).
        if st.active.contains_key(&id) {
            st.drivers.insert(id, driver.abort_handle());
        }
    }
}
