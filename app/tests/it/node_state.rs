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
