//! Webhooks in the core, on both databases: the notifications a Run's task changes make reach
//! the hooks that want them, signed and in order, with the Run's end last; a failing receiver
//! is retried, then given up on with the reason in the log, while other hooks go on; what was
//! stored but not sent survives a restart of the sender, and so does a task change made while no
//! sender runs; inward addresses are refused. On PostgreSQL a change is read only once no
//! transaction that could commit an earlier one is still running.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use app::events::{Event, Events};
use app::model::{DeliveryState, NewTask, Phase, Source, TaskKind, WebhookFilter};
use app::webhooks::{Allowed, HookError, Seal, Settings, Webhooks};
use hmac::{KeyInit, Mac};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::storage::{Db, postgres, sqlite};
use crate::support::*;

/// One request a receiver got: its path, its `x-gevulot-*` headers and its body.
#[derive(Clone, Debug)]
struct Received {
    path: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map_or("", |(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).expect("a JSON body")
    }
}

/// A receiver on 127.0.0.1: `/ok…` answers 204, anything else 503. Records every request.
async fn receiver() -> (String, Arc<Mutex<Vec<Received>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // The head, then as much body as it announces.
                let (head, body) = loop {
                    let n = stream.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_string();
                    let length: usize = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().to_string())
                        })
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + length {
                        break (
                            head,
                            String::from_utf8_lossy(&buf[end + 4..end + 4 + length]).to_string(),
                        );
                    }
                };
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                let headers = head
                    .lines()
                    .skip(1)
                    .filter_map(|l| l.split_once(':'))
                    .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
                    .filter(|(n, _)| n.starts_with("x-gevulot-"))
                    .collect();
                let ok = path.starts_with("/ok");
                log.lock().expect("log").push(Received {
                    path,
                    headers,
                    body,
                });
                let answer: &[u8] = if ok {
                    b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"
                } else {
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbusy"
                };
                let _ = stream.write_all(answer).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (base, seen)
}

fn settings() -> Settings {
    Settings {
        allowed: Allowed::parse("127.0.0.0/8").expect("nets"),
        max_attempts: 3,
        retry_backoff: Duration::from_millis(50),
        timeout: Duration::from_secs(5),
    }
}

/// Waits until `done` holds of what the receiver saw (at most 30 s).
async fn until(seen: &Mutex<Vec<Received>>, what: &str, done: impl Fn(&[Received]) -> bool) {
    let start = Instant::now();
    loop {
        if done(&seen.lock().expect("log")) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "never: {what}: {:?}",
            seen.lock().expect("log")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn verify(secret: &str, r: &Received) {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(format!("{}.{}", r.header("x-gevulot-timestamp"), r.body).as_bytes());
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(
        r.header("x-gevulot-signature"),
        expected,
        "signature of {r:?}"
    );
}

crate::storage::conformance!(webhook_notifications_are_signed_ordered_retried_and_durable);

async fn webhook_notifications_are_signed_ordered_retried_and_durable(db: Db) {
    let store = db.store.clone();
    let author = key(7);
    let d = deploy(&author, "wh-prover", "wh-verifier", 1);
    let r = run(
        &author,
        &[program("wh-prover").hash, program("wh-verifier").hash],
        2,
    );
    for tx in [&d, &r] {
        store
            .insert_transaction(tx, Source::Rpc)
            .await
            .expect("insert");
    }
    let (base, seen) = receiver().await;
    let seal = || Seal::from_node_key(&key(30));
    let hooks = Webhooks::new(store.clone(), settings(), seal());

    // Inward addresses are refused, here and by a node that allows nothing.
    for url in [
        "http://10.0.0.1/hook",
        "http://169.254.169.254/latest",
        "http://[::1]:9/x",
    ] {
        let refused = hooks
            .create("ana", url, WebhookFilter::default())
            .await
            .expect_err(url);
        assert!(
            matches!(refused, HookError::AddressNotAllowed(_)),
            "{url}: {refused:?}"
        );
    }
    let strict = Webhooks::new(store.clone(), Settings::default(), seal());
    let refused = strict
        .create("ana", &format!("{base}/ok"), WebhookFilter::default())
        .await
        .expect_err("loopback");
    assert!(
        matches!(refused, HookError::AddressNotAllowed(_)),
        "{refused:?}"
    );
    assert!(matches!(
        hooks
            .create("ana", "ftp://example.com/x", WebhookFilter::default())
            .await,
        Err(HookError::BadUrl(_))
    ));

    let every = hooks
        .create("ana", &format!("{base}/ok"), WebhookFilter::default())
        .await
        .expect("hook");
    assert!(every.secret.starts_with("whsec_"), "{}", every.secret);
    // The database holds it sealed under the node key, never in clear.
    let stored = stored_secret(&store, every.hook.id).await;
    assert!(stored.starts_with("sealed1:"), "{stored}");
    assert!(!stored.contains(&every.secret[6..]), "{stored}");
    // A hook an earlier release stored with its secret in clear still signs, and is sealed the
    // first time the sender reads it.
    let legacy_secret = "whsec_stored-in-clear-by-an-earlier-release";
    let legacy = store
        .create_webhook(
            "ana",
            &format!("{base}/ok?legacy"),
            legacy_secret,
            &WebhookFilter {
                run: Some(r.hash),
                author: None,
            },
        )
        .await
        .expect("a hook stored in clear");
    let by_author = hooks
        .create(
            "ana",
            &format!("{base}/ok?by=author"),
            WebhookFilter {
                run: None,
                author: Some(author.public_key()),
            },
        )
        .await
        .expect("hook");
    let elsewhere = hooks
        .create(
            "ana",
            &format!("{base}/ok?other"),
            WebhookFilter {
                run: Some(d.hash),
                author: None,
            },
        )
        .await
        .expect("hook");
    let failing = hooks
        .create("bob", &format!("{base}/down"), WebhookFilter::default())
        .await
        .expect("hook");

    // The Run's two steps go through their phases; the sender hears of each on the bus.
    let events = Events::default();
    let sender = hooks.run(&events);
    let tasks = store
        .create_tasks(&[
            NewTask {
                tx: r.hash,
                step_index: 0,
                program: program("wh-prover").hash,
                kind: TaskKind::Proof,
            },
            NewTask {
                tx: r.hash,
                step_index: 1,
                program: program("wh-verifier").hash,
                kind: TaskKind::Verification,
            },
        ])
        .await
        .expect("tasks");
    let changes = [
        (0, Phase::Queued),
        (1, Phase::Queued),
        (0, Phase::Running),
        (0, Phase::Succeeded),
        (1, Phase::Running),
        (1, Phase::Succeeded),
    ];
    for (step, phase) in changes {
        let task = &tasks[step];
        if phase != Phase::Queued {
            store
                .set_task_phase(task.id, phase, None)
                .await
                .expect("phase");
        }
        events.publish(Event::TaskChanged {
            tx: r.hash,
            task_id: task.id,
            phase,
            failure: None,
        });
    }

    let to = |seen: &[Received], query: &str| -> Vec<Received> {
        seen.iter()
            .filter(|s| s.path == format!("/ok{query}"))
            .cloned()
            .collect()
    };
    until(&seen, "seven notifications to each wanting hook", |s| {
        to(s, "").len() == 7 && to(s, "?by=author").len() == 7 && to(s, "?legacy").len() == 7
    })
    .await;
    for n in to(&seen.lock().expect("log"), "?legacy") {
        verify(legacy_secret, &n);
    }
    let resealed = stored_secret(&store, legacy.id).await;
    assert!(resealed.starts_with("sealed1:"), "{resealed}");
    let got = to(&seen.lock().expect("log"), "");
    let described: Vec<(String, String)> = got
        .iter()
        .map(|n| {
            let v = n.json();
            let what = v["task"]["phase"]
                .as_str()
                .or(v["outcome"].as_str())
                .unwrap_or("")
                .to_string();
            (n.header("x-gevulot-event").to_string(), what)
        })
        .collect();
    let expected: Vec<(String, String)> = changes
        .iter()
        .map(|(_, p)| ("task.phase".to_string(), p.as_str().to_string()))
        .chain([("run.ended".to_string(), "succeeded".to_string())])
        .collect();
    assert_eq!(
        described, expected,
        "in the order they happened, the end last"
    );
    let ids: Vec<i64> = got
        .iter()
        .map(|n| n.header("x-gevulot-delivery").parse().expect("id"))
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    for n in &got {
        verify(&every.secret, n);
        assert_eq!(n.json()["run"], r.hash.to_hex());
    }
    let ended = got.last().expect("end").json();
    assert_eq!(ended["tasks"].as_array().map(Vec::len), Some(2), "{ended}");
    for n in to(&seen.lock().expect("log"), "?by=author") {
        verify(&by_author.secret, &n);
    }
    assert!(
        to(&seen.lock().expect("log"), "?other").is_empty(),
        "a hook for another Run hears nothing"
    );

    // The failing receiver: the first notification is tried three times, then given up on with
    // the reason; the next ones follow, in order, each given up on the same way.
    let deadline = Instant::now() + Duration::from_secs(30);
    let log = loop {
        let log = store
            .deliveries(failing.hook.id, None, 100)
            .await
            .expect("log");
        if log.len() == 7 && log.iter().all(|d| d.state == DeliveryState::GaveUp) {
            break log;
        }
        assert!(Instant::now() < deadline, "not all given up: {log:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let first = log.last().expect("oldest");
    assert_eq!(first.attempts, 3);
    assert_eq!(first.last_status, Some(503));
    let why = first.last_error.clone().unwrap_or_default();
    assert!(
        why.contains("gave up after 3 attempts") && why.contains("503") && why.contains("busy"),
        "{why}"
    );
    let tries: Vec<i64> = seen
        .lock()
        .expect("log")
        .iter()
        .filter(|s| s.path == "/down")
        .map(|s| s.header("x-gevulot-delivery").parse().expect("id"))
        .collect();
    assert_eq!(tries.len(), 21, "three tries of each of seven");
    assert!(
        tries.windows(2).all(|w| w[0] <= w[1]),
        "never one ahead of an earlier: {tries:?}"
    );
    assert_eq!(hooks.counts().gave_up, 7);
    assert_eq!(hooks.counts().delivered, 21, "seven to each of three hooks");

    // A notification stored but not sent when the sender stops, and a task change made while no
    // sender runs: a new sender (a restarted node), whose bus carries nothing, sends the first
    // and reads the second from where its predecessor left off.
    for h in sender {
        h.abort();
    }
    hooks.delete(failing.hook.id).await.expect("delete");
    assert!(
        store
            .deliveries(failing.hook.id, None, 10)
            .await
            .expect("log")
            .is_empty()
    );
    store
        .enqueue_deliveries(
            &[app::store::NewDelivery {
                hook_id: every.hook.id,
                event: "task.phase",
                run: r.hash,
                payload: "{\"event\":\"task.phase\",\"stored\":\"before the stop\"}".into(),
            }],
            None,
        )
        .await
        .expect("stored");
    let third = proof_task(&store, r.hash, 2, "wh-prover").await;
    let restarted = Webhooks::new(store.clone(), settings(), seal());
    let sender = restarted.run(&Events::default());
    until(&seen, "both after a restart", |s| {
        to(s, "").len() == 9 && to(s, "?by=author").len() == 8
    })
    .await;
    let got = to(&seen.lock().expect("log"), "");
    assert_eq!(got[7].json()["stored"], "before the stop");
    let change = got[8].json();
    assert_eq!(change["task"]["id"], third.id);
    assert_eq!(change["task"]["phase"], "queued");
    for n in &got[7..] {
        verify(&every.secret, n);
    }

    // A node whose key was replaced cannot open the secrets: its attempts fail and say why.
    for h in sender {
        h.abort();
    }
    store
        .enqueue_deliveries(
            &[app::store::NewDelivery {
                hook_id: every.hook.id,
                event: "task.phase",
                run: r.hash,
                payload: "{}".into(),
            }],
            None,
        )
        .await
        .expect("stored");
    let rekeyed = Webhooks::new(store.clone(), settings(), Seal::from_node_key(&key(31)));
    let _sender = rekeyed.run(&Events::default());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = store.deliveries(every.hook.id, None, 1).await.expect("log");
        let why = log[0].last_error.clone().unwrap_or_default();
        if why.contains("sealed under another node key") {
            break;
        }
        assert!(Instant::now() < deadline, "no failure said why: {log:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        to(&seen.lock().expect("log"), "").len(),
        9,
        "nothing sent unsigned"
    );
    let _ = elsewhere;
}

/// The secret the database holds for hook `id`, as stored.
async fn stored_secret(store: &app::store::Store, id: i64) -> String {
    store
        .webhook_secrets()
        .await
        .expect("hooks")
        .into_iter()
        .find(|(h, _)| h.id == id)
        .expect("the hook")
        .1
}

/// A change whose transaction is still open holds back the changes committed after it began:
/// read by sequence number alone, the later one would be read first and the earlier one, with
/// the lower number, skipped once it commits.
#[tokio::test]
async fn task_changes_are_read_once_no_earlier_one_can_commit() {
    use sqlx::Connection as _;
    let db = postgres().await;
    let store = &db.store;
    let (_, task) = stored_run_with_task(store, 8, "settle").await;
    let queued = store
        .task_changes_after(Default::default(), 10)
        .await
        .expect("read");
    assert_eq!(queued.len(), 1, "{queued:?}");
    let after = queued[0].cursor;

    let mut open = sqlx::PgConnection::connect(&db.url).await.expect("connect");
    sqlx::raw_sql("BEGIN")
        .execute(&mut open)
        .await
        .expect("begin");
    sqlx::query("INSERT INTO task_phases (task_id, phase, at) VALUES ($1, 'downloading', 1)")
        .bind(task.id)
        .execute(&mut open)
        .await
        .expect("the earlier change, not committed yet");
    store
        .set_task_phase(task.id, Phase::WaitingForResources, None)
        .await
        .expect("a later change, committed");
    let held = store.task_changes_after(after, 10).await.expect("read");
    assert!(
        held.is_empty(),
        "nothing is read past an open change: {held:?}"
    );

    sqlx::raw_sql("COMMIT")
        .execute(&mut open)
        .await
        .expect("commit");
    let read = store.task_changes_after(after, 10).await.expect("read");
    let phases: Vec<Phase> = read.iter().map(|c| c.phase).collect();
    assert_eq!(phases, [Phase::Downloading, Phase::WaitingForResources]);
    assert!(read[0].cursor < read[1].cursor && after < read[0].cursor);
    assert!(
        read[0].cursor.seq < read[1].cursor.seq,
        "the earlier change has the lower number"
    );
    assert_eq!(
        store
            .task_changes_after(read[1].cursor, 10)
            .await
            .expect("read"),
        []
    );
}

/// A position kept by a database restored from a dump into a new server names transactions
/// that server has not reached: the sender forgets it and notifies the changes made from its
/// start, instead of waiting for the new server's numbers to pass the old ones.
#[tokio::test]
async fn a_position_from_another_server_is_forgotten() {
    let db = postgres().await;
    let store = db.store.clone();
    let (r, _) = stored_run_with_task(&store, 11, "restored").await;
    let far = app::store::ChangeCursor {
        xid: store.task_changes_horizon().await.expect("horizon") + 1_000_000,
        seq: 1,
    };
    store
        .enqueue_deliveries(&[], Some(far))
        .await
        .expect("a position from elsewhere");
    let (base, seen) = receiver().await;
    let hooks = Webhooks::new(store.clone(), settings(), Seal::from_node_key(&key(30)));
    hooks
        .create("ana", &format!("{base}/ok"), WebhookFilter::default())
        .await
        .expect("hook");
    let _sender = hooks.run(&Events::default());
    let task = proof_task(&store, r.hash, 1, "restored").await;
    until(&seen, "the new task's notification", |s| !s.is_empty()).await;
    let got = seen.lock().expect("log")[0].json();
    assert_eq!(got["task"]["id"], task.id, "{got}");
    assert_eq!(
        seen.lock().expect("log").len(),
        1,
        "nothing from before the start"
    );
}
