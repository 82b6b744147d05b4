//! Runs one task in one VM, start to end: stages the inputs into the VM's workspace, boots the
//! program image, answers the guest protocol with this task only, and ends in exactly one
//! [`Outcome`]: the result with its outputs checked by the node, a failure with the reason (the
//! program reported failure, the VM stopped without a result, the guest panicked…), the deadline,
//! or a cancellation. The VM and its helpers are gone when `run` returns.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use guest::proto::{Task, TaskError, TaskResultRequest, task_result_request};
use tokio::sync::{oneshot, watch};

use super::confine::{Confinement, VmBounds};
use super::guest_server::{GuestHandler, HybridDaemon, hybrid_listener_path, serve_hybrid};
use super::image::{ImageFormat, detect_file};
use super::outputs::{self, AcceptedOutput};
use super::qemu::{Accel, Boot, GpuPassthrough, VmSpec, Vsock};
use super::runner::{Timeouts, Vm, VmState};
use crate::validate::{WORKSPACE, vm_path_problem};

/// How the executor reaches guests.
#[derive(Clone, Debug)]
pub enum VsockMode {
    /// The kernel's vhost-vsock: a CID per VM, connections routed by the hub's listener
    /// (production hosts).
    Kernel { hub: super::vsock::KernelVsockHub },
    /// One `vhost-device-vsock` daemon per VM (the hybrid vsock over Unix sockets).
    Hybrid { daemon: PathBuf },
    /// Neither transport exists on this host: every task fails at once with `reason` (which
    /// says what to install), instead of booting a VM that could never be reached.
    Unavailable { reason: String },
}

#[derive(Clone, Debug)]
pub struct ExecutorConfig {
    pub qemu: PathBuf,
    /// Per-VM directories (workspace, sockets, pid file) live below this.
    pub vms_dir: PathBuf,
    /// Per-VM serial console logs live below this.
    pub log_dir: PathBuf,
    pub accel: Accel,
    pub vsock: VsockMode,
    /// The vsock port programs connect to.
    pub port: u32,
    pub timeouts: Timeouts,
    pub max_output_bytes: u64,
    /// The most a program may write to its `/workspace` (`GEVULOT_MAX_WORKSPACE_MB`); past it
    /// the VM is stopped and the task fails.
    pub max_workspace_bytes: u64,
    /// Who QEMU runs as and the limits around it (`confine.rs`).
    pub confinement: Confinement,
    /// The largest guest protocol message a program may send. A result carries its proof
    /// inline, so this is the node's largest proof (`GEVULOT_MAX_PROOF_BYTES`) plus room for
    /// the list of output files ([`guest_message_bytes`]).
    pub max_guest_message_bytes: usize,
}

/// The guest protocol's message bound for proofs of up to `max_proof_bytes`: the proof plus
/// 1 MiB for the hash, the output files' paths and checksums and the framing.
pub fn guest_message_bytes(max_proof_bytes: usize) -> usize {
    max_proof_bytes.saturating_add(1 << 20)
}

/// Requests a program may send the node's guest service in one task (the SDK sends a few
/// dozen); past it the VM is stopped as a flood.
pub const MAX_GUEST_REQUESTS: u64 = 1000;

/// One task to run.
#[derive(Clone, Debug)]
pub struct TaskSpec {
    /// A unique, path-safe name (the task id).
    pub id: String,
    /// The transaction being executed (hex), as the program sees it.
    pub tx_hash: String,
    pub program_name: String,
    pub image: PathBuf,
    pub args: Vec<String>,
    /// Input files: the VM path (under `/workspace/`) and where the node has the file.
    pub inputs: Vec<(String, PathBuf)>,
    pub cpus: u64,
    pub mem_mib: u64,
    pub gpus: Vec<GpuPassthrough>,
    pub deadline: Duration,
}

/// How a task ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Succeeded {
        data: Vec<u8>,
        outputs: Vec<AcceptedOutput>,
    },
    /// `retryable` when the cause is the VM rather than the program (a crash, a boot failure).
    Failed {
        reason: String,
        retryable: bool,
    },
    TimedOut,
    Cancelled,
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("cannot prepare the VM's directory")]
    Prepare(#[source] std::io::Error),
    #[error("input {0:?} is not a path under /workspace/")]
    BadInput(String),
    #[error("cannot stage the input {path}")]
    Stage {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the vsock daemon {daemon}")]
    Daemon {
        daemon: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the program image cannot be used")]
    Bundle(#[from] super::bundle::BundleError),
    #[error("no vsock CID is free for another VM")]
    NoCid,
}

/// The guest protocol for one task: `GetTask` gives it, `SubmitResult` ends it.
struct OneTask {
    task: Task,
    result: Mutex<Option<oneshot::Sender<TaskResultRequest>>>,
    /// Fired when the program first asks for its task: the VM booted and the program runs.
    started: Mutex<Option<oneshot::Sender<()>>>,
    /// Requests so far; past [`MAX_GUEST_REQUESTS`] the service answers nothing more.
    requests: std::sync::atomic::AtomicU64,
    /// [`ExecutorConfig::max_guest_message_bytes`].
    max_message: usize,
}

impl OneTask {
    /// Counts a request; false once the program has sent too many.
    fn admit(&self) -> bool {
        self.requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            < MAX_GUEST_REQUESTS
    }

    fn flooded(&self) -> bool {
        self.requests.load(std::sync::atomic::Ordering::Relaxed) > MAX_GUEST_REQUESTS
    }
}

impl GuestHandler for OneTask {
    fn max_message_bytes(&self) -> usize {
        self.max_message
    }

    async fn get_task(&self, _vm: &str) -> Option<Task> {
        if !self.admit() {
            return None;
        }
        let waiting = self.result.lock().map(|r| r.is_some()).unwrap_or(false);
        if waiting && let Some(started) = self.started.lock().ok().and_then(|mut s| s.take()) {
            let _ = started.send(());
        }
        waiting.then(|| self.task.clone())
    }

    async fn submit_result(
        &self,
        _vm: &str,
        result: TaskResultRequest,
    ) -> Result<bool, tonic::Status> {
        if !self.admit() {
            return Err(tonic::Status::resource_exhausted(
                "too many requests from this VM",
            ));
        }
        if result.tx_hash != self.task.tx_hash {
            return Err(tonic::Status::permission_denied(
                "this VM's task is another transaction",
            ));
        }
        let sender = self
            .result
            .lock()
            .map_err(|_| tonic::Status::internal("lock"))?
            .take()
            .ok_or_else(|| {
                tonic::Status::failed_precondition("the result was already submitted")
            })?;
        let _ = sender.send(result);
        Ok(false)
    }
}

/// What a running VM's supervisor watches besides the VM: its workspace's size, its console for
/// failure reasons, and its guest service for floods.
struct Watched<'a> {
    workspace: &'a Path,
    console: &'a Path,
    handler: &'a OneTask,
}

/// The last `max` bytes of a log, for failure reasons.
pub fn log_tail(path: &Path, max: usize) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    let start = bytes.len().saturating_sub(max);
    String::from_utf8_lossy(&bytes[start..]).trim().to_string()
}

/// The kernel's panic line, if the console shows one (searched in the log's last 64 KiB).
pub fn panic_line(console: &Path) -> Option<String> {
    log_tail(console, 64 * 1024)
        .lines()
        .find(|l| l.contains("Kernel panic"))
        .map(|l| l.trim().to_string())
}

#[derive(Clone, Debug)]
pub struct Executor {
    config: ExecutorConfig,
}

impl Executor {
    pub fn new(config: ExecutorConfig) -> Self {
        Self { config }
    }

    pub fn vm_dir(&self, id: &str) -> PathBuf {
        self.config.vms_dir.join(id)
    }

    pub fn console_log(&self, id: &str) -> PathBuf {
        self.config.log_dir.join(id).join("console.log")
    }

    /// Stores a finished task's outputs where the file server serves them for the transaction
    /// `tx` that records them ([`crate::data_dir::DataDir::output_file`]), each
    /// appearing under its final name only when complete. Returns the stored paths, in order.
    pub fn store_outputs(
        &self,
        outputs: &[AcceptedOutput],
        data_dir: &crate::data_dir::DataDir,
        tx: &crate::tx::Hash,
    ) -> std::io::Result<Vec<PathBuf>> {
        let mut stored = Vec::with_capacity(outputs.len());
        for o in outputs {
            let basename = o.vm_path.rsplit('/').next().unwrap_or("output");
            let dir = data_dir.output_dir(tx, &o.checksum);
            std::fs::create_dir_all(&dir)?;
            let target = dir.join(basename);
            let staging = dir.join(format!(".{basename}.storing"));
            // The workspace is on the node's disk: a rename, or a copy across file systems.
            if std::fs::rename(&o.host_path, &staging).is_err() {
                std::fs::copy(&o.host_path, &staging)?;
            }
            std::fs::rename(&staging, &target)?;
            // The guest chose the file's mode and owns it: served files are the node's, plain.
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644))?;
            if self.config.confinement.user.is_some() {
                std::os::unix::fs::chown(&target, Some(0), Some(0))?;
            }
            stored.push(target);
        }
        Ok(stored)
    }

    /// Removes a finished task's VM directory (after its outputs were moved away).
    pub fn cleanup(&self, id: &str) {
        let _ = std::fs::remove_dir_all(self.vm_dir(id));
        if let Some(cgroups) = &self.config.confinement.cgroups {
            cgroups.remove(id);
        }
    }

    fn stage(&self, spec: &TaskSpec, workspace: &Path) -> Result<(), ExecError> {
        for (vm_path, source) in &spec.inputs {
            if vm_path_problem(vm_path).is_some() {
                return Err(ExecError::BadInput(vm_path.clone()));
            }
            let target = workspace.join(&vm_path[WORKSPACE.len() + 1..]);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(ExecError::Prepare)?;
                for dir in parent.ancestors().take_while(|d| d.starts_with(workspace)) {
                    self.config
                        .confinement
                        .hand_over(dir)
                        .map_err(ExecError::Prepare)?;
                }
            }
            // A copy, never a link: the guest may change its inputs, not the node's content.
            std::fs::copy(source, &target)
                .and_then(|_| self.config.confinement.hand_over(&target))
                .map_err(|source| ExecError::Stage {
                    path: vm_path.clone(),
                    source,
                })?;
        }
        Ok(())
    }

    /// Runs `spec` to its end. `cancel` turning `true` stops the VM at once.
    pub async fn run(
        &self,
        spec: &TaskSpec,
        cancel: watch::Receiver<bool>,
    ) -> Result<Outcome, ExecError> {
        self.run_reporting(spec, cancel, None).await
    }

    /// [`Executor::run`], also telling `started` when the program first asks for its task (the
    /// VM booted; the program runs).
    pub async fn run_reporting(
        &self,
        spec: &TaskSpec,
        mut cancel: watch::Receiver<bool>,
        started: Option<oneshot::Sender<()>>,
    ) -> Result<Outcome, ExecError> {
        if let VsockMode::Unavailable { reason } = &self.config.vsock {
            return Ok(Outcome::Failed {
                reason: reason.clone(),
                retryable: false,
            });
        }
        let dir = self.vm_dir(&spec.id);
        let _ = std::fs::remove_dir_all(&dir);
        let workspace = dir.join("workspace");
        std::fs::create_dir_all(&workspace).map_err(ExecError::Prepare)?;
        let confinement = &self.config.confinement;
        confinement
            .hand_over(&workspace)
            .map_err(ExecError::Prepare)?;
        // What QEMU creates itself (its QMP socket and pid file) goes in a directory of its own.
        let run_dir = dir.join("run");
        std::fs::create_dir_all(&run_dir).map_err(ExecError::Prepare)?;
        confinement
            .hand_over(&run_dir)
            .map_err(ExecError::Prepare)?;
        self.stage(spec, &workspace)?;

        let boot = match detect_file(&spec.image).map_err(ExecError::Prepare)? {
            ImageFormat::RawDisk => Boot::Disk {
                image: spec.image.clone(),
            },
            ImageFormat::KernelBundle => {
                let b = super::bundle::unpack(&spec.image, &dir.join("bundle"))?;
                Boot::Kernel {
                    kernel: b.kernel,
                    initrd: b.initrd,
                    cmdline: b.cmdline,
                }
            }
        };

        let (result_tx, mut result_rx) = oneshot::channel();
        let handler = Arc::new(OneTask {
            task: Task {
                tx_hash: spec.tx_hash.clone(),
                name: spec.program_name.clone(),
                args: spec.args.clone(),
                files: spec.inputs.iter().map(|(p, _)| p.clone()).collect(),
            },
            result: Mutex::new(Some(result_tx)),
            started: Mutex::new(started),
            requests: Default::default(),
            max_message: self.config.max_guest_message_bytes,
        });
        // The transport, and what must be undone when the task ends.
        let (vsock, _daemon, server, cid) = match &self.config.vsock {
            VsockMode::Hybrid { daemon } => {
                let (binary, vsock_dir) = (daemon.clone(), dir.to_path_buf());
                let started = tokio::task::spawn_blocking(move || {
                    HybridDaemon::start(&binary, &vsock_dir, super::vsock::FIRST_GUEST_CID)
                })
                .await
                .map_err(|e| ExecError::Prepare(std::io::Error::other(e)))?;
                let child = started.map_err(|source| ExecError::Daemon {
                    daemon: daemon.display().to_string(),
                    source,
                })?;
                let listener = tokio::net::UnixListener::bind(hybrid_listener_path(
                    &child.uds,
                    self.config.port,
                ))
                .map_err(ExecError::Prepare)?;
                let server = tokio::spawn(serve_hybrid(listener, spec.id.clone(), handler.clone()));
                let socket = child.socket.clone();
                confinement.hand_over(&socket).map_err(ExecError::Prepare)?;
                (Vsock::Hybrid { socket }, Some(child), Some(server), None)
            }
            VsockMode::Kernel { hub } => {
                let cid = hub.register(handler.clone()).ok_or(ExecError::NoCid)?;
                (Vsock::Kernel { cid }, None, None, Some(cid))
            }
            VsockMode::Unavailable { reason } => {
                return Ok(Outcome::Failed {
                    reason: reason.clone(),
                    retryable: false,
                });
            }
        };

        let console = self.console_log(&spec.id);
        let vm_spec = VmSpec {
            name: spec.id.clone(),
            accel: self.config.accel,
            cpus: spec.cpus,
            mem_mib: spec.mem_mib,
            boot,
            workspace: workspace.clone(),
            vsock,
            gpus: spec.gpus.clone(),
            serial_log: console.clone(),
            qmp_socket: run_dir.join("qmp.sock"),
            pid_file: run_dir.join("qemu.pid"),
        };
        // QEMU opens its console log itself: the file is the VM user's, its directory the node's.
        if let Some(parent) = console.parent() {
            std::fs::create_dir_all(parent).map_err(ExecError::Prepare)?;
        }
        std::fs::File::create(&console).map_err(ExecError::Prepare)?;
        confinement
            .hand_over(&console)
            .map_err(ExecError::Prepare)?;
        let bounds = Some(VmBounds {
            mem_mib: spec.mem_mib,
            cpus: spec.cpus,
            gpus: !spec.gpus.is_empty(),
            run_time: spec.deadline,
        });
        let started = Vm::start_confined(
            &self.config.qemu,
            vm_spec,
            self.config.timeouts,
            confinement,
            bounds,
        )
        .await;
        let outcome = match started {
            Err(e) => Outcome::Failed {
                reason: format!("the VM did not start: {e}"),
                retryable: true,
            },
            Ok(vm) => {
                let watched = Watched {
                    workspace: &workspace,
                    console: &console,
                    handler: &handler,
                };
                self.supervise(vm, spec, watched, &mut result_rx, &mut cancel)
                    .await
            }
        };
        if let Some(server) = server {
            server.abort();
        }
        if let (Some(cid), VsockMode::Kernel { hub }) = (cid, &self.config.vsock) {
            hub.unregister(cid);
        }
        Ok(outcome)
    }

    async fn supervise(
        &self,
        mut vm: Vm,
        spec: &TaskSpec,
        watched: Watched<'_>,
        result_rx: &mut oneshot::Receiver<TaskResultRequest>,
        cancel: &mut watch::Receiver<bool>,
    ) -> Outcome {
        let deadline = tokio::time::sleep(spec.deadline);
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        let Watched {
            workspace,
            console,
            handler,
        } = watched;
        let mut ticks = 0u64;
        let result = loop {
            tokio::select! {
                r = &mut *result_rx => break r.ok(),
                () = &mut deadline => {
                    let _ = vm.kill().await;
                    return Outcome::TimedOut;
                }
                changed = cancel.changed() => {
                    if changed.is_err() || *cancel.borrow() {
                        let _ = vm.kill().await;
                        return Outcome::Cancelled;
                    }
                }
                _ = tick.tick() => {
                    ticks += 1;
                    if handler.flooded() {
                        let _ = vm.kill().await;
                        return Outcome::Failed {
                            reason: format!("the program sent the node's guest service more than {MAX_GUEST_REQUESTS} requests; its VM was stopped"),
                            retryable: false,
                        };
                    }
                    // The workspace's size, every other second (a walk of the share).
                    if ticks.is_multiple_of(4) {
                        let limit = self.config.max_workspace_bytes;
                        let dir = workspace.to_path_buf();
                        let used = tokio::task::spawn_blocking(move || crate::data_dir::tree_size(&dir).0)
                            .await
                            .unwrap_or(0);
                        if used > limit {
                            let _ = vm.kill().await;
                            return Outcome::Failed {
                                reason: format!(
                                    "the program wrote more than {} MiB to /workspace (GEVULOT_MAX_WORKSPACE_MB); its VM was stopped",
                                    limit >> 20
                                ),
                                retryable: false,
                            };
                        }
                    }
                    match vm.state().await {
                        Ok(VmState::GuestPanicked) => {
                            let _ = vm.kill().await;
                            return Outcome::Failed {
                                reason: format!("the guest kernel panicked: {}", log_tail(console, 1500)),
                                retryable: true,
                            };
                        }
                        Ok(VmState::InternalError) => {
                            let _ = vm.kill().await;
                            return Outcome::Failed {
                                reason: "QEMU hit an internal error (a KVM emulation failure?); try GEVULOT_VM_ACCEL=tcg".into(),
                                retryable: true,
                            };
                        }
                        Ok(VmState::Shutdown) | Err(_) => {
                            // The VM is gone; a result may still be in flight.
                            match tokio::time::timeout(Duration::from_secs(2), &mut *result_rx).await {
                                Ok(Ok(r)) => break Some(r),
                                _ => {
                                    let _ = vm.kill().await;
                                    let tail = log_tail(console, 1500);
                                    return Outcome::Failed {
                                        reason: match panic_line(console) {
                                            Some(line) => format!("the guest kernel panicked ({line}); its console ended with: {tail}"),
                                            None => format!("the VM stopped without a result; its console ended with: {tail}"),
                                        },
                                        retryable: true,
                                    };
                                }
                            }
                        }
                        Ok(_) => {}
                    }
                }
            }
        };
        // The agent powers the VM off after the program; give it a moment, then stop it.
        if vm.wait_exit(Duration::from_secs(10)).await.is_none() {
            let _ = vm.stop().await;
        } else {
            let _ = vm.kill().await;
        }
        let Some(result) = result else {
            return Outcome::Failed {
                reason: "the guest service closed without a result".into(),
                retryable: true,
            };
        };
        match result.result {
            Some(task_result_request::Result::Task(task)) => {
                let mut accepted = Vec::with_capacity(task.files.len());
                for f in &task.files {
                    match outputs::accept(
                        workspace,
                        &f.path,
                        &f.checksum,
                        self.config.max_output_bytes,
                    ) {
                        Ok(a) => accepted.push(a),
                        Err(e) => {
                            return Outcome::Failed {
                                reason: e.to_string(),
                                retryable: false,
                            };
                        }
                    }
                }
                Outcome::Succeeded {
                    data: task.data,
                    outputs: accepted,
                }
            }
            Some(task_result_request::Result::Error(code)) => Outcome::Failed {
                reason: format!(
                    "the program reported that the task failed ({}); its console ended with: {}",
                    TaskError::try_from(code)
                        .map_or("unknown error".to_string(), |e| format!("{e:?}")),
                    log_tail(console, 1500)
                ),
                retryable: false,
            },
            None => Outcome::Failed {
                reason: "the program submitted an empty result".into(),
                retryable: false,
            },
        }
    }
}
