//! The device authorization grant (RFC 8628): the device authorization request, user codes, the
//! guessing budget of the verification page, and the person's decision.

use rand::Rng;
use serde::Serialize;

use crate::config::DEVICE_CODE_GRANT;
use crate::crypto::kek::Kek;
use crate::crypto::secrets::{random_token, sha256_b64};
use crate::domain::{Client, Domain, paths};
use crate::error::{OAuthError, OAuthResult};
use crate::oauth::Ctx;
use crate::oauth::authorize::record_consent;
use crate::oauth::params::Params;
use crate::oauth::scopes::resolve_user_scopes;
use crate::oauth::throttle::{Bucket, Gate, Refusal, budget_holder, record_failure, tallies};
use crate::store::admin::AuditStore;
use crate::store::device::{Approval, DeviceCodeRow, DeviceStore, status};
use crate::store::logout::LogoutStore;
use crate::store::signin::SignInStore;
use crate::store::{OAuthStore, StoreError, StoreResult};

/// RFC 8628 s6.1: user codes use 20 consonants (no vowels: no words; no look-alikes).
pub const USER_CODE_ALPHABET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";
/// Letters in a user code: 20^8, about 34.5 bits, with the guessing budget of the page.
pub const USER_CODE_LEN: usize = 8;
/// Attempts at a user code not taken by a live authorization before giving up.
const USER_CODE_TRIES: usize = 5;

/// RFC 8628 s3.2: the device authorization response.
#[derive(Debug, Serialize)]
pub struct DeviceAuthorizationResponse {
    pub device_code: String,
    /// `XXXX-XXXX`.
    pub user_code: String,
    pub verification_uri: String,
    pub verification_uri_complete: String,
    pub expires_in: i64,
    pub interval: i64,
}

/// A fresh user code: 8 letters of the alphabet, unformatted.
pub fn new_user_code() -> String {
    let mut rng = rand::rng();
    (0..USER_CODE_LEN)
        .map(|_| char::from(USER_CODE_ALPHABET[rng.random_range(0..USER_CODE_ALPHABET.len())]))
        .collect()
}

/// A normalized user code shown as `XXXX-XXXX`.
pub fn format_user_code(code: &str) -> String {
    let (a, b) = code.split_at(code.len().min(USER_CODE_LEN / 2));
    format!("{a}-{b}")
}

/// The normalized form of a user code as a person typed it: case, dashes and spaces do not
/// matter (RFC 8628 s6.1). None when it cannot be a user code.
pub fn normalize_user_code(typed: &str) -> Option<String> {
    let code: String = typed
        .chars()
        .filter(|c| *c != '-' && !c.is_whitespace())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let valid = code.len() == USER_CODE_LEN && code.bytes().all(|b| USER_CODE_ALPHABET.contains(&b));
    valid.then_some(code)
}

/// The stored form of a normalized user code: an HMAC under a key derived from the
/// key-encryption key. A user code has about 34 bits (8 of 20 letters), so a plain hash of the
/// live ones would be undone in seconds by whoever read the table (a backup, a replica's
/// database); keyed, nobody without the key can test a guess offline.
pub fn user_code_hash(kek: &Kek, normalized: &str) -> String {
    kek.derive_token("user-code", normalized)
}

/// The verification URI of a domain, and the one that pre-fills `user_code` (RFC 8628 s3.3.1).
pub fn verification_uris(d: &Domain, user_code: &str) -> (String, String) {
    let uri = d.url(paths::DEVICE_PAGE);
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("user_code", user_code)
        .finish();
    let complete = format!("{uri}?{query}");
    (uri, complete)
}

/// RFC 8628 s3.1-3.2: starts a device authorization for an authenticated client.
pub async fn authorize<S: OAuthStore>(
    ctx: &Ctx<'_, S>,
    client: &Client,
    params: &Params,
) -> OAuthResult<DeviceAuthorizationResponse> {
    // RFC 6749 s5.2 unauthorized_client: the client may not use the device grant.
    if !client.grant_types.contains(DEVICE_CODE_GRANT) {
        return Err(OAuthError::unauthorized_client(
            "this client may not use the device authorization grant",
        ));
    }
    // RFC 8628 s3.1: scope as in RFC 6749 s3.3, resolved as for the authorization request.
    let scopes = resolve_user_scopes(ctx.domain, client, params.get("scope"))?;
    let d = ctx.domain;
    for _ in 0..USER_CODE_TRIES {
        let device_code = random_token();
        let user_code = new_user_code();
        let row = DeviceCodeRow {
            hash: sha256_b64(&device_code),
            domain: d.name.clone(),
            user_code_hash: user_code_hash(ctx.kek, &user_code),
            client_id: client.id.clone(),
            scope: scopes.join(" "),
            status: status::PENDING.into(),
            user_id: None,
            sid: None,
            auth_time: None,
            amr: None,
            session_expires_at: None,
            poll_interval: d.device_poll_interval,
            last_polled_at: None,
            issued_at: ctx.now,
            expires_at: ctx.now + d.device_code_lifetime,
            decided_at: None,
            used_at: None,
            access_jti: None,
            access_expires_at: None,
            family_id: None,
            reused_at: None,
        };
        match ctx.store.insert_device_code(&row).await {
            Ok(()) => {}
            // The user code is taken (a live or not yet collected authorization): another one.
            Err(StoreError::Conflict(_)) => continue,
            Err(e) => return Err(e.into()),
        }
        let shown = format_user_code(&user_code);
        let (verification_uri, verification_uri_complete) = verification_uris(d, &shown);
        tracing::info!(domain = %d.name, client_id = %client.id, "device authorization started");
        return Ok(DeviceAuthorizationResponse {
            device_code,
            user_code: shown,
            verification_uri,
            verification_uri_complete,
            expires_in: d.device_code_lifetime,
            interval: d.device_poll_interval,
        });
    }
    Err(OAuthError::server_error(
        "no free user code after several attempts",
    ))
}

/// What a user code typed on the verification page names.
#[derive(Debug)]
pub enum UserCodeCheck {
    /// Not looked up: the browser or the address is paused for this many seconds.
    Locked(i64),
    /// Not looked up: too many lookups at once in this process (nobody's failure); try again.
    Busy,
    /// No such code (counted against the guessing budget).
    Unknown,
    /// The code has expired.
    Expired,
    /// The person already approved or denied it.
    Decided,
    /// A pending authorization waiting for the person.
    Pending(Box<DeviceCodeRow>),
}

/// Who typed a user code: the browser (its CSRF cookie) and the client address.
pub struct Typist<'a> {
    pub browser: &'a str,
    pub address: &'a str,
}

/// RFC 8628 s5.1: looks up a typed user code, within a guessing budget per browser and per
/// client address (an IPv6 address by its /64), paused with the sign-in backoff when spent. The
/// gate counts a lookup in flight until it is counted, so codes typed at once cannot overshoot
/// the budget.
pub async fn check_user_code<S: DeviceStore + SignInStore + Sync>(
    store: &S,
    kek: &Kek,
    gate: &Gate,
    domain: &Domain,
    typed: &str,
    by: &Typist<'_>,
    now: i64,
) -> StoreResult<UserCodeCheck> {
    let limits = &domain.config;
    let buckets = [
        Bucket::new(
            format!("dc:{}", sha256_b64(by.browser)),
            limits.user_code_attempts,
        ),
        Bucket::new(
            format!("da:{}", budget_holder(by.address)),
            limits.address_user_code_attempts,
        ),
    ];
    let read = tallies(store, domain, &buckets, now).await?;
    let pass = match gate.admit(&domain.name, &buckets, &read, now).await {
        Ok(pass) => pass,
        Err(Refusal::Locked(locked)) => {
            tracing::info!(domain = %domain.name, "user code refused: paused after repeated wrong codes");
            return Ok(UserCodeCheck::Locked(locked));
        }
        Err(Refusal::Busy) => {
            tracing::warn!(domain = %domain.name, "user code not looked up: too many at once");
            return Ok(UserCodeCheck::Busy);
        }
    };
    let found = match normalize_user_code(typed) {
        Some(code) => {
            store
                .find_device_code_by_user_code(&domain.name, &user_code_hash(kek, &code))
                .await?
        }
        None => None,
    };
    // A right code never clears the count: anyone can get codes of their own, and one of them
    // must not buy more guesses at the codes of others.
    let Some(row) = found else {
        tracing::info!(domain = %domain.name, "unknown user code");
        record_failure(store, domain, &buckets, &pass, now).await?;
        return Ok(UserCodeCheck::Unknown);
    };
    Ok(if row.expires_at <= now {
        UserCodeCheck::Expired
    } else if row.status != status::PENDING {
        UserCodeCheck::Decided
    } else {
        UserCodeCheck::Pending(Box::new(row))
    })
}

/// RFC 8628 s3.3: the person's decision on a device authorization, by the hash of its device
/// code. Approval records, as on the consent page, the consent to its scopes, and the session as
/// one that served the client, then the approval. Those come first: a poll that finds the code
/// approved finds the consent too (a redemption reads it last, `user_tokens::refuse_if_withdrawn`,
/// and refuses what a withdrawal has deleted), and a withdrawal finds the session. False when it
/// was no longer pending or has expired; then nothing is recorded, unless it was decided in the
/// moment between the read and the approval (by another browser with the same user code): the
/// person's consent and the session's record then stay, as for any consent given.
pub async fn decide<S: DeviceStore + SignInStore + AuditStore + LogoutStore + Sync>(
    store: &S,
    domain: &Domain,
    hash: &str,
    approval: Option<&Approval>,
    now: i64,
) -> StoreResult<bool> {
    let Some(by) = approval else {
        return store.deny_device_code(&domain.name, hash, now).await;
    };
    let pending = store.find_device_code(&domain.name, hash).await?;
    let Some(row) = pending.filter(|r| r.status == status::PENDING && r.expires_at > now) else {
        return Ok(false);
    };
    let scopes: Vec<String> = row
        .scope
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    record_consent(store, &domain.name, &by.user_id, &row.client_id, &scopes, now).await?;
    // Back-Channel Logout 1.0: the device's client is told when the approving session ends. Before
    // the approval too: a withdrawal finds the access tokens redeemed without a family through the
    // sessions that served the client, so one that reads them just after a poll has redeemed the
    // code must find this one.
    store
        .record_session_client(
            &domain.name,
            &by.sid,
            &by.user_id,
            &row.client_id,
            now,
            by.session_expires_at,
        )
        .await?;
    store.approve_device_code(&domain.name, hash, by, now).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn user_codes_use_the_alphabet_and_normalize() {
        for _ in 0..200 {
            let c = new_user_code();
            assert_eq!(c.len(), USER_CODE_LEN);
            assert!(c.bytes().all(|b| USER_CODE_ALPHABET.contains(&b)), "{c}");
            let shown = format_user_code(&c);
            assert_eq!(shown.len(), 9);
            assert_eq!(&shown[4..5], "-");
            assert_eq!(normalize_user_code(&shown).as_deref(), Some(c.as_str()));
            assert_eq!(
                normalize_user_code(&c.to_lowercase()).as_deref(),
                Some(c.as_str())
            );
        }
        assert_eq!(normalize_user_code(" bcdf - ghjk ").as_deref(), Some("BCDFGHJK"));
        assert_eq!(normalize_user_code("BCDF-GHJ"), None);
        assert_eq!(normalize_user_code("BCDF-GHJKL"), None);
        // Vowels are not in the alphabet.
        assert_eq!(normalize_user_code("ABCD-FGHJ"), None);
        assert_eq!(normalize_user_code(""), None);
    }
}
