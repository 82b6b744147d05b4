//! One task in one real VM (TCG, hybrid vsock) through the executor, for every way a task ends:
//! success with checked outputs, the program reporting failure, the VM stopping without a
//! result, a hung guest killed at its deadline, and a cancellation.

use std::path::{Path, PathBuf};
use std::time::Duration;

use app::vm::executor::{Executor, ExecutorConfig, Outcome, TaskSpec, VsockMode};
use app::vm::qemu::Accel;
use app::vm::runner::Timeouts;
use testkit::vm::{Fixtures, require};

struct Setup {
    exec: Executor,
    fx: Fixtures,
    dir: tempfile::TempDir,
    initrd: Vec<u8>,
}

fn setup() -> Option<Setup> {
    let qemu = require("qemu-system-x86_64")?;
    let daemon = require("vhost-device-vsock")?;
    let fx = testkit::vm::fixtures()?;
    let dir = testkit::tempdir();
    let exec = Executor::new(ExecutorConfig {
        qemu,
        vms_dir: dir.path().join("vms"),
        log_dir: dir.path().join("log"),
        accel: Accel::Tcg,
        vsock: VsockMode::Hybrid { daemon },
        port: 8080,
        timeouts: Timeouts::default(),
        max_output_bytes: 1 << 20,
        max_workspace_bytes: 64 << 20,
        confinement: Default::default(),
        max_guest_message_bytes: app::vm::executor::guest_message_bytes(16 << 20),
    });
    let initrd = testkit::vm::initramfs(&fx).expect("initramfs");
    Some(Setup {
        exec,
        fx,
        dir,
        initrd,
    })
}

impl Setup {
    fn bundle(&self, program: &str) -> PathBuf {
        let out = self
            .dir
            .path()
            .join(format!("{}.img", program.replace('/', "_")));
        testkit::vm::kernel_bundle(
            &self.fx,
            &self.initrd,
            &format!("quiet gevulot.program={program}"),
            &out,
        )
        .expect("bundle");
        out
    }

    fn input(&self, name: &str, content: &[u8]) -> PathBuf {
        let p = self.dir.path().join("inputs").join(name);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, content).expect("write");
        p
    }

    fn task(
        &self,
        id: &str,
        image: PathBuf,
        inputs: Vec<(String, PathBuf)>,
        deadline: Duration,
    ) -> TaskSpec {
        TaskSpec {
            id: id.into(),
            tx_hash: "ab".repeat(32),
            program_name: "test".into(),
            image,
            args: vec!["--nonce".into(), "7".into()],
            inputs,
            cpus: 1,
            mem_mib: 512,
            gpus: vec![],
            deadline,
        }
    }
}

fn no_cancel() -> tokio::sync::watch::Receiver<bool> {
    // The sender lives for the whole test run, so `changed()` never fires.
    static KEEP: std::sync::OnceLock<tokio::sync::watch::Sender<bool>> = std::sync::OnceLock::new();
    KEEP.get_or_init(|| tokio::sync::watch::channel(false).0)
        .subscribe()
}

fn gone(exec: &Executor, id: &str) -> bool {
    !exec.vm_dir(id).join("run/qemu.pid").exists() && !exec.vm_dir(id).join("run/qmp.sock").exists()
}

#[tokio::test]
async fn a_prover_succeeds_with_checked_outputs() {
    let Some(s) = setup() else { return };
    let input = s.input("in.txt", b"input file contents");
    let spec = s.task(
        "ok",
        s.bundle("/bin/test-prover"),
        vec![("/workspace/in.txt".into(), input)],
        Duration::from_secs(120),
    );
    let outcome = s.exec.run(&spec, no_cancel()).await.expect("run");
    let Outcome::Succeeded { data, outputs } = outcome else {
        panic!(
            "{outcome:?}; console: {}",
            app::vm::executor::log_tail(&s.exec.console_log("ok"), 2000)
        );
    };
    let expected = format!(
        "proof:{}:--nonce 7",
        blake3::hash(b"input file contents").to_hex()
    );
    assert_eq!(String::from_utf8_lossy(&data), expected);
    assert_eq!(outputs.len(), 1);
    assert_eq!(outputs[0].vm_path, "/workspace/proof.dat");
    assert_eq!(
        outputs[0].checksum.0,
        *blake3::hash(expected.as_bytes()).as_bytes()
    );
    assert!(gone(&s.exec, "ok"));
}

#[tokio::test]
async fn the_program_reports_failure() {
    let Some(s) = setup() else { return };
    let bad = s.input("proof.dat", b"not a proof");
    let spec = s.task(
        "bad",
        s.bundle("/bin/test-verifier"),
        vec![("/workspace/proof.dat".into(), bad)],
        Duration::from_secs(120),
    );
    match s.exec.run(&spec, no_cancel()).await.expect("run") {
        Outcome::Failed { reason, retryable } => {
            assert!(!retryable, "a program's own failure is not retried");
            assert!(reason.contains("reported that the task failed"), "{reason}");
            assert!(
                reason.contains("is not a proof of the test prover"),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_vm_that_stops_without_a_result_fails_with_the_reason() {
    let Some(s) = setup() else { return };
    let spec = s.task(
        "missing",
        s.bundle("/bin/missing"),
        vec![],
        Duration::from_secs(120),
    );
    match s.exec.run(&spec, no_cancel()).await.expect("run") {
        Outcome::Failed { reason, retryable } => {
            assert!(retryable);
            assert!(reason.contains("without a result"), "{reason}");
            assert!(reason.contains("cannot run /bin/missing"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert!(gone(&s.exec, "missing"));
}

#[tokio::test]
async fn a_guest_kernel_panic_fails_the_task_with_the_reason() {
    let Some(s) = setup() else { return };
    let spec = s.task(
        "panic",
        s.bundle("/bin/test-crash"),
        vec![],
        Duration::from_secs(120),
    );
    match s.exec.run(&spec, no_cancel()).await.expect("run") {
        Outcome::Failed { reason, retryable } => {
            assert!(retryable);
            assert!(reason.contains("panicked"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert!(gone(&s.exec, "panic"));
}

#[tokio::test]
async fn a_hung_guest_is_killed_at_its_deadline() {
    let Some(s) = setup() else { return };
    // Nothing bootable: the firmware waits forever, like a hung program.
    let blank = s.dir.path().join("blank.img");
    std::fs::write(&blank, vec![0u8; 1 << 20]).expect("disk");
    let spec = s.task("hung", blank, vec![], Duration::from_secs(3));
    let started = std::time::Instant::now();
    assert_eq!(
        s.exec.run(&spec, no_cancel()).await.expect("run"),
        Outcome::TimedOut
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(gone(&s.exec, "hung"));
}

#[tokio::test]
async fn a_cancelled_task_stops_its_vm() {
    let Some(s) = setup() else { return };
    let input = s.input("in2.txt", b"x");
    let spec = s.task(
        "cancel",
        s.bundle("/bin/test-prover"),
        vec![("/workspace/in.txt".into(), input)],
        Duration::from_secs(120),
    );
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(800)).await;
        let _ = tx.send(true);
        tokio::time::sleep(Duration::from_secs(60)).await;
    });
    assert_eq!(
        s.exec.run(&spec, rx).await.expect("run"),
        Outcome::Cancelled
    );
    assert!(gone(&s.exec, "cancel"));
}

#[test]
fn inputs_outside_the_workspace_are_refused() {
    let Some(s) = setup() else { return };
    let spec = s.task(
        "escape",
        PathBuf::from("/nonexistent"),
        vec![("/etc/passwd".into(), Path::new("/dev/null").into())],
        Duration::from_secs(1),
    );
    let rt = tokio::runtime::Runtime::new().expect("rt");
    let err = rt
        .block_on(s.exec.run(&spec, no_cancel()))
        .expect_err("refused");
    assert!(err.to_string().contains("/etc/passwd"), "{err}");
}
