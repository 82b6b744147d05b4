//! The node's own switches that outlive a restart (`node_state`): for now, an operator's drain.

use super::{Backend, Result, Store, StoreError, now_ms};

/// The name of the drain switch's row; its value is when the drain began (ms since the epoch).
const DRAINED_SINCE: &str = "drained_since";

impl Store {
    /// When an operator drained the node, if it has not been resumed since.
    pub async fn drained_since(&self) -> Result<Option<i64>> {
        let value: Option<String> = dispatch!(self, pool => {
            sqlx::query_scalar("SELECT value FROM node_state WHERE name = $1")
                .bind(DRAINED_SINCE)
                .fetch_optional(pool)
                .await?
        });
        value
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
                Some(ms) => sqlx::query(
                    "INSERT INTO node_state (name, value, updated_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                )
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
