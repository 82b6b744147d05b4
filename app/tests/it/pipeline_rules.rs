//! The pipeline's state machine without VMs: a scripted executor plays each attempt's outcome
//! (success, a crash, the program's failure, a VM that never boots or never ends), so the rules
//! for retries, the deadline, cancellation in every phase and recovery after a restart are tested
//! in milliseconds. The real executor's tests (`server/tests/it/pipeline.rs`) boot real VMs.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use app::crypto::SecretKey;
use app::data_dir::DataDir;
use app::download::{Downloader, Limits as DownloadLimits};
use app::model::{NewTask, Phase, PhaseChange, Source, Task, TaskKind};
use app::node::{AclPolicy, Intake};
use app::pipeline::{Config, Execute, Pipeline};
use app::store::Store;
use app::tx::{
    Hash, Payload, ProgramData, ProgramMetadata, ResourceRequest, Transaction, Workflow,
    WorkflowStep,
};
use app::validate::Limits;
use app::vm::executor::{ExecError, Outcome, TaskSpec};
use app::vm::outputs::AcceptedOutput;
use tokio::sync::{oneshot, watch};

/// What one attempt of a program does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Act {
    /// The program asks for its task and submits a result.
    Succeed,
    /// The VM dies after the program started (retryable).
    Crash,
    /// The program reports its own failure (final).
    Fail,
    /// The VM never gets as far as the program asking for its task.
    HangBooting,
    /// The program runs until it is stopped: by a cancel, or at the deadline.
    HangRunning,
}

/// Plays each program's script, one act per attempt (the last act repeats), and counts attempts.
#[derive(Clone, Default)]
pub(crate) struct Scripted {
    scripts: Arc<Mutex<HashMap<String, VecDeque<Act>>>>,
    attempts: Arc<Mutex<HashMap<String, usize>>>,
}

impl Scripted {
    pub(crate) fn script(&self, program: &str, acts: &[Act]) {
        self.scripts
            .lock()
            .expect("scripts")
            .insert(program.to_string(), acts.iter().copied().collect());
    }

    pub(crate) fn attempts(&self, program: &str) -> usize {
        self.attempts
            .lock()
            .expect("attempts")
            .get(program)
            .copied()
            .unwrap_or(0)
    }

    fn next(&self, program: &str) -> Act {
        *self
            .attempts
            .lock()
            .expect("attempts")
            .entry(program.to_string())
            .or_default() += 1;
        let mut scripts = self.scripts.lock().expect("scripts");
        let script = scripts.entry(program.to_string()).or_default();
        if script.len() > 1 {
            script.pop_front().unwrap_or(Act::Succeed)
        } else {
            script.front().copied().unwrap_or(Act::Succeed)
        }
    }
}

impl Execute for Scripted {
    async fn execute(
        &self,
        spec: TaskSpec,
        mut cancel: watch::Receiver<bool>,
        started: oneshot::Sender<()>,
    ) -> Result<Outcome, ExecError> {
        let act = self.next(&spec.program_name);
        if act != Act::HangBooting {
            let _ = started.send(());
        }
        Ok(match act {
            Act::Succeed => Outcome::Succeeded {
                data: b"proof".to_vec(),
                outputs: vec![],
            },
            Act::Crash => Outcome::Failed {
                reason: "the VM crashed".into(),
                retryable: true,
            },
            Act::Fail => Outcome::Failed {
                reason: "the program exited with status 3".into(),
                retryable: false,
            },
            Act::HangBooting | Act::HangRunning => {
                tokio::select! {
                    _ = cancel.wait_for(|c| *c) => Outcome::Cancelled,
                    () = tokio::time::sleep(spec.deadline) => Outcome::TimedOut,
                }
            }
        })
    }

    fn store_outputs(
        &self,
        _: &[AcceptedOutput],
        _: &DataDir,
        _: &Hash,
    ) -> std::io::Result<Vec<PathBuf>> {
        Ok(vec![])
    }

    fn cleanup(&self, _: &str) {}
}

const MEM_MIB: u64 = 8192;

/// A store, an intake and the image every program uses already in the content store (no
/// download), and the keys of the node and of a client.
pub(crate) struct Lab {
    pub(crate) _dir: tempfile::TempDir,
    pub(crate) data: DataDir,
    pub(crate) store: Store,
    pub(crate) intake: Intake,
    pub(crate) node: SecretKey,
    pub(crate) client: SecretKey,
    pub(crate) checksum: String,
    pub(crate) exec: Scripted,
    pub(crate) nonce: std::sync::atomic::AtomicU64,
}

/// The pipeline's settings for these tests: quick retries, a deadline far away unless a test
/// sets one.
pub(crate) fn settings(data: &DataDir) -> Config {
    Config {
        data_dir: data.clone(),
        file_base_url: "http://127.0.0.1:9995".into(),
        cpus: 4,
        mem_mib: MEM_MIB,
        max_run_time: Duration::from_secs(600),
        max_attempts: 3,
        retry_backoff: Duration::from_millis(10),
        program_wait: Duration::from_secs(600),
        per_program_limit: None,
        min_free_bytes: 0,
    }
}

impl Lab {
    pub(crate) async fn new() -> Lab {
        let dir = testkit::tempdir();
        let store = Store::connect(&testkit::sqlite_url(dir.path()), &Default::default())
            .await
            .expect("store");
        Self::on(store, dir).await
    }

    /// A lab over `store` (migrated here), with its files in `dir`.
    pub(crate) async fn on(store: Store, dir: tempfile::TempDir) -> Lab {
        let data = DataDir::new(dir.path());
        store.migrate().await.expect("migrate");
        let node = SecretKey::from_bytes(&[21; 32]).expect("key");
        let intake = Intake::new(store.clone(), Limits::default(), AclPolicy::Open)
            .with_node_author(node.public_key());
        let image = b"scripted image".to_vec();
        let checksum = blake3::hash(&image).to_hex().to_string();
        let cached = data.content_file(&Hash::from_hex(&checksum).expect("hex"));
        std::fs::create_dir_all(data.content()).expect("content dir");
        std::fs::write(&cached, &image).expect("cache the image");
        Lab {
            _dir: dir,
            data,
            store,
            intake,
            node,
            client: SecretKey::from_bytes(&[22; 32]).expect("key"),
            checksum,
            exec: Scripted::default(),
            nonce: 1.into(),
        }
    }

    pub(crate) fn nonce(&self) -> u64 {
        self.nonce
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// Starts a pipeline over the lab's store with `config`; returns its handle.
    pub(crate) fn start(&self, config: Config) -> Pipeline<Scripted> {
        let downloader = Downloader::new(
            &self.data,
            DownloadLimits {
                attempts: 1,
                ..DownloadLimits::default()
            },
        )
        .expect("downloader");
        let pipeline = Pipeline::new(
            config,
            self.intake.clone(),
            self.node.clone(),
            downloader,
            self.exec.clone(),
        );
        tokio::spawn(pipeline.clone().run());
        pipeline
    }

    pub(crate) fn program(&self, name: &str, mem: u64) -> ProgramMetadata {
        let mut meta = ProgramMetadata {
            name: name.into(),
            hash: Hash::default(),
            image_file_name: format!("{name}.img"),
            image_file_url: format!("http://127.0.0.1:9/{name}.img"),
            image_file_checksum: self.checksum.clone(),
            resource_requirements: Some(ResourceRequest {
                mem,
                cpus: 1,
                gpus: 0,
            }),
        };
        meta.hash = meta.compute_hash();
        meta
    }

    /// Deploys `prover` with a throwaway verifier.
    pub(crate) async fn deploy(&self, prover: &ProgramMetadata) {
        let tx = Transaction::new_signed(
            Payload::Deploy {
                name: prover.name.clone(),
                prover: prover.clone(),
                verifier: self.program(&format!("{}-verifier", prover.name), 512),
            },
            self.nonce(),
            &self.client,
        );
        self.intake.submit(&tx, Source::Rpc).await.expect("deploy");
    }

    pub(crate) fn run_tx(
        &self,
        program: &ProgramMetadata,
        inputs: Vec<ProgramData>,
    ) -> Transaction {
        Transaction::new_signed(
            Payload::Run {
                workflow: Workflow {
                    steps: vec![WorkflowStep {
                        program: program.hash,
                        args: vec![],
                        inputs,
                    }],
                },
            },
            self.nonce(),
            &self.client,
        )
    }

    pub(crate) async fn run(&self, program: &ProgramMetadata) -> Hash {
        let tx = self.run_tx(program, vec![]);
        self.intake.submit(&tx, Source::Rpc).await.expect("run");
        tx.hash
    }

    /// The client cancels `run`.
    pub(crate) async fn cancel(&self, run: &Hash) {
        let tx =
            Transaction::new_signed(Payload::Cancel { parent: *run }, self.nonce(), &self.client);
        self.intake.submit(&tx, Source::Rpc).await.expect("cancel");
    }

    pub(crate) async fn task(&self, run: &Hash) -> Option<Task> {
        self.store
            .tasks_for_tx(run)
            .await
            .expect("tasks")
            .into_iter()
            .next()
    }

    /// Waits until the Run's task is in `phase` (bounded: these are milliseconds of work).
    pub(crate) async fn wait_for(&self, run: &Hash, phase: Phase) -> Task {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let task = self.task(run).await;
            if let Some(task) = task.as_ref().filter(|t| t.phase == phase) {
                return task.clone();
            }
            assert!(
                Instant::now() < deadline,
                "the task never reached {phase:?}; it is {:?}",
                task.map(|t| (t.phase, t.error))
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until the Run's task has ended, and returns it.
    pub(crate) async fn ended(&self, run: &Hash) -> Task {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(task) = self.task(run).await.filter(|t| t.phase.is_terminal()) {
                return task;
            }
            assert!(Instant::now() < deadline, "the task never ended");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub(crate) async fn timeline(&self, run: &Hash) -> Vec<PhaseChange> {
        self.store.task_timelines(run).await.expect("timeline")
    }

    /// The node's results (Proofs) of `run`.
    pub(crate) async fn proofs(&self, run: &Hash) -> usize {
        self.store
            .results_of_run(run, Some(&self.node.public_key()))
            .await
            .expect("results")
            .len()
    }
}

/// Waits until the pipeline holds nothing: every CPU and MiB is free again.
pub(crate) async fn all_free(pipeline: &Pipeline<Scripted>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let u = pipeline.usage();
        if u.free_cpus == 4 && u.free_mem_mib == MEM_MIB && u.running == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "resources still held: {u:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn phases(timeline: &[PhaseChange]) -> Vec<Phase> {
    timeline.iter().map(|c| c.phase).collect()
}

#[tokio::test]
async fn a_crash_is_retried_and_the_last_failure_is_final() {
    let lab = Lab::new().await;
    let pipeline = lab.start(settings(&lab.data));
    let p = lab.program("crashy", 1024);
    lab.exec.script("crashy", &[Act::Crash]);
    lab.deploy(&p).await;
    let run = lab.run(&p).await;
    let task = lab.ended(&run).await;
    assert_eq!(task.phase, Phase::Failed);
    assert_eq!(
        lab.exec.attempts("crashy"),
        3,
        "three attempts, then no more"
    );
    assert_eq!(task.attempt, 3);
    let error = task.error.expect("a reason");
    assert!(
        error.contains("failed 3 times") && error.contains("the VM crashed"),
        "{error}"
    );
    // Each retry is in the timeline, with what failed and when it is tried again.
    let notes: Vec<String> = lab
        .timeline(&run)
        .await
        .into_iter()
        .filter(|c| c.phase == Phase::Queued)
        .filter_map(|c| c.note)
        .collect();
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(
        notes[0].starts_with("attempt 1 of 3 failed: the VM crashed"),
        "{notes:?}"
    );
    assert!(notes[1].starts_with("attempt 2 of 3 failed"), "{notes:?}");
    assert_eq!(lab.proofs(&run).await, 0);
    all_free(&pipeline).await;
}

#[tokio::test]
async fn a_crash_then_a_success_makes_one_result() {
    let lab = Lab::new().await;
    lab.start(settings(&lab.data));
    let p = lab.program("flaky", 1024);
    lab.exec.script("flaky", &[Act::Crash, Act::Succeed]);
    lab.deploy(&p).await;
    let run = lab.run(&p).await;
    let task = lab.ended(&run).await;
    assert_eq!((task.phase, task.attempt), (Phase::Succeeded, 2));
    assert_eq!(lab.exec.attempts("flaky"), 2);
    assert_eq!(lab.proofs(&run).await, 1);
    assert_eq!(task.kind, TaskKind::Proof);
}

#[tokio::test]
async fn the_programs_own_failure_is_not_retried() {
    let lab = Lab::new().await;
    lab.start(settings(&lab.data));
    let p = lab.program("broken", 1024);
    lab.exec.script("broken", &[Act::Fail]);
    lab.deploy(&p).await;
    let run = lab.run(&p).await;
    let task = lab.ended(&run).await;
    assert_eq!(task.phase, Phase::Failed);
    assert_eq!(lab.exec.attempts("broken"), 1);
    assert!(
        task.error
            .as_deref()
            .is_some_and(|e| e.contains("exited with status 3")),
        "{:?}",
        task.error
    );
}

#[tokio::test]
async fn the_deadline_ends_a_task_for_good() {
    let lab = Lab::new().await;
    let pipeline = lab.start(Config {
        max_run_time: Duration::from_millis(200),
        ..settings(&lab.data)
    });
    let p = lab.program("endless", 1024);
    lab.exec.script("endless", &[Act::HangRunning]);
    lab.deploy(&p).await;
    let run = lab.run(&p).await;
    let task = lab.ended(&run).await;
    assert_eq!(task.phase, Phase::TimedOut);
    assert_eq!(lab.exec.attempts("endless"), 1, "a timeout is not retried");
    assert!(
        task.error
            .as_deref()
            .is_some_and(|e| e.contains("GEVULOT_MAX_VM_RUN_TIME")),
        "{:?}",
        task.error
    );
    all_free(&pipeline).await;
}

/// Cancels the Run while its task is in `phase`, then checks it ended as cancelled, ran no
/// further, and left every resource free.
async fn cancel_in(lab: &Lab, pipeline: &Pipeline<Scripted>, run: &Hash, phase: Phase) {
    lab.wait_for(run, phase).await;
    lab.cancel(run).await;
    let task = lab.ended(run).await;
    assert_eq!(task.phase, Phase::Cancelled, "cancelled in {phase:?}");
    assert!(
        task.error.as_deref().is_some_and(|e| e.contains("Cancel")),
        "{:?}",
        task.error
    );
    let seen = phases(&lab.timeline(run).await);
    assert_eq!(seen.last(), Some(&Phase::Cancelled));
    assert!(seen.contains(&phase), "{seen:?}");
    assert_eq!(lab.proofs(run).await, 0);
    all_free(pipeline).await;
}

#[tokio::test]
async fn cancel_while_waiting_for_the_program() {
    let lab = Lab::new().await;
    let pipeline = lab.start(settings(&lab.data));
    let never = lab.program("never-deployed", 1024);
    let run = lab.run(&never).await;
    cancel_in(&lab, &pipeline, &run, Phase::WaitingForProgram).await;
    assert_eq!(lab.exec.attempts("never-deployed"), 0);
}

#[tokio::test]
async fn cancel_while_downloading() {
    let lab = Lab::new().await;
    let pipeline = lab.start(settings(&lab.data));
    // A server that accepts and never answers: the input's download stays under way.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = silent.local_addr().expect("addr");
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            open.push(socket);
        }
    });
    let p = lab.program("reader", 1024);
    lab.deploy(&p).await;
    let tx = lab.run_tx(
        &p,
        vec![ProgramData::Input {
            file_name: "/workspace/in.dat".into(),
            file_url: format!("http://{addr}/in.dat"),
            checksum: hex::encode([9u8; 32]),
        }],
    );
    lab.intake.submit(&tx, Source::Rpc).await.expect("run");
    cancel_in(&lab, &pipeline, &tx.hash, Phase::Downloading).await;
    assert_eq!(lab.exec.attempts("reader"), 0);
    held.abort();
}

#[tokio::test]
async fn cancel_while_waiting_for_resources() {
    let lab = Lab::new().await;
    let pipeline = lab.start(settings(&lab.data));
    let hog = lab.program("hog", MEM_MIB);
    let small = lab.program("small", 1024);
    lab.exec.script("hog", &[Act::HangRunning]);
    lab.deploy(&hog).await;
    lab.deploy(&small).await;
    let hogging = lab.run(&hog).await;
    lab.wait_for(&hogging, Phase::Running).await;
    let waiting = lab.run(&small).await;
    lab.wait_for(&waiting, Phase::WaitingForResources).await;
    lab.cancel(&waiting).await;
    let task = lab.ended(&waiting).await;
    assert_eq!(task.phase, Phase::Cancelled);
    assert_eq!(lab.exec.attempts("small"), 0);
    // The hog still runs; cancelling it frees everything.
    assert_eq!(
        lab.task(&hogging).await.map(|t| t.phase),
        Some(Phase::Running)
    );
    cancel_in(&lab, &pipeline, &hogging, Phase::Running).await;
}

#[tokio::test]
async fn cancel_while_booting() {
    let lab = Lab::new().await;
    let pipeline = lab.start(settings(&lab.data));
    let p = lab.program("slow-boot", 1024);
    lab.exec.script("slow-boot", &[Act::HangBooting]);
    lab.deploy(&p).await;
    let run = lab.run(&p).await;
    cancel_in(&lab, &pipeline, &run, Phase::Booting).await;
    assert_eq!(lab.exec.attempts("slow-boot"), 1);
}

#[tokio::test]
async fn cancel_while_running() {
    let lab = Lab::new().await;
    let pipeline = lab.start(settings(&lab.data));
    let p = lab.program("long", 1024);
    lab.exec.script("long", &[Act::HangRunning]);
    lab.deploy(&p).await;
    let run = lab.run(&p).await;
    cancel_in(&lab, &pipeline, &run, Phase::Running).await;
    assert_eq!(lab.exec.attempts("long"), 1);
}

/// A Run whose task the node left in `phase` after `attempt` attempts when it stopped.
async fn half_finished(lab: &Lab, program: &ProgramMetadata, phase: Phase, attempt: i64) -> Hash {
    lab.deploy(program).await;
    let run = lab.run(program).await;
    let task = lab
        .store
        .create_task(&NewTask {
            tx: run,
            step_index: 0,
            program: program.hash,
            kind: TaskKind::Proof,
        })
        .await
        .expect("task");
    for _ in 0..attempt {
        // Each boot counts an attempt.
        lab.store
            .set_task_phase(task.id, Phase::Booting, None)
            .await
            .expect("booting");
    }
    if phase != Phase::Booting {
        lab.store
            .set_task_phase(task.id, phase, None)
            .await
            .expect("phase");
    }
    run
}

#[tokio::test]
async fn a_restart_resumes_an_interrupted_attempt_and_counts_it() {
    let lab = Lab::new().await;
    let p = lab.program("resumed", 1024);
    let run = half_finished(&lab, &p, Phase::Running, 1).await;
    // The node starts again.
    lab.start(settings(&lab.data));
    let task = lab.ended(&run).await;
    assert_eq!(task.phase, Phase::Succeeded);
    assert_eq!(task.attempt, 2, "the interrupted attempt counts");
    assert_eq!(lab.exec.attempts("resumed"), 1);
    assert_eq!(lab.proofs(&run).await, 1);
}

#[tokio::test]
async fn a_restart_with_no_attempt_left_fails_the_task() {
    let lab = Lab::new().await;
    let p = lab.program("exhausted", 1024);
    let run = half_finished(&lab, &p, Phase::Booting, 3).await;
    lab.start(settings(&lab.data));
    let task = lab.ended(&run).await;
    assert_eq!(task.phase, Phase::Failed);
    assert!(
        task.error
            .as_deref()
            .is_some_and(|e| e.contains("the node stopped during attempt 3 of 3")),
        "{:?}",
        task.error
    );
    assert_eq!(lab.exec.attempts("exhausted"), 0);
}

#[tokio::test]
async fn a_restart_after_the_result_was_stored_never_runs_the_step_again() {
    let lab = Lab::new().await;
    let p = lab.program("done", 1024);
    let run = half_finished(&lab, &p, Phase::Submitting, 1).await;
    // The node stored its Proof, then stopped before marking the task.
    let proof = Transaction::new_signed(
        Payload::Proof {
            parent: run,
            prover: p.hash,
            proof: b"proof".to_vec(),
            files: vec![],
        },
        lab.nonce(),
        &lab.node,
    );
    lab.intake
        .submit(&proof, Source::Node)
        .await
        .expect("proof");
    lab.start(settings(&lab.data));
    let task = lab.ended(&run).await;
    assert_eq!(task.phase, Phase::Succeeded);
    assert_eq!(
        lab.exec.attempts("done"),
        0,
        "the step is not executed again"
    );
    assert_eq!(lab.proofs(&run).await, 1);
}

/// A program that asks for more than the node has: a Run of it fails at once, before it waits
/// for resources or downloads anything for the task.
#[tokio::test]
async fn a_program_that_can_never_fit_fails_at_once() {
    let lab = Lab::new().await;
    lab.start(settings(&lab.data));
    let huge = lab.program("huge", 2 * MEM_MIB);
    lab.deploy(&huge).await;
    let run = lab.run(&huge).await;
    let task = lab.ended(&run).await;
    assert_eq!(task.phase, Phase::Failed);
    assert!(
        task.error
            .as_deref()
            .is_some_and(|e| e.contains("offers at most") && e.contains("MiB of memory")),
        "{:?}",
        task.error
    );
    let walked = phases(&lab.timeline(&run).await);
    assert!(!walked.contains(&Phase::Downloading), "{walked:?}");
    assert_eq!(lab.exec.attempts("huge"), 0);
}

/// The database refuses a task's end for a while (the refusals are counted by a sequence, which
/// a refused transaction does not roll back): the driver writes it again, with growing waits,
/// until it is taken, instead of leaving the task unfinished until the node's next start.
#[tokio::test]
async fn a_task_end_the_database_refused_is_written_again() {
    let db = crate::storage::postgres().await;
    let lab = Lab::on(db.store.clone(), testkit::tempdir()).await;
    db.store
        .execute_raw(
            "CREATE SEQUENCE refusals; \
             CREATE FUNCTION refuse_end() RETURNS trigger AS $$ BEGIN \
             PERFORM nextval('refusals'); RAISE EXCEPTION 'refused by the test'; END $$ \
             LANGUAGE plpgsql; \
             CREATE TRIGGER refuse_end BEFORE UPDATE OF phase ON tasks FOR EACH ROW \
             WHEN (NEW.phase = 'failed') EXECUTE FUNCTION refuse_end()",
        )
        .await
        .expect("install the refusal");
    lab.start(settings(&lab.data));
    let p = lab.program("refused-end", 1024);
    lab.exec.script("refused-end", &[Act::Fail]);
    lab.deploy(&p).await;
    let run = lab.run(&p).await;

    let pool = sqlx::PgPool::connect(&db.url).await.expect("connect");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let refused: i64 = sqlx::query_scalar(
            "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM refusals",
        )
        .fetch_one(&pool)
        .await
        .expect("refusals");
        if refused >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "the end was not written again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!lab.task(&run).await.expect("task").phase.is_terminal());
    db.store
        .execute_raw("DROP TRIGGER refuse_end ON tasks")
        .await
        .expect("remove the refusal");
    let task = lab.ended(&run).await;
    assert_eq!(task.phase, Phase::Failed);
    assert_eq!(lab.exec.attempts("refused-end"), 1, "the step ran once");
}
