//! Webhooks through the core API: register, list, delete, and read a hook's delivery log. A
//! caller sees and changes its own hooks (`scope` is its name), an admin every hook (`None`).
//! Registering and deleting are audited.

use crate::model::{Actor, AuditAction, Delivery, Webhook, WebhookFilter};
use crate::webhooks::{CountsSnapshot, CreatedHook, Webhooks};

use super::{Node, NodeError};

impl Node {
    pub(super) fn webhooks(&self) -> &Webhooks {
        &self.inner.webhooks
    }

    /// Registers a hook owned by `actor`; the answer holds its secret, shown only now.
    pub async fn create_webhook(
        &self,
        actor: &Actor,
        url: &str,
        filter: WebhookFilter,
    ) -> Result<CreatedHook, NodeError> {
        let created = self.webhooks().create(&actor.name, url, filter).await;
        let (target, detail) = match &created {
            Ok(c) => (format!("webhook {}", c.hook.id), c.hook.url.clone()),
            Err(e) => (url.chars().take(200).collect(), e.to_string()),
        };
        self.record(
            actor,
            AuditAction::WebhookCreated,
            Some(&target),
            Some(&detail),
            created.is_ok(),
        )
        .await;
        Ok(created?)
    }

    /// The hooks `scope` may see, oldest first.
    pub async fn webhooks_of(&self, scope: Option<&str>) -> Result<Vec<Webhook>, NodeError> {
        Ok(self.store().webhooks(scope).await?)
    }

    /// Hook `id`, if `scope` may see it.
    pub async fn webhook(&self, id: i64, scope: Option<&str>) -> Result<Webhook, NodeError> {
        match self.store().webhook(id).await? {
            Some(h) if scope.is_none_or(|owner| owner == h.owner) => Ok(h),
            _ => Err(NodeError::NotFound(format!(
                "there is no webhook {id} of yours; list them at /api/v1/webhooks"
            ))),
        }
    }

    /// Deletes hook `id` (if `scope` may see it) and its delivery log.
    pub async fn delete_webhook(
        &self,
        actor: &Actor,
        id: i64,
        scope: Option<&str>,
    ) -> Result<(), NodeError> {
        let hook = self.webhook(id, scope).await?;
        self.webhooks().delete(id).await?;
        self.record(
            actor,
            AuditAction::WebhookDeleted,
            Some(&format!("webhook {id}")),
            Some(&hook.url),
            true,
        )
        .await;
        Ok(())
    }

    /// Hook `id`'s deliveries, newest first, older than delivery `before` when given.
    pub async fn webhook_deliveries(
        &self,
        id: i64,
        scope: Option<&str>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<Delivery>, NodeError> {
        self.webhook(id, scope).await?;
        Ok(self.store().deliveries(id, before, limit).await?)
    }

    /// Deliveries since the node started, for metrics.
    pub fn webhook_counts(&self) -> CountsSnapshot {
        self.webhooks().counts()
    }

    /// Where hooks may lead besides public addresses (`GEVULOT_WEBHOOK_ALLOW_NETS`).
    pub fn webhook_settings(&self) -> &crate::webhooks::Settings {
        self.webhooks().settings()
    }
}
