//! Faults: the node is killed under load, and nothing it acknowledged is lost.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use app::crypto::SecretKey;
use app::model::TxFilter;
use app::tx::{Hash, Payload, Transaction};

use crate::support::{Running, UNLIMITED};

const ROUNDS: usize = 20;
const CLIENTS: usize = 4;
/// Acknowledgements each round waits for before the kill (so every kill lands under load).
const ACKS_PER_ROUND: usize = 25;

/// One client: sends distinct signed transactions with `sendTransaction` until the node stops
/// answering, recording each acknowledged hash.
async fn client(
    url: String,
    key: Arc<SecretKey>,
    nonces: Arc<AtomicU64>,
    acked: Arc<Mutex<Vec<Hash>>>,
) {
    let http = reqwest::Client::new();
    loop {
        let tx =
            Transaction::new_signed(Payload::Empty, nonces.fetch_add(1, Ordering::Relaxed), &key);
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"sendTransaction","params":[{}]}}"#,
            tx.to_json()
        );
        let answer = http
            .post(&url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await;
        let Ok(answer) = answer else { return };
        let Ok(text) = answer.text().await else {
            return;
        };
        if text.contains(r#""result":{"Ok":null}"#) {
            acked.lock().expect("acked").push(tx.hash);
        } else {
            panic!("a valid transaction was refused: {text}");
        }
    }
}

/// SIGKILL twenty times while several clients send transactions: after every restart each
/// transaction the node acknowledged is stored, and every stored transaction re-hashes and
/// verifies. (Group commit is on: acknowledgements come from shared commits.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_under_load_loses_nothing_acknowledged() {
    let key = Arc::new(SecretKey::from_bytes(&[5u8; 32]).expect("key"));
    let nonces = Arc::new(AtomicU64::new(0));
    let acked: Arc<Mutex<Vec<Hash>>> = Arc::default();
    let mut data = testkit::tempdir();
    for round in 0..ROUNDS {
        let node = tokio::task::block_in_place(|| Running::start_in(data, None, UNLIMITED));
        let before = acked.lock().expect("acked").len();
        let clients: Vec<_> = (0..CLIENTS)
            .map(|_| {
                tokio::spawn(client(
                    format!("{}/rpc", node.base),
                    key.clone(),
                    nonces.clone(),
                    acked.clone(),
                ))
            })
            .collect();
        let start = Instant::now();
        while acked.lock().expect("acked").len() < before + ACKS_PER_ROUND {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "round {round}: the node acknowledged too little"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        data = tokio::task::block_in_place(|| node.kill());
        for c in clients {
            c.await.expect("a client panicked");
        }
        let store =
            app::store::Store::connect(&testkit::sqlite_url(data.path()), &Default::default())
                .await
                .expect("open the database");
        let so_far = acked.lock().expect("acked").clone();
        for hash in &so_far {
            assert!(
                store.get_transaction(hash).await.expect("read").is_some(),
                "round {round}: acknowledged {hash} was lost"
            );
        }
        store.close().await;
    }

    let store = app::store::Store::connect(&testkit::sqlite_url(data.path()), &Default::default())
        .await
        .expect("open the database");
    let mut stored = 0usize;
    let mut before = None;
    loop {
        let page = store
            .list_transactions(&TxFilter::default(), before, 1000)
            .await
            .expect("list");
        for s in &page.items {
            assert_eq!(
                s.tx.compute_hash(),
                s.tx.hash,
                "stored {} re-hashes",
                s.tx.hash
            );
            s.tx.verify_signature().expect("stored signature verifies");
        }
        stored += page.items.len();
        match page.next {
            Some(next) => before = Some(next),
            None => break,
        }
    }
    let acked = acked.lock().expect("acked").len();
    assert!(acked >= ROUNDS * ACKS_PER_ROUND);
    assert!(stored >= acked, "{stored} stored, {acked} acknowledged");
    // Every acknowledged hash was checked after each restart above: none was lost.
    let report = format!(
        "SIGKILL under load: {ROUNDS} kills, {acked} transactions acknowledged, 0 lost, {stored} stored and re-hashed\n"
    );
    print!("{report}");
    testkit::bench::Figures::new("fault-sigkill")
        .add("SIGKILLs under load", ROUNDS as f64, "kills")
        .add("transactions acknowledged", acked as f64, "tx")
        .add("acknowledged transactions lost", 0.0, "tx")
        .write(&report);
}
