//! Server-side render time of the console's pages on a database of 100,000 transactions: the
//! transactions page (first page, filtered by kind, by author, and a page deep in the keyset),
//! a transaction's page and the dashboard, each requested one at a time from a real `gevulot run`
//! over loopback (so the figures include the HTTP round trip, which is well under a millisecond
//! here). Prints median and p99 and writes `target/bench/console.txt`.
//!
//! `cargo bench -p server --bench console` (`GEVULOT_BENCH_TXS`, `GEVULOT_BENCH_REQUESTS`).

mod common;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use app::crypto::SecretKey;
use app::model::Source;
use app::store::Store;
use app::tx::{Hash, Payload, ProgramData, Transaction, Workflow, WorkflowStep};
use common::start_node;

fn sample(keys: &[SecretKey], i: u64) -> Transaction {
    let key = &keys[(i % keys.len() as u64) as usize];
    let payload = match i % 4 {
        0 | 1 => Payload::Run {
            workflow: Workflow {
                steps: vec![WorkflowStep {
                    program: Hash([(i % 7) as u8; 32]),
                    args: vec!["--nonce".into(), i.to_string()],
                    inputs: vec![ProgramData::Input {
                        file_name: "/workspace/in.txt".into(),
                        file_url: "http://127.0.0.1:9/in.txt".into(),
                        checksum: hex::encode([9u8; 32]),
                    }],
                }],
            },
        },
        2 => Payload::Cancel {
            parent: Hash([(i % 251) as u8; 32]),
        },
        _ => Payload::Empty,
    };
    Transaction::new_signed(payload, i, key)
}

fn stats(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let at = |p: f64| samples[((samples.len() - 1) as f64 * p).round() as usize];
    (ms(at(0.5)), ms(at(0.99)))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let count: u64 = std::env::var("GEVULOT_BENCH_TXS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let requests: usize = std::env::var("GEVULOT_BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let data = testkit::tempdir();
    let keys: Vec<SecretKey> = (0..20)
        .map(|_| SecretKey::generate())
        .collect::<Result<_, _>>()?;
    let author = keys[3].public_key().to_hex();
    {
        let store = Store::connect(&testkit::sqlite_url(data.path()), &Default::default()).await?;
        store.migrate().await?;
        let start = Instant::now();
        let mut batch = Vec::with_capacity(1000);
        for i in 0..count {
            batch.push(sample(&keys, i));
            if batch.len() == 1000 {
                store.insert_transactions(&batch, Source::Rpc).await?;
                batch.clear();
            }
        }
        if !batch.is_empty() {
            store.insert_transactions(&batch, Source::Rpc).await?;
        }
        println!(
            "filled the database with {count} transactions in {:.1} s",
            start.elapsed().as_secs_f64()
        );
        store.close().await;
    }
    // A relaying node: nothing executes the stored Runs while pages are measured.
    let node = start_node(
        data.path(),
        None,
        &[
            ("GEVULOT_NODE_NO_EXECUTION", "true"),
            ("GEVULOT_ADMIN_PASSWORD", "bench-password-1"),
        ],
    )?;
    let base = node.rpc.trim_end_matches('/').to_string();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let form = client.get(format!("{base}/console/sign-in")).send().await?;
    let form_cookie = form
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("gevulot_form="))
        .and_then(|v| v.split(';').next())
        .ok_or_else(|| anyhow::anyhow!("no form cookie"))?
        .to_string();
    let html = form.text().await?;
    let at = html
        .find(r#"name="csrf" value=""#)
        .ok_or_else(|| anyhow::anyhow!("no csrf field"))?
        + 19;
    let csrf: String = html[at..].chars().take_while(|c| *c != '"').collect();
    let signed_in = client
        .post(format!("{base}/console/sign-in"))
        .header("cookie", form_cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "csrf={csrf}&username=admin&password=bench-password-1"
        ))
        .send()
        .await?;
    let cookie = signed_in
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("gevulot_session="))
        .and_then(|v| v.split(';').next())
        .ok_or_else(|| anyhow::anyhow!("no session cookie"))?
        .to_string();
    let get = |path: String| {
        let (client, cookie, base) = (client.clone(), cookie.clone(), base.clone());
        async move {
            let r = client
                .get(format!("{base}{path}"))
                .header("cookie", cookie)
                .send()
                .await?;
            anyhow::ensure!(r.status().is_success(), "{path}: {}", r.status());
            Ok::<_, anyhow::Error>(r.text().await?)
        }
    };
    // A cursor deep in the keyset: follow "Older" links 50 pages down (fewer on a small sample).
    let mut deep = "/console/transactions".to_string();
    let depth = (count / 50).saturating_sub(1).min(50);
    for _ in 0..depth {
        let page = get(deep.clone()).await?;
        let at = page
            .find("rel=\"next\" href=\"")
            .ok_or_else(|| anyhow::anyhow!("no next page"))?
            + 17;
        deep = page[at..at + page[at..].find('"').unwrap_or(0)].replace("&amp;", "&");
    }
    let a_run = sample(&keys, 4).hash.to_hex();
    let pages = [
        (
            "transactions, newest 50",
            "/console/transactions".to_string(),
        ),
        (
            "transactions, kind = run",
            "/console/transactions?kind=run".to_string(),
        ),
        (
            "transactions, by one author",
            format!("/console/transactions?author={author}"),
        ),
        ("transactions, 50 pages deep", deep),
        ("one transaction", format!("/console/transactions/{a_run}")),
        ("dashboard", "/console".to_string()),
    ];
    let mut figures = testkit::bench::Figures::new("console");
    let mut report = format!(
        "console render benchmark: {count} transactions (SQLite), {requests} requests per page, one at a time\n"
    );
    for (label, path) in pages {
        get(path.clone()).await?; // warm
        let mut samples = Vec::with_capacity(requests);
        for _ in 0..requests {
            let t = Instant::now();
            get(path.clone()).await?;
            samples.push(t.elapsed());
        }
        let (median, p99) = stats(samples);
        figures.add(&format!("console: {label}, median"), median, "ms");
        figures.add(&format!("console: {label}, p99"), p99, "ms");
        let _ = writeln!(
            report,
            "{label:<40} {median:>8.2} ms median {p99:>8.2} ms p99"
        );
    }
    print!("{report}");
    figures.write(&report);
    Ok(())
}
