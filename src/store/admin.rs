//! SQL of the administration API and the audit trail: audit events, consents, sessions and the
//! profile of store-managed users. Optional filters are bound as NULL when absent.

use std::future::Future;

use sqlx::FromRow;

use super::batch::{AnyQuery, Insertable, SqlBySize, insert_rows, insert_sql};
use super::signin::SESSION_COLUMNS;
use super::signin::SessionRow;
use super::{SqlStore, StoreResult, UserRow};

/// One audit event as stored.
#[derive(Debug, Clone, FromRow)]
pub struct EventRow {
    pub id: i64,
    pub at: i64,
    pub kind: String,
    pub actor: String,
    pub domain: String,
    pub client_id: Option<String>,
    pub user_id: Option<String>,
    pub outcome: String,
    pub request_id: Option<String>,
    /// JSON object, without secrets.
    pub details: String,
}

impl Insertable for EventRow {
    const WHAT: &'static str = "audit event";
    const TABLE: &'static str = "audit_events";
    // The id is the table's own.
    const COLUMNS: &'static str = "at, kind, actor, domain, client_id, user_id, outcome, request_id, details";
    const ON_CONFLICT: &'static str = "";
    fn bind<'q>(&'q self, q: AnyQuery<'q>) -> AnyQuery<'q> {
        q.bind(self.at)
            .bind(&self.kind)
            .bind(&self.actor)
            .bind(&self.domain)
            .bind(&self.client_id)
            .bind(&self.user_id)
            .bind(&self.outcome)
            .bind(&self.request_id)
            .bind(&self.details)
    }
    fn inserts() -> &'static SqlBySize {
        static INSERTS: SqlBySize = SqlBySize::new(insert_sql::<EventRow>);
        &INSERTS
    }
}

/// Filters of an event listing; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub kind: Option<String>,
    pub user_id: Option<String>,
    pub client_id: Option<String>,
    /// Events at or after this unix time.
    pub since: Option<i64>,
    /// Events before this unix time.
    pub until: Option<i64>,
}

/// A consent as stored.
#[derive(Debug, Clone, FromRow)]
pub struct ConsentRow {
    pub domain: String,
    pub user_id: String,
    pub client_id: String,
    pub scope: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A page of rows and the number of rows matching in all.
pub type Page<T> = (Vec<T>, i64);

/// The audit trail.
pub trait AuditStore {
    /// Appends an event (its `id` is assigned by the store).
    fn insert_event(&self, e: &EventRow) -> impl Future<Output = StoreResult<()>> + Send;
    /// Appends events in order, up to 32 in one statement.
    fn insert_events(&self, events: &[EventRow]) -> impl Future<Output = StoreResult<()>> + Send;
    /// Events of a domain matching `f`, newest first.
    fn list_events(
        &self,
        domain: &str,
        f: &EventFilter,
        limit: i64,
        offset: i64,
    ) -> impl Future<Output = StoreResult<Page<EventRow>>> + Send;
}

/// What the administration API reads and changes beyond the other stores.
pub trait AdminStore {
    /// A page of the domain's users by username, and how many the domain has.
    fn list_users(
        &self,
        domain: &str,
        limit: i64,
        offset: i64,
    ) -> impl Future<Output = StoreResult<Page<UserRow>>> + Send;
    /// Consents of a domain, optionally of one user and/or one client, by user then client.
    fn list_consents(
        &self,
        domain: &str,
        user_id: Option<&str>,
        client_id: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> impl Future<Output = StoreResult<Page<ConsentRow>>> + Send;
    /// Deletes a consent; true when it existed.
    fn delete_consent(
        &self,
        domain: &str,
        user_id: &str,
        client_id: &str,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Live sessions of a domain at `now`, optionally of one user, newest first.
    fn list_live_sessions(
        &self,
        domain: &str,
        user_id: Option<&str>,
        now: i64,
        limit: i64,
        offset: i64,
    ) -> impl Future<Output = StoreResult<Page<SessionRow>>> + Send;
    /// Replaces the claims (JSON) of a store-managed user; false when no such store user exists.
    fn set_user_claims(
        &self,
        domain: &str,
        user_id: &str,
        claims: &str,
        now: i64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
}

const EVENT_COLUMNS: &str = "id, at, kind, actor, domain, client_id, user_id, outcome, request_id, details";
pub(super) const UPDATE_STORE_USER_CLAIMS: &str =
    "UPDATE users SET claims = $3, updated_at = $4 WHERE domain = $1 AND id = $2 AND source = 'store'";
const EVENT_FILTER: &str = "domain = $1 AND ($2 IS NULL OR kind = $2) AND ($3 IS NULL OR user_id = $3) \
    AND ($4 IS NULL OR client_id = $4) AND ($5 IS NULL OR at >= $5) AND ($6 IS NULL OR at < $6)";
const CONSENT_FILTER: &str =
    "domain = $1 AND ($2 IS NULL OR user_id = $2) AND ($3 IS NULL OR client_id = $3)";
/// A live session at `$3`, of the user `$2` when bound.
const SESSION_FILTER: &str = "domain = $1 AND ($2 IS NULL OR user_id = $2) AND ended_at IS NULL \
    AND expires_at > $3 AND last_seen + idle_timeout > $3";

impl AuditStore for SqlStore {
    async fn insert_event(&self, e: &EventRow) -> StoreResult<()> {
        self.insert_events(std::slice::from_ref(e)).await
    }

    async fn insert_events(&self, events: &[EventRow]) -> StoreResult<()> {
        insert_rows(&self.writer, events).await
    }

    async fn list_events(
        &self,
        domain: &str,
        f: &EventFilter,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Page<EventRow>> {
        let rows = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {EVENT_COLUMNS} FROM audit_events WHERE {EVENT_FILTER} ORDER BY at DESC, id DESC LIMIT $7 OFFSET $8"
        )))
        .bind(domain)
        .bind(&f.kind)
        .bind(&f.user_id)
        .bind(&f.client_id)
        .bind(f.since)
        .bind(f.until)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        let (total,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM audit_events WHERE {EVENT_FILTER}"
        )))
        .bind(domain)
        .bind(&f.kind)
        .bind(&f.user_id)
        .bind(&f.client_id)
        .bind(f.since)
        .bind(f.until)
        .fetch_one(&self.pool)
        .await?;
        Ok((rows, total))
    }
}

impl AdminStore for SqlStore {
    async fn list_users(&self, domain: &str, limit: i64, offset: i64) -> StoreResult<Page<UserRow>> {
        let rows = sqlx::query_as(
            "SELECT id, domain, username, password_hash, status, claims, source, config_hash, created_at, updated_at \
             FROM users WHERE domain = $1 ORDER BY username LIMIT $2 OFFSET $3",
        )
        .bind(domain)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        let (total,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM users WHERE domain = $1")
            .bind(domain)
            .fetch_one(&self.pool)
            .await?;
        Ok((rows, total))
    }

    async fn list_consents(
        &self,
        domain: &str,
        user_id: Option<&str>,
        client_id: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Page<ConsentRow>> {
        let rows = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT domain, user_id, client_id, scope, created_at, updated_at FROM consents \
             WHERE {CONSENT_FILTER} ORDER BY user_id, client_id LIMIT $4 OFFSET $5"
        )))
        .bind(domain)
        .bind(user_id)
        .bind(client_id)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        let (total,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM consents WHERE {CONSENT_FILTER}"
        )))
        .bind(domain)
        .bind(user_id)
        .bind(client_id)
        .fetch_one(&self.pool)
        .await?;
        Ok((rows, total))
    }

    async fn delete_consent(&self, domain: &str, user_id: &str, client_id: &str) -> StoreResult<bool> {
        let r = sqlx::query("DELETE FROM consents WHERE domain = $1 AND user_id = $2 AND client_id = $3")
            .bind(domain)
            .bind(user_id)
            .bind(client_id)
            .execute(&self.writer)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn list_live_sessions(
        &self,
        domain: &str,
        user_id: Option<&str>,
        now: i64,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Page<SessionRow>> {
        let rows = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE {SESSION_FILTER} ORDER BY created_at DESC, sid LIMIT $4 OFFSET $5"
        )))
        .bind(domain)
        .bind(user_id)
        .bind(now)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        let (total,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM sessions WHERE {SESSION_FILTER}"
        )))
        .bind(domain)
        .bind(user_id)
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Ok((rows, total))
    }

    async fn set_user_claims(
        &self,
        domain: &str,
        user_id: &str,
        claims: &str,
        now: i64,
    ) -> StoreResult<bool> {
        let r = sqlx::query(UPDATE_STORE_USER_CLAIMS)
            .bind(domain)
            .bind(user_id)
            .bind(claims)
            .bind(now)
            .execute(&self.writer)
            .await?;
        Ok(r.rows_affected() == 1)
    }
}
