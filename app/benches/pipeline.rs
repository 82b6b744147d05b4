//! Submit → VM-spawn latency through the whole pipeline (intake, SQLite, task planning, the
//! download cache, the scheduler), with the queue empty and with 1,000 tasks queued for
//! resources, plus the scheduler's decisions per second with 10,000 queued tasks. Only here is
//! the executor stubbed: it records when a VM would be spawned and answers at once. Prints the
//! figures and their ratio, and writes them to `target/bench/pipeline.txt`.
//!
//! `cargo bench -p app --bench pipeline` (`GEVULOT_BENCH_SAMPLES` changes the sample count).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use app::crypto::SecretKey;
use app::download::{Downloader, Limits as DownloadLimits};
use app::model::{Phase, Source};
use app::node::{AclPolicy, Intake};
use app::pipeline::{Config, Execute, Pipeline};
use app::scheduler::{Request, Scheduler};
use app::store::Store;
use app::tx::{
    Hash, Payload, ProgramMetadata, ResourceRequest, Transaction, Workflow, WorkflowStep,
};
use app::validate::Limits;
use app::vm::executor::{ExecError, Outcome, TaskSpec};
use app::vm::outputs::AcceptedOutput;
use tokio::sync::{mpsc, oneshot, watch};

const TOTAL_MEM_MIB: u64 = 64 * 1024;

/// Records each spawn; the `blocker` program holds its resources until cancelled.
struct Stub {
    spawned: mpsc::Sender<(String, Instant)>,
}

impl Execute for Stub {
    async fn execute(
        &self,
        spec: TaskSpec,
        mut cancel: watch::Receiver<bool>,
        started: oneshot::Sender<()>,
    ) -> Result<Outcome, ExecError> {
        let _ = self
            .spawned
            .send((spec.tx_hash.clone(), Instant::now()))
            .await;
        let _ = started.send(());
        if spec.program_name == "blocker" {
            let _ = cancel.wait_for(|c| *c).await;
            return Ok(Outcome::Cancelled);
        }
        Ok(Outcome::Succeeded {
            data: b"proof".to_vec(),
            outputs: vec![],
        })
    }

    fn store_outputs(
        &self,
        _: &[AcceptedOutput],
        _: &app::data_dir::DataDir,
        _: &Hash,
    ) -> std::io::Result<Vec<PathBuf>> {
        Ok(vec![])
    }

    fn cleanup(&self, _: &str) {}
}

fn program(name: &str, checksum: &str, mem: u64) -> ProgramMetadata {
    let mut meta = ProgramMetadata {
        name: name.into(),
        hash: Hash([0; 32]),
        image_file_name: format!("{name}.img"),
        image_file_url: format!("http://127.0.0.1:9/{name}.img"),
        image_file_checksum: checksum.into(),
        resource_requirements: Some(ResourceRequest {
            mem,
            cpus: 1,
            gpus: 0,
        }),
    };
    meta.hash = meta.compute_hash();
    meta
}

fn run(key: &SecretKey, program: &ProgramMetadata, nonce: u64) -> Transaction {
    Transaction::new_signed(
        Payload::Run {
            workflow: Workflow {
                steps: vec![WorkflowStep {
                    program: program.hash,
                    args: vec!["--nonce".into(), nonce.to_string()],
                    inputs: vec![],
                }],
            },
        },
        nonce,
        key,
    )
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Submits `samples` runs of `program` one after another and returns the sorted latencies from
/// the submit call to the stub's spawn.
async fn latencies(
    intake: &Intake,
    key: &SecretKey,
    program: &ProgramMetadata,
    spawned: &mut mpsc::Receiver<(String, Instant)>,
    samples: usize,
    first_nonce: u64,
) -> Vec<Duration> {
    let mut out = Vec::with_capacity(samples);
    for i in 0..samples {
        let tx = run(key, program, first_nonce + i as u64);
        let hex = tx.hash.to_hex();
        let start = Instant::now();
        intake.submit(&tx, Source::Rpc).await.expect("stored");
        loop {
            let (hash, at) = tokio::time::timeout(Duration::from_secs(30), spawned.recv())
                .await
                .expect("spawned within 30 s")
                .expect("stub alive");
            if hash == hex {
                out.push(at - start);
                break;
            }
        }
    }
    out.sort();
    out
}

fn scheduler_decisions(queued: i64) -> f64 {
    let mut s = Scheduler::new(64, TOTAL_MEM_MIB, BTreeSet::new(), None);
    for task in 0..queued {
        s.submit(Request {
            task,
            program: format!("p{}", task % 50),
            priority: 0,
            cpus: 1 + (task as u64 % 8),
            mem_mib: 1024 * (1 + task as u64 % 16),
            gpus: 0,
        })
        .expect("fits");
    }
    let mut running: Vec<i64> = s.schedule().into_iter().map(|a| a.task).collect();
    let start = Instant::now();
    let mut decisions = 0u64;
    while s.waiting() > queued as usize / 2 && !running.is_empty() {
        let done = running.remove(0);
        s.finish(done);
        running.extend(s.schedule().into_iter().map(|a| a.task));
        decisions += 1;
    }
    decisions as f64 / start.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let samples: usize = std::env::var("GEVULOT_BENCH_SAMPLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let dir = testkit::tempdir();
    let store = Store::connect(&testkit::sqlite_url(dir.path()), &Default::default())
        .await
        .expect("store");
    store.migrate().await.expect("migrate");
    let node = SecretKey::generate().expect("key");
    let user = SecretKey::generate().expect("key");
    let intake =
        Intake::new(store, Limits::default(), AclPolicy::Open).with_node_author(node.public_key());
    let downloader = Downloader::new(
        &app::data_dir::DataDir::new(dir.path()),
        DownloadLimits::default(),
    )
    .expect("downloader");
    // The image is already in the content cache: no download is measured.
    let image = b"stub image".to_vec();
    let checksum = blake3::hash(&image).to_hex().to_string();
    let cached = downloader.content_path(&Hash::from_hex(&checksum).expect("hex"));
    std::fs::create_dir_all(cached.parent().expect("dir")).expect("mkdir");
    std::fs::write(&cached, &image).expect("cache");

    let (spawned_tx, mut spawned) = mpsc::channel(4096);
    let pipeline = Pipeline::new(
        Config {
            data_dir: app::data_dir::DataDir::new(dir.path()),
            file_base_url: "http://127.0.0.1:9995".into(),
            cpus: 64,
            mem_mib: TOTAL_MEM_MIB,
            max_run_time: Duration::from_secs(3600),
            max_attempts: 1,
            retry_backoff: Duration::from_secs(1),
            program_wait: Duration::from_secs(3600),
            per_program_limit: None,
            min_free_bytes: 0,
        },
        intake.clone(),
        node,
        downloader,
        Stub {
            spawned: spawned_tx,
        },
    );
    tokio::spawn(pipeline.clone().run());

    let fast = program("fast", &checksum, 512);
    let blocker = program("blocker", &checksum, TOTAL_MEM_MIB - 4096);
    let big = program("big", &checksum, 8192);
    let verifier = program("verifier", &checksum, 512);
    for (i, (name, p)) in [("fast", &fast), ("blocker", &blocker), ("big", &big)]
        .into_iter()
        .enumerate()
    {
        let deploy = Transaction::new_signed(
            Payload::Deploy {
                name: name.into(),
                prover: p.clone(),
                verifier: verifier.clone(),
            },
            i as u64,
            &user,
        );
        intake.submit(&deploy, Source::Rpc).await.expect("deploy");
    }

    // Warm up, then the empty queue.
    latencies(&intake, &user, &fast, &mut spawned, 5, 1_000_000).await;
    let empty = latencies(&intake, &user, &fast, &mut spawned, samples, 2_000_000).await;

    // A blocker holds most of the memory; 1,000 big tasks queue behind it.
    let hold = run(&user, &blocker, 3_000_000);
    intake.submit(&hold, Source::Rpc).await.expect("blocker");
    let queued: Vec<Transaction> = (0..1000).map(|i| run(&user, &big, 4_000_000 + i)).collect();
    for chunk in queued.chunks(100) {
        intake
            .submit_batch(chunk, Source::Rpc)
            .await
            .expect("queued");
    }
    let start = Instant::now();
    while pipeline.usage().waiting < 1000 {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "queue not filled: {:?}",
            pipeline.usage()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Queued means recorded: the tasks' `waiting_for_resources` phases are in the database.
    let store = intake.store().clone();
    loop {
        let counts = store.count_tasks_by_phase().await.expect("counts");
        let waiting = counts
            .iter()
            .find(|(p, _)| *p == Phase::WaitingForResources)
            .map_or(0, |(_, n)| *n);
        if waiting >= 1000 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "queue not recorded: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let filled = start.elapsed();
    let busy = latencies(&intake, &user, &fast, &mut spawned, samples, 5_000_000).await;
    let usage = pipeline.usage();

    let decisions = scheduler_decisions(10_000);
    let (m0, p0) = (percentile(&empty, 0.5), percentile(&empty, 0.99));
    let (m1, p1) = (percentile(&busy, 0.5), percentile(&busy, 0.99));
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let report = format!(
        "pipeline benchmark (SQLite, stubbed executor, {samples} samples each)\n\
         {:<58} {:>8.2} ms median {:>8.2} ms p99\n\
         {:<58} {:>8.2} ms median {:>8.2} ms p99\n\
         {:<58} {:>8.2}x median {:>8.2}x p99\n\
         {:<58} {:>8} waiting, {} running\n\
         {:<58} {:>8.0} ms\n\
         {:<58} {:>8.0} decisions/s\n",
        "submit -> VM spawn, empty queue",
        ms(m0),
        ms(p0),
        "submit -> VM spawn, 1,000 tasks queued for resources",
        ms(m1),
        ms(p1),
        "ratio (queued / empty)",
        ms(m1) / ms(m0).max(1e-9),
        ms(p1) / ms(p0).max(1e-9),
        "queue while measuring",
        usage.waiting,
        usage.running,
        "1,000 Runs stored -> all recorded waiting for resources",
        ms(filled),
        "scheduler: schedule() passes with 10,000 queued",
        decisions,
    );
    print!("{report}");
    testkit::bench::Figures::new("pipeline")
        .against(
            "submit -> VM spawn, 1,000 queued, median",
            ms(m1),
            "ms",
            "empty queue",
            ms(m0),
        )
        .against(
            "submit -> VM spawn, 1,000 queued, p99",
            ms(p1),
            "ms",
            "empty queue",
            ms(p0),
        )
        .add(
            "1,000 Runs stored -> all waiting for resources",
            ms(filled),
            "ms",
        )
        .write(&report);
}
