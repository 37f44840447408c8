//! Sign-out: OpenID Connect RP-Initiated Logout 1.0 (the end-session request), Back-Channel
//! Logout 1.0 (logout tokens, queued for delivery) and Front-Channel Logout 1.0 (the iframe
//! URIs), and what ending a session, signing out everywhere and withdrawing a consent revoke.

use serde_json::{Map, Value, json};

use crate::audit::{self, AuditEvent, Outcome};
use crate::crypto::jws;
use crate::crypto::secrets::{random_id, sha256_b64};
use crate::domain::{Client, Domain};
use crate::error::{OAuthError, OAuthResult};
use crate::keyring::KeySet;
use crate::oauth::authorize::redirect_with;
use crate::oauth::id_token::issued_id_token;
use crate::oauth::user_tokens::revoke_family_in;
use crate::store::OAuthStore;
use crate::store::logout::DeliveryRow;
use crate::store::signin::SessionRow;

/// The `events` member of every logout token.
pub const BACKCHANNEL_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// Seconds a logout token is valid (Back-Channel Logout 1.0 s2.4 recommends a short lifetime).
pub const LOGOUT_TOKEN_LIFETIME: i64 = 120;
/// Attempts at a back-channel delivery before giving up.
pub const MAX_DELIVERY_ATTEMPTS: i64 = 8;
/// Seconds before the first retry; doubled after each failure.
pub const RETRY_BASE: i64 = 30;
/// Longest wait between two attempts.
pub const RETRY_MAX: i64 = 3600;

/// What a valid `id_token_hint` of an end-session request says.
#[derive(Debug, Clone)]
pub struct LogoutHint {
    /// The client it was issued to (its `aud`).
    pub client_id: String,
    /// Its subject.
    pub sub: String,
    /// Its session, when it names one.
    pub sid: Option<String>,
}

/// The validated parameters of an end-session request.
#[derive(Debug, Clone, Default)]
pub struct EndSessionRequest {
    /// The client, when known from the hint or `client_id`.
    pub client_id: Option<String>,
    /// A registered post-logout redirect URI of that client.
    pub post_logout_redirect_uri: Option<String>,
    /// Passed back to the client.
    pub state: Option<String>,
    /// The hint, when one was given and valid.
    pub hint: Option<LogoutHint>,
}

/// RP-Initiated Logout 1.0 s2: `id_token_hint` is an ID token this domain issued (signature and
/// issuer checked); an expired one is accepted. Its `aud` names the client.
pub fn read_hint(domain: &Domain, keys: &KeySet, token: &str) -> OAuthResult<LogoutHint> {
    let bad = || OAuthError::invalid_request("the id_token_hint is not an ID token issued here");
    let claims = issued_id_token(domain, keys, token).ok_or_else(bad)?;
    // OpenID Connect Core s2: an ID token's aud is the client (one audience here).
    let client_id = match claims.get("aud") {
        Some(Value::String(a)) => a.clone(),
        Some(Value::Array(a)) if a.len() == 1 => a[0].as_str().ok_or_else(bad)?.to_string(),
        _ => return Err(bad()),
    };
    let sub = claims
        .get("sub")
        .and_then(Value::as_str)
        .ok_or_else(bad)?
        .to_string();
    let sid = claims.get("sid").and_then(Value::as_str).map(str::to_string);
    Ok(LogoutHint { client_id, sub, sid })
}

/// Checks an end-session request's parameters. Errors are shown as a page, never redirected.
pub fn check_request(
    domain: &Domain,
    keys: &KeySet,
    id_token_hint: Option<&str>,
    client_id: Option<&str>,
    post_logout_redirect_uri: Option<&str>,
    state: Option<&str>,
) -> OAuthResult<EndSessionRequest> {
    let hint = id_token_hint
        .filter(|h| !h.is_empty())
        .map(|h| read_hint(domain, keys, h))
        .transpose()?;
    let client_id = client_id.filter(|c| !c.is_empty());
    // RP-Initiated Logout 1.0 s2: when both are given, client_id must be the hint's audience.
    if let (Some(h), Some(c)) = (&hint, client_id)
        && h.client_id != c
    {
        return Err(OAuthError::invalid_request(
            "client_id does not match the id_token_hint",
        ));
    }
    let client_id = hint.as_ref().map(|h| h.client_id.as_str()).or(client_id);
    let client = match client_id {
        Some(id) => Some(
            domain
                .client(id)
                .filter(|c| c.enabled)
                .ok_or_else(|| OAuthError::invalid_request("the client is not registered"))?,
        ),
        None => None,
    };
    // RP-Initiated Logout 1.0 s3: only a URI registered for the client, compared exactly.
    let post_logout_redirect_uri = match post_logout_redirect_uri.filter(|u| !u.is_empty()) {
        None => None,
        Some(uri) => match client {
            Some(c) if c.post_logout_redirect_uris.iter().any(|r| r == uri) => Some(uri.to_string()),
            Some(_) => {
                return Err(OAuthError::invalid_request(
                    "post_logout_redirect_uri is not registered for this client",
                ));
            }
            None => {
                return Err(OAuthError::invalid_request(
                    "post_logout_redirect_uri needs an id_token_hint or a client_id",
                ));
            }
        },
    };
    Ok(EndSessionRequest {
        client_id: client.map(|c| c.id.clone()),
        post_logout_redirect_uri,
        state: state.filter(|s| !s.is_empty()).map(str::to_string),
        hint,
    })
}

/// RP-Initiated Logout 1.0 s2: the OP may act without asking only when the hint names the
/// browser's session, by its `sid`. "The OP MUST ask the End-User [...] if the supplied ID Token
/// does not belong to the current OP session with the RP": an ID token without `sid` (the
/// password grant's) belongs to no session, so the person is asked.
pub fn hint_matches(hint: &LogoutHint, session: &SessionRow) -> bool {
    hint.sid.as_deref() == Some(session.sid.as_str()) && hint.sub == session.user_id
}

/// RP-Initiated Logout 1.0 s3: where to send the browser after sign-out, with `state`.
pub fn post_logout_location(req: &EndSessionRequest) -> Option<String> {
    let uri = req.post_logout_redirect_uri.as_deref()?;
    Some(match req.state.as_deref() {
        Some(state) => redirect_with(uri, &[("state", state)]),
        None => uri.to_string(),
    })
}

/// Front-Channel Logout 1.0 s2: the client's frontchannel_logout_uri with `iss` and `sid` (sent
/// always: required when frontchannel_logout_session_required, harmless otherwise).
pub fn frontchannel_uri(domain: &Domain, client: &Client, sid: &str) -> Option<String> {
    let uri = client.frontchannel_logout_uri.as_deref()?;
    Some(redirect_with(uri, &[("iss", &domain.issuer), ("sid", sid)]))
}

/// Back-Channel Logout 1.0 s2.4: a logout token for `client`, signed with the key of the
/// client's ID token algorithm, typed `logout+jwt` (s2.4 and RFC 8725 s3.11), never a `nonce`.
pub fn logout_token(
    domain: &Domain,
    keys: &KeySet,
    client: &Client,
    sub: &str,
    sid: Option<&str>,
    now: i64,
) -> OAuthResult<String> {
    let key = keys
        .signing_key(client.id_token_alg, now)
        .ok_or_else(|| OAuthError::server_error("no active key for the logout token algorithm"))?;
    let mut c = Map::new();
    c.insert("iss".into(), json!(domain.issuer));
    c.insert("sub".into(), json!(sub));
    c.insert("aud".into(), json!(client.id));
    c.insert("iat".into(), json!(now));
    c.insert("exp".into(), json!(now + LOGOUT_TOKEN_LIFETIME));
    c.insert("jti".into(), json!(random_id()));
    c.insert("events".into(), json!({ BACKCHANNEL_EVENT: {} }));
    if let Some(sid) = sid {
        c.insert("sid".into(), json!(sid));
    }
    jws::sign(key, "logout+jwt", &c).map_err(OAuthError::server_error)
}

/// When to try again after `attempts` failed attempts; None once the budget is spent.
pub fn next_attempt(attempts: i64, now: i64) -> Option<i64> {
    if attempts >= MAX_DELIVERY_ATTEMPTS {
        return None;
    }
    let doublings = u32::try_from((attempts - 1).clamp(0, 20)).unwrap_or(20);
    Some(now + RETRY_BASE.saturating_mul(1_i64 << doublings).min(RETRY_MAX))
}

/// Back-Channel Logout 1.0 s2.5: queues a logout for the client, when it registered an endpoint
/// (and, when it requires `sid`, only with one).
async fn queue_backchannel<S: OAuthStore>(
    store: &S,
    domain: &Domain,
    client_id: &str,
    sub: &str,
    sid: Option<&str>,
    now: i64,
) -> OAuthResult<bool> {
    match delivery(domain, client_id, sub, sid, random_id(), now) {
        Some(d) => Ok(store.enqueue_logout(&d).await?),
        None => Ok(false),
    }
}

/// The back-channel logout telling `client_id` that `session` ended, when it registered an
/// endpoint: its id is the session's and the client's, so that it is queued once however often
/// the end is written (a retry, two sign-outs at once). A session once ended never lives again,
/// so no later logout of that session and client is ever lost to it.
fn session_end_delivery(
    domain: &Domain,
    client_id: &str,
    session: &SessionRow,
    now: i64,
) -> Option<DeliveryRow> {
    let id = format!(
        "end:{}",
        sha256_b64(&format!("{}\n{}\n{client_id}", domain.name, session.sid))
    );
    delivery(domain, client_id, &session.user_id, Some(&session.sid), id, now)
}

/// Delivery `id` of a back-channel logout to `client_id`, due now, when it has a
/// `backchannel_logout_uri` (and `sid` when it requires one).
fn delivery(
    domain: &Domain,
    client_id: &str,
    sub: &str,
    sid: Option<&str>,
    id: String,
    now: i64,
) -> Option<DeliveryRow> {
    let client = domain.client(client_id)?;
    if client.backchannel_logout_uri.is_none()
        || (client.backchannel_logout_session_required && sid.is_none())
    {
        return None;
    }
    Some(DeliveryRow {
        id,
        domain: domain.name.clone(),
        client_id: client_id.to_string(),
        sub: sub.to_string(),
        sid: sid.map(str::to_string),
        attempts: 0,
        next_attempt_at: now,
        claimed_until: 0,
        created_at: now,
        delivered_at: None,
        failed_at: None,
        last_error: None,
    })
}

/// Closes the codes session `sid` approved, of one client or of all (""): those not redeemed
/// yet can no longer be, and the access tokens redeemed from them outside a refresh-token family
/// are revoked (a JWT by its jti, an opaque token by its row).
async fn close_codes<S: OAuthStore>(
    store: &S,
    domain: &Domain,
    sid: &str,
    client_id: &str,
    now: i64,
) -> OAuthResult<()> {
    for (jti, client, expires_at) in store
        .close_session_codes(&domain.name, sid, client_id, now)
        .await?
    {
        store.revoke_jti(&domain.name, &jti, &client, expires_at).await?;
        store.revoke_tokens_by_jti(&domain.name, &jti, now).await?;
    }
    Ok(())
}

/// Ends a session: revokes the refresh-token families bound to it (offline ones stay) with their
/// access tokens and closes its codes (the access tokens redeemed from them without a family are
/// revoked, and those not redeemed yet can no longer be); then marks it ended and queues the
/// back-channel logouts to the clients it served, in one commit; and when this call ended it,
/// does it all once more for what a request of the session wrote meanwhile (each side reads the
/// other's writes after its own). The end is written last, so a failure on the way leaves the
/// session to be signed out again (its cookie, the admin API and "sign out everywhere" still find
/// it) and the retry finishes the work; and the clients are told only once the session has
/// ended. Returns the clients (for the front-channel iframes) and whether deliveries were queued.
pub async fn end_session<S: OAuthStore>(
    store: &S,
    domain: &Domain,
    session: &SessionRow,
    now: i64,
) -> OAuthResult<(Vec<String>, bool)> {
    revoke_session_grants(store, domain, session, now).await?;
    let clients = store.session_clients(&domain.name, &session.sid).await?;
    let told: Vec<DeliveryRow> = clients
        .iter()
        .filter_map(|c| session_end_delivery(domain, c, session, now))
        .collect();
    let (ended, mut queued) = store.end_session(&domain.name, &session.sid, now, &told).await?;
    if !ended {
        return Ok((clients, queued));
    }
    revoke_session_grants(store, domain, session, now).await?;
    let clients = store.session_clients(&domain.name, &session.sid).await?;
    for c in &clients {
        if let Some(d) = session_end_delivery(domain, c, session, now) {
            queued |= store.enqueue_logout(&d).await?;
        }
    }
    Ok((clients, queued))
}

/// What ending `session` revokes ([`end_session`]); it may run more than once.
async fn revoke_session_grants<S: OAuthStore>(
    store: &S,
    domain: &Domain,
    session: &SessionRow,
    now: i64,
) -> OAuthResult<()> {
    for (family, client_id) in store.session_families(&domain.name, &session.sid, false).await? {
        revoke_family_in(store, domain, &family, &client_id, now).await?;
    }
    close_codes(store, domain, &session.sid, "", now).await
}

/// Signs the user out everywhere: ends every session not ended yet (idle ones too: their
/// clients are told as well) as [`end_session`] does, then revokes
/// every remaining family of theirs, offline ones included (nothing they granted keeps working).
/// Also what comes around a user disabled or given a new password (the admin API, the CLI, a
/// reload: [`around_credential_change`]), so that the relying parties are told.
/// Returns the (sid, client_id) pairs of the ended sessions (for front-channel logout) and
/// whether back-channel logouts were queued.
pub async fn end_all_sessions<S: OAuthStore>(
    store: &S,
    domain: &Domain,
    user_id: &str,
    now: i64,
) -> OAuthResult<(Vec<(String, String)>, bool)> {
    let mut queued = false;
    let mut served = Vec::new();
    for s in store.user_sessions(&domain.name, user_id, now, true).await? {
        let (clients, q) = end_session(store, domain, &s, now).await?;
        queued |= q;
        served.extend(clients.into_iter().map(|c| (s.sid.clone(), c)));
    }
    for (family, client_id) in store.user_families(&domain.name, user_id, None).await? {
        revoke_family_in(store, domain, &family, &client_id, now).await?;
    }
    Ok((served, queued))
}

/// Stores a change to a user, `write`; when it ends the sign-ins of `ending` (a new password, a
/// disabled account), signs that user out everywhere before it and again after it (`None`: a
/// change that ends nothing, only written). Before: a change whose
/// sign-out failed is not stored, so a retry, which finds the user as they were, signs out again
/// (a retry that found the change made would see nothing to end). After: a sign-in whose
/// password check read the old hash writes its session or family and then reads the user again
/// (`oauth::password::still_valid`), so either the second sign-out finds what it wrote, or that
/// read sees the change and undoes it. Returns `write`'s result and whether back-channel
/// logouts were queued.
pub async fn around_credential_change<S: OAuthStore, T>(
    store: &S,
    domain: &Domain,
    ending: Option<&str>,
    now: i64,
    write: impl Future<Output = crate::store::StoreResult<T>>,
) -> OAuthResult<(T, bool)> {
    let Some(user_id) = ending else {
        return Ok((write.await?, false));
    };
    let (_, before) = end_all_sessions(store, domain, user_id, now).await?;
    let written = write.await?;
    let (_, after) = end_all_sessions(store, domain, user_id, now).await?;
    Ok((written, before || after))
}

/// What withdrawing a consent did.
#[derive(Debug, Clone, Copy)]
pub struct Withdrawn {
    /// There was a consent.
    pub existed: bool,
    /// Refresh-token families revoked.
    pub families: usize,
    /// Back-channel logouts were queued.
    pub queued: bool,
}

/// Withdraws a consent: deletes it, revokes the user's families for that client (offline ones
/// too), closes the client's codes in the user's live sessions, queues a back-channel logout for
/// each of the user's sessions the client served (or one by `sub` alone when there is none and
/// the client accepts that), and audits it with
/// `actor` (`user:<id>` from the account page, `client:<id>` from the admin API) and the
/// request's id. When the user had neither a consent, a token family nor a session with the
/// client, nothing is done: no logout is queued (a form naming any client would otherwise send
/// the user's `sub` to it), nothing audited.
pub async fn withdraw_consent<S: OAuthStore>(
    store: &S,
    domain: &Domain,
    user_id: &str,
    client_id: &str,
    actor: &str,
    request_id: &str,
    now: i64,
) -> OAuthResult<Withdrawn> {
    let existed = store.delete_consent(&domain.name, user_id, client_id).await?;
    let families = store
        .user_families(&domain.name, user_id, Some(client_id))
        .await?;
    for (family, c) in &families {
        revoke_family_in(store, domain, family, c, now).await?;
    }
    let sids = store.client_sids(&domain.name, user_id, client_id, now).await?;
    // Nothing the user ever gave this client (any client_id a form names): nothing to tell it,
    // nothing to audit.
    if !existed && families.is_empty() && sids.is_empty() {
        return Ok(Withdrawn {
            existed,
            families: 0,
            queued: false,
        });
    }
    let mut queued = false;
    if sids.is_empty() {
        queued |= queue_backchannel(store, domain, client_id, user_id, None, now).await?;
    }
    for sid in &sids {
        close_codes(store, domain, sid, client_id, now).await?;
        queued |= queue_backchannel(store, domain, client_id, user_id, Some(sid), now).await?;
    }
    let mut event = AuditEvent::new("consent.withdrawn", &domain.name, Outcome::Success)
        .user(user_id)
        .client(client_id)
        .request(request_id)
        .details(serde_json::json!({ "refresh_families_revoked": families.len() }));
    event.actor = actor.to_string();
    audit::record(store, now, event).await;
    Ok(Withdrawn {
        existed,
        families: families.len(),
        queued,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_and_stop() {
        assert_eq!(next_attempt(1, 100), Some(130));
        assert_eq!(next_attempt(2, 100), Some(160));
        assert_eq!(next_attempt(3, 100), Some(220));
        assert_eq!(next_attempt(MAX_DELIVERY_ATTEMPTS - 1, 0), Some(RETRY_BASE << 6));
        assert_eq!(next_attempt(MAX_DELIVERY_ATTEMPTS, 100), None);
    }
}
