//! Driving one task through its phases: an attempt's program, downloads, resources, VM and
//! result, with retries, the deadline and cancellation.

use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tracing::{info, warn};

use crate::download::DownloadError;
use crate::model::{Phase, Program, Task};
use crate::scheduler::Request;
use crate::store::{StoreError, now_ms};
use crate::tx::{Payload, Transaction};
use crate::vm::executor::{ExecError, Outcome, TaskSpec};

use super::{Execute, Pipeline, error_chain, result_kind, switched, vm_name};

/// The first wait before a task's end is written again after the database failed, and the
/// longest (the wait doubles).
const END_RETRY_FIRST: Duration = Duration::from_millis(500);
const END_RETRY_LONGEST: Duration = Duration::from_secs(30);

/// The note of a task that waits because the node drains.
const DRAINING: &str = "the node is draining: no task starts until an operator resumes it";

/// How an attempt ended, when not with a result.
#[derive(Debug)]
pub(super) enum Failure {
    Cancelled,
    TimedOut(String),
    Fatal(String),
    /// `booted`: the attempt reached the VM (counted by the store on `booting`).
    Retryable {
        reason: String,
        booted: bool,
    },
    /// The database failed; the attempt is repeated once it answers.
    Store(StoreError),
    /// The task was ended elsewhere (a Cancel): nothing more to do.
    Gone,
    /// The data directory's filesystem filled: the task waits until `need` bytes (at least) are
    /// free, then tries again (`space.rs`).
    NoSpace {
        reason: String,
        need: Option<u64>,
    },
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Store(e)
    }
}

pub(super) fn download_failure(e: DownloadError) -> Failure {
    if let DownloadError::NoSpace { size, .. } = &e {
        return Failure::NoSpace {
            need: *size,
            reason: e.to_string(),
        };
    }
    if e.retryable() {
        Failure::Retryable {
            reason: e.to_string(),
            booted: false,
        }
    } else {
        Failure::Fatal(e.to_string())
    }
}

impl<E: Execute> Pipeline<E> {
    /// Drives a task through its attempts to a terminal phase.
    pub(super) async fn drive(
        &self,
        mut task: Task,
        run: Transaction,
        mut cancel: watch::Receiver<bool>,
    ) {
        let max = i64::from(self.inner.config.max_attempts.max(1));
        let mut download_failures: i64 = 0;
        let mut interrupted = matches!(
            task.phase,
            Phase::Booting | Phase::Running | Phase::Submitting
        );
        // A result stored before the node stopped ends the task as it should have.
        let existing = loop {
            match self.find_result(&run, task.step_index).await {
                Ok(found) => break found.is_some(),
                Err(e) => {
                    warn!(target: "gevulot", task = task.id, error = %e, "cannot read the task's results; retrying");
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
            }
        };
        let (phase, reason) = loop {
            if existing {
                break (Phase::Succeeded, None);
            }
            if interrupted && task.attempt >= max {
                break (
                    Phase::Failed,
                    Some(format!(
                        "the node stopped during attempt {} of {max}; no attempt is left",
                        task.attempt
                    )),
                );
            }
            interrupted = false;
            let outcome = self.attempt(&mut task, &run, &mut cancel).await;
            // Whatever the attempt held or waited for in the scheduler is released.
            {
                let mut st = self.state();
                st.waiting.remove(&task.id);
                st.scheduler.cancel(task.id);
            }
            self.schedule();
            match outcome {
                Ok(()) => break (Phase::Succeeded, None),
                Err(Failure::Gone) => return,
                Err(Failure::Cancelled) => break (Phase::Cancelled, Some("cancelled".into())),
                Err(Failure::TimedOut(reason)) => break (Phase::TimedOut, Some(reason)),
                Err(Failure::Fatal(reason)) => break (Phase::Failed, Some(reason)),
                Err(Failure::NoSpace { reason, need }) => {
                    match self
                        .wait_for_room(&mut task, &reason, need, &mut cancel)
                        .await
                    {
                        Ok(()) | Err(Failure::Store(_)) => {}
                        Err(Failure::Cancelled) => {
                            break (Phase::Cancelled, Some("cancelled".into()));
                        }
                        Err(_) => return,
                    }
                }
                Err(Failure::Store(e)) => {
                    warn!(target: "gevulot", task = task.id, error = %e, "the database failed during the task; repeating the attempt");
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
                Err(Failure::Retryable { reason, booted }) => {
                    let tries = if booted {
                        task.attempt
                    } else {
                        download_failures += 1;
                        download_failures
                    };
                    if tries >= max {
                        break (
                            Phase::Failed,
                            Some(format!("failed {tries} times, the last with: {reason}")),
                        );
                    }
                    let wait =
                        self.inner.config.retry_backoff * 2u32.pow((tries - 1).clamp(0, 10) as u32);
                    let note = format!(
                        "attempt {tries} of {max} failed: {reason}; retrying in {} s",
                        wait.as_secs_f64().ceil()
                    );
                    warn!(target: "gevulot", task = task.id, "{note}");
                    match self.set_phase(&mut task, Phase::Queued, Some(&note)).await {
                        Ok(()) => {}
                        Err(Failure::Gone) => return,
                        Err(_) => {}
                    }
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = switched(&mut cancel) => break (Phase::Cancelled, Some("cancelled".into())),
                    }
                }
            }
        };
        // Until the database takes it: a task whose end is not recorded would stay unfinished,
        // its Run held by this node with nothing running it, until the node's next start.
        let mut wait = END_RETRY_FIRST;
        loop {
            match self
                .inner
                .intake
                .set_task_phase(&task, phase, reason.as_deref())
                .await
            {
                Ok(_) => {
                    info!(target: "gevulot", task = task.id, run = %run.hash, step = task.step_index, phase = phase.as_str(), reason = reason.as_deref().unwrap_or(""), "task ended");
                    return;
                }
                Err(e) => {
                    warn!(target: "gevulot", task = task.id, phase = phase.as_str(), error = %e, "cannot record the task's end; retrying in {} s", wait.as_secs_f64());
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(END_RETRY_LONGEST);
                }
            }
        }
    }

    /// Stores `phase` for `task`; `Gone` when the task already ended elsewhere.
    pub(super) async fn set_phase(
        &self,
        task: &mut Task,
        phase: Phase,
        note: Option<&str>,
    ) -> Result<(), Failure> {
        if !self.inner.intake.set_task_phase(task, phase, note).await? {
            return Err(Failure::Gone);
        }
        if phase == Phase::Booting {
            task.attempt += 1;
        }
        task.phase = phase;
        Ok(())
    }

    /// One attempt: program, downloads, resources, the VM, the result.
    pub(super) async fn attempt(
        &self,
        task: &mut Task,
        run: &Transaction,
        cancel: &mut watch::Receiver<bool>,
    ) -> Result<(), Failure> {
        let Payload::Run { workflow } = &run.payload else {
            return Err(Failure::Fatal("the task's transaction is not a Run".into()));
        };
        let program = self.wait_for_program(task, cancel).await?;
        let kind = result_kind(&program);
        if task.kind != kind {
            self.store().set_task_kind(task.id, kind).await?;
            task.kind = kind;
        }
        // A task that can never start here fails before it downloads anything.
        let requested = program.resource_requirements.unwrap_or_default();
        if let Some(refusal) = self.never_fits(&requested) {
            return Err(Failure::Fatal(format!(
                "{refusal}; it cannot run on this node"
            )));
        }
        self.wait_for_space(task, cancel).await?;
        self.set_phase(task, Phase::Downloading, None).await?;
        let prepared = tokio::select! {
            p = self.prepare(task, run, workflow, &program) => p?,
            () = switched(cancel) => return Err(Failure::Cancelled),
        };
        self.wait_for_space(task, cancel).await?;
        let (told, allocation) = oneshot::channel();
        let refused = {
            let mut st = self.state();
            let refused = st.scheduler.submit(Request {
                task: task.id,
                program: program.hash.to_hex(),
                priority: 0,
                cpus: requested.cpus,
                mem_mib: requested.mem,
                gpus: requested.gpus,
            });
            if refused.is_ok() {
                st.waiting.insert(task.id, told);
            }
            refused
        };
        if let Err(refusal) = refused {
            return Err(Failure::Fatal(format!(
                "{refusal}; it cannot run on this node"
            )));
        }
        let note = self.state().draining.then_some(DRAINING);
        self.set_phase(task, Phase::WaitingForResources, note)
            .await?;
        self.schedule();
        let allocation = tokio::select! {
            a = allocation => a.map_err(|_| Failure::Gone)?,
            () = switched(cancel) => return Err(Failure::Cancelled),
        };
        let gpus = {
            let st = self.state();
            allocation
                .gpus
                .iter()
                .filter_map(|g| st.gpus.get(g).cloned())
                .collect()
        };
        self.set_phase(task, Phase::Booting, None).await?;
        let vm = vm_name(task.id);
        let spec = TaskSpec {
            id: vm.clone(),
            tx_hash: prepared.executes.to_hex(),
            program_name: program.name.clone(),
            image: prepared.image,
            args: workflow.steps[task.step_index as usize].args.clone(),
            inputs: prepared.inputs,
            cpus: allocation.cpus,
            mem_mib: allocation.mem_mib,
            gpus,
            deadline: self.inner.config.max_run_time,
        };
        let (started, on_start) = oneshot::channel();
        let running = {
            let this = self.clone();
            let t = task.clone();
            tokio::spawn(async move {
                if on_start.await.is_ok() {
                    let _ = this
                        .inner
                        .intake
                        .set_task_phase(&t, Phase::Running, None)
                        .await;
                }
            })
        };
        let outcome = self
            .inner
            .executor
            .execute(spec, cancel.clone(), started)
            .await;
        // Read before the VM's directory goes: a full disk now may be why the attempt failed.
        let space_at_end = self.inner.config.data_dir.space().ok();
        // The VM is gone: its CPUs, memory and GPUs go to the next task now.
        let _ = running.await;
        {
            let mut st = self.state();
            st.scheduler.finish(task.id);
        }
        self.schedule();
        let result = match outcome {
            Err(e @ ExecError::Bundle(_)) => Err(Failure::Fatal(error_chain(&e))),
            Err(e) => Err(Failure::Retryable {
                reason: error_chain(&e),
                booted: true,
            }),
            Ok(Outcome::Cancelled) => Err(Failure::Cancelled),
            Ok(Outcome::TimedOut) => Err(Failure::TimedOut(format!(
                "the program ran longer than {} s (GEVULOT_MAX_VM_RUN_TIME); its VM was stopped",
                self.inner.config.max_run_time.as_secs()
            ))),
            Ok(Outcome::Failed { reason, retryable }) => Err(if retryable {
                Failure::Retryable {
                    reason,
                    booted: true,
                }
            } else {
                Failure::Fatal(reason)
            }),
            Ok(Outcome::Succeeded { data, outputs }) => {
                self.set_phase(task, Phase::Submitting, None).await?;
                self.submit_result(run, &program, prepared.verifies, data, outputs)
                    .await
            }
        };
        self.inner.executor.cleanup(&vm);
        result.map_err(|failure| self.full_disk(failure, space_at_end))
    }

    /// The task's program, waiting (bounded, from when the Run arrived) until it is deployed.
    pub(super) async fn wait_for_program(
        &self,
        task: &mut Task,
        cancel: &mut watch::Receiver<bool>,
    ) -> Result<Program, Failure> {
        let wait = self.inner.config.program_wait;
        let until_ms = task
            .created_at_ms
            .saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX));
        let mut said = false;
        loop {
            let deployed = self.inner.deployed.notified();
            tokio::pin!(deployed);
            deployed.as_mut().enable();
            if let Some(p) = self.store().get_program(&task.program).await? {
                return Ok(p);
            }
            let left = until_ms - now_ms();
            if left <= 0 {
                return Err(Failure::Fatal(format!(
                    "program {} was not deployed within {} s of the Run; deploy it, then submit the Run again",
                    task.program,
                    wait.as_secs()
                )));
            }
            if !said {
                let note = format!(
                    "waiting for program {} to be deployed (for at most {} s more)",
                    task.program,
                    left / 1000
                );
                self.set_phase(task, Phase::WaitingForProgram, Some(&note))
                    .await?;
                said = true;
            }
            tokio::select! {
                () = &mut deployed => {}
                () = tokio::time::sleep(Duration::from_millis(left as u64)) => {}
                () = switched(cancel) => return Err(Failure::Cancelled),
            }
        }
    }
}
