//! SQL for sign-out: the clients of a session, ending sessions, the families they hold, consents
//! as the account page lists them, and the outbox of back-channel logout deliveries.

use std::future::Future;
use std::sync::LazyLock;

use sqlx::FromRow;

use super::batch::in_one_commit;
use super::signin::SESSION_COLUMNS;
use super::signin::SessionRow;
use super::{SqlStore, StoreResult};

/// A back-channel logout waiting for delivery (the logout token is signed at each attempt).
#[derive(Debug, Clone, FromRow)]
pub struct DeliveryRow {
    pub id: String,
    pub domain: String,
    pub client_id: String,
    pub sub: String,
    pub sid: Option<String>,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub claimed_until: i64,
    pub created_at: i64,
    pub delivered_at: Option<i64>,
    pub failed_at: Option<i64>,
    pub last_error: Option<String>,
}

const DELIVERY_COLUMNS: &str = "id, domain, client_id, sub, sid, attempts, next_attempt_at, claimed_until, \
    created_at, delivered_at, failed_at, last_error";

/// Sign-out state.
pub trait LogoutStore {
    /// Records that `client_id` was issued a code in session `sid` (idempotent).
    fn record_session_client(
        &self,
        domain: &str,
        sid: &str,
        user_id: &str,
        client_id: &str,
        now: i64,
        expires_at: i64,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// The clients issued a code in session `sid`.
    fn session_clients(
        &self,
        domain: &str,
        sid: &str,
    ) -> impl Future<Output = StoreResult<Vec<String>>> + Send;
    /// The sids of the user's sessions, not ended, in which `client_id` was issued a code.
    fn client_sids(
        &self,
        domain: &str,
        user_id: &str,
        client_id: &str,
        now: i64,
    ) -> impl Future<Output = StoreResult<Vec<String>>> + Send;
    /// Ends the session `sid` and queues `deliveries` (those whose id is queued already are not
    /// queued again), in one commit: the clients are never told of an end that was not written,
    /// nor the end written without them told. Returns whether this call ended it, and whether a
    /// delivery was queued.
    fn end_session(
        &self,
        domain: &str,
        sid: &str,
        now: i64,
        deliveries: &[DeliveryRow],
    ) -> impl Future<Output = StoreResult<(bool, bool)>> + Send;
    /// Whether session `sid` has ended (or is gone), and the scopes `user_id` consents to for
    /// `client_id` (`None`: no consent), in one read. A code's redemption asks last, once all it
    /// issued is recorded: a sign-out that ends the session, or a withdrawal that deletes the
    /// consent, after this read finds those records (each reads them after its own write), and one
    /// that wrote before is seen here.
    fn grant_standing(
        &self,
        domain: &str,
        sid: &str,
        user_id: &str,
        client_id: &str,
    ) -> impl Future<Output = StoreResult<GrantStanding>> + Send;
    /// Closes what the codes a session approved (authorization and device codes) may still
    /// give: those not redeemed yet expire at `now`, and the access tokens redeemed from them
    /// outside a refresh-token family (a family is revoked with its own), still live at `now`,
    /// are returned as (jti, client_id, expires_at). `client_id`: one client's codes, or "" for
    /// all.
    fn close_session_codes(
        &self,
        domain: &str,
        sid: &str,
        client_id: &str,
        now: i64,
    ) -> impl Future<Output = StoreResult<Vec<(String, String, i64)>>> + Send;
    /// The user's sessions not ended and within their absolute lifetime, most recently seen
    /// first: the live ones (within their idle timeout too), or with `idle_too` also those left
    /// idle (what signing out everywhere ends, so that their clients are told too).
    fn user_sessions(
        &self,
        domain: &str,
        user_id: &str,
        now: i64,
        idle_too: bool,
    ) -> impl Future<Output = StoreResult<Vec<SessionRow>>> + Send;
    /// The session the browser's cookie names by `hash`, not ended and within its absolute
    /// lifetime: a live one, or one left idle past its timeout (which still has clients to tell
    /// when it is signed out). Not recorded as used.
    fn find_unended_session(
        &self,
        domain: &str,
        hash: &str,
        now: i64,
    ) -> impl Future<Output = StoreResult<Option<SessionRow>>> + Send;
    /// Unrevoked families bound to session `sid`, as (id, client_id); `offline` ones included
    /// only when asked.
    fn session_families(
        &self,
        domain: &str,
        sid: &str,
        with_offline: bool,
    ) -> impl Future<Output = StoreResult<Vec<(String, String)>>> + Send;
    /// Unrevoked families of a user, as (id, client_id): all of them, or one client's.
    fn user_families(
        &self,
        domain: &str,
        user_id: &str,
        client_id: Option<&str>,
    ) -> impl Future<Output = StoreResult<Vec<(String, String)>>> + Send;
    /// Queues a back-channel logout, unless one with its id is queued already; true when queued.
    fn enqueue_logout(&self, d: &DeliveryRow) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Up to `limit` deliveries due at `now` and not claimed.
    fn due_logouts(&self, now: i64, limit: i64)
    -> impl Future<Output = StoreResult<Vec<DeliveryRow>>> + Send;
    /// Claims a due delivery until `until` and counts the attempt; true for exactly one caller.
    fn claim_logout(&self, id: &str, now: i64, until: i64) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Records a delivered logout.
    fn logout_delivered(&self, id: &str, now: i64) -> impl Future<Output = StoreResult<()>> + Send;
    /// Records a failed attempt: retried at `retry_at`, or given up (None).
    fn logout_failed(
        &self,
        id: &str,
        now: i64,
        retry_at: Option<i64>,
        error: &str,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// A delivery by id, whatever its state.
    fn find_logout(&self, id: &str) -> impl Future<Output = StoreResult<Option<DeliveryRow>>> + Send;
    /// Removes session clients of expired sessions and deliveries finished a day ago, at most
    /// `batch` of each; says how many went, and whether either had more.
    fn delete_finished_logouts(
        &self,
        now: i64,
        batch: i64,
    ) -> impl Future<Output = StoreResult<super::Collected>> + Send;
}

/// The user's sessions not ended and within their absolute lifetime.
const USER_SESSIONS: &str =
    "FROM sessions WHERE domain = $1 AND user_id = $2 AND ended_at IS NULL AND expires_at > $3";
pub(super) static LIVE_SESSIONS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {SESSION_COLUMNS} {USER_SESSIONS} AND last_seen + idle_timeout > $3 ORDER BY last_seen DESC"
    )
});
pub(super) static UNENDED_SESSIONS: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {SESSION_COLUMNS} {USER_SESSIONS} ORDER BY last_seen DESC"));
/// The session a browser's cookie names (`$1`: the hash of its value), not ended and within its
/// absolute lifetime: live, or left idle past its timeout.
pub(super) static UNENDED_SESSION: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {SESSION_COLUMNS} FROM sessions WHERE hash = $1 AND domain = $2 AND ended_at IS NULL AND expires_at + 0 > $3"
    )
});
pub(super) const SESSION_CLIENTS: &str =
    "SELECT client_id FROM session_clients WHERE domain = $1 AND sid = $2 ORDER BY client_id";
/// A renewed session's clients live as long as it now does (their rows are collected after it).
pub(super) const EXTEND_SESSION_CLIENTS: &str =
    "UPDATE session_clients SET expires_at = $3 WHERE domain = $1 AND sid = $2 AND expires_at < $3";
/// Up to `$2` rows of session clients past their end at `$1` whose session has ended or expired:
/// one whose session lives on (renewed while a code was recorded for it) stays for its sign-out.
pub(super) const DELETE_SESSION_CLIENTS: &str = "DELETE FROM session_clients WHERE (domain, sid, client_id) IN \
     (SELECT c.domain, c.sid, c.client_id FROM session_clients c WHERE c.expires_at < $1 \
     AND NOT EXISTS (SELECT 1 FROM sessions s WHERE s.sid = c.sid AND s.domain = c.domain \
     AND s.ended_at IS NULL AND s.expires_at > $1) ORDER BY c.expires_at LIMIT $2)";
pub(super) const CLIENT_SIDS: &str = "SELECT c.sid FROM session_clients c JOIN sessions s ON s.domain = c.domain AND s.sid = c.sid \
     WHERE c.domain = $1 AND c.user_id = $2 AND c.client_id = $3 AND s.ended_at IS NULL AND s.expires_at > $4";
pub(super) const END_SESSION: &str =
    "UPDATE sessions SET ended_at = $3 WHERE domain = $1 AND sid = $2 AND ended_at IS NULL RETURNING sid";
/// Queues a back-channel logout unless its id is queued already; returns its id when queued.
static ENQUEUE_LOGOUT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO logout_deliveries ({DELIVERY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
         ON CONFLICT (id) DO NOTHING RETURNING id"
    )
});
/// Session `$1`'s end (no row: its `sid` is NULL) beside the consent of user `$3` to client `$4`.
/// What a redemption reads last ([`LogoutStore::grant_standing`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantStanding {
    /// The session that approved the grant has ended, or is gone.
    pub session_ended: bool,
    /// The scopes the user consents to for the client; `None`: no consent.
    pub consent: Option<String>,
}

pub(super) const GRANT_STANDING: &str = "SELECT s.sid, s.ended_at, \
     (SELECT scope FROM consents WHERE domain = $2 AND user_id = $3 AND client_id = $4) AS consent \
     FROM (SELECT 1 AS one) AS o LEFT JOIN sessions s ON s.sid = $1 AND s.domain = $2";
impl DeliveryRow {
    /// `q` with this row's columns bound, in [`DELIVERY_COLUMNS`] order.
    fn bind<'q>(&'q self, q: super::batch::AnyQuery<'q>) -> super::batch::AnyQuery<'q> {
        q.bind(&self.id)
            .bind(&self.domain)
            .bind(&self.client_id)
            .bind(&self.sub)
            .bind(&self.sid)
            .bind(self.attempts)
            .bind(self.next_attempt_at)
            .bind(self.claimed_until)
            .bind(self.created_at)
            .bind(self.delivered_at)
            .bind(self.failed_at)
            .bind(&self.last_error)
    }
}

/// The deliveries due: not delivered, not given up (the partial index `logout_deliveries_pending`
/// holds those only), due and not claimed, oldest due first.
pub(super) static DUE_LOGOUTS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {DELIVERY_COLUMNS} FROM logout_deliveries WHERE delivered_at IS NULL AND failed_at IS NULL \
         AND next_attempt_at <= $1 AND claimed_until <= $1 ORDER BY next_attempt_at LIMIT $2"
    )
});
pub(super) const EXPIRE_SESSION_CODES: &str = "UPDATE auth_codes SET expires_at = $4 \
     WHERE sid = $2 AND domain = $1 AND used_at IS NULL AND expires_at > $4 AND ($3 = '' OR client_id = $3)";
pub(super) const EXPIRE_SESSION_DEVICE_CODES: &str = "UPDATE device_codes SET expires_at = $4 \
     WHERE sid = $2 AND domain = $1 AND used_at IS NULL AND expires_at > $4 AND ($3 = '' OR client_id = $3)";
pub(super) const SESSION_CODE_ACCESS: &str = "SELECT access_jti, client_id, access_expires_at FROM auth_codes \
     WHERE sid = $2 AND domain = $1 AND family_id IS NULL AND access_jti IS NOT NULL AND access_expires_at > $4 \
     AND ($3 = '' OR client_id = $3) \
     UNION ALL SELECT access_jti, client_id, access_expires_at FROM device_codes \
     WHERE sid = $2 AND domain = $1 AND family_id IS NULL AND access_jti IS NOT NULL AND access_expires_at > $4 \
     AND ($3 = '' OR client_id = $3)";
pub(super) const SESSION_FAMILIES: &str = "SELECT id, client_id FROM refresh_families WHERE domain = $1 AND sid = $2 AND revoked_at IS NULL \
     AND (offline = 0 OR $3 = 1)";
pub(super) const USER_FAMILIES: &str = "SELECT id, client_id FROM refresh_families WHERE domain = $1 AND user_id = $2 AND revoked_at IS NULL \
     AND ($3 = '' OR client_id = $3)";

impl LogoutStore for SqlStore {
    async fn record_session_client(
        &self,
        domain: &str,
        sid: &str,
        user_id: &str,
        client_id: &str,
        now: i64,
        expires_at: i64,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO session_clients (domain, sid, client_id, user_id, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (domain, sid, client_id) DO NOTHING",
        )
        .bind(domain)
        .bind(sid)
        .bind(client_id)
        .bind(user_id)
        .bind(now)
        .bind(expires_at)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn session_clients(&self, domain: &str, sid: &str) -> StoreResult<Vec<String>> {
        let rows: Vec<(String,)> = sqlx::query_as(SESSION_CLIENTS)
            .bind(domain)
            .bind(sid)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(|r| r.0).collect())
    }

    async fn client_sids(
        &self,
        domain: &str,
        user_id: &str,
        client_id: &str,
        now: i64,
    ) -> StoreResult<Vec<String>> {
        let rows: Vec<(String,)> = sqlx::query_as(CLIENT_SIDS)
            .bind(domain)
            .bind(user_id)
            .bind(client_id)
            .bind(now)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(|r| r.0).collect())
    }

    async fn end_session(
        &self,
        domain: &str,
        sid: &str,
        now: i64,
        deliveries: &[DeliveryRow],
    ) -> StoreResult<(bool, bool)> {
        let mut statements = vec![sqlx::query(END_SESSION).bind(domain).bind(sid).bind(now)];
        statements.extend(
            deliveries
                .iter()
                .map(|d| d.bind(sqlx::query(ENQUEUE_LOGOUT.as_str()))),
        );
        let rows = in_one_commit(&self.writer, statements).await?;
        let ended = rows.first().is_some_and(|r| !r.is_empty());
        let queued = rows.iter().skip(1).any(|r| !r.is_empty());
        Ok((ended, queued))
    }

    async fn grant_standing(
        &self,
        domain: &str,
        sid: &str,
        user_id: &str,
        client_id: &str,
    ) -> StoreResult<GrantStanding> {
        let (found, ended_at, consent): (Option<String>, Option<i64>, Option<String>) =
            sqlx::query_as(GRANT_STANDING)
                .bind(sid)
                .bind(domain)
                .bind(user_id)
                .bind(client_id)
                .fetch_one(&self.pool)
                .await?;
        Ok(GrantStanding {
            session_ended: found.is_none() || ended_at.is_some(),
            consent,
        })
    }

    async fn close_session_codes(
        &self,
        domain: &str,
        sid: &str,
        client_id: &str,
        now: i64,
    ) -> StoreResult<Vec<(String, String, i64)>> {
        for sql in [EXPIRE_SESSION_CODES, EXPIRE_SESSION_DEVICE_CODES] {
            sqlx::query(sql)
                .bind(domain)
                .bind(sid)
                .bind(client_id)
                .bind(now)
                .execute(&self.writer)
                .await?;
        }
        Ok(sqlx::query_as(SESSION_CODE_ACCESS)
            .bind(domain)
            .bind(sid)
            .bind(client_id)
            .bind(now)
            .fetch_all(&self.pool)
            .await?)
    }

    async fn find_unended_session(
        &self,
        domain: &str,
        hash: &str,
        now: i64,
    ) -> StoreResult<Option<SessionRow>> {
        Ok(sqlx::query_as(UNENDED_SESSION.as_str())
            .bind(hash)
            .bind(domain)
            .bind(now)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn user_sessions(
        &self,
        domain: &str,
        user_id: &str,
        now: i64,
        idle_too: bool,
    ) -> StoreResult<Vec<SessionRow>> {
        let sql = if idle_too {
            &UNENDED_SESSIONS
        } else {
            &LIVE_SESSIONS
        };
        Ok(sqlx::query_as(sql.as_str())
            .bind(domain)
            .bind(user_id)
            .bind(now)
            .fetch_all(&self.pool)
            .await?)
    }

    async fn session_families(
        &self,
        domain: &str,
        sid: &str,
        with_offline: bool,
    ) -> StoreResult<Vec<(String, String)>> {
        Ok(sqlx::query_as(SESSION_FAMILIES)
            .bind(domain)
            .bind(sid)
            .bind(i64::from(with_offline))
            .fetch_all(&self.pool)
            .await?)
    }

    async fn user_families(
        &self,
        domain: &str,
        user_id: &str,
        client_id: Option<&str>,
    ) -> StoreResult<Vec<(String, String)>> {
        Ok(sqlx::query_as(USER_FAMILIES)
            .bind(domain)
            .bind(user_id)
            .bind(client_id.unwrap_or(""))
            .fetch_all(&self.pool)
            .await?)
    }

    async fn enqueue_logout(&self, d: &DeliveryRow) -> StoreResult<bool> {
        let rows = d
            .bind(sqlx::query(ENQUEUE_LOGOUT.as_str()))
            .fetch_all(&self.writer)
            .await?;
        Ok(!rows.is_empty())
    }

    async fn due_logouts(&self, now: i64, limit: i64) -> StoreResult<Vec<DeliveryRow>> {
        Ok(sqlx::query_as(DUE_LOGOUTS.as_str())
            .bind(now)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?)
    }

    async fn claim_logout(&self, id: &str, now: i64, until: i64) -> StoreResult<bool> {
        let r = sqlx::query(
            "UPDATE logout_deliveries SET claimed_until = $3, attempts = attempts + 1 WHERE id = $1 \
             AND delivered_at IS NULL AND failed_at IS NULL AND next_attempt_at <= $2 AND claimed_until <= $2",
        )
        .bind(id)
        .bind(now)
        .bind(until)
        .execute(&self.writer)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn logout_delivered(&self, id: &str, now: i64) -> StoreResult<()> {
        sqlx::query("UPDATE logout_deliveries SET delivered_at = $2, claimed_until = 0, last_error = NULL WHERE id = $1")
            .bind(id)
            .bind(now)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn logout_failed(&self, id: &str, now: i64, retry_at: Option<i64>, error: &str) -> StoreResult<()> {
        sqlx::query(
            "UPDATE logout_deliveries SET claimed_until = 0, last_error = $4, \
             next_attempt_at = COALESCE($3, next_attempt_at), failed_at = CASE WHEN $3 IS NULL THEN $2 ELSE NULL END \
             WHERE id = $1",
        )
        .bind(id)
        .bind(now)
        .bind(retry_at)
        .bind(error)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn find_logout(&self, id: &str) -> StoreResult<Option<DeliveryRow>> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {DELIVERY_COLUMNS} FROM logout_deliveries WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn delete_finished_logouts(&self, now: i64, batch: i64) -> StoreResult<super::Collected> {
        let a = sqlx::query(DELETE_SESSION_CLIENTS)
            .bind(now)
            .bind(batch)
            .execute(&self.writer)
            .await?
            .rows_affected();
        let b = sqlx::query(
            "DELETE FROM logout_deliveries WHERE id IN (SELECT id FROM logout_deliveries \
             WHERE COALESCE(delivered_at, failed_at) < $1 ORDER BY COALESCE(delivered_at, failed_at) LIMIT $2)",
        )
        .bind(now - 86_400)
        .bind(batch)
        .execute(&self.writer)
        .await?
        .rows_affected();
        let full = u64::try_from(batch).unwrap_or(u64::MAX);
        Ok(super::Collected {
            rows: a + b,
            more: a >= full || b >= full,
        })
    }
}
