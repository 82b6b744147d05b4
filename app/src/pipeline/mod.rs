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
//! unfinished task again on start: it resumes it, counts a boot interrupted by a crash as an
//! attempt (one stopped by an orderly stop does not count), and never produces a second result
//! for a step that already has one.
//!
//! A prover step (its program was deployed as a prover) yields a `Proof` whose parent is the Run;
//! a verifier step yields a `Verification` of the Proof of the nearest prover step before it.
//! `Output` inputs are the files an earlier step's result lists, read from where this node stored
//! them (`txfiles/<result>/<checksum>/<name>`).

mod driver;
mod execute;
mod placed;
mod plan;
mod prefetch;
mod prepare;
mod results;
mod space;

pub use execute::Execute;
pub use prefetch::{NamedFile, named_files};

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{Notify, oneshot, watch};
use tracing::warn;

use crate::crypto::SecretKey;
use crate::data_dir::DataDir;
use crate::download::{Downloader, Progress};
use crate::events::Event;
use crate::intake::Intake;
use crate::model::{Program, Source, TaskKind};
use crate::scheduler::{Allocation, Scheduler};
use crate::store::Store;
use crate::tx::{Hash, Kind};
use crate::vm::executor::Executor;
use crate::vm::qemu::GpuPassthrough;

#[derive(Clone, Debug)]
pub struct Config {
    /// Images, inputs and outputs go where the download server serves them.
    pub data_dir: DataDir,
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
    /// Below this many free bytes on the data filesystem a task waits before its downloads and
    /// before it asks for resources (0: no floor).
    pub min_free_bytes: u64,
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
    /// The drivers of the tasks in `active`, to stop them when the node stops.
    drivers: HashMap<i64, tokio::task::AbortHandle>,
    /// While draining, no waiting task is given resources (running ones go on).
    draining: bool,
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
    /// Where files whose URL fails, and outputs of steps that ran elsewhere, come from (peers).
    peer_files: std::sync::OnceLock<Arc<crate::peer_files::PeerFiles>>,
    /// Fetches started on arrival (see `prefetch.rs`).
    prefetching: Arc<tokio::sync::Semaphore>,
    /// Set when the network places Runs (see `placed.rs`): the results each step needs.
    placement: std::sync::OnceLock<usize>,
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
            st.drivers.remove(&self.id);
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
                peer_files: std::sync::OnceLock::new(),
                prefetching: prefetch::prefetch_permits(),
                placement: std::sync::OnceLock::new(),
                state: Mutex::new(State {
                    scheduler,
                    waiting: HashMap::new(),
                    active: HashMap::new(),
                    gpus: BTreeMap::new(),
                    downloading: HashMap::new(),
                    drivers: HashMap::new(),
                    draining: false,
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
    /// Lets tasks fetch from peers an image or input whose URL fails, and an earlier step's
    /// output this node does not hold (set once, by `Node::start`).
    pub fn set_peer_files(&self, files: Arc<crate::peer_files::PeerFiles>) {
        let _ = self.inner.peer_files.set(files);
    }

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

    /// Whether the node drains (or stops): no waiting task starts.
    pub fn draining(&self) -> bool {
        self.state().draining
    }

    /// Why a program asking for `requested` can never run on this node, if it cannot.
    fn never_fits(
        &self,
        requested: &crate::tx::ResourceRequest,
    ) -> Option<crate::scheduler::Refusal> {
        self.state()
            .scheduler
            .never_fits(requested.cpus, requested.mem, requested.gpus)
    }

    /// Drains (`true`: no waiting task starts; running ones go on) or resumes (`false`).
    pub fn set_draining(&self, on: bool) {
        self.state().draining = on;
        if !on {
            self.schedule();
        }
    }

    /// Stops every task this process drives, as a node that stops in order: their VMs are
    /// killed, and the tasks that were on a VM go back to `queued` without that attempt
    /// counting ([`Store::requeue_stopped`]), so the next start runs them again; the others
    /// keep their phases and resume. Returns how many tasks were stopped on a VM.
    pub async fn stop_tasks(&self) -> usize {
        let stopped: Vec<i64> = {
            let mut st = self.state();
            st.draining = true;
            for driver in st.drivers.values() {
                driver.abort();
            }
            st.drivers.keys().copied().collect()
        };
        // A driver's state leaves `active` when its future is dropped (its VM with it).
        for _ in 0..200 {
            if self.state().active.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let note = "the node stopped during this attempt; its next start runs the task again, and this attempt does not count";
        match self.store().requeue_stopped(&stopped, note).await {
            Ok(on_vm) => on_vm,
            Err(e) => {
                warn!(target: "gevulot", error = %e, tasks = stopped.len(), "cannot record the stopped attempts; they count when the node starts again");
                stopped.len()
            }
        }
    }

    /// Starts every waiting task that fits, telling each its allocation (none while draining).
    fn schedule(&self) {
        let mut st = self.state();
        if st.draining {
            return;
        }
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
    ///
    /// A pass over every unfinished Run (at start, and after the pipeline fell behind the event
    /// bus or the database failed) runs beside the event loop, one at a time, so a new Run is
    /// planned at once however many wait in the queue.
    pub async fn run(self) {
        let events = self.inner.intake.events().subscribe();
        self.run_from(events).await
    }

    /// [`Pipeline::run`] following `events`, a subscription to the node's bus made earlier: a
    /// node subscribes before its network starts, so that a Deploy the catch-up stores at once
    /// is not missed (its images would not be fetched on arrival).
    pub async fn run_from(self, mut events: tokio::sync::broadcast::Receiver<Event>) {
        let mut passes = tokio::task::JoinSet::new();
        let placed = self.redundancy().is_some();
        let mut replan = !placed;
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    Ok(Event::TransactionStored { hash, kind: Kind::Run, source, .. }) if source != Source::P2p => {
                        self.prefetch_soon(hash);
                        // With placement on, the placement decides which node plans it.
                        if placed {
                            continue;
                        }
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
                    Ok(Event::TransactionStored { kind: Kind::Deploy, hash, .. }) => {
                        self.prefetch_soon(hash);
                        self.inner.deployed.notify_waiters();
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(missed)) => {
                        warn!(target: "gevulot", missed, "the pipeline fell behind the event bus; re-reading unfinished runs");
                        self.inner.deployed.notify_waiters();
                        replan = true;
                    }
                    Err(RecvError::Closed) => {
                        passes.abort_all();
                        return;
                    }
                },
                Some(done) = passes.join_next() => {
                    // A pass that failed (the database) is repeated at the next tick.
                    replan |= !done.unwrap_or(false);
                }
                _ = tick.tick(), if replan && passes.is_empty() => {
                    replan = false;
                    passes.spawn(self.clone().plan_open_runs_owned());
                }
            }
        }
    }

    async fn plan_open_runs_owned(self) -> bool {
        self.plan_open_runs().await
    }
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
