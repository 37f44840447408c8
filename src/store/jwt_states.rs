//! The store's part of JWT access tokens' validity, looked up in groups: the introspections and
//! userinfo calls of one moment ask in one statement (a VALUES list of the tokens, each joined
//! to `revoked_jtis` and `users`) instead of one statement each. A lookup still reads the store
//! after it was asked, so a revocation committed before the request is always seen.

use super::batch::{GroupWriter, placeholder};
use super::pool::Pool;
use super::{JwtState, StoreError, StoreResult};

/// One token's lookup: its domain, `jti` and `sub`.
pub(crate) struct JwtLookup {
    pub domain: String,
    pub jti: String,
    pub sub: String,
}

/// Lookups in one statement, largest first (a handful of statement shapes, each prepared once
/// per connection).
const SIZES: [usize; 7] = [64, 32, 16, 8, 4, 2, 1];

/// For `rows` VALUES rows `(i, domain, jti, sub)`: whether the jti is revoked and whether the
/// subject is a user of the domain who is not active, as counts, in the order of `i`.
pub(super) fn jwt_states_sql(positional: bool, rows: usize) -> String {
    let values: Vec<String> = (0..rows)
        .map(|r| {
            let p = |c| placeholder(positional, r * 3 + c);
            format!("({r}, {}, {}, {})", p(1), p(2), p(3))
        })
        .collect();
    format!(
        "SELECT (SELECT COUNT(*) FROM revoked_jtis r WHERE r.domain = k.column2 AND r.jti = k.column3), \
         (SELECT COUNT(*) FROM users u WHERE u.domain = k.column2 AND u.id = k.column4 AND u.status <> 'active') \
         FROM (VALUES {}) AS k ORDER BY k.column1",
        values.join(", ")
    )
}

/// The reader of JWT states on `pool` (see the module's documentation).
pub(crate) fn jwt_state_reader(pool: Pool) -> GroupWriter<JwtLookup, JwtState> {
    GroupWriter::start("JWT state", move |rows: Vec<JwtLookup>| {
        let pool = pool.clone();
        async move { read(&pool, &rows).await }
    })
}

/// The state of each lookup, in order.
async fn read(pool: &Pool, lookups: &[JwtLookup]) -> StoreResult<Vec<JwtState>> {
    let mut states = Vec::with_capacity(lookups.len());
    let mut rest = lookups;
    while let Some(n) = SIZES.into_iter().find(|n| *n <= rest.len()) {
        let (chunk, tail) = rest.split_at(n);
        let sql = jwt_states_sql(pool.positional(), n);
        let found: Vec<(i64, i64)> = chunk
            .iter()
            .fold(sqlx::query_as(sqlx::AssertSqlSafe(sql)), |q, l| {
                q.bind(&l.domain).bind(&l.jti).bind(&l.sub)
            })
            .fetch_all(pool)
            .await?;
        if found.len() != n {
            return Err(StoreError::Unavailable(
                "JWT state: one row per lookup expected".into(),
            ));
        }
        states.extend(found.into_iter().map(|(revoked, disabled)| JwtState {
            revoked: revoked > 0,
            user_disabled: disabled > 0,
        }));
        rest = tail;
    }
    Ok(states)
}
