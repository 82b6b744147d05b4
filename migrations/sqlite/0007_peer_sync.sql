-- How far this node has pulled each peer's transactions (SQLite). Keep in step with
-- ../postgres/0007_peer_sync.sql. The cursor is the peer's own sequence number (its
-- transactions.seq): the catch-up asks each peer for what it stored after it.

CREATE TABLE peer_sync (
    peer      TEXT PRIMARY KEY,
    cursor    INTEGER NOT NULL,
    head      INTEGER NOT NULL,
    pulled    INTEGER NOT NULL,
    synced_at INTEGER NOT NULL
);
