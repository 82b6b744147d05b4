//! What placement reads and keeps: the Runs still to be placed, how each ended, and the tasks a
//! node gives up when another node holds their Run.

use super::{Backend, Result, Store, StoreError, now_ms};
use crate::tx::Hash;

/// How a Run ended, as every node records it once it knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunEnding {
    /// `done`, `failed`, `cancelled` or `unplaceable`.
    pub outcome: String,
    pub reason: Option<String>,
    /// The peer id of the node that ended it, when one did.
    pub node: Option<String>,
    pub ended_at_ms: i64,
}

fn hashes(rows: Vec<(String,)>) -> Result<Vec<Hash>> {
    rows.into_iter()
        .map(|(h,)| {
            Hash::from_hex(&h).ok_or_else(|| StoreError::Corrupt(format!("bad run hash {h}")))
        })
        .collect()
}

impl Store {
    /// Up to `limit` Runs that have not ended (no recorded ending, no Cancel), oldest first.
    pub async fn unended_runs(&self, limit: u32) -> Result<Vec<Hash>> {
        let rows: Vec<(String,)> = dispatch!(self, pool => {
            sqlx::query_as(
                "SELECT r.hash FROM transactions r WHERE r.kind = 'run' \
                   AND NOT EXISTS (SELECT 1 FROM run_endings e WHERE e.run = r.hash) \
                   AND NOT EXISTS (SELECT 1 FROM transactions c WHERE c.parent = r.hash AND c.kind = 'cancel') \
                 ORDER BY r.seq LIMIT $1",
            )
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
        });
        hashes(rows)
    }

    /// The Runs with a task of this node that has not ended (the Runs it held when it stopped).
    pub async fn runs_with_open_tasks(&self) -> Result<Vec<Hash>> {
        let rows: Vec<(String,)> = dispatch!(self, pool => {
            sqlx::query_as(
                "SELECT DISTINCT tx FROM tasks \
                 WHERE phase NOT IN ('succeeded', 'failed', 'cancelled', 'timed_out')",
            )
            .fetch_all(pool)
            .await?
        });
        hashes(rows)
    }

    /// Records how `run` ended; the first record stays. Returns whether this one was new.
    pub async fn end_run(
        &self,
        run: &Hash,
        outcome: &str,
        reason: Option<&str>,
        node: Option<&str>,
    ) -> Result<bool> {
        let n = dispatch!(self, pool => {
            sqlx::query(
                "INSERT INTO run_endings (run, outcome, reason, node, ended_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (run) DO NOTHING",
            )
            .bind(run.to_hex())
            .bind(outcome)
            .bind(reason)
            .bind(node)
            .bind(now_ms())
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(n > 0)
    }

    /// How `run` ended, once recorded.
    pub async fn run_ending(&self, run: &Hash) -> Result<Option<RunEnding>> {
        let row: Option<(String, Option<String>, Option<String>, i64)> = dispatch!(self, pool => {
            sqlx::query_as("SELECT outcome, reason, node, ended_at FROM run_endings WHERE run = $1")
                .bind(run.to_hex())
                .fetch_optional(pool)
                .await?
        });
        Ok(row.map(|(outcome, reason, node, ended_at_ms)| RunEnding {
            outcome,
            reason,
            node,
            ended_at_ms,
        }))
    }

    /// Deletes this node's tasks of `run` that have not succeeded, with their timelines (another
    /// node holds the Run now). Returns how many went.
    pub async fn drop_unfinished_tasks(&self, run: &Hash) -> Result<u64> {
        let n = dispatch!(self, pool => {
            let mut t = pool.begin().await?;
            sqlx::query(
                "DELETE FROM task_phases WHERE task_id IN \
                 (SELECT id FROM tasks WHERE tx = $1 AND phase <> 'succeeded')",
            )
            .bind(run.to_hex())
            .execute(&mut *t)
            .await?;
            let n = sqlx::query("DELETE FROM tasks WHERE tx = $1 AND phase <> 'succeeded'")
                .bind(run.to_hex())
                .execute(&mut *t)
                .await?
                .rows_affected();
            t.commit().await?;
            n
        });
        Ok(n)
    }
}
