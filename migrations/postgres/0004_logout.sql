-- Sign-out (version 4, PostgreSQL): which clients received tokens in a session (OpenID Connect
-- Back- and Front-Channel Logout 1.0 notify exactly those) and the outbox of back-channel logout
-- deliveries. Never edited once applied.

-- A client that was issued a code in a session, kept while the session may live. Codes are
-- collected a day after expiry, so this is the lasting record of who to tell at sign-out.
CREATE TABLE session_clients (
    domain     TEXT   NOT NULL,
    sid        TEXT   NOT NULL,
    client_id  TEXT   NOT NULL,
    user_id    TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,       -- the session's absolute expiry
    PRIMARY KEY (domain, sid, client_id)
);
CREATE INDEX session_clients_user ON session_clients (domain, user_id, client_id);
CREATE INDEX session_clients_expires_at ON session_clients (expires_at);

-- A back-channel logout to deliver: what the logout token will say (signed fresh at each
-- attempt, so no token is stored). An attempt is claimed by one atomic conditional update
-- (claimed_until), so replicas may run the worker together. Finished rows (delivered_at or
-- failed_at) are collected after a day.
CREATE TABLE logout_deliveries (
    id              TEXT   NOT NULL PRIMARY KEY,
    domain          TEXT   NOT NULL,
    client_id       TEXT   NOT NULL,
    sub             TEXT   NOT NULL,
    sid             TEXT,
    attempts        BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    claimed_until   BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    delivered_at    BIGINT,
    failed_at       BIGINT,
    last_error      TEXT
);
CREATE INDEX logout_deliveries_due ON logout_deliveries (next_attempt_at);

-- The browser a session was started from (its User-Agent, at most 256 characters), shown on the
-- account page and to administrators so that a person can tell their sessions apart.
ALTER TABLE sessions ADD COLUMN user_agent TEXT;
