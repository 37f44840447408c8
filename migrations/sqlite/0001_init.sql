-- Ostiary schema, version 1 (SQLite). Applied once; never edited after release: add a new file.
-- Portable conventions shared with the PostgreSQL schema: text ids, integer unix seconds,
-- booleans as 0/1 integers, JSON as text. Tokens, codes and secrets are stored as SHA-256 only.

-- Signing keys per domain and algorithm. A key signs from activates_at until the next
-- generation activates; generation is unique so concurrent replicas cannot both rotate.
CREATE TABLE signing_keys (
    kid            TEXT    NOT NULL PRIMARY KEY,
    domain         TEXT    NOT NULL,
    alg            TEXT    NOT NULL,
    generation     BIGINT  NOT NULL,
    private_sealed TEXT    NOT NULL,   -- PKCS#8, AES-256-GCM under the key-encryption key
    public_jwk     TEXT    NOT NULL,
    created_at     BIGINT  NOT NULL,
    activates_at   BIGINT  NOT NULL,
    UNIQUE (domain, alg, generation)
);

-- Mirror of the clients declared in configuration (the source of truth), reconciled at start.
CREATE TABLE clients (
    domain      TEXT   NOT NULL,
    client_id   TEXT   NOT NULL,
    config_hash TEXT   NOT NULL,
    enabled     BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (domain, client_id)
);

-- Users: from configuration (source = 'config') or managed in the store (source = 'store').
CREATE TABLE users (
    id            TEXT   NOT NULL PRIMARY KEY,
    domain        TEXT   NOT NULL,
    username      TEXT   NOT NULL,
    password_hash TEXT,
    status        TEXT   NOT NULL,    -- active | disabled | locked
    claims        TEXT   NOT NULL,    -- JSON object of OpenID standard claims, groups, attributes
    source        TEXT   NOT NULL,
    config_hash   TEXT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    UNIQUE (domain, username)
);

-- Opaque access tokens and refresh tokens, by SHA-256 of the token.
CREATE TABLE tokens (
    hash       TEXT   NOT NULL PRIMARY KEY,
    domain     TEXT   NOT NULL,
    kind       TEXT   NOT NULL,        -- access | refresh
    client_id  TEXT   NOT NULL,
    sub        TEXT   NOT NULL,
    scope      TEXT   NOT NULL,
    aud        TEXT   NOT NULL,        -- JSON array
    claims     TEXT   NOT NULL,        -- JSON object of the token's custom claims
    jti        TEXT   NOT NULL,
    issued_at  BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX tokens_expires_at ON tokens (expires_at);

-- JWT access tokens revoked before they expire (RFC 7009), by jti.
CREATE TABLE revoked_jtis (
    domain     TEXT   NOT NULL,
    jti        TEXT   NOT NULL,
    client_id  TEXT   NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (domain, jti)
);
CREATE INDEX revoked_jtis_expires_at ON revoked_jtis (expires_at);

-- Leases that let exactly one replica run each background job at a time.
CREATE TABLE job_leases (
    name       TEXT   NOT NULL PRIMARY KEY,
    holder     TEXT   NOT NULL,
    expires_at BIGINT NOT NULL
);
