-- The order in which the webhook sender reads task phase changes (SQLite). Keep in step with
-- ../postgres/0011_task_change_order.sql.
-- `xid` is always 0 here: SQLite commits one writer at a time, so `seq` is already the order in
-- which changes become visible.

ALTER TABLE task_phases ADD COLUMN xid INTEGER NOT NULL DEFAULT 0;
CREATE INDEX task_phases_xid_seq ON task_phases (xid, seq);
