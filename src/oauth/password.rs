//! Checking a user's password, shared by the sign-in page and the password grant: throttling per
//! account and per client address decided before any password is checked, the same argon2 work
//! and the same answer for an unknown user, a wrong password and a disabled user.

use crate::admin::MAX_USERNAME_CHARS;
use crate::audit::{AuditEvent, AuditQueue, Outcome};
use crate::crypto::secrets::PasswordHasher;
use crate::domain::Domain;
use crate::oauth::Peer;
use crate::oauth::throttle::{Bucket, Gate, Refusal, Standing, budget_holder, record_failure};
use crate::store::signin::{SignInStore, UserAndLocks};
use crate::store::{StoreResult, UserRow};

/// A well-formed argon2id hash with the server's parameters that matches no password: verified
/// when the user does not exist, so that an unknown username and a wrong password take the same
/// time (the full argon2 computation).
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$Wd4B3sS3vhm1FwnD5iLn2vAOJPD9aNMiSnHSzuUmYPc";

/// The outcome of a password check.
pub enum PasswordCheck {
    /// The password is right and the user active.
    Valid(UserRow),
    /// Refused without checking: the account or the address is locked for this many seconds.
    Locked(i64),
    /// Unknown user, wrong password or disabled user (one answer for all three).
    Failed,
    /// Not checked: too many checks at once in this process (nobody's failure); try again.
    Busy,
}

/// One password attempt: `username` for `client_id` from `peer`, in `domain`, at `now`.
pub struct Attempt<'a> {
    pub domain: &'a Domain,
    /// The checks in flight of this process, per bucket.
    pub gate: &'a Gate,
    pub username: &'a str,
    pub peer: &'a Peer,
    pub client_id: &'a str,
    pub now: i64,
}

impl Attempt<'_> {
    /// The two throttling buckets the attempt counts towards.
    pub fn buckets(&self) -> [Bucket; 2] {
        buckets(self.domain, self.username, &self.peer.address)
    }
}

/// The two throttling buckets a password attempt counts towards: its account and its address.
pub fn buckets(domain: &Domain, username: &str, address: &str) -> [Bucket; 2] {
    let limits = &domain.config;
    [
        Bucket::new(format!("u:{}", username.to_lowercase()), limits.lockout_threshold),
        Bucket::new(
            format!("a:{}", budget_holder(address)),
            limits.address_lockout_threshold,
        ),
    ]
}

/// Checks the attempt's `password`, counting failures towards lockouts, and audits it (success,
/// failure, or refused while locked out) through the audit queue: the event is stored off the
/// request, with others.
pub async fn check_password<S: SignInStore + Sync>(
    store: &S,
    hasher: &PasswordHasher,
    audit: &AuditQueue,
    attempt: &Attempt<'_>,
    password: zeroize::Zeroizing<String>,
) -> StoreResult<PasswordCheck> {
    let buckets = attempt.buckets();
    let read = store
        .find_user_and_locks(
            &attempt.domain.name,
            attempt.username,
            [&buckets[0].key, &buckets[1].key],
            attempt.now,
        )
        .await?;
    check_password_read(store, hasher, audit, attempt, password, read).await
}

/// [`check_password`] with what it reads before argon2 already read (`read`, for the attempt's
/// [`Attempt::buckets`]): the sign-in page reads it with its pending request, in one statement.
pub async fn check_password_read<S: SignInStore + Sync>(
    store: &S,
    hasher: &PasswordHasher,
    audit: &AuditQueue,
    attempt: &Attempt<'_>,
    password: zeroize::Zeroizing<String>,
    read: UserAndLocks,
) -> StoreResult<PasswordCheck> {
    let checked = check(store, hasher, attempt, password, read).await?;
    let domain = &attempt.domain.name;
    // Where the attempt came from (OWASP Logging: who, and from where), as its budget counts it.
    let address = budget_holder(&attempt.peer.address);
    let event = match &checked {
        PasswordCheck::Valid(u) => AuditEvent::new("signin.success", domain, Outcome::Success)
            .by_user(&u.id)
            .user(&u.id)
            .details(serde_json::json!({ "address": address })),
        PasswordCheck::Locked(secs) => AuditEvent::new("signin.lockout", domain, Outcome::Failure)
            .details(serde_json::json!({ "locked_for": secs, "address": address })),
        PasswordCheck::Failed => AuditEvent::new("signin.failure", domain, Outcome::Failure)
            .details(serde_json::json!({ "address": address })),
        // Nothing was checked, nothing counted.
        PasswordCheck::Busy => return Ok(checked),
    };
    audit
        .record(
            attempt.now,
            event.client(attempt.client_id).request(&attempt.peer.request_id),
        )
        .await;
    Ok(checked)
}

/// Whether `user` still has the password and the status its check found, read after whatever
/// that check let in (a session, a refresh-token family) has been written. A new password or a
/// disabled account is stored first and then signs the user out everywhere
/// (`oauth::logout::end_all_sessions`); so either that finds what was written here, or this read
/// sees the change, and then the caller undoes its writes. Without it, a check that read the old
/// hash just before a reset would let the old password in after the reset had signed everyone
/// out. A change seen is audited (`signin.failure` with `undone`), after the check's
/// `signin.success`.
pub async fn still_valid<S: SignInStore + Sync>(
    store: &S,
    audit: &AuditQueue,
    attempt: &Attempt<'_>,
    user: &UserRow,
) -> StoreResult<bool> {
    let Attempt {
        domain,
        peer,
        client_id,
        now,
        ..
    } = *attempt;
    let read = store.find_user_by_id(&domain.name, &user.id).await?;
    let valid = read.is_some_and(|u| u.status == "active" && u.password_hash == user.password_hash);
    if !valid {
        tracing::info!(domain = %domain.name, user.id = %user.id, "sign-in undone: the password or the account changed during the check");
        let event = AuditEvent::new("signin.failure", &domain.name, Outcome::Failure)
            .user(&user.id)
            .client(client_id)
            .request(&peer.request_id)
            .details(serde_json::json!({ "undone": true }));
        audit.record(now, event).await;
    }
    Ok(valid)
}

async fn check<S: SignInStore + Sync>(
    store: &S,
    hasher: &PasswordHasher,
    attempt: &Attempt<'_>,
    password: zeroize::Zeroizing<String>,
    (user, locks): UserAndLocks,
) -> StoreResult<PasswordCheck> {
    let (domain, now) = (attempt.domain, attempt.now);
    // No user has a longer name (and its bucket would not fit the store's key): nothing to check
    // or count.
    if attempt.username.chars().count() > MAX_USERNAME_CHARS {
        tracing::info!(domain = %domain.name, "password check failed: username too long");
        return Ok(PasswordCheck::Failed);
    }
    let buckets = attempt.buckets();
    // The user is read even when a bucket is locked, so that a lockout answers as fast whether
    // the account exists or not. The gate counts this check in flight until it is counted in
    // the store: guesses sent at once cannot all read "not locked" and go ahead.
    let standing = Standing::of(&buckets, &locks, now);
    let pass = match attempt.gate.admit(&domain.name, &buckets, &locks, now).await {
        Ok(pass) => pass,
        Err(Refusal::Locked(locked)) => {
            tracing::info!(domain = %domain.name, "password refused: locked after repeated failures");
            return Ok(PasswordCheck::Locked(locked));
        }
        Err(Refusal::Busy) => {
            tracing::warn!(domain = %domain.name, "password not checked: too many checks at once");
            return Ok(PasswordCheck::Busy);
        }
    };
    let (hash, active) = match &user {
        Some(u) => (u.password_hash.clone(), u.status == "active"),
        None => (None, false),
    };
    let verified = hasher
        .verify(hash.clone().unwrap_or_else(|| DUMMY_HASH.to_string()), password)
        .await;
    match user {
        Some(u) if verified && active && hash.is_some() => {
            // The account's failures are forgotten; the address's are not (one good account
            // must not reset the count of an address guessing others). Without any on record
            // (the usual case), nothing is written.
            if standing.counts(&buckets[0]) {
                store.clear_login_failures(&domain.name, &buckets[0].key).await?;
                pass.cleared(0, now);
            }
            Ok(PasswordCheck::Valid(u))
        }
        _ => {
            tracing::info!(domain = %domain.name, "password check failed");
            record_failure(store, domain, &buckets, &pass, now).await?;
            Ok(PasswordCheck::Failed)
        }
    }
}
