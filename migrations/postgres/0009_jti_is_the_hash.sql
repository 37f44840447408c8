-- A stored token's jti is its hash (version 9, PostgreSQL). Never edited once applied.
--
-- Opaque access tokens and refresh tokens are now issued with their hash as their jti, so that
-- revoking the access token issued from a reused code, or in a revoked refresh-token family,
-- finds its row by the table's key. The random index `tokens_jti` cost every issued token one
-- more page written at a random place, which on SQLite bounds how fast the log is copied back
-- (bench/results/2026-12-03-tokens-jti-dropped.txt). Tokens issued before keep their jti, and
-- what refers to them by it (the codes that issued them, the families they were issued in)
-- now holds their hash instead. JWTs are untouched: their jti stays random.

UPDATE family_jtis SET jti = t.hash
  FROM tokens t WHERE t.jti = family_jtis.jti AND t.domain = family_jtis.domain;
UPDATE auth_codes SET access_jti = t.hash
  FROM tokens t WHERE t.jti = auth_codes.access_jti AND t.domain = auth_codes.domain;
UPDATE device_codes SET access_jti = t.hash
  FROM tokens t WHERE t.jti = device_codes.access_jti AND t.domain = device_codes.domain;

DROP INDEX tokens_jti;
