//! The embedded migrations. Each entry is one numbered step with its PostgreSQL and SQLite
//! text; a test checks that every file in `migrations/` is listed here and nothing else.

use std::borrow::Cow;

use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};

use super::BackendKind;

/// `(version, description, postgres file, sqlite file, postgres SQL, sqlite SQL)`.
pub const MIGRATIONS: &[(i64, &str, &str, &str, &str, &str)] = &[
    (
        1,
        "init",
        "0001_init.sql",
        "0001_init.sql",
        include_str!("../../../migrations/postgres/0001_init.sql"),
        include_str!("../../../migrations/sqlite/0001_init.sql"),
    ),
    (
        2,
        "auth",
        "0002_auth.sql",
        "0002_auth.sql",
        include_str!("../../../migrations/postgres/0002_auth.sql"),
        include_str!("../../../migrations/sqlite/0002_auth.sql"),
    ),
    (
        3,
        "gpus",
        "0003_gpus.sql",
        "0003_gpus.sql",
        include_str!("../../../migrations/postgres/0003_gpus.sql"),
        include_str!("../../../migrations/sqlite/0003_gpus.sql"),
    ),
    (
        4,
        "task phases",
        "0004_task_phases.sql",
        "0004_task_phases.sql",
        include_str!("../../../migrations/postgres/0004_task_phases.sql"),
        include_str!("../../../migrations/sqlite/0004_task_phases.sql"),
    ),
    (
        5,
        "file urls",
        "0005_file_urls.sql",
        "0005_file_urls.sql",
        include_str!("../../../migrations/postgres/0005_file_urls.sql"),
        include_str!("../../../migrations/sqlite/0005_file_urls.sql"),
    ),
    (
        6,
        "audit log",
        "0006_audit.sql",
        "0006_audit.sql",
        include_str!("../../../migrations/postgres/0006_audit.sql"),
        include_str!("../../../migrations/sqlite/0006_audit.sql"),
    ),
    (
        7,
        "peer sync cursors",
        "0007_peer_sync.sql",
        "0007_peer_sync.sql",
        include_str!("../../../migrations/postgres/0007_peer_sync.sql"),
        include_str!("../../../migrations/sqlite/0007_peer_sync.sql"),
    ),
    (
        8,
        "webhooks",
        "0008_webhooks.sql",
        "0008_webhooks.sql",
        include_str!("../../../migrations/postgres/0008_webhooks.sql"),
        include_str!("../../../migrations/sqlite/0008_webhooks.sql"),
    ),
    (
        9,
        "run endings",
        "0009_placement.sql",
        "0009_placement.sql",
        include_str!("../../../migrations/postgres/0009_placement.sql"),
        include_str!("../../../migrations/sqlite/0009_placement.sql"),
    ),
    (
        10,
        "node state",
        "0010_node_state.sql",
        "0010_node_state.sql",
        include_str!("../../../migrations/postgres/0010_node_state.sql"),
        include_str!("../../../migrations/sqlite/0010_node_state.sql"),
    ),
    (
        11,
        "task change order",
        "0011_task_change_order.sql",
        "0011_task_change_order.sql",
        include_str!("../../../migrations/postgres/0011_task_change_order.sql"),
        include_str!("../../../migrations/sqlite/0011_task_change_order.sql"),
    ),
];

/// The newest schema version this binary knows.
pub(super) fn latest() -> i64 {
    MIGRATIONS.iter().map(|m| m.0).max().unwrap_or(0)
}

pub(super) fn migrator(backend: BackendKind) -> Migrator {
    let migrations = MIGRATIONS
        .iter()
        .map(|(version, description, _, _, pg, lite)| {
            let sql = match backend {
                BackendKind::Postgres => *pg,
                BackendKind::Sqlite => *lite,
            };
            Migration::new(
                *version,
                Cow::Borrowed(*description),
                MigrationType::Simple,
                sql.into_sql_str(),
                false,
            )
        })
        .collect::<Vec<_>>();
    Migrator {
        migrations: Cow::Owned(migrations),
        ..Migrator::DEFAULT
    }
}
