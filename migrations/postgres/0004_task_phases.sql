-- Every phase a task entered, with when and why (PostgreSQL). Keep in step with
-- ../sqlite/0004_task_phases.sql. The task's own row holds its current phase; this is its
-- timeline, written in the same database transaction as each change.

CREATE TABLE task_phases (
    seq     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id BIGINT NOT NULL REFERENCES tasks (id),
    phase   TEXT NOT NULL,
    note    TEXT,
    at      BIGINT NOT NULL
);
CREATE INDEX task_phases_task_seq ON task_phases (task_id, seq);
