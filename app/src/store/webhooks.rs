//! Webhooks and their delivery log. A hook's deliveries are sent in id order: only the oldest
//! pending one of each hook is ever due.

use sqlx::AssertSqlSafe;

use super::node_state::PUT_STATE;
use super::task_changes::{ChangeCursor, WEBHOOK_CURSOR};
use super::{Backend, Result, Store, StoreError, now_ms};
use crate::crypto::PublicKey;
use crate::model::{Delivery, DeliveryState, Webhook, WebhookFilter};
use crate::tx::Hash;

const HOOK_COLUMNS: &str = "id, owner, url, run_filter, author, created_at";
type HookRow = (i64, String, String, Option<String>, Option<String>, i64);
type HookSecretRow = (
    i64,
    String,
    String,
    Option<String>,
    Option<String>,
    i64,
    String,
);

const DELIVERY_COLUMNS: &str = "id, hook_id, event, run, payload, state, attempts, next_at, \
                                last_status, last_error, created_at, finished_at";
type DeliveryRow = (
    i64,
    i64,
    String,
    String,
    String,
    String,
    i64,
    i64,
    Option<i64>,
    Option<String>,
    i64,
    Option<i64>,
);

/// A notification to store for one hook.
#[derive(Clone, Debug)]
pub struct NewDelivery {
    pub hook_id: i64,
    pub event: &'static str,
    pub run: Hash,
    pub payload: String,
}

/// How one attempt went.
#[derive(Clone, Debug)]
pub struct Attempt {
    pub state: DeliveryState,
    pub next_at_ms: i64,
    pub status: Option<i64>,
    pub error: Option<String>,
}

fn hook(row: HookRow) -> Result<Webhook> {
    let (id, owner, url, run, author, created_at_ms) = row;
    let run = match run {
        Some(h) => Some(
            Hash::from_hex(&h)
                .ok_or_else(|| StoreError::Corrupt(format!("webhook {id}: bad run {h}")))?,
        ),
        None => None,
    };
    let author = match author {
        Some(k) => Some(
            PublicKey::from_hex(&k)
                .map_err(|_| StoreError::Corrupt(format!("webhook {id}: bad author {k}")))?,
        ),
        None => None,
    };
    Ok(Webhook {
        id,
        owner,
        url,
        filter: WebhookFilter { run, author },
        created_at_ms,
    })
}

fn delivery(row: DeliveryRow) -> Result<Delivery> {
    let (id, hook_id, event, run, payload, state, attempts, next_at_ms) =
        (row.0, row.1, row.2, row.3, row.4, row.5, row.6, row.7);
    Ok(Delivery {
        id,
        hook_id,
        event,
        run: Hash::from_hex(&run)
            .ok_or_else(|| StoreError::Corrupt(format!("delivery {id}: bad run {run}")))?,
        payload,
        state: DeliveryState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("delivery {id}: bad state {state}")))?,
        attempts,
        next_at_ms,
        last_status: row.8,
        last_error: row.9,
        created_at_ms: row.10,
        finished_at_ms: row.11,
    })
}

impl Store {
    /// Registers a hook; `secret` signs its deliveries.
    pub async fn create_webhook(
        &self,
        owner: &str,
        url: &str,
        secret: &str,
        filter: &WebhookFilter,
    ) -> Result<Webhook> {
        let now = now_ms();
        let id: i64 = dispatch!(self, pool => {
            sqlx::query_scalar(
                "INSERT INTO webhooks (owner, url, secret, run_filter, author, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            )
            .bind(owner)
            .bind(url)
            .bind(secret)
            .bind(filter.run.map(|h| h.to_hex()))
            .bind(filter.author.map(|k| k.to_hex()))
            .bind(now)
            .fetch_one(pool)
            .await?
        });
        Ok(Webhook {
            id,
            owner: owner.to_string(),
            url: url.to_string(),
            filter: filter.clone(),
            created_at_ms: now,
        })
    }

    /// The hooks of `owner`, or every hook; oldest first.
    pub async fn webhooks(&self, owner: Option<&str>) -> Result<Vec<Webhook>> {
        let sql = format!(
            "SELECT {HOOK_COLUMNS} FROM webhooks WHERE ($1 IS NULL OR owner = $1) ORDER BY id"
        );
        let rows: Vec<HookRow> = dispatch!(self, pool => {
            sqlx::query_as(AssertSqlSafe(sql.clone())).bind(owner).fetch_all(pool).await?
        });
        rows.into_iter().map(hook).collect()
    }

    pub async fn webhook(&self, id: i64) -> Result<Option<Webhook>> {
        let sql = format!("SELECT {HOOK_COLUMNS} FROM webhooks WHERE id = $1");
        let row: Option<HookRow> = dispatch!(self, pool => {
            sqlx::query_as(AssertSqlSafe(sql.clone())).bind(id).fetch_optional(pool).await?
        });
        row.map(hook).transpose()
    }

    /// Every hook with its secret, for the sender.
    pub async fn webhook_secrets(&self) -> Result<Vec<(Webhook, String)>> {
        let sql = format!("SELECT {HOOK_COLUMNS}, secret FROM webhooks ORDER BY id");
        let rows: Vec<HookSecretRow> = dispatch!(self, pool => {
            sqlx::query_as(AssertSqlSafe(sql.clone())).fetch_all(pool).await?
        });
        rows.into_iter()
            .map(|(id, owner, url, run, author, at, secret)| {
                Ok((hook((id, owner, url, run, author, at))?, secret))
            })
            .collect()
    }

    /// Replaces a hook's stored secret (sealing one stored in clear).
    pub async fn set_webhook_secret(&self, id: i64, secret: &str) -> Result<()> {
        dispatch!(self, pool => {
            sqlx::query("UPDATE webhooks SET secret = $1 WHERE id = $2")
                .bind(secret)
                .bind(id)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Deletes a hook and its delivery log. Returns whether it was there.
    pub async fn delete_webhook(&self, id: i64) -> Result<bool> {
        let n = dispatch!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query("DELETE FROM webhook_deliveries WHERE hook_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            let n = sqlx::query("DELETE FROM webhooks WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            n
        });
        Ok(n == 1)
    }

    /// Stores notifications, due now, in the order given, and with them (in the same database
    /// transaction) the webhook sender's position after the changes that made them, if given.
    pub async fn enqueue_deliveries(
        &self,
        new: &[NewDelivery],
        cursor: Option<ChangeCursor>,
    ) -> Result<()> {
        if new.is_empty() && cursor.is_none() {
            return Ok(());
        }
        let now = now_ms();
        dispatch!(self, pool => {
            let mut tx = pool.begin().await?;
            if let Some(cursor) = cursor {
                sqlx::query(PUT_STATE)
                    .bind(WEBHOOK_CURSOR)
                    .bind(cursor.encode())
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            for d in new {
                sqlx::query(
                    "INSERT INTO webhook_deliveries \
                     (hook_id, event, run, payload, state, attempts, next_at, created_at) \
                     VALUES ($1, $2, $3, $4, 'pending', 0, $5, $5)",
                )
                .bind(d.hook_id)
                .bind(d.event)
                .bind(d.run.to_hex())
                .bind(&d.payload)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// The oldest pending delivery of each hook, when it is due by `now_ms`; at most `limit`.
    pub async fn due_deliveries(&self, now_ms: i64, limit: i64) -> Result<Vec<Delivery>> {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id IN \
             (SELECT MIN(id) FROM webhook_deliveries WHERE state = 'pending' GROUP BY hook_id) \
             AND next_at <= $1 ORDER BY id LIMIT $2"
        );
        let rows: Vec<DeliveryRow> = dispatch!(self, pool => {
            sqlx::query_as(AssertSqlSafe(sql.clone()))
                .bind(now_ms)
                .bind(limit)
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(delivery).collect()
    }

    /// When the earliest of the hooks' oldest pending deliveries is due, if any is pending.
    pub async fn next_delivery_at(&self) -> Result<Option<i64>> {
        let at: Option<i64> = dispatch!(self, pool => {
            sqlx::query_scalar(
                "SELECT MIN(next_at) FROM webhook_deliveries WHERE id IN \
                 (SELECT MIN(id) FROM webhook_deliveries WHERE state = 'pending' GROUP BY hook_id)",
            )
            .fetch_one(pool)
            .await?
        });
        Ok(at)
    }

    /// Records an attempt of delivery `id`.
    pub async fn record_attempt(&self, id: i64, attempt: &Attempt) -> Result<()> {
        let finished = (attempt.state != DeliveryState::Pending).then(now_ms);
        dispatch!(self, pool => {
            sqlx::query(
                "UPDATE webhook_deliveries SET state = $2, attempts = attempts + 1, next_at = $3, \
                 last_status = $4, last_error = $5, finished_at = $6 WHERE id = $1",
            )
            .bind(id)
            .bind(attempt.state.as_str())
            .bind(attempt.next_at_ms)
            .bind(attempt.status)
            .bind(&attempt.error)
            .bind(finished)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// A hook's deliveries, newest first, older than delivery `before` when given.
    pub async fn deliveries(
        &self,
        hook_id: i64,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<Delivery>> {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries \
             WHERE hook_id = $1 AND ($2 IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
        );
        let rows: Vec<DeliveryRow> = dispatch!(self, pool => {
            sqlx::query_as(AssertSqlSafe(sql.clone()))
                .bind(hook_id)
                .bind(before)
                .bind(limit)
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(delivery).collect()
    }

    /// Deletes deliveries that finished before `at_ms`; returns how many.
    pub async fn delete_deliveries_before(&self, at_ms: i64) -> Result<u64> {
        let n = dispatch!(self, pool => {
            sqlx::query(
                "DELETE FROM webhook_deliveries WHERE finished_at IS NOT NULL AND finished_at < $1",
            )
            .bind(at_ms)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(n)
    }
}
