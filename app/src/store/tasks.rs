//! Tasks (the execution state of workflow steps) and their phase timelines.

use sqlx::AssertSqlSafe;

use super::{Backend, KeptPostgres, Result, Store, StoreError, now_ms};
use crate::model::{NewTask, Phase, PhaseChange, PhaseChangeOf, Task, TaskKind};
use crate::tx::Hash;

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
        kind: TaskKind::parse(&kind).ok_or_else(|| corrupt("bad kind"))?,
        phase: Phase::parse(&phase).ok_or_else(|| corrupt("bad phase"))?,
        attempt,
        error,
        created_at_ms: created_at,
        updated_at_ms: updated_at,
        started_at_ms: started_at,
        finished_at_ms: finished_at,
    })
}

impl Store {
    /// Creates a task in phase `queued`, or returns the existing one for the same step.
    pub async fn create_task(&self, new: &NewTask) -> Result<Task> {
        let mut tasks = self.create_tasks(std::slice::from_ref(new)).await?;
        tasks.pop().ok_or_else(|| {
            StoreError::Corrupt(format!("task {} step {} vanished", new.tx, new.step_index))
        })
    }

    /// Creates the tasks in phase `queued` in one database transaction (a reader sees all of a
    /// Run's new steps or none), keeping any that exist for the same step; returns them in order.
    /// On SQLite it is one call to the database by the one writer (see
    /// [`create_tasks_sqlite_call`]), queued behind a batch of transactions instead of meeting
    /// it in SQLite's busy wait, which sleeps.
    pub async fn create_tasks(&self, new: &[NewTask]) -> Result<Vec<Task>> {
        if new.is_empty() {
            return Ok(Vec::new());
        }
        let now = now_ms();
        let pool = match &self.backend {
            Backend::Sqlite(pool) => {
                let (sql, binds) = create_tasks_sqlite_call(new, now);
                let rows: Vec<TaskTuple> = self.sqlite_batch(pool, &sql, binds).await?;
                return one_answer_each(rows, new.len(), "new tasks")?
                    .into_iter()
                    .map(decode_task)
                    .collect();
            }
            Backend::Postgres(pool) => pool,
        };
        let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE tx = $1 AND step_index = $2");
        let mut t = pool.begin().await?;
        let mut rows = Vec::with_capacity(new.len());
        for new in new {
            let created: Option<(i64,)> = sqlx::query_as(
                "INSERT INTO tasks (tx, step_index, program, kind, phase, attempt, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, 0, $6, $6) ON CONFLICT (tx, step_index) DO NOTHING RETURNING id",
            )
            .bind(new.tx.to_hex())
            .bind(new.step_index)
            .bind(new.program.to_hex())
            .bind(new.kind.as_str())
            .bind(Phase::Queued.as_str())
            .bind(now)
            .fetch_optional(&mut *t)
            .await?;
            if let Some((id,)) = created {
                sqlx::query(
                    "INSERT INTO task_phases (task_id, phase, note, at) VALUES ($1, $2, NULL, $3)",
                )
                .bind(id)
                .bind(Phase::Queued.as_str())
                .bind(now)
                .execute(&mut *t)
                .await?;
            }
            let row: TaskTuple = sqlx::query_as(AssertSqlSafe(sql.clone()))
                .bind(new.tx.to_hex())
                .bind(new.step_index)
                .fetch_one(&mut *t)
                .await?;
            rows.push(row);
        }
        t.commit().await?;
        rows.into_iter().map(decode_task).collect()
    }

    /// Moves a task to `phase`, recording the time it started running, when it ended, and the
    /// error (or what it waits for), and adds the change to the task's timeline in the same
    /// database transaction. Entering `booting` counts a new attempt. A task already in a
    /// terminal phase is not changed; returns whether the task changed.
    pub async fn set_task_phase(&self, id: i64, phase: Phase, error: Option<&str>) -> Result<bool> {
        let changed = self
            .set_task_phases(&[PhaseChangeOf {
                task: id,
                phase,
                note: error.map(str::to_owned),
            }])
            .await?;
        Ok(changed.first().copied().unwrap_or(false))
    }

    /// Applies many [`Store::set_task_phase`] changes, in order, in one database transaction;
    /// returns for each whether its task changed. On SQLite the whole batch is one call to the
    /// database (see [`phases_sqlite_call`]).
    pub async fn set_task_phases(&self, changes: &[PhaseChangeOf]) -> Result<Vec<bool>> {
        if changes.is_empty() {
            return Ok(Vec::new());
        }
        let now = now_ms();
        let terminal: Vec<&str> = Phase::ALL
            .iter()
            .filter(|p| p.is_terminal())
            .map(|p| p.as_str())
            .collect();
        let pool = match &self.backend {
            Backend::Sqlite(pool) => {
                let (sql, binds) = phases_sqlite_call(changes, now, &terminal);
                let rows: Vec<(i64,)> = self.sqlite_batch(pool, &sql, binds).await?;
                let rows = one_answer_each(rows, changes.len(), "phase changes")?;
                return Ok(rows.into_iter().map(|(n,)| n == 1).collect());
            }
            Backend::Postgres(pool) => pool,
        };
        self.on_kept_postgres(pool, KeptPostgres::TaskPhases, async |conn| {
            // One change is one statement, committing alone; more are statements in one
            // transaction, each seeing the changes before it.
            if let [change] = changes {
                return Ok(vec![phase_postgres(conn, change, now, &terminal).await?]);
            }
            let mut t = sqlx::Connection::begin(conn).await?;
            let mut done = Vec::with_capacity(changes.len());
            for change in changes {
                done.push(phase_postgres(&mut t, change, now, &terminal).await?);
            }
            t.commit().await?;
            Ok(done)
        })
        .await
    }

    /// Tasks of `ids` that were on a VM (booting, running, submitting) when the node stopped
    /// them in an orderly stop go back to `queued` with `note`, and that attempt no longer
    /// counts: the next start runs them again from the beginning. Returns how many changed. (A
    /// node killed outright changes nothing here: its interrupted attempt counts, which keeps a
    /// task that crashes the node from doing so forever.)
    pub async fn requeue_stopped(&self, ids: &[i64], note: &str) -> Result<usize> {
        let now = now_ms();
        let on_vm = [Phase::Booting, Phase::Running, Phase::Submitting].map(Phase::as_str);
        let changed = dispatch!(self, pool => {
            let mut t = pool.begin().await?;
            let mut changed = 0;
            for id in ids {
                let updated = sqlx::query(
                    "UPDATE tasks SET phase = $1, error = $2, updated_at = $3, \
                     attempt = CASE WHEN attempt > 0 THEN attempt - 1 ELSE 0 END \
                     WHERE id = $4 AND phase IN ($5, $6, $7)",
                )
                .bind(Phase::Queued.as_str())
                .bind(note)
                .bind(now)
                .bind(id)
                .bind(on_vm[0])
                .bind(on_vm[1])
                .bind(on_vm[2])
                .execute(&mut *t)
                .await?
                .rows_affected();
                if updated == 1 {
                    sqlx::query("INSERT INTO task_phases (task_id, phase, note, at) VALUES ($1, $2, $3, $4)")
                        .bind(id)
                        .bind(Phase::Queued.as_str())
                        .bind(note)
                        .bind(now)
                        .execute(&mut *t)
                        .await?;
                    changed += 1;
                }
            }
            t.commit().await?;
            changed
        });
        Ok(changed)
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
    pub async fn set_task_kind(&self, id: i64, kind: TaskKind) -> Result<()> {
        dispatch!(self, pool => {
            sqlx::query("UPDATE tasks SET kind = $1 WHERE id = $2")
                .bind(kind.as_str())
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
}

/// `rows`, one answer for each of `n` items of a SQLite call, or an error saying they are not.
fn one_answer_each<R>(rows: Vec<R>, n: usize, what: &str) -> Result<Vec<R>> {
    if rows.len() != n {
        return Err(StoreError::Corrupt(format!(
            "{n} {what} answered {} times",
            rows.len()
        )));
    }
    Ok(rows)
}

/// One task phase change on PostgreSQL (see [`Store::set_task_phase`]): the update and, only if
/// it changed the task, its timeline row, in one statement; whether the task changed.
async fn phase_postgres(
    conn: &mut sqlx::PgConnection,
    change: &PhaseChangeOf,
    now: i64,
    terminal: &[&str],
) -> Result<bool> {
    let written = sqlx::query(
        "WITH changed AS (UPDATE tasks SET phase = $1, error = $2, updated_at = $3, \
         attempt = attempt + CASE WHEN $1 = 'booting' THEN 1 ELSE 0 END, \
         started_at = CASE WHEN $1 = 'running' AND started_at IS NULL THEN $3 ELSE started_at END, \
         finished_at = CASE WHEN $1 IN ($5, $6, $7, $8) THEN $3 ELSE finished_at END \
         WHERE id = $4 AND phase NOT IN ($5, $6, $7, $8) RETURNING id) \
         INSERT INTO task_phases (task_id, phase, note, at) SELECT id, $1, $2, $3 FROM changed",
    )
    .bind(change.phase.as_str())
    .bind(change.note.as_deref())
    .bind(now)
    .bind(change.task)
    .bind(terminal[0])
    .bind(terminal[1])
    .bind(terminal[2])
    .bind(terminal[3])
    .execute(conn)
    .await?;
    Ok(written.rows_affected() == 1)
}

/// `new` as the statements of one SQLite call ([`Store::sqlite_batch`]). Per task: its insert
/// (nothing if the step has one already), its first timeline row only if the insert made the
/// task (`changes()`; `last_insert_rowid()` is then its id), and the task as it now is.
fn create_tasks_sqlite_call(new: &[NewTask], now: i64) -> (String, Vec<super::Bind>) {
    use super::Bind;
    let one = format!(
        "INSERT INTO tasks (tx, step_index, program, kind, phase, attempt, created_at, updated_at) \
         VALUES (?, ?, ?, ?, ?, 0, ?, ?) ON CONFLICT (tx, step_index) DO NOTHING;\
         INSERT INTO task_phases (task_id, phase, note, at) \
         SELECT last_insert_rowid(), ?, NULL, ? WHERE changes() = 1;\
         SELECT {TASK_COLUMNS} FROM tasks WHERE tx = ? AND step_index = ?;"
    );
    let mut sql = String::with_capacity(one.len() * new.len());
    let mut binds = Vec::with_capacity(new.len() * 11);
    for task in new {
        sql.push_str(&one);
        let queued = || Bind::Text(Phase::Queued.as_str().to_string());
        binds.extend([
            Bind::Text(task.tx.to_hex()),
            Bind::Int(task.step_index),
            Bind::Text(task.program.to_hex()),
            Bind::Text(task.kind.as_str().to_string()),
            queued(),
            Bind::Int(now),
            Bind::Int(now),
            queued(),
            Bind::Int(now),
            Bind::Text(task.tx.to_hex()),
            Bind::Int(task.step_index),
        ]);
    }
    (sql, binds)
}

/// `changes` as the statements of one SQLite call ([`Store::sqlite_batch`]). Per change: the task's
/// update (not of a task that already ended), its timeline row only if the update changed the
/// task (`changes()` is still the update's count), and a row saying whether it did (`changes()`
/// is then the timeline insert's: 1 or 0). The phases that end a task are the node's own
/// constants, written into the SQL; every other value is bound.
fn phases_sqlite_call(
    changes: &[PhaseChangeOf],
    now: i64,
    terminal: &[&str],
) -> (String, Vec<super::Bind>) {
    use super::Bind;
    let ended = terminal
        .iter()
        .map(|p| format!("'{p}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let one = format!(
        "UPDATE tasks SET phase = ?, error = ?, updated_at = ?, \
         attempt = attempt + CASE WHEN ? = 'booting' THEN 1 ELSE 0 END, \
         started_at = CASE WHEN ? = 'running' AND started_at IS NULL THEN ? ELSE started_at END, \
         finished_at = CASE WHEN ? IN ({ended}) THEN ? ELSE finished_at END \
         WHERE id = ? AND phase NOT IN ({ended});\
         INSERT INTO task_phases (task_id, phase, note, at) SELECT ?, ?, ?, ? WHERE changes() = 1;\
         SELECT changes();"
    );
    let mut sql = String::with_capacity(one.len() * changes.len());
    let mut binds = Vec::with_capacity(changes.len() * 13);
    for change in changes {
        sql.push_str(&one);
        let phase = || Bind::Text(change.phase.as_str().to_string());
        let note = || Bind::OptText(change.note.clone());
        binds.extend([
            phase(),
            note(),
            Bind::Int(now),
            phase(),
            phase(),
            Bind::Int(now),
            phase(),
            Bind::Int(now),
            Bind::Int(change.task),
            Bind::Int(change.task),
            phase(),
            note(),
            Bind::Int(now),
        ]);
    }
    (sql, binds)
}
