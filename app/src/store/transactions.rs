//! Transactions and the rows derived from them (programs of a Deploy, steps of a Run, files of a
//! Proof or Verification), written in one database transaction.

use std::collections::{HashMap, HashSet};

use sqlx::AssertSqlSafe;

use super::{
    Backend, Bind, ROWS_PER_STATEMENT, Result, Store, StoreError, multi_row_insert, now_ms,
};
use crate::crypto::{PublicKey, Signature};
use crate::model::{Page, ProgramRole, Source, StoredTransaction, TxFilter};
use crate::tx::rpc::TransactionTree;
use crate::tx::{Hash, Kind, Payload, ProgramMetadata, Transaction};

/// The result of storing a transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inserted {
    /// Stored now, at this sequence number.
    New(i64),
    /// Already stored; nothing changed.
    AlreadyPresent,
}

/// A `transactions` row in [`TX_COLUMNS`] order.
pub(super) type TxTuple = (i64, String, String, String, String, String, String, i64);

pub(super) const TX_COLUMNS: &str =
    "seq, hash, author, nonce, signature, payload, source, received_at";

pub(super) fn decode_tx(t: TxTuple) -> Result<StoredTransaction> {
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
                for (role, meta) in [
                    (ProgramRole::Prover, prover),
                    (ProgramRole::Verifier, verifier),
                ] {
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
                        Bind::Text(role.as_str().to_string()),
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

/// The rows one batch writes, table by table, in the order they are written: the
/// transactions' own rows first (`ON CONFLICT DO NOTHING`, returning the hash and sequence
/// number of each new one), then the rows derived from them. Derived rows are written for every
/// transaction of the batch, also `ON CONFLICT DO NOTHING`: a transaction stored before has them
/// already (they are never deleted), so this changes nothing, and no statement of the batch
/// waits for another's answer.
struct BatchRows {
    tables: [TableRows; 4],
}

/// A table's name, its columns, the tail of its statements, and the rows a batch writes to it.
type TableRows = (
    &'static str,
    &'static [&'static str],
    &'static str,
    Vec<Vec<Bind>>,
);

/// How a statement names its parameters.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Placeholders {
    /// `?`, bound by position (SQLite, across the statements of one call).
    Anonymous,
    /// `$1`, `$2`, … in each statement.
    Numbered,
    /// `$n` numbered on across the statements, which become one (PostgreSQL).
    Continued,
}

impl BatchRows {
    fn new(items: &[(&Transaction, Source)], now: i64) -> Result<Self> {
        let own = items
            .iter()
            .map(|(tx, source)| tx_insert_row(tx, *source, now))
            .collect::<Result<Vec<_>>>()?;
        let mut derived = DerivedRows::new();
        let mut seen = HashSet::new();
        for (tx, _) in items {
            let hash = tx.hash.to_hex();
            if seen.insert(hash.clone()) {
                derived.add(tx, &hash, now);
            }
        }
        Ok(Self {
            tables: [
                (
                    "transactions",
                    TX_INSERT_COLUMNS,
                    " ON CONFLICT (hash) DO NOTHING RETURNING hash, seq",
                    own,
                ),
                (
                    "programs",
                    PROGRAM_INSERT_COLUMNS,
                    " ON CONFLICT (hash) DO NOTHING",
                    derived.programs,
                ),
                (
                    "workflow_steps",
                    STEP_INSERT_COLUMNS,
                    " ON CONFLICT (run_tx, step_index) DO NOTHING",
                    derived.steps,
                ),
                (
                    "tx_files",
                    FILE_INSERT_COLUMNS,
                    " ON CONFLICT (tx, file_index) DO NOTHING",
                    derived.files,
                ),
            ],
        })
    }

    fn binds(&self) -> usize {
        self.tables
            .iter()
            .map(|(_, columns, _, rows)| columns.len() * rows.len())
            .sum()
    }

    /// The batch's statements in order, each with its binds, and how many of them (the first
    /// ones) store the transactions' own rows.
    fn statements(self, placeholders: Placeholders) -> (Vec<(String, Vec<Bind>)>, usize) {
        let own = self.tables[0].3.len().div_ceil(ROWS_PER_STATEMENT);
        let mut statements = Vec::new();
        let mut first = 1;
        for (table, columns, tail, rows) in self.tables {
            for chunk in rows.chunks(ROWS_PER_STATEMENT) {
                let numbered_from = match placeholders {
                    Placeholders::Anonymous => None,
                    Placeholders::Numbered => Some(1),
                    Placeholders::Continued => Some(first),
                };
                let sql = multi_row_insert(table, columns, chunk.len(), tail, numbered_from);
                first += chunk.len() * columns.len();
                statements.push((sql, chunk.iter().flatten().cloned().collect()));
            }
        }
        (statements, own)
    }

    /// The batch's statements for one SQLite call ([`Store::sqlite_batch`]): SQLite binds
    /// anonymous parameters across the statements of one call, in order.
    fn one_sqlite_call(self) -> (String, Vec<Bind>) {
        let mut sql = String::new();
        let mut binds = Vec::new();
        for (statement, b) in self.statements(Placeholders::Anonymous).0 {
            sql.push_str(&statement);
            sql.push(';');
            binds.extend(b);
        }
        (sql, binds)
    }

    /// The batch as one PostgreSQL statement of data-modifying `WITH` queries, the
    /// transactions' own answering together: one statement commits alone, so the batch is one
    /// round trip instead of `BEGIN`, each statement and `COMMIT`. Foreign keys are checked at
    /// the end of the statement, once the transactions they name are in.
    fn one_postgres_statement(self) -> (String, Vec<Bind>) {
        use std::fmt::Write as _;
        let (statements, own) = self.statements(Placeholders::Continued);
        let mut sql = String::from("WITH ");
        let mut binds = Vec::new();
        for (i, (statement, b)) in statements.into_iter().enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            let _ = write!(sql, "s{i} AS ({statement})");
            binds.extend(b);
        }
        let answers: Vec<String> = (0..own.max(1))
            .map(|i| format!("SELECT hash, seq FROM s{i}"))
            .collect();
        sql.push(' ');
        sql.push_str(&answers.join(" UNION ALL "));
        (sql, binds)
    }
}

/// The most bind parameters in one PostgreSQL statement (its protocol counts them in 16 bits).
const POSTGRES_MAX_BINDS: usize = u16::MAX as usize;

impl Store {
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
        let items: Vec<(&Transaction, Source)> = txs.iter().map(|tx| (tx, source)).collect();
        self.insert_from(&items).await
    }

    /// [`Self::insert_transactions`] for transactions that came from different sources (the
    /// intake's group commit): one database transaction, one commit, and one call to the
    /// database (see [`BatchRows`]): on SQLite one hand-off to the connection's thread and back
    /// instead of one per statement, on PostgreSQL one round trip instead of one for `BEGIN`,
    /// each statement and `COMMIT`.
    pub async fn insert_from(&self, items: &[(&Transaction, Source)]) -> Result<Vec<Inserted>> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let now = now_ms();
        let batch = BatchRows::new(items, now)?;
        let new_seq: HashMap<String, i64> = match &self.backend {
            Backend::Postgres(pool) if batch.binds() <= POSTGRES_MAX_BINDS => {
                let (sql, binds) = batch.one_postgres_statement();
                let q = bind_all!(
                    sqlx::query_as::<_, (String, i64)>(AssertSqlSafe(sql)),
                    binds
                );
                q.fetch_all(pool).await?.into_iter().collect()
            }
            Backend::Postgres(pool) => {
                let mut t = pool.begin().await?;
                let mut new_seq = HashMap::new();
                for (sql, binds) in batch.statements(Placeholders::Numbered).0 {
                    let q = bind_all!(
                        sqlx::query_as::<_, (String, i64)>(AssertSqlSafe(sql)),
                        binds
                    );
                    new_seq.extend(q.fetch_all(&mut *t).await?);
                }
                t.commit().await?;
                new_seq
            }
            Backend::Sqlite(pool) => {
                let (sql, binds) = batch.one_sqlite_call();
                let rows: Vec<(String, i64)> = self.sqlite_batch(pool, &sql, binds).await?;
                rows.into_iter().collect()
            }
        };
        // The first occurrence of a new hash is the one that was stored.
        let mut reported = HashSet::new();
        Ok(items
            .iter()
            .map(|(tx, _)| {
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
            push(&mut sql, " AND author = $?", Bind::Text(author.clone()));
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

    /// The Proofs of `run` and the Verifications of those Proofs that `author` signed (any
    /// author's with `None`), in arrival order: what a node looks for before executing a step.
    pub async fn results_of_run(
        &self,
        run: &Hash,
        author: Option<&PublicKey>,
    ) -> Result<Vec<StoredTransaction>> {
        let columns = TX_COLUMNS
            .split(", ")
            .map(|c| format!("v.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        // `$2` empty: any author.
        let sql = format!(
            "SELECT {TX_COLUMNS} FROM transactions WHERE parent = $1 AND kind = 'proof' AND ($2 = '' OR author = $2) \
             UNION ALL \
             SELECT {columns} FROM transactions v JOIN transactions p ON v.parent = p.hash \
             WHERE p.parent = $1 AND p.kind = 'proof' AND v.kind = 'verification' AND ($2 = '' OR v.author = $2)"
        );
        let author = author.map(PublicKey::to_hex).unwrap_or_default();
        let rows: Vec<TxTuple> = dispatch!(self, pool => {
            sqlx::query_as(AssertSqlSafe(sql))
                .bind(run.to_hex())
                .bind(&author)
                .fetch_all(pool)
                .await?
        });
        let mut found = rows
            .into_iter()
            .map(decode_tx)
            .collect::<Result<Vec<_>>>()?;
        found.sort_by_key(|t| t.seq);
        Ok(found)
    }

    /// The first stored Cancel of `run` signed by one of `authors` (the Run's author, the node).
    /// The first Cancel of `run` stored, whoever signed it (the intake admits only the Run's
    /// author and the network's nodes).
    pub async fn first_cancel(&self, run: &Hash) -> Result<Option<Hash>> {
        let found: Option<String> = dispatch!(self, pool => {
            sqlx::query_scalar(
                "SELECT hash FROM transactions WHERE parent = $1 AND kind = 'cancel' ORDER BY seq LIMIT 1",
            )
            .bind(run.to_hex())
            .fetch_optional(pool)
            .await?
        });
        found
            .map(|h| {
                Hash::from_hex(&h)
                    .ok_or_else(|| StoreError::Corrupt(format!("bad cancel hash {h}")))
            })
            .transpose()
    }

    pub async fn cancel_of(&self, run: &Hash, authors: &[PublicKey]) -> Result<Option<Hash>> {
        if authors.is_empty() {
            return Ok(None);
        }
        let mut sql = String::from(
            "SELECT hash FROM transactions WHERE parent = $1 AND kind = 'cancel' AND author IN (",
        );
        for i in 0..authors.len() {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("${}", i + 2));
        }
        sql.push_str(") ORDER BY seq LIMIT 1");
        let found: Option<String> = dispatch!(self, pool => {
            let mut q = sqlx::query_scalar(AssertSqlSafe(sql)).bind(run.to_hex());
            for key in authors {
                q = q.bind(key.to_hex());
            }
            q.fetch_optional(pool).await?
        });
        found
            .map(|h| {
                Hash::from_hex(&h)
                    .ok_or_else(|| StoreError::Corrupt(format!("bad cancel hash {h}")))
            })
            .transpose()
    }
}
