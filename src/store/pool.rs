//! The connection pool: sqlx connections in a `deadpool` pool, handed back without a round trip.
//!
//! sqlx's own pool (0.9) pings every connection it takes back (on PostgreSQL a Sync message and a
//! wait for ReadyForQuery; on SQLite a round trip to the connection's worker thread): one extra
//! round trip per statement, which cost a third of the JWT introspections per second on
//! PostgreSQL. This pool hands a connection back as it is, and instead never keeps one whose
//! state it cannot vouch for: a connection is reused only after its statement ran to
//! the end (rows or a database error such as a constraint violation). One whose statement was
//! cancelled mid-way (the request's future dropped), or failed below SQL (I/O, protocol), is
//! closed and replaced, so a database restart costs each idle connection one failed statement
//! (503), as before.
//!
//! A connection is also closed once past its [`Limits`] (`database.max_lifetime` and
//! `database.idle_timeout`): when it would next be taken, or, sitting idle, by
//! [`Pool::close_expired`], which the server calls every 5 s.
//!
//! `&Pool` is a sqlx `Executor`, so statements run on it as on sqlx's pool:
//! `query(..).execute(&self.pool)`.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use deadpool::Runtime;
use deadpool::managed::{self, Metrics, Object, PoolError, RecycleError, RecycleResult, TimeoutType};
use futures_util::future::BoxFuture;
use futures_util::stream::{self, BoxStream, StreamExt, TryStreamExt};
use log::LevelFilter;
use sqlx::any::{Any, AnyConnectOptions, AnyQueryResult, AnyRow, AnyStatement, AnyTypeInfo};
use sqlx::{AnyConnection, ConnectOptions, Connection, Describe, Either, Execute, Executor, SqlStr};
use tokio::sync::Notify;

/// A pooled connection and whether its state is unknown (a statement began and did not end).
struct Conn {
    conn: AnyConnection,
    unsettled: bool,
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn")
            .field("unsettled", &self.unsettled)
            .finish()
    }
}

/// How long a connection may be kept: at most `max_lifetime` since it was opened, and at most
/// `idle_timeout` since it was last taken (None: no limit); and how long one of its statements may
/// run before it is logged at warn as slow, with its SQL (sqlx's "slow statement"; None: never).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    pub max_lifetime: Option<Duration>,
    pub idle_timeout: Option<Duration>,
    pub slow_statement: Option<Duration>,
}

impl Limits {
    /// True when connections are kept for ever.
    fn keep_for_ever(&self) -> bool {
        self.max_lifetime.is_none() && self.idle_timeout.is_none()
    }

    /// True when a connection with these metrics is past a limit.
    fn expired(&self, m: &Metrics) -> bool {
        self.max_lifetime.is_some_and(|l| m.age() >= l)
            || self.idle_timeout.is_some_and(|l| m.last_used() >= l)
    }
}

/// Opens connections (each set up by the `init` statements) and takes back only settled ones.
struct Manager {
    options: AnyConnectOptions,
    init: &'static [&'static str],
    limits: Limits,
}

impl fmt::Debug for Manager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may hold the database password.
        f.debug_struct("Manager").field("init", &self.init).finish()
    }
}

impl managed::Manager for Manager {
    type Type = Conn;
    type Error = sqlx::Error;

    async fn create(&self) -> Result<Conn, sqlx::Error> {
        let mut conn = AnyConnection::connect_with(&self.options).await?;
        for statement in self.init {
            conn.execute(*statement).await?;
        }
        Ok(Conn {
            conn,
            unsettled: false,
        })
    }

    /// No round trip: a settled connection is idle; an unsettled one, or one past its limits, is
    /// closed (dropped by the pool, which then takes or opens another).
    async fn recycle(&self, c: &mut Conn, m: &Metrics) -> RecycleResult<sqlx::Error> {
        if c.unsettled {
            return Err(RecycleError::message("connection left mid-statement"));
        }
        if self.limits.expired(m) {
            return Err(RecycleError::message(
                "connection past its lifetime or idle timeout",
            ));
        }
        Ok(())
    }
}

/// A pool of store connections. Cloning shares the pool.
#[derive(Clone, Debug)]
pub struct Pool {
    inner: managed::Pool<Manager>,
    /// The statements it runs take plain `?` parameters well (SQLite; see [`Pool::positional`]).
    positional: bool,
    /// Woken when a connection is taken, and when the pool is closed (see [`Pool::taken`]).
    taken: Arc<Notify>,
}

impl Pool {
    /// Opens one connection (so a wrong URL or an unreachable database fails here, at start-up)
    /// and returns a pool of at most `max` connections, each set up by the `init` statements; a
    /// statement waits at most `wait` for a connection.
    pub async fn connect(
        url: &str,
        init: &'static [&'static str],
        max: usize,
        wait: Duration,
    ) -> sqlx::Result<Pool> {
        Pool::connect_with(url, init, max, wait, Limits::default()).await
    }

    /// [`Pool::connect`], keeping each connection only within `limits`: one past them is closed
    /// when it would next be taken, or by [`Pool::close_expired`] while it sits idle.
    pub async fn connect_with(
        url: &str,
        init: &'static [&'static str],
        max: usize,
        wait: Duration,
        limits: Limits,
    ) -> sqlx::Result<Pool> {
        let options = AnyConnectOptions::from_str(url)?;
        let options = match limits.slow_statement {
            Some(d) => options.log_slow_statements(LevelFilter::Warn, d),
            None => options.log_slow_statements(LevelFilter::Off, Duration::MAX),
        };
        let manager = Manager {
            options,
            init,
            limits,
        };
        let inner = managed::Pool::builder(manager)
            .max_size(max.max(1))
            .wait_timeout(Some(wait))
            .create_timeout(Some(wait))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| sqlx::Error::Configuration(e.to_string().into()))?;
        let pool = Pool {
            inner,
            positional: url.starts_with("sqlite:"),
            taken: Arc::new(Notify::new()),
        };
        pool.acquire().await?.release();
        Ok(pool)
    }

    /// True when generated statements with many parameters should write them as plain `?`
    /// (SQLite). `$N` works on both databases and is what hand-written SQL uses; but SQLite keeps
    /// the names of numbered parameters in a list that it walks from the start to name each one,
    /// and sqlx asks for every parameter's name when it binds: quadratic in the parameters. A
    /// 32-row insert of 13 columns has 416; that walk (`sqlite3_bind_parameter_name`) was 6.8 %
    /// of the server's CPU with opaque tokens at 64 connections. Plain `?` have no name.
    pub fn positional(&self) -> bool {
        self.positional
    }

    /// A connection for several statements (a transaction, the migrations). It goes back to the
    /// pool usable only through [`Lease::release`]; dropped otherwise (an error on the way), it is
    /// closed.
    pub async fn acquire(&self) -> sqlx::Result<Lease> {
        self.taken.notify_one();
        let mut conn = self.inner.get().await.map_err(|e| match e {
            PoolError::Backend(e) => e,
            PoolError::Timeout(TimeoutType::Create) => sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "connecting to the database timed out",
            )),
            PoolError::Timeout(_) => sqlx::Error::PoolTimedOut,
            PoolError::Closed => sqlx::Error::PoolClosed,
            other => sqlx::Error::Configuration(other.to_string().into()),
        })?;
        conn.unsettled = true;
        Ok(Lease(conn))
    }

    /// Closes the pool: waiting and later statements fail, idle connections are closed gracefully
    /// (on SQLite the last one to close checkpoints the log into the database file), connections
    /// in use are dropped when their statement ends.
    pub async fn close(&self) {
        let idle = self.inner.retain(|_, _| false).removed;
        self.inner.close();
        self.taken.notify_one();
        for c in idle {
            if let Err(e) = c.conn.close().await {
                tracing::debug!(error.cause = %e, "closing a store connection failed");
            }
        }
    }

    /// Closes the idle connections that are past their limits (gracefully, as [`Pool::close`]
    /// does) and returns how many. Without it an idle pool would keep them until taken again.
    pub async fn close_expired(&self) -> usize {
        let limits = self.inner.manager().limits;
        if limits.keep_for_ever() {
            return 0;
        }
        let expired = self.inner.retain(|_, m| !limits.expired(&m)).removed;
        let n = expired.len();
        for c in expired {
            if let Err(e) = c.conn.close().await {
                tracing::debug!(error.cause = %e, "closing a store connection failed");
            }
        }
        n
    }

    /// Returns once a connection has been taken, or the pool closed, since the last call returned
    /// (at once when that happened meanwhile): what a task that follows the pool's use, rather
    /// than polling it, waits for.
    pub async fn taken(&self) {
        self.taken.notified().await;
    }

    /// How many connections are open (idle or in use).
    pub fn size(&self) -> usize {
        self.inner.status().size
    }
}

/// A connection taken from the pool; unsettled until released.
pub struct Lease(Object<Manager>);

impl Lease {
    /// Hands the connection back to the pool, in a state known to be idle.
    pub fn release(mut self) {
        self.0.unsettled = false;
    }

    /// Records how a statement ended: the connection stays poolable when the statement completed,
    /// including with an error the database reported (its protocol state is then known: idle).
    fn settle<T>(&mut self, result: &sqlx::Result<T>) {
        self.0.unsettled = !matches!(result, Ok(_) | Err(sqlx::Error::Database(_)));
    }
}

impl Deref for Lease {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        &self.0.conn
    }
}

impl DerefMut for Lease {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        &mut self.0.conn
    }
}

impl<'p> Executor<'p> for &'_ Pool {
    type Database = Any;

    /// Runs the statement to the end on one connection, then yields its results. Buffering is what
    /// lets the connection go back to the pool before the caller reads the rows (every statement of
    /// the store reads a bounded number of rows).
    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, sqlx::Result<Either<AnyQueryResult, AnyRow>>>
    where
        E: 'q + Execute<'q, Any>,
    {
        let pool = self.clone();
        stream::once(async move {
            let mut lease = pool.acquire().await?;
            let results: sqlx::Result<Vec<_>> = (&mut *lease).fetch_many(query).try_collect().await;
            lease.settle(&results);
            results.map(|all| stream::iter(all.into_iter().map(Ok)))
        })
        .try_flatten()
        .boxed()
    }

    fn fetch_optional<'e, 'q: 'e, E>(self, query: E) -> BoxFuture<'e, sqlx::Result<Option<AnyRow>>>
    where
        E: 'q + Execute<'q, Any>,
    {
        let pool = self.clone();
        Box::pin(async move {
            let mut lease = pool.acquire().await?;
            let result = (&mut *lease).fetch_optional(query).await;
            lease.settle(&result);
            result
        })
    }

    fn prepare_with<'e>(
        self,
        sql: SqlStr,
        parameters: &'e [AnyTypeInfo],
    ) -> BoxFuture<'e, sqlx::Result<AnyStatement>>
    where
        'p: 'e,
    {
        let pool = self.clone();
        Box::pin(async move {
            let mut lease = pool.acquire().await?;
            let result = (&mut *lease).prepare_with(sql, parameters).await;
            lease.settle(&result);
            result
        })
    }

    /// Used by sqlx's compile-time macros, which Ostiary does not use; kept for the trait.
    fn describe<'e>(self, sql: SqlStr) -> BoxFuture<'e, sqlx::Result<Describe<Any>>> {
        let pool = self.clone();
        Box::pin(async move {
            let mut lease = pool.acquire().await?;
            let result = (&mut *lease).describe(sql).await;
            lease.settle(&result);
            result
        })
    }
}
