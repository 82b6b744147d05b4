//! The audit log: appended, listed newest first, and deleted only past its retention.

use super::{Backend, Result, Store, StoreError, now_ms};
use crate::model::{Actor, AuditAction, AuditEntry, NewAuditEntry};

type Row = (
    i64,
    i64,
    String,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
    String,
);

impl Store {
    /// Appends an entry, stamped now.
    pub async fn append_audit(&self, e: &NewAuditEntry) -> Result<()> {
        dispatch!(self, pool => {
            sqlx::query(
                "INSERT INTO audit_log (at, actor, address, action, target, detail, outcome) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(now_ms())
            .bind(&e.actor.name)
            .bind(&e.actor.address)
            .bind(e.action.as_str())
            .bind(&e.target)
            .bind(&e.detail)
            .bind(if e.ok { "ok" } else { "refused" })
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Entries newest first, older than entry `before` when given, at most `limit`, of `action`
    /// when given.
    pub async fn audit_entries(
        &self,
        before: Option<i64>,
        action: Option<AuditAction>,
        limit: i64,
    ) -> Result<Vec<AuditEntry>> {
        let rows: Vec<Row> = dispatch!(self, pool => {
            sqlx::query_as(
                "SELECT id, at, actor, address, action, target, detail, outcome FROM audit_log \
                 WHERE ($1 IS NULL OR id < $1) AND ($2 IS NULL OR action = $2) \
                 ORDER BY id DESC LIMIT $3",
            )
            .bind(before)
            .bind(action.map(AuditAction::as_str))
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(
                |(id, at_ms, name, address, action, target, detail, outcome)| {
                    Ok(AuditEntry {
                        id,
                        at_ms,
                        entry: NewAuditEntry {
                            actor: Actor { name, address },
                            action: AuditAction::parse(&action).ok_or_else(|| {
                                StoreError::Corrupt(format!(
                                    "audit entry {id}: unknown action {action}"
                                ))
                            })?,
                            target,
                            detail,
                            ok: outcome == "ok",
                        },
                    })
                },
            )
            .collect()
    }

    /// Deletes the entries older than `at_ms` (retention); returns how many.
    pub async fn delete_audit_before(&self, at_ms: i64) -> Result<u64> {
        let n = dispatch!(self, pool => {
            sqlx::query("DELETE FROM audit_log WHERE at < $1")
                .bind(at_ms)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(n)
    }
}
