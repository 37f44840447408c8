-- A device code remembers what it issued (version 8). Never edited once applied.
--
-- RFC 6749 s4.1.2 for authorization codes, applied to device codes (RFC 8628): a code presented
-- again after its redemption is refused and the tokens issued from it are revoked. As for
-- auth_codes, the redemption records the access token's jti (and when it expires) and the
-- refresh-token family it started; a replay sets reused_at.
ALTER TABLE device_codes ADD COLUMN access_jti TEXT;
ALTER TABLE device_codes ADD COLUMN access_expires_at BIGINT;
ALTER TABLE device_codes ADD COLUMN family_id TEXT;
ALTER TABLE device_codes ADD COLUMN reused_at BIGINT;
