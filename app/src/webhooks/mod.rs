//! Webhooks: an integrator registers a URL and the node POSTs a signed JSON notification when a
//! Run it cares about changes phase (`task.phase`) and when it ends (`run.ended`).
//!
//! Every notification is stored before it is sent (`webhook_deliveries`), so nothing is lost to
//! a restart; each hook's notifications go out one at a time in the order they happened, and a
//! failed one is retried with doubling waits before the node gives up on it and moves on. The
//! delivery log keeps every attempt's outcome. The node only connects where [`guard`] permits.
//!
//! A receiver checks `X-Gevulot-Signature: sha256=<hex>`, the HMAC-SHA256 under the hook's
//! secret (its UTF-8 bytes) of `<X-Gevulot-Timestamp>.<body>`.

mod guard;
mod seal;
mod send;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use hmac::{KeyInit, Mac};
use tokio::sync::{Mutex, Notify};

pub use guard::Allowed;
use seal::Opened;
pub use seal::{Seal, SealError};

use crate::model::{Webhook, WebhookFilter};
use crate::store::{Store, StoreError};

/// The most hooks one user may register, and the node in all.
pub const MAX_HOOKS_PER_USER: usize = 20;
pub const MAX_HOOKS: usize = 1000;
/// The longest URL a hook may have.
pub const MAX_URL_LEN: usize = 2048;

/// How hooks are delivered.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Networks hooks may reach besides public addresses (`GEVULOT_WEBHOOK_ALLOW_NETS`).
    pub allowed: Allowed,
    /// Attempts of one notification before the node gives up on it.
    pub max_attempts: u32,
    /// The wait before the first retry; each next one waits twice as long (at most an hour).
    pub retry_backoff: Duration,
    /// How long one attempt may take.
    pub timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            allowed: Allowed::default(),
            max_attempts: 8,
            retry_backoff: Duration::from_secs(10),
            timeout: Duration::from_secs(10),
        }
    }
}

/// Why a hook was refused.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("{0}")]
    BadUrl(String),
    #[error("{0}")]
    AddressNotAllowed(String),
    #[error("{0}")]
    TooMany(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The node's webhooks: registration, and the sender (started by [`Webhooks::run`]).
#[derive(Clone, Debug)]
pub struct Webhooks {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    settings: Settings,
    /// Seals hooks' secrets for the database and opens them (see `seal.rs`).
    seal: Seal,
    allowed: Arc<Allowed>,
    /// `None` when the HTTP client could not be built: every attempt then fails with why (an
    /// unguarded client is never used instead).
    client: Option<reqwest::Client>,
    /// Wakes the sender when notifications were stored.
    wake: Notify,
    /// The hooks and their secrets, read once per change.
    hooks: Mutex<Option<HookSecrets>>,
    counts: send::Counts,
}

/// Every hook with its secret, or why the secret cannot be opened.
pub(super) type HookSecrets = Arc<Vec<(Webhook, Result<String, SealError>)>>;

/// A new hook and its secret, shown only now.
#[derive(Clone, Debug)]
pub struct CreatedHook {
    pub hook: Webhook,
    pub secret: String,
}

impl Webhooks {
    /// The hooks kept in `store`, their secrets sealed with `seal` (the node key's).
    pub fn new(store: Store, settings: Settings, seal: Seal) -> Self {
        let allowed = Arc::new(settings.allowed.clone());
        let client = crate::download::http_client()
            .dns_resolver(guard::Resolver {
                allowed: allowed.clone(),
            })
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(settings.timeout)
            .build()
            .inspect_err(|e| {
                tracing::error!(target: "gevulot", error = %e, "cannot build the webhook HTTP client; no webhook is delivered");
            })
            .ok();
        Self {
            inner: Arc::new(Inner {
                store,
                settings,
                seal,
                allowed,
                client,
                wake: Notify::new(),
                hooks: Mutex::default(),
                counts: send::Counts::default(),
            }),
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// Registers a hook for `owner` after checking its URL and where it leads now.
    pub async fn create(
        &self,
        owner: &str,
        url: &str,
        filter: WebhookFilter,
    ) -> Result<CreatedHook, HookError> {
        let parsed = check_url(url)?;
        let host = parsed
            .host()
            .ok_or_else(|| HookError::BadUrl("url: it has no host".into()))?;
        guard::check_host(&self.inner.allowed, &host)
            .await
            .map_err(HookError::AddressNotAllowed)?;
        let store = &self.inner.store;
        let all = store.webhooks(None).await?;
        if all.len() >= MAX_HOOKS {
            return Err(HookError::TooMany(format!(
                "the node holds {MAX_HOOKS} hooks, the most it keeps; delete unused ones"
            )));
        }
        if all.iter().filter(|h| h.owner == owner).count() >= MAX_HOOKS_PER_USER {
            return Err(HookError::TooMany(format!(
                "{owner} has {MAX_HOOKS_PER_USER} hooks, the most one user may have; delete one"
            )));
        }
        let secret = new_secret()?;
        let sealed = self
            .inner
            .seal
            .seal(&secret)
            .map_err(|e| HookError::BadUrl(e.to_string()))?;
        let hook = store
            .create_webhook(owner, parsed.as_str(), &sealed, &filter)
            .await?;
        self.changed().await;
        Ok(CreatedHook { hook, secret })
    }

    /// Deletes a hook and its delivery log; returns whether it was there.
    pub async fn delete(&self, id: i64) -> Result<bool, StoreError> {
        let gone = self.inner.store.delete_webhook(id).await?;
        self.changed().await;
        Ok(gone)
    }

    async fn changed(&self) {
        *self.inner.hooks.lock().await = None;
    }

    /// The hooks and their secrets (cached until one changes).
    async fn hooks(&self) -> Result<HookSecrets, StoreError> {
        let mut cached = self.inner.hooks.lock().await;
        if let Some(hooks) = cached.as_ref() {
            return Ok(hooks.clone());
        }
        let store = &self.inner.store;
        let mut hooks = Vec::new();
        for (hook, stored) in store.webhook_secrets().await? {
            let secret = match self.inner.seal.open(&stored) {
                Ok(Opened::Sealed(secret)) => Ok(secret),
                Ok(Opened::Clear(secret)) => {
                    // Stored in clear by an earlier release: sealed now, once.
                    if let Ok(sealed) = self.inner.seal.seal(&secret) {
                        store.set_webhook_secret(hook.id, &sealed).await?;
                        tracing::info!(target: "gevulot", hook = hook.id, "sealed a webhook secret stored in clear");
                    }
                    Ok(secret)
                }
                Err(e) => {
                    tracing::warn!(target: "gevulot", hook = hook.id, error = %e, "a webhook secret cannot be opened; its notifications fail");
                    Err(e)
                }
            };
            hooks.push((hook, secret));
        }
        let hooks = Arc::new(hooks);
        *cached = Some(hooks.clone());
        Ok(hooks)
    }

    /// Deliveries so far: delivered, retried, given up on.
    pub fn counts(&self) -> send::CountsSnapshot {
        self.inner.counts.snapshot()
    }
}

pub use send::CountsSnapshot;

/// Parses and checks a hook's URL: http or https, a host, no credentials, not too long.
fn check_url(url: &str) -> Result<url::Url, HookError> {
    let bad = |why: &str| HookError::BadUrl(format!("url: {why}"));
    if url.len() > MAX_URL_LEN {
        return Err(bad(&format!("at most {MAX_URL_LEN} characters")));
    }
    let parsed = url::Url::parse(url.trim()).map_err(|e| {
        bad(&format!(
            "not an absolute URL ({e}), e.g. https://ci.example.com/hook"
        ))
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(bad("only http and https URLs"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(bad(
            "no credentials in the URL; the signature tells the receiver the node sent it",
        ));
    }
    if parsed.host().is_none() {
        return Err(bad("it has no host"));
    }
    Ok(parsed)
}

fn new_secret() -> Result<String, HookError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|_| HookError::BadUrl("the node cannot make a random secret now; retry".into()))?;
    Ok(format!(
        "whsec_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

/// The `X-Gevulot-Signature` value of `body` sent at `timestamp` (Unix seconds).
pub fn signature(secret: &str, timestamp: u64, body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_of_timestamp_dot_body() {
        let sig = signature("whsec_key", 1_700_000_000, b"{\"event\":\"run.ended\"}");
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"whsec_key").expect("key");
        mac.update(b"1700000000.{\"event\":\"run.ended\"}");
        assert_eq!(
            sig,
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        );
        assert_ne!(
            sig,
            signature("whsec_key", 1_700_000_001, b"{\"event\":\"run.ended\"}")
        );
        assert_ne!(
            sig,
            signature("whsec_other", 1_700_000_000, b"{\"event\":\"run.ended\"}")
        );
    }

    #[test]
    fn urls_are_checked() {
        for bad in [
            "ftp://example.com/x",
            "not a url",
            "https://user:pw@example.com/",
            "file:///etc/passwd",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
        assert!(check_url(&format!("https://e.com/{}", "a".repeat(MAX_URL_LEN))).is_err());
        assert!(check_url("https://example.com/hook?x=1").is_ok());
    }
}
