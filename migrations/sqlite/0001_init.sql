-- Initial schema (SQLite). Keep in step with ../postgres/0001_init.sql: the same tables,
-- columns, logical types, keys and indexes (a test compares both).
-- Times are milliseconds since the Unix epoch (INTEGER); hashes and keys are lowercase hex.

CREATE TABLE transactions (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    hash        TEXT NOT NULL UNIQUE,
    author      TEXT NOT NULL,
    kind        TEXT NOT NULL,
    nonce       TEXT NOT NULL,
    signature   TEXT NOT NULL,
    payload     TEXT NOT NULL,
    parent      TEXT,
    source      TEXT NOT NULL,
    received_at INTEGER NOT NULL
);
CREATE INDEX transactions_kind_seq ON transactions (kind, seq);
CREATE INDEX transactions_author_seq ON transactions (author, seq);
CREATE INDEX transactions_parent ON transactions (parent);
CREATE INDEX transactions_received_at ON transactions (received_at);

CREATE TABLE programs (
    hash                TEXT PRIMARY KEY,
    name                TEXT NOT NULL,
    image_file_name     TEXT NOT NULL,
    image_file_url      TEXT NOT NULL,
    image_file_checksum TEXT NOT NULL,
    mem_mib             INTEGER,
    cpus                INTEGER,
    gpus                INTEGER,
    role                TEXT NOT NULL,
    deploy_tx           TEXT NOT NULL REFERENCES transactions (hash),
    created_at          INTEGER NOT NULL
);
CREATE INDEX programs_deploy_tx ON programs (deploy_tx);

CREATE TABLE workflow_steps (
    run_tx     TEXT NOT NULL REFERENCES transactions (hash),
    step_index INTEGER NOT NULL,
    program    TEXT NOT NULL,
    PRIMARY KEY (run_tx, step_index)
);
CREATE INDEX workflow_steps_program ON workflow_steps (program);

CREATE TABLE tx_files (
    tx         TEXT NOT NULL REFERENCES transactions (hash),
    file_index INTEGER NOT NULL,
    vm_path    TEXT NOT NULL,
    checksum   TEXT NOT NULL,
    PRIMARY KEY (tx, file_index)
);
CREATE INDEX tx_files_checksum ON tx_files (checksum);

CREATE TABLE acl_whitelist (
    key      TEXT PRIMARY KEY,
    added_at INTEGER NOT NULL
);

CREATE TABLE tasks (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    tx          TEXT NOT NULL REFERENCES transactions (hash),
    step_index  INTEGER NOT NULL,
    program     TEXT NOT NULL,
    kind        TEXT NOT NULL,
    phase       TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    error       TEXT,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    started_at  INTEGER,
    finished_at INTEGER,
    UNIQUE (tx, step_index)
);
CREATE INDEX tasks_phase_id ON tasks (phase, id);
