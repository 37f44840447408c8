//! SQL for browser sign-in: pending authorization requests, sessions, codes and consents.

use std::future::Future;
use std::sync::LazyLock;

use sqlx::{FromRow, Row};

use super::batch::{AnyQuery, Insertable, SqlBySize, insert_sql};
use super::{JOINED_USER_COLUMNS, SqlStore, StoreResult, UserRow, joined_user, qualified};

/// A pending authorization request.
#[derive(Debug, Clone, FromRow)]
pub struct AuthRequestRow {
    pub id: String,
    pub domain: String,
    pub client_id: String,
    pub params: String,
    pub csrf_hash: String,
    pub created_at: i64,
    pub expires_at: i64,
}

/// What the store holds about a throttling bucket with failures on record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Its failures within the day (older ones no longer count: the next failure starts again).
    pub failures: i64,
    /// When its lock ends (0 or past: not locked).
    pub locked_until: i64,
}

impl Tally {
    /// From a row's failures, lock end and last update, read at `now`.
    pub fn read(failures: i64, locked_until: i64, updated_at: i64, now: i64) -> Tally {
        Tally {
            failures: if updated_at < now - FAILURE_WINDOW {
                0
            } else {
                failures
            },
            locked_until,
        }
    }
}

/// How long a failure counts: failures older than this are forgotten at the next one.
pub const FAILURE_WINDOW: i64 = 86_400;

/// What a password check reads before argon2: the user by username (`None`: no such user) and
/// its two throttling buckets (`None`: no failures on record).
pub type UserAndLocks = (Option<UserRow>, [Option<Tally>; 2]);

/// An SSO session, stored by the SHA-256 of its cookie value.
#[derive(Debug, Clone, FromRow)]
pub struct SessionRow {
    pub hash: String,
    pub domain: String,
    pub sid: String,
    pub user_id: String,
    pub auth_time: i64,
    pub amr: String,
    pub created_at: i64,
    pub last_seen: i64,
    pub expires_at: i64,
    pub idle_timeout: i64,
    pub ended_at: Option<i64>,
    /// The browser's User-Agent at sign-in, shortened.
    pub user_agent: Option<String>,
}

/// An authorization code, stored by its SHA-256.
#[derive(Debug, Clone, FromRow)]
pub struct CodeRow {
    pub hash: String,
    pub domain: String,
    pub client_id: String,
    pub user_id: String,
    pub redirect_uri: String,
    pub redirect_uri_given: i64,
    pub scope: String,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub sid: String,
    pub auth_time: i64,
    pub amr: String,
    pub session_expires_at: i64,
    pub issued_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub access_jti: Option<String>,
    pub access_expires_at: Option<i64>,
    pub family_id: Option<String>,
    /// JSON of the OpenID claims request.
    pub claims: Option<String>,
    /// When the code was first presented again after its redemption.
    pub reused_at: Option<i64>,
}

const CODE_COLUMNS: &str = "hash, domain, client_id, user_id, redirect_uri, redirect_uri_given, scope, nonce, \
    code_challenge, code_challenge_method, sid, auth_time, amr, session_expires_at, issued_at, expires_at, used_at, access_jti, access_expires_at, \
    family_id, claims, reused_at";

impl Insertable for CodeRow {
    const WHAT: &'static str = "authorization code";
    const TABLE: &'static str = "auth_codes";
    const COLUMNS: &'static str = CODE_COLUMNS;
    // A code's hash is random: a conflict is an error, never someone else's row.
    const ON_CONFLICT: &'static str = "";
    fn bind<'q>(&'q self, q: AnyQuery<'q>) -> AnyQuery<'q> {
        q.bind(&self.hash)
            .bind(&self.domain)
            .bind(&self.client_id)
            .bind(&self.user_id)
            .bind(&self.redirect_uri)
            .bind(self.redirect_uri_given)
            .bind(&self.scope)
            .bind(&self.nonce)
            .bind(&self.code_challenge)
            .bind(&self.code_challenge_method)
            .bind(&self.sid)
            .bind(self.auth_time)
            .bind(&self.amr)
            .bind(self.session_expires_at)
            .bind(self.issued_at)
            .bind(self.expires_at)
            .bind(self.used_at)
            .bind(&self.access_jti)
            .bind(self.access_expires_at)
            .bind(&self.family_id)
            .bind(&self.claims)
            .bind(self.reused_at)
    }
    fn inserts() -> &'static SqlBySize {
        static INSERTS: SqlBySize = SqlBySize::new(insert_sql::<CodeRow>);
        &INSERTS
    }
}

/// The columns of a [`SessionRow`], in its order.
pub(crate) const SESSION_COLUMNS: &str = "hash, domain, sid, user_id, auth_time, amr, created_at, last_seen, expires_at, idle_timeout, ended_at, user_agent";

/// A live session at the time bound to `$3`: not ended, within its absolute and idle limits.
const LIVE_AT_3: &str = "ended_at IS NULL AND expires_at + 0 > $3 AND last_seen + idle_timeout > $3";
pub(super) static FIND_LIVE_SESSION: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE hash = $1 AND domain = $2 AND {LIVE_AT_3}")
});
pub(super) static FIND_LIVE_SESSION_BY_SID: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE sid = $1 AND domain = $2 AND {LIVE_AT_3}")
});
/// The same person signing in again: the live session `$1` takes the key `$3`, the sign-in time
/// `$4` and the absolute end `$5` (a session's user never changes: the caller read it by `$1`).
pub(super) static RENEW_SESSION: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE sessions SET hash = $3, auth_time = $4, last_seen = $4, expires_at = $5 \
         WHERE hash = $1 AND domain = $2 AND ended_at IS NULL AND expires_at + 0 > $4 \
         AND last_seen + idle_timeout > $4 RETURNING {SESSION_COLUMNS}"
    )
});
pub(super) const TOUCH_SESSION: &str = "UPDATE sessions SET last_seen = $3 WHERE hash = $1 AND domain = $2 \
     AND ended_at IS NULL AND last_seen < $3";
/// The counts of two throttling buckets, `$3` and `$4` of domain `$1` (NULL: no failures on
/// record), joined as `l0` and `l1` by [`LOCK_JOINS`].
const LOCK_COLUMNS: &str = "l0.failures AS fail_0, l0.locked_until AS lock_0, l0.updated_at AS seen_0, \
     l1.failures AS fail_1, l1.locked_until AS lock_1, l1.updated_at AS seen_1";
const LOCK_JOINS: &str = "LEFT JOIN login_attempts l0 ON l0.domain = $1 AND l0.bucket = $3 \
     LEFT JOIN login_attempts l1 ON l1.domain = $1 AND l1.bucket = $4";
/// A password check's one read: the user by username `$2` (no row in `users`: the `u_` columns
/// are NULL) and the counts of two throttling buckets.
pub(super) static USER_AND_LOCKS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {JOINED_USER_COLUMNS}, {LOCK_COLUMNS} \
         FROM (SELECT 1 AS one) AS o LEFT JOIN users u ON u.domain = $1 AND u.username = $2 {LOCK_JOINS}"
    )
});
/// The sign-in form's one read: the pending request `$5`, unexpired at `$6` (none: its columns are
/// NULL), beside [`USER_AND_LOCKS`]'s user and counts.
pub(super) static SIGN_IN_READ: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {}, {JOINED_USER_COLUMNS}, {LOCK_COLUMNS} FROM (SELECT 1 AS one) AS o \
         LEFT JOIN auth_requests r ON r.id = $5 AND r.domain = $1 AND r.expires_at + 0 > $6 \
         LEFT JOIN users u ON u.domain = $1 AND u.username = $2 {LOCK_JOINS}",
        qualified(AUTH_REQUEST_COLUMNS, "r")
    )
});

const AUTH_REQUEST_COLUMNS: &str = "id, domain, client_id, params, csrf_hash, created_at, expires_at";
pub(super) static FIND_AUTH_REQUEST: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {AUTH_REQUEST_COLUMNS} FROM auth_requests WHERE id = $1 AND domain = $2 AND expires_at + 0 > $3"
    )
});
pub(super) const TAKE_AUTH_REQUEST: &str = "DELETE FROM auth_requests WHERE id = $1 AND domain = $2";
pub(super) static REDEEM_CODE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE auth_codes SET used_at = $3 WHERE hash = $1 AND domain = $2 AND used_at IS NULL AND expires_at + 0 > $3 \
         RETURNING {CODE_COLUMNS}"
    )
});
pub(super) static FIND_CODE: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {CODE_COLUMNS} FROM auth_codes WHERE hash = $1 AND domain = $2"));
/// [`FIND_CODE`] with the code's user beside it ([`JOINED_USER_COLUMNS`]), in one read.
pub(super) static FIND_CODE_WITH_USER: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {}, {JOINED_USER_COLUMNS} FROM auth_codes c \
         LEFT JOIN users u ON u.domain = c.domain AND u.id = c.user_id WHERE c.hash = $1 AND c.domain = $2",
        qualified(CODE_COLUMNS, "c")
    )
});
pub(super) const SET_CODE_ACCESS: &str = "UPDATE auth_codes SET access_jti = $2, access_expires_at = $3, family_id = $4 \
     WHERE hash = $1 RETURNING reused_at";
pub(super) const MARK_CODE_REUSED: &str =
    "UPDATE auth_codes SET reused_at = $3 WHERE hash = $1 AND domain = $2 AND reused_at IS NULL";
/// A first consent (`$2` user, `$3` client, `$4` scope at `$5`), unless one was written meanwhile.
const INSERT_CONSENT: &str = "INSERT INTO consents (domain, user_id, client_id, scope, created_at, updated_at) \
     VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (domain, user_id, client_id) DO NOTHING";
/// A consent's new scope `$5` at `$6`, if it is still `$1` (its parameters after the previous
/// scope, as [`INSERT_CONSENT`]'s).
pub(super) const UPDATE_CONSENT: &str = "UPDATE consents SET scope = $5, updated_at = $6 \
     WHERE domain = $2 AND user_id = $3 AND client_id = $4 AND scope = $1";
pub(super) const FIND_CONSENT: &str =
    "SELECT scope FROM consents WHERE domain = $1 AND user_id = $2 AND client_id = $3";
/// Locks a bucket until `$3`, or leaves a later lock: of two failures counted at once (on two
/// replicas), the one with the longer lock may write it first.
pub(super) const LOCK_BUCKET: &str = "UPDATE login_attempts SET locked_until = CASE WHEN locked_until < $3 THEN $3 \
     ELSE locked_until END WHERE domain = $1 AND bucket = $2";
pub(super) const CLEAR_BUCKET: &str = "DELETE FROM login_attempts WHERE domain = $1 AND bucket = $2";

pub(super) const FIND_USER_BY_ID: &str = "SELECT id, domain, username, password_hash, status, claims, source, config_hash, created_at, updated_at \
     FROM users WHERE domain = $1 AND id = $2";

/// Seconds between two recorded uses of a session: a tenth of its idle timeout, at most a minute.
/// A browser's every request reads its session, but writes its use at most this often, so one
/// busy session is not one hot row (and on SQLite, not a turn of the single writer each time);
/// the idle timeout then counts from a use up to this much earlier than the last one.
pub(crate) fn touch_interval(idle_timeout: i64) -> i64 {
    (idle_timeout / 10).clamp(0, 60)
}

/// Browser sign-in state.
pub trait SignInStore {
    /// Stores a pending authorization request.
    fn insert_auth_request(&self, r: &AuthRequestRow) -> impl Future<Output = StoreResult<()>> + Send;
    /// A pending request of this domain, unexpired.
    fn find_auth_request(
        &self,
        domain: &str,
        id: &str,
        now: i64,
    ) -> impl Future<Output = StoreResult<Option<AuthRequestRow>>> + Send;
    /// Removes a finished request; true when this call removed it (single use).
    fn take_auth_request(&self, domain: &str, id: &str) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Stores a session.
    fn insert_session(&self, s: &SessionRow) -> impl Future<Output = StoreResult<()>> + Send;
    /// The same person signing in again in a browser that holds a live session of theirs: the
    /// session is kept (its sid, the clients it served, the families bound to it) under a new key
    /// (the cookie's new value: no fixation), with `now` as its sign-in time and `expires_at` as
    /// its absolute end. None when that session is no longer live.
    fn renew_session(
        &self,
        domain: &str,
        old_hash: &str,
        new_hash: &str,
        now: i64,
        expires_at: i64,
    ) -> impl Future<Output = StoreResult<Option<SessionRow>>> + Send;
    /// A live session (not ended, within its absolute and idle limits), recorded as used now when
    /// its last recorded use is at least `touch_interval` old.
    fn find_live_session(
        &self,
        domain: &str,
        hash: &str,
        now: i64,
    ) -> impl Future<Output = StoreResult<Option<SessionRow>>> + Send;
    /// Stores a code.
    fn insert_code(&self, c: &CodeRow) -> impl Future<Output = StoreResult<()>> + Send;
    /// Marks an unused, unexpired code used and returns it; None when it was not redeemable.
    fn redeem_code(
        &self,
        domain: &str,
        hash: &str,
        now: i64,
    ) -> impl Future<Output = StoreResult<Option<CodeRow>>> + Send;
    /// The code row whatever its state (to detect reuse).
    fn find_code(
        &self,
        domain: &str,
        hash: &str,
    ) -> impl Future<Output = StoreResult<Option<CodeRow>>> + Send;
    /// [`SignInStore::find_code`] with the code's user (None when the user is gone), in one read.
    fn find_code_with_user(
        &self,
        domain: &str,
        hash: &str,
    ) -> impl Future<Output = StoreResult<Option<(CodeRow, Option<UserRow>)>>> + Send;
    /// Records the access token and refresh-token family issued from a code; true when the code
    /// has been marked reused (by then or concurrently: the update sees the latest row).
    fn set_code_access(
        &self,
        hash: &str,
        jti: &str,
        expires_at: i64,
        family_id: Option<&str>,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Marks a redeemed code as replayed (the first time only).
    fn mark_code_reused(
        &self,
        domain: &str,
        hash: &str,
        now: i64,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// The scopes a user consented to for a client.
    fn find_consent(
        &self,
        domain: &str,
        user_id: &str,
        client_id: &str,
    ) -> impl Future<Output = StoreResult<Option<String>>> + Send;
    /// Writes consent `scope` of `user_id` to `client_id` if the stored one is still `previous`
    /// (`None`: there is none): one conditional statement. False when another write came first
    /// (read again and retry).
    fn write_consent(
        &self,
        domain: &str,
        user_id: &str,
        client_id: &str,
        previous: Option<&str>,
        scope: &str,
        now: i64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// The session with this public id, if it is live (not ended, within its absolute and idle
    /// limits); not touched.
    fn find_session_by_sid(
        &self,
        domain: &str,
        sid: &str,
        now: i64,
    ) -> impl Future<Output = StoreResult<Option<SessionRow>>> + Send;
    /// The counts of `buckets` (`u:NAME`, `a:ADDRESS`, ...) at `now`, in the same order (`None`:
    /// no failures on record), in one read.
    fn login_attempts(
        &self,
        domain: &str,
        buckets: &[&str],
        now: i64,
    ) -> impl Future<Output = StoreResult<Vec<Option<Tally>>>> + Send;
    /// The user with this username and the counts of two buckets (`None`: no failures on
    /// record) at `now`, in one read: what a password check needs before argon2.
    fn find_user_and_locks(
        &self,
        domain: &str,
        username: &str,
        buckets: [&str; 2],
        now: i64,
    ) -> impl Future<Output = StoreResult<UserAndLocks>> + Send;
    /// The sign-in form's one read: the pending request `request_id`, unexpired at `now`, and
    /// what [`Self::find_user_and_locks`] reads.
    fn find_sign_in(
        &self,
        domain: &str,
        request_id: &str,
        now: i64,
        username: &str,
        buckets: [&str; 2],
    ) -> impl Future<Output = StoreResult<(Option<AuthRequestRow>, UserAndLocks)>> + Send;
    /// Counts a failed sign-in; once `threshold` failures are reached, locks the bucket for
    /// `base` seconds, doubling with each further failure up to `max`. Failures older than a day
    /// are forgotten. Returns the failure count.
    fn record_login_failure(
        &self,
        domain: &str,
        bucket: &str,
        now: i64,
        threshold: i64,
        base: i64,
        max: i64,
    ) -> impl Future<Output = StoreResult<i64>> + Send;
    /// Forgets a bucket's failures (after a successful sign-in).
    fn clear_login_failures(
        &self,
        domain: &str,
        bucket: &str,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// A user by id.
    fn find_user_by_id(
        &self,
        domain: &str,
        id: &str,
    ) -> impl Future<Output = StoreResult<Option<UserRow>>> + Send;
}

impl SignInStore for SqlStore {
    async fn insert_auth_request(&self, r: &AuthRequestRow) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO auth_requests (id, domain, client_id, params, csrf_hash, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&r.id)
        .bind(&r.domain)
        .bind(&r.client_id)
        .bind(&r.params)
        .bind(&r.csrf_hash)
        .bind(r.created_at)
        .bind(r.expires_at)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn find_auth_request(
        &self,
        domain: &str,
        id: &str,
        now: i64,
    ) -> StoreResult<Option<AuthRequestRow>> {
        Ok(sqlx::query_as(FIND_AUTH_REQUEST.as_str())
            .bind(id)
            .bind(domain)
            .bind(now)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn take_auth_request(&self, domain: &str, id: &str) -> StoreResult<bool> {
        let r = sqlx::query(TAKE_AUTH_REQUEST)
            .bind(id)
            .bind(domain)
            .execute(&self.writer)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn insert_session(&self, s: &SessionRow) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO sessions (hash, domain, sid, user_id, auth_time, amr, created_at, last_seen, expires_at, \
             idle_timeout, ended_at, user_agent) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(&s.hash)
        .bind(&s.domain)
        .bind(&s.sid)
        .bind(&s.user_id)
        .bind(s.auth_time)
        .bind(&s.amr)
        .bind(s.created_at)
        .bind(s.last_seen)
        .bind(s.expires_at)
        .bind(s.idle_timeout)
        .bind(s.ended_at)
        .bind(&s.user_agent)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn renew_session(
        &self,
        domain: &str,
        old_hash: &str,
        new_hash: &str,
        now: i64,
        expires_at: i64,
    ) -> StoreResult<Option<SessionRow>> {
        let renewed: Option<SessionRow> = sqlx::query_as(RENEW_SESSION.as_str())
            .bind(old_hash)
            .bind(domain)
            .bind(new_hash)
            .bind(now)
            .bind(expires_at)
            .fetch_optional(&self.writer)
            .await?;
        if let Some(s) = &renewed {
            // The clients it served are remembered as long as the session lives, for its sign-out.
            sqlx::query(super::logout::EXTEND_SESSION_CLIENTS)
                .bind(domain)
                .bind(&s.sid)
                .bind(s.expires_at)
                .execute(&self.writer)
                .await?;
        }
        Ok(renewed)
    }

    async fn find_live_session(&self, domain: &str, hash: &str, now: i64) -> StoreResult<Option<SessionRow>> {
        let found: Option<SessionRow> = sqlx::query_as(FIND_LIVE_SESSION.as_str())
            .bind(hash)
            .bind(domain)
            .bind(now)
            .fetch_optional(&self.pool)
            .await?;
        let Some(mut s) = found else { return Ok(None) };
        if now - s.last_seen >= touch_interval(s.idle_timeout) {
            // Conditional: of concurrent requests of one browser, one writes; none moves it back.
            sqlx::query(TOUCH_SESSION)
                .bind(hash)
                .bind(domain)
                .bind(now)
                .execute(&self.writer)
                .await?;
            s.last_seen = now;
        }
        Ok(Some(s))
    }

    async fn insert_code(&self, c: &CodeRow) -> StoreResult<()> {
        self.codes.submit(c.clone()).await
    }

    async fn redeem_code(&self, domain: &str, hash: &str, now: i64) -> StoreResult<Option<CodeRow>> {
        Ok(sqlx::query_as(REDEEM_CODE.as_str())
            .bind(hash)
            .bind(domain)
            .bind(now)
            .fetch_optional(&self.writer)
            .await?)
    }

    async fn find_code(&self, domain: &str, hash: &str) -> StoreResult<Option<CodeRow>> {
        Ok(sqlx::query_as(FIND_CODE.as_str())
            .bind(hash)
            .bind(domain)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn find_code_with_user(
        &self,
        domain: &str,
        hash: &str,
    ) -> StoreResult<Option<(CodeRow, Option<UserRow>)>> {
        let Some(r) = sqlx::query(FIND_CODE_WITH_USER.as_str())
            .bind(hash)
            .bind(domain)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let code = CodeRow::from_row(&r)?;
        let user = joined_user(&r, &code.domain)?;
        Ok(Some((code, user)))
    }

    async fn set_code_access(
        &self,
        hash: &str,
        jti: &str,
        expires_at: i64,
        family_id: Option<&str>,
    ) -> StoreResult<bool> {
        let row: Option<(Option<i64>,)> = sqlx::query_as(SET_CODE_ACCESS)
            .bind(hash)
            .bind(jti)
            .bind(expires_at)
            .bind(family_id)
            .fetch_optional(&self.writer)
            .await?;
        Ok(row.is_some_and(|(r,)| r.is_some()))
    }

    async fn mark_code_reused(&self, domain: &str, hash: &str, now: i64) -> StoreResult<()> {
        sqlx::query(MARK_CODE_REUSED)
            .bind(hash)
            .bind(domain)
            .bind(now)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn find_consent(
        &self,
        domain: &str,
        user_id: &str,
        client_id: &str,
    ) -> StoreResult<Option<String>> {
        let row: Option<(String,)> = sqlx::query_as(FIND_CONSENT)
            .bind(domain)
            .bind(user_id)
            .bind(client_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.0))
    }

    async fn write_consent(
        &self,
        domain: &str,
        user_id: &str,
        client_id: &str,
        previous: Option<&str>,
        scope: &str,
        now: i64,
    ) -> StoreResult<bool> {
        let query = match previous {
            None => sqlx::query(INSERT_CONSENT),
            Some(previous) => sqlx::query(UPDATE_CONSENT).bind(previous),
        };
        let written = query
            .bind(domain)
            .bind(user_id)
            .bind(client_id)
            .bind(scope)
            .bind(now)
            .execute(&self.writer)
            .await?;
        Ok(written.rows_affected() == 1)
    }

    async fn find_session_by_sid(
        &self,
        domain: &str,
        sid: &str,
        now: i64,
    ) -> StoreResult<Option<SessionRow>> {
        Ok(sqlx::query_as(FIND_LIVE_SESSION_BY_SID.as_str())
            .bind(sid)
            .bind(domain)
            .bind(now)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn login_attempts(
        &self,
        domain: &str,
        buckets: &[&str],
        now: i64,
    ) -> StoreResult<Vec<Option<Tally>>> {
        if buckets.is_empty() {
            return Ok(Vec::new());
        }
        let list: Vec<String> = (2..buckets.len() + 2).map(|n| format!("${n}")).collect();
        let sql = format!(
            "SELECT bucket, failures, locked_until, updated_at FROM login_attempts WHERE domain = $1 AND bucket IN ({})",
            list.join(", ")
        );
        let q = sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(domain);
        let rows: Vec<(String, i64, i64, i64)> = buckets
            .iter()
            .fold(q, |q, b| q.bind(*b))
            .fetch_all(&self.pool)
            .await?;
        Ok(buckets
            .iter()
            .map(|b| {
                rows.iter()
                    .find(|r| r.0 == *b)
                    .map(|r| Tally::read(r.1, r.2, r.3, now))
            })
            .collect())
    }

    async fn find_user_and_locks(
        &self,
        domain: &str,
        username: &str,
        buckets: [&str; 2],
        now: i64,
    ) -> StoreResult<UserAndLocks> {
        let row = sqlx::query(USER_AND_LOCKS.as_str())
            .bind(domain)
            .bind(username)
            .bind(buckets[0])
            .bind(buckets[1])
            .fetch_one(&self.pool)
            .await?;
        user_and_locks(&row, domain, now)
    }

    async fn find_sign_in(
        &self,
        domain: &str,
        request_id: &str,
        now: i64,
        username: &str,
        buckets: [&str; 2],
    ) -> StoreResult<(Option<AuthRequestRow>, UserAndLocks)> {
        let row = sqlx::query(SIGN_IN_READ.as_str())
            .bind(domain)
            .bind(username)
            .bind(buckets[0])
            .bind(buckets[1])
            .bind(request_id)
            .bind(now)
            .fetch_one(&self.pool)
            .await?;
        let request = match row.try_get::<Option<String>, _>("id")? {
            Some(_) => Some(AuthRequestRow::from_row(&row)?),
            None => None,
        };
        Ok((request, user_and_locks(&row, domain, now)?))
    }

    async fn record_login_failure(
        &self,
        domain: &str,
        bucket: &str,
        now: i64,
        threshold: i64,
        base: i64,
        max: i64,
    ) -> StoreResult<i64> {
        let (failures,): (i64,) = sqlx::query_as(
            "INSERT INTO login_attempts (domain, bucket, failures, locked_until, updated_at) VALUES ($1, $2, 1, 0, $3) \
             ON CONFLICT (domain, bucket) DO UPDATE SET updated_at = $3, failures = CASE \
             WHEN login_attempts.updated_at < $4 THEN 1 ELSE login_attempts.failures + 1 END \
             RETURNING failures",
        )
        .bind(domain)
        .bind(bucket)
        .bind(now)
        .bind(now - FAILURE_WINDOW)
        .fetch_one(&self.writer)
        .await?;
        if failures >= threshold {
            let lock = lockout_seconds(failures, threshold, base, max);
            sqlx::query(LOCK_BUCKET)
                .bind(domain)
                .bind(bucket)
                .bind(now + lock)
                .execute(&self.writer)
                .await?;
        }
        Ok(failures)
    }

    async fn clear_login_failures(&self, domain: &str, bucket: &str) -> StoreResult<()> {
        sqlx::query(CLEAR_BUCKET)
            .bind(domain)
            .bind(bucket)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn find_user_by_id(&self, domain: &str, id: &str) -> StoreResult<Option<UserRow>> {
        Ok(sqlx::query_as(FIND_USER_BY_ID)
            .bind(domain)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?)
    }
}

/// The user and the bucket counts of a row of [`USER_AND_LOCKS`] or [`SIGN_IN_READ`], at `now`.
fn user_and_locks(row: &sqlx::any::AnyRow, domain: &str, now: i64) -> StoreResult<UserAndLocks> {
    let tally = |i: usize| -> StoreResult<Option<Tally>> {
        let failures: Option<i64> = row.try_get(format!("fail_{i}").as_str())?;
        let lock: Option<i64> = row.try_get(format!("lock_{i}").as_str())?;
        let seen: Option<i64> = row.try_get(format!("seen_{i}").as_str())?;
        Ok(match (failures, lock, seen) {
            (Some(f), Some(l), Some(s)) => Some(Tally::read(f, l, s, now)),
            _ => None,
        })
    };
    Ok((joined_user(row, domain)?, [tally(0)?, tally(1)?]))
}

/// How long `failures` lock a counter that allows `threshold` before a lockout: `first` seconds at
/// the threshold, doubling with each failure past it, at most `max` (0 below the threshold).
/// Shared by the store's counters and the in-memory one of client secrets.
pub fn lockout_seconds(failures: i64, threshold: i64, first: i64, max: i64) -> i64 {
    if failures < threshold {
        return 0;
    }
    let doublings = u32::try_from((failures - threshold).min(30)).unwrap_or(30);
    first.saturating_mul(1_i64 << doublings).min(max)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    /// Of two failures counted at once (two replicas), the one with the longer lock may write it
    /// first: the shorter one written after it does not cut it short.
    #[tokio::test]
    async fn a_later_shorter_lock_leaves_the_longer_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqlStore::for_tests(&dir).await;
        // Threshold 1: the first failure locks for 60 s, the second for 120 s.
        assert_eq!(
            store
                .record_login_failure("d", "u:x", 1000, 1, 60, 3600)
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            store
                .record_login_failure("d", "u:x", 1000, 1, 60, 3600)
                .await
                .unwrap(),
            2
        );
        // The first failure's lock, written last.
        sqlx::query(LOCK_BUCKET)
            .bind("d")
            .bind("u:x")
            .bind(1060_i64)
            .execute(&store.writer)
            .await
            .unwrap();
        let tally = store.login_attempts("d", &["u:x"], 1000).await.unwrap();
        assert_eq!(tally[0].map(|t| t.locked_until), Some(1120));
    }
}
