//! Console users and API tokens: argon2id password hashes, roles, sessions, CSRF tokens, login
//! throttling, and the first-run setup token. No HTTP here: the server maps these to cookies,
//! headers and status codes.
//!
//! *Invariants:* passwords and tokens are never stored or logged; the database holds argon2id
//! PHC strings for passwords and SHA3-256 digests for session, API and setup tokens (tokens are
//! 256 random bits, so a fast digest is enough). A failed login takes the same path whether or not
//! the user exists.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use base64::Engine as _;

use crate::store::{Store, StoreError, UserRow, now_ms};
use crate::tx::Hash;

/// What a user may do. Each role includes the ones below it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Read everything.
    Viewer,
    /// Deploy, run, cancel, assign GPUs.
    Operator,
    /// Manage users and tokens.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Operator, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == text)
    }

    /// Whether this role may do what `needed` may.
    pub fn allows(self, needed: Role) -> bool {
        self >= needed
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A console user, without secrets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub role: Role,
    pub created_at_ms: i64,
}

impl TryFrom<UserRow> for User {
    type Error = AuthError;
    fn try_from(row: UserRow) -> Result<Self, AuthError> {
        Ok(User {
            role: Role::parse(&row.role).ok_or_else(|| {
                AuthError::Store(StoreError::Corrupt(format!(
                    "user {}: bad role {}",
                    row.id, row.role
                )))
            })?,
            id: row.id,
            username: row.username,
            created_at_ms: row.created_at_ms,
        })
    }
}

/// A new session: the token goes into a cookie, the CSRF token into forms.
#[derive(Clone, PartialEq, Eq)]
pub struct NewSession {
    pub token: String,
    pub csrf_token: String,
    pub user: User,
    pub expires_at_ms: i64,
}

impl NewSession {
    /// Seconds until the session expires: the cookie's `Max-Age`.
    pub fn max_age_secs(&self) -> i64 {
        (self.expires_at_ms - now_ms()).max(0) / 1000
    }
}

impl fmt::Debug for NewSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "NewSession(user: {}, token: [redacted])",
            self.user.username
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("wrong username or password")]
    BadCredentials,
    #[error("too many failed sign-ins for this user; try again in {retry_after_secs} s")]
    Throttled { retry_after_secs: u64 },
    #[error("the username {0:?} is taken")]
    UsernameTaken(String),
    #[error("{0}")]
    BadUsername(&'static str),
    #[error("{0}")]
    WeakPassword(&'static str),
    #[error(
        "the setup token is wrong or was already used, or users already exist; sign in instead"
    )]
    SetupUnavailable,
    #[error("password hashing failed")]
    Hashing,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AuthError {
    /// Stable code for the APIs.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::BadCredentials => "bad_credentials",
            AuthError::Throttled { .. } => "too_many_attempts",
            AuthError::UsernameTaken(_) => "username_taken",
            AuthError::BadUsername(_) => "bad_username",
            AuthError::WeakPassword(_) => "weak_password",
            AuthError::SetupUnavailable => "setup_unavailable",
            AuthError::Hashing => "internal_error",
            AuthError::Store(_) => "database_unavailable",
        }
    }
}

/// Failed sign-ins per username.
#[derive(Debug)]
struct Failures {
    count: u32,
    window_start: Instant,
}

/// Sign-in throttling: at most `MAX_FAILURES` failures per username per `WINDOW`.
const MAX_FAILURES: u32 = 5;
const WINDOW: Duration = Duration::from_secs(15 * 60);
const MAX_TRACKED: usize = 10_000;

/// How long a console session lasts unless configured (`GEVULOT_SESSION_HOURS`).
pub const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(12 * 60 * 60);

pub const MIN_PASSWORD_LEN: usize = 10;
/// Bounds the work of hashing a password (argon2 reads all of it).
pub const MAX_PASSWORD_LEN: usize = 256;

/// Users, sessions and tokens over the store.
#[derive(Clone)]
pub struct Auth {
    store: Store,
    failures: Arc<Mutex<HashMap<String, Failures>>>,
    /// A valid hash to verify against when the user does not exist (equal timing).
    dummy_hash: Arc<str>,
    /// How long a session lasts; the collector deletes it once expired.
    session_ttl: Duration,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Auth")
    }
}

/// 32 random bytes, base64url, with a prefix that says what the token is.
fn random_token(prefix: &str) -> Result<String, AuthError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|_| AuthError::Hashing)?;
    Ok(format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

/// The stored digest of a token.
pub fn token_digest(token: &str) -> String {
    Hash::sha3(token.as_bytes()).to_hex()
}

pub fn hash_password(password: &str) -> Result<String, AuthError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|_| AuthError::Hashing)
}

fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

pub fn check_username(name: &str) -> Result<(), AuthError> {
    if name.is_empty() || name.len() > 64 {
        return Err(AuthError::BadUsername(
            "a username is 1 to 64 characters long",
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(AuthError::BadUsername(
            "a username may contain only letters, digits, '.', '_' and '-'",
        ));
    }
    Ok(())
}

pub fn check_password(password: &str) -> Result<(), AuthError> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(AuthError::WeakPassword(
            "a password needs at least 10 characters",
        ));
    }
    if password.chars().count() > MAX_PASSWORD_LEN {
        return Err(AuthError::WeakPassword(
            "a password is at most 256 characters long",
        ));
    }
    Ok(())
}

impl Auth {
    pub fn new(store: Store) -> Result<Self, AuthError> {
        Ok(Self {
            store,
            failures: Arc::default(),
            dummy_hash: hash_password("not a real password, only for timing")?.into(),
            session_ttl: DEFAULT_SESSION_TTL,
        })
    }

    /// Sessions opened from now on last `ttl` (at least a minute).
    pub fn with_session_ttl(mut self, ttl: Duration) -> Self {
        self.session_ttl = ttl.max(Duration::from_secs(60));
        self
    }

    pub fn session_ttl(&self) -> Duration {
        self.session_ttl
    }

    pub async fn create_user(
        &self,
        username: &str,
        password: &str,
        role: Role,
    ) -> Result<User, AuthError> {
        check_username(username)?;
        check_password(password)?;
        let hash = hash_password(password)?;
        match self
            .store
            .create_user(username, &hash, role.as_str())
            .await?
        {
            Some(row) => row.try_into(),
            None => Err(AuthError::UsernameTaken(username.to_string())),
        }
    }

    fn throttled(&self, key: &str) -> Option<u64> {
        let failures = self.failures.lock().ok()?;
        let f = failures.get(key)?;
        let elapsed = f.window_start.elapsed();
        (f.count >= MAX_FAILURES && elapsed < WINDOW).then(|| (WINDOW - elapsed).as_secs().max(1))
    }

    fn record_failure(&self, key: &str) {
        let Ok(mut failures) = self.failures.lock() else {
            return;
        };
        if failures.len() >= MAX_TRACKED {
            failures.retain(|_, f| f.window_start.elapsed() < WINDOW);
            if failures.len() >= MAX_TRACKED {
                failures.clear();
            }
        }
        let entry = failures.entry(key.to_string()).or_insert(Failures {
            count: 0,
            window_start: Instant::now(),
        });
        if entry.window_start.elapsed() >= WINDOW {
            *entry = Failures {
                count: 0,
                window_start: Instant::now(),
            };
        }
        entry.count += 1;
    }

    /// Checks a username and password; on success opens a session.
    pub async fn login(&self, username: &str, password: &str) -> Result<NewSession, AuthError> {
        let key = username.to_ascii_lowercase();
        if let Some(retry_after_secs) = self.throttled(&key) {
            return Err(AuthError::Throttled { retry_after_secs });
        }
        let row = self.store.user_by_name(username).await?;
        let phc = row
            .as_ref()
            .map_or_else(|| self.dummy_hash.to_string(), |r| r.password_hash.clone());
        let password = password.to_string();
        let ok = tokio::task::spawn_blocking(move || verify_password(&password, &phc))
            .await
            .map_err(|_| AuthError::Hashing)?;
        match (row, ok) {
            (Some(row), true) => {
                if let Ok(mut failures) = self.failures.lock() {
                    failures.remove(&key);
                }
                self.open_session(row.try_into()?).await
            }
            _ => {
                self.record_failure(&key);
                Err(AuthError::BadCredentials)
            }
        }
    }

    async fn open_session(&self, user: User) -> Result<NewSession, AuthError> {
        let token = random_token("gvs_")?;
        let csrf_token = random_token("")?;
        let ttl_ms = i64::try_from(self.session_ttl.as_millis()).unwrap_or(i64::MAX);
        let expires_at_ms = now_ms().saturating_add(ttl_ms);
        self.store
            .insert_session(&token_digest(&token), user.id, &csrf_token, expires_at_ms)
            .await?;
        Ok(NewSession {
            token,
            csrf_token,
            user,
            expires_at_ms,
        })
    }

    /// The user and CSRF token of a live session.
    pub async fn session(&self, token: &str) -> Result<Option<(User, String)>, AuthError> {
        match self.store.session(&token_digest(token)).await? {
            Some((row, csrf)) => Ok(Some((row.try_into()?, csrf))),
            None => Ok(None),
        }
    }

    pub async fn logout(&self, token: &str) -> Result<(), AuthError> {
        Ok(self.store.delete_session(&token_digest(token)).await?)
    }

    /// Changes a password after checking the current one; ends every session of the user.
    pub async fn change_password(
        &self,
        user: &User,
        current: &str,
        new: &str,
    ) -> Result<(), AuthError> {
        check_password(new)?;
        let row = self
            .store
            .user_by_id(user.id)
            .await?
            .ok_or(AuthError::BadCredentials)?;
        let (current, phc) = (current.to_string(), row.password_hash);
        let ok = tokio::task::spawn_blocking(move || verify_password(&current, &phc))
            .await
            .map_err(|_| AuthError::Hashing)?;
        if !ok {
            return Err(AuthError::BadCredentials);
        }
        self.store
            .set_user_password(user.id, &hash_password(new)?)
            .await?;
        Ok(())
    }

    /// Creates an API token for `user`; the token is returned once and stored only as a digest.
    pub async fn create_token(&self, user: &User, name: &str) -> Result<String, AuthError> {
        let token = random_token("gvt_")?;
        self.store
            .insert_api_token(&token_digest(&token), name, user.id)
            .await?;
        Ok(token)
    }

    pub async fn token_user(&self, token: &str) -> Result<Option<User>, AuthError> {
        match self.store.api_token_user(&token_digest(token)).await? {
            Some(row) => Ok(Some(row.try_into()?)),
            None => Ok(None),
        }
    }

    pub async fn user_by_name(&self, username: &str) -> Result<Option<User>, AuthError> {
        match self.store.user_by_name(username).await? {
            Some(row) => Ok(Some(row.try_into()?)),
            None => Ok(None),
        }
    }

    /// The API tokens of user `user_id` (their records, never the tokens).
    pub async fn api_tokens(
        &self,
        user_id: i64,
    ) -> Result<Vec<crate::store::ApiTokenRow>, AuthError> {
        Ok(self.store.list_api_tokens(user_id).await?)
    }

    /// Deletes token `id` of user `user_id`; false when the user has no such token.
    pub async fn delete_token(&self, id: i64, user_id: i64) -> Result<bool, AuthError> {
        Ok(self.store.delete_api_token(id, user_id).await?)
    }

    /// Gives user `id` the role `role`; false when there is no such user.
    pub async fn set_role(&self, id: i64, role: Role) -> Result<bool, AuthError> {
        Ok(self.store.set_user_role(id, role.as_str()).await?)
    }

    pub async fn list_users(&self) -> Result<Vec<User>, AuthError> {
        self.store
            .list_users()
            .await?
            .into_iter()
            .map(User::try_from)
            .collect()
    }

    /// When no user exists yet, a fresh one-time setup token (replacing any earlier one).
    pub async fn setup_token_if_needed(&self) -> Result<Option<String>, AuthError> {
        if self.store.count_users().await? > 0 {
            return Ok(None);
        }
        let token = random_token("gsetup_")?;
        self.store
            .replace_setup_token(&token_digest(&token))
            .await?;
        Ok(Some(token))
    }

    /// Creates the first admin with the one-time setup token.
    pub async fn setup(
        &self,
        token: &str,
        username: &str,
        password: &str,
    ) -> Result<User, AuthError> {
        check_username(username)?;
        check_password(password)?;
        let hash = hash_password(password)?;
        match self
            .store
            .setup_first_admin(&token_digest(token), username, &hash, Role::Admin.as_str())
            .await?
        {
            Some(row) => row.try_into(),
            None => Err(AuthError::SetupUnavailable),
        }
    }
}
