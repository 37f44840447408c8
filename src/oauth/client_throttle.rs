//! Guessing client secrets. RFC 6749 s2.3.1: a server that takes client passwords "MUST protect
//! any endpoint utilizing it against brute force attacks". Secrets stored as SHA-256 are
//! generated (256 bits) or given in clear of at least 32 characters, and cannot be guessed; an
//! argon2id secret is one a person chose, and its guesses are counted per domain, client and
//! client address (an IPv6 address by its /64), in memory (so per replica). Past
//! `client_secret_attempts` that pair is refused, right secret or not and without running argon2,
//! for `lockout_duration`, doubling with each further wrong secret up to `lockout_max`. A guess
//! takes its place in the budget before argon2 runs, so guesses sent at once cannot overshoot it.
//! A right secret clears the count; a count left alone for `lockout_max` starts again. A guess is
//! settled in a task of its own (`ClientAuthenticator`), so one whose request is dropped still counts.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Mutex;

use crate::oauth::throttle::budget_holder;
use crate::store::signin::lockout_seconds;

/// Pairs remembered at most; past it, the ones neither locked nor being checked are forgotten.
const MAX_ENTRIES: usize = 100_000;

/// The failure counts of (domain, client, address) pairs.
#[derive(Default)]
pub struct SecretThrottle {
    entries: Mutex<HashMap<u64, Entry>>,
    seed: std::collections::hash_map::RandomState,
}

#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    failures: i64,
    /// Guesses being checked now.
    pending: i64,
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
        Pair(self.seed.hash_one((domain, client, budget_holder(address))))
    }

    /// Lets one guess of `pair` be checked, or says for how many seconds it may not (locked, or
    /// the guesses being checked already fill what is left of its budget).
    pub fn admit(&self, pair: Pair, rules: Rules, now: i64) -> Result<(), i64> {
        let Ok(mut m) = self.entries.lock() else {
            return Err(rules.first);
        };
        if m.len() >= MAX_ENTRIES && !m.contains_key(&pair.0) {
            m.retain(|_, e| e.locked_until > now || e.pending > 0);
            if m.len() >= MAX_ENTRIES {
                return Err(rules.first);
            }
        }
        let e = m.entry(pair.0).or_default();
        // A count left alone for the longest lockout (after its lock ended) starts again.
        if e.pending == 0 && now - e.locked_until.max(e.last) >= rules.max {
            *e = Entry::default();
        }
        if e.locked_until > now {
            return Err(e.locked_until - now);
        }
        // What is left of the budget, and once it is spent (each lock over) one guess at a time.
        if e.pending >= (rules.attempts - e.failures).max(1) {
            return Err(rules.first);
        }
        e.pending += 1;
        Ok(())
    }

    /// The outcome of a guess [`admit`](Self::admit) let through; returns the seconds `pair` is
    /// now locked for (0: not).
    pub fn settle(&self, pair: Pair, right: bool, rules: Rules, now: i64) -> i64 {
        let Ok(mut m) = self.entries.lock() else {
            return 0;
        };
        let Some(e) = m.get_mut(&pair.0) else {
            return 0;
        };
        e.pending = (e.pending - 1).max(0);
        e.last = now;
        if right {
            e.failures = 0;
            e.locked_until = 0;
            if e.pending == 0 {
                m.remove(&pair.0);
            }
            return 0;
        }
        e.failures += 1;
        let lock = lockout_seconds(e.failures, rules.attempts, rules.first, rules.max);
        if lock > 0 {
            e.locked_until = now + lock;
        }
        (e.locked_until - now).max(0)
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

    /// One guess, admitted and settled at `now`: Err(seconds) when refused, else the lock after.
    fn guess(t: &SecretThrottle, p: Pair, right: bool, now: i64) -> Result<i64, i64> {
        t.admit(p, RULES, now)?;
        Ok(t.settle(p, right, RULES, now))
    }

    #[test]
    fn locks_after_the_attempts_doubles_and_forgets() {
        let t = SecretThrottle::default();
        let p = t.pair("d", "c", "10.0.0.1");
        let other = t.pair("d", "c", "10.0.0.2");
        assert_eq!(guess(&t, p, false, 0), Ok(0));
        assert_eq!(guess(&t, p, false, 1), Ok(0));
        assert_eq!(guess(&t, p, false, 2), Ok(30), "the third wrong secret locks");
        assert_eq!(guess(&t, p, true, 2), Err(30), "locked: the right secret too");
        assert_eq!(guess(&t, p, false, 31), Err(1));
        assert_eq!(guess(&t, other, true, 3), Ok(0), "another address is not locked");
        assert_eq!(guess(&t, p, false, 40), Ok(60), "each further one doubles");
        assert_eq!(guess(&t, p, false, 100), Ok(120), "up to the longest");
        assert_eq!(
            guess(&t, p, false, 220),
            Ok(120),
            "right when the lock ends: still counted"
        );
        assert_eq!(guess(&t, p, false, 340 + 119), Ok(120));
        // Left alone for the longest lockout after it ended: a fresh count.
        assert_eq!(guess(&t, p, false, 579 + 120), Ok(0));
        // A right secret clears it.
        assert_eq!(guess(&t, p, true, 700), Ok(0));
        assert_eq!(guess(&t, p, false, 701), Ok(0));
        assert_eq!(guess(&t, p, false, 702), Ok(0));
    }

    #[test]
    fn guesses_checked_at_once_cannot_overshoot_the_budget() {
        let t = SecretThrottle::default();
        let p = t.pair("d", "c", "10.0.0.1");
        let admitted = (0..24).filter(|_| t.admit(p, RULES, 0).is_ok()).count();
        assert_eq!(admitted, 3, "only the budget is checked while they run");
        for _ in 0..3 {
            t.settle(p, false, RULES, 0);
        }
        assert_eq!(t.admit(p, RULES, 0), Err(30));
    }

    #[test]
    fn an_ipv6_budget_is_its_64() {
        let t = SecretThrottle::default();
        let a = t.pair("d", "c", "2001:db8:1:2::1");
        assert_eq!(a, t.pair("d", "c", "2001:db8:1:2:ffff::9"));
        assert_ne!(a, t.pair("d", "c", "2001:db8:1:3::1"));
        assert_eq!(t.pair("d", "c", "::ffff:10.0.0.1"), t.pair("d", "c", "10.0.0.1"));
    }
}
