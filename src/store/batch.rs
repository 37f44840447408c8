//! Group commit: requests that store a token (opaque access tokens, refresh tokens at the code
//! exchange) or an authorization code, or record an assertion id (`private_key_jwt`, JWT bearer grants) hand their row to a
//! writer task, which stores every row queued at that moment in multi-row statements, in one
//! commit, and then answers each request. A request still returns only after its row is stored;
//! under load, one statement (one SQLite write transaction, one PostgreSQL commit) stores many
//! rows instead of one each. Alone, a row goes at once.

use std::borrow::Cow;
use std::future::Future;
use std::sync::{Arc, OnceLock};

use sqlx::Executor;
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::pool::Pool;
use super::{StoreError, StoreResult};

/// Rows stored by one turn of the writer.
const BATCH: usize = 64;

/// Rows in one insert: 32, 16, 8, 4, 2 or 1 (a handful of statement shapes, each prepared once
/// per connection).
const INSERT_SIZES: [usize; 6] = [32, 16, 8, 4, 2, 1];

/// Splits `len` into parts of `sizes` (largest first, ending with 1), largest first.
fn sizes_of(sizes: &'static [usize], mut len: usize) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        let n = sizes.iter().copied().find(|n| *n <= len)?;
        len -= n;
        Some(n)
    })
}

/// `($1, .., $cols), ($cols+1, ..)`: the VALUES of an insert of `rows` rows of `cols` columns;
/// with `positional` (see [`Pool::positional`]) every parameter is a plain `?`, bound in the
/// same order.
pub(crate) fn values_placeholders(positional: bool, rows: usize, cols: usize) -> String {
    (0..rows)
        .map(|r| {
            let p: Vec<String> = (1..=cols)
                .map(|c| placeholder(positional, r * cols + c))
                .collect();
            format!("({})", p.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Groups of up to this many rows have their statement's text kept (the largest of the sizes a
/// group is split into).
const KEPT_ROWS: usize = 64;

/// The text of a generated statement for each size of group and style of placeholder, built at
/// its first use and kept for the life of the process. Building one (a placeholder and a `format!`
/// per column of each row) took 4 to 13 % of the server's instructions for a request that reads or
/// writes in groups (opaque tokens and their introspection, a refresh; `bench/instructions.sh`),
/// and the text a size gives never changes.
pub(crate) struct SqlBySize {
    build: fn(bool, usize) -> String,
    kept: [[OnceLock<String>; KEPT_ROWS + 1]; 2],
}

impl SqlBySize {
    /// The texts of `build(positional, rows)`.
    pub(crate) const fn new(build: fn(bool, usize) -> String) -> Self {
        Self {
            build,
            kept: [const { [const { OnceLock::new() }; KEPT_ROWS + 1] }; 2],
        }
    }

    /// The statement for `rows` rows: the kept text, or a new one past [`KEPT_ROWS`].
    pub(crate) fn get(
        &'static self,
        positional: bool,
        rows: usize,
    ) -> sqlx::AssertSqlSafe<Cow<'static, str>> {
        let text = match self.kept[usize::from(positional)].get(rows) {
            Some(slot) => Cow::Borrowed(slot.get_or_init(|| (self.build)(positional, rows)).as_str()),
            None => Cow::Owned((self.build)(positional, rows)),
        };
        sqlx::AssertSqlSafe(text)
    }
}

/// Parameter `n` (1-based) of a generated statement: `$n`, or `?` with `positional` (then the
/// statement's parameters must appear in the text in the order they are bound).
pub(crate) fn placeholder(positional: bool, n: usize) -> String {
    if positional {
        "?".to_string()
    } else {
        format!("${n}")
    }
}

/// Runs `statements` as one commit: alone on the pool, or several in one transaction. Returns
/// each statement's rows.
pub(crate) async fn in_one_commit(
    pool: &Pool,
    statements: Vec<AnyQuery<'_>>,
) -> StoreResult<Vec<Vec<sqlx::any::AnyRow>>> {
    let mut rows = Vec::with_capacity(statements.len());
    if statements.len() == 1 {
        for q in statements {
            rows.push(q.fetch_all(pool).await?);
        }
        return Ok(rows);
    }
    // BEGIN and COMMIT as statements, not sqlx's `begin()` and `commit()`: sqlx's SQLite driver
    // runs those outside its statement log, so a slow COMMIT (where SQLite writes the group's
    // pages to its log file) never reached `database.slow_statement`.
    let mut conn = pool.acquire().await?;
    let stored = async {
        conn.execute("BEGIN").await?;
        for q in statements {
            rows.push(q.fetch_all(&mut *conn).await?);
        }
        conn.execute("COMMIT").await
    }
    .await;
    match stored {
        Ok(_) => {
            conn.release();
            Ok(rows)
        }
        Err(e) => {
            // Undo the group's other statements at once: an open transaction holds SQLite's
            // write lock (PostgreSQL's row locks) until it ends. The connection goes back to the
            // pool only when that worked; otherwise (and if this future is dropped mid-way) the
            // lease is dropped unreleased, and the pool closes the connection instead of handing
            // it out again, which ends the transaction.
            if conn.execute("ROLLBACK").await.is_ok() {
                conn.release();
            }
            Err(e.into())
        }
    }
}

/// Splits `rows` into inserts of [`INSERT_SIZES`] rows, largest first, in order.
pub(crate) fn chunks<T>(rows: &[T]) -> impl Iterator<Item = &[T]> {
    chunks_of(&INSERT_SIZES, rows)
}

/// Splits `rows` into groups of `sizes` (largest first, ending with 1), in order.
pub(crate) fn chunks_of<'r, T>(sizes: &'static [usize], rows: &'r [T]) -> impl Iterator<Item = &'r [T]> {
    let mut rest = rows;
    sizes_of(sizes, rows.len()).map(move |n| {
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        chunk
    })
}

/// A row that requests hand to a [`row_writer`]: its table, columns and binds.
pub(crate) trait Insertable: Send + Sync + 'static {
    /// What a row is (named in errors).
    const WHAT: &'static str;
    /// The table.
    const TABLE: &'static str;
    /// The columns, comma-separated, in the order [`Insertable::bind`] binds them.
    const COLUMNS: &'static str;
    /// After the VALUES (e.g. an `ON CONFLICT` clause), or empty.
    const ON_CONFLICT: &'static str;
    /// Binds this row's columns, in the order of [`Insertable::COLUMNS`].
    fn bind<'q>(&'q self, q: AnyQuery<'q>) -> AnyQuery<'q>;
    /// The texts of this row's inserts: a static `SqlBySize::new(insert_sql::<Self>)` of the
    /// implementing type (a static in a generic function would be one for every type).
    fn inserts() -> &'static SqlBySize;
}

/// The insert of `rows` rows of `T`.
pub(crate) fn insert_sql<T: Insertable>(positional: bool, rows: usize) -> String {
    format!(
        "INSERT INTO {} ({}) VALUES {}{}",
        T::TABLE,
        T::COLUMNS,
        values_placeholders(positional, rows, T::COLUMNS.split(',').count()),
        T::ON_CONFLICT
    )
}

/// A statement of sqlx's Any driver, its parameters to be bound.
pub(crate) type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>;

/// Stores `rows` in one commit.
pub(crate) async fn insert_rows<T: Insertable>(pool: &Pool, rows: &[T]) -> StoreResult<()> {
    let statements = chunks(rows)
        .map(|chunk| {
            let sql = T::inserts().get(pool.positional(), chunk.len());
            chunk.iter().fold(sqlx::query(sql), |q, row| row.bind(q))
        })
        .collect();
    in_one_commit(pool, statements).await?;
    Ok(())
}

type Reply<R> = oneshot::Sender<Result<R, String>>;

/// A queue to a writer task that stores every row queued at one moment together (its `store`
/// function gets them all and returns one answer per row, in order) and then answers each
/// submitter. Cloning shares the task; it ends when the last clone is dropped.
pub(crate) struct GroupWriter<T, R> {
    tx: mpsc::Sender<(T, Reply<R>)>,
    what: &'static str,
}

impl<T, R> Clone for GroupWriter<T, R> {
    fn clone(&self) -> Self {
        GroupWriter {
            tx: self.tx.clone(),
            what: self.what,
        }
    }
}

impl<T, R> std::fmt::Debug for GroupWriter<T, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupWriter").field("what", &self.what).finish()
    }
}

impl<T: Send + 'static, R: Send + 'static> GroupWriter<T, R> {
    /// Starts the writer task of `what` (named in errors), one group at a time.
    pub(crate) fn start<F, Fut>(what: &'static str, store: F) -> Self
    where
        F: Fn(Vec<T>) -> Fut + Send + 'static,
        Fut: Future<Output = StoreResult<Vec<R>>> + Send + 'static,
    {
        GroupWriter::start_lanes(what, 1, store)
    }

    /// Starts the writer task of `what` with up to `lanes` groups in flight at once: while one
    /// group is in the store, the rows queued meanwhile go as the next one. Only for rows whose
    /// groups cannot deadlock each other: reads, inserts of random never repeated keys, or
    /// writes that every group makes in one order of their keys (two groups in flight that
    /// write two shared keys in opposite orders would wait for each other). With one lane, a
    /// group is taken only after the one before is stored.
    pub(crate) fn start_lanes<F, Fut>(what: &'static str, lanes: usize, store: F) -> Self
    where
        F: Fn(Vec<T>) -> Fut + Send + 'static,
        Fut: Future<Output = StoreResult<Vec<R>>> + Send + 'static,
    {
        let (tx, mut rx) = mpsc::channel::<(T, Reply<R>)>(4 * BATCH);
        let free = Arc::new(Semaphore::new(lanes.max(1)));
        tokio::spawn(async move {
            let mut queued = Vec::with_capacity(BATCH);
            loop {
                // A lane first, so that rows queue while every lane is busy and go together.
                let Ok(lane) = free.clone().acquire_owned().await else {
                    return;
                };
                if rx.recv_many(&mut queued, BATCH).await == 0 {
                    return;
                }
                let (rows, replies): (Vec<T>, Vec<Reply<R>>) = queued.drain(..).unzip();
                let stored = store(rows);
                tokio::spawn(async move {
                    answer(what, replies, stored.await);
                    drop(lane);
                });
            }
        });
        GroupWriter { tx, what }
    }

    /// Stores `row` with the rows queued beside it; returns its answer once they are stored.
    pub(crate) async fn submit(&self, row: T) -> StoreResult<R> {
        let stopped = || StoreError::Unavailable(format!("the {} writer has stopped", self.what));
        let (reply, answer) = oneshot::channel();
        self.tx.send((row, reply)).await.map_err(|_| stopped())?;
        answer
            .await
            .map_err(|_| stopped())?
            .map_err(StoreError::Unavailable)
    }
}

/// Answers each submitter of a group with its row's answer, or with the group's error. A
/// submitter that gave up waiting is not an error of the others.
fn answer<R>(what: &'static str, replies: Vec<Reply<R>>, stored: StoreResult<Vec<R>>) {
    match stored {
        Ok(answers) if answers.len() == replies.len() => {
            for (reply, answer) in replies.into_iter().zip(answers) {
                let _ = reply.send(Ok(answer));
            }
        }
        Ok(_) => {
            for reply in replies {
                let _ = reply.send(Err(format!("{what}: one answer per row expected")));
            }
        }
        Err(e) => {
            let e = e.to_string();
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

/// The writer of rows of `T` (see the module's documentation), with `lanes` groups in flight at
/// most (see [`GroupWriter::start_lanes`]).
pub(crate) fn row_writer<T: Insertable>(pool: Pool, lanes: usize) -> GroupWriter<T, ()> {
    GroupWriter::start_lanes(T::WHAT, lanes, move |rows: Vec<T>| {
        let pool = pool.clone();
        async move {
            insert_rows(&pool, &rows).await?;
            Ok(vec![(); rows.len()])
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_every_row_largest_first() {
        assert_eq!(sizes_of(&INSERT_SIZES, 0).count(), 0);
        assert_eq!(sizes_of(&INSERT_SIZES, 1).collect::<Vec<_>>(), [1]);
        assert_eq!(sizes_of(&INSERT_SIZES, 64).collect::<Vec<_>>(), [32, 32]);
        assert_eq!(sizes_of(&INSERT_SIZES, 45).collect::<Vec<_>>(), [32, 8, 4, 1]);
        for len in 0..300 {
            assert_eq!(sizes_of(&INSERT_SIZES, len).sum::<usize>(), len);
        }
        // Other sizes (the grouped lookups' 64 first), the rows in order.
        const LOOKUP: [usize; 7] = [64, 32, 16, 8, 4, 2, 1];
        let rows: Vec<usize> = (0..100).collect();
        let parts: Vec<&[usize]> = chunks_of(&LOOKUP, &rows).collect();
        assert_eq!(parts.iter().map(|p| p.len()).collect::<Vec<_>>(), [64, 32, 4]);
        assert_eq!(parts.concat(), rows);
    }

    /// With a free lane, the rows queued while a group is in the store go as the next group at
    /// once; with one lane, only after it. Each submitter gets its own row's answer either way.
    #[tokio::test]
    async fn a_second_lane_takes_the_next_group_while_the_first_is_stored() {
        for (lanes, overlap) in [(1, false), (2, true)] {
            let (started_tx, mut started) = mpsc::unbounded_channel::<Vec<u32>>();
            let gate = Arc::new(Semaphore::new(0));
            let store_gate = gate.clone();
            let writer = GroupWriter::start_lanes("test", lanes, move |rows: Vec<u32>| {
                let started = started_tx.clone();
                let gate = store_gate.clone();
                async move {
                    let _ = started.send(rows.clone());
                    if let Ok(permit) = gate.acquire().await {
                        permit.forget();
                    }
                    Ok(rows.into_iter().map(|r| r * 10).collect())
                }
            });
            let first = tokio::spawn({
                let w = writer.clone();
                async move { w.submit(1).await }
            });
            assert_eq!(started.recv().await, Some(vec![1]), "lanes {lanes}");
            let second = tokio::spawn({
                let w = writer.clone();
                async move { w.submit(2).await }
            });
            let went = tokio::time::timeout(std::time::Duration::from_millis(300), started.recv()).await;
            assert_eq!(went.is_ok(), overlap, "lanes {lanes}: the second group started");
            gate.add_permits(2);
            assert_eq!(first.await.ok().and_then(|r| r.ok()), Some(10), "lanes {lanes}");
            assert_eq!(second.await.ok().and_then(|r| r.ok()), Some(20), "lanes {lanes}");
        }
    }

    /// A group whose second statement fails leaves nothing of the first, and ends its
    /// transaction at once: another connection can take SQLite's write lock without waiting,
    /// and the pool's next group is stored.
    #[tokio::test]
    async fn a_failed_group_is_rolled_back_at_once() {
        use sqlx::Connection;
        sqlx::any::install_default_drivers();
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/t.db?mode=rwc", dir.path().display());
        let wait = std::time::Duration::from_secs(5);
        let pool = Pool::connect(&url, &["PRAGMA journal_mode = WAL"], 1, wait)
            .await
            .unwrap();
        sqlx::query("CREATE TABLE t (x INTEGER PRIMARY KEY)")
            .execute(&pool)
            .await
            .unwrap();
        let insert = |x: i64| sqlx::query("INSERT INTO t (x) VALUES ($1)").bind(x);
        let failed = in_one_commit(&pool, vec![insert(1), insert(1)]).await;
        assert!(failed.is_err(), "a duplicate key was stored");

        let mut other = sqlx::AnyConnection::connect(&url).await.unwrap();
        other.execute("PRAGMA busy_timeout = 0").await.unwrap();
        other
            .execute("BEGIN IMMEDIATE")
            .await
            .expect("the failed group still holds the write lock");
        other.execute("ROLLBACK").await.unwrap();

        in_one_commit(&pool, vec![insert(2), insert(3)]).await.unwrap();
        let stored: Vec<(i64,)> = sqlx::query_as("SELECT x FROM t ORDER BY x")
            .fetch_all(&pool)
            .await
            .unwrap();
        assert_eq!(stored, [(2,), (3,)]);
    }

    #[test]
    fn statement_texts_are_built_once_for_each_size_and_style() {
        fn build(positional: bool, rows: usize) -> String {
            format!("SELECT {}", values_placeholders(positional, rows, 2))
        }
        static SQL: SqlBySize = SqlBySize::new(build);
        let text = |positional, rows| SQL.get(positional, rows).0;
        for rows in [1, 2, 32, KEPT_ROWS, KEPT_ROWS + 1] {
            for positional in [false, true] {
                assert_eq!(text(positional, rows), build(positional, rows));
            }
        }
        assert_eq!(text(false, 2), "SELECT ($1, $2), ($3, $4)");
        assert_eq!(text(true, 2), "SELECT (?, ?), (?, ?)");
        // Kept: the second use of a size is the first one's text, not a new one.
        let (Cow::Borrowed(first), Cow::Borrowed(again)) = (text(false, 8), text(false, 8)) else {
            panic!("a kept size gave a new text");
        };
        assert!(std::ptr::eq(first, again));
        assert!(matches!(text(false, KEPT_ROWS + 1), Cow::Owned(_)));
    }

    #[test]
    fn placeholders_number_rows_then_columns() {
        assert_eq!(values_placeholders(false, 1, 2), "($1, $2)");
        assert_eq!(values_placeholders(false, 2, 3), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(values_placeholders(true, 2, 2), "(?, ?), (?, ?)");
        assert_eq!(placeholder(false, 9), "$9");
        assert_eq!(placeholder(true, 9), "?");
    }
}
