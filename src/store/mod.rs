//! Every SQL statement of Ostiary, each written once for SQLite and PostgreSQL (`$N` placeholders,
//! text ids, integer unix seconds, JSON as text), run through sqlx's Any driver.
//!
//! The traits are the contracts the protocol code (`oauth/`) relies on; `SqlStore` implements them.
//!
//! A row found by its key and checked for expiry in the same statement says `expires_at + 0 > $N`,
//! not `expires_at > $N`. The `+ 0` keeps PostgreSQL's planner from estimating that condition with
//! the `expires_at` index (kept for the garbage collector). For a custom plan (a connection's
//! first five executions of a statement) the planner looks up the column's true extreme in that
//! index, and where rows are inserted and used up thousands of times a second its far end is dead
//! entries: each code redemption took 100 to 300 ms for a second after the pool opened new
//! connections (`bench/results/2026-11-24-pg-code-flow-stall.txt`). The key's index finds the row
//! either way.
//!
//! No table has two indexes that a statement could use with the domain alone: an index puts the
//! column that picks the rows first and the domain last (migration 7). Every statement names its
//! domain and a deployment usually has one, so before a table has statistics PostgreSQL costs all
//! domain-first indexes alike and may cache a generic plan that scans the domain's rows along the
//! wrong one. `plans.rs` checks the plan of each statement that finds rows by a key.

pub mod admin;
pub mod assertion;
mod batch;
mod checkpoint;
pub mod device;
pub mod logout;
mod lookups;
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod plans;
pub mod pool;
pub mod refresh;
pub mod seed;
pub mod signin;

use std::future::Future;
use std::sync::LazyLock;
use std::time::Duration;

use sqlx::FromRow;
use sqlx::any::install_default_drivers;

use self::checkpoint::SQLITE_INIT;
use self::pool::{Limits, Pool};

/// What can go wrong in the store, without SQL details.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The row asked for does not exist.
    #[error("not found")]
    NotFound,
    /// A uniqueness or state conflict.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database could not be reached or failed.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A value the database cannot keep (PostgreSQL: a NUL character in text): the request's
    /// fault, not the store's.
    #[error("value refused by the store: {0}")]
    Unstorable(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::RowNotFound => StoreError::NotFound,
            sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict(d.to_string()),
            // PostgreSQL's character_not_in_repertoire: a NUL byte in a text value.
            sqlx::Error::Database(d) if d.code().as_deref() == Some("22021") => {
                StoreError::Unstorable(d.to_string())
            }
            other => StoreError::Unavailable(other.to_string()),
        }
    }
}

/// Result alias for store calls.
pub type StoreResult<T> = Result<T, StoreError>;

/// A signing key as stored: the private half sealed under the key-encryption key.
#[derive(Debug, Clone, FromRow)]
pub struct KeyRow {
    pub kid: String,
    pub domain: String,
    pub alg: String,
    pub generation: i64,
    pub private_sealed: String,
    pub public_jwk: String,
    pub created_at: i64,
    pub activates_at: i64,
}

/// An opaque access token or a refresh token, stored by the SHA-256 of its value.
#[derive(Debug, Clone, FromRow)]
pub struct TokenRow {
    pub hash: String,
    pub domain: String,
    pub kind: String,
    pub client_id: String,
    pub sub: String,
    pub scope: String,
    pub aud: String,
    pub claims: String,
    pub jti: String,
    pub issued_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
    /// Refresh tokens: their family.
    pub family_id: Option<String>,
    /// Refresh tokens: when they were rotated.
    pub used_at: Option<i64>,
}

pub(crate) const TOKEN_COLUMNS: &str = "hash, domain, kind, client_id, sub, scope, aud, claims, jti, issued_at, expires_at, \
    revoked_at, family_id, used_at";

impl batch::Insertable for TokenRow {
    const WHAT: &'static str = "token";
    const TABLE: &'static str = "tokens";
    const COLUMNS: &'static str = TOKEN_COLUMNS;
    // An existing hash is left as it is.
    const ON_CONFLICT: &'static str = " ON CONFLICT (hash) DO NOTHING";
    fn bind<'q>(&'q self, q: batch::AnyQuery<'q>) -> batch::AnyQuery<'q> {
        q.bind(&self.hash)
            .bind(&self.domain)
            .bind(&self.kind)
            .bind(&self.client_id)
            .bind(&self.sub)
            .bind(&self.scope)
            .bind(&self.aud)
            .bind(&self.claims)
            .bind(&self.jti)
            .bind(self.issued_at)
            .bind(self.expires_at)
            .bind(self.revoked_at)
            .bind(&self.family_id)
            .bind(self.used_at)
    }
    fn inserts() -> &'static batch::SqlBySize {
        static INSERTS: batch::SqlBySize = batch::SqlBySize::new(batch::insert_sql::<TokenRow>);
        &INSERTS
    }
}

/// A client's mirror row.
#[derive(Debug, Clone, FromRow)]
pub struct ClientRow {
    pub client_id: String,
    pub config_hash: String,
    pub enabled: i64,
}

/// A user row.
#[derive(Debug, Clone, FromRow)]
pub struct UserRow {
    pub id: String,
    pub domain: String,
    pub username: String,
    pub password_hash: Option<String>,
    pub status: String,
    pub claims: String,
    pub source: String,
    pub config_hash: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// `columns` (a comma-separated list such as [`TOKEN_COLUMNS`]) qualified by a table's `alias`:
/// `t.hash, t.domain, ..`, for a statement that joins tables with columns of the same name.
pub(crate) fn qualified(columns: &str, alias: &str) -> String {
    columns
        .split(',')
        .map(|c| format!("{alias}.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The columns of a user joined as `u` (a LEFT JOIN beside another row), named `u_<column>` so
/// that they do not clash with the other row's: read them with [`joined_user`].
pub(crate) const JOINED_USER_COLUMNS: &str = "u.id AS u_id, u.username AS u_username, \
     u.password_hash AS u_password_hash, u.status AS u_status, u.claims AS u_claims, u.source AS u_source, \
     u.config_hash AS u_config_hash, u.created_at AS u_created_at, u.updated_at AS u_updated_at";

/// The user of [`JOINED_USER_COLUMNS`] in `r`, of `domain`; None when the join found none.
pub(crate) fn joined_user(r: &sqlx::any::AnyRow, domain: &str) -> StoreResult<Option<UserRow>> {
    use sqlx::Row;
    let Some(id) = r.try_get::<Option<String>, _>("u_id")? else {
        return Ok(None);
    };
    Ok(Some(UserRow {
        id,
        domain: domain.to_string(),
        username: r.try_get("u_username")?,
        password_hash: r.try_get("u_password_hash")?,
        status: r.try_get("u_status")?,
        claims: r.try_get("u_claims")?,
        source: r.try_get("u_source")?,
        config_hash: r.try_get("u_config_hash")?,
        created_at: r.try_get("u_created_at")?,
        updated_at: r.try_get("u_updated_at")?,
    }))
}

/// Signing keys.
pub trait KeyStore {
    /// All keys of a domain, oldest generation first.
    fn list_keys(&self, domain: &str) -> impl Future<Output = StoreResult<Vec<KeyRow>>> + Send;
    /// Inserts a key unless its (domain, alg, generation) exists; true when inserted.
    fn insert_key(&self, key: &KeyRow) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Deletes a key that no longer needs publishing.
    fn delete_key(&self, kid: &str) -> impl Future<Output = StoreResult<()>> + Send;
}

/// Opaque tokens and JWT revocations.
pub trait TokenStore {
    /// Stores a new token; a token with the same hash already there is left as it is (a retried
    /// refresh inserts the same successor).
    fn insert_token(&self, token: &TokenRow) -> impl Future<Output = StoreResult<()>> + Send;
    /// The token with this hash in this domain, if any (expired and revoked included).
    fn find_token(
        &self,
        domain: &str,
        hash: &str,
    ) -> impl Future<Output = StoreResult<Option<TokenRow>>> + Send;
    /// Marks a token revoked; true when it was live and is now revoked.
    fn revoke_token(
        &self,
        domain: &str,
        hash: &str,
        now: i64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Revokes the stored (opaque) token with this jti, which is its hash (migration 9 moved
    /// what refers to older tokens by jti to their hash); returns how many (0 for a JWT's jti).
    fn revoke_tokens_by_jti(
        &self,
        domain: &str,
        jti: &str,
        now: i64,
    ) -> impl Future<Output = StoreResult<u64>> + Send;
    /// Records a JWT's jti as revoked until `expires_at`.
    fn revoke_jti(
        &self,
        domain: &str,
        jti: &str,
        client_id: &str,
        expires_at: i64,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// What the store says of a JWT access token, read after the call (grouped with concurrent
    /// lookups in one statement): whether its jti was revoked, and whether `sub` names a user of
    /// the domain who is not active.
    fn jwt_state(
        &self,
        domain: &str,
        jti: &str,
        sub: &str,
    ) -> impl Future<Output = StoreResult<JwtState>> + Send;
    /// The token with this hash, and whether its `sub` names a user of the domain who is not
    /// active, read after the call (grouped with concurrent lookups in one statement).
    fn find_token_and_user(
        &self,
        domain: &str,
        hash: &str,
    ) -> impl Future<Output = StoreResult<Option<(TokenRow, bool)>>> + Send;
}

/// The store's part of a JWT access token's validity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JwtState {
    /// Its jti was revoked.
    pub revoked: bool,
    /// Its subject is a user of the domain who is not active.
    pub user_disabled: bool,
}

/// The mirror of configuration-declared clients and users.
pub trait DirectoryStore {
    /// Client mirror rows of a domain.
    fn list_clients(&self, domain: &str) -> impl Future<Output = StoreResult<Vec<ClientRow>>> + Send;
    /// Inserts or updates a client mirror row.
    fn upsert_client(
        &self,
        domain: &str,
        client_id: &str,
        config_hash: &str,
        enabled: bool,
        now: i64,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Users of a domain that came from configuration (`source = 'config'`).
    fn list_config_users(&self, domain: &str) -> impl Future<Output = StoreResult<Vec<UserRow>>> + Send;
    /// Inserts a user declared in configuration, or updates the declared user of that name
    /// (domain, username); false when a user kept in the store has that name (it is left as it
    /// is: a declaration never takes over a store user, even one created a moment before). Ends
    /// nothing: a caller changing a password or disabling a user signs them out everywhere
    /// before and after this write (`oauth::logout::around_credential_change`, which says why).
    fn upsert_user(&self, user: &UserRow) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Inserts a new user; Conflict when the username exists in the domain.
    fn insert_user(&self, user: &UserRow) -> impl Future<Output = StoreResult<()>> + Send;
    /// The user with this username.
    fn find_user(
        &self,
        domain: &str,
        username: &str,
    ) -> impl Future<Output = StoreResult<Option<UserRow>>> + Send;
    /// Replaces the password hash of the store-managed user `user_id`; false when no such store
    /// user exists. Ends nothing (see [`DirectoryStore::upsert_user`]).
    fn set_user_password(
        &self,
        domain: &str,
        user_id: &str,
        password_hash: &str,
        now: i64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// The configuration revision the store was last reconciled from, if one was recorded.
    fn config_revision(&self) -> impl Future<Output = StoreResult<Option<i64>>> + Send;
    /// Records `revision` as the one reconciled from, unless the store holds a higher one (one
    /// conditional upsert, so two replicas cannot both claim past each other); false then.
    fn claim_config_revision(
        &self,
        revision: i64,
        now: i64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Sets a user's status. Ends nothing (see [`DirectoryStore::upsert_user`]).
    fn set_user_status(
        &self,
        domain: &str,
        username: &str,
        status: &str,
        now: i64,
    ) -> impl Future<Output = StoreResult<()>> + Send;
}

/// Maintenance: health, garbage collection and job leases.
/// What one round of [`MaintenanceStore::delete_expired`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Collected {
    /// The rows removed.
    pub rows: u64,
    /// A kind had a whole batch removed: more may be due.
    pub more: bool,
}

pub trait MaintenanceStore {
    /// Succeeds when the database answers.
    fn ping(&self) -> impl Future<Output = StoreResult<()>> + Send;
    /// Deletes at most `batch` expired rows of each kind, and audit events older than
    /// `events_before`; says how many went, and whether some kind had more.
    fn delete_expired(
        &self,
        now: i64,
        batch: i64,
        events_before: i64,
    ) -> impl Future<Output = StoreResult<Collected>> + Send;
    /// Takes or renews the lease `name` for `holder` until `now + ttl`; true when held.
    fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now: i64,
        ttl: i64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
}

/// Everything the protocol code needs of the store.
pub trait OAuthStore:
    TokenStore
    + DirectoryStore
    + signin::SignInStore
    + refresh::RefreshStore
    + assertion::AssertionStore
    + device::DeviceStore
    + admin::AuditStore
    + admin::AdminStore
    + logout::LogoutStore
    + Sync
{
}
impl<T> OAuthStore for T where
    T: TokenStore
        + DirectoryStore
        + signin::SignInStore
        + refresh::RefreshStore
        + assertion::AssertionStore
        + device::DeviceStore
        + admin::AuditStore
        + admin::AdminStore
        + logout::LogoutStore
        + Sync
{
}

/// Which database is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Groups of token and code inserts, and of JWT-state and token lookups, in the store at once on
/// PostgreSQL (see [`batch::GroupWriter::start_lanes`]): while one group is in the store, the rows
/// queued meanwhile go as the next, instead of leaving the cores idle
/// (bench/results/2026-12-02-write-lanes.txt, bench/results/2026-12-03-read-lanes.txt).
const LANES: usize = 2;

/// The SQL store over SQLite or PostgreSQL.
#[derive(Debug, Clone)]
pub struct SqlStore {
    pool: Pool,
    /// Where writes go. SQLite takes one writer at a time, and a writer that finds the lock taken
    /// sleeps in its busy handler (up to 100 ms a turn): so on SQLite the writes queue in-process
    /// on one connection of their own instead. On PostgreSQL, the pool itself.
    writer: Pool,
    /// True when `writer` is a pool of its own (SQLite on a file), not `pool` again.
    own_writer: bool,
    /// SQLite on a file: the connection that copies the log into the database file (see
    /// [`checkpoint`]).
    checkpointer: Option<Pool>,
    /// Token inserts, committed in groups on `writer`.
    tokens: batch::GroupWriter<TokenRow, ()>,
    /// Successors of rotated refresh tokens, committed in groups on `writer`.
    successors: batch::GroupWriter<TokenRow, bool>,
    /// Access token ids recorded in their refresh-token family, committed in groups on `writer`.
    family_jtis: batch::GroupWriter<refresh::FamilyJtiRow, ()>,
    /// Authorization codes, committed in groups on `writer`.
    codes: batch::GroupWriter<signin::CodeRow, ()>,
    /// Assertion ids used, committed in groups on `writer`.
    jtis: batch::GroupWriter<assertion::UsedJti, bool>,
    /// JWT states, read in groups on `pool`.
    jwt_states: batch::GroupWriter<lookups::JwtLookup, JwtState>,
    /// Opaque tokens with their user's status, read in groups on `pool`.
    token_lookups: batch::GroupWriter<lookups::TokenLookup, Option<(TokenRow, bool)>>,
    /// Refresh-token families with their user, read in groups on `pool`.
    family_lookups: batch::GroupWriter<lookups::FamilyLookup, lookups::FamilyWithUser>,
    /// Refresh tokens used up by rotations, in groups on `writer`.
    takes: batch::GroupWriter<refresh::Take, Option<TokenRow>>,
    backend: Backend,
}

impl SqlStore {
    /// Connects (creating the SQLite file and its folder when missing). Does not migrate.
    pub async fn connect(url: &str, max_connections: u32) -> StoreResult<SqlStore> {
        SqlStore::connect_with(url, max_connections, Limits::default()).await
    }

    /// [`SqlStore::connect`], closing connections past `limits` (except on an in-memory SQLite
    /// database, which lives only as long as its connection).
    pub async fn connect_with(url: &str, max_connections: u32, limits: Limits) -> StoreResult<SqlStore> {
        install_default_drivers();
        // SQLite: the database file.
        let mut file = None;
        let (url, backend) = if url.starts_with("sqlite:") {
            let path = url.trim_start_matches("sqlite:").trim_start_matches("//");
            let path = path.split('?').next().unwrap_or(path);
            file = Some(std::path::PathBuf::from(path));
            if let Some(parent) = std::path::Path::new(path).parent()
                && !parent.as_os_str().is_empty()
            {
                std::fs::create_dir_all(parent).map_err(|e| {
                    StoreError::Unavailable(format!("cannot create {}: {e}", parent.display()))
                })?;
            }
            let url = if url.contains('?') {
                url.to_string()
            } else {
                format!("{url}?mode=rwc")
            };
            (url, Backend::Sqlite)
        } else {
            (url.to_string(), Backend::Postgres)
        };
        let sqlite = backend == Backend::Sqlite;
        let wait = Duration::from_secs(5);
        let init = if sqlite { SQLITE_INIT } else { &[] };
        // An in-memory database exists once per connection: it keeps a single pool, for good.
        let in_memory = sqlite && (url.contains(":memory:") || url.contains("mode=memory"));
        let limits = if in_memory {
            Limits {
                slow_statement: limits.slow_statement,
                ..Limits::default()
            }
        } else {
            limits
        };
        let pool = Pool::connect_with(&url, init, max_connections as usize, wait, limits).await?;
        let own_writer = sqlite && !in_memory;
        let (writer, checkpointer) = match &file {
            Some(path) if own_writer => {
                let writer = Pool::connect_with(&url, checkpoint::WRITER_INIT, 1, wait, limits).await?;
                // A read-only store (`check-config`) writes nothing, and may not checkpoint.
                let checkpointer = if url.contains("mode=ro") {
                    None
                } else {
                    Some(checkpoint::start(path, &url, wait, limits, &writer).await?)
                };
                (writer, checkpointer)
            }
            _ => (pool.clone(), None),
        };
        // Groups in flight at once: inserts of random keys (tokens, codes) may overlap on
        // PostgreSQL (see GroupWriter::start_lanes), not on SQLite's one writing connection.
        // The lookups of JWT states and opaque tokens (introspection, userinfo, revocation)
        // overlap on PostgreSQL too: one group at a time left the machine partly idle, each
        // group waiting for the answer to the one before (one token introspected at 64
        // connections: +15 and +16 % on average over seven pairs, lower p99s;
        // bench/results/2026-12-03-read-lanes.txt). On SQLite, where the server itself is the
        // bottleneck, and for refresh-token families, a second lane gave nothing.
        let writes = if own_writer { 1 } else { LANES };
        let reads = if sqlite { 1 } else { LANES };
        Ok(SqlStore {
            tokens: batch::row_writer(writer.clone(), writes),
            successors: refresh::successor_writer(writer.clone()),
            family_jtis: batch::row_writer(writer.clone(), 1),
            codes: batch::row_writer(writer.clone(), writes),
            jtis: assertion::jti_writer(writer.clone()),
            takes: refresh::take_writer(writer.clone()),
            jwt_states: lookups::jwt_state_reader(pool.clone(), reads),
            token_lookups: lookups::token_reader(pool.clone(), reads),
            family_lookups: lookups::family_reader(pool.clone()),
            pool,
            writer,
            own_writer,
            checkpointer,
            backend,
        })
    }

    /// Closes the idle connections past their limits; returns how many.
    pub async fn close_expired_connections(&self) -> usize {
        let mut n = self.pool.close_expired().await;
        if self.own_writer {
            n += self.writer.close_expired().await;
        }
        if let Some(c) = &self.checkpointer {
            n += c.close_expired().await;
        }
        n
    }

    /// How many store connections are open (idle or in use).
    pub fn open_connections(&self) -> usize {
        self.pool.size()
            + if self.own_writer { self.writer.size() } else { 0 }
            + self.checkpointer.as_ref().map_or(0, Pool::size)
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Applies the embedded migrations of this database.
    pub async fn migrate(&self) -> StoreResult<()> {
        let mut conn = self.writer.acquire().await?;
        let result = match self.backend {
            Backend::Sqlite => sqlx::migrate!("migrations/sqlite").run(&mut *conn).await,
            Backend::Postgres => sqlx::migrate!("migrations/postgres").run(&mut *conn).await,
        };
        result.map_err(|e| StoreError::Unavailable(format!("migration failed: {e}")))?;
        conn.release();
        Ok(())
    }

    /// True when the schema exists (used by `check-config` without changing anything).
    pub async fn is_migrated(&self) -> bool {
        sqlx::query("SELECT COUNT(*) FROM clients")
            .fetch_one(&self.pool)
            .await
            .is_ok()
    }

    /// Closes the pools.
    pub async fn close(&self) {
        self.pool.close().await;
        if let Some(c) = &self.checkpointer {
            c.close().await;
        }
        // Last: closing it wakes the checkpointer's task, which then finds its pool closed and
        // ends, closing its descriptor of the database file only now (see `checkpoint::start`).
        self.writer.close().await;
    }
}

const REVOKE_TOKENS_BY_JTI: &str =
    "UPDATE tokens SET revoked_at = $3 WHERE hash = $2 AND domain = $1 AND revoked_at IS NULL";
const FIND_USER: &str = "SELECT id, domain, username, password_hash, status, claims, source, config_hash, created_at, updated_at \
     FROM users WHERE domain = $1 AND username = $2";
/// By id: a user deleted and another of the same name created since the caller read it is not
/// given the password.
const SET_USER_PASSWORD: &str =
    "UPDATE users SET password_hash = $3, updated_at = $4 WHERE id = $2 AND domain = $1 AND source = 'store'";
const SET_USER_STATUS: &str =
    "UPDATE users SET status = $3, updated_at = $4 WHERE domain = $1 AND username = $2";
const CONFIG_USERS: &str = "SELECT id, domain, username, password_hash, status, claims, source, config_hash, created_at, updated_at \
     FROM users WHERE domain = $1 AND source = 'config' ORDER BY username";

impl KeyStore for SqlStore {
    async fn list_keys(&self, domain: &str) -> StoreResult<Vec<KeyRow>> {
        Ok(sqlx::query_as(
            "SELECT kid, domain, alg, generation, private_sealed, public_jwk, created_at, activates_at \
             FROM signing_keys WHERE domain = $1 ORDER BY alg, generation",
        )
        .bind(domain)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn insert_key(&self, k: &KeyRow) -> StoreResult<bool> {
        let r = sqlx::query(
            "INSERT INTO signing_keys (kid, domain, alg, generation, private_sealed, public_jwk, created_at, activates_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (domain, alg, generation) DO NOTHING",
        )
        .bind(&k.kid)
        .bind(&k.domain)
        .bind(&k.alg)
        .bind(k.generation)
        .bind(&k.private_sealed)
        .bind(&k.public_jwk)
        .bind(k.created_at)
        .bind(k.activates_at)
        .execute(&self.writer)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn delete_key(&self, kid: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM signing_keys WHERE kid = $1")
            .bind(kid)
            .execute(&self.writer)
            .await?;
        Ok(())
    }
}

static FIND_TOKEN: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE hash = $1 AND domain = $2"));
const REVOKE_TOKEN: &str =
    "UPDATE tokens SET revoked_at = $3 WHERE hash = $1 AND domain = $2 AND revoked_at IS NULL";

impl TokenStore for SqlStore {
    async fn insert_token(&self, t: &TokenRow) -> StoreResult<()> {
        self.tokens.submit(t.clone()).await
    }

    async fn find_token(&self, domain: &str, hash: &str) -> StoreResult<Option<TokenRow>> {
        Ok(sqlx::query_as(FIND_TOKEN.as_str())
            .bind(hash)
            .bind(domain)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn revoke_token(&self, domain: &str, hash: &str, now: i64) -> StoreResult<bool> {
        let r = sqlx::query(REVOKE_TOKEN)
            .bind(hash)
            .bind(domain)
            .bind(now)
            .execute(&self.writer)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn revoke_tokens_by_jti(&self, domain: &str, jti: &str, now: i64) -> StoreResult<u64> {
        let r = sqlx::query(REVOKE_TOKENS_BY_JTI)
            .bind(domain)
            .bind(jti)
            .bind(now)
            .execute(&self.writer)
            .await?;
        Ok(r.rows_affected())
    }

    async fn revoke_jti(&self, domain: &str, jti: &str, client_id: &str, expires_at: i64) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO revoked_jtis (domain, jti, client_id, expires_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (domain, jti) DO NOTHING",
        )
        .bind(domain)
        .bind(jti)
        .bind(client_id)
        .bind(expires_at)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn jwt_state(&self, domain: &str, jti: &str, sub: &str) -> StoreResult<JwtState> {
        self.jwt_states
            .submit(lookups::JwtLookup {
                domain: domain.to_string(),
                jti: jti.to_string(),
                sub: sub.to_string(),
            })
            .await
    }

    async fn find_token_and_user(&self, domain: &str, hash: &str) -> StoreResult<Option<(TokenRow, bool)>> {
        self.token_lookups
            .submit(lookups::TokenLookup {
                domain: domain.to_string(),
                hash: hash.to_string(),
            })
            .await
    }
}

impl DirectoryStore for SqlStore {
    async fn list_clients(&self, domain: &str) -> StoreResult<Vec<ClientRow>> {
        Ok(sqlx::query_as(
            "SELECT client_id, config_hash, enabled FROM clients WHERE domain = $1 ORDER BY client_id",
        )
        .bind(domain)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn upsert_client(
        &self,
        domain: &str,
        client_id: &str,
        config_hash: &str,
        enabled: bool,
        now: i64,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO clients (domain, client_id, config_hash, enabled, updated_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (domain, client_id) DO UPDATE SET config_hash = $3, enabled = $4, updated_at = $5",
        )
        .bind(domain)
        .bind(client_id)
        .bind(config_hash)
        .bind(i64::from(enabled))
        .bind(now)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn list_config_users(&self, domain: &str) -> StoreResult<Vec<UserRow>> {
        Ok(sqlx::query_as(CONFIG_USERS)
            .bind(domain)
            .fetch_all(&self.pool)
            .await?)
    }

    async fn upsert_user(&self, u: &UserRow) -> StoreResult<bool> {
        let done = sqlx::query(
            "INSERT INTO users (id, domain, username, password_hash, status, claims, source, config_hash, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (domain, username) DO UPDATE SET password_hash = $4, status = $5, claims = $6, \
             source = $7, config_hash = $8, updated_at = $10 WHERE users.source = $7",
        )
        .bind(&u.id)
        .bind(&u.domain)
        .bind(&u.username)
        .bind(&u.password_hash)
        .bind(&u.status)
        .bind(&u.claims)
        .bind(&u.source)
        .bind(&u.config_hash)
        .bind(u.created_at)
        .bind(u.updated_at)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn insert_user(&self, u: &UserRow) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO users (id, domain, username, password_hash, status, claims, source, config_hash, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&u.id)
        .bind(&u.domain)
        .bind(&u.username)
        .bind(&u.password_hash)
        .bind(&u.status)
        .bind(&u.claims)
        .bind(&u.source)
        .bind(&u.config_hash)
        .bind(u.created_at)
        .bind(u.updated_at)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn find_user(&self, domain: &str, username: &str) -> StoreResult<Option<UserRow>> {
        Ok(sqlx::query_as(FIND_USER)
            .bind(domain)
            .bind(username)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn set_user_password(
        &self,
        domain: &str,
        user_id: &str,
        password_hash: &str,
        now: i64,
    ) -> StoreResult<bool> {
        let r = sqlx::query(SET_USER_PASSWORD)
            .bind(domain)
            .bind(user_id)
            .bind(password_hash)
            .bind(now)
            .execute(&self.writer)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn config_revision(&self) -> StoreResult<Option<i64>> {
        let row: Option<(i64,)> = sqlx::query_as("SELECT revision FROM config_revision WHERE id = 1")
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.0))
    }

    async fn claim_config_revision(&self, revision: i64, now: i64) -> StoreResult<bool> {
        let r = sqlx::query(
            "INSERT INTO config_revision (id, revision, applied_at) VALUES (1, $1, $2) \
             ON CONFLICT (id) DO UPDATE SET revision = excluded.revision, applied_at = excluded.applied_at \
             WHERE config_revision.revision <= excluded.revision",
        )
        .bind(revision)
        .bind(now)
        .execute(&self.writer)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn set_user_status(&self, domain: &str, username: &str, status: &str, now: i64) -> StoreResult<()> {
        sqlx::query(SET_USER_STATUS)
            .bind(domain)
            .bind(username)
            .bind(status)
            .bind(now)
            .execute(&self.writer)
            .await?;
        Ok(())
    }
}

/// How long past its JWT's `exp` a jti record (a revoked JWT, an access token of a family, a
/// used assertion) is kept: a replica whose clock runs behind the garbage collector's still
/// takes that JWT as unexpired for as long as the difference, and without the record it would
/// take a revoked token as live, or a replayed assertion as new.
const JTI_MARGIN: i64 = 300;

#[cfg(test)]
impl SqlStore {
    /// A migrated SQLite store in `dir`, for the store's unit tests.
    #[allow(clippy::unwrap_used)]
    pub(crate) async fn for_tests(dir: &tempfile::TempDir) -> SqlStore {
        let store = SqlStore::connect(&format!("sqlite://{}/t.db", dir.path().display()), 2)
            .await
            .unwrap();
        store.migrate().await.unwrap();
        store
    }
}

impl MaintenanceStore for SqlStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn delete_expired(&self, now: i64, batch: i64, events_before: i64) -> StoreResult<Collected> {
        // Rows removed by each statement: one that removed a whole batch may have more due.
        let mut counts: Vec<u64> = Vec::with_capacity(12);
        let tokens = sqlx::query(
            "DELETE FROM tokens WHERE hash IN (SELECT hash FROM tokens WHERE expires_at < $1 ORDER BY expires_at LIMIT $2)",
        )
        .bind(now)
        .bind(batch)
        .execute(&self.writer)
        .await?
        .rows_affected();
        counts.push(tokens);
        // Codes (authorization and device) stay a day past expiry so that a replayed code is
        // still recognised as reused and the tokens issued from it revoked.
        for (table, key, grace) in [
            ("auth_requests", "id", 0),
            ("sessions", "hash", 0),
            ("auth_codes", "hash", 86_400),
            ("refresh_families", "id", 0),
            ("family_jtis", "domain, jti", JTI_MARGIN),
            ("device_codes", "hash", 86_400),
        ] {
            // Oldest first along the expiry index, then by the whole primary key: a run reads
            // `batch` index entries, however many rows the table holds.
            counts.push(sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE ({key}) IN (SELECT {key} FROM {table} WHERE expires_at < $1 ORDER BY expires_at LIMIT $2)"
            )))
            .bind(now - grace)
            .bind(batch)
            .execute(&self.writer)
            .await?
            .rows_affected());
        }
        // Sign-in failures are forgotten a day after the last one.
        counts.push(sqlx::query(
            "DELETE FROM login_attempts WHERE (domain, bucket) IN (SELECT domain, bucket FROM login_attempts \
             WHERE updated_at < $1 AND locked_until < $2 ORDER BY updated_at LIMIT $3)",
        )
        .bind(now - 86_400)
        .bind(now)
        .bind(batch)
        .execute(&self.writer)
        .await?
        .rows_affected());
        // Audit events are kept for server.audit_retention.
        counts.push(sqlx::query(
            "DELETE FROM audit_events WHERE id IN (SELECT id FROM audit_events WHERE at < $1 ORDER BY at LIMIT $2)",
        )
        .bind(events_before)
        .bind(batch)
        .execute(&self.writer)
        .await?
        .rows_affected());
        for (table, key) in [
            ("revoked_jtis", "domain, jti"),
            ("assertion_jtis", "domain, issuer, jti"),
        ] {
            counts.push(sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE ({key}) IN (SELECT {key} FROM {table} WHERE expires_at < $1 ORDER BY expires_at LIMIT $2)"
            )))
            .bind(now - JTI_MARGIN)
            .bind(batch)
            .execute(&self.writer)
            .await?
            .rows_affected());
        }
        let full = u64::try_from(batch).unwrap_or(u64::MAX);
        Ok(Collected {
            rows: counts.iter().sum(),
            more: counts.iter().any(|&n| n >= full),
        })
    }

    async fn acquire_lease(&self, name: &str, holder: &str, now: i64, ttl: i64) -> StoreResult<bool> {
        let row: Option<(String,)> = sqlx::query_as(
            "INSERT INTO job_leases (name, holder, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = $2, expires_at = $3 \
             WHERE job_leases.holder = $2 OR job_leases.expires_at < $4 RETURNING holder",
        )
        .bind(name)
        .bind(holder)
        .bind(now + ttl)
        .bind(now)
        .fetch_optional(&self.writer)
        .await?;
        Ok(row.is_some())
    }
}
