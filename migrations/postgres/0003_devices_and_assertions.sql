-- Devices and assertions (version 3, PostgreSQL): device authorization grants (RFC 8628) and the
-- jti of every assertion accepted while it is valid (RFC 7523 replay protection). Never edited
-- once applied.

-- A device authorization, by SHA-256 of its device_code; the user code is stored as SHA-256 of
-- its normalized form (8 letters, no dash). `status` is pending, approved or denied; the
-- decision and the redemption (used_at) are each one atomic conditional update.
CREATE TABLE device_codes (
    hash               TEXT   NOT NULL PRIMARY KEY,
    domain             TEXT   NOT NULL,
    user_code_hash     TEXT   NOT NULL,
    client_id          TEXT   NOT NULL,
    scope              TEXT   NOT NULL,
    status             TEXT   NOT NULL,
    user_id            TEXT,
    sid                TEXT,
    auth_time          BIGINT,
    amr                TEXT,
    session_expires_at BIGINT,
    poll_interval      BIGINT NOT NULL,   -- grows by 5 s on each slow_down (RFC 8628 s3.5)
    last_polled_at     BIGINT,
    issued_at          BIGINT NOT NULL,
    expires_at         BIGINT NOT NULL,
    decided_at         BIGINT,
    used_at            BIGINT
);
CREATE UNIQUE INDEX device_codes_user_code ON device_codes (domain, user_code_hash);
CREATE INDEX device_codes_expires_at ON device_codes (expires_at);

-- Assertions already accepted (client assertions and JWT bearer grants), by issuer and jti,
-- kept until the assertion expires so that a replay is refused.
CREATE TABLE assertion_jtis (
    domain     TEXT   NOT NULL,
    issuer     TEXT   NOT NULL,
    jti        TEXT   NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (domain, issuer, jti)
);
CREATE INDEX assertion_jtis_expires_at ON assertion_jtis (expires_at);
