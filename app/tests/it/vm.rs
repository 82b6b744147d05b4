//! A real QEMU (TCG) with the hybrid vsock daemon: start, QMP state, stop with `quit`, kill at a
//! deadline, an early exit with its reason, and orphans from a previous run reaped.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use app::vm::guest_server::{DAEMON_PID_FILE, HybridDaemon};
use app::vm::qemu::{Accel, Boot, VmSpec, Vsock};
use app::vm::runner::{Timeouts, Vm, VmCommand, VmError, VmResponse, VmState, Vms, reap_orphans};
use testkit::vm::require;

/// A VM whose disk has nothing bootable: the firmware runs and waits, like a hung guest.
fn spec(dir: &Path, name: &str, socket: PathBuf) -> VmSpec {
    let vm = dir.join("vms").join(name);
    std::fs::create_dir_all(vm.join("workspace")).expect("mkdir");
    std::fs::create_dir_all(dir.join("log").join(name)).expect("mkdir");
    let disk = dir.join("blank.img");
    std::fs::write(&disk, vec![0u8; 1 << 20]).expect("disk");
    VmSpec {
        name: name.to_string(),
        accel: Accel::Tcg,
        cpus: 1,
        mem_mib: 128,
        boot: Boot::Disk { image: disk },
        workspace: vm.join("workspace"),
        vsock: Vsock::Hybrid { socket },
        gpus: vec![],
        serial_log: dir.join("log").join(name).join("console.log"),
        qmp_socket: vm.join("run/qmp.sock"),
        pid_file: vm.join("run/qemu.pid"),
    }
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

#[tokio::test]
async fn lifecycle_over_qmp() {
    let (Some(qemu), Some(_)) = (require("qemu-system-x86_64"), require("vhost-device-vsock"))
    else {
        return;
    };
    let dir = testkit::tempdir();
    let mut vms = Vms::new(qemu.clone(), Timeouts::default());

    // Start, query, stop with QMP quit.
    let d1 = HybridDaemon::start(Path::new("vhost-device-vsock"), &dir.path().join("d1"), 3)
        .expect("daemon");
    let socket = d1.socket.clone();
    let started = vms
        .handle(
            "a",
            VmCommand::Start(Box::new(spec(dir.path(), "a", socket))),
        )
        .await
        .expect("start");
    let VmResponse::Started { pid: Some(pid) } = started else {
        panic!("{started:?}")
    };
    assert!(alive(pid));
    // QEMU runs under its seccomp sandbox (mode 2: a filter is installed).
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    assert!(
        status
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["Seccomp:", "2"]),
        "QEMU is not sandboxed: {status}"
    );
    assert_eq!(
        vms.handle("a", VmCommand::Query).await.expect("query"),
        VmResponse::State(VmState::Running)
    );
    let stopped = vms.handle("a", VmCommand::Stop).await.expect("stop");
    assert!(
        matches!(stopped, VmResponse::Stopped(ref e) if !e.killed),
        "{stopped:?}"
    );
    assert!(!alive(pid));
    assert!(
        !dir.path().join("vms/a/run/qmp.sock").exists(),
        "the QMP socket is cleaned up"
    );
    assert!(matches!(
        vms.handle("a", VmCommand::Query).await,
        Err(VmError::NotRunning)
    ));

    // A guest that never finishes is killed at its deadline.
    let d2 = HybridDaemon::start(Path::new("vhost-device-vsock"), &dir.path().join("d2"), 4)
        .expect("daemon");
    let socket = d2.socket.clone();
    let mut vm = Vm::start(&qemu, spec(dir.path(), "b", socket), Timeouts::default())
        .await
        .expect("start");
    let pid = vm.pid().expect("pid");
    assert_eq!(
        vm.wait_exit(Duration::from_millis(500)).await,
        None,
        "still running at the deadline"
    );
    let exit = vm.kill().await.expect("kill");
    assert!(exit.killed && exit.status.contains("signal"), "{exit:?}");
    assert!(!alive(pid));

    // QEMU that cannot start reports why.
    let d3 = HybridDaemon::start(Path::new("vhost-device-vsock"), &dir.path().join("d3"), 5)
        .expect("daemon");
    let socket = d3.socket.clone();
    let mut broken = spec(dir.path(), "c", socket);
    broken.boot = Boot::Disk {
        image: dir.path().join("missing.img"),
    };
    match Vm::start(&qemu, broken, Timeouts::default()).await {
        Err(VmError::ExitedEarly { log, .. }) => {
            let text = std::fs::read_to_string(log).expect("stderr log");
            assert!(text.contains("missing.img"), "{text}");
        }
        other => panic!("expected an early exit, got {other:?}"),
    }
}

#[test]
fn orphans_of_a_killed_node_are_reaped() {
    let (Some(qemu), Some(_)) = (require("qemu-system-x86_64"), require("vhost-device-vsock"))
    else {
        return;
    };
    let dir = testkit::tempdir();
    // The VM's vsock daemon, in the VM's directory as the executor starts it.
    let vm_dir = dir.path().join("vms/orphan");
    let d = HybridDaemon::start(Path::new("vhost-device-vsock"), &vm_dir, 6).expect("daemon");
    let socket = d.socket.clone();
    let daemon: u32 = std::fs::read_to_string(vm_dir.join(DAEMON_PID_FILE))
        .expect("the daemon's pid file")
        .parse()
        .expect("pid");
    // The node "dies" without dropping it.
    std::mem::forget(d);
    let s = spec(dir.path(), "orphan", socket);
    // Started the way the node starts it, but the node "dies": nothing owns the process now.
    std::fs::create_dir_all(s.pid_file.parent().expect("run/")).expect("run/");
    let mut child = Command::new(&qemu)
        .args(s.args())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("qemu starts");
    for _ in 0..200 {
        if s.pid_file.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let pid = child.id();
    assert!(alive(pid));
    // An unrelated leftover directory with a stale pid (where earlier versions kept it) is
    // removed but nothing is killed.
    let stale = dir.path().join("vms/stale");
    std::fs::create_dir_all(&stale).expect("mkdir");
    std::fs::write(stale.join("qemu.pid"), std::process::id().to_string()).expect("write");

    assert!(alive(daemon));
    let killed = reap_orphans(&dir.path().join("vms"), Path::new("/"));
    assert_eq!(killed, vec!["orphan".to_string()]);
    let _ = child.wait();
    assert!(!alive(pid));
    assert!(!alive(daemon), "the VM's vsock daemon is reaped too");
    assert!(!dir.path().join("vms/orphan").exists() && !stale.exists());
}

#[tokio::test]
async fn the_canary_runs_under_tcg_and_auto_decides_here() {
    use app::vm::accel::{AccelChoice, canary, decide};
    let Some(qemu) = require("qemu-system-x86_64") else {
        return;
    };
    let dir = testkit::tempdir();
    // The canary itself works: under TCG it reaches its exit.
    canary(&qemu, Accel::Tcg, dir.path(), Duration::from_secs(20))
        .await
        .expect("the canary boots under TCG");
    // On this machine (a VM with a paravirtual KVM, or none) `auto` chooses TCG and says why;
    // on a KVM host it would choose KVM.
    let decision = decide(AccelChoice::Auto, &qemu, Path::new("/"), dir.path()).await;
    if decision.accel == Accel::Tcg {
        assert!(
            decision.reason.contains("software emulation"),
            "{decision:?}"
        );
    }
    assert_eq!(
        decide(AccelChoice::Tcg, &qemu, Path::new("/"), dir.path())
            .await
            .accel,
        Accel::Tcg
    );
}
