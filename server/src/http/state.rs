//! What every handler gets: the core API and the server's own settings.

use std::sync::Arc;

use app::node::Node;

use super::limits::{Door, DoorLimits};
use super::metrics::Metrics;

/// Everything a handler may use. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Inner>);

#[derive(Debug)]
pub struct Inner {
    /// The core API: every read and change goes through it.
    pub node: Node,
    /// Mark the session cookie `Secure` (the node is reached over HTTPS).
    pub secure_cookies: bool,
    pub metrics: Arc<Metrics>,
    /// Largest request body the main server reads.
    pub max_request_bytes: usize,
    /// The limits at the public front doors.
    pub doors: Doors,
    /// The effective configuration of `gevulot run`, for the settings page.
    pub settings: Vec<crate::config::Setting>,
}

/// The public front doors and their limits per client address (see `limits.rs`).
#[derive(Clone, Debug)]
pub struct Doors {
    /// JSON-RPC and `POST /api/v1/transactions`.
    pub submission: Arc<Door>,
    /// The file download server.
    pub files: Arc<Door>,
}

impl Doors {
    pub fn new(submission: DoorLimits, files: DoorLimits) -> Self {
        Self {
            submission: Door::new("submission", submission),
            files: Door::new("files", files),
        }
    }

    /// No limits.
    #[cfg(test)]
    pub fn off() -> Self {
        Self::new(DoorLimits::OFF, DoorLimits::OFF)
    }
}

impl AppState {
    pub fn new(inner: Inner) -> Self {
        Self(Arc::new(inner))
    }

    /// Console users, sessions and API tokens.
    pub fn auth(&self) -> &app::auth::Auth {
        self.0.node.auth()
    }
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}
