//! The ACL whitelist kept in step with a published list (`GEVULOT_ACL_WHITELIST_URL`).
//!
//! The list is plain text: one hex public key per line (uncompressed, 130 hex digits, as
//! `gevulot-cli` prints them); blank lines and lines starting with `#` are skipped. After a sync
//! the database holds exactly the list's keys: new ones are added, missing ones removed (also
//! keys added with `gevulot peer <key> whitelist`: the published list is the truth). Two answers
//! change nothing: a failed request, and a list without any valid key (an empty answer is far
//! more likely a broken server than a network without members). Lines that are not keys are
//! skipped and reported while the readable ones apply.

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;
use tracing::{info, warn};

use crate::crypto::PublicKey;
use crate::store::{Store, StoreError};

/// How often the list is fetched again.
pub const SYNC_EVERY: Duration = Duration::from_secs(600);
/// The largest list read (about 7,500 keys per MiB).
const MAX_LIST_BYTES: usize = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("cannot fetch the whitelist from {url}: {reason}; the current whitelist stays")]
    Fetch { url: String, reason: String },
    #[error(
        "the whitelist at {url} lists no valid key; the current whitelist stays (publish one hex public key per line)"
    )]
    Empty { url: String },
    #[error("cannot update the whitelist")]
    Store(#[from] StoreError),
}

/// What a sync changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Synced {
    pub added: usize,
    pub removed: usize,
    pub total: usize,
    /// Lines that are not keys (1-based line numbers), skipped.
    pub bad_lines: Vec<usize>,
}

/// The latest sync and what came of it.
#[derive(Clone, Debug)]
pub struct LastSync {
    pub at: SystemTime,
    /// What changed, or why nothing did.
    pub outcome: Result<Synced, String>,
}

/// Where [`keep_synced`] reports, for the APIs, the console and the P2P network. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct SyncStatus {
    last: Arc<RwLock<Option<LastSync>>>,
    changed: Arc<Notify>,
}

impl SyncStatus {
    /// The latest sync; `None` until the first one has ended.
    pub fn last(&self) -> Option<LastSync> {
        self.last.read().ok().and_then(|l| l.clone())
    }

    /// Waits until a sync has changed the whitelist (at once if one did since the last call).
    /// Meant for one listener, the P2P network.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    fn set(&self, outcome: Result<Synced, String>) {
        if outcome.as_ref().is_ok_and(|s| s.added > 0 || s.removed > 0) {
            self.changed.notify_one();
        }
        if let Ok(mut last) = self.last.write() {
            *last = Some(LastSync {
                at: SystemTime::now(),
                outcome,
            });
        }
    }
}

/// Parses a published list into keys and the numbers of the lines that are not keys.
pub fn parse_list(text: &str) -> (BTreeSet<PublicKey>, Vec<usize>) {
    let mut keys = BTreeSet::new();
    let mut bad = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match PublicKey::from_hex(line) {
            Ok(key) => {
                keys.insert(key);
            }
            Err(_) => bad.push(n + 1),
        }
    }
    (keys, bad)
}

/// Makes the stored whitelist equal to `keys`.
pub async fn apply(
    store: &Store,
    keys: &BTreeSet<PublicKey>,
) -> Result<(usize, usize), StoreError> {
    let current: BTreeSet<PublicKey> = store.acl_list().await?.into_iter().collect();
    let mut added = 0;
    for key in keys.difference(&current) {
        added += usize::from(store.acl_add(key).await?);
    }
    let mut removed = 0;
    for key in current.difference(keys) {
        removed += usize::from(store.acl_remove(key).await?);
    }
    Ok((added, removed))
}

/// Fetches the list at `url` once and applies it.
pub async fn sync(store: &Store, client: &reqwest::Client, url: &str) -> Result<Synced, SyncError> {
    // A password in the URL never reaches a message.
    let shown = crate::store::redact_url(url);
    let fetch = |reason: String| SyncError::Fetch {
        url: shown.clone(),
        reason,
    };
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|e| fetch(e.without_url().to_string()))?;
    if !response.status().is_success() {
        return Err(fetch(format!("the server answered {}", response.status())));
    }
    if response
        .content_length()
        .is_some_and(|n| n > MAX_LIST_BYTES as u64)
    {
        return Err(fetch(format!(
            "the list is larger than {MAX_LIST_BYTES} bytes"
        )));
    }
    let body = response
        .bytes()
        .await
        .map_err(|e| fetch(e.without_url().to_string()))?;
    if body.len() > MAX_LIST_BYTES {
        return Err(fetch(format!(
            "the list is larger than {MAX_LIST_BYTES} bytes"
        )));
    }
    let (keys, bad_lines) = parse_list(&String::from_utf8_lossy(&body));
    if keys.is_empty() {
        return Err(SyncError::Empty { url: shown });
    }
    let (added, removed) = apply(store, &keys).await?;
    Ok(Synced {
        added,
        removed,
        total: keys.len(),
        bad_lines,
    })
}

/// Checks the list's URL when the node starts: HTTP or HTTPS with a host, as for downloads.
pub fn check_url(url: &str) -> Result<(), String> {
    crate::validate::http_url(url)
        .map_err(|reason| format!("{}: {reason}", crate::store::redact_url(url)))
}

/// An HTTP client for the list (the node's client settings; a whole fetch within 60 s).
pub fn client() -> Result<reqwest::Client, String> {
    crate::download::http_client()
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// Syncs at once, then every `every`, for as long as the node runs. Failures are logged,
/// reported in `status`, and leave the whitelist as it was.
pub async fn keep_synced(store: Store, url: String, every: Duration, status: SyncStatus) {
    let shown = crate::store::redact_url(&url);
    let client = match client() {
        Ok(c) => c,
        Err(e) => {
            warn!(target: "gevulot::acl", error = %e, "the whitelist is not synced");
            status.set(Err(e));
            return;
        }
    };
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let outcome = sync(&store, &client, &url).await;
        match &outcome {
            Ok(s) => {
                if !s.bad_lines.is_empty() {
                    warn!(target: "gevulot::acl", url = %shown, lines = ?s.bad_lines, "whitelist lines that are not hex public keys were skipped");
                }
                if s.added + s.removed > 0 {
                    info!(target: "gevulot::acl", url = %shown, added = s.added, removed = s.removed, keys = s.total, "whitelist updated");
                    let entry = crate::model::NewAuditEntry {
                        actor: crate::model::Actor::named("whitelist sync"),
                        action: crate::model::AuditAction::Whitelist,
                        target: Some(shown.clone()),
                        detail: Some(format!(
                            "{} added, {} removed, {} keys",
                            s.added, s.removed, s.total
                        )),
                        ok: true,
                    };
                    if let Err(e) = store.append_audit(&entry).await {
                        warn!(target: "gevulot", error = %e, "cannot record an audit entry");
                    }
                }
            }
            Err(e) => warn!(target: "gevulot::acl", error = %e, "whitelist sync failed"),
        }
        status.set(outcome.map_err(|e| e.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_urls() {
        assert!(check_url("https://acl.example/devnet").is_ok());
        assert!(check_url("http://10.0.0.1:8080/acl").is_ok());
        for bad in [
            "acl.example/devnet",
            "ftp://acl.example/x",
            "file:///etc/acl",
            "",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
        let e = check_url("ftp://u:pw-s3cret@acl.example/x").expect_err("ftp");
        assert!(!e.contains("pw-s3cret"), "{e}");
    }
}
