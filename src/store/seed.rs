//! SQL for `ostiary seed`: bulk rows for load tests, generated inside the database by a
//! recursive CTE (one statement per table per batch, one transaction per batch).
//!
//! Each seeded user `i` gets an SSO session, the session's client record, a consent, a
//! refresh-token family with its current refresh token and one rotated predecessor, and the jti
//! of an access token issued in the family. Hashes are not digests of any token: no plaintext
//! exists for them, so no seeded token can ever be presented. Every `dead_every`-th user's rows
//! are already expired (for the garbage collector).

use sqlx::Connection;

use super::{SqlStore, StoreResult};

/// One batch of seeded users: `first..=last`, all in one domain and for one client.
#[derive(Debug, Clone)]
pub struct SeedBatch {
    /// First user number (inclusive).
    pub first: i64,
    /// Last user number (inclusive).
    pub last: i64,
    /// Unix seconds the rows are laid out around.
    pub now: i64,
    /// 32 characters unique to the run (base64url), so that runs never collide.
    pub salt: String,
    /// The domain.
    pub domain: String,
    /// The client the sessions, consents and families belong to.
    pub client_id: String,
    /// The scope consented to and granted to the families.
    pub scope: String,
    /// Every `dead_every`-th user's rows are expired; 0 for none.
    pub dead_every: i64,
    /// The domain's session_max_lifetime (seconds).
    pub session_max: i64,
    /// The domain's session_idle_timeout (seconds).
    pub session_idle: i64,
    /// The domain's refresh_token_max_lifetime (seconds).
    pub refresh_max: i64,
    /// The domain's refresh_token_idle_lifetime (seconds).
    pub refresh_idle: i64,
}

/// The numbers `$1..=$2` and, per number, everything the inserts share: `s` scrambles `i`
/// (a bijection mod 2^32, so keys are unique and arrive in random order, as real hashes do),
/// `born` is the session's sign-in, `fborn` the family's start (offline families, odd `i`, are
/// spread over half the refresh lifetime; the others end with their session at `fexp`), `iss`
/// the current refresh token's issue time, `prev` its predecessor's.
/// Expired users (`dead`) are laid out entirely in the past.
const CTE: &str = "WITH RECURSIVE n(i) AS (SELECT CAST($1 AS BIGINT) UNION ALL SELECT i + 1 FROM n WHERE i < $2), \
  a AS (SELECT i, (i * 2654435761) % 4294967296 AS s, \
    CASE WHEN $6 > 0 AND i % $6 = 0 THEN 1 ELSE 0 END AS dead, CAST($3 AS BIGINT) AS now, \
    $4 AS salt, $5 AS dom, $7 AS cid, $8 AS scope, \
    CAST($9 AS BIGINT) AS smax, CAST($10 AS BIGINT) AS sidle, CAST($11 AS BIGINT) AS rmax, CAST($12 AS BIGINT) AS ridle \
    FROM n), \
  b AS (SELECT a.*, CAST(i AS TEXT) AS k, CAST(s + 1000000000 AS TEXT) AS h, \
    CASE WHEN dead = 1 THEN now - smax - 3600 - s % 86400 ELSE now - s % (smax * 9 / 10 + 1) END AS born, \
    CASE WHEN dead = 1 THEN now - rmax - 3600 - s % 86400 \
         WHEN i % 2 = 1 THEN now - s % (rmax / 2 + 1) \
         ELSE now - s % (smax * 9 / 10 + 1) END AS fborn \
    FROM a), \
  c AS (SELECT b.*, \
    CASE WHEN dead = 1 THEN born WHEN now - s % (sidle / 2 + 1) < born THEN born ELSE now - s % (sidle / 2 + 1) END AS seen, \
    CASE WHEN dead = 1 THEN fborn + 60 WHEN now - s % (ridle / 2 + 1) < fborn THEN fborn ELSE now - s % (ridle / 2 + 1) END AS iss, \
    CASE WHEN i % 2 = 0 AND born + smax < fborn + rmax THEN born + smax ELSE fborn + rmax END AS fexp \
    FROM b), \
  d AS (SELECT c.*, CASE WHEN iss - 60 - s % 3600 < fborn THEN fborn ELSE iss - 60 - s % 3600 END AS prev FROM c) ";

/// Per table: the columns and the SELECT over the CTE's rows `d`.
const INSERTS: [&str; 8] = [
    "INSERT INTO users (id, domain, username, password_hash, status, claims, source, config_hash, created_at, updated_at) \
     SELECT 'u' || salt || k, dom, 'seed-' || substr(salt, 1, 8) || '-' || k, NULL, 'active', \
     '{\"name\":\"Seed User ' || k || '\",\"email\":\"seed' || k || '@example.test\"}', 'store', NULL, \
     fborn - 86400 - s % 8640000, fborn - 86400 FROM d",
    "INSERT INTO sessions (hash, domain, sid, user_id, auth_time, amr, created_at, last_seen, expires_at, idle_timeout, \
     ended_at, user_agent) \
     SELECT 's' || salt || h, dom, 'i' || salt || h, 'u' || salt || k, born, '[\"pwd\"]', born, seen, born + smax, sidle, \
     NULL, 'Mozilla/5.0 (X11; Linux x86_64) seeded' FROM d",
    "INSERT INTO session_clients (domain, sid, client_id, user_id, created_at, expires_at) \
     SELECT dom, 'i' || salt || h, cid, 'u' || salt || k, born, born + smax FROM d",
    "INSERT INTO consents (domain, user_id, client_id, scope, created_at, updated_at) \
     SELECT dom, 'u' || salt || k, cid, scope, fborn - 60, fborn - 60 FROM d",
    "INSERT INTO refresh_families (id, domain, client_id, user_id, scope, sid, offline, auth_time, amr, claims, \
     created_at, expires_at, revoked_at) \
     SELECT 'f' || salt || h, dom, cid, 'u' || salt || k, scope, 'i' || salt || h, i % 2, fborn, '[\"pwd\"]', NULL, \
     fborn, fexp, NULL FROM d",
    // The current refresh token of each family.
    "INSERT INTO tokens (hash, domain, kind, client_id, sub, scope, aud, claims, jti, issued_at, expires_at, \
     revoked_at, family_id, used_at) \
     SELECT 't' || salt || h, dom, 'refresh', cid, 'u' || salt || k, scope, '[]', '{}', 't' || salt || h, iss, \
     CASE WHEN iss + ridle < fexp THEN iss + ridle ELSE fexp END, NULL, 'f' || salt || h, NULL FROM d",
    // Its rotated predecessor, issued at `prev` and rotated at `iss`.
    "INSERT INTO tokens (hash, domain, kind, client_id, sub, scope, aud, claims, jti, issued_at, expires_at, \
     revoked_at, family_id, used_at) \
     SELECT 'r' || salt || h, dom, 'refresh', cid, 'u' || salt || k, scope, '[]', '{}', 'r' || salt || h, prev, \
     CASE WHEN prev + ridle < fexp THEN prev + ridle ELSE fexp END, NULL, 'f' || salt || h, iss FROM d",
    "INSERT INTO family_jtis (domain, family_id, jti, expires_at) \
     SELECT dom, 'f' || salt || h, 'a' || salt || h, CASE WHEN dead = 1 THEN now - 3600 ELSE now + 600 + s % 3000 END FROM d",
];

impl SqlStore {
    /// Inserts one batch of seeded users and their rows in one transaction; returns the number of
    /// rows inserted.
    pub async fn seed_batch(&self, b: &SeedBatch) -> StoreResult<u64> {
        let mut conn = self.writer.acquire().await?;
        let mut tx = conn.begin().await?;
        let mut rows = 0;
        for insert in INSERTS {
            let r = sqlx::query(sqlx::AssertSqlSafe(format!("{CTE}{insert}")))
                .bind(b.first)
                .bind(b.last)
                .bind(b.now)
                .bind(&b.salt)
                .bind(&b.domain)
                .bind(b.dead_every)
                .bind(&b.client_id)
                .bind(&b.scope)
                .bind(b.session_max)
                .bind(b.session_idle)
                .bind(b.refresh_max)
                .bind(b.refresh_idle)
                .execute(&mut *tx)
                .await?;
            rows += r.rows_affected();
        }
        tx.commit().await?;
        conn.release();
        Ok(rows)
    }

    /// Refreshes the planner's statistics after a bulk load.
    pub async fn analyze(&self) -> StoreResult<()> {
        sqlx::query("ANALYZE").execute(&self.pool).await?;
        Ok(())
    }
}
