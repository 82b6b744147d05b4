//! The prover pipeline: turns stored Runs into tasks, and tasks into signed Proof and
//! Verification transactions with their output files.
//!
//! The database is the source of truth. A Run gets one task per workflow step when the pipeline
//! first sees it (from the event bus, or from [`Store::runs_to_plan`] when the node starts or the
//! bus overflowed); its steps run one after another. Each task is driven by one future through
//! its phases: waiting for its program (bounded), downloading its image and inputs, waiting for
//! resources (the [`Scheduler`]), booting and running in a VM (the [`Execute`] implementation),
//! and submitting its result through the same intake as every other transaction. Every change is
//! stored before it is announced, so a node that stops at any point (SIGKILL included) finds each
//! unfinished task again on start: it resumes it, counts an interrupted boot as an attempt, and
//! never produces a second result for a step that already has one.
//!
//! A prover step (its program was deployed as a prover) yields a `Proof` whose parent is the Run;
//! a verifier step yields a `Verification` of the Proof of the nearest prover step before it.
//! `Output` inputs are the files an earlier step's result lists, read from where this node stored
//! them (`txfiles/<result>/<checksum>/<name>`).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{Notify, oneshot, watch};
use tracing::{info, warn};

use crate::crypto::SecretKey;
use crate::download::{DownloadError, Downloader, Progress};
use crate::events::Event;
use crate::model::{NewTask, Phase, Program, Source, Task, TaskKind};
use crate::node::{Intake, SubmitError};
use crate::scheduler::{Allocation, Request, Scheduler};
use crate::store::{Store, StoreError, now_ms};
use crate::tx::{Hash, Kind, Marker, Payload, ProgramData, Transaction, TxFile, Workflow};
use crate::vm::executor::{ExecError, Executor, Outcome, TaskSpec};
use crate::vm::outputs::AcceptedOutput;
use crate::vm::qemu::GpuPassthrough;

/// What runs a task in a VM. The node uses [`Executor`]; only the pipeline benchmark stubs it.
pub trait Execute: Send + Sync + 'static {
    /// Runs `spec` to its end; `started` is told when the program first asks for its task.
    fn execute(
        &self,
        spec: TaskSpec,
        cancel: watch::Receiver<bool>,
        started: oneshot::Sender<()>,
    ) -> impl Future<Output = Result<Outcome, ExecError>> + Send;

    /// Moves accepted outputs to `data_dir/txfiles/<tx>/<checksum>/<name>`.
    fn store_outputs(
        &self,
        outputs: &[AcceptedOutput],
        data_dir: &Path,
        tx: &Hash,
    ) -> std::io::Result<Vec<PathBuf>>;

    /// Removes what is left of a finished task's VM.
    fn cleanup(&self, id: &str);

    /// Where the VM's serial console of task `id` is logged, when it is.
    fn console_log(&self, _id: &str) -> Option<PathBuf> {
        None
    }
}

impl Execute for Executor {
    async fn execute(
        &self,
        spec: TaskSpec,
        cancel: watch::Receiver<bool>,
        started: oneshot::Sender<()>,
    ) -> Result<Outcome, ExecError> {
        self.run_reporting(&spec, cancel, Some(started)).await
    }

    fn store_outputs(
        &self,
        outputs: &[AcceptedOutput],
        data_dir: &Path,
        tx: &Hash,
    ) -> std::io::Result<Vec<PathBuf>> {
        Executor::store_outputs(self, outputs, data_dir, tx)
    }

    fn cleanup(&self, id: &str) {
        Executor::cleanup(self, id);
    }

    fn console_log(&self, id: &str) -> Option<PathBuf> {
        Some(Executor::console_log(self, id))
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    /// Images go to `images/`, inputs and outputs to `txfiles/` below this.
    pub data_dir: PathBuf,
    /// This node's download server as peers reach it (`http://host:port`): the `url` of every
    /// output file in the node's results.
    pub file_base_url: String,
    pub cpus: u64,
    pub mem_mib: u64,
    /// The longest a task's VM may run (`GEVULOT_MAX_VM_RUN_TIME`).
    pub max_run_time: Duration,
    /// Attempts of a task whose failures are retryable (VM crashes, boot and download failures).
    pub max_attempts: u32,
    /// The wait before the first retry; each next one waits twice as long.
    pub retry_backoff: Duration,
    /// How long a task waits for its program to be deployed, from when its Run arrived.
    pub program_wait: Duration,
    /// At most this many tasks of one program at a time (`None`: no limit).
    pub per_program_limit: Option<usize>,
}

/// What the node's tasks hold and wait for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    pub free_cpus: u64,
    pub free_mem_mib: u64,
    pub free_gpus: usize,
    /// Tasks holding resources (booting, running or submitting).
    pub running: usize,
    /// Tasks waiting for resources.
    pub waiting: usize,
    /// GPUs running tasks hold.
    pub busy_gpus: usize,
    /// Downloads under way.
    pub downloads: usize,
}

/// How an attempt ended, when not with a result.
#[derive(Debug)]
enum Failure {
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
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Store(e)
    }
}

fn download_failure(e: DownloadError) -> Failure {
    if e.retryable() {
        Failure::Retryable {
            reason: e.to_string(),
            booted: false,
        }
    } else {
        Failure::Fatal(e.to_string())
    }
}

/// The kind of result a program's tasks produce, from the role it was deployed in.
fn result_kind(program: &Program) -> TaskKind {
    program.role.result_kind()
}

struct State {
    scheduler: Scheduler,
    /// Tasks waiting for resources, each told its allocation.
    waiting: HashMap<i64, oneshot::Sender<Allocation>>,
    /// Tasks driven by this process, each with its cancel switch.
    active: HashMap<i64, watch::Sender<bool>>,
    /// The GPUs of the pool, with the PCI functions each passes through.
    gpus: BTreeMap<String, GpuPassthrough>,
    /// The content each downloading task waits for.
    downloading: HashMap<i64, Hash>,
}

struct Inner<E> {
    config: Config,
    intake: Intake,
    key: SecretKey,
    downloader: Downloader,
    executor: E,
    state: Mutex<State>,
    /// Woken when a Deploy is stored: tasks waiting for a program look again.
    deployed: Notify,
}

/// A handle on the pipeline (cheap to clone).
pub struct Pipeline<E = Executor> {
    inner: Arc<Inner<E>>,
}

impl<E> Clone for Pipeline<E> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<E> std::fmt::Debug for Pipeline<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pipeline")
    }
}

/// Ends a task's presence in this process however its driver ends (a panic included): its
/// cancel switch goes and whatever it holds or waits for in the scheduler is released.
struct Admitted<E: Execute> {
    pipeline: Pipeline<E>,
    id: i64,
}

impl<E: Execute> Drop for Admitted<E> {
    fn drop(&mut self) {
        {
            let mut st = self.pipeline.state();
            st.active.remove(&self.id);
            st.waiting.remove(&self.id);
            st.scheduler.cancel(self.id);
        }
        self.pipeline.schedule();
    }
}

impl<E: Execute> Pipeline<E> {
    pub fn new(
        config: Config,
        intake: Intake,
        key: SecretKey,
        downloader: Downloader,
        executor: E,
    ) -> Self {
        let scheduler = Scheduler::new(
            config.cpus,
            config.mem_mib,
            Default::default(),
            config.per_program_limit,
        );
        Self {
            inner: Arc::new(Inner {
                config,
                intake,
                key,
                downloader,
                executor,
                state: Mutex::new(State {
                    scheduler,
                    waiting: HashMap::new(),
                    active: HashMap::new(),
                    gpus: BTreeMap::new(),
                    downloading: HashMap::new(),
                }),
                deployed: Notify::new(),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The state stays consistent between statements, so a panic elsewhere leaves it usable.
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn store(&self) -> &Store {
        self.inner.intake.store()
    }

    /// The GPUs tasks may use (ready, in the pool, not reserved), replacing the previous set.
    pub fn set_gpu_pool(&self, gpus: BTreeMap<String, GpuPassthrough>) {
        {
            let mut st = self.state();
            st.scheduler.set_gpu_pool(
                gpus.keys()
                    .cloned()
                    .collect::<std::collections::BTreeSet<_>>(),
            );
            st.gpus = gpus;
        }
        self.schedule();
    }

    /// The GPUs running tasks hold, each with its task id.
    pub fn busy_gpus(&self) -> HashMap<String, i64> {
        let st = self.state();
        st.scheduler
            .allocations()
            .flat_map(|a| a.gpus.iter().map(move |g| (g.clone(), a.task)))
            .collect()
    }

    /// What the node's tasks hold and wait for now.
    pub fn usage(&self) -> Usage {
        let downloads = self.inner.downloader.progress().len();
        let st = self.state();
        let (cpus, mem_mib, gpus) = st.scheduler.free();
        Usage {
            free_cpus: cpus,
            free_mem_mib: mem_mib,
            free_gpus: gpus,
            running: st.scheduler.running(),
            waiting: st.scheduler.waiting(),
            busy_gpus: st.scheduler.allocations().map(|a| a.gpus.len()).sum(),
            downloads,
        }
    }

    /// How far the download a task waits for has come, while it downloads.
    pub fn download_progress(&self, task: i64) -> Option<Progress> {
        let checksum = self.state().downloading.get(&task).copied()?;
        self.inner.downloader.progress().remove(&checksum)
    }

    /// The end of the serial console of task `task`'s VM (its latest attempt), when it booted.
    pub fn log_tail(&self, task: i64, max: usize) -> Option<String> {
        let path = self.inner.executor.console_log(&vm_name(task))?;
        path.is_file()
            .then(|| crate::vm::executor::log_tail(&path, max))
    }

    /// Downloads `url` for `task`, showing its progress meanwhile.
    async fn fetch(&self, task: i64, url: &str, checksum: &str) -> Result<PathBuf, Failure> {
        if let Some(hash) = Hash::from_hex(checksum) {
            self.state().downloading.insert(task, hash);
        }
        let fetched = self.inner.downloader.fetch(url, checksum).await;
        self.state().downloading.remove(&task);
        fetched.map_err(download_failure)
    }

    /// Starts every waiting task that fits, telling each its allocation.
    fn schedule(&self) {
        let mut st = self.state();
        loop {
            let started = st.scheduler.schedule();
            if started.is_empty() {
                return;
            }
            for a in started {
                match st.waiting.remove(&a.task) {
                    Some(told) => {
                        if let Err(a) = told.send(a) {
                            st.scheduler.finish(a.task);
                        }
                    }
                    None => {
                        st.scheduler.finish(a.task);
                    }
                }
            }
        }
    }

    /// Runs the pipeline until the event bus closes: picks up every unfinished Run, then follows
    /// new Runs, Deploys and Cancels as they are stored.
    pub async fn run(self) {
        let mut events = self.inner.intake.events().subscribe();
        let mut replan = !self.plan_open_runs().await;
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    Ok(Event::TransactionStored { hash, kind: Kind::Run, source, .. }) if source != Source::P2p => {
                        if let Err(e) = self.plan_run(hash).await {
                            warn!(target: "gevulot", run = %hash, error = %e, "cannot plan the run yet; retrying");
                            replan = true;
                        }
                    }
                    Ok(Event::TransactionStored { kind: Kind::Cancel, parent: Some(run), hash, .. }) => {
                        if let Err(e) = self.cancel_run(run, hash).await {
                            warn!(target: "gevulot", run = %run, error = %e, "cannot cancel the run yet; retrying");
                            replan = true;
                        }
                    }
                    Ok(Event::TransactionStored { kind: Kind::Deploy, .. }) => {
                        self.inner.deployed.notify_waiters();
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(missed)) => {
                        warn!(target: "gevulot", missed, "the pipeline fell behind the event bus; re-reading unfinished runs");
                        self.inner.deployed.notify_waiters();
                        replan = true;
                    }
                    Err(RecvError::Closed) => return,
                },
                _ = tick.tick(), if replan => {
                    replan = !self.plan_open_runs().await;
                }
            }
        }
    }

    /// Plans every Run with unfinished business. Returns false when the database failed.
    async fn plan_open_runs(&self) -> bool {
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
    async fn plan_run(&self, run: Hash) -> Result<(), StoreError> {
        let store = self.store();
        let Some(stored) = store.get_transaction(&run).await? else {
            return Ok(());
        };
        let Payload::Run { workflow } = &stored.tx.payload else {
            return Ok(());
        };
        let mut tasks = store.tasks_for_tx(&run).await?;
        if tasks.len() < workflow.steps.len() {
            for (i, step) in workflow.steps.iter().enumerate() {
                let index = i as i64;
                if tasks.iter().any(|t| t.step_index == index) {
                    continue;
                }
                let kind = match store.get_program(&step.program).await? {
                    Some(p) => result_kind(&p),
                    None => TaskKind::Proof,
                };
                let task = store
                    .create_task(&NewTask {
                        tx: run,
                        step_index: index,
                        program: step.program,
                        kind,
                    })
                    .await?;
                self.inner.intake.events().publish(Event::TaskChanged {
                    tx: run,
                    task_id: task.id,
                    phase: task.phase,
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

    /// A Cancel of `run` stored on this node by the Run's author or the node itself.
    async fn stored_cancel(&self, run: &Transaction) -> Result<Option<Hash>, StoreError> {
        let node = self.inner.key.public_key();
        self.store().cancel_of(&run.hash, &[run.author, node]).await
    }

    /// Moves every unfinished task of `tasks` to `phase` with `reason`, and stops their drivers.
    async fn end_tasks(
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

    async fn cancel_run(&self, run: Hash, cancel: Hash) -> Result<(), StoreError> {
        let tasks = self.store().tasks_for_tx(&run).await?;
        if !tasks.is_empty() {
            info!(target: "gevulot", run = %run, cancel = %cancel, "cancelling the run");
        }
        self.end_tasks(&tasks, Phase::Cancelled, &cancelled_by(&cancel))
            .await
    }

    /// Starts driving `task` unless this process already does.
    fn admit(&self, task: Task, run: Transaction) {
        let (switch, cancel) = watch::channel(false);
        {
            let mut st = self.state();
            if st.active.contains_key(&task.id) {
                return;
            }
            st.active.insert(task.id, switch);
        }
        let this = self.clone();
        tokio::spawn(async move {
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
    }

    /// Drives a task through its attempts to a terminal phase.
    async fn drive(&self, mut task: Task, run: Transaction, mut cancel: watch::Receiver<bool>) {
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
        match self
            .inner
            .intake
            .set_task_phase(&task, phase, reason.as_deref())
            .await
        {
            Ok(_) => {
                info!(target: "gevulot", task = task.id, run = %run.hash, step = task.step_index, phase = phase.as_str(), reason = reason.as_deref().unwrap_or(""), "task ended");
            }
            Err(e) => {
                // The task stays unfinished in the database and is picked up on the next start.
                warn!(target: "gevulot", task = task.id, error = %e, "cannot record the task's end");
            }
        }
    }

    /// Stores `phase` for `task`; `Gone` when the task already ended elsewhere.
    async fn set_phase(
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
    async fn attempt(
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
        self.set_phase(task, Phase::Downloading, None).await?;
        let prepared = tokio::select! {
            p = self.prepare(task, run, workflow, &program) => p?,
            () = switched(cancel) => return Err(Failure::Cancelled),
        };
        let requested = program.resource_requirements.unwrap_or_default();
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
        self.set_phase(task, Phase::WaitingForResources, None)
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
        result
    }

    /// The task's program, waiting (bounded, from when the Run arrived) until it is deployed.
    async fn wait_for_program(
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

    /// Downloads the image and inputs and resolves earlier steps' outputs.
    async fn prepare(
        &self,
        task: &Task,
        run: &Transaction,
        workflow: &Workflow,
        program: &Program,
    ) -> Result<Prepared, Failure> {
        let data = &self.inner.config.data_dir;
        let dl = &self.inner.downloader;
        let image = self
            .fetch(
                task.id,
                &program.image_file_url,
                &program.image_file_checksum,
            )
            .await?;
        // Served to peers at the original's path.
        if !program.image_file_name.contains('/') {
            let served = data
                .join("images")
                .join(program.hash.to_hex())
                .join(&program.image_file_name);
            dl.place(&image, &served).map_err(download_failure)?;
        }
        let index = task.step_index as usize;
        let step = &workflow.steps[index];
        let mut inputs = Vec::with_capacity(step.inputs.len());
        for input in &step.inputs {
            match input {
                ProgramData::Input {
                    file_name,
                    file_url,
                    checksum,
                } => {
                    let content = self.fetch(task.id, file_url, checksum).await?;
                    let served = data
                        .join("txfiles")
                        .join(run.hash.to_hex())
                        .join(file_name.trim_start_matches('/'));
                    dl.place(&content, &served).map_err(download_failure)?;
                    inputs.push((file_name.clone(), content));
                }
                ProgramData::Output {
                    source_program,
                    file_name,
                } => {
                    let Some(source) = workflow.steps[..index]
                        .iter()
                        .position(|s| s.program == *source_program)
                    else {
                        return Err(Failure::Fatal(format!(
                            "no step before step {} runs program {source_program}",
                            index + 1
                        )));
                    };
                    let Some(result) = self.find_result(run, source as i64).await? else {
                        return Err(Failure::Fatal(format!(
                            "step {} has no result to take {file_name} from",
                            source + 1
                        )));
                    };
                    let files = match &result.payload {
                        Payload::Proof { files, .. } | Payload::Verification { files, .. } => {
                            files.as_slice()
                        }
                        _ => &[],
                    };
                    let Some(file) = files.iter().find(|f| f.name == *file_name) else {
                        let produced: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
                        return Err(Failure::Fatal(format!(
                            "step {} produced no {file_name} (it produced: {})",
                            source + 1,
                            if produced.is_empty() {
                                "nothing".to_string()
                            } else {
                                produced.join(", ")
                            }
                        )));
                    };
                    let path = data
                        .join("txfiles")
                        .join(result.hash.to_hex())
                        .join(file.checksum.to_hex())
                        .join(file.basename());
                    if !path.is_file() {
                        return Err(Failure::Fatal(format!(
                            "{file_name} of step {} is not on this node (expected at {})",
                            source + 1,
                            path.display()
                        )));
                    }
                    inputs.push((file_name.clone(), path));
                }
            }
        }
        let (executes, verifies) = if task.kind == TaskKind::Verification {
            // The Proof of the nearest prover step before this one.
            let mut proof = None;
            for j in (0..index).rev() {
                if let Some(r) = self.find_result(run, j as i64).await?
                    && r.kind() == Kind::Proof
                {
                    proof = Some(r.hash);
                    break;
                }
            }
            let Some(proof) = proof else {
                return Err(Failure::Fatal(format!(
                    "step {} runs a verifier, but no earlier step produced a Proof to verify",
                    index + 1
                )));
            };
            (proof, Some(proof))
        } else {
            (run.hash, None)
        };
        Ok(Prepared {
            image,
            inputs,
            executes,
            verifies,
        })
    }

    /// This node's result for step `index` of `run`, if it made one: a Proof (child of the Run)
    /// or a Verification (child of the Proof it verified), signed by this node.
    async fn find_result(
        &self,
        run: &Transaction,
        index: i64,
    ) -> Result<Option<Transaction>, StoreError> {
        let Payload::Run { workflow } = &run.payload else {
            return Ok(None);
        };
        let Some(step) = workflow.steps.get(index as usize) else {
            return Ok(None);
        };
        let node = self.inner.key.public_key();
        let results = self.store().results_of_run(&run.hash, &node).await?;
        // A prover step's Proof, or a verifier step's Verification of one of the Run's Proofs.
        Ok(results
            .into_iter()
            .map(|s| s.tx)
            .find(|t| match &t.payload {
                Payload::Proof { prover, .. } => *prover == step.program,
                Payload::Verification { verifier, .. } => *verifier == step.program,
                _ => false,
            }))
    }

    /// Stores the outputs and submits the signed Proof or Verification.
    async fn submit_result(
        &self,
        run: &Transaction,
        program: &Program,
        verifies: Option<Hash>,
        data: Vec<u8>,
        outputs: Vec<AcceptedOutput>,
    ) -> Result<(), Failure> {
        let files: Vec<TxFile> = outputs
            .iter()
            .map(|o| TxFile {
                name: o.vm_path.clone(),
                url: self.inner.config.file_base_url.clone(),
                checksum: o.checksum,
                extention: Marker,
            })
            .collect();
        let payload = match verifies {
            None => Payload::Proof {
                parent: run.hash,
                prover: program.hash,
                proof: data,
                files,
            },
            Some(proof) => Payload::Verification {
                parent: proof,
                verifier: program.hash,
                verification: data,
                files,
            },
        };
        let nonce = u64::try_from(now_ms()).unwrap_or_default();
        let tx = Transaction::new_signed(payload, nonce, &self.inner.key);
        // The files are in place before the transaction that names them is visible.
        let inner = self.inner.clone();
        let hash = tx.hash;
        tokio::task::spawn_blocking(move || {
            inner
                .executor
                .store_outputs(&outputs, &inner.config.data_dir, &hash)
        })
        .await
        .map_err(|e| Failure::Retryable {
            reason: format!("storing the outputs failed: {e}"),
            booted: true,
        })?
        .map_err(|e| Failure::Retryable {
            reason: format!("cannot store the outputs: {e}"),
            booted: true,
        })?;
        match self.inner.intake.submit(&tx, Source::Node).await {
            Ok(_) => {
                info!(target: "gevulot", run = %run.hash, result = %tx.hash, kind = tx.kind().as_str(), "result submitted");
                Ok(())
            }
            Err(SubmitError::Invalid(e)) => Err(Failure::Fatal(format!(
                "the program's result was refused: {e}"
            ))),
            Err(SubmitError::Store(e)) => Err(Failure::Store(e)),
        }
    }
}

/// What an attempt needs in the VM.
struct Prepared {
    image: PathBuf,
    inputs: Vec<(String, PathBuf)>,
    /// The transaction the program executes (the Run, or the Proof it verifies).
    executes: Hash,
    /// The Proof a verifier step verifies.
    verifies: Option<Hash>,
}

/// The VM (and console log) name of a task.
fn vm_name(task: i64) -> String {
    format!("task-{task}")
}

fn cancelled_by(cancel: &Hash) -> String {
    format!("cancelled by the Cancel transaction {cancel}")
}

/// Resolves when the switch is on (or its sender is gone, which never happens while the task is
/// admitted).
async fn switched(cancel: &mut watch::Receiver<bool>) {
    if cancel.wait_for(|on| *on).await.is_err() {
        std::future::pending::<()>().await;
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
