-- The node's own switches that outlive a restart (SQLite). Keep in step with
-- ../postgres/0010_node_state.sql.
-- `drained_since`: an operator drained the node then (milliseconds since the Unix epoch) and has
-- not resumed it, so the node starts drained. A stop (SIGTERM) drains only that run of the
-- process and is not kept here.

CREATE TABLE node_state (
    name       TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
