//! VM timings under the emulation this machine has (TCG): spawn → agent ready and spawn →
//! result for the test prover through the node's runner and guest server (median of several
//! boots), and the node's overhead over a bare QEMU boot of the same image measured in the same
//! run. Prints a table and writes `target/bench/vm.txt`.
//!
//! `cargo bench -p app --bench vm` (needs `scripts/build-vm-fixtures`, QEMU and
//! vhost-device-vsock; `GEVULOT_BENCH_BOOTS` sets the number of boots).

use std::fmt::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use app::vm::guest_server::{GuestHandler, HybridDaemon, hybrid_listener_path, serve_hybrid};
use app::vm::qemu::{Accel, Boot, VmSpec, Vsock};
use app::vm::runner::{Timeouts, Vm};
use guest::proto::{Task, TaskResultRequest};
use testkit::vm::require;

struct OneTask {
    done: tokio::sync::Notify,
    got: Mutex<bool>,
}

impl GuestHandler for OneTask {
    async fn get_task(&self, _vm: &str) -> Option<Task> {
        Some(Task {
            tx_hash: "ab".repeat(32),
            name: "test-prover".into(),
            args: vec![],
            files: vec!["/workspace/in.txt".into()],
        })
    }

    async fn submit_result(&self, _vm: &str, _r: TaskResultRequest) -> Result<bool, tonic::Status> {
        *self
            .got
            .lock()
            .map_err(|_| tonic::Status::internal("lock"))? = true;
        self.done.notify_one();
        Ok(false)
    }
}

const AGENT_READY: &str = "gevulot-agent: running";

fn spec(dir: &Path, kernel: &Path, initrd: &Path, socket: &Path) -> VmSpec {
    VmSpec {
        name: "bench".into(),
        accel: Accel::Tcg,
        cpus: 1,
        mem_mib: 512,
        boot: Boot::Kernel {
            kernel: kernel.to_path_buf(),
            initrd: initrd.to_path_buf(),
            cmdline: "quiet gevulot.program=/bin/test-prover".into(),
        },
        workspace: dir.join("workspace"),
        vsock: Vsock::Hybrid {
            socket: socket.to_path_buf(),
        },
        gpus: vec![],
        serial_log: dir.join("console.log"),
        qmp_socket: dir.join("qmp.sock"),
        pid_file: dir.join("qemu.pid"),
    }
}

async fn wait_for_console(log: &Path, start: Instant) -> anyhow::Result<Duration> {
    let deadline = start + Duration::from_secs(120);
    loop {
        if std::fs::read_to_string(log)
            .unwrap_or_default()
            .contains(AGENT_READY)
        {
            return Ok(start.elapsed());
        }
        anyhow::ensure!(Instant::now() < deadline, "the agent never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let (Some(qemu), Some(_)) = (require("qemu-system-x86_64"), require("vhost-device-vsock"))
    else {
        return Ok(());
    };
    let Some(fx) = testkit::vm::fixtures() else {
        return Ok(());
    };
    let boots: usize = std::env::var("GEVULOT_BENCH_BOOTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let initrd_bytes = testkit::vm::initramfs(&fx)?;
    let (mut node_ready, mut node_result, mut bare_ready) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..boots {
        rt.block_on(async {
            // Through the node: runner (QMP), guest server.
            let dir = testkit::tempdir();
            std::fs::create_dir_all(dir.path().join("workspace"))?;
            std::fs::write(dir.path().join("workspace/in.txt"), b"input")?;
            let initrd = dir.path().join("initrd.img");
            std::fs::write(&initrd, &initrd_bytes)?;
            let daemon = HybridDaemon::start(
                Path::new("vhost-device-vsock"),
                &dir.path().join("vsock"),
                3 + i as u32,
            )?;
            let handler = Arc::new(OneTask {
                done: tokio::sync::Notify::new(),
                got: Mutex::new(false),
            });
            let listener = tokio::net::UnixListener::bind(hybrid_listener_path(&daemon.uds, 8080))?;
            tokio::spawn(serve_hybrid(listener, "bench".into(), handler.clone()));
            let s = spec(dir.path(), &fx.vmlinux, &initrd, &daemon.socket);
            let log = s.serial_log.clone();
            let start = Instant::now();
            let mut vm = Vm::start(&qemu, s, Timeouts::default()).await?;
            node_ready.push(wait_for_console(&log, start).await?);
            tokio::time::timeout(Duration::from_secs(120), handler.done.notified()).await?;
            node_result.push(start.elapsed());
            vm.wait_exit(Duration::from_secs(30)).await;

            // Bare QEMU, same arguments and image, nothing of the node around it.
            let dir = testkit::tempdir();
            std::fs::create_dir_all(dir.path().join("workspace"))?;
            let initrd = dir.path().join("initrd.img");
            std::fs::write(&initrd, &initrd_bytes)?;
            let daemon = HybridDaemon::start(
                Path::new("vhost-device-vsock"),
                &dir.path().join("vsock"),
                3 + i as u32,
            )?;
            let s = spec(dir.path(), &fx.vmlinux, &initrd, &daemon.socket);
            let start = Instant::now();
            let mut child = tokio::process::Command::new(&qemu)
                .args(s.args())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true)
                .spawn()?;
            bare_ready.push(wait_for_console(&s.serial_log, start).await?);
            let _ = child.kill().await;
            anyhow::Ok(())
        })?;
    }
    let (nr, nres, br) = (median(node_ready), median(node_result), median(bare_ready));
    let mut report = String::new();
    let _ = writeln!(
        report,
        "vm benchmark: {boots} boots each, TCG, 1 vCPU, 512 MiB, kernel bundle (PVH vmlinux)"
    );
    let _ = writeln!(
        report,
        "{:<58} {:>8.0} ms",
        "spawn -> agent ready, through the node (median)",
        nr.as_secs_f64() * 1000.0
    );
    let _ = writeln!(
        report,
        "{:<58} {:>8.0} ms",
        "spawn -> result submitted, through the node (median)",
        nres.as_secs_f64() * 1000.0
    );
    let _ = writeln!(
        report,
        "{:<58} {:>8.0} ms",
        "spawn -> agent ready, bare QEMU (median)",
        br.as_secs_f64() * 1000.0
    );
    let _ = writeln!(
        report,
        "{:<58} {:>8.0} ms ({:.2}x)",
        "node overhead to agent ready",
        (nr.as_secs_f64() - br.as_secs_f64()) * 1000.0,
        nr.as_secs_f64() / br.as_secs_f64()
    );
    print!("{report}");
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    testkit::bench::Figures::new("vm")
        .against(
            "spawn -> agent ready through the node (median)",
            ms(nr),
            "ms",
            "bare QEMU",
            ms(br),
        )
        .add(
            "spawn -> result submitted through the node (median)",
            ms(nres),
            "ms",
        )
        .write(&report);
    Ok(())
}
