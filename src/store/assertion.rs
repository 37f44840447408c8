//! SQL for assertion replay protection (RFC 7523 s3): the jti of every accepted assertion, kept
//! until the assertion expires.

use std::future::Future;

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
        // A row left by an expired assertion (not yet collected) may be taken over.
        let n = sqlx::query(
            "INSERT INTO assertion_jtis (domain, issuer, jti, expires_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (domain, issuer, jti) DO UPDATE SET expires_at = $4 \
             WHERE assertion_jtis.expires_at < $5",
        )
        .bind(domain)
        .bind(issuer)
        .bind(jti)
        .bind(expires_at)
        .bind(now)
        .execute(&self.writer)
        .await?
        .rows_affected();
        Ok(n == 1)
    }
}
