//! Task phase changes in the order the webhook sender reads them, and how far it has read.
//!
//! A change's position is `(xid, seq)`: the transaction that wrote it, then its row. On
//! PostgreSQL sequence numbers are taken before commit, so a change with a lower `seq` can become
//! visible after one with a higher; only changes written by transactions older than the oldest
//! one still running are read, in `(xid, seq)` order, so no later commit can land behind a
//! reader's position. (A transaction left open on the database server holds the reader back
//! until it ends.) On SQLite `xid` is 0: one writer commits at a time, so `seq` is the order.

use super::{Backend, Result, Store, StoreError};
use crate::model::Phase;
use crate::tx::Hash;

/// The name of the `node_state` row that keeps the sender's position, as `xid:seq`.
pub(super) const WEBHOOK_CURSOR: &str = "webhook_cursor";

/// A position in the task phase changes (see the module's comment).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct ChangeCursor {
    pub xid: i64,
    pub seq: i64,
}

impl ChangeCursor {
    pub(super) fn encode(self) -> String {
        format!("{}:{}", self.xid, self.seq)
    }

    fn decode(value: &str) -> Result<Self> {
        value
            .split_once(':')
            .and_then(|(x, s)| Some((x.parse().ok()?, s.parse().ok()?)))
            .map(|(xid, seq)| Self { xid, seq })
            .ok_or_else(|| StoreError::Corrupt(format!("bad {WEBHOOK_CURSOR} {value:?}")))
    }
}

/// One task phase change, as the webhook sender reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskChange {
    pub cursor: ChangeCursor,
    pub task_id: i64,
    /// The Run the task belongs to.
    pub run: Hash,
    pub phase: Phase,
    pub at_ms: i64,
}

type ChangeRow = (i64, i64, i64, String, String, i64);

/// Only what transactions older than every running one wrote (PostgreSQL).
const SETTLED_POSTGRES: &str = "p.xid < pg_snapshot_xmin(pg_current_snapshot())";

impl Store {
    /// Up to `limit` task phase changes after `after`, in order (see the module's comment).
    pub async fn task_changes_after(
        &self,
        after: ChangeCursor,
        limit: i64,
    ) -> Result<Vec<TaskChange>> {
        // The one difference: PostgreSQL's `xid8` read and compared as a number, and the rule.
        let (xid, after_xid, settled) = match self.backend {
            Backend::Postgres(_) => (
                "p.xid::text::bigint",
                "$1::bigint::text::xid8",
                SETTLED_POSTGRES,
            ),
            Backend::Sqlite(_) => ("p.xid", "$1", "1 = 1"),
        };
        let sql = format!(
            "SELECT {xid}, p.seq, p.task_id, k.tx, p.phase, p.at \
             FROM task_phases p JOIN tasks k ON k.id = p.task_id \
             WHERE (p.xid, p.seq) > ({after_xid}, $2) AND {settled} \
             ORDER BY p.xid, p.seq LIMIT $3"
        );
        let rows: Vec<ChangeRow> = dispatch!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(after.xid)
                .bind(after.seq)
                .bind(limit)
                .fetch_all(pool)
                .await?
        });
        rows.into_iter()
            .map(|(xid, seq, task_id, run, phase, at_ms)| {
                Ok(TaskChange {
                    cursor: ChangeCursor { xid, seq },
                    task_id,
                    run: Hash::from_hex(&run)
                        .ok_or_else(|| StoreError::Corrupt(format!("task {task_id}: bad tx")))?,
                    phase: Phase::parse(&phase).ok_or_else(|| {
                        StoreError::Corrupt(format!("task {task_id}: bad phase {phase}"))
                    })?,
                    at_ms,
                })
            })
            .collect()
    }

    /// A writing-transaction number no change written from now on is below: a kept position
    /// at or beyond it comes from another database cluster (one restored from a dump), where
    /// the numbers were different. 1 on SQLite, whose changes all have 0.
    pub async fn task_changes_horizon(&self) -> Result<i64> {
        Ok(match &self.backend {
            Backend::Postgres(pool) => {
                sqlx::query_scalar("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint")
                    .fetch_one(pool)
                    .await?
            }
            Backend::Sqlite(_) => 1,
        })
    }

    /// Forgets the webhook sender's position in a PostgreSQL database restored from a dump (see
    /// [`Self::task_changes_horizon`]); the sender then starts from the changes made after it
    /// starts. Does nothing on a schema without `node_state`, nor on SQLite, whose positions do
    /// not name transactions (`xid` is 0) and so stay valid in a copy.
    pub async fn forget_webhook_cursor(&self) -> Result<()> {
        if let Backend::Postgres(pool) = &self.backend {
            let sql = format!(
                "DO $$ BEGIN IF to_regclass('node_state') IS NOT NULL THEN \
                 DELETE FROM node_state WHERE name = '{WEBHOOK_CURSOR}'; END IF; END $$"
            );
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(pool)
                .await?;
        }
        Ok(())
    }

    /// The webhook sender's kept position, if it has one.
    pub async fn webhook_cursor(&self) -> Result<Option<ChangeCursor>> {
        self.node_state(WEBHOOK_CURSOR)
            .await?
            .map(|v| ChangeCursor::decode(&v))
            .transpose()
    }
}
