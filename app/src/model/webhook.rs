//! Webhooks: where an integrator wants to hear about Runs, and each notification's delivery.

use crate::crypto::PublicKey;
use crate::tx::Hash;

/// Which Runs a hook hears about: one Run, the Runs of one author, or (neither) every Run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WebhookFilter {
    pub run: Option<Hash>,
    pub author: Option<PublicKey>,
}

impl WebhookFilter {
    pub fn matches(&self, run: &Hash, author: &PublicKey) -> bool {
        self.run.is_none_or(|r| &r == run) && self.author.is_none_or(|a| &a == author)
    }
}

/// A registered hook. Its secret is never part of this: it is shown once, at creation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Webhook {
    pub id: i64,
    /// The console user who registered it.
    pub owner: String,
    pub url: String,
    pub filter: WebhookFilter,
    pub created_at_ms: i64,
}

/// Where a delivery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeliveryState {
    /// Not acknowledged yet: sent at `next_at_ms` (again, after a failure).
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Every attempt failed; the node gave up.
    GaveUp,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::GaveUp => "gave_up",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            DeliveryState::Pending,
            DeliveryState::Delivered,
            DeliveryState::GaveUp,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// One notification to one hook, and how sending it went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub id: i64,
    pub hook_id: i64,
    /// `task.phase` or `run.ended`.
    pub event: String,
    pub run: Hash,
    /// The JSON body, exactly as signed and sent.
    pub payload: String,
    pub state: DeliveryState,
    pub attempts: i64,
    pub next_at_ms: i64,
    /// The receiver's last HTTP status, when it answered.
    pub last_status: Option<i64>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    pub created_at_ms: i64,
    pub finished_at_ms: Option<i64>,
}
