-- The order in which the webhook sender reads task phase changes (PostgreSQL). Keep in step with
-- ../sqlite/0011_task_change_order.sql.
-- `xid`: the transaction that wrote the change. Sequence numbers are taken before commit, so a
-- change with a lower `seq` can become visible after one with a higher; read in (xid, seq) order,
-- and only below the oldest transaction still running, no later commit can fall behind a reader's
-- position. (Existing rows all get the migrating transaction's id.)

ALTER TABLE task_phases ADD COLUMN xid xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX task_phases_xid_seq ON task_phases (xid, seq);
