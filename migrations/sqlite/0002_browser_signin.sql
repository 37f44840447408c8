-- Browser sign-in (version 2, SQLite): pending authorization requests, SSO sessions,
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
    access_expires_at     BIGINT,
    family_id             TEXT,       -- the refresh-token family started from it, revoked on code reuse
    claims                TEXT,       -- JSON of the OpenID claims request (Core s5.5), if any
    reused_at             BIGINT      -- first replay: what was or will be issued from it is revoked
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

-- Refresh-token families (one per grant). A family dies whole: on reuse of a rotated token,
-- code reuse, revocation, or when its user is disabled or changes password. `offline = 0`
-- families also die with their session (`sid`).
CREATE TABLE refresh_families (
    id         TEXT   NOT NULL PRIMARY KEY,
    domain     TEXT   NOT NULL,
    client_id  TEXT   NOT NULL,
    user_id    TEXT   NOT NULL,
    scope      TEXT   NOT NULL,      -- what was granted; a refresh may narrow, never widen
    sid        TEXT   NOT NULL,
    offline    BIGINT NOT NULL,
    auth_time  BIGINT NOT NULL,
    amr        TEXT   NOT NULL,
    claims     TEXT,                 -- JSON of the OpenID claims request, kept for refreshed ID tokens
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,      -- absolute: rotation never extends it
    revoked_at BIGINT
);
CREATE INDEX refresh_families_user ON refresh_families (domain, user_id);
CREATE INDEX refresh_families_expires_at ON refresh_families (expires_at);

-- Refresh tokens live in `tokens` (kind = 'refresh'); these say which family a token belongs
-- to and when it was rotated (set once, by an atomic conditional update).
ALTER TABLE tokens ADD COLUMN family_id TEXT;
ALTER TABLE tokens ADD COLUMN used_at BIGINT;
CREATE INDEX tokens_family ON tokens (family_id);

-- Every access token issued in a family, by jti, so that revoking the family revokes them.
CREATE TABLE family_jtis (
    domain     TEXT   NOT NULL,
    family_id  TEXT   NOT NULL,
    jti        TEXT   NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (domain, jti)
);
CREATE INDEX family_jtis_family ON family_jtis (domain, family_id);
CREATE INDEX family_jtis_expires_at ON family_jtis (expires_at);

-- Failed sign-ins per account (`u:` + username) and per client address (`a:` + address), for
-- throttling with a lockout that backs off.
CREATE TABLE login_attempts (
    domain       TEXT   NOT NULL,
    bucket       TEXT   NOT NULL,
    failures     BIGINT NOT NULL,
    locked_until BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (domain, bucket)
);
