-- Administration and audit (version 5, PostgreSQL): the audit trail of sign-ins, tokens, consents
-- and administrative changes. Never edited once applied.

-- One audited event. `id` orders events of the same second; `details` is JSON that never holds
-- a secret, token, password or code. Removed by the garbage collector after
-- server.audit_retention.
CREATE TABLE audit_events (
    id         BIGSERIAL NOT NULL PRIMARY KEY,
    at         BIGINT  NOT NULL,
    kind       TEXT    NOT NULL,   -- e.g. signin.success, token.issued, admin.user.created
    actor      TEXT    NOT NULL,   -- user:<id>, client:<client_id>, cli, or anonymous
    domain     TEXT    NOT NULL,
    client_id  TEXT,
    user_id    TEXT,
    outcome    TEXT    NOT NULL,   -- success or failure
    request_id TEXT,
    details    TEXT    NOT NULL
);
CREATE INDEX audit_events_domain_at ON audit_events (domain, at);
CREATE INDEX audit_events_at ON audit_events (at);
