-- How far this node has pulled each peer's transactions (PostgreSQL). Keep in step with
-- ../sqlite/0007_peer_sync.sql. The cursor is the peer's own sequence number (its
-- transactions.seq): the catch-up asks each peer for what it stored after it.

CREATE TABLE peer_sync (
    peer      TEXT PRIMARY KEY,
    cursor    BIGINT NOT NULL,
    head      BIGINT NOT NULL,
    pulled    BIGINT NOT NULL,
    synced_at BIGINT NOT NULL
);
