//! Throttling with a lockout that backs off, shared by the sign-in page, the password grant and
//! the device page's user codes: failures are counted per bucket (an account, a browser, a client
//! address); a bucket over its threshold is locked for `lockout_duration`, doubling with each
//! further failure up to `lockout_max`.

use std::collections::HashMap;
use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::domain::Domain;
use crate::store::StoreResult;
use crate::store::signin::{SignInStore, Tally, lockout_seconds};

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

    /// The standing of `buckets` given each one's count, in the same order (`None`: no failures
    /// on record), at `now`.
    pub fn of(buckets: &[Bucket], tallies: &[Option<Tally>], now: i64) -> Standing {
        let on_record = || buckets.iter().zip(tallies).filter_map(|(b, t)| t.map(|t| (b, t)));
        Standing {
            locked: on_record()
                .map(|(_, t)| (t.locked_until - now).max(0))
                .max()
                .unwrap_or(0),
            counted: on_record().map(|(b, _)| b.key.clone()).collect(),
        }
    }
}

/// The counts of `buckets` at `now`, in the same order.
pub async fn tallies<S: SignInStore + Sync>(
    store: &S,
    domain: &Domain,
    buckets: &[Bucket],
    now: i64,
) -> StoreResult<Vec<Option<Tally>>> {
    let keys: Vec<&str> = buckets.iter().map(|b| b.key.as_str()).collect();
    store.login_attempts(&domain.name, &keys, now).await
}

/// Counts one failure in every bucket of `pass`, and tells the gate what the store now holds.
pub async fn record_failure<S: SignInStore + Sync>(
    store: &S,
    domain: &Domain,
    buckets: &[Bucket],
    pass: &Pass<'_>,
    now: i64,
) -> StoreResult<()> {
    let limits = &domain.config;
    let (first, max) = (limits.lockout_duration.0, limits.lockout_max.0);
    for (i, b) in buckets.iter().enumerate() {
        let failures = store
            .record_login_failure(&domain.name, &b.key, now, b.threshold, first, max)
            .await?;
        let lock = lockout_seconds(failures, b.threshold, first, max);
        pass.recorded(
            i,
            Tally {
                failures,
                locked_until: if lock > 0 { now + lock } else { 0 },
            },
            now,
        );
    }
    Ok(())
}

/// The part of `address` a budget belongs to: an IPv6 address's /64 (one subscriber's usual
/// share, which an attacker can rotate through), any other address as it is.
pub fn budget_holder(address: &str) -> String {
    match address.parse::<IpAddr>() {
        Ok(IpAddr::V6(a)) if a.to_ipv4_mapped().is_none() => {
            let s = a.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        Ok(a) => a.to_canonical().to_string(),
        Err(_) => address.to_string(),
    }
}

/// How long a process keeps what it recorded about a bucket beside the store's counts: longer
/// than any read of them takes.
const KEEP_SECS: i64 = 60;
/// Buckets remembered before the ones with nothing in flight are forgotten, whatever their age.
const MAX_ENTRIES: usize = 100_000;

/// The checks in flight per bucket in this process. The store's counts are written after a check
/// (after argon2, after a lookup): without the gate, every guess sent at once reads them before
/// any is counted and goes ahead, past the budget. A bucket lets through at once as many checks as
/// failures it has left before its lock (one at a time once spent, between its locks); the others
/// queue, first come first served per bucket, and are let through as checks end, or answered
/// with the lock one of them recorded. So people behind one address signing in at once are
/// queued, not refused, in the order they came (as the argon2 threads take them). The counts this
/// process recorded are kept for a minute beside the store's, so a read made before them does not
/// count. Per process: N replicas may each let that many through at once.
#[derive(Default)]
pub struct Gate {
    inner: Mutex<Inner>,
    seed: RandomState,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<u64, Flight>,
    queue: VecDeque<Waiter>,
    next_id: u64,
}

/// A check waiting for its turn.
struct Waiter {
    id: u64,
    ask: Ask,
    tx: oneshot::Sender<Result<(), Refusal>>,
}

/// What a check asks of the gate: its buckets (hashed keys and thresholds), their counts as the
/// store read them, and the time of the request.
struct Ask {
    keys: Vec<u64>,
    thresholds: Vec<i64>,
    read: Vec<Option<Tally>>,
    now: i64,
}

/// How long a check waits for its turn before it is refused as [`Refusal::Busy`].
const WAIT_MAX: Duration = Duration::from_secs(10);
/// Checks queued at most in one process; past it a check is refused as [`Refusal::Busy`] at once.
const MAX_QUEUE: usize = 1024;

/// Why a check may not go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A bucket is locked for this many seconds (failures counted).
    Locked(i64),
    /// Too many checks at once: not a failure of anyone's; try again shortly.
    Busy,
}

/// Whether a check may go ahead now.
enum Turn {
    Go,
    /// Locked for this many seconds.
    Locked(i64),
    /// Its budget is being checked: wait for a check to end.
    Busy,
}

/// One bucket in this process: the checks in flight and the last count recorded.
#[derive(Debug, Clone, Copy, Default)]
struct Flight {
    pending: i64,
    recorded: Tally,
    at: i64,
}

/// Checks admitted by [`Gate::admit`], one per bucket; dropped when they are over (counted or
/// not: a dropped request's check answered no one).
pub struct Pass<'g> {
    gate: &'g Gate,
    keys: Vec<u64>,
}

impl Inner {
    /// Whether `ask` may go ahead, given the checks in flight and the counts recorded here.
    fn turn(&self, ask: &Ask) -> Turn {
        let (mut locked, mut busy) = (0, false);
        for ((key, threshold), read) in ask.keys.iter().zip(&ask.thresholds).zip(&ask.read) {
            let f = self.entries.get(key).copied().unwrap_or_default();
            let mut t = read.unwrap_or_default();
            if f.at > 0 && ask.now - f.at < KEEP_SECS {
                t.failures = t.failures.max(f.recorded.failures);
                t.locked_until = t.locked_until.max(f.recorded.locked_until);
            }
            if t.locked_until > ask.now {
                locked = locked.max(t.locked_until - ask.now);
            } else if f.pending >= (threshold - t.failures).max(1) {
                busy = true;
            }
        }
        match (locked, busy) {
            (l, _) if l > 0 => Turn::Locked(l),
            (_, true) => Turn::Busy,
            _ => Turn::Go,
        }
    }

    fn take(&mut self, keys: &[u64]) {
        for key in keys {
            self.entries.entry(*key).or_default().pending += 1;
        }
    }

    fn give_back(&mut self, keys: &[u64]) {
        for key in keys {
            if let Some(f) = self.entries.get_mut(key) {
                f.pending -= 1;
                if f.pending <= 0 && f.at == 0 {
                    self.entries.remove(key);
                }
            }
        }
    }

    /// Lets the queued checks through in order, each once its buckets have room, and answers the
    /// locked ones; a check never passes one queued before it on a bucket they share. Only the
    /// checks sharing a bucket with `touched` (the buckets of a check that ended) are looked at
    /// again (`None`: all of them); the others keep their place. One pass over the queue.
    fn dispatch(&mut self, touched: Option<&[u64]>) {
        if self.queue.is_empty() {
            return;
        }
        let mut blocked: HashSet<u64> = HashSet::new();
        let queue = std::mem::take(&mut self.queue);
        let mut kept = VecDeque::with_capacity(queue.len());
        for w in queue {
            if w.tx.is_closed() {
                continue;
            }
            let concerned = touched.is_none_or(|t| w.ask.keys.iter().any(|k| t.contains(k)));
            let behind = w.ask.keys.iter().any(|k| blocked.contains(k));
            let turn = if concerned { self.turn(&w.ask) } else { Turn::Busy };
            match turn {
                Turn::Locked(secs) => {
                    let _ = w.tx.send(Err(Refusal::Locked(secs)));
                }
                Turn::Go if !behind => {
                    self.take(&w.ask.keys);
                    if w.tx.send(Ok(())).is_err() {
                        self.give_back(&w.ask.keys);
                    }
                }
                _ => {
                    blocked.extend(&w.ask.keys);
                    kept.push_back(w);
                }
            }
        }
        self.queue = kept;
    }

    /// Keeps at most [`MAX_ENTRIES`] buckets: first forgets those with nothing in flight, nothing
    /// queued and nothing recorded within [`KEEP_SECS`]; then, if still too many, those with
    /// nothing in flight or queued whatever their age.
    fn prune(&mut self, now: i64) {
        if self.entries.len() < MAX_ENTRIES {
            return;
        }
        let queued: HashSet<u64> = self
            .queue
            .iter()
            .flat_map(|w| w.ask.keys.iter().copied())
            .collect();
        self.entries
            .retain(|k, f| f.pending > 0 || queued.contains(k) || now - f.at < KEEP_SECS);
        if self.entries.len() >= MAX_ENTRIES {
            self.entries.retain(|k, f| f.pending > 0 || queued.contains(k));
        }
    }
}

impl Gate {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Lets one check of `buckets` of `domain` go ahead, given their counts `read` from the store
    /// (in the same order), once the checks in flight and those queued before it leave room in
    /// each budget; or says for how many seconds it may not: a bucket is locked (by the store, or
    /// by a check that ended while this one waited), or no room came within [`WAIT_MAX`] (then 1).
    pub async fn admit(
        &self,
        domain: &str,
        buckets: &[Bucket],
        read: &[Option<Tally>],
        now: i64,
    ) -> Result<Pass<'_>, Refusal> {
        let ask = Ask {
            keys: buckets
                .iter()
                .map(|b| self.seed.hash_one((domain, &b.key)))
                .collect(),
            thresholds: buckets.iter().map(|b| b.threshold).collect(),
            read: read.to_vec(),
            now,
        };
        let keys = ask.keys.clone();
        let mut waiting = {
            let mut g = self.inner();
            g.prune(now);
            let queued = g
                .queue
                .iter()
                .any(|w| w.ask.keys.iter().any(|k| ask.keys.contains(k)));
            match g.turn(&ask) {
                Turn::Locked(secs) => return Err(Refusal::Locked(secs)),
                Turn::Go if !queued => {
                    g.take(&keys);
                    return Ok(Pass { gate: self, keys });
                }
                _ if g.queue.len() >= MAX_QUEUE => return Err(Refusal::Busy),
                _ => {}
            }
            let (tx, rx) = oneshot::channel();
            let id = g.next_id;
            g.next_id += 1;
            g.queue.push_back(Waiter { id, ask, tx });
            // The queue may hold only checks whose requests are gone, which no ending check
            // would clear: let it through now if it can go.
            g.dispatch(Some(&keys));
            Waiting {
                gate: self,
                id,
                keys: Some(keys.clone()),
                rx,
            }
        };
        let answer = match tokio::time::timeout(WAIT_MAX, &mut waiting.rx).await {
            Ok(answer) => answer.unwrap_or(Err(Refusal::Busy)),
            // Not answered in time: out of the queue (or, answered as the wait ended, that).
            Err(_) => waiting.leave().unwrap_or(Err(Refusal::Busy)),
        };
        waiting.keys = None;
        answer.map(|()| Pass { gate: self, keys })
    }
}

/// A check in the queue. Dropped before its answer was taken (its request gone, or its wait
/// over), it leaves the queue, or gives back the room it was given.
struct Waiting<'g> {
    gate: &'g Gate,
    id: u64,
    /// Its buckets, while the answer is not taken.
    keys: Option<Vec<u64>>,
    rx: oneshot::Receiver<Result<(), Refusal>>,
}

impl Waiting<'_> {
    /// Leaves the queue; the answer when it had come meanwhile.
    fn leave(&mut self) -> Option<Result<(), Refusal>> {
        let mut g = self.gate.inner();
        match g.queue.iter().position(|w| w.id == self.id) {
            Some(at) => {
                let gone = g.queue.remove(at);
                if let Some(w) = gone {
                    g.dispatch(Some(&w.ask.keys));
                }
                None
            }
            None => self.rx.try_recv().ok(),
        }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let Some(keys) = self.keys.take() else {
            return;
        };
        if let Some(Ok(())) = self.leave() {
            let mut g = self.gate.inner();
            g.give_back(&keys);
            g.dispatch(Some(&keys));
        }
    }
}

impl Pass<'_> {
    /// What the store holds for bucket `i` after this check counted a failure: its count and
    /// lock, merged with what other checks recorded (a count the store gave a check that ended
    /// first may be older than one already recorded).
    pub fn recorded(&self, i: usize, tally: Tally, now: i64) {
        let Some(key) = self.keys.get(i) else {
            return;
        };
        if let Some(f) = self.gate.inner().entries.get_mut(key) {
            let fresh = f.at > 0 && now - f.at < KEEP_SECS;
            f.recorded = if fresh {
                Tally {
                    failures: f.recorded.failures.max(tally.failures),
                    locked_until: f.recorded.locked_until.max(tally.locked_until),
                }
            } else {
                tally
            };
            f.at = now;
        }
    }

    /// Bucket `i`'s failures were forgotten in the store (a right password).
    pub fn cleared(&self, i: usize, now: i64) {
        let Some(key) = self.keys.get(i) else {
            return;
        };
        if let Some(f) = self.gate.inner().entries.get_mut(key) {
            f.recorded = Tally::default();
            f.at = now;
        }
    }
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        let mut g = self.gate.inner();
        g.give_back(&self.keys);
        g.dispatch(Some(&self.keys));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn buckets() -> [Bucket; 2] {
        [
            Bucket::new("u:alice".into(), 3),
            Bucket::new("a:1.2.3.4".into(), 10),
        ]
    }

    /// alice's account with a budget of one check at a time.
    fn alice() -> [Bucket; 1] {
        [Bucket::new("u:alice".into(), 1)]
    }

    /// A check of [`alice`]'s account in a task of its own: its answer, once it has one.
    fn waiter(gate: &std::sync::Arc<Gate>) -> tokio::task::JoinHandle<Result<(), Refusal>> {
        let gate = gate.clone();
        tokio::spawn(async move { gate.admit("d", &alice(), &[None], 100).await.map(|_| ()) })
    }

    fn failed(failures: i64, locked_until: i64) -> Tally {
        Tally {
            failures,
            locked_until,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn checks_at_once_are_let_through_only_to_the_budget_left() {
        let gate = Gate::default();
        let b = buckets();
        let none = [None, None];
        // Three failures allowed: three checks at once, not a fourth.
        let mut passes = Vec::new();
        for _ in 0..3 {
            passes.push(gate.admit("d", &b, &none, 100).await.unwrap());
        }
        // A fourth waits (here the 10 s, then refused for 1 s).
        assert_eq!(gate.admit("d", &b, &none, 100).await.err(), Some(Refusal::Busy));
        // Another domain, or another account, has its own budget.
        assert!(gate.admit("e", &b, &none, 100).await.is_ok());
        // With one failure on record, two at once.
        drop(passes);
        let read = [Some(failed(1, 0)), None];
        let mut passes = Vec::new();
        for _ in 0..2 {
            passes.push(gate.admit("d", &b, &read, 100).await.unwrap());
        }
        assert_eq!(gate.admit("d", &b, &read, 100).await.err(), Some(Refusal::Busy));
        drop(passes);
        // Spent, the lock over: one at a time.
        let read = [Some(failed(5, 90)), None];
        let pass = gate.admit("d", &b, &read, 100).await.unwrap();
        assert_eq!(gate.admit("d", &b, &read, 100).await.err(), Some(Refusal::Busy));
        drop(pass);
        // Locked: the seconds left.
        let read = [Some(failed(5, 130)), None];
        assert_eq!(
            gate.admit("d", &b, &read, 100).await.err(),
            Some(Refusal::Locked(30))
        );
        // Nothing left behind by passes that recorded nothing.
        assert!(gate.inner().entries.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_check_goes_ahead_when_one_ends_or_finds_its_lock() {
        let gate = std::sync::Arc::new(Gate::default());
        let b = alice();
        let first = gate.admit("d", &b, &[None], 100).await.unwrap();
        let waiting = waiter(&gate);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiting.is_finished());
        // The first ends without a failure (a right password): the second goes ahead.
        drop(first);
        assert_eq!(waiting.await.unwrap(), Ok(()));
        // The first fails and locks: the waiting one finds the lock.
        let first = gate.admit("d", &b, &[None], 100).await.unwrap();
        let waiting = waiter(&gate);
        tokio::time::sleep(Duration::from_secs(1)).await;
        first.recorded(0, failed(1, 130), 100);
        drop(first);
        assert_eq!(waiting.await.unwrap(), Err(Refusal::Locked(30)));
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_checks_go_in_the_order_they_came() {
        let gate = std::sync::Arc::new(Gate::default());
        let first = gate.admit("d", &alice(), &[None], 100).await.unwrap();
        let (tx, mut order) = tokio::sync::mpsc::unbounded_channel();
        for n in 0..3 {
            let (gate, tx) = (gate.clone(), tx.clone());
            tokio::spawn(async move {
                let pass = gate.admit("d", &alice(), &[None], 100).await.unwrap();
                tx.send(n).unwrap();
                tokio::time::sleep(Duration::from_millis(10)).await;
                drop(pass);
            });
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // Another bucket is not held up by them.
        let other = [Bucket::new("u:carol".into(), 1)];
        assert!(gate.admit("d", &other, &[None], 100).await.is_ok());
        drop(first);
        // A newcomer does not pass the queue either: it comes last.
        let late = {
            let (gate, tx) = (gate.clone(), tx.clone());
            tokio::spawn(async move {
                let _pass = gate.admit("d", &alice(), &[None], 100).await.unwrap();
                tx.send(9).unwrap();
            })
        };
        late.await.unwrap();
        let mut seen = Vec::new();
        while let Ok(n) = order.try_recv() {
            seen.push(n);
        }
        assert_eq!(seen, [0, 1, 2, 9]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_check_dropped_as_its_turn_came_gives_its_room_back() {
        let gate = std::sync::Arc::new(Gate::default());
        let first = gate.admit("d", &alice(), &[None], 100).await.unwrap();
        let waiting = waiter(&gate);
        tokio::time::sleep(Duration::from_millis(1)).await;
        // Its turn comes (the room is given to it) and its request goes before it runs.
        drop(first);
        waiting.abort();
        let one = alice();
        let next = tokio::time::timeout(Duration::from_secs(1), gate.admit("d", &one, &[None], 100));
        assert!(matches!(next.await, Ok(Ok(_))), "the room was lost");
        // A check dropped while it waits leaves the queue: it holds no one up.
        let waiting = waiter(&gate);
        tokio::time::sleep(Duration::from_millis(1)).await;
        waiting.abort();
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(gate.inner().queue.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_queue_answers_busy_at_once() {
        let gate = std::sync::Arc::new(Gate::default());
        let _first = gate.admit("d", &alice(), &[None], 100).await.unwrap();
        let mut waiters = Vec::new();
        for _ in 0..MAX_QUEUE {
            waiters.push(waiter(&gate));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(gate.inner().queue.len(), MAX_QUEUE);
        let one = alice();
        let next = tokio::time::timeout(Duration::from_millis(1), gate.admit("d", &one, &[None], 100));
        assert_eq!(next.await.map(|r| r.err()), Ok(Some(Refusal::Busy)));
        // The queued ones, never let through, are busy after their wait.
        for w in waiters {
            assert_eq!(w.await.unwrap(), Err(Refusal::Busy));
        }
        assert!(gate.inner().queue.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn what_was_recorded_counts_over_an_older_read() {
        let gate = Gate::default();
        let b = buckets();
        let none = [None, None];
        // Three checks read "no failures"; the first two fail and are counted.
        let p1 = gate.admit("d", &b, &none, 100).await.unwrap();
        let p2 = gate.admit("d", &b, &none, 100).await.unwrap();
        // The count the store gave the later failure is recorded first: the older one does not
        // undo its lock.
        p2.recorded(0, failed(3, 130), 100);
        p1.recorded(0, failed(2, 0), 100);
        drop((p1, p2));
        // A check whose read was made before them is still refused: the lock recorded here.
        assert_eq!(
            gate.admit("d", &b, &none, 101).await.err(),
            Some(Refusal::Locked(29))
        );
        // A minute later the store's read alone decides.
        assert!(gate.admit("d", &b, &none, 100 + KEEP_SECS).await.is_ok());
        // The address bucket's count: 9 recorded, one check at a time left.
        let p = gate.admit("d", &b, &none, 200).await.unwrap();
        p.recorded(1, failed(9, 0), 200);
        let address = [Bucket::new("a:1.2.3.4".into(), 10)];
        let q = gate.admit("d", &address, &[None], 200).await;
        assert_eq!(q.err(), Some(Refusal::Busy));
    }

    #[test]
    fn ipv6_budgets_are_per_64() {
        assert_eq!(budget_holder("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(budget_holder("2001:db8:1:2:bbbb::9"), "2001:db8:1:2::/64");
        assert_eq!(budget_holder("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(budget_holder("192.0.2.7"), "192.0.2.7");
        assert_eq!(budget_holder("not an address"), "not an address");
    }
}
