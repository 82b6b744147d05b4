//! What the retention collector asks of the database: which hashes are transactions (the
//! intake asks it too, of commits that went unanswered), and the phase history of long-ended
//! tasks.

use std::collections::HashSet;

use sqlx::AssertSqlSafe;

use super::transactions::{TX_COLUMNS, TxTuple, decode_tx};
use super::{Backend, Result, Store};
use crate::model::StoredTransaction;
use crate::tx::Hash;

/// Hashes per `IN (…)` list: far below both databases' bind-parameter limits.
const PER_QUERY: usize = 500;

impl Store {
    /// Which of `hashes` are stored transactions.
    pub async fn known_transactions(&self, hashes: &[Hash]) -> Result<HashSet<Hash>> {
        let mut known = HashSet::new();
        for chunk in hashes.chunks(PER_QUERY) {
            let sql = format!(
                "SELECT hash FROM transactions WHERE hash IN ({})",
                placeholders(chunk.len())
            );
            let rows: Vec<String> = dispatch!(self, pool => {
                let mut q = sqlx::query_scalar(AssertSqlSafe(sql.clone()));
                for h in chunk {
                    q = q.bind(h.to_hex());
                }
                q.fetch_all(pool).await?
            });
            known.extend(rows.iter().filter_map(|h| Hash::from_hex(h)));
        }
        Ok(known)
    }

    /// Deletes the phase history of tasks that ended before `at_ms` (the task keeps its final
    /// phase and error); returns how many history rows went.
    pub async fn delete_phase_history_before(&self, at_ms: i64) -> Result<u64> {
        let n = dispatch!(self, pool => {
            sqlx::query(
                "DELETE FROM task_phases WHERE task_id IN \
                 (SELECT id FROM tasks WHERE finished_at IS NOT NULL AND finished_at < $1)",
            )
            .bind(at_ms)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(n)
    }
}

impl Store {
    /// The stored transactions among `hashes`, in no particular order.
    pub async fn transactions_among(&self, hashes: &[Hash]) -> Result<Vec<StoredTransaction>> {
        let mut found = Vec::new();
        for chunk in hashes.chunks(PER_QUERY) {
            let sql = format!(
                "SELECT {TX_COLUMNS} FROM transactions WHERE hash IN ({})",
                placeholders(chunk.len())
            );
            let rows: Vec<TxTuple> = dispatch!(self, pool => {
                let mut q = sqlx::query_as(AssertSqlSafe(sql.clone()));
                for h in chunk {
                    q = q.bind(h.to_hex());
                }
                q.fetch_all(pool).await?
            });
            for row in rows {
                found.push(decode_tx(row)?);
            }
        }
        Ok(found)
    }

    /// The Proofs of `runs` and the Verifications of those Proofs, whoever signed them: their
    /// output files are what the runs' later steps read.
    pub async fn results_under(&self, runs: &[Hash]) -> Result<Vec<Hash>> {
        let mut found = Vec::new();
        for chunk in runs.chunks(PER_QUERY) {
            let list = placeholders(chunk.len());
            let sql = format!(
                "SELECT hash FROM transactions WHERE parent IN ({list}) \
                 UNION SELECT v.hash FROM transactions v JOIN transactions p ON v.parent = p.hash \
                 WHERE p.parent IN ({list})"
            );
            let rows: Vec<String> = dispatch!(self, pool => {
                let mut q = sqlx::query_scalar(AssertSqlSafe(sql.clone()));
                for h in chunk {
                    q = q.bind(h.to_hex());
                }
                q.fetch_all(pool).await?
            });
            found.extend(rows.iter().filter_map(|h| Hash::from_hex(h)));
        }
        Ok(found)
    }
}

/// `$1, $2, …, $n`.
fn placeholders(n: usize) -> String {
    (1..=n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}
