//! Group commit of token inserts: the requests that each store a token (opaque access tokens,
//! refresh tokens at the code exchange) hand their row to one writer task, which stores every row
//! queued at that moment in multi-row inserts and then answers each request. A request still
//! returns only after its row is stored; under load, one statement (one SQLite write transaction,
//! one PostgreSQL commit) stores many rows instead of one each. Alone, a row goes at once.

use sqlx::Connection;
use tokio::sync::{mpsc, oneshot};

use super::pool::Pool;
use super::{StoreError, StoreResult, TOKEN_COLUMNS, TokenRow, bind_token};

/// Rows stored by one turn of the writer.
const BATCH: usize = 64;

/// Splits `len` rows into statements of 32, 16, 8, 4, 2 or 1 rows (a handful of statement
/// shapes, each prepared once per connection), largest first.
pub(crate) fn chunk_sizes(mut len: usize) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        let n = [32, 16, 8, 4, 2, 1].into_iter().find(|n| *n <= len)?;
        len -= n;
        Some(n)
    })
}

/// `($1, .., $cols), ($cols+1, ..)`: the VALUES of an insert of `rows` rows of `cols` columns.
pub(crate) fn values_placeholders(rows: usize, cols: usize) -> String {
    (0..rows)
        .map(|r| {
            let p: Vec<String> = (1..=cols).map(|c| format!("${}", r * cols + c)).collect();
            format!("({})", p.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Stores `rows` (an existing hash is left as it is) in as few statements as [`chunk_sizes`] gives;
/// several statements run in one transaction (one commit).
pub(crate) async fn insert_tokens(pool: &Pool, rows: &[TokenRow]) -> StoreResult<()> {
    let statements: Vec<_> = chunk_sizes(rows.len())
        .scan(0, |start, n| {
            *start += n;
            Some(&rows[*start - n..*start])
        })
        .map(|chunk| {
            let sql = format!(
                "INSERT INTO tokens ({TOKEN_COLUMNS}) VALUES {} ON CONFLICT (hash) DO NOTHING",
                values_placeholders(chunk.len(), 14)
            );
            chunk
                .iter()
                .fold(sqlx::query(sqlx::AssertSqlSafe(sql)), |q, t| bind_token(q, t))
        })
        .collect();
    if statements.len() == 1 {
        for q in statements {
            q.execute(pool).await?;
        }
        return Ok(());
    }
    let mut conn = pool.acquire().await?;
    let mut tx = conn.begin().await?;
    for q in statements {
        q.execute(&mut *tx).await?;
    }
    tx.commit().await?;
    conn.release();
    Ok(())
}

type Reply = oneshot::Sender<Result<(), String>>;

/// The queue to the token writer task. Cloning shares the task; it ends when the last clone is
/// dropped.
#[derive(Clone, Debug)]
pub(crate) struct TokenWriter {
    tx: mpsc::Sender<(TokenRow, Reply)>,
}

impl TokenWriter {
    /// Starts the writer task, storing on `pool`.
    pub(crate) fn start(pool: Pool) -> TokenWriter {
        let (tx, mut rx) = mpsc::channel::<(TokenRow, Reply)>(4 * BATCH);
        tokio::spawn(async move {
            let mut queued = Vec::with_capacity(BATCH);
            while rx.recv_many(&mut queued, BATCH).await > 0 {
                let (rows, replies): (Vec<TokenRow>, Vec<Reply>) = queued.drain(..).unzip();
                let result = insert_tokens(&pool, &rows).await.map_err(|e| e.to_string());
                for reply in replies {
                    // A request that gave up waiting is not an error of the others.
                    let _ = reply.send(result.clone());
                }
            }
        });
        TokenWriter { tx }
    }

    /// Stores `row` with the rows queued beside it; returns once it is stored.
    pub(crate) async fn insert(&self, row: TokenRow) -> StoreResult<()> {
        let (reply, stored) = oneshot::channel();
        self.tx
            .send((row, reply))
            .await
            .map_err(|_| StoreError::Unavailable("the token writer has stopped".into()))?;
        match stored.await {
            Ok(result) => result.map_err(StoreError::Unavailable),
            Err(_) => Err(StoreError::Unavailable("the token writer has stopped".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_every_row_largest_first() {
        assert_eq!(chunk_sizes(0).count(), 0);
        assert_eq!(chunk_sizes(1).collect::<Vec<_>>(), [1]);
        assert_eq!(chunk_sizes(64).collect::<Vec<_>>(), [32, 32]);
        assert_eq!(chunk_sizes(45).collect::<Vec<_>>(), [32, 8, 4, 1]);
        for len in 0..300 {
            assert_eq!(chunk_sizes(len).sum::<usize>(), len);
        }
    }

    #[test]
    fn placeholders_number_rows_then_columns() {
        assert_eq!(values_placeholders(1, 2), "($1, $2)");
        assert_eq!(values_placeholders(2, 3), "($1, $2, $3), ($4, $5, $6)");
    }
}
