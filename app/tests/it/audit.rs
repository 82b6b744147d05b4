//! The audit log's storage on SQLite and PostgreSQL: appended entries come back newest first and
//! filtered by action, pages follow, retention deletes only old entries, and the database itself
//! refuses to change an entry.

use app::model::{Actor, AuditAction, NewAuditEntry};

use crate::storage::{Db, postgres, sqlite};

crate::storage::conformance!(audit_log_is_append_only);

fn entry(action: AuditAction, target: &str, ok: bool) -> NewAuditEntry {
    NewAuditEntry {
        actor: Actor {
            name: "alice".into(),
            address: Some("192.0.2.7".into()),
        },
        action,
        target: Some(target.into()),
        detail: Some("detail".into()),
        ok,
    }
}

async fn audit_log_is_append_only(db: Db) {
    let store = &db.store;
    for i in 0..5 {
        store
            .append_audit(&entry(AuditAction::Deploy, &format!("deploy-{i}"), true))
            .await
            .expect("append");
    }
    store
        .append_audit(&entry(AuditAction::SignInFailed, "mallory", false))
        .await
        .expect("append");

    let all = store.audit_entries(None, None, 100).await.expect("list");
    assert_eq!(all.len(), 6);
    assert_eq!(
        all[0].entry,
        entry(AuditAction::SignInFailed, "mallory", false)
    );
    assert!(all.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    assert!(all[0].at_ms > 0);
    // Pages follow by id; a filter keeps to one action.
    let first = store.audit_entries(None, None, 4).await.expect("page");
    let rest = store
        .audit_entries(Some(first[3].id), None, 4)
        .await
        .expect("page");
    assert_eq!(first.len() + rest.len(), 6);
    assert_eq!(
        rest.last().map(|e| e.entry.target.clone()),
        Some(Some("deploy-0".into()))
    );
    let failed = store
        .audit_entries(None, Some(AuditAction::SignInFailed), 100)
        .await
        .expect("filtered");
    assert_eq!(failed.len(), 1);
    assert!(!failed[0].entry.ok);

    // The database refuses to change an entry, whoever asks.
    let changed = store
        .execute_raw("UPDATE audit_log SET actor = 'someone else'")
        .await;
    assert!(changed.is_err(), "an entry was changed");
    let again = store.audit_entries(None, None, 100).await.expect("list");
    assert!(again.iter().all(|e| e.entry.actor.name == "alice"));

    // Retention deletes what is older than its cutoff, and nothing newer.
    assert_eq!(
        store.delete_audit_before(all[5].at_ms).await.expect("keep"),
        0
    );
    assert_eq!(
        store
            .delete_audit_before(all[0].at_ms + 1)
            .await
            .expect("expire"),
        6
    );
}
