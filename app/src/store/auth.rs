//! Storage of console users, sessions, API tokens and the one-time setup token. Secrets are
//! stored hashed; the callers in [`crate::auth`] do the hashing.

use super::{Backend, Result, Store, now_ms};

/// A console user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRow {
    pub id: i64,
    pub username: String,
    pub password_hash: String,
    pub role: String,
    pub created_at_ms: i64,
    pub password_changed_at_ms: i64,
}

type UserTuple = (i64, String, String, String, i64, i64);

const USER_COLUMNS: &str = "id, username, password_hash, role, created_at, password_changed_at";

fn user(t: UserTuple) -> UserRow {
    let (id, username, password_hash, role, created_at_ms, password_changed_at_ms) = t;
    UserRow {
        id,
        username,
        password_hash,
        role,
        created_at_ms,
        password_changed_at_ms,
    }
}

/// An API token's record (never the token itself).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiTokenRow {
    pub id: i64,
    pub name: String,
    pub user_id: i64,
    pub created_at_ms: i64,
    pub last_used_at_ms: Option<i64>,
}

impl Store {
    /// Creates a user. Returns `None` when the name is taken.
    pub async fn create_user(
        &self,
        username: &str,
        password_hash: &str,
        role: &str,
    ) -> Result<Option<UserRow>> {
        let now = now_ms();
        let id: Option<i64> = dispatch!(self, pool => {
            sqlx::query_scalar(
                "INSERT INTO users (username, password_hash, role, created_at, password_changed_at) \
                 VALUES ($1, $2, $3, $4, $4) ON CONFLICT (username) DO NOTHING RETURNING id",
            )
            .bind(username)
            .bind(password_hash)
            .bind(role)
            .bind(now)
            .fetch_optional(pool)
            .await?
        });
        match id {
            Some(id) => self.user_by_id(id).await,
            None => Ok(None),
        }
    }

    pub async fn user_by_id(&self, id: i64) -> Result<Option<UserRow>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        let row: Option<UserTuple> = dispatch!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(pool).await?
        });
        Ok(row.map(user))
    }

    pub async fn user_by_name(&self, username: &str) -> Result<Option<UserRow>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE username = $1");
        let row: Option<UserTuple> = dispatch!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(username).fetch_optional(pool).await?
        });
        Ok(row.map(user))
    }

    pub async fn list_users(&self) -> Result<Vec<UserRow>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY username");
        let rows: Vec<UserTuple> = dispatch!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(pool).await?
        });
        Ok(rows.into_iter().map(user).collect())
    }

    pub async fn count_users(&self) -> Result<i64> {
        let n: i64 = dispatch!(self, pool => {
            sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(pool).await?
        });
        Ok(n)
    }

    /// Changes a user's role. Returns whether the user exists.
    pub async fn set_user_role(&self, id: i64, role: &str) -> Result<bool> {
        let n = dispatch!(self, pool => {
            sqlx::query("UPDATE users SET role = $1 WHERE id = $2")
                .bind(role)
                .bind(id)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(n == 1)
    }

    /// Replaces a user's password hash and ends all of the user's sessions.
    pub async fn set_user_password(&self, id: i64, password_hash: &str) -> Result<bool> {
        let now = now_ms();
        dispatch!(self, pool => {
            let mut t = pool.begin().await?;
            let n = sqlx::query("UPDATE users SET password_hash = $1, password_changed_at = $2 WHERE id = $3")
                .bind(password_hash)
                .bind(now)
                .bind(id)
                .execute(&mut *t)
                .await?
                .rows_affected();
            sqlx::query("DELETE FROM sessions WHERE user_id = $1")
                .bind(id)
                .execute(&mut *t)
                .await?;
            t.commit().await?;
            Ok(n == 1)
        })
    }

    pub async fn insert_session(
        &self,
        token_hash: &str,
        user_id: i64,
        csrf_token: &str,
        expires_at_ms: i64,
    ) -> Result<()> {
        dispatch!(self, pool => {
            sqlx::query(
                "INSERT INTO sessions (token_hash, user_id, csrf_token, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(token_hash)
            .bind(user_id)
            .bind(csrf_token)
            .bind(now_ms())
            .bind(expires_at_ms)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// The user and CSRF token of an unexpired session.
    pub async fn session(&self, token_hash: &str) -> Result<Option<(UserRow, String)>> {
        let row: Option<(i64, String)> = dispatch!(self, pool => {
            sqlx::query_as("SELECT user_id, csrf_token FROM sessions WHERE token_hash = $1 AND expires_at > $2")
                .bind(token_hash)
                .bind(now_ms())
                .fetch_optional(pool)
                .await?
        });
        let Some((user_id, csrf)) = row else {
            return Ok(None);
        };
        Ok(self.user_by_id(user_id).await?.map(|u| (u, csrf)))
    }

    pub async fn delete_session(&self, token_hash: &str) -> Result<()> {
        dispatch!(self, pool => {
            sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
                .bind(token_hash)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Removes expired sessions; returns how many.
    pub async fn delete_expired_sessions(&self) -> Result<u64> {
        let n = dispatch!(self, pool => {
            sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
                .bind(now_ms())
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(n)
    }

    pub async fn insert_api_token(
        &self,
        token_hash: &str,
        name: &str,
        user_id: i64,
    ) -> Result<i64> {
        let id: i64 = dispatch!(self, pool => {
            sqlx::query_scalar(
                "INSERT INTO api_tokens (token_hash, name, user_id, created_at) VALUES ($1, $2, $3, $4) RETURNING id",
            )
            .bind(token_hash)
            .bind(name)
            .bind(user_id)
            .bind(now_ms())
            .fetch_one(pool)
            .await?
        });
        Ok(id)
    }

    /// The user an API token belongs to; records the use.
    pub async fn api_token_user(&self, token_hash: &str) -> Result<Option<UserRow>> {
        let user_id: Option<i64> = dispatch!(self, pool => {
            sqlx::query_scalar("UPDATE api_tokens SET last_used_at = $1 WHERE token_hash = $2 RETURNING user_id")
                .bind(now_ms())
                .bind(token_hash)
                .fetch_optional(pool)
                .await?
        });
        match user_id {
            Some(id) => self.user_by_id(id).await,
            None => Ok(None),
        }
    }

    pub async fn list_api_tokens(&self, user_id: i64) -> Result<Vec<ApiTokenRow>> {
        let rows: Vec<(i64, String, i64, i64, Option<i64>)> = dispatch!(self, pool => {
            sqlx::query_as(
                "SELECT id, name, user_id, created_at, last_used_at FROM api_tokens WHERE user_id = $1 ORDER BY id",
            )
            .bind(user_id)
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(
                |(id, name, user_id, created_at_ms, last_used_at_ms)| ApiTokenRow {
                    id,
                    name,
                    user_id,
                    created_at_ms,
                    last_used_at_ms,
                },
            )
            .collect())
    }

    /// Deletes a token of `user_id`. Returns whether it existed.
    pub async fn delete_api_token(&self, id: i64, user_id: i64) -> Result<bool> {
        let n = dispatch!(self, pool => {
            sqlx::query("DELETE FROM api_tokens WHERE id = $1 AND user_id = $2")
                .bind(id)
                .bind(user_id)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(n == 1)
    }

    /// Replaces any setup token with this one.
    pub async fn replace_setup_token(&self, token_hash: &str) -> Result<()> {
        dispatch!(self, pool => {
            let mut t = pool.begin().await?;
            sqlx::query("DELETE FROM setup_tokens").execute(&mut *t).await?;
            sqlx::query("INSERT INTO setup_tokens (token_hash, created_at) VALUES ($1, $2)")
                .bind(token_hash)
                .bind(now_ms())
                .execute(&mut *t)
                .await?;
            t.commit().await?;
        });
        Ok(())
    }

    /// Creates the first admin with a valid setup token, atomically: the token is consumed and
    /// the user created only if there is no user yet. Returns the user, or `None` when the token
    /// is wrong or users already exist.
    pub async fn setup_first_admin(
        &self,
        token_hash: &str,
        username: &str,
        password_hash: &str,
        role: &str,
    ) -> Result<Option<UserRow>> {
        let now = now_ms();
        let id: Option<i64> = dispatch!(self, pool => {
            let mut t = pool.begin().await?;
            let taken = sqlx::query("DELETE FROM setup_tokens WHERE token_hash = $1")
                .bind(token_hash)
                .execute(&mut *t)
                .await?
                .rows_affected();
            let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(&mut *t).await?;
            if taken != 1 || users != 0 {
                t.rollback().await?;
                None
            } else {
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO users (username, password_hash, role, created_at, password_changed_at) \
                     VALUES ($1, $2, $3, $4, $4) RETURNING id",
                )
                .bind(username)
                .bind(password_hash)
                .bind(role)
                .bind(now)
                .fetch_one(&mut *t)
                .await?;
                t.commit().await?;
                Some(id)
            }
        });
        match id {
            Some(id) => self.user_by_id(id).await,
            None => Ok(None),
        }
    }
}
