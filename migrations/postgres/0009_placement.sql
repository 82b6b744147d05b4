-- Runs whose placement is over (PostgreSQL). Keep in step with ../sqlite/0009_placement.sql.
-- A Run is placed on a node of the network until it ends; once every node knows it ended (its
-- last step has its results, it failed or was cancelled on the node that held it, or no node
-- can ever fit it) it is recorded here and never placed again.

CREATE TABLE run_endings (
    run      TEXT PRIMARY KEY REFERENCES transactions (hash),
    outcome  TEXT NOT NULL,
    reason   TEXT,
    node     TEXT,
    ended_at BIGINT NOT NULL
);
