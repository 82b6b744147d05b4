//! What the catch-up between peers reads and keeps: this node's transactions in the order it
//! stored them (served to peers), and how far it has pulled each peer's.

use super::transactions::{TX_COLUMNS, TxTuple, decode_tx};
use super::{Backend, Result, Store, now_ms};
use crate::model::StoredTransaction;

/// How far this node has pulled one peer's transactions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerCursor {
    /// The peer's sequence number up to which everything it stored is stored here too.
    pub cursor: i64,
    /// The peer's newest sequence number when it last answered.
    pub head: i64,
    /// Transactions this node stored from the peer's pages, in total.
    pub pulled: i64,
    /// When a round with the peer last ended (ms since the Unix epoch).
    pub synced_at_ms: i64,
}

impl Store {
    /// Up to `limit` transactions stored after sequence number `after`, oldest first.
    pub async fn transactions_after(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<StoredTransaction>> {
        let sql =
            format!("SELECT {TX_COLUMNS} FROM transactions WHERE seq > $1 ORDER BY seq LIMIT $2");
        let rows: Vec<TxTuple> = dispatch!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(decode_tx).collect()
    }

    /// The newest sequence number, 0 before the first transaction.
    pub async fn head_seq(&self) -> Result<i64> {
        let head: Option<i64> = dispatch!(self, pool => {
            sqlx::query_scalar("SELECT MAX(seq) FROM transactions").fetch_one(pool).await?
        });
        Ok(head.unwrap_or(0))
    }

    /// How far this node has pulled `peer`'s transactions; `None` before the first page.
    pub async fn peer_cursor(&self, peer: &str) -> Result<Option<PeerCursor>> {
        let row: Option<(i64, i64, i64, i64)> = dispatch!(self, pool => {
            sqlx::query_as("SELECT cursor, head, pulled, synced_at FROM peer_sync WHERE peer = $1")
                .bind(peer)
                .fetch_optional(pool)
                .await?
        });
        Ok(row.map(|(cursor, head, pulled, synced_at_ms)| PeerCursor {
            cursor,
            head,
            pulled,
            synced_at_ms,
        }))
    }

    /// Records a page pulled from `peer`: everything up to `cursor` is stored here, `head` is
    /// the peer's newest, and `pulled` more transactions were new here.
    pub async fn advance_peer_cursor(
        &self,
        peer: &str,
        cursor: i64,
        head: i64,
        pulled: i64,
    ) -> Result<()> {
        dispatch!(self, pool => {
            sqlx::query(
                "INSERT INTO peer_sync (peer, cursor, head, pulled, synced_at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (peer) DO UPDATE SET cursor = excluded.cursor, head = excluded.head, \
                 pulled = peer_sync.pulled + excluded.pulled, synced_at = excluded.synced_at",
            )
            .bind(peer)
            .bind(cursor)
            .bind(head)
            .bind(pulled)
            .bind(now_ms())
            .execute(pool)
            .await?;
        });
        Ok(())
    }
}
