-- GPU pool decisions made through the API (PostgreSQL). Keep in step with ../sqlite/0003_gpus.sql.
-- A GPU is in the node's pool when GEVULOT_GPU_DEVICES names it or it is `assigned` here, unless
-- it is `released` here; `reserved` and `maintenance` keep it in the pool but out of scheduling.

CREATE TABLE gpu_assignments (
    address    TEXT PRIMARY KEY,
    state      TEXT NOT NULL,
    reason     TEXT,
    updated_by TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
