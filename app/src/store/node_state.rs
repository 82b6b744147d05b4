//! The node's own state that outlives a restart (`node_state`): an operator's drain, and how far
//! the webhook sender has read the task phase changes (`task_changes.rs`).

use super::{Backend, Result, Store, StoreError, now_ms};

/// The name of the drain switch's row; its value is when the drain began (ms since the epoch).
const DRAINED_SINCE: &str = "drained_since";

/// Sets a row: `$1` name, `$2` value, `$3` now.
pub(super) const PUT_STATE: &str = "INSERT INTO node_state (name, value, updated_at) VALUES ($1, $2, $3) \
     ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at";

impl Store {
    /// The value of the row `name`, if set.
    pub(super) async fn node_state(&self, name: &str) -> Result<Option<String>> {
        Ok(dispatch!(self, pool => {
            sqlx::query_scalar("SELECT value FROM node_state WHERE name = $1")
                .bind(name)
                .fetch_optional(pool)
                .await?
        }))
    }

    /// When an operator drained the node, if it has not been resumed since.
    pub async fn drained_since(&self) -> Result<Option<i64>> {
        self.node_state(DRAINED_SINCE)
            .await?
            .map(|v| {
                v.parse()
                    .map_err(|_| StoreError::Corrupt(format!("bad {DRAINED_SINCE} {v:?}")))
            })
            .transpose()
    }

    /// Keeps the node drained since `since` (ms since the epoch) across restarts, or, with
    /// `None`, forgets the drain.
    pub async fn set_drained(&self, since: Option<i64>) -> Result<()> {
        dispatch!(self, pool => {
            match since {
                Some(ms) => sqlx::query(PUT_STATE)
                    .bind(DRAINED_SINCE)
                    .bind(ms.to_string())
                    .bind(now_ms())
                    .execute(pool)
                    .await?,
                None => sqlx::query("DELETE FROM node_state WHERE name = $1")
                    .bind(DRAINED_SINCE)
                    .execute(pool)
                    .await?,
            };
        });
        Ok(())
    }
}
