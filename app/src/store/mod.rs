//! Storage: every SQL statement of the node lives in this module, one file per aggregate
//! (`transactions`, `programs`, `files`, `acl`, `tasks`, `gpus`, `auth`); this file holds the
//! connection, the backends and what the queries share.
//!
//! One [`Store`] speaks to PostgreSQL (production) or SQLite (the embedded default), chosen by
//! the database URL's scheme. Queries are runtime-checked (`sqlx::query` + `Row::try_get`) and
//! written in the SQL subset both databases accept (`$N` placeholders, `ON CONFLICT`,
//! `RETURNING`); the [`dispatch!`] macro expands one query body once per backend, so each query is
//! written once. Migrations live in `migrations/postgres` and `migrations/sqlite` with the same
//! logical schema (a test compares them).
//!
//! *Architecture invariant:* a write returns only after its database transaction committed
//! (SQLite runs in WAL mode with `synchronous=FULL`), so anything acknowledged is durable.

mod migrations;
mod schema;

use std::str::FromStr;
use std::time::Duration;

use sqlx::AssertSqlSafe;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

pub use auth::{ApiTokenRow, UserRow};
pub use migrations::MIGRATIONS;
pub use placement::RunEnding;
pub use schema::{SchemaColumn, SchemaDescription, SchemaIndex};
pub use sync::PeerCursor;
pub use transactions::Inserted;

/// Expands `$body` once per backend with `$pool` bound to that backend's pool.
macro_rules! dispatch {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.backend {
            Backend::Postgres($pool) => $body,
            Backend::Sqlite($pool) => $body,
        }
    };
}

#[derive(Clone, Debug)]
enum Backend {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// Which database a [`Store`] speaks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    Postgres,
    Sqlite,
}

impl BackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Postgres => "postgres",
            BackendKind::Sqlite => "sqlite",
        }
    }
}

/// Errors from the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "unsupported database URL {0}: use postgres://user:password@host/db or sqlite:///path/to/file.db"
    )]
    UnsupportedUrl(String),
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed; the schema is unchanged where the failing step began")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(
        "the database's schema is at version {found}, newer than this release knows (up to {known}): \
         a newer gevulot upgraded it; run that release or a later one, or restore a backup taken before the upgrade"
    )]
    NewerSchema { found: i64, known: i64 },
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The database could not be reached for a request that shared its attempt with others.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// The node failed while writing the batch that held this request; nothing of the batch
    /// was stored.
    #[error(
        "the batch holding this request failed inside the node (its log says why); nothing of it was stored"
    )]
    BatchFailed,
}

type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    epoch_ms(std::time::SystemTime::now())
}

/// Milliseconds since the Unix epoch at `t` (0 before it).
pub fn epoch_ms(t: std::time::SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// `url` with any password replaced by `***`, for logs and errors.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            // set_password only fails for URLs that cannot have credentials, which this one has.
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(_) => url.to_string(),
        Err(_) => "<unparseable URL>".to_string(),
    }
}

/// Connection pool settings.
#[derive(Clone, Debug)]
pub struct PoolOptions {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
    /// How long a PostgreSQL connection serves before it is closed and replaced, pooled or
    /// kept by a batch writer: a server process's caches grow with its age.
    pub connection_lifetime: Duration,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(10),
            connection_lifetime: Duration::from_secs(30 * 60),
        }
    }
}

/// The node's database.
#[derive(Clone, Debug)]
pub struct Store {
    backend: Backend,
    /// SQLite allows one writer at a time: writers queue here instead of spinning on
    /// `SQLITE_BUSY` inside the database (which costs tail latency under concurrency). The
    /// writer keeps its connection between batches (see [`SqliteWriter`]).
    write_gate: std::sync::Arc<tokio::sync::Mutex<SqliteWriter>>,
    /// The PostgreSQL connections the batch writers keep (see [`Store::on_kept_postgres`]).
    kept_postgres: std::sync::Arc<[tokio::sync::Mutex<Option<KeptConnection>>; 2]>,
    /// [`PoolOptions::connection_lifetime`], for the kept connections.
    kept_lifetime: Duration,
}

/// The connection SQLite batches are written on, kept from one batch to the next: the pool hands
/// out its connections in turn, and each one's page cache is stale after another connection
/// wrote, so a writer on a fresh connection re-reads the index pages it is about to change.
/// Taken out of the pool (which may open another in its place), dropped after a failed batch
/// (the next one starts on a fresh connection) and when the store closes. An in-memory database
/// is one connection, which is never taken out of its pool.
#[derive(Debug, Default)]
struct SqliteWriter {
    conn: Option<sqlx::SqliteConnection>,
    keep: bool,
}

/// A bind value for queries assembled at run time.
#[derive(Clone, Debug)]
enum Bind {
    Text(String),
    Int(i64),
    OptText(Option<String>),
    OptInt(Option<i64>),
}

/// Binds `$binds` to the query `$q` in order.
macro_rules! bind_all {
    ($q:expr, $binds:expr) => {{
        let mut q = $q;
        for b in $binds {
            q = match b {
                Bind::Text(v) => q.bind(v),
                Bind::Int(v) => q.bind(v),
                Bind::OptText(v) => q.bind(v),
                Bind::OptInt(v) => q.bind(v),
            };
        }
        q
    }};
}

/// `INSERT INTO table (columns) VALUES (?, …), (…) …` for `rows` rows, plus `tail`. Its
/// placeholders are anonymous: SQLite looks a numbered one up by a linear scan per bind, which
/// makes a statement of hundreds of parameters quadratic to prepare and bind; anonymous ones are
/// bound by position. (PostgreSQL stores a batch from arrays instead: see `transactions.rs`.)
fn multi_row_insert(table: &str, columns: &[&str], rows: usize, tail: &str) -> String {
    let row = format!("({})", vec!["?"; columns.len()].join(", "));
    format!(
        "INSERT INTO {table} ({}) VALUES {}{tail}",
        columns.join(", "),
        vec![row.as_str(); rows].join(", ")
    )
}

/// Creates the SQLite database file readable and writable by its owner alone, or makes an
/// existing one so: it holds password and token hashes and webhook secrets, and the data
/// directory around it is searchable by the VM user. SQLite gives its WAL and shared-memory
/// files the database file's mode.
fn owner_only(path: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let io = |e: std::io::Error| {
        let e = std::io::Error::new(e.kind(), format!("{}: {e}", path.display()));
        StoreError::Database(sqlx::Error::Io(e))
    };
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io(e)),
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        let file = std::path::PathBuf::from(file);
        let Ok(meta) = std::fs::metadata(&file) else {
            continue;
        };
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::info!(target: "gevulot", file = %file.display(), "the database file was readable by others: made owner-only");
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode & 0o700))
                .map_err(io)?;
        }
    }
    Ok(())
}

impl Store {
    /// Runs `statements` (each ending in `;`) as one SQLite call that is a whole database
    /// transaction (`BEGIN IMMEDIATE; …; COMMIT`), as the one writer (the write gate, on the kept
    /// connection), and returns the rows they return. If a statement fails, the transaction is rolled back. The call runs
    /// to its end on its own task even when the caller stops waiting: one cut short would leave
    /// its transaction open on the connection.
    async fn sqlite_batch<R>(
        &self,
        pool: &sqlx::SqlitePool,
        statements: &str,
        binds: Vec<Bind>,
    ) -> Result<Vec<R>>
    where
        R: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow> + Send + Unpin + 'static,
    {
        let sql = format!("BEGIN IMMEDIATE;{statements}COMMIT");
        let (pool, gate) = (pool.clone(), self.write_gate.clone());
        tokio::spawn(async move {
            let mut writer = gate.lock().await;
            let write_on = async |conn: &mut sqlx::SqliteConnection| {
                let q = bind_all!(sqlx::query_as::<_, R>(sqlx::AssertSqlSafe(sql)), binds);
                match q.fetch_all(&mut *conn).await {
                    Ok(rows) => Ok(rows),
                    Err(e) => {
                        // A statement failed before `COMMIT`: nothing of the call may stay
                        // (when SQLite rolled back itself, there is nothing to roll back).
                        let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                        Err(StoreError::from(e))
                    }
                }
            };
            if writer.keep {
                let mut conn = match writer.conn.take() {
                    Some(conn) => conn,
                    None => pool.acquire().await?.detach(),
                };
                let written = write_on(&mut conn).await;
                // Kept for the next call only after a call that went through.
                if written.is_ok() {
                    writer.conn = Some(conn);
                }
                written
            } else {
                let mut conn = pool.acquire().await?;
                write_on(&mut conn).await
            }
        })
        .await
        .map_err(|_| StoreError::BatchFailed)?
    }
}

/// Which of the kept PostgreSQL connections a batch writer uses.
#[derive(Clone, Copy, Debug)]
enum KeptPostgres {
    Transactions = 0,
    TaskPhases = 1,
}

/// A PostgreSQL connection a batch writer keeps, when it was taken from the pool, and when it
/// was last used.
#[derive(Debug)]
struct KeptConnection {
    conn: sqlx::PgConnection,
    taken: std::time::Instant,
    used: std::time::Instant,
}

/// A kept PostgreSQL connection idle this long is checked (a round trip) before it is used
/// again: the server may have restarted meanwhile. One used more recently is trusted. (The pool
/// checks each of its connections both as it goes out and as it comes back.)
const IDLE_CHECK: Duration = Duration::from_secs(1);

impl Store {
    /// Runs `f` on the PostgreSQL connection `which` batch writer keeps from one batch to the
    /// next, or, while another call has it, on one from the pool. A pooled connection costs two
    /// round trips more per call (the pool checks it as it goes out and as it comes back) and a
    /// task to hand it back; a batch writer calls in a steady stream, so it keeps one: checked
    /// only after [`IDLE_CHECK`], closed and replaced after the connection lifetime
    /// ([`PoolOptions::connection_lifetime`]), and kept again only after a call that went
    /// through (after a failure, or a call cut short, which drops and so closes it, the next
    /// call starts on a fresh connection).
    async fn on_kept_postgres<R>(
        &self,
        pool: &sqlx::PgPool,
        which: KeptPostgres,
        f: impl AsyncFnOnce(&mut sqlx::PgConnection) -> Result<R>,
    ) -> Result<R> {
        use sqlx::Connection as _;
        let Ok(mut slot) = self.kept_postgres[which as usize].try_lock() else {
            let mut conn = pool.acquire().await?;
            return f(&mut conn).await;
        };
        let mut kept = slot.take();
        if let Some(k) = kept.take_if(|k| k.taken.elapsed() >= self.kept_lifetime) {
            let _ = k.conn.close().await;
        }
        if let Some(k) = &mut kept
            && k.used.elapsed() >= IDLE_CHECK
            && k.conn.ping().await.is_err()
        {
            kept = None;
        }
        let (mut conn, taken) = match kept {
            Some(kept) => (kept.conn, kept.taken),
            None => (pool.acquire().await?.detach(), std::time::Instant::now()),
        };
        let out = f(&mut conn).await?;
        *slot = Some(KeptConnection {
            conn,
            taken,
            used: std::time::Instant::now(),
        });
        Ok(out)
    }
}

/// Rows per multi-row statement: far below SQLite's bind-parameter limit.
const ROWS_PER_STATEMENT: usize = 200;

// The aggregates' queries; declared after the macros they use.
mod acl;
mod audit;
mod auth;
mod files;
mod gpus;
mod node_state;
mod placement;
mod programs;
mod retention;
mod sync;
mod task_changes;
mod tasks;
mod transactions;
mod webhooks;
pub use task_changes::{ChangeCursor, TaskChange};
pub use webhooks::{Attempt, NewDelivery};

impl Store {
    /// Connects to the database named by `url`: `postgres://…`/`postgresql://…` or `sqlite:…`.
    /// A SQLite file is created if missing.
    pub async fn connect(url: &str, options: &PoolOptions) -> Result<Self> {
        let mut writer = SqliteWriter::default();
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = PgPoolOptions::new()
                .max_connections(options.max_connections)
                .acquire_timeout(options.acquire_timeout)
                .max_lifetime(options.connection_lifetime)
                .connect(url)
                .await?;
            Backend::Postgres(pool)
        } else if url.starts_with("sqlite:") {
            let in_memory = url.contains(":memory:") || url.contains("mode=memory");
            writer.keep = !in_memory;
            let connect = SqliteConnectOptions::from_str(url)?;
            if !in_memory {
                owner_only(connect.get_filename())?;
            }
            let connect = connect
                .create_if_missing(true)
                .journal_mode(if in_memory {
                    SqliteJournalMode::Memory
                } else {
                    SqliteJournalMode::Wal
                })
                .synchronous(SqliteSynchronous::Full)
                // A multi-row insert returns up to a statement's rows at once: room for all of
                // them, so the connection's thread never waits for the reader row by row.
                .row_buffer_size(ROWS_PER_STATEMENT)
                .foreign_keys(true)
                .busy_timeout(options.acquire_timeout);
            let mut pool = SqlitePoolOptions::new()
                .max_connections(if in_memory {
                    1
                } else {
                    options.max_connections.clamp(1, 8)
                })
                .acquire_timeout(options.acquire_timeout)
                // A connection to an embedded database cannot be lost: no check as it goes out.
                .test_before_acquire(false);
            if in_memory {
                // Each new in-memory connection would be a new, empty database: keep the one.
                pool = pool
                    .min_connections(1)
                    .idle_timeout(None)
                    .max_lifetime(None);
            }
            Backend::Sqlite(pool.connect_with(connect).await?)
        } else {
            return Err(StoreError::UnsupportedUrl(redact_url(url)));
        };
        Ok(Self {
            backend,
            write_gate: std::sync::Arc::new(tokio::sync::Mutex::new(writer)),
            kept_postgres: std::sync::Arc::default(),
            kept_lifetime: options.connection_lifetime,
        })
    }

    pub fn backend(&self) -> BackendKind {
        match self.backend {
            Backend::Postgres(_) => BackendKind::Postgres,
            Backend::Sqlite(_) => BackendKind::Sqlite,
        }
    }

    /// Creates or upgrades the schema. Safe to run repeatedly and from several processes.
    /// A database that a newer release migrated further than this binary knows is refused
    /// unchanged ([`StoreError::NewerSchema`]).
    pub async fn migrate(&self) -> Result<()> {
        let outcome = dispatch!(self, pool => migrations::migrator(self.backend()).run(pool).await);
        match outcome {
            Ok(()) => Ok(()),
            Err(sqlx::migrate::MigrateError::VersionMissing(found)) => {
                Err(StoreError::NewerSchema {
                    found,
                    known: migrations::latest(),
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<()> {
        dispatch!(self, pool => {
            sqlx::query("SELECT 1").execute(pool).await?;
        });
        Ok(())
    }

    /// The database server's version, e.g. `16.4` (PostgreSQL) or `3.46.0` (SQLite).
    pub async fn server_version(&self) -> Result<String> {
        let version: String = match &self.backend {
            Backend::Postgres(pool) => {
                sqlx::query_scalar("SHOW server_version")
                    .fetch_one(pool)
                    .await?
            }
            Backend::Sqlite(pool) => {
                sqlx::query_scalar("SELECT sqlite_version()")
                    .fetch_one(pool)
                    .await?
            }
        };
        Ok(version)
    }

    pub async fn close(&self) {
        // The kept writer's connection goes back first: the pool waits for all of them.
        self.write_gate.lock().await.conn = None;
        for kept in self.kept_postgres.iter() {
            if let Some(kept) = kept.lock().await.take() {
                let _ = sqlx::Connection::close(kept.conn).await;
            }
        }
        dispatch!(self, pool => pool.close().await);
    }

    /// A normalised description of the schema, for comparing the two backends.
    pub async fn describe_schema(&self) -> Result<SchemaDescription> {
        match &self.backend {
            Backend::Postgres(pool) => schema::describe_postgres(pool).await,
            Backend::Sqlite(pool) => schema::describe_sqlite(pool).await,
        }
    }

    /// Executes raw SQL; for tests and maintenance that need to look underneath.
    #[doc(hidden)]
    pub async fn execute_raw(&self, sql: &str) -> Result<u64> {
        let sql = sql.to_string();
        let n = dispatch!(self, pool => {
            sqlx::raw_sql(AssertSqlSafe(sql)).execute(pool).await?.rows_affected()
        });
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::multi_row_insert;

    #[test]
    fn multi_row_inserts_leave_their_placeholders_anonymous() {
        assert_eq!(
            multi_row_insert("t", &["a", "b"], 2, " ON CONFLICT DO NOTHING"),
            "INSERT INTO t (a, b) VALUES (?, ?), (?, ?) ON CONFLICT DO NOTHING"
        );
        assert_eq!(
            multi_row_insert("t", &["a"], 1, ""),
            "INSERT INTO t (a) VALUES (?)"
        );
    }
}
