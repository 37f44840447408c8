//! Signing keys of each domain: generated on first start, kept in the store sealed under the
//! key-encryption key, parsed once into memory, rotated in stages.
//!
//! Which key signs is derived from time alone: for each algorithm, the key of the highest
//! generation whose `activates_at` has passed. A rotation inserts generation N+1 with
//! `activates_at = now + publish_ahead`, so every replica publishes it (after its next refresh)
//! long before any replica signs with it. A superseded key stays published until every token it
//! signed has expired. `(domain, alg, generation)` is unique in the store, so concurrent replicas
//! can never create two keys of one generation. A token naming a kid this replica does not know
//! (a key another replica created since the last refresh) makes the ring re-read the store at
//! once, one request at a time and at most once per [`MIN_REREAD`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use crate::crypto::jws;
use crate::crypto::kek::Kek;
use crate::crypto::keys::{SigningAlg, SigningKey, VerifyingKey};
use crate::crypto::secrets::random_id;
use crate::store::{KeyRow, KeyStore, StoreError};

/// How long past its successor's activation a key stays published, beyond the longest token
/// lifetime, to cover clock skew between replicas and resource servers.
const RETIRE_MARGIN: i64 = 300;

/// The soonest a ring re-reads the store again because a token named an unknown kid, so tokens
/// with made-up kids cost at most one store read per second per domain and replica.
pub const MIN_REREAD: Duration = Duration::from_secs(1);

/// One key of the ring.
#[derive(Debug, Clone)]
pub struct RingKey {
    /// The parsed key.
    pub key: Arc<SigningKey>,
    /// Its generation within (domain, alg).
    pub generation: i64,
    /// When it starts signing.
    pub activates_at: i64,
    /// When its successor starts signing, if one exists.
    pub superseded_at: Option<i64>,
}

/// The keys of one domain at one moment.
#[derive(Debug, Default)]
pub struct KeySet {
    keys: Vec<RingKey>,
    by_kid: HashMap<String, usize>,
}

impl KeySet {
    /// The key that signs with `alg` at time `now`.
    pub fn signing_key(&self, alg: SigningAlg, now: i64) -> Option<&Arc<SigningKey>> {
        self.keys
            .iter()
            .filter(|k| k.key.alg() == alg && k.activates_at <= now)
            .max_by_key(|k| k.generation)
            .map(|k| &k.key)
    }

    /// The verifying key for `kid`, while the ring holds it: published, or retired and kept for
    /// `id_token_hint`s until the longest session has ended (what it signed has expired).
    pub fn verifying_key(&self, kid: &str) -> Option<VerifyingKey> {
        self.by_kid
            .get(kid)
            .and_then(|&i| self.keys.get(i))
            .map(|k| k.key.verifying_key())
    }

    /// Keys to publish at `now`: upcoming, active, and retired ones still within `retain` seconds
    /// of their successor's activation.
    pub fn published(&self, now: i64, retain: i64) -> impl Iterator<Item = &RingKey> {
        self.keys
            .iter()
            .filter(move |k| k.superseded_at.is_none_or(|s| s + retain + RETIRE_MARGIN > now))
    }

    /// All keys, for listing.
    pub fn all(&self) -> &[RingKey] {
        &self.keys
    }

    fn build(keys: Vec<RingKey>) -> KeySet {
        let by_kid = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.key.kid().to_string(), i))
            .collect();
        KeySet { keys, by_kid }
    }
}

/// Errors of key handling.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A key could not be generated, sealed or opened.
    #[error("key {kid}: {reason}")]
    Crypto {
        /// The key.
        kid: String,
        /// What failed.
        reason: String,
    },
}

impl From<KeyError> for crate::error::OAuthError {
    /// A store that failed is the store's error (503 when it is unavailable, as every endpoint
    /// answers); a key that could not be made or opened is the server's.
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::Store(e) => e.into(),
            e @ KeyError::Crypto { .. } => crate::error::OAuthError::server_error(e),
        }
    }
}

/// The live key set of one domain, swapped whole on refresh.
#[derive(Debug)]
pub struct KeyRing {
    domain: String,
    set: ArcSwap<KeySet>,
    /// Held while re-reading for an unknown kid; when that last happened.
    reread: tokio::sync::Mutex<Option<Instant>>,
}

impl KeyRing {
    /// An empty ring for `domain`; call `refresh` before use.
    pub fn new(domain: &str) -> KeyRing {
        KeyRing {
            domain: domain.to_string(),
            set: ArcSwap::from_pointee(KeySet::default()),
            reread: tokio::sync::Mutex::new(None),
        }
    }

    /// The current key set.
    pub fn current(&self) -> Arc<KeySet> {
        self.set.load_full()
    }

    /// The key set to verify `token` with: the current one, unless `token` is a JWS naming a kid
    /// this ring does not know (a key another replica or the CLI created since the last refresh);
    /// then the keys are re-read from the store first. Re-reads are single-flight (waiters use
    /// the result of the one in progress) and at most one per [`MIN_REREAD`]; a failed re-read
    /// is logged and the current set returned.
    pub async fn keys_for(&self, token: &str, store: &impl KeyStore, kek: &Kek) -> Arc<KeySet> {
        let set = self.current();
        let Some(kid) = unknown_kid(&set, token) else {
            return set;
        };
        let mut last = self.reread.lock().await;
        let set = self.current();
        if set.by_kid.contains_key(&kid) || last.is_some_and(|t| t.elapsed() < MIN_REREAD) {
            return set;
        }
        *last = Some(Instant::now());
        if let Err(e) = self.refresh(store, kek).await {
            tracing::warn!(domain = %self.domain, error.cause = %e, "signing keys could not be re-read for an unknown kid");
        }
        self.current()
    }

    /// Re-reads the domain's keys from the store, reusing already parsed keys.
    pub async fn refresh(&self, store: &impl KeyStore, kek: &Kek) -> Result<(), KeyError> {
        let rows = store.list_keys(&self.domain).await?;
        let old = self.set.load();
        let set = build_set(rows, kek, |kid| {
            old.by_kid
                .get(kid)
                .and_then(|&i| old.keys.get(i))
                .map(|k| k.key.clone())
        })?;
        self.set.store(Arc::new(set));
        Ok(())
    }
}

/// The kid of `token` when it is a JWS whose header names a kid missing from `set`.
fn unknown_kid(set: &KeySet, token: &str) -> Option<String> {
    if token.bytes().filter(|&b| b == b'.').count() != 2 {
        return None;
    }
    let kid = jws::peek_header(token).ok()?.kid?;
    (!set.by_kid.contains_key(&kid)).then_some(kid)
}

fn build_set(
    rows: Vec<KeyRow>,
    kek: &Kek,
    reuse: impl Fn(&str) -> Option<Arc<SigningKey>>,
) -> Result<KeySet, KeyError> {
    let mut keys: Vec<RingKey> = Vec::with_capacity(rows.len());
    for row in &rows {
        let Some(alg) = SigningAlg::parse(&row.alg) else {
            tracing::warn!(key.kid = %row.kid, key.alg = %row.alg, "signing key with an unknown algorithm skipped");
            continue;
        };
        let key = match reuse(&row.kid) {
            Some(k) => k,
            None => Arc::new(open_key(row, alg, kek)?),
        };
        let superseded_at = rows
            .iter()
            .filter(|r| r.alg == row.alg && r.generation > row.generation)
            .map(|r| r.activates_at)
            .min();
        keys.push(RingKey {
            key,
            generation: row.generation,
            activates_at: row.activates_at,
            superseded_at,
        });
    }
    Ok(KeySet::build(keys))
}

fn open_key(row: &KeyRow, alg: SigningAlg, kek: &Kek) -> Result<SigningKey, KeyError> {
    let crypto = |reason: String| KeyError::Crypto {
        kid: row.kid.clone(),
        reason,
    };
    let der = kek.open(&row.private_sealed, row.kid.as_bytes()).map_err(|e| {
        crypto(format!(
            "cannot decrypt the private key ({e}): is this the key-encryption key the store was created with?"
        ))
    })?;
    SigningKey::from_pkcs8(alg, row.kid.clone(), &der).map_err(|e| crypto(e.to_string()))
}

/// Checks that `kek` opens every stored key of `domain` (parsing each once, keeping none): run
/// before anything is written with it, so that a wrong key-encryption key (another replica's, a
/// stale file, an empty variable that made a new one) is refused before it seals a new key the
/// others cannot open, or before a start applies its configuration to a shared store.
pub async fn check_kek(store: &impl KeyStore, kek: &Kek, domain: &str) -> Result<(), KeyError> {
    build_set(store.list_keys(domain).await?, kek, |_| None).map(|_| ())
}

/// Generates and stores generation `generation` of (domain, alg), active from `activates_at`.
/// Returns the kid when this call inserted it, None when another replica won the race.
pub async fn create_key(
    store: &impl KeyStore,
    kek: &Kek,
    domain: &str,
    alg: SigningAlg,
    generation: i64,
    now: i64,
    activates_at: i64,
) -> Result<Option<String>, KeyError> {
    let kid = random_id();
    let crypto = |reason: String| KeyError::Crypto {
        kid: kid.clone(),
        reason,
    };
    let (key, der) = SigningKey::generate(alg, kid.clone()).map_err(|e| crypto(e.to_string()))?;
    let sealed = kek
        .seal(&der, kid.as_bytes())
        .map_err(|e| crypto(e.to_string()))?;
    let row = KeyRow {
        kid: kid.clone(),
        domain: domain.to_string(),
        alg: alg.as_str().to_string(),
        generation,
        private_sealed: sealed,
        public_jwk: key.public_jwk().to_string(),
        created_at: now,
        activates_at,
    };
    Ok(store.insert_key(&row).await?.then_some(kid))
}

/// Makes sure each algorithm has a key: generation 1 is active at once.
pub async fn ensure_keys(
    store: &impl KeyStore,
    kek: &Kek,
    domain: &str,
    algs: &[SigningAlg],
    now: i64,
) -> Result<Vec<String>, KeyError> {
    let rows = store.list_keys(domain).await?;
    let mut created = Vec::new();
    for alg in algs {
        if !rows.iter().any(|r| r.alg == alg.as_str())
            && let Some(kid) = create_key(store, kek, domain, *alg, 1, now, now).await?
        {
            created.push(kid);
        }
    }
    Ok(created)
}

/// What [`rotate`] did.
#[derive(Debug, Default)]
pub struct Rotation {
    /// The kids of the keys staged now.
    pub created: Vec<String>,
    /// The keys already staged and not signing yet, as (kid, activates_at): their algorithms got
    /// no new key (another would only be published, never sign before a newer one).
    pub already_staged: Vec<(String, i64)>,
    /// Why the rotation failed (the keys in `created` were staged before that).
    pub failed: Option<KeyError>,
}

impl Rotation {
    /// What an audit event of the rotation says: the new kids, those already staged, and
    /// whether it failed (after staging `kids`, if any; the cause is logged, not audited).
    pub fn audit_details(&self) -> serde_json::Value {
        let staged: Vec<&str> = self.already_staged.iter().map(|(kid, _)| kid.as_str()).collect();
        serde_json::json!({
            "kids": self.created,
            "alreadyStaged": staged,
            "failed": self.failed.is_some(),
        })
    }
}

/// Stages a new key for each algorithm: published now, signing from `now + publish_ahead`. An
/// algorithm whose newest key is still waiting to sign gets none. An error stops the rotation
/// and is returned in [`Rotation::failed`] with the keys staged before it, so that the caller can
/// tell (and audit) what was done.
pub async fn rotate(
    store: &impl KeyStore,
    kek: &Kek,
    domain: &str,
    algs: &[SigningAlg],
    now: i64,
    publish_ahead: i64,
) -> Rotation {
    let mut done = Rotation::default();
    let rows = match store.list_keys(domain).await {
        Ok(rows) => rows,
        Err(e) => {
            done.failed = Some(e.into());
            return done;
        }
    };
    for alg in algs {
        let newest = rows
            .iter()
            .filter(|r| r.alg == alg.as_str())
            .max_by_key(|r| r.generation);
        if let Some(k) = newest.filter(|k| k.activates_at > now) {
            done.already_staged.push((k.kid.clone(), k.activates_at));
            continue;
        }
        let generation = newest.map_or(0, |k| k.generation) + 1;
        let activates_at = if generation == 1 { now } else { now + publish_ahead };
        match create_key(store, kek, domain, *alg, generation, now, activates_at).await {
            Ok(Some(kid)) => done.created.push(kid),
            Ok(None) => {}
            Err(e) => {
                done.failed = Some(e);
                break;
            }
        }
    }
    done
}

/// Rotates the algorithms whose newest key is due: its activation is older than
/// `interval - publish_ahead`, so the successor activates `interval` after it.
pub async fn rotate_if_due(
    store: &impl KeyStore,
    kek: &Kek,
    domain: &str,
    algs: &[SigningAlg],
    now: i64,
    interval: i64,
    publish_ahead: i64,
) -> Result<Rotation, KeyError> {
    if interval <= 0 {
        return Ok(Rotation::default());
    }
    let rows = store.list_keys(domain).await?;
    let due: Vec<SigningAlg> = algs
        .iter()
        .copied()
        .filter(|alg| {
            let newest = rows
                .iter()
                .filter(|r| r.alg == alg.as_str())
                .max_by_key(|r| r.generation);
            newest.is_some_and(|r| r.activates_at + interval - publish_ahead <= now)
        })
        .collect();
    if due.is_empty() {
        return Ok(Rotation::default());
    }
    Ok(rotate(store, kek, domain, &due, now, publish_ahead).await)
}

/// Deletes retired keys whose successor activated more than `retain` (and the margin) ago.
pub async fn prune(store: &impl KeyStore, domain: &str, now: i64, retain: i64) -> Result<usize, KeyError> {
    let rows = store.list_keys(domain).await?;
    let mut deleted = 0;
    for row in &rows {
        let superseded_at = rows
            .iter()
            .filter(|r| r.alg == row.alg && r.generation > row.generation)
            .map(|r| r.activates_at)
            .min();
        if superseded_at.is_some_and(|s| s + retain + RETIRE_MARGIN <= now) {
            store.delete_key(&row.kid).await?;
            deleted += 1;
        }
    }
    Ok(deleted)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::store::StoreResult;

    /// A rotation whose store is unavailable answers 503 as every endpoint does, not 500.
    #[test]
    fn a_store_outage_is_unavailable_and_a_key_failure_the_servers() {
        let e: crate::error::OAuthError = KeyError::Store(StoreError::Unavailable("down".into())).into();
        assert_eq!(e.code.status(), 503);
        let e: crate::error::OAuthError = KeyError::Crypto {
            kid: "k".into(),
            reason: "r".into(),
        }
        .into();
        assert_eq!(e.code.status(), 500);
    }

    /// A key store in memory that counts its reads (and, when `inserts_left` is set, fails the
    /// inserts past that many).
    #[derive(Default)]
    struct Counting {
        rows: Mutex<Vec<KeyRow>>,
        reads: AtomicUsize,
        inserts_left: Mutex<Option<usize>>,
    }

    impl KeyStore for Counting {
        async fn list_keys(&self, _domain: &str) -> StoreResult<Vec<KeyRow>> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            Ok(self.rows.lock().unwrap().clone())
        }
        async fn insert_key(&self, key: &KeyRow) -> StoreResult<bool> {
            if let Some(left) = self.inserts_left.lock().unwrap().as_mut() {
                if *left == 0 {
                    return Err(StoreError::Unavailable("down".into()));
                }
                *left -= 1;
            }
            self.rows.lock().unwrap().push(key.clone());
            Ok(true)
        }
        async fn delete_key(&self, _kid: &str) -> StoreResult<()> {
            Ok(())
        }
    }

    fn jws_naming(kid: &str) -> String {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let h = b64.encode(format!(r#"{{"alg":"ES256","typ":"at+jwt","kid":"{kid}"}}"#));
        format!("{h}.e30.c2ln")
    }

    /// Asks the ring for the keys of `token` from `n` concurrent tasks.
    async fn concurrently(ring: &Arc<KeyRing>, store: &Arc<Counting>, kek: &Arc<Kek>, token: &str, n: usize) {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..n {
            let (ring, store, kek, token) = (ring.clone(), store.clone(), kek.clone(), token.to_string());
            set.spawn(async move {
                ring.keys_for(&token, store.as_ref(), &kek).await;
            });
        }
        set.join_all().await;
    }

    /// A rotation that fails part-way says what it staged before the failure (the callers
    /// audit it), and the rest of its algorithms get nothing.
    #[tokio::test]
    async fn a_rotation_stopped_part_way_reports_what_it_staged() {
        let store = Counting::default();
        let kek = Kek::from_bytes(&[7u8; 32]).unwrap();
        let algs = [SigningAlg::ES256, SigningAlg::PS256];
        ensure_keys(&store, &kek, "d", &algs, 0).await.unwrap();
        *store.inserts_left.lock().unwrap() = Some(1);
        let r = rotate(&store, &kek, "d", &algs, 10, 60).await;
        assert_eq!(r.created.len(), 1);
        assert!(matches!(r.failed, Some(KeyError::Store(_))), "{:?}", r.failed);
        let details = r.audit_details();
        assert_eq!(details["kids"], serde_json::json!(r.created));
        assert_eq!(details["failed"], true);
        assert_eq!(
            store.rows.lock().unwrap().len(),
            3,
            "two first keys and one successor"
        );
        // Once the store is back, the next rotation stages the one missing; the other is waiting.
        *store.inserts_left.lock().unwrap() = None;
        let r = rotate(&store, &kek, "d", &algs, 20, 60).await;
        assert_eq!((r.created.len(), r.already_staged.len()), (1, 1));
        assert!(r.failed.is_none());
        assert_eq!(r.audit_details()["failed"], false);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unknown_kid_rereads_the_store_once_per_interval() {
        let store = Arc::new(Counting::default());
        let kek = Arc::new(Kek::from_bytes(&[7u8; 32]).unwrap());
        ensure_keys(store.as_ref(), &kek, "d", &[SigningAlg::ES256], 0)
            .await
            .unwrap();
        let ring = Arc::new(KeyRing::new("d"));
        ring.refresh(store.as_ref(), &kek).await.unwrap();
        let known = ring.current().all()[0].key.kid().to_string();
        let reads = || store.reads.load(Ordering::SeqCst);
        let before = reads();

        // Known kids and opaque tokens never touch the store.
        ring.keys_for(&jws_naming(&known), store.as_ref(), &kek).await;
        ring.keys_for("opaque-token", store.as_ref(), &kek).await;
        assert_eq!(reads(), before);

        // Another replica stages a key; a token naming it makes this ring re-read at once.
        let new = rotate(store.as_ref(), &kek, "d", &[SigningAlg::ES256], 0, 0)
            .await
            .created;
        let set = ring.keys_for(&jws_naming(&new[0]), store.as_ref(), &kek).await;
        assert!(set.verifying_key(&new[0]).is_some());
        assert_eq!(reads(), before + 2, "rotate read once, the ring once");

        // Made-up kids, many at once: at most one re-read per interval.
        let garbage = jws_naming("no-such-kid");
        concurrently(&ring, &store, &kek, &garbage, 20).await;
        assert_eq!(reads(), before + 2, "within the interval: no re-read");
        tokio::time::sleep(MIN_REREAD + Duration::from_millis(50)).await;
        concurrently(&ring, &store, &kek, &garbage, 20).await;
        assert_eq!(reads(), before + 3, "after it: one re-read for all of them");
    }
}
