//! SQL for refresh-token families: the grant a refresh token belongs to, rotation (one atomic
//! conditional update) and revocation of a whole family.

use std::future::Future;
use std::sync::LazyLock;

use sqlx::{FromRow, Row};

use std::collections::HashSet;

use super::batch::{GroupWriter, Insertable, SqlBySize, chunks, in_one_commit, insert_sql, placeholder};
use super::pool::Pool;
use super::{SqlStore, StoreResult, TOKEN_COLUMNS, TokenRow, UserRow};

/// An access token issued in a family, recorded so that revoking the family revokes it (until it
/// expires). Committed in groups, like tokens.
#[derive(Debug, Clone)]
pub struct FamilyJtiRow {
    pub domain: String,
    pub family_id: String,
    pub jti: String,
    pub expires_at: i64,
}

impl Insertable for FamilyJtiRow {
    const WHAT: &'static str = "family access token id";
    const TABLE: &'static str = "family_jtis";
    const COLUMNS: &'static str = "domain, family_id, jti, expires_at";
    // Recorded once: a retry records nothing more.
    const ON_CONFLICT: &'static str = " ON CONFLICT (domain, jti) DO NOTHING";
    fn bind<'q>(&'q self, q: super::batch::AnyQuery<'q>) -> super::batch::AnyQuery<'q> {
        q.bind(&self.domain)
            .bind(&self.family_id)
            .bind(&self.jti)
            .bind(self.expires_at)
    }
    fn inserts() -> &'static SqlBySize {
        static INSERTS: SqlBySize = SqlBySize::new(insert_sql::<FamilyJtiRow>);
        &INSERTS
    }
}

/// A refresh-token family: one grant, many rotated tokens.
#[derive(Debug, Clone, FromRow)]
pub struct FamilyRow {
    pub id: String,
    pub domain: String,
    pub client_id: String,
    pub user_id: String,
    pub scope: String,
    pub sid: String,
    pub offline: i64,
    pub auth_time: i64,
    pub amr: String,
    /// JSON of the OpenID claims request.
    pub claims: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
}

pub(super) const FAMILY_COLUMNS: &str = "id, domain, client_id, user_id, scope, sid, offline, auth_time, amr, claims, \
    created_at, expires_at, revoked_at";

pub(super) static FIND_FAMILY: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {FAMILY_COLUMNS} FROM refresh_families WHERE id = $1 AND domain = $2"));
/// The refresh tokens of `rows` keys `(hash, domain, client_id)` used up at `$1`, each only when
/// it is an unused, unrevoked refresh token of that client without a certificate binding (one
/// atomic conditional update per token); returns the rows it used up. The keys are an OR of
/// equalities, which both databases search along the key's index once the table has statistics
/// (an `IN (VALUES ..)` list was planned as a scan of the whole table on a young PostgreSQL
/// database: 3 to 5 ms a statement, `bench/results/2026-12-02-refresh-grouped.txt`). Before its
/// first ANALYZE, PostgreSQL's plan for one group's values (all of one domain and client) may
/// still read the domain's rows along `tokens_jti` (dropped since, by migration 9): 1 to 3 ms for 32 keys among 2,000 tokens,
/// about what the 32 updates themselves cost, so it was left as it is
/// (`bench/results/2026-12-02-refresh-plans.txt`).
pub(super) fn take_refreshes_sql(positional: bool, rows: usize) -> String {
    let keys: Vec<String> = (0..rows)
        .map(|r| {
            let p = |c| placeholder(positional, 1 + r * 3 + c);
            format!("(hash = {} AND domain = {} AND client_id = {})", p(1), p(2), p(3))
        })
        .collect();
    format!(
        "UPDATE tokens SET used_at = {} WHERE ({}) \
         AND kind = 'refresh' AND claims = '{{}}' AND used_at IS NULL AND revoked_at IS NULL \
         RETURNING {TOKEN_COLUMNS}",
        placeholder(positional, 1),
        keys.join(" OR ")
    )
}

/// A refresh token to use up: the conditional update of [`take_refreshes_sql`].
pub(crate) struct Take {
    pub domain: String,
    pub hash: String,
    pub client_id: String,
    pub now: i64,
}

/// The writer of rotations: the refresh tokens of concurrent refreshes are used up in one
/// statement. Each is still used up once: of two requests presenting one token, only the first
/// in the group gets its row.
pub(crate) fn take_writer(pool: Pool) -> GroupWriter<Take, Option<TokenRow>> {
    GroupWriter::start("refresh rotation", move |takes: Vec<Take>| {
        let pool = pool.clone();
        async move { take_refreshes(&pool, &takes).await }
    })
}

/// Uses up the tokens of `takes` (those of one `now` together, in one statement of up to the
/// largest insert size each); the row of each one used up. The statements are one commit: when
/// one fails, none of the group's tokens is used up (all its requests are told the store is
/// unavailable, and their clients' retries find their tokens as they were).
async fn take_refreshes(pool: &Pool, takes: &[Take]) -> StoreResult<Vec<Option<TokenRow>>> {
    let mut answers: Vec<Option<TokenRow>> = takes.iter().map(|_| None).collect();
    let mut times: Vec<i64> = takes.iter().map(|t| t.now).collect();
    times.sort_unstable();
    times.dedup();
    static SQL: SqlBySize = SqlBySize::new(take_refreshes_sql);
    let mut asked: Vec<Vec<usize>> = Vec::new();
    let mut statements = Vec::new();
    for now in times {
        let group: Vec<usize> = (0..takes.len()).filter(|i| takes[*i].now == now).collect();
        for chunk in chunks(&group) {
            let sql = SQL.get(pool.positional(), chunk.len());
            statements.push(chunk.iter().fold(sqlx::query(sql).bind(now), |q, i| {
                let t = &takes[*i];
                q.bind(&t.hash).bind(&t.domain).bind(&t.client_id)
            }));
            asked.push(chunk.to_vec());
        }
    }
    for (chunk, rows) in asked.iter().zip(in_one_commit(pool, statements).await?) {
        for row in rows {
            let row = TokenRow::from_row(&row)?;
            // The first of this chunk's requests for the row; none other gets it.
            let first = chunk.iter().find(|i| {
                let t = &takes[**i];
                answers[**i].is_none()
                    && t.hash == row.hash
                    && t.domain == row.domain
                    && t.client_id == row.client_id
            });
            if let Some(i) = first {
                answers[*i] = Some(row);
            }
        }
    }
    Ok(answers)
}

/// The insert of `rows` successors (refresh tokens of rotations), each stored only while its
/// family is unrevoked and its hash new; returns the hashes stored. The rows are a VALUES list
/// (columns `column1`.. on both databases) in [`TOKEN_COLUMNS`] order, its integer columns cast:
/// PostgreSQL types a VALUES list from its own values, not from the insert's columns.
///
/// The family is checked by a scalar subquery (its state, NULL when there is none), not by
/// EXISTS: PostgreSQL turns an EXISTS into a join, and on a database not yet analyzed (a new
/// deployment's first minute) it joined a scan of the families to the VALUES list and scanned
/// the list again for every family, 2 ms for 8 rows of 65 families. A scalar subquery stays a
/// lookup by the family's key for each row, the list read once.
pub(super) fn insert_successors_sql(positional: bool, rows: usize) -> String {
    /// The integer columns of TOKEN_COLUMNS (1-based): issued_at, expires_at, revoked_at, used_at.
    const INTEGER: [usize; 4] = [10, 11, 12, 14];
    let columns = TOKEN_COLUMNS.split(',').count();
    let values: Vec<String> = (0..rows)
        .map(|r| {
            let row: Vec<String> = (1..=columns)
                .map(|c| {
                    let p = placeholder(positional, r * columns + c);
                    if INTEGER.contains(&c) {
                        format!("CAST({p} AS BIGINT)")
                    } else {
                        p
                    }
                })
                .collect();
            format!("({})", row.join(", "))
        })
        .collect();
    let select: Vec<String> = (1..=columns).map(|c| format!("v.column{c}")).collect();
    format!(
        "INSERT INTO tokens ({TOKEN_COLUMNS}) SELECT {} FROM (VALUES {}) AS v \
         WHERE (SELECT f.revoked_at IS NULL FROM refresh_families f \
         WHERE f.id = v.column13 AND f.domain = v.column2) ON CONFLICT (hash) DO NOTHING RETURNING hash",
        select.join(", "),
        values.join(", ")
    )
}

/// The writer of successors: the rotations of concurrent refreshes are stored in one commit.
pub(crate) fn successor_writer(pool: Pool) -> GroupWriter<TokenRow, bool> {
    GroupWriter::start("refresh token", move |rows: Vec<TokenRow>| {
        let pool = pool.clone();
        async move { insert_successors(&pool, &rows).await }
    })
}

/// Stores `rows` in one commit; for each, true when it was stored (its family unrevoked, its
/// hash new). Of two rows with one hash in a group (a retry beside its original), the first.
/// The rows go in the order of their hashes, so that two groups sharing a hash (a retry on
/// another replica) wait for each other rather than deadlock.
async fn insert_successors(pool: &Pool, rows: &[TokenRow]) -> StoreResult<Vec<bool>> {
    let mut sorted: Vec<&TokenRow> = rows.iter().collect();
    sorted.sort_by(|a, b| a.hash.cmp(&b.hash));
    static SQL: SqlBySize = SqlBySize::new(insert_successors_sql);
    let statements = chunks(&sorted)
        .map(|chunk| {
            let sql = SQL.get(pool.positional(), chunk.len());
            chunk.iter().fold(sqlx::query(sql), |q, row| row.bind(q))
        })
        .collect();
    let mut stored = HashSet::new();
    for row in in_one_commit(pool, statements).await?.into_iter().flatten() {
        stored.insert(row.try_get::<String, _>(0)?);
    }
    Ok(rows.iter().map(|r| stored.remove(&r.hash)).collect())
}
pub(super) const ROTATE_REFRESH: &str = "UPDATE tokens SET used_at = $3 WHERE hash = $1 AND domain = $2 \
     AND kind = 'refresh' AND used_at IS NULL AND revoked_at IS NULL";
pub(super) const REVOKE_FAMILY: &str =
    "UPDATE refresh_families SET revoked_at = $3 WHERE id = $1 AND domain = $2 AND revoked_at IS NULL";

/// Refresh-token families.
pub trait RefreshStore {
    /// Stores a new family.
    fn insert_family(&self, f: &FamilyRow) -> impl Future<Output = StoreResult<()>> + Send;
    /// The family with this id, whatever its state.
    fn find_family(
        &self,
        domain: &str,
        id: &str,
    ) -> impl Future<Output = StoreResult<Option<FamilyRow>>> + Send;
    /// Marks an unrotated refresh token rotated at `now`; true for exactly one caller, however
    /// many race (single use).
    fn rotate_refresh(
        &self,
        domain: &str,
        hash: &str,
        now: i64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Records an access token issued in a family (until it expires).
    fn add_family_jti(
        &self,
        domain: &str,
        family_id: &str,
        jti: &str,
        expires_at: i64,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// The family with this id and its user (None when the user is gone), in one read.
    fn find_family_with_user(
        &self,
        domain: &str,
        id: &str,
    ) -> impl Future<Output = StoreResult<Option<(FamilyRow, Option<UserRow>)>>> + Send;
    /// One conditional update that uses up a live, unrotated, unbound (no certificate binding)
    /// refresh token of `client_id` and returns it as it is now; None when no such token exists
    /// (the caller then checks why the slow way). Single use as [`RefreshStore::rotate_refresh`].
    fn take_refresh(
        &self,
        domain: &str,
        hash: &str,
        client_id: &str,
        now: i64,
    ) -> impl Future<Output = StoreResult<Option<TokenRow>>> + Send;
    /// Stores the successor refresh token of a rotation only while its family is unrevoked;
    /// false when nothing was stored (the family was revoked, or the same successor exists: a
    /// retry). Call it after recording the access token's jti, so that a revocation that this
    /// insert did not see finds that jti.
    fn insert_successor(&self, token: &TokenRow) -> impl Future<Output = StoreResult<bool>> + Send;
    /// The jtis of the access tokens issued in a family.
    fn family_jtis(&self, domain: &str, id: &str) -> impl Future<Output = StoreResult<Vec<String>>> + Send;
    /// Revokes a family: the family row and every token in it. Returns the jtis of the access
    /// tokens issued in it (JWTs are revoked by jti by the caller).
    fn revoke_family(
        &self,
        domain: &str,
        id: &str,
        now: i64,
    ) -> impl Future<Output = StoreResult<Vec<String>>> + Send;
}

/// Revokes the live tokens of the families `family_filter` (`$1` domain, `$2` its argument) names.
pub(super) fn revoke_family_tokens_sql(family_filter: &str) -> String {
    format!(
        "UPDATE tokens SET revoked_at = $3 WHERE domain = $1 AND revoked_at IS NULL \
         AND family_id IN ({family_filter})"
    )
}

impl SqlStore {
    async fn revoke_family_tokens(
        &self,
        domain: &str,
        family_filter: &str,
        arg: &str,
        now: i64,
    ) -> StoreResult<()> {
        sqlx::query(sqlx::AssertSqlSafe(revoke_family_tokens_sql(family_filter)))
            .bind(domain)
            .bind(arg)
            .bind(now)
            .execute(&self.writer)
            .await?;
        Ok(())
    }
}

pub(super) const FAMILY_JTIS: &str = "SELECT jti FROM family_jtis WHERE domain = $1 AND family_id = $2";

impl RefreshStore for SqlStore {
    async fn insert_family(&self, f: &FamilyRow) -> StoreResult<()> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO refresh_families ({FAMILY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        )))
        .bind(&f.id)
        .bind(&f.domain)
        .bind(&f.client_id)
        .bind(&f.user_id)
        .bind(&f.scope)
        .bind(&f.sid)
        .bind(f.offline)
        .bind(f.auth_time)
        .bind(&f.amr)
        .bind(&f.claims)
        .bind(f.created_at)
        .bind(f.expires_at)
        .bind(f.revoked_at)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn find_family(&self, domain: &str, id: &str) -> StoreResult<Option<FamilyRow>> {
        Ok(sqlx::query_as(FIND_FAMILY.as_str())
            .bind(id)
            .bind(domain)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn find_family_with_user(
        &self,
        domain: &str,
        id: &str,
    ) -> StoreResult<Option<(FamilyRow, Option<UserRow>)>> {
        self.family_lookups
            .submit(super::lookups::FamilyLookup {
                domain: domain.to_string(),
                id: id.to_string(),
            })
            .await
    }

    async fn take_refresh(
        &self,
        domain: &str,
        hash: &str,
        client_id: &str,
        now: i64,
    ) -> StoreResult<Option<TokenRow>> {
        self.takes
            .submit(Take {
                domain: domain.to_string(),
                hash: hash.to_string(),
                client_id: client_id.to_string(),
                now,
            })
            .await
    }

    async fn insert_successor(&self, t: &TokenRow) -> StoreResult<bool> {
        self.successors.submit(t.clone()).await
    }

    async fn rotate_refresh(&self, domain: &str, hash: &str, now: i64) -> StoreResult<bool> {
        let r = sqlx::query(ROTATE_REFRESH)
            .bind(hash)
            .bind(domain)
            .bind(now)
            .execute(&self.writer)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn add_family_jti(
        &self,
        domain: &str,
        family_id: &str,
        jti: &str,
        expires_at: i64,
    ) -> StoreResult<()> {
        self.family_jtis
            .submit(FamilyJtiRow {
                domain: domain.to_string(),
                family_id: family_id.to_string(),
                jti: jti.to_string(),
                expires_at,
            })
            .await
    }

    async fn family_jtis(&self, domain: &str, id: &str) -> StoreResult<Vec<String>> {
        let jtis: Vec<(String,)> = sqlx::query_as(FAMILY_JTIS)
            .bind(domain)
            .bind(id)
            .fetch_all(&self.pool)
            .await?;
        Ok(jtis.into_iter().map(|r| r.0).collect())
    }

    async fn revoke_family(&self, domain: &str, id: &str, now: i64) -> StoreResult<Vec<String>> {
        sqlx::query(REVOKE_FAMILY)
            .bind(id)
            .bind(domain)
            .bind(now)
            .execute(&self.writer)
            .await?;
        let jtis = self.family_jtis(domain, id).await?;
        self.revoke_family_tokens(domain, "$2", id, now).await?;
        Ok(jtis)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    /// A group of takes in several statements (here two times) is one commit: when the second
    /// statement fails, the token the first used up is not used up (its request, told the store
    /// is unavailable, is retried by its client, which would otherwise present a used token: a
    /// replay, and its family revoked).
    #[tokio::test]
    async fn a_group_of_takes_that_fails_uses_up_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqlStore::for_tests(&dir).await;
        for hash in ["a", "b"] {
            sqlx::query(
                "INSERT INTO tokens (hash, domain, kind, client_id, sub, scope, aud, claims, jti, issued_at, expires_at) \
                 VALUES ($1, 'd', 'refresh', 'c', 'u', 'openid', '[]', '{}', $1, 0, 1000)",
            )
            .bind(hash)
            .execute(&store.writer)
            .await
            .unwrap();
        }
        sqlx::query(
            "CREATE TRIGGER no_b BEFORE UPDATE OF used_at ON tokens FOR EACH ROW WHEN OLD.hash = 'b' \
             BEGIN SELECT RAISE(ABORT, 'injected fault'); END",
        )
        .execute(&store.writer)
        .await
        .unwrap();
        let take = |hash: &str, now| Take {
            domain: "d".into(),
            hash: hash.into(),
            client_id: "c".into(),
            now,
        };
        let taken = take_refreshes(&store.writer, &[take("a", 100), take("b", 101)]).await;
        assert!(taken.is_err());
        let used: Vec<(String, Option<i64>)> =
            sqlx::query_as("SELECT hash, used_at FROM tokens ORDER BY hash")
                .fetch_all(&store.writer)
                .await
                .unwrap();
        assert_eq!(used, [("a".to_string(), None), ("b".to_string(), None)]);
        // Alone, a is used up.
        let taken = take_refreshes(&store.writer, &[take("a", 102)]).await.unwrap();
        assert_eq!(taken[0].as_ref().map(|t| t.used_at), Some(Some(102)));
    }
}
