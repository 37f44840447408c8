//! Guessing client secrets. RFC 6749 s2.3.1: a server that takes client passwords "MUST protect
//! any endpoint utilizing it against brute force attacks". Wrong secrets are counted per domain,
//! client and client address, in memory (so per replica: the store is not read on the token
//! endpoint's fast path); past `client_secret_attempts` that pair is refused, right secret or
//! not, for `lockout_duration`, doubling with each further wrong secret up to `lockout_max`. A
//! right secret clears the count; a count left alone for `lockout_max` starts again.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Pairs remembered at most; past it, the unlocked ones are forgotten first.
const MAX_ENTRIES: usize = 100_000;

/// The failure counts of (domain, client, address) pairs.
#[derive(Default)]
pub struct SecretThrottle {
    entries: Mutex<HashMap<u64, Entry>>,
    /// How many entries there are, read without the lock on the fast path.
    len: AtomicUsize,
    seed: std::collections::hash_map::RandomState,
}

#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    failures: i64,
    locked_until: i64,
    last: i64,
}

/// The lockout rules of a domain.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// Wrong secrets before the first lockout.
    pub attempts: i64,
    /// The first lockout, in seconds.
    pub first: i64,
    /// The longest lockout, in seconds.
    pub max: i64,
}

/// One (domain, client, address) pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pair(u64);

impl SecretThrottle {
    /// The pair of `client` of `domain` asked from `address`.
    pub fn pair(&self, domain: &str, client: &str, address: &str) -> Pair {
        Pair(self.seed.hash_one((domain, client, address)))
    }

    /// Seconds until `pair` may try again (0: now).
    pub fn locked_for(&self, pair: Pair, now: i64) -> i64 {
        if self.len.load(Ordering::Relaxed) == 0 {
            return 0;
        }
        self.entries
            .lock()
            .ok()
            .and_then(|m| m.get(&pair.0).map(|e| (e.locked_until - now).max(0)))
            .unwrap_or(0)
    }

    /// Counts a wrong secret of `pair`; returns the seconds it is now locked for (0: not).
    pub fn failed(&self, pair: Pair, rules: Rules, now: i64) -> i64 {
        let Ok(mut m) = self.entries.lock() else {
            return 0;
        };
        if m.len() >= MAX_ENTRIES && !m.contains_key(&pair.0) {
            m.retain(|_, e| e.locked_until > now);
            if m.len() >= MAX_ENTRIES {
                m.clear();
            }
        }
        let e = m.entry(pair.0).or_default();
        // A count left alone for the longest lockout (after its lock ended) starts again.
        if now - e.locked_until.max(e.last) >= rules.max {
            *e = Entry::default();
        }
        e.failures += 1;
        e.last = now;
        let over = e.failures - rules.attempts;
        if over >= 0 {
            let doubled = rules.first.saturating_mul(1_i64 << over.min(30));
            e.locked_until = now + doubled.min(rules.max);
        }
        let locked = (e.locked_until - now).max(0);
        self.len.store(m.len(), Ordering::Relaxed);
        locked
    }

    /// A right secret of `pair`: its count is cleared.
    pub fn succeeded(&self, pair: Pair) {
        if self.len.load(Ordering::Relaxed) == 0 {
            return;
        }
        if let Ok(mut m) = self.entries.lock()
            && m.remove(&pair.0).is_some()
        {
            self.len.store(m.len(), Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    const RULES: Rules = Rules {
        attempts: 3,
        first: 30,
        max: 120,
    };

    #[test]
    fn locks_after_the_attempts_doubles_and_forgets() {
        let t = SecretThrottle::default();
        let p = t.pair("d", "c", "10.0.0.1");
        let other = t.pair("d", "c", "10.0.0.2");
        assert_eq!(t.locked_for(p, 0), 0);
        assert_eq!(t.failed(p, RULES, 0), 0);
        assert_eq!(t.failed(p, RULES, 1), 0);
        assert_eq!(t.failed(p, RULES, 2), 30, "the third wrong secret locks");
        assert_eq!(t.locked_for(p, 2), 30);
        assert_eq!(t.locked_for(p, 31), 1);
        assert_eq!(t.locked_for(other, 2), 0, "another address is not locked");
        assert_eq!(t.failed(p, RULES, 40), 60, "each further one doubles");
        assert_eq!(t.failed(p, RULES, 100), 120, "up to the longest");
        assert_eq!(
            t.failed(p, RULES, 220),
            120,
            "right when the lock ends: still counted"
        );
        // Left alone for the longest lockout after it ended: a fresh count.
        assert_eq!(t.failed(p, RULES, 340 + 119), 120);
        assert_eq!(t.failed(p, RULES, 579 + 120), 0);
        // A right secret clears it.
        t.failed(p, RULES, 500);
        t.succeeded(p);
        assert_eq!(t.failed(p, RULES, 501), 0);
        assert_eq!(t.failed(p, RULES, 502), 0);
    }
}
