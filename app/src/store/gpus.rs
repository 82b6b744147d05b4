//! Operators' decisions about the GPU pool.

use super::{Backend, Result, Store, StoreError, now_ms};
use crate::gpu::{GpuAssignment, PoolDecision};

impl Store {
    /// Records the pool decision about `address`, replacing any earlier one.
    pub async fn set_gpu_assignment(
        &self,
        address: &str,
        state: PoolDecision,
        reason: Option<&str>,
        updated_by: &str,
    ) -> Result<()> {
        dispatch!(self, pool => {
            sqlx::query(
                "INSERT INTO gpu_assignments (address, state, reason, updated_by, updated_at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (address) DO UPDATE SET state = EXCLUDED.state, reason = EXCLUDED.reason, \
                 updated_by = EXCLUDED.updated_by, updated_at = EXCLUDED.updated_at",
            )
            .bind(address)
            .bind(state.as_str())
            .bind(reason)
            .bind(updated_by)
            .bind(now_ms())
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    pub async fn gpu_assignments(&self) -> Result<Vec<GpuAssignment>> {
        let rows: Vec<(String, String, Option<String>, String, i64)> = dispatch!(self, pool => {
            sqlx::query_as("SELECT address, state, reason, updated_by, updated_at FROM gpu_assignments ORDER BY address")
                .fetch_all(pool)
                .await?
        });
        rows.into_iter()
            .map(|(address, state, reason, updated_by, updated_at_ms)| {
                Ok(GpuAssignment {
                    state: PoolDecision::parse(&state).ok_or_else(|| {
                        StoreError::Corrupt(format!("GPU {address}: bad pool state {state}"))
                    })?,
                    address,
                    reason,
                    updated_by,
                    updated_at_ms,
                })
            })
            .collect()
    }
}
