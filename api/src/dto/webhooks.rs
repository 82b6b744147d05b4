//! Webhooks: registration, the hooks a caller has, and each hook's delivery log.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use app::model::{Delivery, Webhook, WebhookFilter};

use super::*;

/// A hook to register. Without `run` or `author` it hears about every Run on this node.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWebhook {
    /// Where to POST notifications (http or https). It must lead to a public address unless the
    /// operator allows its network (`GEVULOT_WEBHOOK_ALLOW_NETS`).
    #[schema(format = "uri")]
    pub url: String,
    /// Only this Run (hash, hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = r"^[0-9a-fA-F]{64}$", min_length = 64, max_length = 64)]
    pub run: Option<String>,
    /// Only Runs signed by this key (public key, hex: 130 characters, a point of secp256k1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(
        format = "secp256k1-public-key",
        pattern = r"^[0-9a-fA-F]{130}$",
        min_length = 130,
        max_length = 130
    )]
    pub author: Option<String>,
}

impl NewWebhook {
    /// The filter it asks for; a precise error when a field is not a hash or key.
    pub fn filter(&self) -> Result<WebhookFilter, BadRequest> {
        let run = match self.run.as_deref().filter(|r| !r.trim().is_empty()) {
            None => None,
            Some(r) => Some(parse_hash("run", r.trim())?),
        };
        let author = match self.author.as_deref().filter(|a| !a.trim().is_empty()) {
            None => None,
            Some(a) => Some(app::crypto::PublicKey::from_hex(a.trim()).map_err(|e| {
                BadRequest::new(ErrorCode::InvalidParameter, format!("author: {e}"))
            })?),
        };
        Ok(WebhookFilter { run, author })
    }
}

/// A registered hook (its secret is shown only when it is created).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WebhookInfo {
    pub id: i64,
    /// The user who registered it.
    pub owner: String,
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    pub created_at: String,
}

impl From<&Webhook> for WebhookInfo {
    fn from(h: &Webhook) -> Self {
        Self {
            id: h.id,
            owner: h.owner.clone(),
            url: h.url.clone(),
            run: h.filter.run.map(|r| r.to_hex()),
            author: h.filter.author.map(|a| a.to_hex()),
            created_at: rfc3339(h.created_at_ms),
        }
    }
}

/// A new hook and the secret that signs its notifications, shown only now.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedWebhook {
    pub webhook: WebhookInfo,
    /// The HMAC-SHA256 key: `X-Gevulot-Signature` is `sha256=` and the hex HMAC of
    /// `<X-Gevulot-Timestamp>.<body>` under this string's bytes.
    pub secret: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WebhookList {
    pub items: Vec<WebhookInfo>,
}

/// One notification to a hook and how sending it went.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeliveryInfo {
    /// Also sent as `X-Gevulot-Delivery`; increases in the order events happened.
    pub id: i64,
    /// `task.phase` or `run.ended`.
    pub event: String,
    pub run: String,
    /// `pending` (not acknowledged yet), `delivered` (the receiver answered 2xx) or `gave_up`.
    pub state: String,
    pub attempts: i64,
    /// When a pending delivery is sent (again).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    /// The receiver's last HTTP status, when it answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_status: Option<i64>,
    /// Why the last attempt failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// The body exactly as sent.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
}

impl From<&Delivery> for DeliveryInfo {
    fn from(d: &Delivery) -> Self {
        let pending = d.state == app::model::DeliveryState::Pending;
        Self {
            id: d.id,
            event: d.event.clone(),
            run: d.run.to_hex(),
            state: d.state.as_str().to_string(),
            attempts: d.attempts,
            next_attempt_at: pending.then(|| rfc3339(d.next_at_ms)),
            last_status: d.last_status,
            last_error: d.last_error.clone(),
            created_at: rfc3339(d.created_at_ms),
            finished_at: d.finished_at_ms.map(rfc3339),
            payload: serde_json::from_str(&d.payload)
                .unwrap_or_else(|_| serde_json::Value::String(d.payload.clone())),
        }
    }
}

/// A page of a hook's deliveries, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeliveryPage {
    pub items: Vec<DeliveryInfo>,
    /// Pass as `cursor` for the next (older) page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeliveryQuery {
    /// The `next_cursor` of the previous page.
    #[param(pattern = r"^[0-9]{0,18}$")]
    pub cursor: Option<String>,
    /// Page size, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}
