//! Group commit in the intake, on SQLite and PostgreSQL: concurrent submissions share commits,
//! each keeps its own outcome, and a failed commit acknowledges nothing.
//!
//! The submissions of a case are polled together by `join_all` on the test's one-thread runtime,
//! so all of them are validated and queued before the writer (another task) first runs: the batch
//! they form is decided by the runtime, not by timing.

use futures::future::join_all;

use app::events::Event;
use app::model::{NewTask, Phase, Source, TaskKind};
use app::node::{AclPolicy, Intake, SubmitError};
use app::store::BackendKind;
use app::tx::Transaction;
use app::validate::{Limits, ValidationError};

use crate::storage::{Db, postgres, sqlite};
use crate::support::*;

crate::storage::conformance!(
    concurrent_submissions_share_a_commit,
    a_failed_commit_acknowledges_nothing,
    concurrent_phase_changes_share_a_commit,
);

/// The hashes of the `TransactionStored` events received so far.
fn stored_events(events: &mut tokio::sync::broadcast::Receiver<Event>) -> Vec<app::tx::Hash> {
    let mut hashes = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let Event::TransactionStored { hash, .. } = event {
            hashes.push(hash);
        }
    }
    hashes
}

/// Thirty valid transactions, one of them twice, and one whose hash does not match, submitted
/// together: one commit stores the valid ones; the duplicate is one transaction (one submitter
/// is told it is new, the other that it was already there); the invalid one is refused alone;
/// the events name each new transaction once, after the commit.
async fn concurrent_submissions_share_a_commit(db: Db) {
    let intake = Intake::new(db.store.clone(), Limits::default(), AclPolicy::Open);
    let mut events = intake.events().subscribe();
    let k = key(3);
    let valid: Vec<Transaction> = (0..30).map(|n| empty(&k, n)).collect();
    let mut forged = empty(&k, 100);
    forged.nonce = 101;
    let mut submitted: Vec<&Transaction> = valid.iter().collect();
    submitted.push(&valid[7]);
    submitted.push(&forged);

    let outcomes = join_all(submitted.iter().map(|tx| intake.submit(tx, Source::Rpc))).await;

    for (n, outcome) in outcomes[..30].iter().enumerate() {
        let s = outcome.as_ref().expect("a valid transaction is stored");
        assert_eq!(s.hash, valid[n].hash);
        assert_eq!(s.new, n != 7 || !outcomes[30].as_ref().expect("dup").new);
    }
    assert_eq!(
        outcomes[30]
            .as_ref()
            .expect("the duplicate is acknowledged")
            .hash,
        valid[7].hash
    );
    assert!(
        matches!(
            outcomes[31],
            Err(SubmitError::Invalid(ValidationError::HashMismatch { .. }))
        ),
        "{:?}",
        outcomes[31]
    );
    let stats = intake.commit_stats();
    assert_eq!(
        (stats.commits, stats.items, stats.failed_batches),
        (1, 31, 0),
        "{stats:?}"
    );
    assert_eq!(db.store.count_transactions().await.expect("count"), 30);
    let mut announced = stored_events(&mut events);
    announced.sort();
    let mut expected: Vec<_> = valid.iter().map(|t| t.hash).collect();
    expected.sort();
    assert_eq!(announced, expected);
}

/// SQL that makes the database refuse one hash (`{hash}`), and SQL that lifts it.
struct Refusal {
    install: &'static str,
    remove: &'static str,
}

/// SQLite: an insert of the doomed hash is refused inside the batch's database transaction.
const SQLITE_REFUSAL: Refusal = Refusal {
    install: "CREATE TRIGGER refuse BEFORE INSERT ON transactions \
     WHEN NEW.hash = '{hash}' BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
    remove: "DROP TRIGGER refuse",
};

/// PostgreSQL: a deferred constraint trigger, so the batch fails at its COMMIT.
const POSTGRES_REFUSAL: Refusal = Refusal {
    install: "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN \
     IF NEW.hash = '{hash}' THEN RAISE EXCEPTION 'refused by the test'; END IF; RETURN NEW; \
     END $$ LANGUAGE plpgsql; \
     CREATE CONSTRAINT TRIGGER refuse AFTER INSERT ON transactions \
     DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse()",
    remove: "DROP TRIGGER refuse ON transactions",
};

/// A batch whose commit fails stores nothing and acknowledges nothing of itself; its
/// transactions are then stored one by one, so only the one the database refuses fails (its
/// submitter gets an error), and a retry of it succeeds once the database accepts it.
async fn a_failed_commit_acknowledges_nothing(db: Db) {
    let refusal = match db.store.backend() {
        BackendKind::Sqlite => SQLITE_REFUSAL,
        BackendKind::Postgres => POSTGRES_REFUSAL,
    };
    let intake = Intake::new(db.store.clone(), Limits::default(), AclPolicy::Open);
    let mut events = intake.events().subscribe();
    let k = key(4);
    let txs: Vec<Transaction> = (0..20).map(|n| empty(&k, n)).collect();
    let doomed = &txs[12];
    db.store
        .execute_raw(&refusal.install.replace("{hash}", &doomed.hash.to_hex()))
        .await
        .expect("install the refusal");

    let outcomes = join_all(txs.iter().map(|tx| intake.submit(tx, Source::Rest))).await;

    for (n, outcome) in outcomes.iter().enumerate() {
        if n == 12 {
            assert!(
                matches!(outcome, Err(SubmitError::Store(_))),
                "the refused one fails: {outcome:?}"
            );
        } else {
            assert!(outcome.as_ref().expect("the others are stored").new, "{n}");
        }
    }
    let stats = intake.commit_stats();
    assert_eq!((stats.commits, stats.failed_batches), (1, 1), "{stats:?}");
    assert!(
        db.store
            .get_transaction(&doomed.hash)
            .await
            .expect("read")
            .is_none(),
        "nothing of a refused transaction is stored"
    );
    let announced = stored_events(&mut events);
    assert_eq!(announced.len(), 19);
    assert!(!announced.contains(&doomed.hash));

    db.store
        .execute_raw(refusal.remove)
        .await
        .expect("remove the refusal");
    let retried = intake
        .submit(doomed, Source::Rest)
        .await
        .expect("the retry is stored");
    assert!(retried.new);
    assert_eq!(db.store.count_transactions().await.expect("count"), 20);
    assert_eq!(stored_events(&mut events), vec![doomed.hash]);
}

/// Task phase changes made together (a burst of tasks reaching the scheduler) share one commit:
/// each is told whether its task changed (a task that already ended is not), two changes of one
/// task keep their order in its timeline, and subscribers hear of each change that happened.
async fn concurrent_phase_changes_share_a_commit(db: Db) {
    let intake = Intake::new(db.store.clone(), Limits::default(), AclPolicy::Open);
    let k = key(5);
    let steps: Vec<app::tx::Hash> = (0..5).map(|n| program(&format!("p{n}")).hash).collect();
    let mut tasks = Vec::new();
    for nonce in 0..4 {
        let r = run(&k, &steps, nonce);
        db.store
            .insert_transaction(&r, Source::Rpc)
            .await
            .expect("run");
        let new: Vec<NewTask> = steps
            .iter()
            .enumerate()
            .map(|(i, p)| NewTask {
                tx: r.hash,
                step_index: i as i64,
                program: *p,
                kind: TaskKind::Proof,
            })
            .collect();
        tasks.extend(db.store.create_tasks(&new).await.expect("tasks"));
    }
    assert_eq!(tasks.len(), 20);
    let ended = &tasks[19];
    assert!(
        intake
            .set_task_phase(ended, Phase::Cancelled, Some("cancelled"))
            .await
            .expect("end one")
    );
    let mut events = intake.events().subscribe();

    let mut changes: Vec<(&app::model::Task, Phase)> =
        tasks.iter().map(|t| (t, Phase::Downloading)).collect();
    changes.push((&tasks[0], Phase::WaitingForResources));
    let outcomes = join_all(
        changes
            .iter()
            .map(|(t, phase)| intake.set_task_phase(t, *phase, None)),
    )
    .await;

    for (n, outcome) in outcomes.iter().enumerate() {
        let changed = *outcome.as_ref().expect("written");
        assert_eq!(changed, n != 19, "change {n}: only the ended task stays");
    }
    let stats = intake.phase_commit_stats();
    assert_eq!(
        (stats.commits, stats.items, stats.failed_batches),
        (2, 22, 0),
        "one commit for the first change, one for the 21 made together: {stats:?}"
    );
    let first = db
        .store
        .task_timelines(&tasks[0].tx)
        .await
        .expect("timeline");
    let of_first: Vec<Phase> = first
        .iter()
        .filter(|c| c.task_id == tasks[0].id)
        .map(|c| c.phase)
        .collect();
    assert_eq!(
        of_first,
        [
            Phase::Queued,
            Phase::Downloading,
            Phase::WaitingForResources
        ]
    );
    let mut heard = 0;
    while let Ok(event) = events.try_recv() {
        assert!(matches!(event, Event::TaskChanged { .. }), "{event:?}");
        heard += 1;
    }
    assert_eq!(heard, 20, "one event per change that happened");
}

/// An in-memory SQLite database is one connection that never leaves its pool: a batch the
/// database refuses halfway is rolled back on it, so nothing of the batch stays and the next
/// batch is written on the same connection.
#[tokio::test]
async fn a_refused_batch_leaves_an_in_memory_database_as_it_was() {
    let store = app::store::Store::connect("sqlite::memory:", &Default::default())
        .await
        .expect("store");
    store.migrate().await.expect("migrate");
    let k = key(5);
    let (first, doomed) = (empty(&k, 1), empty(&k, 2));
    store
        .execute_raw(
            &SQLITE_REFUSAL
                .install
                .replace("{hash}", &doomed.hash.to_hex()),
        )
        .await
        .expect("install the refusal");
    let refused = store
        .insert_transactions(&[first.clone(), doomed.clone()], Source::Rest)
        .await;
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(store.count_transactions().await.expect("count"), 0);

    store
        .execute_raw(SQLITE_REFUSAL.remove)
        .await
        .expect("remove the refusal");
    let stored = store
        .insert_transactions(&[first, doomed], Source::Rest)
        .await
        .expect("the next batch is written");
    assert!(
        stored
            .iter()
            .all(|o| matches!(o, app::store::Inserted::New(_))),
        "{stored:?}"
    );
    assert_eq!(store.count_transactions().await.expect("count"), 2);
}

/// A batch whose caller stops waiting (a request cut off) is still written whole: its
/// database transaction is never left open on the connection, where an in-memory database's
/// one connection would show it uncommitted to every reader and refuse the next batch.
#[tokio::test]
async fn a_batch_whose_caller_stops_waiting_is_written_whole() {
    let store = app::store::Store::connect("sqlite::memory:", &Default::default())
        .await
        .expect("store");
    store.migrate().await.expect("migrate");
    let k = key(6);
    let txs: Vec<Transaction> = (0..3).map(|n| empty(&k, n)).collect();
    // Polled once, then dropped (on this one-thread runtime nothing else has run meanwhile).
    let cut = futures::FutureExt::now_or_never(store.insert_transactions(&txs, Source::Rest));
    assert!(cut.is_none(), "the caller stopped waiting: {cut:?}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while store.count_transactions().await.expect("count") < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "the batch was not written"
        );
        tokio::task::yield_now().await;
    }
    let next = store
        .insert_transactions(&[empty(&k, 3)], Source::Rest)
        .await
        .expect("the next batch is written");
    assert!(matches!(next[0], app::store::Inserted::New(_)), "{next:?}");
    assert_eq!(store.count_transactions().await.expect("count"), 4);
}

/// Closes every connection to the test's PostgreSQL database but the one asking (the server
/// restarting, or an administrator), and waits until they are gone.
async fn close_connections(url: &str) {
    use sqlx::Connection as _;
    let mut admin = sqlx::PgConnection::connect(url).await.expect("connect");
    sqlx::query(
        "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .execute(&mut admin)
    .await
    .expect("close the other connections");
    admin.close().await.expect("close");
}

/// On PostgreSQL the batch writers keep their connections from one batch to the next, trusting
/// one used within the last second. When the server closes them, a batch that meets its closed
/// connection fails and stores nothing, and the next is written on a fresh connection; a kept
/// connection idle for a second or more is checked before it is used, so after a pause no batch
/// meets a closed one. (Pooled connections are checked every time.)
#[tokio::test]
async fn kept_connections_the_server_closed_are_replaced() {
    let db = postgres().await;
    let store = &db.store;
    let k = key(7);
    let (r, task) = stored_run_with_task(store, 7, "kc").await;
    let change = |phase| app::model::PhaseChangeOf {
        task: task.id,
        phase,
        note: None,
    };
    assert_eq!(
        store
            .set_task_phases(&[change(Phase::Downloading)])
            .await
            .expect("the first phase change"),
        [true]
    );

    // Used a moment ago, the kept connections are trusted: the next batch of each meets its
    // closed connection, fails and changes nothing; the one after it is written.
    close_connections(&db.url).await;
    let failed = store
        .insert_transactions(&[empty(&k, 1)], Source::Rest)
        .await;
    assert!(failed.is_err(), "{failed:?}");
    assert!(
        store
            .set_task_phases(&[change(Phase::WaitingForResources)])
            .await
            .is_err()
    );
    assert_eq!(store.count_transactions().await.expect("count"), 1);
    let timeline = store.task_timelines(&r.hash).await.expect("timeline");
    assert_eq!(timeline.len(), 2, "queued, downloading: {timeline:?}");
    store
        .insert_transactions(&[empty(&k, 1)], Source::Rest)
        .await
        .expect("the next batch, on a fresh connection");
    assert_eq!(
        store
            .set_task_phases(&[change(Phase::WaitingForResources)])
            .await
            .expect("the next phase change, on a fresh connection"),
        [true]
    );

    // Idle for a second, the kept connections are checked first.
    close_connections(&db.url).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(store.count_transactions().await.expect("count"), 2);
    store
        .insert_transactions(&[empty(&k, 2)], Source::Rest)
        .await
        .expect("a batch after a pause");
    assert_eq!(
        store
            .set_task_phases(&[change(Phase::Booting)])
            .await
            .expect("a phase change after a pause"),
        [true]
    );
    assert_eq!(store.count_transactions().await.expect("count"), 3);
}

/// The server processes whose last statement was a batch of transactions, once there are
/// `count` of them (a closed connection's process ends a moment after).
async fn batch_writers(url: &str, count: usize) -> Vec<i32> {
    use sqlx::Connection as _;
    let mut admin = sqlx::PgConnection::connect(url).await.expect("connect");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let pids: Vec<i32> = sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
             AND query LIKE 'WITH s0 AS (INSERT INTO transactions%' ORDER BY pid",
        )
        .fetch_all(&mut admin)
        .await
        .expect("the server's processes");
        if pids.len() == count || std::time::Instant::now() > deadline {
            admin.close().await.expect("close");
            return pids;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The transactions' writer keeps one connection from batch to batch; once it has served its
/// lifetime it is closed (its server process ends) and the next batch opens another.
#[tokio::test]
async fn a_kept_connection_serves_its_lifetime() {
    let url = testkit::postgres_url().await.expect("a database");
    for (lifetime, replaced) in [
        (std::time::Duration::from_secs(3600), false),
        (std::time::Duration::ZERO, true),
    ] {
        let options = app::store::PoolOptions {
            connection_lifetime: lifetime,
            ..Default::default()
        };
        let store = app::store::Store::connect(&url, &options)
            .await
            .expect("connect");
        store.migrate().await.expect("migrate");
        let k = key(8);
        let nonce = if replaced { 100 } else { 0 };
        store
            .insert_transactions(&[empty(&k, nonce)], Source::Rest)
            .await
            .expect("a batch");
        let first = batch_writers(&url, 1).await;
        assert_eq!(first.len(), 1, "{first:?}");
        store
            .insert_transactions(&[empty(&k, nonce + 1)], Source::Rest)
            .await
            .expect("the next batch");
        let second = batch_writers(&url, 1).await;
        assert_eq!(second.len(), 1, "the old one closed: {second:?}");
        assert_eq!(
            first != second,
            replaced,
            "lifetime {lifetime:?}: {first:?} then {second:?}"
        );
        store.close().await;
        assert!(
            batch_writers(&url, 0).await.is_empty(),
            "closed with the store"
        );
    }
}
