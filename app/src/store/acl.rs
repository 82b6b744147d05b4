//! The ACL whitelist: keys that may author transactions and connect as peers.

use super::{Backend, Result, Store, StoreError, now_ms};
use crate::crypto::PublicKey;

impl Store {
    /// Adds a key to the ACL whitelist. Returns whether it was new.
    pub async fn acl_add(&self, key: &PublicKey) -> Result<bool> {
        let done = dispatch!(self, pool => {
            sqlx::query("INSERT INTO acl_whitelist (key, added_at) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
                .bind(key.to_hex())
                .bind(now_ms())
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(done == 1)
    }

    /// Removes a key from the ACL whitelist. Returns whether it was there.
    pub async fn acl_remove(&self, key: &PublicKey) -> Result<bool> {
        let done = dispatch!(self, pool => {
            sqlx::query("DELETE FROM acl_whitelist WHERE key = $1")
                .bind(key.to_hex())
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(done == 1)
    }

    pub async fn acl_contains(&self, key: &PublicKey) -> Result<bool> {
        let found: Option<String> = dispatch!(self, pool => {
            sqlx::query_scalar("SELECT key FROM acl_whitelist WHERE key = $1")
                .bind(key.to_hex())
                .fetch_optional(pool)
                .await?
        });
        Ok(found.is_some())
    }

    /// How many keys the ACL whitelist holds.
    pub async fn acl_count(&self) -> Result<i64> {
        let n: i64 = dispatch!(self, pool => {
            sqlx::query_scalar("SELECT COUNT(*) FROM acl_whitelist")
                .fetch_one(pool)
                .await?
        });
        Ok(n)
    }

    pub async fn acl_list(&self) -> Result<Vec<PublicKey>> {
        let keys: Vec<String> = dispatch!(self, pool => {
            sqlx::query_scalar("SELECT key FROM acl_whitelist ORDER BY key")
                .fetch_all(pool)
                .await?
        });
        keys.iter()
            .map(|k| {
                PublicKey::from_hex(k).map_err(|_| StoreError::Corrupt(format!("bad ACL key {k}")))
            })
            .collect()
    }
}
