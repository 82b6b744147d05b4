-- Initial schema (PostgreSQL). Keep in step with ../sqlite/0001_init.sql: the same tables,
-- columns, logical types, keys and indexes (a test compares both).
-- Times are milliseconds since the Unix epoch (BIGINT); hashes and keys are lowercase hex.

CREATE TABLE transactions (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    hash        TEXT NOT NULL UNIQUE,
    author      TEXT NOT NULL,
    kind        TEXT NOT NULL,
    nonce       TEXT NOT NULL,
    signature   TEXT NOT NULL,
    payload     TEXT NOT NULL,
    parent      TEXT,
    source      TEXT NOT NULL,
    received_at BIGINT NOT NULL
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
    mem_mib             BIGINT,
    cpus                BIGINT,
    gpus                BIGINT,
    role                TEXT NOT NULL,
    deploy_tx           TEXT NOT NULL REFERENCES transactions (hash),
    created_at          BIGINT NOT NULL
);
CREATE INDEX programs_deploy_tx ON programs (deploy_tx);

CREATE TABLE workflow_steps (
    run_tx     TEXT NOT NULL REFERENCES transactions (hash),
    step_index BIGINT NOT NULL,
    program    TEXT NOT NULL,
    PRIMARY KEY (run_tx, step_index)
);
CREATE INDEX workflow_steps_program ON workflow_steps (program);

CREATE TABLE tx_files (
    tx         TEXT NOT NULL REFERENCES transactions (hash),
    file_index BIGINT NOT NULL,
    vm_path    TEXT NOT NULL,
    checksum   TEXT NOT NULL,
    PRIMARY KEY (tx, file_index)
);
CREATE INDEX tx_files_checksum ON tx_files (checksum);

CREATE TABLE acl_whitelist (
    key      TEXT PRIMARY KEY,
    added_at BIGINT NOT NULL
);

CREATE TABLE tasks (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tx          TEXT NOT NULL REFERENCES transactions (hash),
    step_index  BIGINT NOT NULL,
    program     TEXT NOT NULL,
    kind        TEXT NOT NULL,
    phase       TEXT NOT NULL,
    attempt     BIGINT NOT NULL,
    error       TEXT,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    started_at  BIGINT,
    finished_at BIGINT,
    UNIQUE (tx, step_index)
);
CREATE INDEX tasks_phase_id ON tasks (phase, id);
