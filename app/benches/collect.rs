//! The retention collector over 100,000 stored transactions and 100,000 files: half of the
//! transactions are finished Runs whose file directories expired, half are Runs still queued
//! (their files must stay); every file is linked to a content file. Prints the collector's time
//! against a bare walk of the same tree in the same process (the floor: the collector must at
//! least look at every file), and writes `target/bench/collect.txt`.
//!
//! `GEVULOT_BENCH_ITEMS` sets the number of transactions and files (100,000 by default).

use std::time::{Duration, Instant, SystemTime};

use app::collect::{Retention, collect};
use app::crypto::SecretKey;
use app::data_dir::DataDir;
use app::model::{NewTask, Source, TaskKind};
use app::store::Store;
use app::tx::{Hash, Payload, Transaction, Workflow, WorkflowStep};

const DAY: Duration = Duration::from_secs(86_400);

fn main() -> anyhow::Result<()> {
    let items: usize = std::env::var("GEVULOT_BENCH_ITEMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(bench(items))
}

async fn bench(items: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data = DataDir::new(dir.path());
    let store = Store::connect(
        &format!("sqlite://{}", data.database().display()),
        &Default::default(),
    )
    .await?;
    store.migrate().await?;
    let key = SecretKey::from_bytes(&[4u8; 32])?;
    let program = Hash([1; 32]);
    let setup = Instant::now();
    let runs: Vec<Transaction> = (0..items as u64)
        .map(|n| {
            Transaction::new_signed(
                Payload::Run {
                    workflow: Workflow {
                        steps: vec![WorkflowStep {
                            program,
                            args: vec![],
                            inputs: vec![],
                        }],
                    },
                },
                n,
                &key,
            )
        })
        .collect();
    for chunk in runs.chunks(1000) {
        let batch: Vec<(&Transaction, Source)> = chunk.iter().map(|t| (t, Source::Rpc)).collect();
        store.insert_from(&batch).await?;
    }
    // Every Run has a task: the first half ended, the second half still queued.
    let half = items / 2;
    for (i, chunk) in runs.chunks(1000).enumerate() {
        let tasks: Vec<NewTask> = chunk
            .iter()
            .map(|t| NewTask {
                tx: t.hash,
                step_index: 0,
                program,
                kind: TaskKind::Proof,
            })
            .collect();
        let created = store.create_tasks(&tasks).await?;
        if i * 1000 < half {
            let ended: Vec<_> = created
                .iter()
                .map(|t| app::model::PhaseChangeOf {
                    task: t.id,
                    phase: app::model::Phase::Succeeded,
                    note: None,
                })
                .collect();
            store.set_task_phases(&ended).await?;
        }
    }
    // One input file per Run, linked to its content, 40 days old.
    let old = SystemTime::now() - 40 * DAY;
    for (n, run) in runs.iter().enumerate() {
        let body = n.to_le_bytes();
        let checksum = Hash(*blake3::hash(&body).as_bytes());
        let content = data.content_file(&checksum);
        std::fs::create_dir_all(content.parent().expect("content dir"))?;
        std::fs::write(&content, body)?;
        let input = data.run_input(&run.hash, "/workspace/in.bin");
        std::fs::create_dir_all(input.parent().expect("input dir"))?;
        std::fs::hard_link(&content, &input)?;
        std::fs::File::open(&content)?.set_modified(old)?;
        let run_dir = data.root().join("txfiles").join(run.hash.to_hex());
        std::fs::File::open(run_dir)?.set_modified(old)?;
    }
    let setup = setup.elapsed();

    let walk = Instant::now();
    let usage = data.usage();
    let walk = walk.elapsed();
    let files: u64 = usage.iter().map(|a| a.files).sum();

    let retention = Retention {
        outputs: Some(30 * DAY),
        images: Some(30 * DAY),
        vm_logs: None,
        vm_log_dir: None,
        task_history: Some(30 * DAY),
        webhook_log: None,
    };
    let collected = collect(&store, &data, &retention).await?;
    let report = format!(
        "retention collector: {items} transactions, {files} files ({half} Runs ended and expired, {} live)\n\
         setup {:.1} s\n\
         bare walk of the data directory: {:.2} s\n\
         collector pass: {:.2} s ({} files and {} bytes freed) = {:.1}x the bare walk\n",
        items - half,
        setup.as_secs_f64(),
        walk.as_secs_f64(),
        collected.took.as_secs_f64(),
        collected.files(),
        collected.bytes(),
        collected.took.as_secs_f64() / walk.as_secs_f64().max(1e-9),
    );
    print!("{report}");
    assert_eq!(
        collected.outputs.files as usize, half,
        "the expired Runs' files went"
    );
    let again = collect(&store, &data, &retention).await?;
    println!(
        "second pass (nothing to free): {:.2} s",
        again.took.as_secs_f64()
    );
    testkit::bench::Figures::new("collect")
        .against(
            &format!("collector pass over {files} files"),
            collected.took.as_secs_f64(),
            "s",
            "bare walk",
            walk.as_secs_f64(),
        )
        .add(
            "second pass, nothing to free",
            again.took.as_secs_f64(),
            "s",
        )
        .write(&report);
    store.close().await;
    Ok(())
}
