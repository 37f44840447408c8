//! SQLite's write-ahead log, copied into the database file beside the writing connection rather
//! than on it.
//!
//! By default SQLite checkpoints on the connection whose commit takes the log past 1,000 pages:
//! that commit then syncs the log, copies every page into the database file and syncs the file,
//! and every write queued behind it waits. With tokens inserted at thousands a second that was a
//! 30 to 40 ms stall every 140 ms, the p99 of every write at 1 and at 64 connections
//! (`bench/results/2026-12-02-sqlite-checkpoints.txt`).
//!
//! Here the writing connection never checkpoints (`wal_autocheckpoint = 0`). A connection of its
//! own copies the log in passive checkpoints, which the writer does not wait for. A passive
//! checkpoint cannot let the log start over while writes keep coming, though: SQLite rewinds it
//! only when a write begins with every page already copied. So once the log is past
//! [`REWIND_AT`] pages, the copy is finished on the writing connection itself, where no write can
//! come in between, and the next write starts the log from its beginning.
//!
//! What that last copy costs the writer is mostly syncing the database pages copied since the
//! file was last synced: each is a random write, about 20 us on the bench machine, while tokens
//! dirty pages about as fast. A passive checkpoint syncs the file only when it reaches the end of
//! the log, which it does not while writes keep coming. So before the last copy the file is
//! synced from here, on a blocking thread, and the pages written meanwhile copied, until few come
//! in during one such step.
//!
//! Durability is as before (`synchronous = NORMAL`): a checkpoint syncs the log before copying it
//! and the database file after. The last connection to close still checkpoints the whole log.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::pool::{Limits, Pool};

/// The writing connection: as [`SQLITE_INIT`], without checkpoints of its own.
pub(super) const WRITER_INIT: &[&str] = &[
    "PRAGMA wal_autocheckpoint = 0",
    "PRAGMA journal_mode = WAL",
    "PRAGMA busy_timeout = 5000",
    "PRAGMA synchronous = NORMAL",
];

/// Every SQLite connection: a write-ahead log, up to 5 s of waiting for a lock, and fsync only at
/// checkpoints (a crash may lose the last transactions, never corrupt the file). The writer's
/// statements but the first.
pub(super) const SQLITE_INIT: &[&str] = match WRITER_INIT.split_first() {
    Some((_, rest)) => rest,
    None => &[],
};

/// How long after a write the log is copied (writes come in groups: one round copies a group).
const EVERY: Duration = Duration::from_millis(50);

/// Pages in the log past which it is made to start over (64 MB of 4 KB pages). Every start-over
/// holds the writer for its last copy (two syncs), so it is made rare: with 1,000 pages
/// (SQLite's own threshold) opaque tokens at 64 connections made the log start over about ten
/// times a second and held the writer 400 to 750 ms a server; with 16,000, 36 to 82 ms, and
/// opaque tokens at 1 connection came 17 % faster, at 64 5 % (means of five alternating pairs,
/// `bench/results/2026-12-03-sqlite-rewind-at.txt`). While writes pause, a passive pass copies
/// everything and the next write starts the log over by itself, so the log reaches this size only
/// under writes that never pause. A server killed (SIGKILL) under writes with a 72 MB log file
/// started again and answered in 0.03 s.
const REWIND_AT: i64 = 16_000;

/// Pages written during a passive pass few enough to go on to the next step.
const TAIL: i64 = 256;

/// Passive passes at most while waiting for [`TAIL`].
const MAX_PASSES: u32 = 8;

/// Syncs of the database file before the copy is finished on the writer. More did not shorten
/// the writer's wait at 10,000 tokens a second: the pages copied during one sync took as long to
/// sync again.
const SYNCS: u32 = 2;

/// What `PRAGMA wal_checkpoint` answers: the pages in the log (how many of them are copied is
/// not needed).
#[derive(Debug, Clone, Copy, sqlx::FromRow)]
struct Pass {
    log: i64,
}

/// A passive pass on the checkpointer's connection.
const PASS: &str = "PRAGMA wal_checkpoint(PASSIVE)";

/// The last pass of a start-over, on the writing connection: the same pass, written with its
/// schema so that the slow-statement log (`database.slow_statement`) tells a wait of every write
/// from a pass beside them.
const LAST_PASS: &str = "PRAGMA main.wal_checkpoint(PASSIVE)";

async fn passive(pool: &Pool, pass: &'static str) -> sqlx::Result<Pass> {
    sqlx::query_as(pass).fetch_one(pool).await
}

/// Opens the connection that copies the log of the database at `path` (at `url`), and starts the
/// task that copies it [`EVERY`] after `writer` was used and makes it start over on `writer` when
/// it is long, until either pool is closed.
pub(super) async fn start(
    path: &Path,
    url: &str,
    wait: Duration,
    limits: Limits,
    writer: &Pool,
) -> sqlx::Result<Pool> {
    let checkpointer = Pool::connect_with(url, SQLITE_INIT, 1, wait, limits).await?;
    // Open for as long as the task runs, which ends after the store's pools are closed: closing
    // any descriptor of the database file drops every POSIX lock this process holds on it,
    // SQLite's included (SQLite defers closing its own descriptors for that reason).
    let file = match File::open(path) {
        Ok(f) => Some(Arc::new(f)),
        Err(e) => {
            tracing::warn!(error.cause = %e, path = %path.display(),
                "cannot open the SQLite database to sync it: the log is copied without");
            None
        }
    };
    let (pool, writer) = (checkpointer.clone(), writer.clone());
    tokio::spawn(async move {
        // Said once until a round succeeds again, not 20 times a second.
        let mut failing = false;
        loop {
            // Nothing while nothing is written: the connection may then sit idle and be closed
            // past `database.idle_timeout`.
            writer.taken().await;
            tokio::time::sleep(EVERY).await;
            match round(file.as_ref(), &pool, &writer).await {
                Ok(()) if failing => {
                    failing = false;
                    tracing::info!("checkpointing the SQLite log works again");
                }
                Ok(()) => {}
                Err(sqlx::Error::PoolClosed) => break,
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(error.cause = %e, "checkpointing the SQLite log failed");
                }
                Err(_) => {}
            }
        }
    });
    Ok(checkpointer)
}

/// One round: a passive pass; when the log is past [`REWIND_AT`], passes until few pages come in
/// during one, then [`SYNCS`] times a sync of the database file and passes again; then the last
/// pages copied on the writer.
async fn round(file: Option<&Arc<File>>, checkpointer: &Pool, writer: &Pool) -> sqlx::Result<()> {
    let started = Instant::now();
    let first = passive(checkpointer, PASS).await?;
    if first.log < REWIND_AT {
        return Ok(());
    }
    let Some(mut pass) = settle(checkpointer, first).await? else {
        return Ok(());
    };
    if let Some(file) = file {
        for _ in 0..SYNCS {
            let file = Arc::clone(file);
            tokio::task::spawn_blocking(move || file.sync_data())
                .await
                .map_err(|e| sqlx::Error::Io(std::io::Error::other(e)))??;
            let Some(next) = settle(checkpointer, pass).await? else {
                return Ok(());
            };
            pass = next;
        }
    }
    let stalled = Instant::now();
    let last = passive(writer, LAST_PASS).await?;
    tracing::trace!(
        ?first,
        ?pass,
        ?last,
        passive = ?(stalled - started),
        writer = ?stalled.elapsed(),
        "SQLite log copied"
    );
    Ok(())
}

/// Passive passes after `pass` until at most [`TAIL`] pages came in during one (or
/// [`MAX_PASSES`]); the last one's answer, or None when the log started over meanwhile.
async fn settle(checkpointer: &Pool, mut pass: Pass) -> sqlx::Result<Option<Pass>> {
    for _ in 0..MAX_PASSES {
        let next = passive(checkpointer, PASS).await?;
        let came_in = next.log - pass.log;
        if came_in < 0 {
            return Ok(None);
        }
        pass = next;
        if came_in <= TAIL {
            break;
        }
    }
    Ok(Some(pass))
}
