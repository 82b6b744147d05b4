//! Core throughput: raw signature verifications per second, full validation per second, and
//! validated + durably stored transactions per second on SQLite and PostgreSQL: one submitter,
//! 16 concurrent submitters (sharing commits through group commit), and batches of 100. Prints a table, the ratio of stored to
//! raw verifications in the same run, and writes the figures to `target/bench/core.txt`.
//!
//! `cargo bench -p app --bench core` (set `GEVULOT_BENCH_TXS` to change the sample size).

use std::fmt::Write as _;
use std::time::Instant;

use app::crypto::SecretKey;
use app::model::Source;
use app::node::{AclPolicy, Intake};
use app::store::Store;
use app::tx::{Hash, Payload, ProgramData, Transaction, Workflow, WorkflowStep};
use app::validate::Limits;

/// A realistic Run: two steps, an input file, args.
fn sample_tx(key: &SecretKey, nonce: u64) -> Transaction {
    let checksum = hex::encode([7u8; 32]);
    Transaction::new_signed(
        Payload::Run {
            workflow: Workflow {
                steps: vec![
                    WorkflowStep {
                        program: Hash([1; 32]),
                        args: vec!["--nonce".into(), nonce.to_string()],
                        inputs: vec![ProgramData::Input {
                            file_name: "/workspace/in.txt".into(),
                            file_url: "http://127.0.0.1:8000/in.txt".into(),
                            checksum,
                        }],
                    },
                    WorkflowStep {
                        program: Hash([2; 32]),
                        args: vec![],
                        inputs: vec![ProgramData::Output {
                            source_program: Hash([1; 32]),
                            file_name: "/workspace/proof.dat".into(),
                        }],
                    },
                ],
            },
        },
        nonce,
        key,
    )
}

fn per_second(n: usize, start: Instant) -> f64 {
    n as f64 / start.elapsed().as_secs_f64()
}

struct Report {
    text: String,
}

impl Report {
    fn line(&mut self, label: &str, value: f64, unit: &str) {
        let line = format!("{label:<58} {value:>12.0} {unit}");
        println!("{line}");
        let _ = writeln!(self.text, "{line}");
    }

    fn note(&mut self, note: &str) {
        println!("{note}");
        let _ = writeln!(self.text, "{note}");
    }
}

async fn store_for(backend: &str, dir: &std::path::Path) -> anyhow::Result<Store> {
    let url = match backend {
        "sqlite" => testkit::sqlite_url(dir),
        _ => testkit::postgres_url().await?,
    };
    let store = Store::connect(&url, &Default::default()).await?;
    store.migrate().await?;
    Ok(store)
}

async fn bench_backend(
    backend: &str,
    txs: &[Transaction],
    report: &mut Report,
) -> anyhow::Result<(f64, f64, f64)> {
    let n = txs.len();
    let third = n / 3;
    let dir = testkit::tempdir();
    let intake = Intake::new(
        store_for(backend, dir.path()).await?,
        Limits::default(),
        AclPolicy::Open,
    );

    // One submission at a time: each is its own commit.
    let start = Instant::now();
    for tx in &txs[..third] {
        intake.submit(tx, Source::Rpc).await?;
    }
    let sequential = per_second(third, start);
    report.line(
        &format!("{backend}: validated+stored, one submitter"),
        sequential,
        "tx/s",
    );

    // 16 concurrent submitters: the intake's group commit gathers them into shared commits.
    let start = Instant::now();
    let chunk = third.div_ceil(16);
    let mut handles = Vec::new();
    for part in txs[third..2 * third].chunks(chunk) {
        let intake = intake.clone();
        let part = part.to_vec();
        handles.push(tokio::spawn(async move {
            for tx in &part {
                intake.submit(tx, Source::Rpc).await?;
            }
            anyhow::Ok(())
        }));
    }
    for h in handles {
        h.await??;
    }
    let concurrent = per_second(third, start);
    report.line(
        &format!("{backend}: validated+stored, 16 concurrent submitters (group commit)"),
        concurrent,
        "tx/s",
    );

    // Batches of 100 per commit.
    let rest = &txs[2 * third..];
    let start = Instant::now();
    for batch in rest.chunks(100) {
        intake.submit_batch(batch, Source::Rpc).await?;
    }
    let batched = per_second(rest.len(), start);
    report.line(
        &format!("{backend}: validated+stored, batches of 100"),
        batched,
        "tx/s",
    );
    let stored = intake.store().count_transactions().await?;
    anyhow::ensure!(stored as usize == n, "{backend}: stored {stored} of {n}");
    intake.store().close().await;
    Ok((sequential, concurrent, batched))
}

fn main() -> anyhow::Result<()> {
    let n: usize = std::env::var("GEVULOT_BENCH_TXS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let key = SecretKey::from_bytes(&[42u8; 32])?;
    let txs: Vec<Transaction> = (0..n as u64).map(|i| sample_tx(&key, i)).collect();
    let mut report = Report {
        text: String::new(),
    };
    report.note(&format!(
        "core benchmark: {n} two-step Run transactions, secp256k1 (libsecp256k1), one core per verification"
    ));

    let start = Instant::now();
    for tx in &txs {
        tx.signature.verify(&tx.hash, &tx.author)?;
    }
    let verify = per_second(n, start);
    report.line("raw signature verifications", verify, "verify/s");

    let limits = Limits::default();
    let start = Instant::now();
    for tx in &txs {
        app::validate::validate(tx, &limits)?;
    }
    let validate = per_second(n, start);
    report.line(
        "full stateless validation (rules + hash + signature)",
        validate,
        "tx/s",
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut results = Vec::new();
    for backend in ["sqlite", "postgres"] {
        let figures = rt.block_on(bench_backend(backend, &txs, &mut report))?;
        results.push((backend, figures));
    }
    report.note("ratios of stored tx/s to raw verify/s in this run (1.0 = storage costs nothing):");
    let mut figures = testkit::bench::Figures::new("core");
    figures.add("raw signature verifications", verify, "verify/s");
    figures.against(
        "full stateless validation",
        validate,
        "tx/s",
        "raw verifications",
        verify,
    );
    for (backend, (seq, conc, batch)) in &results {
        // Validation and storage together (the HTTP benchmark's "batched storage" is the
        // store alone, multi-row statements without validation).
        for (how, rate) in [
            ("one submitter", seq),
            ("16 submitters (group commit)", conc),
            ("batches of 100", batch),
        ] {
            figures.against(
                &format!("{backend}: validated and stored, {how}"),
                *rate,
                "tx/s",
                "raw verifications",
                verify,
            );
        }
    }
    for (backend, (seq, conc, batch)) in results {
        report.note(&format!(
            "  {backend:<8} sequential {:.3}   concurrent {:.3}   batched {:.3}",
            seq / verify,
            conc / verify,
            batch / verify
        ));
    }
    figures.write(&report.text);
    Ok(())
}
