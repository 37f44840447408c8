//! Throttling with a lockout that backs off, shared by the sign-in page, the password grant and
//! the device page's user codes: failures are counted per bucket (an account, a browser, a client
//! address); a bucket over its threshold is locked for `lockout_duration`, doubling with each
//! further failure up to `lockout_max`.

use crate::domain::Domain;
use crate::store::StoreResult;
use crate::store::signin::SignInStore;

/// A failure counter and the failures it allows before a lockout.
pub struct Bucket {
    /// Its key: a prefix saying what it counts, then the account, browser or address.
    pub key: String,
    /// Failures before the lockout.
    pub threshold: i64,
}

impl Bucket {
    /// The bucket `key` with `threshold`.
    pub fn new(key: String, threshold: i64) -> Bucket {
        Bucket { key, threshold }
    }
}

/// What the store holds about some buckets, read in one statement.
#[derive(Debug)]
pub struct Standing {
    locked: i64,
    counted: Vec<String>,
}

impl Standing {
    /// Seconds until every bucket is unlocked (0: none is locked).
    pub fn locked_for(&self) -> i64 {
        self.locked
    }

    /// True when `bucket` has failures on record.
    pub fn counts(&self, bucket: &Bucket) -> bool {
        self.counted.contains(&bucket.key)
    }

    /// The standing of `buckets` given each one's lock end, in the same order (`None`: no
    /// failures on record), at `now`.
    pub fn of(buckets: &[Bucket], locks: &[Option<i64>], now: i64) -> Standing {
        Standing::from_rows(
            buckets
                .iter()
                .zip(locks)
                .filter_map(|(b, lock)| lock.map(|until| (b.key.clone(), until)))
                .collect(),
            now,
        )
    }

    /// From the rows on record: (bucket, lock end).
    fn from_rows(rows: Vec<(String, i64)>, now: i64) -> Standing {
        Standing {
            locked: rows
                .iter()
                .map(|(_, until)| (until - now).max(0))
                .max()
                .unwrap_or(0),
            counted: rows.into_iter().map(|(bucket, _)| bucket).collect(),
        }
    }
}

/// The standing of `buckets` at `now`.
pub async fn standing<S: SignInStore + Sync>(
    store: &S,
    domain: &Domain,
    buckets: &[Bucket],
    now: i64,
) -> StoreResult<Standing> {
    let keys: Vec<&str> = buckets.iter().map(|b| b.key.as_str()).collect();
    let rows = store.login_attempts(&domain.name, &keys).await?;
    Ok(Standing::from_rows(rows, now))
}

/// Counts one failure in every bucket.
pub async fn record_failure<S: SignInStore + Sync>(
    store: &S,
    domain: &Domain,
    buckets: &[Bucket],
    now: i64,
) -> StoreResult<()> {
    let limits = &domain.config;
    for b in buckets {
        store
            .record_login_failure(
                &domain.name,
                &b.key,
                now,
                b.threshold,
                limits.lockout_duration.0,
                limits.lockout_max.0,
            )
            .await?;
    }
    Ok(())
}
