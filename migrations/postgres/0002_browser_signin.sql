-- Browser sign-in (version 2, PostgreSQL): pending authorization requests, SSO sessions,
-- authorization codes and consents. Never edited once applied.

-- An authorization request waiting for the person to sign in or consent. `csrf_hash` binds the
-- pages' forms to the browser that started the request (its CSRF cookie).
CREATE TABLE auth_requests (
    id          TEXT   NOT NULL PRIMARY KEY,
    domain      TEXT   NOT NULL,
    client_id   TEXT   NOT NULL,
    params      TEXT   NOT NULL,      -- JSON of the validated request
    csrf_hash   TEXT   NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX auth_requests_expires_at ON auth_requests (expires_at);

-- SSO sessions, by SHA-256 of the cookie value. `sid` is the public id put in ID tokens.
CREATE TABLE sessions (
    hash          TEXT   NOT NULL PRIMARY KEY,
    domain        TEXT   NOT NULL,
    sid           TEXT   NOT NULL,
    user_id       TEXT   NOT NULL,
    auth_time     BIGINT NOT NULL,
    amr           TEXT   NOT NULL,    -- JSON array
    created_at    BIGINT NOT NULL,
    last_seen     BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,    -- absolute expiry
    idle_timeout  BIGINT NOT NULL,
    ended_at      BIGINT
);
CREATE INDEX sessions_expires_at ON sessions (expires_at);
CREATE INDEX sessions_user ON sessions (domain, user_id);

-- Authorization codes, by SHA-256; used_at is set once by an atomic conditional update.
CREATE TABLE auth_codes (
    hash                  TEXT   NOT NULL PRIMARY KEY,
    domain                TEXT   NOT NULL,
    client_id             TEXT   NOT NULL,
    user_id               TEXT   NOT NULL,
    redirect_uri          TEXT   NOT NULL,
    redirect_uri_given    BIGINT NOT NULL,
    scope                 TEXT   NOT NULL,
    nonce                 TEXT,
    code_challenge        TEXT,
    code_challenge_method TEXT,
    sid                   TEXT   NOT NULL,
    auth_time             BIGINT NOT NULL,
    amr                   TEXT   NOT NULL,
    session_expires_at    BIGINT NOT NULL,
    issued_at             BIGINT NOT NULL,
    expires_at            BIGINT NOT NULL,
    used_at               BIGINT,
    access_jti            TEXT,       -- the access token issued from it, revoked on code reuse
    access_expires_at     BIGINT
);
CREATE INDEX auth_codes_expires_at ON auth_codes (expires_at);

-- What a person consented to, per client.
CREATE TABLE consents (
    domain     TEXT   NOT NULL,
    user_id    TEXT   NOT NULL,
    client_id  TEXT   NOT NULL,
    scope      TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (domain, user_id, client_id)
);

-- Opaque tokens issued from a code are revoked by jti when the code is reused.
CREATE INDEX tokens_jti ON tokens (domain, jti);
