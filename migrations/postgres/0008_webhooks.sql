-- Webhooks and their deliveries (PostgreSQL). Keep in step with ../sqlite/0008_webhooks.sql.
-- A delivery is written before it is sent, so a restart resends what was not acknowledged;
-- each hook's deliveries go out one at a time in id order.

CREATE TABLE webhooks (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner      TEXT NOT NULL,
    url        TEXT NOT NULL,
    secret     TEXT NOT NULL,
    run_filter TEXT,
    author     TEXT,
    created_at BIGINT NOT NULL
);

CREATE TABLE webhook_deliveries (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    hook_id       BIGINT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event         TEXT NOT NULL,
    run           TEXT NOT NULL,
    payload       TEXT NOT NULL,
    state         TEXT NOT NULL,
    attempts      BIGINT NOT NULL,
    next_at       BIGINT NOT NULL,
    last_status   BIGINT,
    last_error    TEXT,
    created_at    BIGINT NOT NULL,
    finished_at   BIGINT
);
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (hook_id, id) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_hook ON webhook_deliveries (hook_id, id);
