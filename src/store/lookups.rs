//! Key lookups of the hot read paths, made in groups: the lookups of one moment ask in one
//! statement (a VALUES list of their keys joined to the tables) instead of one statement each.
//! A lookup still reads the store after it was asked, so a revocation committed before the
//! request is always seen, and none is merged with another.
//! - JWT access tokens (introspection, userinfo): the jti's revocation and the subject's status;
//! - opaque tokens (introspection, revocation, userinfo): the token's row and its user's status;
//! - refresh-token families (refresh): the family with its user.

use std::future::Future;

use sqlx::{FromRow, Row};

use super::batch::{GroupWriter, SqlBySize, chunks_of, placeholder};
use super::pool::Pool;
use super::refresh::{FAMILY_COLUMNS, FamilyRow};
use super::{
    JOINED_USER_COLUMNS, JwtState, StoreError, StoreResult, TOKEN_COLUMNS, TokenRow, UserRow, joined_user,
    qualified,
};

/// One token's lookup: its domain, `jti` and `sub`.
pub(crate) struct JwtLookup {
    pub domain: String,
    pub jti: String,
    pub sub: String,
}

/// Lookups in one statement, largest first (a handful of statement shapes, each prepared once
/// per connection).
const SIZES: [usize; 7] = [64, 32, 16, 8, 4, 2, 1];

/// Reads `lookups` in statements of [`SIZES`]: `read` gets each chunk and answers for each of its
/// lookups, in order.
async fn in_statements<'a, L, A, Fut>(lookups: &'a [L], read: impl Fn(&'a [L]) -> Fut) -> StoreResult<Vec<A>>
where
    Fut: Future<Output = StoreResult<Vec<A>>>,
{
    let mut answers = Vec::with_capacity(lookups.len());
    for chunk in chunks_of(&SIZES, lookups) {
        let found = read(chunk).await?;
        if found.len() != chunk.len() {
            return Err(StoreError::Unavailable(
                "lookup: one answer per lookup expected".into(),
            ));
        }
        answers.extend(found);
    }
    Ok(answers)
}

/// The answers of `n` lookups from rows that each name their lookup by its index in the
/// statement (`lookup`); a lookup without a row found nothing.
fn by_lookup<A>(
    n: usize,
    found: impl IntoIterator<Item = StoreResult<(i64, A)>>,
) -> StoreResult<Vec<Option<A>>> {
    let mut answers: Vec<Option<A>> = (0..n).map(|_| None).collect();
    for row in found {
        let (lookup, answer) = row?;
        let slot = usize::try_from(lookup)
            .ok()
            .and_then(|i| answers.get_mut(i))
            .ok_or_else(|| StoreError::Unavailable("lookup: a row for no lookup".into()))?;
        *slot = Some(answer);
    }
    Ok(answers)
}

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

/// The reader of JWT states on `pool` (see the module's documentation), `lanes` groups in
/// flight at most.
pub(crate) fn jwt_state_reader(pool: Pool, lanes: usize) -> GroupWriter<JwtLookup, JwtState> {
    GroupWriter::start_lanes("JWT state", lanes, move |rows: Vec<JwtLookup>| {
        let pool = pool.clone();
        async move { in_statements(&rows, |chunk| read_jwt_states(&pool, chunk)).await }
    })
}

/// The state of each lookup of one statement, in order.
async fn read_jwt_states(pool: &Pool, chunk: &[JwtLookup]) -> StoreResult<Vec<JwtState>> {
    static SQL: SqlBySize = SqlBySize::new(jwt_states_sql);
    let found: Vec<(i64, i64)> = chunk
        .iter()
        .fold(sqlx::query_as(SQL.get(pool.positional(), chunk.len())), |q, l| {
            q.bind(&l.domain).bind(&l.jti).bind(&l.sub)
        })
        .fetch_all(pool)
        .await?;
    Ok(found
        .into_iter()
        .map(|(revoked, disabled)| JwtState {
            revoked: revoked > 0,
            user_disabled: disabled > 0,
        })
        .collect())
}

/// One opaque token's lookup: its domain and the SHA-256 of its value.
pub(crate) struct TokenLookup {
    pub domain: String,
    pub hash: String,
}

/// For `rows` VALUES rows `(i, hash, domain)`: `i`, the token row found and whether its `sub` is a
/// user of the domain who is not active. Lookups that find nothing have no row.
pub(super) fn tokens_and_users_sql(positional: bool, rows: usize) -> String {
    let values: Vec<String> = (0..rows)
        .map(|r| {
            let p = |c| placeholder(positional, r * 2 + c);
            format!("({r}, {}, {})", p(1), p(2))
        })
        .collect();
    format!(
        "SELECT CAST(k.column1 AS BIGINT) AS lookup, {}, \
         (SELECT COUNT(*) FROM users u WHERE u.domain = t.domain AND u.id = t.sub AND u.status <> 'active') \
         AS user_disabled \
         FROM (VALUES {}) AS k JOIN tokens t ON t.hash = k.column2 AND t.domain = k.column3",
        qualified(TOKEN_COLUMNS, "t"),
        values.join(", ")
    )
}

/// The reader of opaque tokens on `pool` (see the module's documentation), `lanes` groups in
/// flight at most.
pub(crate) fn token_reader(pool: Pool, lanes: usize) -> GroupWriter<TokenLookup, Option<(TokenRow, bool)>> {
    GroupWriter::start_lanes("token lookup", lanes, move |rows: Vec<TokenLookup>| {
        let pool = pool.clone();
        async move { in_statements(&rows, |chunk| read_tokens(&pool, chunk)).await }
    })
}

#[derive(FromRow)]
struct Found {
    lookup: i64,
    #[sqlx(flatten)]
    token: TokenRow,
    user_disabled: i64,
}

/// The token of each lookup of one statement (None when there is none), in order.
async fn read_tokens(pool: &Pool, chunk: &[TokenLookup]) -> StoreResult<Vec<Option<(TokenRow, bool)>>> {
    static SQL: SqlBySize = SqlBySize::new(tokens_and_users_sql);
    let found: Vec<Found> = chunk
        .iter()
        .fold(sqlx::query_as(SQL.get(pool.positional(), chunk.len())), |q, l| {
            q.bind(&l.hash).bind(&l.domain)
        })
        .fetch_all(pool)
        .await?;
    by_lookup(
        chunk.len(),
        found
            .into_iter()
            .map(|f| Ok((f.lookup, (f.token, f.user_disabled > 0)))),
    )
}

/// One refresh-token family's lookup: its domain and id.
pub(crate) struct FamilyLookup {
    pub domain: String,
    pub id: String,
}

/// For `rows` VALUES rows `(i, id, domain)`: `i`, the family found and its user (the user's
/// columns prefixed `u_`, all null when the user is gone). Lookups that find nothing have no row.
pub(super) fn families_with_users_sql(positional: bool, rows: usize) -> String {
    let values: Vec<String> = (0..rows)
        .map(|r| {
            let p = |c| placeholder(positional, r * 2 + c);
            format!("({r}, {}, {})", p(1), p(2))
        })
        .collect();
    format!(
        "SELECT CAST(k.column1 AS BIGINT) AS lookup, {}, {JOINED_USER_COLUMNS} \
         FROM (VALUES {}) AS k JOIN refresh_families f ON f.id = k.column2 AND f.domain = k.column3 \
         LEFT JOIN users u ON u.domain = f.domain AND u.id = f.user_id",
        qualified(FAMILY_COLUMNS, "f"),
        values.join(", ")
    )
}

/// A family and its user, as the store answers a lookup.
pub(crate) type FamilyWithUser = Option<(FamilyRow, Option<UserRow>)>;

/// The reader of refresh-token families on `pool` (see the module's documentation).
pub(crate) fn family_reader(pool: Pool) -> GroupWriter<FamilyLookup, FamilyWithUser> {
    GroupWriter::start("family lookup", move |rows: Vec<FamilyLookup>| {
        let pool = pool.clone();
        async move { in_statements(&rows, |chunk| read_families(&pool, chunk)).await }
    })
}

/// The family of each lookup of one statement with its user (None when there is none), in order.
async fn read_families(pool: &Pool, chunk: &[FamilyLookup]) -> StoreResult<Vec<FamilyWithUser>> {
    static SQL: SqlBySize = SqlBySize::new(families_with_users_sql);
    let found = chunk
        .iter()
        .fold(sqlx::query(SQL.get(pool.positional(), chunk.len())), |q, l| {
            q.bind(&l.id).bind(&l.domain)
        })
        .fetch_all(pool)
        .await?;
    by_lookup(
        chunk.len(),
        found
            .iter()
            .map(|r| Ok((r.try_get::<i64, _>("lookup")?, family_and_user(r)?))),
    )
}

/// A row of [`families_with_users_sql`] as the family and its user.
fn family_and_user(r: &sqlx::any::AnyRow) -> StoreResult<(FamilyRow, Option<UserRow>)> {
    let family = FamilyRow::from_row(r)?;
    let user = joined_user(r, &family.domain)?;
    Ok((family, user))
}
