//! Access tokens: RFC 9068 JWTs signed with the domain's current key, or opaque random values
//! stored as SHA-256.

use serde_json::{Map, Value, json};

use crate::config::TokenFormat;
use crate::crypto::jws;
use crate::crypto::secrets::{random_id, random_token, sha256_b64};
use crate::domain::{Client, Domain};
use crate::error::{OAuthError, OAuthResult};
use crate::oauth::verified_jwts::{Verified, VerifiedJwts};
use crate::oauth::{Ctx, mtls};
use crate::store::{OAuthStore, TokenRow, TokenStore};

/// Longest lifetime of an access token of a client with administrator roles (seconds).
pub const ADMIN_ACCESS_TOKEN_MAX: i64 = 3600;
/// Longest lifetime of a refresh-token family of a client with administrator roles (seconds).
pub const ADMIN_REFRESH_TOKEN_MAX: i64 = 7 * 86400;
/// The access-token claim carrying the administrator roles of a client_credentials token.
pub const ADMIN_ROLES_CLAIM: &str = "admin_roles";

/// What to put in an access token.
pub struct AccessTokenSpec<'a> {
    /// The client it is issued to.
    pub client: &'a Client,
    /// Its subject: the user's id, or the client_id for client_credentials.
    pub sub: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Audiences.
    pub audiences: Vec<String>,
    /// Custom claims.
    pub extra: Map<String, Value>,
    /// Upper bound on the lifetime (the remaining session lifetime for session-bound grants).
    pub max_lifetime: Option<i64>,
}

/// An issued access token.
#[derive(Debug)]
pub struct IssuedToken {
    /// The token value, sent once to the client.
    pub value: String,
    /// Seconds until it expires.
    pub expires_in: i64,
    /// Its unique id; for an opaque token, its hash (the stored key).
    pub jti: String,
}

/// Lifetime: the client's, else the shortest of its audiences' resource servers, else the domain's.
pub fn access_token_lifetime(domain: &Domain, client: &Client, audiences: &[String]) -> i64 {
    client.access_token_lifetime.unwrap_or_else(|| {
        audiences
            .iter()
            .filter_map(|a| domain.resource_server(a).and_then(|r| r.access_token_lifetime))
            .min()
            .unwrap_or(domain.access_token_lifetime)
    })
}

/// Format: the client's, else the first audience's resource server that sets one, else the domain's.
pub fn access_token_format(domain: &Domain, client: &Client, audiences: &[String]) -> TokenFormat {
    client.access_token_format.unwrap_or_else(|| {
        audiences
            .iter()
            .find_map(|a| domain.resource_server(a).and_then(|r| r.access_token_format))
            .unwrap_or(domain.access_token_format)
    })
}

/// The `aud` claim: a string for one audience, an array for several.
pub fn aud_value(audiences: &[String]) -> Value {
    match audiences {
        [one] => Value::String(one.clone()),
        many => json!(many),
    }
}

/// Issues an access token in the format configured for the client and audiences.
pub async fn issue_access_token<S: TokenStore>(
    ctx: &Ctx<'_, S>,
    spec: AccessTokenSpec<'_>,
) -> OAuthResult<IssuedToken> {
    let configured = access_token_lifetime(ctx.domain, spec.client, &spec.audiences);
    let mut lifetime = spec.max_lifetime.map_or(configured, |m| configured.min(m.max(1)));
    // Tokens of a client with administrator roles live at most an hour, whatever is configured.
    if !spec.client.admin_roles.is_empty() {
        lifetime = lifetime.min(ADMIN_ACCESS_TOKEN_MAX);
    }
    let format = access_token_format(ctx.domain, spec.client, &spec.audiences);
    let exp = ctx.now + lifetime;
    let scope = spec.scopes.join(" ");
    let mut extra = spec.extra;
    // RFC 8705 s3: a token requested over mutual TLS is bound to the client certificate.
    if let Some(certificate) = &ctx.peer.certificate {
        extra.insert(mtls::CNF.into(), mtls::confirmation(certificate));
    }
    match format {
        TokenFormat::Jwt => {
            let key = ctx
                .keys
                .signing_key(ctx.domain.access_token_alg, ctx.now)
                .ok_or_else(|| OAuthError::server_error("no active signing key"))?;
            let jti = random_id();
            // RFC 9068 s2.2: iss, exp, aud, sub, client_id, iat, jti; scope when granted.
            let mut claims = extra;
            claims.insert("iss".into(), json!(ctx.domain.issuer));
            claims.insert("sub".into(), json!(spec.sub));
            claims.insert("aud".into(), aud_value(&spec.audiences));
            claims.insert("exp".into(), json!(exp));
            claims.insert("iat".into(), json!(ctx.now));
            claims.insert("jti".into(), json!(jti));
            claims.insert("client_id".into(), json!(spec.client.id));
            if !scope.is_empty() {
                claims.insert("scope".into(), json!(scope));
            }
            let value = jws::sign(key, "at+jwt", &claims).map_err(OAuthError::server_error)?;
            Ok(IssuedToken {
                value,
                expires_in: lifetime,
                jti,
            })
        }
        TokenFormat::Opaque => {
            let value = random_token();
            // A stored token's jti is its hash: what revokes it by jti finds it by its key.
            let hash = sha256_b64(&value);
            let row = TokenRow {
                jti: hash.clone(),
                hash,
                domain: ctx.domain.name.clone(),
                kind: "access".into(),
                client_id: spec.client.id.clone(),
                sub: spec.sub,
                scope,
                aud: json!(spec.audiences).to_string(),
                claims: Value::Object(extra).to_string(),
                issued_at: ctx.now,
                expires_at: exp,
                revoked_at: None,
                family_id: None,
                used_at: None,
            };
            ctx.store.insert_token(&row).await?;
            Ok(IssuedToken {
                value,
                expires_in: lifetime,
                jti: row.jti,
            })
        }
    }
}

/// A token presented back to us, found valid (signature or store row) and unexpired.
#[derive(Debug, Clone)]
pub struct PresentedToken {
    /// `access` or `refresh`.
    pub kind: &'static str,
    /// True for JWTs (revocable by jti only).
    pub is_jwt: bool,
    /// SHA-256 of an opaque value.
    pub hash: Option<String>,
    /// The family of a refresh token.
    pub family_id: Option<String>,
    pub client_id: String,
    pub sub: String,
    pub scope: String,
    pub audiences: Vec<String>,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    /// Custom claims.
    pub extra: Map<String, Value>,
    /// True when `sub` names a user of the domain who is no longer active (disabled): the token
    /// is still found (it can be revoked) but is not honoured.
    pub user_disabled: bool,
}

const REGISTERED: &[&str] = &[
    "iss",
    "sub",
    "aud",
    "exp",
    "iat",
    "nbf",
    "jti",
    "client_id",
    "scope",
];

/// Finds a token of this domain: a JWT signed by one of its published keys with its issuer, or an
/// opaque token in its store. Expired, revoked, foreign and malformed tokens are None.
pub async fn find_live_token<S: OAuthStore>(
    ctx: &Ctx<'_, S>,
    token: &str,
) -> OAuthResult<Option<PresentedToken>> {
    if token.split('.').count() == 3 {
        let Some(t) = verify_own_jwt(ctx, token) else {
            return Ok(None);
        };
        let state = ctx.store.jwt_state(&ctx.domain.name, &t.jti, &t.sub).await?;
        if state.revoked {
            return Ok(None);
        }
        return Ok(Some(PresentedToken {
            user_disabled: state.user_disabled,
            ..t
        }));
    }
    let Some((row, user_disabled)) = ctx
        .store
        .find_token_and_user(&ctx.domain.name, &sha256_b64(token))
        .await?
    else {
        return Ok(None);
    };
    if row.revoked_at.is_some() || row.expires_at <= ctx.now {
        return Ok(None);
    }
    if row.kind == "refresh" && !refresh_is_live(ctx, &row).await? {
        return Ok(None);
    }
    let audiences: Vec<String> = serde_json::from_str(&row.aud).unwrap_or_default();
    let extra = match serde_json::from_str(&row.claims) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    Ok(Some(PresentedToken {
        kind: if row.kind == "refresh" {
            "refresh"
        } else {
            "access"
        },
        is_jwt: false,
        hash: Some(row.hash),
        family_id: row.family_id,
        client_id: row.client_id,
        sub: row.sub,
        scope: row.scope,
        audiences,
        iat: row.issued_at,
        exp: row.expires_at,
        jti: row.jti,
        extra,
        user_disabled,
    }))
}

/// A refresh token is live while unrotated and its family is: not revoked, unexpired, and for a
/// family that is not offline, its session still alive.
async fn refresh_is_live<S: OAuthStore>(ctx: &Ctx<'_, S>, row: &TokenRow) -> OAuthResult<bool> {
    if row.used_at.is_some() {
        return Ok(false);
    }
    let Some(id) = &row.family_id else {
        return Ok(false);
    };
    let Some(f) = ctx.store.find_family(&ctx.domain.name, id).await? else {
        return Ok(false);
    };
    if f.revoked_at.is_some() || f.expires_at <= ctx.now {
        return Ok(false);
    }
    if f.offline == 0 {
        return Ok(ctx
            .store
            .find_session_by_sid(&ctx.domain.name, &f.sid, ctx.now)
            .await?
            .is_some());
    }
    Ok(true)
}

/// Verifies a JWT access token of this domain (signature, issuer, type, expiry); no store lookups.
pub fn verify_own_jwt<S>(ctx: &Ctx<'_, S>, token: &str) -> Option<PresentedToken> {
    let digest = VerifiedJwts::digest(token);
    // Verified before: only what can change is checked again (expiry, the key still published,
    // the issuer of this domain).
    if let Some(v) = ctx.verified.get(&digest) {
        let live =
            v.token.exp > ctx.now && v.iss == ctx.domain.issuer && ctx.keys.verifying_key(&v.kid).is_some();
        return live.then(|| v.token.clone());
    }
    let t = verify_jwt_signature(ctx, token)?;
    ctx.verified.insert(
        digest,
        Verified {
            token: t.0.clone(),
            kid: t.1,
            iss: ctx.domain.issuer.clone(),
        },
    );
    Some(t.0)
}

/// [`verify_own_jwt`] without the cache; also returns the kid of the key that verified.
fn verify_jwt_signature<S>(ctx: &Ctx<'_, S>, token: &str) -> Option<(PresentedToken, String)> {
    let header = jws::peek_header(token).ok()?;
    if !header
        .typ
        .as_deref()
        .is_some_and(|t| t.eq_ignore_ascii_case("at+jwt"))
    {
        return None;
    }
    let kid = header.kid?;
    let key = ctx.keys.verifying_key(&kid)?;
    let mut claims = jws::verify(token, &key).ok()?;
    if claims.get("iss").and_then(Value::as_str) != Some(ctx.domain.issuer.as_str()) {
        return None;
    }
    let exp = claims.get("exp").and_then(Value::as_i64)?;
    if exp <= ctx.now {
        return None;
    }
    let audiences = match claims.get("aud") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
        _ => Vec::new(),
    };
    let text =
        |c: &Map<String, Value>, k: &str| c.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
    let t = PresentedToken {
        kind: "access",
        is_jwt: true,
        hash: None,
        family_id: None,
        client_id: text(&claims, "client_id"),
        sub: text(&claims, "sub"),
        scope: text(&claims, "scope"),
        audiences,
        iat: claims.get("iat").and_then(Value::as_i64).unwrap_or_default(),
        exp,
        jti: text(&claims, "jti"),
        extra: Map::new(),
        user_disabled: false,
    };
    if t.jti.is_empty() || t.client_id.is_empty() {
        return None;
    }
    claims.retain(|k, _| !REGISTERED.contains(&k.as_str()));
    Some((PresentedToken { extra: claims, ..t }, kid))
}
