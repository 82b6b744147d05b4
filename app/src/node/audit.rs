//! The audit log: every operator action (sign-ins, users and tokens, uploads, deploys and runs
//! signed by the node, cancels, GPU pool changes, whitelist changes, drain) with who, when, from
//! where and what. Append-only: nothing changes an entry (the database refuses updates), and
//! only retention deletes old ones.

use std::time::Duration;

use tracing::{info, warn};

use crate::model::{Actor, AuditAction, AuditEntry, NewAuditEntry};

use super::{Node, NodeError};

impl Node {
    /// Records an action. A failure to record is logged, never the caller's failure: the action
    /// already happened.
    pub async fn record(
        &self,
        actor: &Actor,
        action: AuditAction,
        target: Option<&str>,
        detail: Option<&str>,
        ok: bool,
    ) {
        info!(
            target: "gevulot::audit",
            actor = %actor.name,
            address = actor.address.as_deref().unwrap_or(""),
            action = action.as_str(),
            target = target.unwrap_or(""),
            detail = detail.unwrap_or(""),
            outcome = if ok { "ok" } else { "refused" },
            "audit"
        );
        let entry = NewAuditEntry {
            actor: actor.clone(),
            action,
            target: target.map(str::to_string),
            detail: detail.map(str::to_string),
            ok,
        };
        if let Err(e) = self.store().append_audit(&entry).await {
            warn!(target: "gevulot", action = action.as_str(), error = %e, "cannot record an audit entry");
        }
    }

    /// Entries newest first: older than entry `before` when given, of `action` when given.
    pub async fn audit_log(
        &self,
        before: Option<i64>,
        action: Option<AuditAction>,
        limit: i64,
    ) -> Result<Vec<AuditEntry>, NodeError> {
        Ok(self.store().audit_entries(before, action, limit).await?)
    }

    /// Deletes entries older than `keep` now and every hour until [`Node::shutdown`].
    pub fn keep_audit_for(&self, keep: Duration) {
        let node = self.clone();
        self.keep(tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(3600));
            loop {
                every.tick().await;
                match node.expire_audit(keep).await {
                    Ok(0) => {}
                    Ok(n) => info!(target: "gevulot", entries = n, "deleted audit entries past their retention"),
                    Err(e) => warn!(target: "gevulot", error = %e, "cannot delete old audit entries"),
                }
            }
        }));
    }

    /// Deletes entries older than `keep`; returns how many.
    pub async fn expire_audit(&self, keep: Duration) -> Result<u64, NodeError> {
        let keep_ms = i64::try_from(keep.as_millis()).unwrap_or(i64::MAX);
        let cutoff = crate::store::now_ms().saturating_sub(keep_ms);
        Ok(self.store().delete_audit_before(cutoff).await?)
    }
}
