-- The audit log (SQLite): every operator action, append-only. Keep in step with
-- ../postgres/0006_audit.sql. Rows are never changed (a trigger refuses any UPDATE); only the
-- retention collector deletes, and only rows older than the retention period.

CREATE TABLE audit_log (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      INTEGER NOT NULL,
    actor   TEXT NOT NULL,
    address TEXT,
    action  TEXT NOT NULL,
    target  TEXT,
    detail  TEXT,
    outcome TEXT NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at);

CREATE TRIGGER audit_log_append_only BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;
