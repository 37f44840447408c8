//! The administration API's rules, free of HTTP types: who may call it (access tokens of the
//! domain carrying administrator roles), which role reaches which resource, pagination, and the
//! operations on users, sessions, consents, clients, keys and audit events.
//!
//! Role matrix (`Identity Domain Administrator` reaches everything):
//!
//! | resource      | roles besides Identity Domain Administrator |
//! |---------------|---------------------------------------------|
//! | Users         | User Administrator                          |
//! | Sessions      | User Administrator                          |
//! | OAuthConsents | Consent Administrator                       |
//! | Keys          | Security Administrator                      |
//! | Events        | Security Administrator                      |
//! | Clients       | Application Administrator                   |

use std::collections::HashMap;

use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::audit::{self, AuditEvent, Outcome};
use crate::config::AdminRole;
use crate::crypto::secrets::random_id;
use crate::domain::Client;
use crate::error::{ErrorCode, OAuthError, OAuthResult};
use crate::oauth::Ctx;
use crate::oauth::logout;
use crate::oauth::mtls;
use crate::oauth::tokens::{ADMIN_ROLES_CLAIM, find_live_token};
use crate::store::admin::{ConsentRow, EventFilter, EventRow};
use crate::store::signin::SessionRow;
use crate::store::{OAuthStore, StoreError, UserRow};

/// Path prefix of the administration API under an issuer.
pub const PREFIX: &str = "/admin/v1";
/// Default page size.
pub const DEFAULT_COUNT: i64 = 50;
/// Largest page size.
pub const MAX_COUNT: i64 = 200;

/// The resources of the administration API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// `/Users`.
    Users,
    /// `/Sessions`.
    Sessions,
    /// `/OAuthConsents`.
    OAuthConsents,
    /// `/Clients` (read only).
    Clients,
    /// `/Keys`.
    Keys,
    /// `/Events`.
    Events,
}

/// True when `role` reaches `resource` (the matrix of the module comment).
pub fn allows(role: AdminRole, resource: Resource) -> bool {
    use AdminRole as R;
    use Resource as S;
    matches!(
        (role, resource),
        (R::IdentityDomainAdministrator, _)
            | (R::UserAdministrator, S::Users | S::Sessions)
            | (R::ConsentAdministrator, S::OAuthConsents)
            | (R::SecurityAdministrator, S::Keys | S::Events)
            | (R::ApplicationAdministrator, S::Clients)
    )
}

/// The authenticated caller of the administration API.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The client whose token was presented.
    pub client_id: String,
    /// Its roles: those in the token that its configuration still grants.
    pub roles: Vec<AdminRole>,
}

/// RFC 6750 s3.1: the error of every token that cannot be used here.
fn invalid_token() -> OAuthError {
    OAuthError::invalid_token("the access token is invalid, expired or revoked")
}

/// Checks a bearer token for `resource`: a live access token of this domain, meant for the
/// domain itself (`aud` = the issuer), issued by client_credentials to a still enabled client, carrying a role that reaches the resource and
/// that the client's configuration still grants. 401 invalid_token otherwise, 403
/// insufficient_scope when no role reaches the resource.
pub async fn authorize<S: OAuthStore>(
    ctx: &Ctx<'_, S>,
    token: &str,
    resource: Resource,
) -> OAuthResult<Caller> {
    let t = find_live_token(ctx, token)
        .await?
        .filter(|t| !t.user_disabled)
        .ok_or_else(invalid_token)?;
    if t.kind != "access" {
        return Err(invalid_token().with_cause("a refresh token was presented"));
    }
    // RFC 9068 s4 / RFC 8707: only a token meant for this domain itself (aud = the issuer, and
    // nothing else) serves here; one meant for a resource server is not replayed at the admin API.
    if t.audiences.as_slice() != [ctx.domain.issuer.as_str()] {
        return Err(invalid_token().with_cause("the token is meant for another audience"));
    }
    // RFC 8705 s3: a certificate-bound token is accepted only with the certificate it is bound to.
    if !mtls::binding_holds(&t.extra, ctx.peer.certificate.as_deref()) {
        return Err(
            invalid_token().with_cause("the token is bound to a client certificate that was not presented")
        );
    }
    let client = ctx
        .domain
        .client(&t.client_id)
        .filter(|c| c.enabled)
        .ok_or_else(|| invalid_token().with_cause("the token's client is unknown or disabled"))?;
    let claimed: Vec<AdminRole> = t
        .extra
        .get(ADMIN_ROLES_CLAIM)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .filter_map(AdminRole::from_name)
                .collect()
        })
        .unwrap_or_default();
    // Only the client's own token (sub = client_id) carries its roles.
    let roles: Vec<AdminRole> = if t.sub == client.id {
        claimed
            .into_iter()
            .filter(|r| client.admin_roles.contains(r))
            .collect()
    } else {
        Vec::new()
    };
    if !roles.iter().any(|r| allows(*r, resource)) {
        return Err(OAuthError::new(
            ErrorCode::InsufficientScope,
            "the token carries no administrator role for this resource",
        ));
    }
    Ok(Caller {
        client_id: client.id.clone(),
        roles,
    })
}

/// A page request: `startIndex` (1-based, default 1) and `count` (default 50, at most 200).
#[derive(Debug, Clone, Copy)]
pub struct Paging {
    /// 1-based index of the first item.
    pub start_index: i64,
    /// Items per page.
    pub count: i64,
}

impl Paging {
    /// Reads `startIndex` and `count` from query parameters.
    pub fn from_query(q: &HashMap<String, String>) -> OAuthResult<Paging> {
        let number = |name: &str, default: i64| -> OAuthResult<i64> {
            match q.get(name) {
                None => Ok(default),
                Some(v) => v
                    .parse::<i64>()
                    .map_err(|_| OAuthError::invalid_request(format!("{name} must be an integer"))),
            }
        };
        let start_index = number("startIndex", 1)?;
        let count = number("count", DEFAULT_COUNT)?;
        if start_index < 1 {
            return Err(OAuthError::invalid_request("startIndex must be at least 1"));
        }
        if !(0..=MAX_COUNT).contains(&count) {
            return Err(OAuthError::invalid_request(format!(
                "count must be between 0 and {MAX_COUNT}"
            )));
        }
        Ok(Paging { start_index, count })
    }

    /// Rows to skip.
    pub fn offset(&self) -> i64 {
        self.start_index - 1
    }

    /// The list response: `totalResults`, `startIndex`, `itemsPerPage`, `Resources`.
    pub fn page(&self, items: Vec<Value>, total: i64) -> Value {
        json!({
            "totalResults": total,
            "startIndex": self.start_index,
            "itemsPerPage": items.len(),
            "Resources": items,
        })
    }

    /// Pages a list held in memory.
    pub fn slice(&self, all: Vec<Value>) -> Value {
        let total = i64::try_from(all.len()).unwrap_or(i64::MAX);
        let skip = usize::try_from(self.offset()).unwrap_or(usize::MAX);
        let take = usize::try_from(self.count).unwrap_or(0);
        self.page(all.into_iter().skip(skip).take(take).collect(), total)
    }
}

fn not_found(what: &str) -> OAuthError {
    OAuthError::new(ErrorCode::NotFound, format!("no such {what}"))
}

fn event(ctx: &Ctx<'_, impl Sized>, caller: &Caller, kind: &'static str) -> AuditEvent {
    AuditEvent::new(kind, &ctx.domain.name, Outcome::Success)
        .by_client(&caller.client_id)
        .request(&ctx.peer.request_id)
}

// ----- Users -----

/// The public view of a user: never its password hash.
pub fn user_json(u: &UserRow) -> Value {
    json!({
        "id": u.id,
        "username": u.username,
        "status": u.status,
        "source": u.source,
        "readOnly": u.source == "config",
        "claims": serde_json::from_str::<Value>(&u.claims).unwrap_or_else(|_| json!({})),
        "created": u.created_at,
        "updated": u.updated_at,
    })
}

async fn user_by_id<S: OAuthStore>(ctx: &Ctx<'_, S>, id: &str) -> OAuthResult<UserRow> {
    ctx.store
        .find_user_by_id(&ctx.domain.name, id)
        .await?
        .ok_or_else(|| not_found("user"))
}

/// Users declared in configuration are changed there, not here.
fn writable(u: &UserRow) -> OAuthResult<()> {
    if u.source == "config" {
        return Err(OAuthError::new(
            ErrorCode::Forbidden,
            "this user is declared in configuration and is read-only here",
        ));
    }
    Ok(())
}

/// The longest username and password accepted (characters; a username also appears in logs and
/// audit events).
pub const MAX_USERNAME_CHARS: usize = 255;
pub const MAX_PASSWORD_CHARS: usize = 1024;
/// The shortest password a user may be given here or with the CLI (NIST SP 800-63B s5.1.1.2: at
/// least 8 characters for a password the person chose).
pub const MIN_PASSWORD_CHARS: usize = 8;

/// Why `password` cannot be a user's, if it cannot: its length in characters.
pub fn password_refusal(password: &str) -> Option<String> {
    let n = password.chars().count();
    if n < MIN_PASSWORD_CHARS {
        Some(format!(
            "password must be at least {MIN_PASSWORD_CHARS} characters"
        ))
    } else if n > MAX_PASSWORD_CHARS {
        Some(format!(
            "password must be at most {MAX_PASSWORD_CHARS} characters"
        ))
    } else {
        None
    }
}

/// Refuses a body with members other than `allowed`: a misspelt member would otherwise be
/// ignored, and the request answered as if it had been done.
fn only_members(body: &Value, allowed: &[&str]) -> OAuthResult<()> {
    let Some(m) = body.as_object() else {
        return Err(OAuthError::invalid_request("the body must be a JSON object"));
    };
    only_names(m.keys().map(String::as_str), "member", allowed)
}

/// Refuses the first of `names` (members of a body, parameters of a query: `what`) that is not
/// in `allowed`: a misspelt one would otherwise be ignored and the request answered as if it
/// had been heeded.
pub fn only_names<'a>(
    mut names: impl Iterator<Item = &'a str>,
    what: &str,
    allowed: &[&str],
) -> OAuthResult<()> {
    match names.find(|k| !allowed.contains(k)) {
        Some(k) => Err(OAuthError::invalid_request(format!(
            "unknown {what} {k}: this request takes {}",
            allowed.join(", ")
        ))),
        None => Ok(()),
    }
}

/// Invisible characters that change how a name reads: Unicode's Default_Ignorable_Code_Point
/// (DerivedCoreProperties.txt: soft hyphen, combining grapheme joiner, the Arabic letter mark,
/// Hangul fillers, Khmer and Mongolian invisibles, zero-width and bidirectional controls,
/// variation selectors, the byte-order mark, shorthand format controls, musical format controls,
/// tags), the interlinear annotation controls, and the line and paragraph separators.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{ad}' | '\u{34f}' | '\u{61c}' | '\u{115f}'..='\u{1160}' | '\u{17b4}'..='\u{17b5}'
        | '\u{180b}'..='\u{180f}' | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}'
        | '\u{2060}'..='\u{206f}' | '\u{3164}' | '\u{fe00}'..='\u{fe0f}' | '\u{feff}' | '\u{ffa0}'
        | '\u{fff0}'..='\u{fffb}' | '\u{1bca0}'..='\u{1bca3}' | '\u{1d173}'..='\u{1d17a}'
        | '\u{e0000}'..='\u{e0fff}')
}

fn username_of(body: &Value) -> OAuthResult<&str> {
    let u = match body.get("username") {
        None => return Err(OAuthError::invalid_request("username is required")),
        Some(Value::String(u)) => u.trim(),
        Some(_) => return Err(OAuthError::invalid_request("username must be a string")),
    };
    if u.is_empty() || u.chars().any(|c| c.is_control() || is_invisible(c)) {
        return Err(OAuthError::invalid_request(
            "username must be non-empty printable text, without invisible characters",
        ));
    }
    if u.chars().count() > MAX_USERNAME_CHARS {
        return Err(OAuthError::invalid_request(format!(
            "username must be at most {MAX_USERNAME_CHARS} characters"
        )));
    }
    Ok(u)
}

fn password_of(body: &Value) -> OAuthResult<Zeroizing<String>> {
    let p = match body.get("password") {
        None => return Err(OAuthError::invalid_request("password is required")),
        Some(Value::String(p)) => p,
        Some(_) => return Err(OAuthError::invalid_request("password must be a string")),
    };
    if let Some(why) = password_refusal(p) {
        return Err(OAuthError::invalid_request(why));
    }
    Ok(Zeroizing::new(p.clone()))
}

/// The `claims` member of a user's body: the claims a user declared in the file may have, with
/// their types (OpenID Connect Core s5.1: `email_verified` a boolean, `address` an object of
/// strings, `groups` strings...; not `sub` and `updated_at`, which come from the record), and
/// `attributes` for data of one's own. Each is checked on its own, so that the error names it. A
/// null claim is left out.
fn claims_of(body: &Value, username: &str) -> OAuthResult<Option<serde_json::Map<String, Value>>> {
    let claims = match body.get("claims") {
        None => return Ok(None),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(OAuthError::invalid_request("claims must be a JSON object")),
    };
    let mut out = serde_json::Map::new();
    for (name, value) in claims.iter().filter(|(_, v)| !v.is_null()) {
        let refused = |why: &str| OAuthError::invalid_request(format!("claims.{name}: {why}"));
        // Members of a file's user that are not claims.
        if ["username", "password_hash", "enabled"].contains(&name.as_str()) {
            return Err(refused(
                "not a claim (the username, password and status are set apart)",
            ));
        }
        if ["sub", "updated_at"].contains(&name.as_str()) {
            return Err(refused("set by the server from the user's record"));
        }
        let one = json!({ "username": username, name.as_str(): value });
        let checked = serde_json::from_value::<crate::config::UserConfig>(one).map_err(|e| {
            let e = e.to_string();
            // Not a member of a file's user at all (an unknown member within `address` is
            // that claim's own error).
            if e.starts_with(&format!("unknown field `{name}`")) {
                refused("not a claim a user has here; put data of your own in attributes")
            } else {
                refused(&e)
            }
        })?;
        if let Ok(Value::Object(mut m)) = serde_json::to_value(&checked) {
            m.remove("username");
            out.extend(m);
        }
    }
    Ok(Some(out))
}

/// Lists the domain's users, a page at a time (read from the store a page at a time).
pub async fn list_users<S: OAuthStore>(ctx: &Ctx<'_, S>, paging: Paging) -> OAuthResult<Value> {
    let (users, total) = ctx
        .store
        .list_users(&ctx.domain.name, paging.count, paging.offset())
        .await?;
    Ok(paging.page(users.iter().map(user_json).collect(), total))
}

/// One user.
pub async fn get_user<S: OAuthStore>(ctx: &Ctx<'_, S>, id: &str) -> OAuthResult<Value> {
    Ok(user_json(&user_by_id(ctx, id).await?))
}

/// Creates a store-managed user from `{"username", "password", "claims"?}`.
pub async fn create_user<S: OAuthStore>(
    ctx: &Ctx<'_, S>,
    caller: &Caller,
    body: &Value,
) -> OAuthResult<Value> {
    only_members(body, &["username", "password", "claims"])?;
    let username = username_of(body)?;
    let password = password_of(body)?;
    let claims = claims_of(body, username)?.unwrap_or_default();
    let hash = ctx
        .hasher
        .hash(password)
        .await
        .map_err(OAuthError::server_error)?;
    let row = UserRow {
        id: random_id(),
        domain: ctx.domain.name.clone(),
        username: username.to_string(),
        password_hash: Some(hash),
        status: "active".into(),
        claims: Value::Object(claims).to_string(),
        source: "store".into(),
        config_hash: None,
        created_at: ctx.now,
        updated_at: ctx.now,
    };
    match ctx.store.insert_user(&row).await {
        Ok(()) => {}
        Err(StoreError::Conflict(_)) => {
            return Err(OAuthError::new(
                ErrorCode::Conflict,
                "a user with this username exists",
            ));
        }
        Err(e) => return Err(e.into()),
    }
    audit::record(
        ctx.store,
        ctx.now,
        event(ctx, caller, "admin.user.created")
            .user(&row.id)
            .details(json!({"username": row.username})),
    )
    .await;
    Ok(user_json(&row))
}

/// Updates a store-managed user from `{"claims"?, "status"?: "active" | "disabled"}`; disabling
/// signs the user out everywhere. The user, and whether back-channel logouts were queued.
pub async fn update_user<S: OAuthStore>(
    ctx: &Ctx<'_, S>,
    caller: &Caller,
    id: &str,
    body: &Value,
) -> OAuthResult<(Value, bool)> {
    only_members(body, &["claims", "status"])?;
    if body.get("claims").is_none() && body.get("status").is_none() {
        return Err(OAuthError::invalid_request(
            "nothing to change: give claims, status or both",
        ));
    }
    let u = user_by_id(ctx, id).await?;
    writable(&u)?;
    let status = match body.get("status") {
        None => None,
        Some(Value::String(s)) if s == "active" || s == "disabled" => Some(s.clone()),
        Some(_) => {
            return Err(OAuthError::invalid_request(
                "status must be \"active\" or \"disabled\"",
            ));
        }
    };
    let claims = claims_of(body, &u.username)?;
    let d = &ctx.domain.name;
    let mut changed = Vec::new();
    // Claims first, then the status. A status change that fails after the claims were written is
    // audited as what it is: the claims changed, the status did not (outcome failure).
    let written: OAuthResult<bool> = async {
        let mut queued = false;
        if let Some(c) = &claims {
            ctx.store
                .set_user_claims(d, &u.id, &Value::Object(c.clone()).to_string(), ctx.now)
                .await?;
            changed.push("claims");
        }
        if let Some(s) = &status {
            let write = ctx.store.set_user_status(d, &u.username, s, ctx.now);
            let ending = (s != "active" && u.status == "active").then_some(u.id.as_str());
            queued = logout::around_credential_change(ctx.store, ctx.domain, ending, ctx.now, write)
                .await?
                .1;
            changed.push("status");
        }
        Ok(queued)
    }
    .await;
    let mut updated = event(ctx, caller, "admin.user.updated")
        .user(&u.id)
        .details(json!({"changed": changed, "status": status}));
    let queued = match written {
        Ok(queued) => queued,
        // Nothing was written: nothing to audit.
        Err(e) if changed.is_empty() => return Err(e),
        Err(e) => {
            updated.outcome = Outcome::Failure;
            audit::record(ctx.store, ctx.now, updated).await;
            return Err(e);
        }
    };
    audit::record(ctx.store, ctx.now, updated).await;
    Ok((get_user(ctx, id).await?, queued))
}

/// Sets a store-managed user's password from `{"password"}`, signing the user out everywhere
/// (`logout::around_credential_change`). True when back-channel logouts were queued.
pub async fn reset_password<S: OAuthStore>(
    ctx: &Ctx<'_, S>,
    caller: &Caller,
    id: &str,
    body: &Value,
) -> OAuthResult<bool> {
    only_members(body, &["password"])?;
    let u = user_by_id(ctx, id).await?;
    writable(&u)?;
    let password = password_of(body)?;
    let hash = ctx
        .hasher
        .hash(password)
        .await
        .map_err(OAuthError::server_error)?;
    let write = ctx
        .store
        .set_user_password(&ctx.domain.name, &u.id, &hash, ctx.now);
    let mut reset = event(ctx, caller, "admin.user.password_reset").user(&u.id);
    let (written, queued) =
        match logout::around_credential_change(ctx.store, ctx.domain, Some(&u.id), ctx.now, write).await {
            Ok(done) => done,
            Err(e) => {
                // The new password may be stored and the sign-out not finished (the second one
                // failed): audited as what it is when the store says so.
                let stored = ctx.store.find_user_by_id(&ctx.domain.name, &u.id).await;
                if let Ok(Some(now)) = stored
                    && now.password_hash.as_deref() == Some(hash.as_str())
                {
                    reset.outcome = Outcome::Failure;
                    reset = reset.details(json!({"password_set": true, "signed_out": "unfinished"}));
                    audit::record(ctx.store, ctx.now, reset).await;
                }
                return Err(e);
            }
        };
    // Deleted, or declared in configuration by a reload, since it was read: nothing written.
    if !written {
        return Err(not_found("user kept in the store"));
    }
    audit::record(ctx.store, ctx.now, reset).await;
    Ok(queued)
}

// ----- Sessions -----

fn session_json(s: &SessionRow) -> Value {
    json!({
        "id": s.sid,
        "userId": s.user_id,
        "authTime": s.auth_time,
        "created": s.created_at,
        "lastSeen": s.last_seen,
        "expires": s.expires_at,
        "userAgent": s.user_agent,
    })
}

/// Live sessions, of one user (`user` = user id) when given.
pub async fn list_sessions<S: OAuthStore>(
    ctx: &Ctx<'_, S>,
    user: Option<&str>,
    paging: Paging,
) -> OAuthResult<Value> {
    let (rows, total) = ctx
        .store
        .list_live_sessions(&ctx.domain.name, user, ctx.now, paging.count, paging.offset())
        .await?;
    Ok(paging.page(rows.iter().map(session_json).collect(), total))
}

/// Ends a live session as signing out does: its refresh-token families with their access
/// tokens, its codes, and back-channel logouts queued to the clients it served (true when some
/// were queued).
pub async fn revoke_session<S: OAuthStore>(
    ctx: &Ctx<'_, S>,
    caller: &Caller,
    sid: &str,
) -> OAuthResult<bool> {
    let s = ctx
        .store
        .find_session_by_sid(&ctx.domain.name, sid, ctx.now)
        .await?
        .ok_or_else(|| not_found("session"))?;
    let (_, queued) = logout::end_session(ctx.store, ctx.domain, &s, ctx.now).await?;
    audit::record(
        ctx.store,
        ctx.now,
        event(ctx, caller, "admin.session.revoked")
            .user(&s.user_id)
            .details(json!({"sid": s.sid})),
    )
    .await;
    Ok(queued)
}

// ----- OAuthConsents -----

fn consent_json(c: &ConsentRow) -> Value {
    json!({
        "userId": c.user_id,
        "clientId": c.client_id,
        "scope": c.scope,
        "created": c.created_at,
        "updated": c.updated_at,
    })
}

/// Consents, filtered by user id and/or client id.
pub async fn list_consents<S: OAuthStore>(
    ctx: &Ctx<'_, S>,
    user: Option<&str>,
    client: Option<&str>,
    paging: Paging,
) -> OAuthResult<Value> {
    let (rows, total) = ctx
        .store
        .list_consents(&ctx.domain.name, user, client, paging.count, paging.offset())
        .await?;
    Ok(paging.page(rows.iter().map(consent_json).collect(), total))
}

/// The consent of a user to a client.
pub async fn get_consent<S: OAuthStore>(ctx: &Ctx<'_, S>, user: &str, client: &str) -> OAuthResult<Value> {
    let (rows, _) = ctx
        .store
        .list_consents(&ctx.domain.name, Some(user), Some(client), 1, 0)
        .await?;
    rows.first().map(consent_json).ok_or_else(|| not_found("consent"))
}

/// Withdraws a consent and revokes the user's refresh-token families for that client (and the
/// access tokens issued in them); true when back-channel logouts were queued.
pub async fn delete_consent<S: OAuthStore>(
    ctx: &Ctx<'_, S>,
    caller: &Caller,
    user: &str,
    client: &str,
) -> OAuthResult<bool> {
    let (found, _) = ctx
        .store
        .list_consents(&ctx.domain.name, Some(user), Some(client), 1, 0)
        .await?;
    if found.is_empty() {
        return Err(not_found("consent"));
    }
    // The same withdrawal as the account page's: families revoked, back-channel logout queued.
    let w = logout::withdraw_consent(
        ctx.store,
        ctx.domain,
        user,
        client,
        &format!("client:{}", caller.client_id),
        &ctx.peer.request_id,
        ctx.now,
    )
    .await?;
    Ok(w.queued)
}

// ----- Clients -----

/// The public view of a client: never its secret or its hash.
pub fn client_json(c: &Client) -> Value {
    let mut grant_types: Vec<&String> = c.grant_types.iter().collect();
    grant_types.sort();
    json!({
        "id": c.id,
        "name": c.name,
        "enabled": c.enabled,
        "tokenEndpointAuthMethod": c.auth_method.as_str(),
        "hasSecret": c.secret.is_some(),
        "grantTypes": grant_types,
        "scopes": c.scopes,
        "redirectUris": c.redirect_uris,
        "postLogoutRedirectUris": c.post_logout_redirect_uris,
        "adminRoles": c.admin_roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
    })
}

/// The domain's clients, by client_id.
pub fn list_clients<S>(ctx: &Ctx<'_, S>, paging: Paging) -> Value {
    let mut clients: Vec<&std::sync::Arc<Client>> = ctx.domain.clients.values().collect();
    clients.sort_by(|a, b| a.id.cmp(&b.id));
    paging.slice(clients.into_iter().map(|c| client_json(c)).collect())
}

/// One client.
pub fn get_client<S>(ctx: &Ctx<'_, S>, id: &str) -> OAuthResult<Value> {
    ctx.domain
        .client(id)
        .map(|c| client_json(c))
        .ok_or_else(|| not_found("client"))
}

// ----- Events -----

fn event_json(e: &EventRow) -> Value {
    json!({
        "id": e.id.to_string(),
        "time": e.at,
        "type": e.kind,
        "actor": e.actor,
        "clientId": e.client_id,
        "userId": e.user_id,
        "outcome": e.outcome,
        "requestId": e.request_id,
        "details": serde_json::from_str::<Value>(&e.details).unwrap_or_else(|_| json!({})),
    })
}

/// Events, newest first, with the filters `type`, `user`, `client`, `since`, `until` (unix seconds).
pub async fn list_events<S: OAuthStore>(
    ctx: &Ctx<'_, S>,
    q: &HashMap<String, String>,
    paging: Paging,
) -> OAuthResult<Value> {
    let time = |name: &str| -> OAuthResult<Option<i64>> {
        q.get(name)
            .map(|v| {
                v.parse::<i64>()
                    .map_err(|_| OAuthError::invalid_request(format!("{name} must be unix seconds")))
            })
            .transpose()
    };
    let f = EventFilter {
        kind: q.get("type").cloned(),
        user_id: q.get("user").cloned(),
        client_id: q.get("client").cloned(),
        since: time("since")?,
        until: time("until")?,
    };
    let (rows, total) = ctx
        .store
        .list_events(&ctx.domain.name, &f, paging.count, paging.offset())
        .await?;
    Ok(paging.page(rows.iter().map(event_json).collect(), total))
}
