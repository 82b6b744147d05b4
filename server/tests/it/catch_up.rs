//! The catch-up between `gevulot run` processes on loopback: a node killed and restarted while
//! 2,000 transactions are published, a node started after they were, and a node connected all
//! along to a publisher whose gossip outbox overflows end with exactly the set the publishing
//! node holds.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use app::crypto::SecretKey;
use app::tx::{Payload, Transaction};
use serde_json::{Value, json};

use crate::network::{ADMIN, Member, eventually_within, member};
use crate::support::{Running, rpc};

const TRANSACTIONS: usize = 2000;
const CLIENTS: usize = 8;
/// Catch-up moves 2,000 transactions through debug builds on a loaded machine: a generous
/// last guard; every wait ends as soon as its condition holds.
const WAIT: Duration = Duration::from_secs(180);

/// Fast rounds, and no front-door limit for the test's own burst.
const ENV: [(&str, &str); 3] = [
    ("GEVULOT_P2P_SYNC_INTERVAL_SECS", "2"),
    ("GEVULOT_RATE_LIMIT", "0"),
    ("GEVULOT_CONCURRENCY_LIMIT", "0"),
];

async fn joining(bootstrap: &str) -> Member {
    let mut env = ENV.to_vec();
    env.push(("GEVULOT_P2P_DISCOVERY_ADDR", bootstrap));
    member(&env).await
}

async fn wait_until<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    eventually_within(WAIT, what, check).await;
}

async fn count(base: &str) -> i64 {
    let info = rpc(base, "gevulot_nodeInfo", json!([])).await;
    info["result"]["transactions"].as_i64().unwrap_or(-1)
}

/// Every stored transaction's hash, through the REST listing.
async fn hashes(base: &str) -> BTreeSet<String> {
    let c = reqwest::Client::new();
    let mut all = BTreeSet::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let url = match &cursor {
            Some(cur) => format!("{base}/api/v1/transactions?limit=1000&cursor={cur}"),
            None => format!("{base}/api/v1/transactions?limit=1000"),
        };
        let page: Value = c
            .get(url)
            .send()
            .await
            .expect("list")
            .json()
            .await
            .expect("json");
        for item in page["items"].as_array().expect("items") {
            all.insert(item["hash"].as_str().expect("hash").to_string());
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return all,
        }
    }
    panic!("more pages than transactions");
}

/// Publishes `TRANSACTIONS` signed transactions on `base` from `CLIENTS` concurrent clients,
/// counting each acknowledgement in `sent`.
async fn publish(base: String, sent: Arc<AtomicUsize>) {
    let mut clients = tokio::task::JoinSet::new();
    for client in 0..CLIENTS {
        let (base, sent) = (base.clone(), sent.clone());
        clients.spawn(async move {
            let key =
                SecretKey::from_bytes(&[u8::try_from(client + 1).expect("seed"); 32]).expect("key");
            let http = reqwest::Client::new();
            for nonce in 0..(TRANSACTIONS / CLIENTS) as u64 {
                let tx = Transaction::new_signed(Payload::Empty, nonce, &key);
                let body =
                    json!({"jsonrpc": "2.0", "id": 1, "method": "sendTransaction", "params": [tx]});
                let r: Value = http
                    .post(format!("{base}/rpc"))
                    .json(&body)
                    .send()
                    .await
                    .expect("send")
                    .json()
                    .await
                    .expect("json");
                assert_eq!(r["result"], json!({"Ok": null}), "{r}");
                sent.fetch_add(1, Ordering::SeqCst);
            }
        });
    }
    while let Some(done) = clients.join_next().await {
        done.expect("client");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_and_restarted_nodes_converge_to_the_same_set() {
    // a's gossip outbox holds one transaction: most of the burst is never gossiped.
    let mut a_env = ENV.to_vec();
    a_env.push(("GEVULOT_P2P_OUTBOX_CAPACITY", "1"));
    let a = member(&a_env).await;
    let a_addr = a.node.p2p.to_string();
    let b = joining(&a_addr).await;
    let d = joining(&a_addr).await;
    wait_until("a, b and d are connected", || async {
        let mut both = vec![b.key.clone(), d.key.clone()];
        both.sort();
        a.peer_keys().await == both
    })
    .await;

    let sent = Arc::new(AtomicUsize::new(0));
    let publisher = tokio::spawn(publish(a.node.base.clone(), sent.clone()));
    let reached = |n: usize| {
        let sent = sent.clone();
        move || {
            let now = sent.load(Ordering::SeqCst);
            async move { now >= n }
        }
    };

    // b dies a third of the way through and comes back at two thirds.
    wait_until("a third is published", reached(TRANSACTIONS / 3)).await;
    let Member { node, token, key } = b;
    let b_data = node.kill();
    wait_until("two thirds are published", reached(2 * TRANSACTIONS / 3)).await;
    let mut env = ENV.to_vec();
    env.extend([
        ("GEVULOT_ADMIN_PASSWORD", ADMIN.1),
        ("GEVULOT_P2P_DISCOVERY_ADDR", &a_addr),
    ]);
    let b = Member {
        node: Running::start_in(b_data, None, &env),
        token,
        key,
    };
    publisher.await.expect("publisher");
    assert_eq!(sent.load(Ordering::SeqCst), TRANSACTIONS);

    // c starts once everything is published.
    let c = joining(&a_addr).await;
    for (name, node) in [("b", &b), ("c", &c), ("d", &d)] {
        wait_until(&format!("{name} holds all {TRANSACTIONS}"), || async {
            count(&node.node.base).await == TRANSACTIONS as i64
        })
        .await;
    }
    let expected = hashes(&a.node.base).await;
    assert_eq!(expected.len(), TRANSACTIONS);
    assert_eq!(hashes(&b.node.base).await, expected, "b's set");
    assert_eq!(hashes(&c.node.base).await, expected, "c's set");
    assert_eq!(hashes(&d.node.base).await, expected, "d's set");
    // a's outbox overflowed: what it could not gossip reached d through the catch-up.
    let dropped: u64 = a
        .metrics()
        .await
        .lines()
        .find_map(|l| l.strip_prefix("gevulot_p2p_transactions_total{outcome=\"dropped\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(dropped > 0, "a's outbox overflowed");
    assert!(
        d.network().await["sync"]["pulled"]
            .as_u64()
            .expect("pulled")
            > 0,
        "d pulled what gossip did not bring"
    );

    // c got what gossip never brought it by pulling; its view and metrics say so.
    wait_until("c counts what it pulled", || async {
        c.network().await["sync"]["pulled"].as_u64().unwrap_or(0) > 0
    })
    .await;
    wait_until("c's lag reaches 0", || async {
        c.network().await["sync"]["lag"] == 0
    })
    .await;
    let metrics = c.metrics().await;
    for series in [
        "gevulot_p2p_sync_pulled_transactions_total",
        "gevulot_p2p_sync_rounds_total{outcome=\"ok\"}",
        "gevulot_p2p_sync_lag 0",
    ] {
        assert!(metrics.contains(series), "{series} in\n{metrics}");
    }
}
