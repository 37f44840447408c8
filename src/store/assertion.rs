//! SQL for assertion replay protection (RFC 7523 s3): the jti of every accepted assertion, kept
//! until the assertion expires.

use std::future::Future;

use std::collections::HashSet;

use sqlx::Row;

use super::batch::{GroupWriter, SqlBySize, chunks, in_one_commit, placeholder, values_placeholders};
use super::pool::Pool;
use super::{SqlStore, StoreResult};

/// Accepted assertion ids.
pub trait AssertionStore {
    /// Records `jti` of `issuer` as used until `expires_at`. True the first time; false when it
    /// was already used and has not expired (a replay). One atomic statement, so two replicas
    /// racing with the same assertion cannot both accept it.
    fn use_assertion_jti(
        &self,
        domain: &str,
        issuer: &str,
        jti: &str,
        expires_at: i64,
        now: i64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
}

impl AssertionStore for SqlStore {
    async fn use_assertion_jti(
        &self,
        domain: &str,
        issuer: &str,
        jti: &str,
        expires_at: i64,
        now: i64,
    ) -> StoreResult<bool> {
        self.jtis
            .submit(UsedJti {
                domain: domain.to_string(),
                issuer: issuer.to_string(),
                jti: jti.to_string(),
                expires_at,
                now,
            })
            .await
    }
}

/// One assertion id to record.
#[derive(Debug)]
pub(crate) struct UsedJti {
    domain: String,
    issuer: String,
    jti: String,
    expires_at: i64,
    now: i64,
}

/// The writer of assertion ids: the ids of concurrent requests are recorded in one commit. Each
/// group writes its ids in one order (sorted), so that two groups of two replicas that share ids
/// (replays) wait for each other rather than deadlock.
pub(crate) fn jti_writer(pool: Pool) -> GroupWriter<UsedJti, bool> {
    GroupWriter::start("assertion id", move |rows: Vec<UsedJti>| {
        let pool = pool.clone();
        async move { use_jtis(&pool, &rows).await }
    })
}

/// The record of `rows` assertion ids (`domain, issuer, jti, expires_at` each, then the group's
/// time): a new id is inserted, an expired one taken over; the ids taken are returned.
fn record_jtis_sql(positional: bool, rows: usize) -> String {
    format!(
        "INSERT INTO assertion_jtis (domain, issuer, jti, expires_at) VALUES {} \
         ON CONFLICT (domain, issuer, jti) DO UPDATE SET expires_at = excluded.expires_at \
         WHERE assertion_jtis.expires_at < {} RETURNING domain, issuer, jti",
        values_placeholders(positional, rows, 4),
        placeholder(positional, rows * 4 + 1)
    )
}

/// Records `rows` in one commit; for each, true when this row took its id (first use, or the
/// previous use expired), false for a replay. Within one group only the first row of an id can
/// take it. A row left by an expired assertion (not yet collected) is taken over: expired by the
/// earliest clock of the group, so that no row counts as expired before its own request's time.
async fn use_jtis(pool: &Pool, rows: &[UsedJti]) -> StoreResult<Vec<bool>> {
    let mut seen = HashSet::new();
    let first: Vec<bool> = rows
        .iter()
        .map(|r| seen.insert((r.domain.as_str(), r.issuer.as_str(), r.jti.as_str())))
        .collect();
    let mut unique: Vec<&UsedJti> = rows
        .iter()
        .zip(&first)
        .filter(|(_, f)| **f)
        .map(|(r, _)| r)
        .collect();
    unique.sort_by(|a, b| (&a.domain, &a.issuer, &a.jti).cmp(&(&b.domain, &b.issuer, &b.jti)));
    let now = rows.iter().map(|r| r.now).min().unwrap_or_default();
    static SQL: SqlBySize = SqlBySize::new(record_jtis_sql);
    let statements = chunks(&unique)
        .map(|chunk| {
            chunk
                .iter()
                .fold(sqlx::query(SQL.get(pool.positional(), chunk.len())), |q, r| {
                    q.bind(&r.domain).bind(&r.issuer).bind(&r.jti).bind(r.expires_at)
                })
                .bind(now)
        })
        .collect();
    let mut taken = HashSet::new();
    for row in in_one_commit(pool, statements).await?.into_iter().flatten() {
        let key: (String, String, String) = (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
        taken.insert(key);
    }
    Ok(rows
        .iter()
        .zip(first)
        .map(|(r, first)| first && taken.contains(&(r.domain.clone(), r.issuer.clone(), r.jti.clone())))
        .collect())
}
