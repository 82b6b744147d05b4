//! Storage: every SQL statement of the node lives in this module.
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

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::time::Duration;

use sqlx::AssertSqlSafe;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

pub use migrations::MIGRATIONS;
pub use schema::{SchemaColumn, SchemaDescription, SchemaIndex};

use crate::crypto::{PublicKey, Signature};
use crate::tx::rpc::TransactionTree;
use crate::tx::{Hash, Kind, Payload, ProgramMetadata, ResourceRequest, Transaction};

/// Expands `$body` once per backend with `$pool` bound to that backend's pool.
macro_rules! dispatch {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.backend {
            Backend::Postgres($pool) => $body,
            Backend::Sqlite($pool) => $body,
        }
    };
}

mod auth;

pub use auth::{ApiTokenRow, GpuAssignment, UserRow};

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
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

type Result<T, E = StoreError> = std::result::Result<T, E>;

/// How a transaction reached this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// JSON-RPC.
    Rpc,
    /// The REST API.
    Rest,
    /// The web console.
    Console,
    /// A peer over P2P.
    P2p,
    /// Produced by this node (Proof, Verification).
    Node,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Rpc => "rpc",
            Source::Rest => "rest",
            Source::Console => "console",
            Source::P2p => "p2p",
            Source::Node => "node",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            Source::Rpc,
            Source::Rest,
            Source::Console,
            Source::P2p,
            Source::Node,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// A transaction as stored, with what the node knows about its arrival.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredTransaction {
    pub tx: Transaction,
    /// Insertion order; the keyset for pagination.
    pub seq: i64,
    pub source: Source,
    /// Milliseconds since the Unix epoch.
    pub received_at_ms: i64,
}

/// The result of storing a transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inserted {
    /// Stored now, at this sequence number.
    New(i64),
    /// Already stored; nothing changed.
    AlreadyPresent,
}

/// A deployed program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Program {
    pub hash: Hash,
    pub name: String,
    pub image_file_name: String,
    pub image_file_url: String,
    pub image_file_checksum: String,
    /// What the Deploy asked for; `None` means the default ([`ResourceRequest::default`]).
    pub resource_requirements: Option<ResourceRequest>,
    /// `prover` or `verifier`, as first deployed.
    pub role: String,
    pub deploy_tx: Hash,
    pub created_at_ms: i64,
}

/// An output file of a Proof or Verification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputFile {
    pub tx: Hash,
    pub index: i64,
    pub vm_path: String,
    pub checksum: Hash,
    pub tx_seq: i64,
    pub kind: Kind,
    /// The producer's download base, as signed into the transaction (`TxFile.url`); empty for
    /// files stored before it was recorded.
    pub producer_url: String,
}

impl OutputFile {
    /// The file's name without directories.
    pub fn basename(&self) -> &str {
        self.vm_path.rsplit('/').next().unwrap_or(&self.vm_path)
    }

    /// The path on the download server and under the data directory.
    pub fn relative_path(&self) -> String {
        format!(
            "txfiles/{}/{}/{}",
            self.tx.to_hex(),
            self.checksum.to_hex(),
            self.basename()
        )
    }
}

/// Filters for listing transactions; all present filters must match.
#[derive(Clone, Debug, Default)]
pub struct TxFilter {
    pub kind: Option<Kind>,
    pub author: Option<PublicKey>,
    /// Lowercase hex prefix of the hash (at most 64 characters).
    pub hash_prefix: Option<String>,
    pub parent: Option<Hash>,
    /// Only transactions with a task in this phase.
    pub phase: Option<Phase>,
    /// Received at or after (ms since the epoch).
    pub since_ms: Option<i64>,
    /// Received before (ms since the epoch).
    pub until_ms: Option<i64>,
}

/// One page of a newest-first listing. `next` is the keyset to pass as `before` for the next page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<i64>,
}

/// Execution phases of a task. Terminal phases end a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    Queued,
    WaitingForProgram,
    Downloading,
    WaitingForResources,
    Booting,
    Running,
    Submitting,
    Succeeded,
    Failed,
    Cancelled,
    TimedOut,
}

impl Phase {
    pub const ALL: [Phase; 11] = [
        Phase::Queued,
        Phase::WaitingForProgram,
        Phase::Downloading,
        Phase::WaitingForResources,
        Phase::Booting,
        Phase::Running,
        Phase::Submitting,
        Phase::Succeeded,
        Phase::Failed,
        Phase::Cancelled,
        Phase::TimedOut,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Queued => "queued",
            Phase::WaitingForProgram => "waiting_for_program",
            Phase::Downloading => "downloading",
            Phase::WaitingForResources => "waiting_for_resources",
            Phase::Booting => "booting",
            Phase::Running => "running",
            Phase::Submitting => "submitting",
            Phase::Succeeded => "succeeded",
            Phase::Failed => "failed",
            Phase::Cancelled => "cancelled",
            Phase::TimedOut => "timed_out",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == text)
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Phase::Succeeded | Phase::Failed | Phase::Cancelled | Phase::TimedOut
        )
    }
}

/// A unit of execution: one workflow step of one transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Task {
    pub id: i64,
    /// The Run (for a proving step) or the Proof (for a verifying step) being executed.
    pub tx: Hash,
    pub step_index: i64,
    pub program: Hash,
    /// `proof` or `verification`.
    pub kind: String,
    pub phase: Phase,
    pub attempt: i64,
    pub error: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
}

/// One entry of a task's timeline: the phase it entered, when, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PhaseChange {
    pub task_id: i64,
    pub phase: Phase,
    /// The reason for a failure or retry, or what the task waits for.
    pub note: Option<String>,
    pub at_ms: i64,
}

/// What to create a task from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewTask {
    pub tx: Hash,
    pub step_index: i64,
    pub program: Hash,
    pub kind: String,
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
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
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(10),
        }
    }
}

/// The node's database.
#[derive(Clone, Debug)]
pub struct Store {
    backend: Backend,
    /// SQLite allows one writer at a time: writers queue here instead of spinning on
    /// `SQLITE_BUSY` inside the database (which costs tail latency under concurrency).
    write_gate: std::sync::Arc<tokio::sync::Mutex<()>>,
}

/// A `transactions` row in [`TX_COLUMNS`] order.
type TxTuple = (i64, String, String, String, String, String, String, i64);

const TX_COLUMNS: &str = "seq, hash, author, nonce, signature, payload, source, received_at";

fn decode_tx(t: TxTuple) -> Result<StoredTransaction> {
    let (seq, hash_hex, author, nonce, signature, payload, source, received_at) = t;
    let corrupt = |what: &str| StoreError::Corrupt(format!("transaction {hash_hex}: {what}"));
    let hash = Hash::from_hex(&hash_hex).ok_or_else(|| corrupt("bad hash"))?;
    let author = PublicKey::from_hex(&author).map_err(|_| corrupt("bad author"))?;
    let nonce = nonce.parse().map_err(|_| corrupt("bad nonce"))?;
    let sig_bytes: [u8; 64] = hex::decode(&signature)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| corrupt("bad signature"))?;
    let payload: Payload =
        serde_json::from_str(&payload).map_err(|e| corrupt(&format!("bad payload: {e}")))?;
    let source = Source::parse(&source).ok_or_else(|| corrupt("bad source"))?;
    Ok(StoredTransaction {
        tx: Transaction {
            author,
            hash,
            payload,
            nonce,
            signature: Signature::from_bytes(&sig_bytes),
            state: crate::tx::Marker,
        },
        seq,
        source,
        received_at_ms: received_at,
    })
}

/// A `programs` row in [`PROGRAM_COLUMNS`] order.
type ProgramTuple = (
    String,
    String,
    String,
    String,
    String,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    String,
    String,
    i64,
);

const PROGRAM_COLUMNS: &str = "hash, name, image_file_name, image_file_url, image_file_checksum, mem_mib, cpus, gpus, role, deploy_tx, created_at";

fn decode_program(t: ProgramTuple) -> Result<Program> {
    let (
        hash,
        name,
        image_file_name,
        image_file_url,
        image_file_checksum,
        mem_mib,
        cpus,
        gpus,
        role,
        deploy_tx,
        created_at,
    ) = t;
    let corrupt = |what: &str| StoreError::Corrupt(format!("program {hash}: {what}"));
    let resource_requirements = match (mem_mib, cpus, gpus) {
        (Some(mem), Some(cpus), Some(gpus)) => Some(ResourceRequest {
            mem: u64::try_from(mem).map_err(|_| corrupt("negative mem"))?,
            cpus: u64::try_from(cpus).map_err(|_| corrupt("negative cpus"))?,
            gpus: u64::try_from(gpus).map_err(|_| corrupt("negative gpus"))?,
        }),
        _ => None,
    };
    Ok(Program {
        hash: Hash::from_hex(&hash).ok_or_else(|| corrupt("bad hash"))?,
        deploy_tx: Hash::from_hex(&deploy_tx).ok_or_else(|| corrupt("bad deploy tx"))?,
        name,
        image_file_name,
        image_file_url,
        image_file_checksum,
        resource_requirements,
        role,
        created_at_ms: created_at,
    })
}

/// A `tasks` row in [`TASK_COLUMNS`] order.
type TaskTuple = (
    i64,
    String,
    i64,
    String,
    String,
    String,
    i64,
    Option<String>,
    i64,
    i64,
    Option<i64>,
    Option<i64>,
);

const TASK_COLUMNS: &str = "id, tx, step_index, program, kind, phase, attempt, error, created_at, updated_at, started_at, finished_at";

fn decode_task(t: TaskTuple) -> Result<Task> {
    let (
        id,
        tx,
        step_index,
        program,
        kind,
        phase,
        attempt,
        error,
        created_at,
        updated_at,
        started_at,
        finished_at,
    ) = t;
    let corrupt = |what: &str| StoreError::Corrupt(format!("task {id}: {what}"));
    Ok(Task {
        id,
        tx: Hash::from_hex(&tx).ok_or_else(|| corrupt("bad tx"))?,
        step_index,
        program: Hash::from_hex(&program).ok_or_else(|| corrupt("bad program"))?,
        kind,
        phase: Phase::parse(&phase).ok_or_else(|| corrupt("bad phase"))?,
        attempt,
        error,
        created_at_ms: created_at,
        updated_at_ms: updated_at,
        started_at_ms: started_at,
        finished_at_ms: finished_at,
    })
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

/// `INSERT INTO table (columns) VALUES ($1, …), (…) …` for `rows` rows, plus `tail`.
fn multi_row_insert(table: &str, columns: &[&str], rows: usize, tail: &str) -> String {
    let width = columns.len();
    let mut sql = format!("INSERT INTO {table} ({}) VALUES ", columns.join(", "));
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for c in 0..width {
            if c > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("${}", r * width + c + 1));
        }
        sql.push(')');
    }
    sql.push_str(tail);
    sql
}

/// Rows per multi-row statement: far below both databases' bind-parameter limits.
const ROWS_PER_STATEMENT: usize = 200;

const TX_INSERT_COLUMNS: &[&str] = &[
    "hash",
    "author",
    "kind",
    "nonce",
    "signature",
    "payload",
    "parent",
    "source",
    "received_at",
];
const PROGRAM_INSERT_COLUMNS: &[&str] = &[
    "hash",
    "name",
    "image_file_name",
    "image_file_url",
    "image_file_checksum",
    "mem_mib",
    "cpus",
    "gpus",
    "role",
    "deploy_tx",
    "created_at",
];
const STEP_INSERT_COLUMNS: &[&str] = &["run_tx", "step_index", "program"];
const FILE_INSERT_COLUMNS: &[&str] = &["tx", "file_index", "vm_path", "checksum", "url"];

/// The rows that storing `tx` writes besides its own: programs, workflow steps, output files.
struct DerivedRows {
    programs: Vec<Vec<Bind>>,
    steps: Vec<Vec<Bind>>,
    files: Vec<Vec<Bind>>,
}

impl DerivedRows {
    fn new() -> Self {
        Self {
            programs: Vec::new(),
            steps: Vec::new(),
            files: Vec::new(),
        }
    }

    fn add(&mut self, tx: &Transaction, hash: &str, now: i64) {
        match &tx.payload {
            Payload::Deploy {
                prover, verifier, ..
            } => {
                for (role, meta) in [("prover", prover), ("verifier", verifier)] {
                    let (mem, cpus, gpus) = resources_columns(meta);
                    self.programs.push(vec![
                        Bind::Text(meta.hash.to_hex()),
                        Bind::Text(meta.name.clone()),
                        Bind::Text(meta.image_file_name.clone()),
                        Bind::Text(meta.image_file_url.clone()),
                        Bind::Text(meta.image_file_checksum.clone()),
                        Bind::OptInt(mem),
                        Bind::OptInt(cpus),
                        Bind::OptInt(gpus),
                        Bind::Text(role.to_string()),
                        Bind::Text(hash.to_string()),
                        Bind::Int(now),
                    ]);
                }
            }
            Payload::Run { workflow } => {
                for (i, step) in workflow.steps.iter().enumerate() {
                    self.steps.push(vec![
                        Bind::Text(hash.to_string()),
                        Bind::Int(i as i64),
                        Bind::Text(step.program.to_hex()),
                    ]);
                }
            }
            Payload::Proof { files, .. } | Payload::Verification { files, .. } => {
                for (i, file) in files.iter().enumerate() {
                    self.files.push(vec![
                        Bind::Text(hash.to_string()),
                        Bind::Int(i as i64),
                        Bind::Text(file.name.clone()),
                        Bind::Text(file.checksum.to_hex()),
                        Bind::Text(file.url.clone()),
                    ]);
                }
            }
            _ => {}
        }
    }
}

fn tx_insert_row(tx: &Transaction, source: Source, now: i64) -> Result<Vec<Bind>> {
    let payload = serde_json::to_string(&tx.payload)
        .map_err(|e| StoreError::Corrupt(format!("cannot encode payload: {e}")))?;
    Ok(vec![
        Bind::Text(tx.hash.to_hex()),
        Bind::Text(tx.author.to_hex()),
        Bind::Text(tx.kind().as_str().to_string()),
        Bind::Text(tx.nonce.to_string()),
        Bind::Text(tx.signature.to_hex()),
        Bind::Text(payload),
        Bind::OptText(tx.payload.parent().map(|p| p.to_hex())),
        Bind::Text(source.as_str().to_string()),
        Bind::Int(now),
    ])
}

fn resources_columns(meta: &ProgramMetadata) -> (Option<i64>, Option<i64>, Option<i64>) {
    match meta.resource_requirements {
        // Validation bounds these far below i64::MAX.
        Some(r) => (
            Some(i64::try_from(r.mem).unwrap_or(i64::MAX)),
            Some(i64::try_from(r.cpus).unwrap_or(i64::MAX)),
            Some(i64::try_from(r.gpus).unwrap_or(i64::MAX)),
        ),
        None => (None, None, None),
    }
}

impl Store {
    /// Connects to the database named by `url`: `postgres://…`/`postgresql://…` or `sqlite:…`.
    /// A SQLite file is created if missing.
    pub async fn connect(url: &str, options: &PoolOptions) -> Result<Self> {
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = PgPoolOptions::new()
                .max_connections(options.max_connections)
                .acquire_timeout(options.acquire_timeout)
                .connect(url)
                .await?;
            Backend::Postgres(pool)
        } else if url.starts_with("sqlite:") {
            let in_memory = url.contains(":memory:") || url.contains("mode=memory");
            let connect = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(if in_memory {
                    SqliteJournalMode::Memory
                } else {
                    SqliteJournalMode::Wal
                })
                .synchronous(SqliteSynchronous::Full)
                .foreign_keys(true)
                .busy_timeout(options.acquire_timeout);
            let mut pool = SqlitePoolOptions::new()
                .max_connections(if in_memory {
                    1
                } else {
                    options.max_connections.clamp(1, 8)
                })
                .acquire_timeout(options.acquire_timeout);
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
            write_gate: std::sync::Arc::default(),
        })
    }

    pub fn backend(&self) -> BackendKind {
        match self.backend {
            Backend::Postgres(_) => BackendKind::Postgres,
            Backend::Sqlite(_) => BackendKind::Sqlite,
        }
    }

    /// Creates or upgrades the schema. Safe to run repeatedly and from several processes.
    pub async fn migrate(&self) -> Result<()> {
        dispatch!(self, pool => migrations::migrator(self.backend()).run(pool).await?);
        Ok(())
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
        dispatch!(self, pool => pool.close().await);
    }

    /// A normalised description of the schema, for comparing the two backends.
    pub async fn describe_schema(&self) -> Result<SchemaDescription> {
        match &self.backend {
            Backend::Postgres(pool) => schema::describe_postgres(pool).await,
            Backend::Sqlite(pool) => schema::describe_sqlite(pool).await,
        }
    }

    /// Stores a transaction and what derives from it (programs of a Deploy, steps of a Run,
    /// files of a Proof/Verification) atomically. A transaction already stored is left as it is.
    pub async fn insert_transaction(&self, tx: &Transaction, source: Source) -> Result<Inserted> {
        let mut out = self
            .insert_transactions(std::slice::from_ref(tx), source)
            .await?;
        out.pop()
            .ok_or_else(|| StoreError::Corrupt("insert returned no outcome".into()))
    }

    /// Stores many transactions in one database transaction (one commit, one sync), with
    /// multi-row statements. Each outcome says whether that transaction was new; a transaction
    /// already stored, or repeated within `txs`, is left as it is.
    pub async fn insert_transactions(
        &self,
        txs: &[Transaction],
        source: Source,
    ) -> Result<Vec<Inserted>> {
        let now = now_ms();
        let rows = txs
            .iter()
            .map(|tx| tx_insert_row(tx, source, now))
            .collect::<Result<Vec<_>>>()?;
        let mut new_seq: HashMap<String, i64> = HashMap::new();
        let _gate = match self.backend {
            Backend::Sqlite(_) => Some(self.write_gate.lock().await),
            Backend::Postgres(_) => None,
        };
        dispatch!(self, pool => {
            let mut t = pool.begin().await?;
            for chunk in rows.chunks(ROWS_PER_STATEMENT) {
                let sql = multi_row_insert(
                    "transactions",
                    TX_INSERT_COLUMNS,
                    chunk.len(),
                    " ON CONFLICT (hash) DO NOTHING RETURNING hash, seq",
                );
                let q = bind_all!(sqlx::query_as::<_, (String, i64)>(AssertSqlSafe(sql)), chunk.iter().flatten().cloned());
                new_seq.extend(q.fetch_all(&mut *t).await?);
            }
            let mut derived = DerivedRows::new();
            let mut seen = HashSet::new();
            for tx in txs {
                let hash = tx.hash.to_hex();
                if new_seq.contains_key(&hash) && seen.insert(hash.clone()) {
                    derived.add(tx, &hash, now);
                }
            }
            for (table, columns, rows, tail) in [
                ("programs", PROGRAM_INSERT_COLUMNS, &derived.programs, " ON CONFLICT (hash) DO NOTHING"),
                ("workflow_steps", STEP_INSERT_COLUMNS, &derived.steps, ""),
                ("tx_files", FILE_INSERT_COLUMNS, &derived.files, ""),
            ] {
                for chunk in rows.chunks(ROWS_PER_STATEMENT) {
                    let sql = multi_row_insert(table, columns, chunk.len(), tail);
                    let q = bind_all!(sqlx::query(AssertSqlSafe(sql)), chunk.iter().flatten().cloned());
                    q.execute(&mut *t).await?;
                }
            }
            t.commit().await?;
        });
        // The first occurrence of a new hash is the one that was stored.
        let mut reported = HashSet::new();
        Ok(txs
            .iter()
            .map(|tx| {
                let hash = tx.hash.to_hex();
                match new_seq.get(&hash) {
                    Some(seq) if reported.insert(hash) => Inserted::New(*seq),
                    _ => Inserted::AlreadyPresent,
                }
            })
            .collect())
    }

    pub async fn get_transaction(&self, hash: &Hash) -> Result<Option<StoredTransaction>> {
        let sql = format!("SELECT {TX_COLUMNS} FROM transactions WHERE hash = $1");
        let row: Option<TxTuple> = dispatch!(self, pool => {
            sqlx::query_as(AssertSqlSafe(sql)).bind(hash.to_hex()).fetch_optional(pool).await?
        });
        row.map(decode_tx).transpose()
    }

    /// The kind of a stored transaction, if stored.
    pub async fn transaction_kind(&self, hash: &Hash) -> Result<Option<Kind>> {
        let kind: Option<String> = dispatch!(self, pool => {
            sqlx::query_scalar("SELECT kind FROM transactions WHERE hash = $1")
                .bind(hash.to_hex())
                .fetch_optional(pool)
                .await?
        });
        kind.map(|k| Kind::parse(&k).ok_or_else(|| StoreError::Corrupt(format!("bad kind {k}"))))
            .transpose()
    }

    pub async fn count_transactions(&self) -> Result<i64> {
        let n: i64 = dispatch!(self, pool => {
            sqlx::query_scalar("SELECT COUNT(*) FROM transactions").fetch_one(pool).await?
        });
        Ok(n)
    }

    /// Newest first. `before` is the keyset from the previous page's `next`.
    pub async fn list_transactions(
        &self,
        filter: &TxFilter,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Page<StoredTransaction>> {
        let mut sql = format!("SELECT {TX_COLUMNS} FROM transactions WHERE 1 = 1");
        let mut binds = Vec::new();
        let mut push = |sql: &mut String, cond: &str, bind: Bind| {
            binds.push(bind);
            sql.push_str(&cond.replace("$?", &format!("${}", binds.len())));
        };
        if let Some(kind) = filter.kind {
            push(&mut sql, " AND kind = $?", Bind::Text(kind.as_str().into()));
        }
        if let Some(author) = &filter.author {
            push(&mut sql, " AND author = $?", Bind::Text(author.to_hex()));
        }
        if let Some(parent) = &filter.parent {
            push(&mut sql, " AND parent = $?", Bind::Text(parent.to_hex()));
        }
        if let Some(prefix) = &filter.hash_prefix {
            // A range on the index instead of LIKE, which needs special operator classes.
            let low = prefix.to_ascii_lowercase();
            if !low.is_empty() {
                let high = format!("{low}g");
                push(&mut sql, " AND hash >= $?", Bind::Text(low));
                push(&mut sql, " AND hash < $?", Bind::Text(high));
            }
        }
        if let Some(phase) = filter.phase {
            push(
                &mut sql,
                " AND hash IN (SELECT tx FROM tasks WHERE phase = $?)",
                Bind::Text(phase.as_str().into()),
            );
        }
        if let Some(since) = filter.since_ms {
            push(&mut sql, " AND received_at >= $?", Bind::Int(since));
        }
        if let Some(until) = filter.until_ms {
            push(&mut sql, " AND received_at < $?", Bind::Int(until));
        }
        if let Some(before) = before {
            push(&mut sql, " AND seq < $?", Bind::Int(before));
        }
        let limit = limit.clamp(1, 1000);
        push(
            &mut sql,
            " ORDER BY seq DESC LIMIT $?",
            Bind::Int(i64::from(limit) + 1),
        );
        let rows: Vec<TxTuple> = dispatch!(self, pool => {
            let q = bind_all!(sqlx::query_as(AssertSqlSafe(sql)), binds);
            q.fetch_all(pool).await?
        });
        let mut items = rows
            .into_iter()
            .map(decode_tx)
            .collect::<Result<Vec<_>>>()?;
        let next = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items.last().map(|t| t.seq)
        } else {
            None
        };
        Ok(Page { items, next })
    }

    /// The Run → Proof → Verification tree containing `hash`, or `None` when `hash` is not a
    /// stored Run, Proof or Verification. Works at every stage: a Run without proofs is a root
    /// without children.
    pub async fn transaction_tree(&self, hash: &Hash) -> Result<Option<TransactionTree>> {
        // Walk up to the root (at most Verification → Proof → Run), one row per level. A parent
        // this node has not stored ends the walk: the tree roots at the last stored ancestor.
        let mut root = None;
        let mut next = Some(*hash);
        // Bounded: a hash covers its parent, so only a corrupted table could hold a cycle.
        for _ in 0..3 {
            let Some(current) = next.take() else { break };
            let row: Option<(String, Option<String>)> = dispatch!(self, pool => {
                sqlx::query_as("SELECT kind, parent FROM transactions WHERE hash = $1")
                    .bind(current.to_hex())
                    .fetch_optional(pool)
                    .await?
            });
            let Some((kind, parent)) = row else { break };
            match (
                Kind::parse(&kind),
                parent.as_deref().and_then(Hash::from_hex),
            ) {
                (Some(Kind::Run), _) => root = Some(current),
                (Some(Kind::Proof | Kind::Verification), Some(parent)) => {
                    root = Some(current);
                    next = Some(parent);
                }
                _ => return Ok(None),
            }
        }
        let Some(root) = root else {
            return Ok(None);
        };
        let mut rows: Vec<(String, String, i64)> = dispatch!(self, pool => {
            sqlx::query_as(
                "SELECT hash, parent, seq FROM transactions WHERE parent = $1 AND kind = 'proof' \
                 UNION ALL \
                 SELECT v.hash, v.parent, v.seq FROM transactions v \
                 JOIN transactions p ON v.parent = p.hash \
                 WHERE p.parent = $1 AND p.kind = 'proof' AND v.kind = 'verification'",
            )
            .bind(root.to_hex())
            .fetch_all(pool)
            .await?
        });
        // Children in arrival order.
        rows.sort_by_key(|(_, _, seq)| *seq);
        let mut edges = Vec::with_capacity(rows.len());
        for (h, p, _) in rows {
            match (Hash::from_hex(&h), Hash::from_hex(&p)) {
                (Some(h), Some(p)) => edges.push((h, p)),
                _ => return Err(StoreError::Corrupt(format!("bad tree edge {h} -> {p}"))),
            }
        }
        Ok(Some(TransactionTree::build(root, &edges)))
    }

    /// Output files of Proofs and Verifications, newest transaction first, then in file order.
    /// `after` is the keyset `(transaction seq, file index)` of the last file of the previous
    /// page; the result's second item is the keyset for the next page.
    pub async fn list_output_files(
        &self,
        after: Option<(i64, i64)>,
        limit: u32,
    ) -> Result<(Vec<OutputFile>, Option<(i64, i64)>)> {
        let limit = limit.clamp(1, 1000);
        let (seq, index) = after.unwrap_or((i64::MAX, -1));
        let rows: Vec<(String, i64, String, String, i64, String, String)> = dispatch!(self, pool => {
            sqlx::query_as(
                "SELECT f.tx, f.file_index, f.vm_path, f.checksum, t.seq, t.kind, f.url FROM tx_files f \
                 JOIN transactions t ON t.hash = f.tx \
                 WHERE t.seq < $1 OR (t.seq = $1 AND f.file_index > $2) \
                 ORDER BY t.seq DESC, f.file_index LIMIT $3",
            )
            .bind(seq)
            .bind(index)
            .bind(i64::from(limit) + 1)
            .fetch_all(pool)
            .await?
        });
        let mut items = Vec::with_capacity(rows.len());
        for (tx, index, vm_path, checksum, seq, kind, producer_url) in rows {
            let bad = || StoreError::Corrupt(format!("bad output file row {tx}/{index}"));
            items.push(OutputFile {
                tx: Hash::from_hex(&tx).ok_or_else(bad)?,
                index,
                vm_path,
                checksum: Hash::from_hex(&checksum).ok_or_else(bad)?,
                tx_seq: seq,
                kind: Kind::parse(&kind).ok_or_else(bad)?,
                producer_url,
            });
        }
        let next = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items.last().map(|f| (f.tx_seq, f.index))
        } else {
            None
        };
        Ok((items, next))
    }

    /// One output file.
    pub async fn output_file(&self, tx: &Hash, index: i64) -> Result<Option<OutputFile>> {
        let row: Option<(String, String, i64, String, String)> = dispatch!(self, pool => {
            sqlx::query_as(
                "SELECT f.vm_path, f.checksum, t.seq, t.kind, f.url FROM tx_files f JOIN transactions t ON t.hash = f.tx \
                 WHERE f.tx = $1 AND f.file_index = $2",
            )
            .bind(tx.to_hex())
            .bind(index)
            .fetch_optional(pool)
            .await?
        });
        let Some((vm_path, checksum, tx_seq, kind, producer_url)) = row else {
            return Ok(None);
        };
        let bad = || StoreError::Corrupt(format!("bad output file row {tx}/{index}"));
        Ok(Some(OutputFile {
            tx: *tx,
            index,
            vm_path,
            checksum: Hash::from_hex(&checksum).ok_or_else(bad)?,
            tx_seq,
            kind: Kind::parse(&kind).ok_or_else(bad)?,
            producer_url,
        }))
    }

    pub async fn get_program(&self, hash: &Hash) -> Result<Option<Program>> {
        let row: Option<ProgramTuple> = dispatch!(self, pool => {
            sqlx::query_as(AssertSqlSafe(format!("SELECT {PROGRAM_COLUMNS} FROM programs WHERE hash = $1")))
                .bind(hash.to_hex())
                .fetch_optional(pool)
                .await?
        });
        row.map(decode_program).transpose()
    }

    /// Programs by name then hash.
    pub async fn list_programs(&self, limit: u32) -> Result<Vec<Program>> {
        let rows: Vec<ProgramTuple> = dispatch!(self, pool => {
            sqlx::query_as(AssertSqlSafe(format!("SELECT {PROGRAM_COLUMNS} FROM programs ORDER BY name, hash LIMIT $1")))
                .bind(i64::from(limit.clamp(1, 1000)))
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(decode_program).collect()
    }

    /// Runs whose workflow uses `program`, newest first.
    pub async fn runs_using_program(&self, program: &Hash, limit: u32) -> Result<Vec<Hash>> {
        let rows: Vec<String> = dispatch!(self, pool => {
            sqlx::query_scalar(
                "SELECT s.run_tx FROM workflow_steps s JOIN transactions t ON t.hash = s.run_tx \
                 WHERE s.program = $1 ORDER BY t.seq DESC LIMIT $2",
            )
            .bind(program.to_hex())
            .bind(i64::from(limit.clamp(1, 1000)))
            .fetch_all(pool)
            .await?
        });
        rows.iter()
            .map(|h| {
                Hash::from_hex(h).ok_or_else(|| StoreError::Corrupt(format!("bad run hash {h}")))
            })
            .collect()
    }

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

    /// Creates a task in phase `queued`, or returns the existing one for the same step.
    pub async fn create_task(&self, new: &NewTask) -> Result<Task> {
        let now = now_ms();
        let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE tx = $1 AND step_index = $2");
        let row: TaskTuple = dispatch!(self, pool => {
            let mut t = pool.begin().await?;
            let created: Option<(i64,)> = sqlx::query_as(
                "INSERT INTO tasks (tx, step_index, program, kind, phase, attempt, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, 0, $6, $6) ON CONFLICT (tx, step_index) DO NOTHING RETURNING id",
            )
            .bind(new.tx.to_hex())
            .bind(new.step_index)
            .bind(new.program.to_hex())
            .bind(&new.kind)
            .bind(Phase::Queued.as_str())
            .bind(now)
            .fetch_optional(&mut *t)
            .await?;
            if let Some((id,)) = created {
                sqlx::query("INSERT INTO task_phases (task_id, phase, note, at) VALUES ($1, $2, NULL, $3)")
                    .bind(id)
                    .bind(Phase::Queued.as_str())
                    .bind(now)
                    .execute(&mut *t)
                    .await?;
            }
            let row = sqlx::query_as(AssertSqlSafe(sql))
                .bind(new.tx.to_hex())
                .bind(new.step_index)
                .fetch_one(&mut *t)
                .await?;
            t.commit().await?;
            row
        });
        decode_task(row)
    }

    /// Moves a task to `phase`, recording the time it started running, when it ended, and the
    /// error (or what it waits for), and adds the change to the task's timeline in the same
    /// database transaction. Entering `booting` counts a new attempt. A task already in a
    /// terminal phase is not changed; returns whether the task changed.
    pub async fn set_task_phase(&self, id: i64, phase: Phase, error: Option<&str>) -> Result<bool> {
        let now = now_ms();
        let terminal: Vec<&str> = Phase::ALL
            .iter()
            .filter(|p| p.is_terminal())
            .map(|p| p.as_str())
            .collect();
        let done = dispatch!(self, pool => {
            let mut t = pool.begin().await?;
            let done = sqlx::query(
                "UPDATE tasks SET phase = $1, error = $2, updated_at = $3, \
                 attempt = attempt + CASE WHEN $1 = 'booting' THEN 1 ELSE 0 END, \
                 started_at = CASE WHEN $1 = 'running' AND started_at IS NULL THEN $3 ELSE started_at END, \
                 finished_at = CASE WHEN $1 IN ($5, $6, $7, $8) THEN $3 ELSE finished_at END \
                 WHERE id = $4 AND phase NOT IN ($5, $6, $7, $8)",
            )
            .bind(phase.as_str())
            .bind(error)
            .bind(now)
            .bind(id)
            .bind(terminal[0])
            .bind(terminal[1])
            .bind(terminal[2])
            .bind(terminal[3])
            .execute(&mut *t)
            .await?
            .rows_affected();
            if done == 1 {
                sqlx::query("INSERT INTO task_phases (task_id, phase, note, at) VALUES ($1, $2, $3, $4)")
                    .bind(id)
                    .bind(phase.as_str())
                    .bind(error)
                    .bind(now)
                    .execute(&mut *t)
                    .await?;
            }
            t.commit().await?;
            done
        });
        Ok(done == 1)
    }

    /// The timelines of the tasks of `tx`: every phase each entered, oldest first.
    pub async fn task_timelines(&self, tx: &Hash) -> Result<Vec<PhaseChange>> {
        let rows: Vec<(i64, String, Option<String>, i64)> = dispatch!(self, pool => {
            sqlx::query_as(
                "SELECT p.task_id, p.phase, p.note, p.at FROM task_phases p \
                 JOIN tasks k ON k.id = p.task_id WHERE k.tx = $1 ORDER BY p.task_id, p.seq",
            )
            .bind(tx.to_hex())
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(|(task_id, phase, note, at_ms)| {
                Ok(PhaseChange {
                    task_id,
                    phase: Phase::parse(&phase)
                        .ok_or_else(|| StoreError::Corrupt(format!("bad phase {phase}")))?,
                    note,
                    at_ms,
                })
            })
            .collect()
    }

    pub async fn tasks_for_tx(&self, tx: &Hash) -> Result<Vec<Task>> {
        let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE tx = $1 ORDER BY step_index");
        let rows: Vec<TaskTuple> = dispatch!(self, pool => {
            sqlx::query_as(AssertSqlSafe(sql)).bind(tx.to_hex()).fetch_all(pool).await?
        });
        rows.into_iter().map(decode_task).collect()
    }

    /// How many tasks are in each phase (phases without tasks are absent).
    pub async fn count_tasks_by_phase(&self) -> Result<Vec<(Phase, i64)>> {
        let rows: Vec<(String, i64)> = dispatch!(self, pool => {
            sqlx::query_as("SELECT phase, COUNT(*) FROM tasks GROUP BY phase")
                .fetch_all(pool)
                .await?
        });
        rows.into_iter()
            .map(|(p, n)| {
                Phase::parse(&p)
                    .map(|p| (p, n))
                    .ok_or_else(|| StoreError::Corrupt(format!("bad phase {p}")))
            })
            .collect()
    }

    /// Tasks in `phase`, oldest first.
    pub async fn tasks_in_phase(&self, phase: Phase, limit: u32) -> Result<Vec<Task>> {
        let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE phase = $1 ORDER BY id LIMIT $2");
        let rows: Vec<TaskTuple> = dispatch!(self, pool => {
            sqlx::query_as(AssertSqlSafe(sql))
                .bind(phase.as_str())
                .bind(i64::from(limit.clamp(1, 10_000)))
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(decode_task).collect()
    }

    /// The most recently ended tasks that failed or timed out, newest first.
    pub async fn recent_failures(&self, limit: u32) -> Result<Vec<Task>> {
        let sql = format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE phase IN ('failed', 'timed_out') \
             ORDER BY updated_at DESC, id DESC LIMIT $1"
        );
        let rows: Vec<TaskTuple> = dispatch!(self, pool => {
            sqlx::query_as(AssertSqlSafe(sql))
                .bind(i64::from(limit.clamp(1, 1000)))
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(decode_task).collect()
    }

    /// Records what a task produces (`proof` or `verification`), once its program is known.
    pub async fn set_task_kind(&self, id: i64, kind: &str) -> Result<()> {
        dispatch!(self, pool => {
            sqlx::query("UPDATE tasks SET kind = $1 WHERE id = $2")
                .bind(kind)
                .bind(id)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Runs with unfinished business, oldest first: those without tasks yet and those with a
    /// task not in a terminal phase. What the pipeline picks up when it starts. A Run relayed by
    /// a peer is not this node's to execute (the node its client gave it to runs it), so it never
    /// gets tasks here.
    pub async fn runs_to_plan(&self) -> Result<Vec<Hash>> {
        let rows: Vec<(String,)> = dispatch!(self, pool => {
            sqlx::query_as(
                "SELECT hash FROM (\
                   SELECT t.hash, t.seq FROM transactions t WHERE t.kind = 'run' AND t.source <> 'p2p' \
                     AND NOT EXISTS (SELECT 1 FROM tasks k WHERE k.tx = t.hash) \
                   UNION \
                   SELECT t.hash, t.seq FROM transactions t JOIN tasks k ON k.tx = t.hash \
                     WHERE k.phase NOT IN ('succeeded', 'failed', 'cancelled', 'timed_out')\
                 ) AS open_runs ORDER BY seq",
            )
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(|(h,)| {
                Hash::from_hex(&h).ok_or_else(|| StoreError::Corrupt(format!("bad run hash {h}")))
            })
            .collect()
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
