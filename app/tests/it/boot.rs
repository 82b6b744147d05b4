//! Real VMs under TCG with the hybrid vsock: Debian's kernel, the guest agent as `/init`, and the
//! test prover, which gets its task over gRPC, reads its input from `/workspace`, writes a proof
//! file and submits it; the node checks the output's checksum itself.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use app::vm::guest_server::{GuestHandler, HybridDaemon, hybrid_listener_path, serve_hybrid};
use app::vm::outputs;
use app::vm::qemu::{Accel, Boot, VmSpec, Vsock};
use app::vm::runner::{Timeouts, Vm};
use guest::proto::{Task, TaskResultRequest, task_result_request};
use testkit::vm::require;

struct OneTask {
    task: Task,
    result: Mutex<Option<TaskResultRequest>>,
    done: tokio::sync::Notify,
}

impl GuestHandler for OneTask {
    async fn get_task(&self, _vm: &str) -> Option<Task> {
        Some(self.task.clone())
    }

    async fn submit_result(
        &self,
        _vm: &str,
        result: TaskResultRequest,
    ) -> Result<bool, tonic::Status> {
        *self.result.lock().expect("lock") = Some(result);
        self.done.notify_one();
        Ok(false)
    }
}

#[tokio::test]
async fn test_prover_gets_its_task_and_submits_a_checked_output() {
    boot_and_prove(false).await;
}

/// The original's image format: a raw bootable disk on read-only virtio-SCSI, booted by the
/// firmware (slower: the compressed kernel is unpacked under emulation).
#[tokio::test]
async fn raw_disk_image_boots_the_same_program() {
    boot_and_prove(true).await;
}

async fn boot_and_prove(raw_disk: bool) {
    let (Some(qemu), Some(_)) = (require("qemu-system-x86_64"), require("vhost-device-vsock"))
    else {
        return;
    };
    let Some(fx) = testkit::vm::fixtures() else {
        return;
    };
    let dir = testkit::tempdir();
    let workspace = dir.path().join("workspace");
    std::fs::create_dir_all(&workspace).expect("workspace");
    std::fs::write(workspace.join("in.txt"), b"input file contents").expect("input");
    let initrd = dir.path().join("initrd.img");
    std::fs::write(&initrd, testkit::vm::initramfs(&fx).expect("initramfs")).expect("write");

    let daemon = HybridDaemon::start(
        Path::new("vhost-device-vsock"),
        &dir.path().join("vsock"),
        3,
    )
    .expect("vsock daemon");
    let (socket, uds) = (daemon.socket.clone(), daemon.uds.clone());
    let handler = Arc::new(OneTask {
        task: Task {
            tx_hash: "ab".repeat(32),
            name: "test-prover".into(),
            args: vec!["--nonce".into(), "1".into()],
            files: vec!["/workspace/in.txt".into()],
        },
        result: Mutex::new(None),
        done: tokio::sync::Notify::new(),
    });
    let listener =
        tokio::net::UnixListener::bind(hybrid_listener_path(&uds, 8080)).expect("listen");
    tokio::spawn(serve_hybrid(listener, "t".into(), handler.clone()));

    let cmdline = "quiet gevulot.program=/bin/test-prover";
    let boot = if raw_disk {
        if require("syslinux").is_none() {
            return;
        }
        let image = dir.path().join("program.img");
        testkit::vm::raw_disk(&fx, &initrd, cmdline, &image).expect("raw disk image");
        assert_eq!(
            app::vm::image::detect_file(&image).expect("read"),
            app::vm::image::ImageFormat::RawDisk
        );
        Boot::Disk { image }
    } else {
        Boot::Kernel {
            kernel: fx.vmlinux.clone(),
            initrd,
            cmdline: cmdline.into(),
        }
    };
    let spec = VmSpec {
        name: "boot".into(),
        accel: Accel::Tcg,
        cpus: 1,
        mem_mib: 512,
        boot,
        workspace: workspace.clone(),
        vsock: Vsock::Hybrid { socket },
        gpus: vec![],
        serial_log: dir.path().join("console.log"),
        qmp_socket: dir.path().join("qmp.sock"),
        pid_file: dir.path().join("qemu.pid"),
    };
    let started = Instant::now();
    let mut vm = Vm::start(&qemu, spec, Timeouts::default())
        .await
        .expect("start");
    let got = tokio::time::timeout(Duration::from_secs(120), handler.done.notified()).await;
    let console = || std::fs::read_to_string(dir.path().join("console.log")).unwrap_or_default();
    assert!(
        got.is_ok(),
        "no result within 120 s; console:\n{}",
        console()
    );
    eprintln!("spawn to result: {:?}", started.elapsed());
    // The agent powers the VM off after the program ends.
    let exit = vm.wait_exit(Duration::from_secs(60)).await;
    assert!(
        exit.is_some(),
        "the VM did not power off; console:\n{}",
        console()
    );

    let result = handler
        .result
        .lock()
        .expect("lock")
        .clone()
        .expect("a result");
    let Some(task_result_request::Result::Task(task)) = result.result else {
        panic!("the program failed; console:\n{}", console());
    };
    let expected = format!(
        "proof:{}:--nonce 1",
        blake3::hash(b"input file contents").to_hex()
    );
    assert_eq!(String::from_utf8_lossy(&task.data), expected);
    assert_eq!(task.files.len(), 1);
    let accepted = outputs::accept(
        &workspace,
        &task.files[0].path,
        &task.files[0].checksum,
        1 << 20,
    )
    .expect("the node accepts the output after recomputing its checksum");
    assert_eq!(
        std::fs::read_to_string(accepted.host_path).expect("proof"),
        expected
    );
}
