//! The node's switches kept across restarts (`node_state`), the same on both backends.

use crate::storage::{Db, postgres, sqlite};

crate::storage::conformance!(a_drain_is_kept_until_forgotten);

async fn a_drain_is_kept_until_forgotten(db: Db) {
    assert_eq!(db.store.drained_since().await.expect("read"), None);
    db.store
        .set_drained(Some(1_700_000_000_123))
        .await
        .expect("keep");
    // Kept again: the newer time replaces the older.
    db.store
        .set_drained(Some(1_700_000_000_456))
        .await
        .expect("keep again");
    db.store.close().await;
    let reopened = app::store::Store::connect(&db.url, &Default::default())
        .await
        .expect("reconnect");
    assert_eq!(
        reopened.drained_since().await.expect("read"),
        Some(1_700_000_000_456)
    );
    reopened.set_drained(None).await.expect("forget");
    assert_eq!(reopened.drained_since().await.expect("read"), None);
    // Forgetting twice changes nothing.
    reopened.set_drained(None).await.expect("forget again");
    assert_eq!(reopened.drained_since().await.expect("read"), None);
}

/// An operator's drain that the database could not keep is kept by the next drain, and an
/// operator's drain during a stop (whose own drain is not kept) is kept too.
#[tokio::test]
async fn draining_again_keeps_a_drain_the_database_refused_and_so_does_a_drain_during_a_stop() {
    let dir = testkit::tempdir();
    let url = testkit::sqlite_url(dir.path());
    let store = app::store::Store::connect(&url, &Default::default())
        .await
        .expect("store");
    store.migrate().await.expect("migrate");
    let node = app::node::Node::start(crate::support::node_config(
        dir.path(),
        store.clone(),
        crate::support::key(41),
        app::node::AclPolicy::Open,
        None,
    ))
    .await
    .expect("node starts");
    let kept_ms = |state: app::node::DrainState| {
        state.since.map(|t| {
            t.duration_since(std::time::UNIX_EPOCH)
                .expect("after the epoch")
                .as_millis() as i64
        })
    };

    // The database refuses the drain: the node drains all the same, for now.
    let raw = sqlx::SqlitePool::connect(&url)
        .await
        .expect("second connection");
    sqlx::query(
        "CREATE TRIGGER refuse_node_state BEFORE INSERT ON node_state \
         BEGIN SELECT RAISE(ABORT, 'refused for the test'); END",
    )
    .execute(&raw)
    .await
    .expect("trigger");
    let (first, changed) = node.drain().await;
    assert!(changed && first.since.is_some(), "{first:?}");
    assert_eq!(store.drained_since().await.expect("read"), None);

    // Once the database takes writes again, draining again keeps the first drain's time.
    sqlx::query("DROP TRIGGER refuse_node_state")
        .execute(&raw)
        .await
        .expect("drop trigger");
    let (again, changed) = node.drain().await;
    assert!(!changed, "already draining");
    assert_eq!(again.since, first.since, "the drain keeps its first time");
    assert_eq!(store.drained_since().await.expect("read"), kept_ms(first));

    // A stop drains for this run of the process only; an operator's drain meanwhile is kept.
    node.resume().await;
    assert_eq!(store.drained_since().await.expect("read"), None);
    node.stop(std::time::Duration::ZERO).await;
    assert_eq!(
        store.drained_since().await.expect("read"),
        None,
        "a stop's drain is not kept"
    );
    let (during_stop, changed) = node.drain().await;
    assert!(!changed, "the stop drains already");
    assert_eq!(
        store.drained_since().await.expect("read"),
        kept_ms(during_stop)
    );
    raw.close().await;
    node.shutdown().await;
}
