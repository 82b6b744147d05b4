//! A commit whose answer never arrives: the server stored the transactions, the node never heard
//! it say so. The submitter is told nothing was acknowledged and to retry; once the database
//! answers again the node finds the transactions stored and announces them, once, whether or
//! not a retry comes. One the failed commit did not store is forgotten, and its retry is new.
//! A task phase change whose answer is lost is settled by asking the database.
//!
//! A proxy between the store and the test's PostgreSQL server cuts one connection: after the
//! server has committed and before its answer, or before the request reaches it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use app::events::Event;
use app::model::{Phase, Source};
use app::node::{AclPolicy, Intake, SubmitError, UnknownOutcomes};
use app::store::{PoolOptions, Store};
use app::tx::Hash;
use app::validate::Limits;

use crate::support::*;

/// Forwards connections to a PostgreSQL server. Once armed, the next connection to send
/// anything is cut (see [`Cut`]).
struct CuttingProxy {
    url: String,
    armed: Arc<AtomicU8>,
    cuts: Arc<AtomicUsize>,
}

/// Where a connection is cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Cut {
    /// The server's whole answer to the request is withheld, and the connection closed when
    /// the server says it is ready for the next request, outside a transaction, after completing
    /// a command: the statement, or the transaction it ended, has committed by then.
    AfterCommit = 1,
    /// The request never reaches the server; the connection is closed.
    BeforeRequest = 2,
}

impl CuttingProxy {
    /// A proxy for the database at `url` (`postgres://user@host:port/db`), and its own URL.
    async fn start(url: &str) -> Self {
        let rest = url.split_once('@').expect("a user in the URL").1;
        let (authority, database) = rest.split_once('/').expect("a database in the URL");
        let server: SocketAddr = authority.parse().expect("host:port");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let local = listener.local_addr().expect("address");
        let user = url.split_once("://").expect("scheme").1;
        let user = user.split_once('@').expect("user").0;
        let armed = Arc::new(AtomicU8::new(0));
        let cuts = Arc::new(AtomicUsize::new(0));
        let (a, c) = (armed.clone(), cuts.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(forward(client, server, a.clone(), c.clone()));
            }
        });
        Self {
            // No TLS negotiation: the server's side is a stream of messages from the start.
            url: format!("postgres://{user}@{local}/{database}?sslmode=disable"),
            armed,
            cuts,
        }
    }

    fn arm(&self, cut: Cut) {
        self.armed.store(cut as u8, Ordering::SeqCst);
    }

    fn cuts(&self) -> usize {
        self.cuts.load(Ordering::SeqCst)
    }
}

/// One connection through the proxy (see [`CuttingProxy`]). The server's side is read message
/// by message (a type byte, then a length that counts itself).
async fn forward(
    client: TcpStream,
    server: SocketAddr,
    armed: Arc<AtomicU8>,
    cuts: Arc<AtomicUsize>,
) -> std::io::Result<()> {
    let upstream = TcpStream::connect(server).await?;
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_server, mut to_server) = upstream.into_split();
    let doomed = Arc::new(AtomicBool::new(false));
    let mut requests = tokio::spawn({
        let (doomed, cuts) = (doomed.clone(), cuts.clone());
        async move {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = from_client.read(&mut buf).await?;
                if n == 0 {
                    return Ok::<_, std::io::Error>(());
                }
                // Marked before the request goes on, so before any of its answer comes back.
                if !doomed.load(Ordering::SeqCst) {
                    match armed.swap(0, Ordering::SeqCst) {
                        1 => doomed.store(true, Ordering::SeqCst),
                        2 => {
                            cuts.fetch_add(1, Ordering::SeqCst);
                            return Ok(());
                        }
                        _ => {}
                    }
                }
                to_server.write_all(&buf[..n]).await?;
            }
        }
    });
    let mut buf = vec![0u8; 64 * 1024];
    let mut pending = Vec::new();
    let mut completed = false;
    loop {
        // The requests' side ends when the client closes or the request is cut: so does this.
        let n = tokio::select! {
            n = from_server.read(&mut buf) => n?,
            _ = &mut requests => return Ok(()),
        };
        if n == 0 {
            break;
        }
        pending.extend_from_slice(&buf[..n]);
        while pending.len() >= 5 {
            let len = u32::from_be_bytes([pending[1], pending[2], pending[3], pending[4]]);
            let end = 1 + len as usize;
            if pending.len() < end {
                break;
            }
            let message: Vec<u8> = pending.drain(..end).collect();
            if !doomed.load(Ordering::SeqCst) {
                to_client.write_all(&message).await?;
                continue;
            }
            completed |= message[0] == b'C';
            // ReadyForQuery's one byte of body: `I` idle, `T` in a transaction, `E` failed one.
            if message[0] == b'Z' && message.get(5) == Some(&b'I') && completed {
                // Committed, and the node never hears it: both sides are closed.
                cuts.fetch_add(1, Ordering::SeqCst);
                requests.abort();
                return Ok(());
            }
        }
    }
    requests.abort();
    Ok(())
}

/// The next transaction the node announces (other events are skipped); fails after a generous
/// bound.
async fn next_stored(events: &mut tokio::sync::broadcast::Receiver<Event>) -> Hash {
    let wait = async {
        loop {
            if let Event::TransactionStored { hash, .. } = events.recv().await.expect("events") {
                return hash;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), wait)
        .await
        .expect("an announcement within 30 s")
}

/// A fresh database behind a proxy, a store on it (migrated), and an intake over that store.
async fn through_proxy() -> (CuttingProxy, Store, Intake) {
    let (_, url) = testkit::own_cluster_database().await.expect("a database");
    let proxy = CuttingProxy::start(&url).await;
    let store = Store::connect(&proxy.url, &PoolOptions::default())
        .await
        .expect("connect through the proxy");
    store.migrate().await.expect("migrate");
    let intake = Intake::new(store.clone(), Limits::default(), AclPolicy::Open);
    (proxy, store, intake)
}

#[tokio::test]
async fn an_unanswered_commit_is_announced_once_it_is_known() {
    let (proxy, store, intake) = through_proxy().await;
    let mut events = intake.events().subscribe();
    let k = key(9);
    let submit = |nonce| {
        let (intake, tx) = (intake.clone(), empty(&k, nonce));
        async move { (intake.submit(&tx, Source::Rest).await, tx) }
    };
    // The writer's connection is open and knows the batch statement.
    let (first, tx) = submit(0).await;
    first.expect("the first transaction");
    assert_eq!(next_stored(&mut events).await, tx.hash);

    // The server commits, the answer is lost: the submitter is told to retry; with no retry and
    // nothing else submitted, the node announces it by itself once the database answers.
    proxy.arm(Cut::AfterCommit);
    let (outcome, lost) = submit(1).await;
    assert!(matches!(outcome, Err(SubmitError::Store(_))), "{outcome:?}");
    assert_eq!(proxy.cuts(), 1, "the answer was withheld");
    assert!(
        store
            .get_transaction(&lost.hash)
            .await
            .expect("read")
            .is_some(),
        "the server committed it"
    );
    assert_eq!(next_stored(&mut events).await, lost.hash);
    let retry = intake.submit(&lost, Source::Rest).await.expect("the retry");
    assert!(!retry.new, "already stored");

    // A retry at once: it is told the transaction is stored, and it is announced once, before
    // what is submitted after it.
    proxy.arm(Cut::AfterCommit);
    let (outcome, lost) = submit(2).await;
    assert!(outcome.is_err(), "{outcome:?}");
    assert_eq!(proxy.cuts(), 2);
    let retry = intake.submit(&lost, Source::Rest).await.expect("the retry");
    assert!(!retry.new, "already stored");
    let (next, after) = submit(3).await;
    assert!(next.expect("the next transaction").new);
    assert_eq!(next_stored(&mut events).await, lost.hash);
    assert_eq!(next_stored(&mut events).await, after.hash);

    // The connection fails before the request reaches the server: nothing is stored, the retry
    // is new and announced once.
    proxy.arm(Cut::BeforeRequest);
    let (outcome, missed) = submit(4).await;
    assert!(outcome.is_err(), "{outcome:?}");
    assert_eq!(proxy.cuts(), 3);
    assert!(
        store
            .get_transaction(&missed.hash)
            .await
            .expect("read")
            .is_none(),
        "nothing of it stored"
    );
    let retry = intake
        .submit(&missed, Source::Rest)
        .await
        .expect("the retry");
    assert!(retry.new, "stored by the retry");
    assert_eq!(next_stored(&mut events).await, missed.hash);
    assert!(events.try_recv().is_err(), "nothing announced twice");
    assert_eq!(
        intake.unknown_outcomes(),
        UnknownOutcomes {
            stored: 2,
            not_stored: 1,
            dropped: 0,
            waiting: 0,
        }
    );
    assert_eq!(store.count_transactions().await.expect("count"), 5);
}

/// The task phases' writer: a change whose answer is lost after the server committed it is
/// reported as made (the database, asked once it answers, holds it) and subscribers hear of it;
/// one whose request never reached the server fails, and its retry is made.
#[tokio::test]
async fn an_unanswered_phase_change_is_settled_by_asking() {
    let (proxy, store, intake) = through_proxy().await;
    let (r, mut task) = stored_run_with_task(&store, 10, "unanswered").await;
    let mut events = intake.events().subscribe();
    // The first change opens the writer's connection and prepares its statement; each cut
    // meets the connection the writer kept from the change before (used a moment ago, it is
    // not checked first).
    for (phase, cut) in [
        (Phase::Downloading, None),
        (Phase::WaitingForResources, Some(Cut::BeforeRequest)),
        (Phase::Booting, Some(Cut::AfterCommit)),
    ] {
        if let Some(cut) = cut {
            proxy.arm(cut);
        }
        let changed = intake.set_task_phase(&task, phase, None).await;
        if cut == Some(Cut::BeforeRequest) {
            assert!(changed.is_err(), "never reached the server: {changed:?}");
            assert!(
                intake
                    .set_task_phase(&task, phase, None)
                    .await
                    .expect("the retry"),
                "made by the retry"
            );
        } else {
            assert!(changed.expect("made"), "{phase:?}");
        }
        task.phase = phase;
    }
    assert_eq!(proxy.cuts(), 2);
    let mut heard = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let Event::TaskChanged { phase, .. } = event {
            heard.push(phase);
        }
    }
    let made = [
        Phase::Downloading,
        Phase::WaitingForResources,
        Phase::Booting,
    ];
    assert_eq!(heard, made, "each change heard once");
    let timeline: Vec<Phase> = store
        .task_timelines(&r.hash)
        .await
        .expect("timeline")
        .iter()
        .map(|c| c.phase)
        .collect();
    assert_eq!(timeline[1..], made, "{timeline:?}");
}
