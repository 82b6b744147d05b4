-- The audit log (PostgreSQL): every operator action, append-only. Keep in step with
-- ../sqlite/0006_audit.sql. Rows are never changed (a trigger refuses any UPDATE); only the
-- retention collector deletes, and only rows older than the retention period.

CREATE TABLE audit_log (
    id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at      BIGINT NOT NULL,
    actor   TEXT NOT NULL,
    address TEXT,
    action  TEXT NOT NULL,
    target  TEXT,
    detail  TEXT,
    outcome TEXT NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at);

CREATE FUNCTION audit_log_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER audit_log_append_only BEFORE UPDATE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
