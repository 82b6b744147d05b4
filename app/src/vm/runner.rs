//! One QEMU process per VM, driven over QMP (the `qapi` crate) on its per-VM Unix socket.
//!
//! The rest of the node talks to a VM through a closed set of commands ([`VmCommand`]) with a
//! matching error enum ([`VmError`]), as Firecracker's `VmmAction` does. Every wait has a timeout,
//! and stopping escalates: QMP `quit`, then SIGKILL by pid. VMs left over by a previous run of the
//! node (it was killed) are found by their pid files and ended by [`reap_orphans`].

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use qapi::futures::{QapiService, QmpStreamTokio};
use tokio::io::WriteHalf;
use tokio::net::UnixStream;

use super::confine::{Confinement, VmBounds};
use super::guest_server::DAEMON_PID_FILE;
use super::qemu::VmSpec;

/// How long each step may take.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// From spawn until QMP answers.
    pub qmp_ready: Duration,
    /// For one QMP command.
    pub command: Duration,
    /// From `quit` until the process is gone (then SIGKILL).
    pub quit: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            qmp_ready: Duration::from_secs(30),
            command: Duration::from_secs(10),
            quit: Duration::from_secs(10),
        }
    }
}

/// The guest's state as QMP `query-status` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VmState {
    Running,
    /// Paused or not started yet (`prelaunch`, `paused`, `inmigrate`, …).
    Paused(String),
    /// The guest kernel panicked (pvpanic).
    GuestPanicked,
    /// QEMU hit an internal error (e.g. a KVM emulation failure); the VM will not continue.
    InternalError,
    /// The guest powered off or QEMU is shutting down.
    Shutdown,
    Other(String),
}

/// The closed set of things one can ask of a VM.
#[derive(Debug)]
pub enum VmCommand {
    Start(Box<VmSpec>),
    Query,
    Stop,
    Kill,
}

/// Everything that can go wrong, per command. Messages never repeat their source.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("cannot start {qemu}")]
    Spawn {
        qemu: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot prepare the VM directory {path}")]
    Prepare {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("QEMU exited before it was ready ({status}); see {log}")]
    ExitedEarly { status: String, log: String },
    #[error("QMP did not answer within {0:?}")]
    QmpTimeout(Duration),
    #[error("QMP failed")]
    Qmp(#[source] std::io::Error),
    #[error("QMP refused the command: {0}")]
    QmpRefused(String),
    #[error("the VM is not running")]
    NotRunning,
}

type Qmp = QapiService<QmpStreamTokio<WriteHalf<UnixStream>>>;

/// A running VM.
pub struct Vm {
    spec: VmSpec,
    child: tokio::process::Child,
    qmp: Option<Qmp>,
    timeouts: Timeouts,
    stderr_log: PathBuf,
}

impl std::fmt::Debug for Vm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vm")
            .field("name", &self.spec.name)
            .field("pid", &self.child.id())
            .finish()
    }
}

/// The outcome of a VM that ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exit {
    /// How QEMU ended, e.g. `exit status: 0` or `signal: 9 (SIGKILL)`.
    pub status: String,
    /// True when the node had to SIGKILL it.
    pub killed: bool,
}

impl Vm {
    /// Spawns QEMU for `spec` and waits for QMP. The VM's directory holds its QMP socket and pid
    /// file; its serial console goes to `spec.serial_log`, QEMU's own stderr next to it.
    pub async fn start(qemu: &Path, spec: VmSpec, timeouts: Timeouts) -> Result<Vm, VmError> {
        Self::start_confined(qemu, spec, timeouts, &Confinement::default(), None).await
    }

    /// [`Vm::start`] with QEMU confined (`confine.rs`) within `bounds` (none: no limits).
    pub async fn start_confined(
        qemu: &Path,
        spec: VmSpec,
        timeouts: Timeouts,
        confinement: &Confinement,
        bounds: Option<VmBounds>,
    ) -> Result<Vm, VmError> {
        for dir in [spec.qmp_socket.parent(), spec.serial_log.parent()]
            .into_iter()
            .flatten()
        {
            std::fs::create_dir_all(dir).map_err(|source| VmError::Prepare {
                path: dir.display().to_string(),
                source,
            })?;
        }
        let _ = std::fs::remove_file(&spec.qmp_socket);
        let stderr_log = spec.serial_log.with_file_name("qemu.stderr.log");
        let stderr = std::fs::File::create(&stderr_log).map_err(|source| VmError::Prepare {
            path: stderr_log.display().to_string(),
            source,
        })?;
        let (program, args) = match bounds {
            Some(b) => confinement.command(qemu, spec.args(), &b),
            None => (qemu.to_path_buf(), spec.args()),
        };
        let mut child = tokio::process::Command::new(&program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| VmError::Spawn {
                qemu: qemu.display().to_string(),
                source,
            })?;
        if let (Some(cgroups), Some(b), Some(pid)) = (&confinement.cgroups, &bounds, child.id())
            && let Err(source) = cgroups.enter(&spec.name, pid, b)
        {
            let _ = child.start_kill();
            return Err(VmError::Prepare {
                path: cgroups.root().display().to_string(),
                source,
            });
        }
        let deadline = tokio::time::Instant::now() + timeouts.qmp_ready;
        let qmp = loop {
            if let Some(status) = child.try_wait().map_err(VmError::Qmp)? {
                return Err(VmError::ExitedEarly {
                    status: status.to_string(),
                    log: stderr_log.display().to_string(),
                });
            }
            if spec.qmp_socket.exists() {
                let connect = async {
                    let stream = QmpStreamTokio::open_uds(&spec.qmp_socket).await?;
                    let stream = stream.negotiate().await?;
                    let (service, _events) = stream.spawn_tokio();
                    std::io::Result::Ok(service)
                };
                match tokio::time::timeout_at(deadline, connect).await {
                    Ok(Ok(service)) => break service,
                    Ok(Err(_)) => {} // not listening yet: retry
                    Err(_) => return Err(VmError::QmpTimeout(timeouts.qmp_ready)),
                }
            }
            if tokio::time::Instant::now() >= deadline {
                let _ = child.start_kill();
                return Err(VmError::QmpTimeout(timeouts.qmp_ready));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        Ok(Vm {
            spec,
            child,
            qmp: Some(qmp),
            timeouts,
            stderr_log,
        })
    }

    pub fn spec(&self) -> &VmSpec {
        &self.spec
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Where QEMU's own error output goes.
    pub fn stderr_log(&self) -> &Path {
        &self.stderr_log
    }

    /// The guest's state (QMP `query-status`).
    pub async fn state(&mut self) -> Result<VmState, VmError> {
        if self.child.try_wait().map_err(VmError::Qmp)?.is_some() {
            return Ok(VmState::Shutdown);
        }
        let qmp = self.qmp.as_ref().ok_or(VmError::NotRunning)?;
        let info = tokio::time::timeout(
            self.timeouts.command,
            qmp.execute(qapi::qmp::query_status {}),
        )
        .await
        .map_err(|_| VmError::QmpTimeout(self.timeouts.command))?
        .map_err(|e| VmError::QmpRefused(e.to_string()))?;
        let status = serde_json::to_value(info.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        Ok(match status.as_str() {
            "running" => VmState::Running,
            "guest-panicked" => VmState::GuestPanicked,
            "internal-error" => VmState::InternalError,
            "shutdown" => VmState::Shutdown,
            "paused" | "prelaunch" | "inmigrate" | "suspended" | "debug" => VmState::Paused(status),
            _ => VmState::Other(status),
        })
    }

    /// Stops the VM: QMP `quit`, then SIGKILL if it is still there after the quit timeout.
    pub async fn stop(mut self) -> Result<Exit, VmError> {
        if let Some(qmp) = self.qmp.take() {
            let _ =
                tokio::time::timeout(self.timeouts.command, qmp.execute(qapi::qmp::quit {})).await;
        }
        match tokio::time::timeout(self.timeouts.quit, self.child.wait()).await {
            Ok(Ok(status)) => {
                self.cleanup();
                Ok(Exit {
                    status: status.to_string(),
                    killed: false,
                })
            }
            _ => self.kill().await,
        }
    }

    /// Ends the VM at once (SIGKILL).
    pub async fn kill(mut self) -> Result<Exit, VmError> {
        self.qmp = None;
        let _ = self.child.start_kill();
        let status = self.child.wait().await.map_err(VmError::Qmp)?;
        self.cleanup();
        Ok(Exit {
            status: status.to_string(),
            killed: true,
        })
    }

    /// Waits (at most `limit`) for QEMU to exit on its own, e.g. after the guest powers off.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<String> {
        match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(Ok(status)) => Some(status.to_string()),
            _ => None,
        }
    }

    fn cleanup(&self) {
        let _ = std::fs::remove_file(&self.spec.qmp_socket);
        let _ = std::fs::remove_file(&self.spec.pid_file);
    }
}

/// What a [`VmCommand`] returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VmResponse {
    Started { pid: Option<u32> },
    State(VmState),
    Stopped(Exit),
}

/// The VMs of this node by name; the one place that executes [`VmCommand`]s.
#[derive(Debug)]
pub struct Vms {
    qemu: PathBuf,
    timeouts: Timeouts,
    running: std::collections::HashMap<String, Vm>,
}

impl Vms {
    pub fn new(qemu: PathBuf, timeouts: Timeouts) -> Self {
        Self {
            qemu,
            timeouts,
            running: std::collections::HashMap::new(),
        }
    }

    pub async fn handle(&mut self, name: &str, command: VmCommand) -> Result<VmResponse, VmError> {
        match command {
            VmCommand::Start(spec) => {
                let vm = Vm::start(&self.qemu, *spec, self.timeouts).await?;
                let pid = vm.pid();
                self.running.insert(name.to_string(), vm);
                Ok(VmResponse::Started { pid })
            }
            VmCommand::Query => {
                let vm = self.running.get_mut(name).ok_or(VmError::NotRunning)?;
                vm.state().await.map(VmResponse::State)
            }
            VmCommand::Stop => {
                let vm = self.running.remove(name).ok_or(VmError::NotRunning)?;
                vm.stop().await.map(VmResponse::Stopped)
            }
            VmCommand::Kill => {
                let vm = self.running.remove(name).ok_or(VmError::NotRunning)?;
                vm.kill().await.map(VmResponse::Stopped)
            }
        }
    }

    pub fn names(&self) -> Vec<String> {
        self.running.keys().cloned().collect()
    }
}

/// Ends QEMU processes left over by an earlier run of the node: every `<vms_dir>/<name>/run/qemu.pid`
/// (or `<name>/qemu.pid`, where earlier versions kept it)
/// whose process is still a `gevulot-<name>` QEMU is killed, as is the VM's hybrid vsock daemon
/// (its pid in [`DAEMON_PID_FILE`], its command line naming the VM's directory), and every VM
/// directory is removed. Returns the names of the VMs that were still running.
pub fn reap_orphans(vms_dir: &Path, proc_root: &Path) -> Vec<String> {
    let mut killed = Vec::new();
    let Ok(entries) = std::fs::read_dir(vms_dir) else {
        return killed;
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let qemu = [dir.join("run/qemu.pid"), dir.join("qemu.pid")];
        if kill_named(&qemu, &format!("gevulot-{name}"), proc_root) {
            killed.push(name);
        }
        let daemon = dir.join("vhost-user-vsock.sock");
        kill_named(
            &[dir.join(DAEMON_PID_FILE)],
            &daemon.to_string_lossy(),
            proc_root,
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
    killed
}

/// Kills the process whose pid the first readable of `pid_files` holds, if its command line
/// contains `named` (a pid may have been reused); returns whether it did.
fn kill_named(pid_files: &[PathBuf], named: &str, proc_root: &Path) -> bool {
    let Some(pid) = pid_files
        .iter()
        .find_map(|f| std::fs::read_to_string(f).ok())
        .and_then(|p| p.trim().parse::<u32>().ok())
    else {
        return false;
    };
    let cmdline = std::fs::read(proc_root.join(format!("proc/{pid}/cmdline")))
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .unwrap_or_default();
    if !cmdline.contains(named) {
        return false;
    }
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status();
    true
}
