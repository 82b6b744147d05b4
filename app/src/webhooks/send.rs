//! The sender: turns task phase changes, read from the database where it left off (the bus only
//! wakes it), into stored notifications for the hooks that want them, and delivers each hook's
//! notifications in order with retries. A change makes its notifications once: they are stored
//! in the same database transaction as the sender's position after it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;
use tokio::sync::broadcast::error::RecvError;
use tracing::{debug, warn};

use super::{HookSecrets, SealError, Webhooks, signature};
use crate::crypto::PublicKey;
use crate::events::{Event, Events};
use crate::model::{Delivery, DeliveryState, Phase, Task, Webhook};
use crate::outage::Outage;
use crate::store::{Attempt, ChangeCursor, NewDelivery, TaskChange};
use crate::store::{StoreError, now_ms};
use crate::tx::{Hash, Payload};

/// Task changes turned into notifications at once.
const PAGE: i64 = 256;
/// How soon the sender looks again for a change it was woken for but could not read yet (on
/// PostgreSQL, while an earlier transaction is still open).
const SETTLE_POLL: Duration = Duration::from_millis(50);
/// How often the position of changes that made no notification is kept.
const SAVE_EVERY: Duration = Duration::from_secs(5);
/// Notifications sent at once, each to a different hook.
const BATCH: i64 = 32;
/// The longest the sender waits before it looks for task changes or due deliveries again.
const TICK: Duration = Duration::from_secs(1);
/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// How much of a receiver's answer the log keeps.
const ERROR_CHARS: usize = 300;

#[derive(Debug, Default)]
pub(super) struct Counts {
    delivered: AtomicU64,
    retried: AtomicU64,
    gave_up: AtomicU64,
}

/// Deliveries since the node started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CountsSnapshot {
    pub delivered: u64,
    /// Attempts that failed and will be retried.
    pub retried: u64,
    pub gave_up: u64,
}

impl Counts {
    pub(super) fn snapshot(&self) -> CountsSnapshot {
        CountsSnapshot {
            delivered: self.delivered.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            gave_up: self.gave_up.load(Ordering::Relaxed),
        }
    }
}

/// Waits for a task change on the bus (or for having fallen behind it: the database has what
/// was missed); false once the bus is closed (the node is shutting down).
async fn task_changed(events: &mut tokio::sync::broadcast::Receiver<Event>) -> bool {
    loop {
        match events.recv().await {
            Ok(Event::TaskChanged { .. }) | Err(RecvError::Lagged(_)) => return true,
            Ok(_) => {}
            Err(RecvError::Closed) => return false,
        }
    }
}

fn rfc3339(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_millis(t).to_string()
}

fn task_json(t: &Task, phase: Phase) -> serde_json::Value {
    json!({
        "id": t.id,
        "step": t.step_index,
        "kind": t.kind.as_str(),
        "phase": phase.as_str(),
        "error": if phase.is_terminal() { t.error.clone() } else { None },
    })
}

/// What a Run's end looks like: `succeeded`, or the phase of its first step that did not.
fn outcome(tasks: &[Task]) -> &'static str {
    tasks
        .iter()
        .find(|t| t.phase != Phase::Succeeded)
        .map_or("succeeded", |t| t.phase.as_str())
}

/// Whether `task` is the Run's last task to end (so its change, and only its, ends the Run).
fn ends_run(tasks: &[Task], task_id: i64) -> bool {
    tasks.iter().all(|t| t.phase.is_terminal())
        && tasks
            .iter()
            .max_by_key(|t| (t.finished_at_ms.unwrap_or(0), t.id))
            .is_some_and(|last| last.id == task_id)
}

impl Webhooks {
    /// Runs the sender until the node shuts down: one task turns task phase changes into stored
    /// notifications, another delivers them. `events` only wakes the first: it reads the changes
    /// themselves from the database, from where it left off, so none is lost to a restart or
    /// to a bus it fell behind.
    pub fn run(&self, events: &Events) -> [tokio::task::JoinHandle<()>; 2] {
        let listening = self.clone();
        let receiver = events.subscribe();
        let started_ms = now_ms();
        let sending = self.clone();
        [
            tokio::spawn(async move { listening.listen(receiver, started_ms).await }),
            tokio::spawn(async move { sending.deliver().await }),
        ]
    }

    /// Follows the task changes from where the sender left off. The first time (no position
    /// kept) it reads them from the start, and changes made before `started_ms` make no
    /// notification: hooks hear of what happens from now on.
    async fn listen(self, mut events: tokio::sync::broadcast::Receiver<Event>, started_ms: i64) {
        let mut outage = Outage::default();
        let (mut cursor, since_ms) = loop {
            match self.kept_cursor().await {
                Ok(Some(kept)) => break (kept, 0),
                Ok(None) => break (ChangeCursor::default(), started_ms),
                Err(e) => {
                    outage.failed("read where the webhook sender left off", &e);
                    tokio::time::sleep(TICK).await;
                }
            }
        };
        let mut saved = Instant::now();
        let mut soon = false;
        loop {
            match self.follow(cursor, since_ms, &mut saved).await {
                Ok(Some(next)) => {
                    outage.over("storing webhook notifications");
                    cursor = next;
                    continue;
                }
                Ok(None) => outage.over("webhook notifications"),
                Err(e) => outage.failed("store webhook notifications for task changes", &e),
            }
            // Until a task changes, or a tick passes: a change the bus did not carry, or one not
            // yet readable (see `Store::task_changes_after`), is read then. Woken by a change
            // that was not readable yet, it looks again soon.
            let wait = if soon { SETTLE_POLL } else { TICK };
            match tokio::time::timeout(wait, task_changed(&mut events)).await {
                Ok(false) => return,
                Ok(true) => soon = true,
                Err(_) => soon = false,
            }
        }
    }

    /// Where the sender left off; `None` the first time, or when the position kept comes from
    /// another database cluster (a database restored from a dump into a new server, whose
    /// transaction numbers start lower: following it, the sender would never read a change).
    async fn kept_cursor(&self) -> Result<Option<ChangeCursor>, StoreError> {
        let store = &self.inner.store;
        let Some(kept) = store.webhook_cursor().await? else {
            return Ok(None);
        };
        if kept.xid >= store.task_changes_horizon().await? {
            warn!(target: "gevulot", "the webhook sender's position comes from another database server (a restored dump?); hooks hear of the task changes made from now on");
            return Ok(None);
        }
        Ok(Some(kept))
    }

    /// Stores the notifications the next page of task changes after `cursor` (those made from
    /// `since_ms` on) makes for the hooks that want them, with the position after that page (one
    /// database transaction), and returns that position; `None` when there was no change to
    /// read. A page that makes no notification keeps its position only if the last was kept
    /// [`SAVE_EVERY`] ago (`saved`): a restart reads such pages again, to the same effect.
    async fn follow(
        &self,
        cursor: ChangeCursor,
        since_ms: i64,
        saved: &mut Instant,
    ) -> Result<Option<ChangeCursor>, StoreError> {
        let store = &self.inner.store;
        let changes = store.task_changes_after(cursor, PAGE).await?;
        let Some(last) = changes.last().map(|c| c.cursor) else {
            return Ok(None);
        };
        let hooks = self.hooks().await?;
        let mut runs = HashMap::new();
        let mut new = Vec::new();
        if !hooks.is_empty() {
            for change in changes.iter().filter(|c| c.at_ms >= since_ms) {
                self.notifications(&hooks, change, &mut runs, &mut new)
                    .await?;
            }
        }
        if !new.is_empty() || saved.elapsed() >= SAVE_EVERY {
            store.enqueue_deliveries(&new, Some(last)).await?;
            *saved = Instant::now();
        }
        if !new.is_empty() {
            self.inner.wake.notify_one();
        }
        Ok(Some(last))
    }

    /// Adds to `new` the notifications `change` makes for the hooks that want it and existed
    /// when it happened. `runs` keeps each Run's author and tasks as read for this page.
    async fn notifications(
        &self,
        hooks: &HookSecrets,
        change: &TaskChange,
        runs: &mut HashMap<Hash, Option<(PublicKey, Vec<Task>)>>,
        new: &mut Vec<NewDelivery>,
    ) -> Result<(), StoreError> {
        let run = change.run;
        let wanting: Vec<&Webhook> = hooks
            .iter()
            .map(|(h, _)| h)
            .filter(|h| h.created_at_ms <= change.at_ms)
            .collect();
        if wanting.is_empty() {
            return Ok(());
        }
        if let std::collections::hash_map::Entry::Vacant(slot) = runs.entry(run) {
            let store = &self.inner.store;
            let read = match store.get_transaction(&run).await? {
                Some(stored) if matches!(stored.tx.payload, Payload::Run { .. }) => {
                    Some((stored.tx.author, store.tasks_for_tx(&run).await?))
                }
                _ => None,
            };
            slot.insert(read);
        }
        let Some(Some((author, tasks))) = runs.get(&run) else {
            return Ok(());
        };
        let Some(task) = tasks.iter().find(|t| t.id == change.task_id) else {
            return Ok(());
        };
        let (phase, at) = (change.phase, rfc3339(change.at_ms));
        let mut events = vec![(
            "task.phase",
            json!({
                "event": "task.phase",
                "run": run.to_hex(),
                "at": at,
                "task": task_json(task, phase),
            }),
        )];
        if phase.is_terminal() && ends_run(tasks, change.task_id) {
            events.push((
                "run.ended",
                json!({
                    "event": "run.ended",
                    "run": run.to_hex(),
                    "at": at,
                    "outcome": outcome(tasks),
                    "tasks": tasks.iter().map(|t| task_json(t, t.phase)).collect::<Vec<_>>(),
                }),
            ));
        }
        for hook in wanting
            .into_iter()
            .filter(|h| h.filter.matches(&run, author))
        {
            for (event, body) in &events {
                new.push(NewDelivery {
                    hook_id: hook.id,
                    event,
                    run,
                    payload: body.to_string(),
                });
            }
        }
        Ok(())
    }

    async fn deliver(self) {
        let mut outage = Outage::default();
        loop {
            let due = match self.inner.store.due_deliveries(now_ms(), BATCH).await {
                Ok(due) => {
                    outage.over("delivering webhooks");
                    due
                }
                Err(e) => {
                    outage.failed("read due webhook deliveries", &e);
                    tokio::time::sleep(TICK).await;
                    continue;
                }
            };
            if due.is_empty() {
                // Until the next retry falls due (at most a tick), or something new is stored.
                let wait = match self.inner.store.next_delivery_at().await {
                    Ok(Some(at)) => Duration::from_millis(
                        u64::try_from(at.saturating_sub(now_ms())).unwrap_or(0),
                    )
                    .min(TICK),
                    _ => TICK,
                };
                tokio::select! {
                    _ = self.inner.wake.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                }
                continue;
            }
            let hooks = match self.hooks().await {
                Ok(hooks) => hooks,
                Err(e) => {
                    outage.failed("read webhooks", &e);
                    tokio::time::sleep(TICK).await;
                    continue;
                }
            };
            let sends = due.iter().filter_map(|d| {
                let (hook, secret) = hooks.iter().find(|(h, _)| h.id == d.hook_id)?;
                Some(self.attempt(d, hook, secret))
            });
            futures::future::join_all(sends).await;
        }
    }

    /// Sends `d` once (signed with `secret`; a secret that cannot be opened fails the attempt)
    /// and records how it went.
    async fn attempt(&self, d: &Delivery, hook: &Webhook, secret: &Result<String, SealError>) {
        let result = match secret {
            Ok(secret) => self.post(d, hook, secret).await,
            Err(e) => Err((None, e.to_string())),
        };
        let counts = &self.inner.counts;
        let attempts = u32::try_from(d.attempts)
            .unwrap_or(u32::MAX)
            .saturating_add(1);
        let attempt = match result {
            Ok(status) => {
                counts.delivered.fetch_add(1, Ordering::Relaxed);
                debug!(target: "gevulot", hook = hook.id, delivery = d.id, status, "webhook delivered");
                Attempt {
                    state: DeliveryState::Delivered,
                    next_at_ms: now_ms(),
                    status: Some(i64::from(status)),
                    error: None,
                }
            }
            Err((status, error)) => {
                let give_up = attempts >= self.inner.settings.max_attempts;
                if give_up {
                    counts.gave_up.fetch_add(1, Ordering::Relaxed);
                    warn!(target: "gevulot", hook = hook.id, delivery = d.id, attempts, error = %error, "gave up on a webhook delivery");
                } else {
                    counts.retried.fetch_add(1, Ordering::Relaxed);
                }
                let wait = backoff(self.inner.settings.retry_backoff, attempts);
                Attempt {
                    state: if give_up {
                        DeliveryState::GaveUp
                    } else {
                        DeliveryState::Pending
                    },
                    next_at_ms: now_ms().saturating_add(wait.as_millis() as i64),
                    status: status.map(i64::from),
                    error: Some(if give_up {
                        format!("gave up after {attempts} attempts: {error}")
                    } else {
                        error
                    }),
                }
            }
        };
        if let Err(e) = self.inner.store.record_attempt(d.id, &attempt).await {
            warn!(target: "gevulot", delivery = d.id, error = %e, "cannot record a webhook attempt; it is sent again");
        }
    }

    /// POSTs the notification; the receiver's status when it answered 2xx, else the status (if
    /// any) and why it failed.
    async fn post(
        &self,
        d: &Delivery,
        hook: &Webhook,
        secret: &str,
    ) -> Result<u16, (Option<u16>, String)> {
        // An address literal never reaches the resolver: check it here.
        let url = url::Url::parse(&hook.url).map_err(|e| (None, format!("bad URL: {e}")))?;
        if let Some(host @ (url::Host::Ipv4(_) | url::Host::Ipv6(_))) = url.host() {
            super::guard::check_host(&self.inner.allowed, &host)
                .await
                .map_err(|e| (None, e))?;
        }
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let Some(client) = &self.inner.client else {
            return Err((
                None,
                "the node could not build its HTTP client (see its log)".into(),
            ));
        };
        let response = client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("x-gevulot-event", &d.event)
            .header("x-gevulot-delivery", d.id.to_string())
            .header("x-gevulot-timestamp", timestamp.to_string())
            .header(
                "x-gevulot-signature",
                signature(secret, timestamp, d.payload.as_bytes()),
            )
            .body(d.payload.clone())
            .send()
            .await
            .map_err(|e| (None, describe(&e, self.inner.settings.timeout)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(status.as_u16());
        }
        let body = response.text().await.unwrap_or_default();
        let body: String = body.chars().take(ERROR_CHARS).collect();
        Err((
            Some(status.as_u16()),
            format!("the receiver answered {status}: {}", body.trim()),
        ))
    }
}

/// The wait after attempt `attempts` failed: `first`, doubling, at most an hour.
fn backoff(first: Duration, attempts: u32) -> Duration {
    let factor = 1u32
        .checked_shl(attempts.saturating_sub(1))
        .unwrap_or(u32::MAX);
    first.saturating_mul(factor).min(MAX_BACKOFF)
}

/// A failed request in words: the error and its causes.
fn describe(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        return format!("no answer within {} s", timeout.as_secs());
    }
    let mut text = if e.is_connect() {
        "cannot connect".to_string()
    } else {
        "the request failed".to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_an_hour() {
        let s = Duration::from_secs;
        assert_eq!(backoff(s(10), 1), s(10));
        assert_eq!(backoff(s(10), 2), s(20));
        assert_eq!(backoff(s(10), 4), s(80));
        assert_eq!(backoff(s(10), 40), MAX_BACKOFF);
    }
}
