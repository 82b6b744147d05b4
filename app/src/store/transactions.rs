//! Transactions and the rows derived from them (programs of a Deploy, steps of a Run, files of a
//! Proof or Verification), written in one database transaction.

use std::collections::{HashMap, HashSet};

use sqlx::AssertSqlSafe;

use super::{
    Backend, Bind, KeptPostgres, ROWS_PER_STATEMENT, Result, Store, StoreError, multi_row_insert,
    now_ms,
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

/// A column a batch writes: its name, and the PostgreSQL array type its values travel in.
type Column = (&'static str, Array);

/// The PostgreSQL array a column's values travel in (see [`BatchRows::postgres_arrays`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Array {
    Text,
    Int,
}

impl Array {
    fn sql(self) -> &'static str {
        match self {
            Array::Text => "text[]",
            Array::Int => "int8[]",
        }
    }
}

const TX_INSERT_COLUMNS: &[Column] = &[
    ("hash", Array::Text),
    ("author", Array::Text),
    ("kind", Array::Text),
    ("nonce", Array::Text),
    ("signature", Array::Text),
    ("payload", Array::Text),
    ("parent", Array::Text),
    ("source", Array::Text),
    ("received_at", Array::Int),
];
const PROGRAM_INSERT_COLUMNS: &[Column] = &[
    ("hash", Array::Text),
    ("name", Array::Text),
    ("image_file_name", Array::Text),
    ("image_file_url", Array::Text),
    ("image_file_checksum", Array::Text),
    ("mem_mib", Array::Int),
    ("cpus", Array::Int),
    ("gpus", Array::Int),
    ("role", Array::Text),
    ("deploy_tx", Array::Text),
    ("created_at", Array::Int),
];
const STEP_INSERT_COLUMNS: &[Column] = &[
    ("run_tx", Array::Text),
    ("step_index", Array::Int),
    ("program", Array::Text),
];
const FILE_INSERT_COLUMNS: &[Column] = &[
    ("tx", Array::Text),
    ("file_index", Array::Int),
    ("vm_path", Array::Text),
    ("checksum", Array::Text),
    ("url", Array::Text),
];

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

/// A table a batch writes to: its name, its columns, and the tail of its insert.
struct Table {
    name: &'static str,
    columns: &'static [Column],
    tail: &'static str,
}

impl Table {
    fn names(&self) -> Vec<&'static str> {
        self.columns.iter().map(|(name, _)| *name).collect()
    }
}

/// The tables of a batch, in the order they are written: the transactions' own rows first
/// (`ON CONFLICT DO NOTHING`, returning the hash and sequence number of each new one), then the
/// rows derived from them.
const TABLES: [Table; 4] = [
    Table {
        name: "transactions",
        columns: TX_INSERT_COLUMNS,
        tail: " ON CONFLICT (hash) DO NOTHING RETURNING hash, seq",
    },
    Table {
        name: "programs",
        columns: PROGRAM_INSERT_COLUMNS,
        tail: " ON CONFLICT (hash) DO NOTHING",
    },
    Table {
        name: "workflow_steps",
        columns: STEP_INSERT_COLUMNS,
        tail: " ON CONFLICT (run_tx, step_index) DO NOTHING",
    },
    Table {
        name: "tx_files",
        columns: FILE_INSERT_COLUMNS,
        tail: " ON CONFLICT (tx, file_index) DO NOTHING",
    },
];

/// The rows one batch writes, per table of [`TABLES`]. Derived rows are written for every
/// transaction of the batch, also `ON CONFLICT DO NOTHING`: a transaction stored before has them
/// already (they are never deleted), so this changes nothing, and no statement of the batch
/// waits for another's answer.
struct BatchRows {
    rows: [Vec<Vec<Bind>>; 4],
}

/// One column of a batch's rows as a PostgreSQL array.
enum ArrayBind {
    Text(Vec<Option<String>>),
    Int(Vec<Option<i64>>),
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
            rows: [own, derived.programs, derived.steps, derived.files],
        })
    }

    /// The batch's statements for one SQLite call ([`Store::sqlite_batch`]): multi-row
    /// inserts whose anonymous parameters SQLite binds across the statements of one call, in
    /// order.
    fn one_sqlite_call(self) -> (String, Vec<Bind>) {
        let mut sql = String::new();
        let mut binds = Vec::new();
        for (table, rows) in TABLES.iter().zip(self.rows) {
            let columns = table.names();
            for chunk in rows.chunks(ROWS_PER_STATEMENT) {
                sql.push_str(&multi_row_insert(
                    table.name,
                    &columns,
                    chunk.len(),
                    table.tail,
                ));
                sql.push(';');
                binds.extend(chunk.iter().flatten().cloned());
            }
        }
        (sql, binds)
    }

    /// The tables the batch writes to (bit `i` for `TABLES[i]`; the transactions always), and
    /// its binds for [`postgres_statement`]: each column of each of those tables as one array.
    fn postgres_arrays(self) -> Result<(usize, Vec<ArrayBind>)> {
        let mut tables = 0;
        let mut arrays = Vec::new();
        for (i, (table, rows)) in TABLES.iter().zip(self.rows).enumerate() {
            if i > 0 && rows.is_empty() {
                continue;
            }
            tables |= 1 << i;
            let first = arrays.len();
            arrays.extend(table.columns.iter().map(|(_, array)| match array {
                Array::Text => ArrayBind::Text(Vec::with_capacity(rows.len())),
                Array::Int => ArrayBind::Int(Vec::with_capacity(rows.len())),
            }));
            for row in rows {
                for (array, bind) in arrays[first..].iter_mut().zip(row) {
                    match (array, bind) {
                        (ArrayBind::Text(v), Bind::Text(s)) => v.push(Some(s)),
                        (ArrayBind::Text(v), Bind::OptText(s)) => v.push(s),
                        (ArrayBind::Int(v), Bind::Int(i)) => v.push(Some(i)),
                        (ArrayBind::Int(v), Bind::OptInt(i)) => v.push(i),
                        _ => {
                            return Err(StoreError::Corrupt(format!(
                                "a value for {} does not match its column's type",
                                table.name
                            )));
                        }
                    }
                }
            }
        }
        Ok((tables, arrays))
    }
}

/// The PostgreSQL statement that stores a batch of any size into the tables of `TABLES`
/// whose bit is set in `tables` (bit 0, the transactions, always is): data-modifying `WITH`
/// queries, one per table, each inserting its rows from one array per column (`UNNEST`, whose
/// scan feeds the insert in the arrays' order, so sequence numbers follow the batch; an
/// `ORDER BY` to insist on it measured about 15 % more server time per small commit), the
/// transactions' own answering. One statement commits alone, so a batch is one round trip; its
/// text depends only on which tables it writes, so the connection prepares and plans each of a
/// handful of statements once; and its binds are one per column, never near the protocol's
/// 65,535. A table with no rows is left out, sparing the statement its indexes' start-up.
/// Foreign keys are checked at the end of the statement, once the transactions they name are
/// in.
fn postgres_statement(tables: usize) -> &'static str {
    static SQL: [std::sync::OnceLock<String>; 1 << TABLES.len()] =
        [const { std::sync::OnceLock::new() }; 1 << TABLES.len()];
    let tables = (tables | 1) & ((1 << TABLES.len()) - 1);
    SQL[tables].get_or_init(|| {
        use std::fmt::Write as _;
        let mut sql = String::from("WITH ");
        let mut param = 0;
        for (i, table) in TABLES.iter().enumerate() {
            if tables & (1 << i) == 0 {
                continue;
            }
            let names = table.names();
            let arrays: Vec<String> = table
                .columns
                .iter()
                .map(|(_, array)| {
                    param += 1;
                    format!("${param}::{}", array.sql())
                })
                .collect();
            let names = names.join(", ");
            let _ = write!(
                sql,
                "{}s{i} AS (INSERT INTO {} ({names}) SELECT * FROM UNNEST({}){})",
                if i > 0 { ", " } else { "" },
                table.name,
                arrays.join(", "),
                table.tail,
            );
        }
        sql.push_str(" SELECT hash, seq FROM s0");
        sql
    })
}

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
            Backend::Postgres(pool) => {
                let (tables, arrays) = batch.postgres_arrays()?;
                let mut q = sqlx::query_as::<_, (String, i64)>(postgres_statement(tables));
                for array in arrays {
                    q = match array {
                        ArrayBind::Text(v) => q.bind(v),
                        ArrayBind::Int(v) => q.bind(v),
                    };
                }
                let rows = self
                    .on_kept_postgres(pool, KeptPostgres::Transactions, async |conn| {
                        Ok(q.fetch_all(conn).await?)
                    })
                    .await?;
                rows.into_iter().collect()
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
