//! Random values, hashes of tokens and secrets, constant-time comparison, and argon2id run off
//! the async threads, on threads of its own at a lower priority, under a concurrency limit.

use std::fmt;
use std::sync::Arc;
use std::sync::mpsc::RecvTimeoutError;
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::CryptoError;

/// A 256-bit random value, base64url without padding (43 characters).
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    B64.encode(b)
}

/// A 128-bit random id, base64url without padding (for jti, kid, instance ids).
pub fn random_id() -> String {
    let mut b = [0u8; 16];
    rand::rng().fill_bytes(&mut b);
    B64.encode(b)
}

/// SHA-256 of `s`, base64url without padding: the stored form of tokens and codes.
pub fn sha256_b64(s: &str) -> String {
    B64.encode(Sha256::digest(s.as_bytes()))
}

/// Constant-time equality.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// A secret the server must know itself (the HMAC key of client_secret_jwt); Debug never shows it.
#[derive(Clone)]
pub struct SharedSecret(pub Zeroizing<Vec<u8>>);

impl fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedSecret(redacted)")
    }
}

/// A configured client secret hash.
#[derive(Clone)]
pub enum SecretHash {
    /// SHA-256 of a generated (high-entropy) secret.
    Sha256([u8; 32]),
    /// An argon2id PHC string.
    Argon2(String),
}

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretHash::Sha256(_) => f.write_str("SecretHash::Sha256(redacted)"),
            SecretHash::Argon2(_) => f.write_str("SecretHash::Argon2(redacted)"),
        }
    }
}

impl SecretHash {
    /// Parses `sha256:<base64url of 32 bytes>` or an argon2id PHC string.
    pub fn parse(s: &str) -> Result<SecretHash, &'static str> {
        if let Some(b) = s.strip_prefix("sha256:") {
            let raw = B64
                .decode(b.trim_end_matches('='))
                .map_err(|_| "the sha256: value is not base64url")?;
            let arr: [u8; 32] = raw.try_into().map_err(|_| "the sha256: value must be 32 bytes")?;
            return Ok(SecretHash::Sha256(arr));
        }
        if s.starts_with("$argon2id$") {
            let parsed = PasswordHash::new(s).map_err(|_| "not a valid argon2id hash")?;
            if parsed.salt.is_none() || parsed.hash.is_none() {
                return Err("not a valid argon2id hash: salt or hash missing");
            }
            return Ok(SecretHash::Argon2(s.to_string()));
        }
        Err("must be sha256:... (from `ostiary hash-secret --generate`) or an argon2id hash")
    }

    /// The SHA-256 form of a secret given in clear (from `secret_env`).
    pub fn from_plain_secret(secret: &str) -> SecretHash {
        SecretHash::Sha256(Sha256::digest(secret.as_bytes()).into())
    }

    /// `sha256:<base64url>` of a secret, as written in configuration.
    pub fn sha256_string(secret: &str) -> String {
        format!("sha256:{}", sha256_b64(secret))
    }
}

fn argon2() -> Result<Argon2<'static>, CryptoError> {
    // OWASP: argon2id, m = 19 MiB, t = 2, p = 1.
    let params = Params::new(19 * 1024, 2, 1, None).map_err(|e| CryptoError::Internal(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// argon2id PHC string of `password`, with a random salt.
pub fn argon2_hash(password: &str) -> Result<String, CryptoError> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| CryptoError::Internal(e.to_string()))?;
    Ok(argon2()?
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| CryptoError::Internal(e.to_string()))?
        .to_string())
}

thread_local! {
    /// argon2's working memory on this thread (see [`argon2_verify`]).
    static BLOCKS: std::cell::RefCell<Vec<argon2::Block>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Blocking check of `password` against a PHC string; false when the hash is malformed.
/// argon2's working memory (19 MiB with OWASP parameters) is kept per thread and reused (the
/// server's checks run on a [`PasswordHasher`], which keeps it between checks and gives it back
/// once idle).
pub fn argon2_verify(phc: &str, password: &str) -> bool {
    BLOCKS.with(|memory| verify_in(phc, password, &mut memory.borrow_mut()))
}

/// [`argon2_verify`] with `memory` as argon2's working memory, grown to what the hash's
/// parameters ask.
fn verify_in(phc: &str, password: &str, memory: &mut Vec<argon2::Block>) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    let (Some(expected), Some(salt)) = (hash.hash, hash.salt) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(hash.algorithm) else {
        return false;
    };
    let Ok(version) = hash.version.map(Version::try_from).transpose() else {
        return false;
    };
    let Ok(params) = Params::try_from(&hash) else {
        return false;
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let blocks = params.block_count();
    let argon = Argon2::new(algorithm, version.unwrap_or_default(), params);
    let mut out = Zeroizing::new(vec![0u8; expected.len()]);
    if memory.len() < blocks {
        memory.resize(blocks, argon2::Block::default());
    }
    let hashed = argon
        .hash_password_into_with_memory(password.as_bytes(), salt, &mut out, &mut memory[..blocks])
        .is_ok();
    hashed && ct_eq(&out, expected.as_bytes())
}

/// argon2's working memory kept between the checks of a [`PasswordHasher`]: a check takes a
/// buffer (or makes one) and puts it back, so a storm of checks reuses one buffer per thread
/// (19 MiB each with OWASP parameters) instead of leaving freed blocks to the allocator, and
/// [`BlockPool::release`] gives them all back at once when the threads are idle.
#[derive(Default)]
struct BlockPool(std::sync::Mutex<Vec<Vec<argon2::Block>>>);

impl BlockPool {
    /// Runs `f` with a buffer of the pool (an empty one when none is free), then puts it back.
    fn with<T>(&self, f: impl FnOnce(&mut Vec<argon2::Block>) -> T) -> T {
        let taken = self.0.lock().ok().and_then(|mut free| free.pop());
        let mut memory = taken.unwrap_or_default();
        let out = f(&mut memory);
        if let Ok(mut free) = self.0.lock() {
            free.push(memory);
        }
        out
    }

    /// Drops every buffer not in use.
    fn release(&self) {
        let freed = self.0.lock().map(|mut free| std::mem::take(&mut *free));
        drop(freed);
    }

    /// Bytes held by the buffers not in use.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.0.lock().map_or(0, |free| {
            free.iter().map(Vec::capacity).sum::<usize>() * std::mem::size_of::<argon2::Block>()
        })
    }
}

/// A job for the argon2 threads.
type Job = Box<dyn FnOnce() + Send>;

/// How long the argon2 threads go without a check before their working memory is given back: a
/// storm of sign-ins reuses it, and after one the server returns to its idle size (19 MiB a
/// thread otherwise held for good after the first checks on every thread).
const ARGON2_IDLE: Duration = Duration::from_secs(10);

/// Runs argon2 on threads of its own, `max_concurrent` of them, at a lower scheduling priority
/// than the async workers (Linux: nice 10), so that a storm of password checks takes the CPU
/// the token and introspection endpoints leave, never the other way round. Checks beyond
/// `max_concurrent` wait in a queue. argon2's working memory is kept between checks
/// ([`BlockPool`]) and given back once no check has come for `ARGON2_IDLE`.
#[derive(Clone)]
pub struct PasswordHasher {
    jobs: std::sync::mpsc::Sender<Job>,
    blocks: Arc<BlockPool>,
}

/// The nice value of the argon2 threads (0 is the default; 19 the lowest priority).
#[cfg(target_os = "linux")]
const ARGON2_NICE: i32 = 10;

impl PasswordHasher {
    /// A hasher allowing `max_concurrent` (at least 1) simultaneous hashes.
    pub fn new(max_concurrent: usize) -> Self {
        PasswordHasher::with_idle(max_concurrent, ARGON2_IDLE)
    }

    /// As [`PasswordHasher::new`], giving back argon2's working memory after `idle` without a
    /// check.
    fn with_idle(max_concurrent: usize, idle: Duration) -> Self {
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        let queue = Arc::new(std::sync::Mutex::new(queue));
        let blocks = Arc::new(BlockPool::default());
        for i in 0..max_concurrent.max(1) {
            let queue = queue.clone();
            let pool = blocks.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || {
                    lower_priority();
                    loop {
                        // The lock is held only while taking a job (or waiting for one: a
                        // wait of `idle` without one means every thread is idle); the queue
                        // ends with the last clone of the hasher.
                        let job = match queue.lock() {
                            Ok(q) => q.recv_timeout(idle),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(),
                            Err(RecvTimeoutError::Timeout) => pool.release(),
                            Err(RecvTimeoutError::Disconnected) => return,
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error.cause = %e, "cannot start an argon2 thread");
            }
        }
        PasswordHasher { jobs, blocks }
    }

    async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        // A job whose caller is gone (its request dropped while it waited) is not run: no one
        // would read its answer, and a flood of abandoned checks would delay the others.
        let job: Job = Box::new(move || {
            if !tx.is_closed() {
                let _ = tx.send(f());
            }
        });
        self.jobs.send(job).ok()?;
        rx.await.ok()
    }

    /// Verifies off the async threads; false on any failure.
    pub async fn verify(&self, phc: String, password: Zeroizing<String>) -> bool {
        let blocks = self.blocks.clone();
        self.run(move || blocks.with(|memory| verify_in(&phc, &password, memory)))
            .await
            .unwrap_or(false)
    }

    /// Hashes off the async threads.
    pub async fn hash(&self, password: Zeroizing<String>) -> Result<String, CryptoError> {
        self.run(move || argon2_hash(&password))
            .await
            .ok_or_else(|| CryptoError::Internal("the argon2 threads are gone".into()))?
    }
}

/// Lowers the calling thread's scheduling priority (Linux: its nice value; a thread id names
/// one thread to setpriority). Elsewhere nothing.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        let tid = rustix::thread::gettid();
        if let Err(e) = rustix::process::setpriority_process(Some(tid), ARGON2_NICE) {
            tracing::warn!(error.cause = %e, "cannot lower the priority of an argon2 thread");
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_hashes() {
        let t = random_token();
        assert_eq!(t.len(), 43);
        assert_ne!(t, random_token());
        assert_eq!(random_id().len(), 22);
        assert_eq!(sha256_b64("abc"), "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0");
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
    }

    #[test]
    fn secret_hash_forms() {
        let s = SecretHash::sha256_string("x");
        assert!(matches!(SecretHash::parse(&s), Ok(SecretHash::Sha256(_))));
        assert!(SecretHash::parse("sha256:short").is_err());
        assert!(SecretHash::parse("plaintext").is_err());
        assert!(SecretHash::parse("$argon2id$garbage").is_err());
        let phc = argon2_hash("pw").unwrap();
        assert!(matches!(SecretHash::parse(&phc), Ok(SecretHash::Argon2(_))));
        assert!(!format!("{:?}", SecretHash::parse(&s).unwrap()).contains(&s[7..]));
    }

    #[test]
    fn argon2_verify_reuses_its_memory_across_parameters() {
        // The bench user's hash (m = 19 MiB), then a smaller one made by the argon2 crate: the
        // per-thread memory serves both, and a wrong password or a changed hash still fails.
        let bench = "$argon2id$v=19$m=19456,t=2,p=1$6KJB1J8/UOwlEF2cLeFF1w$RilUWOPDGQ/lkGz+zSX6pFfAdfGfzCRuiXQlNsIr8r4";
        assert!(argon2_verify(bench, "bench-password"));
        assert!(!argon2_verify(bench, "bench-passwore"));
        let small = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(1024, 1, 1, None).unwrap(),
        )
        .hash_password(b"pw", &SaltString::encode_b64(b"0123456789abcdef").unwrap())
        .unwrap()
        .to_string();
        assert!(argon2_verify(&small, "pw"));
        assert!(argon2_verify(bench, "bench-password"));
        let tampered = small.replacen("m=1024", "m=2048", 1);
        assert!(!argon2_verify(&tampered, "pw"));
        let argon2i = Argon2::new(
            Algorithm::Argon2i,
            Version::V0x13,
            Params::new(1024, 1, 1, None).unwrap(),
        )
        .hash_password(b"pw", &SaltString::encode_b64(b"0123456789abcdef").unwrap())
        .unwrap()
        .to_string();
        assert!(argon2_verify(&argon2i, "pw"));
        assert!(!argon2_verify(&argon2i.replacen("argon2i", "argon2id", 1), "pw"));
    }

    #[tokio::test]
    async fn argon2_threads_give_back_their_working_memory_once_idle() {
        // Two threads: each waits for the queue in turn, and the memory of both goes at once.
        // An idle of 2 s: longer than any check on a loaded machine, so that no release falls
        // between a check putting its buffer back and the test reading it.
        let h = PasswordHasher::with_idle(2, Duration::from_secs(2));
        let phc = argon2_hash("pw").unwrap();
        let mib19 = 19456 * 1024;
        assert_eq!(h.blocks.held(), 0);
        // Two checks at once take a buffer each; kept between checks that follow.
        for _ in 0..3 {
            let (a, b) = tokio::join!(
                h.verify(phc.clone(), Zeroizing::new("pw".into())),
                h.verify(phc.clone(), Zeroizing::new("pw".into()))
            );
            assert!(a && b);
            assert!(h.blocks.held() >= mib19, "{}", h.blocks.held());
            assert!(h.blocks.held() <= 2 * mib19, "{}", h.blocks.held());
        }
        tokio::time::sleep(Duration::from_millis(4500)).await;
        assert_eq!(h.blocks.held(), 0);
        // And taken again by the next check.
        assert!(h.verify(phc, Zeroizing::new("pw".into())).await);
        assert_eq!(h.blocks.held(), mib19);
    }

    #[tokio::test]
    async fn argon2_round_trip_off_thread() {
        let h = PasswordHasher::new(1);
        let phc = h.hash(Zeroizing::new("correct horse".into())).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(
            h.verify(phc.clone(), Zeroizing::new("correct horse".into()))
                .await
        );
        assert!(!h.verify(phc, Zeroizing::new("wrong".into())).await);
        assert!(!h.verify("nonsense".into(), Zeroizing::new("x".into())).await);
    }
}
