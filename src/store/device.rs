//! SQL for device authorizations (RFC 8628): the device code (by its hash) and its user code
//! (by the hash of its normalized form), the person's decision and the single redemption, each
//! one atomic conditional update.

use std::future::Future;
use std::sync::LazyLock;

use sqlx::FromRow;

use super::{SqlStore, StoreResult};

/// A device authorization, stored by the SHA-256 of its device code.
#[derive(Debug, Clone, FromRow)]
pub struct DeviceCodeRow {
    pub hash: String,
    pub domain: String,
    /// HMAC (a key derived from the key-encryption key) of the normalized user code (8 letters, no
    /// dash): `oauth::device::user_code_hash`. The migration that made the column says SHA-256.
    pub user_code_hash: String,
    pub client_id: String,
    pub scope: String,
    /// `pending`, `approved` or `denied`.
    pub status: String,
    /// The approving session's user, sid, auth_time, amr and end (set on approval).
    pub user_id: Option<String>,
    pub sid: Option<String>,
    pub auth_time: Option<i64>,
    pub amr: Option<String>,
    pub session_expires_at: Option<i64>,
    /// Seconds the device must wait between polls; grows by 5 on each slow_down.
    pub poll_interval: i64,
    pub last_polled_at: Option<i64>,
    pub issued_at: i64,
    pub expires_at: i64,
    pub decided_at: Option<i64>,
    pub used_at: Option<i64>,
    /// What its redemption issued: the access token's jti and expiry, and the refresh-token
    /// family it started (revoked if the code is presented again).
    pub access_jti: Option<String>,
    pub access_expires_at: Option<i64>,
    pub family_id: Option<String>,
    /// When the code was first presented again after its redemption.
    pub reused_at: Option<i64>,
}

/// The statuses of a device authorization.
pub mod status {
    /// Waiting for the person.
    pub const PENDING: &str = "pending";
    /// The person approved it.
    pub const APPROVED: &str = "approved";
    /// The person denied it.
    pub const DENIED: &str = "denied";
}

/// Who approved a device authorization: the signed-in session, as recorded on the row.
#[derive(Debug, Clone)]
pub struct Approval {
    pub user_id: String,
    pub sid: String,
    pub auth_time: i64,
    /// JSON array of authentication methods.
    pub amr: String,
    pub session_expires_at: i64,
}

/// The outcome of recording a poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Poll {
    /// At least the current interval after the previous poll (or the first poll).
    OnTime,
    /// Too soon: the interval has grown by 5 seconds.
    TooFast,
    /// No such device code.
    Unknown,
}

/// The columns a new device authorization is inserted with.
const DEVICE_COLUMNS: &str = "hash, domain, user_code_hash, client_id, scope, status, user_id, sid, auth_time, amr, \
    session_expires_at, poll_interval, last_polled_at, issued_at, expires_at, decided_at, used_at";
/// The columns of a [`DeviceCodeRow`].
const DEVICE_ROW: &str = "hash, domain, user_code_hash, client_id, scope, status, user_id, sid, auth_time, amr, \
    session_expires_at, poll_interval, last_polled_at, issued_at, expires_at, decided_at, used_at, \
    access_jti, access_expires_at, family_id, reused_at";

pub(super) static FIND_DEVICE_CODE: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {DEVICE_ROW} FROM device_codes WHERE hash = $1 AND domain = $2"));
pub(super) static FIND_DEVICE_CODE_BY_USER_CODE: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {DEVICE_ROW} FROM device_codes WHERE user_code_hash = $1 AND domain = $2")
});
pub(super) const APPROVE_DEVICE_CODE: &str = "UPDATE device_codes SET status = 'approved', user_id = $4, sid = $5, auth_time = $6, amr = $7, \
             session_expires_at = $8, decided_at = $3 \
             WHERE hash = $1 AND domain = $2 AND status = 'pending' AND expires_at + 0 > $3";
pub(super) const DENY_DEVICE_CODE: &str = "UPDATE device_codes SET status = 'denied', decided_at = $3 \
             WHERE hash = $1 AND domain = $2 AND status = 'pending' AND expires_at + 0 > $3";
pub(super) const POLL_ON_TIME: &str = "UPDATE device_codes SET last_polled_at = $3 WHERE hash = $1 AND domain = $2 \
             AND (last_polled_at IS NULL OR last_polled_at + poll_interval <= $3)";
pub(super) const POLL_TOO_FAST: &str = "UPDATE device_codes SET last_polled_at = $3, poll_interval = poll_interval + 5 \
             WHERE hash = $1 AND domain = $2";
pub(super) static REDEEM_DEVICE_CODE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE device_codes SET used_at = $3 WHERE hash = $1 AND domain = $2 AND status = 'approved' \
         AND used_at IS NULL AND expires_at + 0 > $3 RETURNING {DEVICE_ROW}"
    )
});
pub(super) const SET_DEVICE_CODE_ACCESS: &str = "UPDATE device_codes SET access_jti = $3, access_expires_at = $4, family_id = $5 \
             WHERE hash = $1 AND domain = $2 RETURNING reused_at";
pub(super) const MARK_DEVICE_CODE_REUSED: &str = "UPDATE device_codes SET reused_at = $3 WHERE hash = $1 AND domain = $2 AND used_at IS NOT NULL AND reused_at IS NULL";

/// Device authorizations.
pub trait DeviceStore {
    /// Stores a new device authorization; Conflict when its user code is taken in the domain.
    fn insert_device_code(&self, row: &DeviceCodeRow) -> impl Future<Output = StoreResult<()>> + Send;
    /// The device authorization with this device-code hash, whatever its state.
    fn find_device_code(
        &self,
        domain: &str,
        hash: &str,
    ) -> impl Future<Output = StoreResult<Option<DeviceCodeRow>>> + Send;
    /// The device authorization with this user-code hash, whatever its state.
    fn find_device_code_by_user_code(
        &self,
        domain: &str,
        user_code_hash: &str,
    ) -> impl Future<Output = StoreResult<Option<DeviceCodeRow>>> + Send;
    /// Records the approval of a pending, unexpired device authorization; true for exactly one
    /// decision, however many race.
    fn approve_device_code(
        &self,
        domain: &str,
        hash: &str,
        by: &Approval,
        now: i64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Records the denial of a pending, unexpired device authorization; true when this call
    /// decided it.
    fn deny_device_code(
        &self,
        domain: &str,
        hash: &str,
        now: i64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Records a poll at `now`: on time when the current interval has passed since the last
    /// one, otherwise the interval grows by 5 seconds (both record the poll).
    fn poll_device_code(
        &self,
        domain: &str,
        hash: &str,
        now: i64,
    ) -> impl Future<Output = StoreResult<Poll>> + Send;
    /// Marks an approved, unused, unexpired device code used and returns it; None when it was
    /// not redeemable (single use).
    fn redeem_device_code(
        &self,
        domain: &str,
        hash: &str,
        now: i64,
    ) -> impl Future<Output = StoreResult<Option<DeviceCodeRow>>> + Send;
    /// Records what a redemption issued; true when the code was meanwhile presented again
    /// (marked reused), so that the caller revokes what it issued.
    fn set_device_code_access(
        &self,
        domain: &str,
        hash: &str,
        jti: &str,
        expires_at: i64,
        family_id: Option<&str>,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Marks a redeemed device code as presented again (the first time only).
    fn mark_device_code_reused(
        &self,
        domain: &str,
        hash: &str,
        now: i64,
    ) -> impl Future<Output = StoreResult<()>> + Send;
}

impl DeviceStore for SqlStore {
    async fn insert_device_code(&self, r: &DeviceCodeRow) -> StoreResult<()> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO device_codes ({DEVICE_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
        )))
        .bind(&r.hash)
        .bind(&r.domain)
        .bind(&r.user_code_hash)
        .bind(&r.client_id)
        .bind(&r.scope)
        .bind(&r.status)
        .bind(&r.user_id)
        .bind(&r.sid)
        .bind(r.auth_time)
        .bind(&r.amr)
        .bind(r.session_expires_at)
        .bind(r.poll_interval)
        .bind(r.last_polled_at)
        .bind(r.issued_at)
        .bind(r.expires_at)
        .bind(r.decided_at)
        .bind(r.used_at)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn find_device_code(&self, domain: &str, hash: &str) -> StoreResult<Option<DeviceCodeRow>> {
        Ok(sqlx::query_as(FIND_DEVICE_CODE.as_str())
            .bind(hash)
            .bind(domain)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn find_device_code_by_user_code(
        &self,
        domain: &str,
        user_code_hash: &str,
    ) -> StoreResult<Option<DeviceCodeRow>> {
        Ok(sqlx::query_as(FIND_DEVICE_CODE_BY_USER_CODE.as_str())
            .bind(user_code_hash)
            .bind(domain)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn approve_device_code(
        &self,
        domain: &str,
        hash: &str,
        by: &Approval,
        now: i64,
    ) -> StoreResult<bool> {
        let r = sqlx::query(APPROVE_DEVICE_CODE)
            .bind(hash)
            .bind(domain)
            .bind(now)
            .bind(&by.user_id)
            .bind(&by.sid)
            .bind(by.auth_time)
            .bind(&by.amr)
            .bind(by.session_expires_at)
            .execute(&self.writer)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn deny_device_code(&self, domain: &str, hash: &str, now: i64) -> StoreResult<bool> {
        let r = sqlx::query(DENY_DEVICE_CODE)
            .bind(hash)
            .bind(domain)
            .bind(now)
            .execute(&self.writer)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn poll_device_code(&self, domain: &str, hash: &str, now: i64) -> StoreResult<Poll> {
        // The on-time poll is one conditional update: of polls racing within one interval, one
        // is on time and the others slow down.
        let on_time = sqlx::query(POLL_ON_TIME)
            .bind(hash)
            .bind(domain)
            .bind(now)
            .execute(&self.writer)
            .await?
            .rows_affected();
        if on_time == 1 {
            return Ok(Poll::OnTime);
        }
        let slowed = sqlx::query(POLL_TOO_FAST)
            .bind(hash)
            .bind(domain)
            .bind(now)
            .execute(&self.writer)
            .await?
            .rows_affected();
        Ok(if slowed == 1 { Poll::TooFast } else { Poll::Unknown })
    }

    async fn redeem_device_code(
        &self,
        domain: &str,
        hash: &str,
        now: i64,
    ) -> StoreResult<Option<DeviceCodeRow>> {
        Ok(sqlx::query_as(REDEEM_DEVICE_CODE.as_str())
            .bind(hash)
            .bind(domain)
            .bind(now)
            .fetch_optional(&self.writer)
            .await?)
    }

    async fn set_device_code_access(
        &self,
        domain: &str,
        hash: &str,
        jti: &str,
        expires_at: i64,
        family_id: Option<&str>,
    ) -> StoreResult<bool> {
        let row: Option<(Option<i64>,)> = sqlx::query_as(SET_DEVICE_CODE_ACCESS)
            .bind(hash)
            .bind(domain)
            .bind(jti)
            .bind(expires_at)
            .bind(family_id)
            .fetch_optional(&self.writer)
            .await?;
        Ok(matches!(row, Some((Some(_),))))
    }

    async fn mark_device_code_reused(&self, domain: &str, hash: &str, now: i64) -> StoreResult<()> {
        sqlx::query(MARK_DEVICE_CODE_REUSED)
            .bind(hash)
            .bind(domain)
            .bind(now)
            .execute(&self.writer)
            .await?;
        Ok(())
    }
}
