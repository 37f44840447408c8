//! Access tokens: RFC 9068 JWTs signed with the domain's current key, or opaque random values
//! stored as SHA-256 (after their issue time; see [`new_opaque_token`]).

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

/// Hex digits of an opaque access token's issue time, before its random part.
const TIME_PREFIX: usize = 8;
/// Length of an opaque access token: the time prefix, then 256 random bits in base64url.
const OPAQUE_LEN: usize = TIME_PREFIX + 43;

/// A new opaque access token: its issue time in seconds (8 lowercase hex digits), then 256 random
/// bits (43 base64url characters), all in base64url's alphabet.
///
/// The prefix makes the stored keys ([`stored_key`]) follow the issue order, so an insert adds to
/// the end of the table's key index instead of writing a page at a random place in it: on SQLite
/// that page is what each token costs the log copy and its sync
/// (`bench/results/2026-12-03-ordered-token-keys.txt`). It tells the holder no more than
/// introspection does (`iat`); guessing a token stays guessing 256 random bits (RFC 6749 s10.10).
pub fn new_opaque_token(now: i64) -> String {
    format!("{:08x}{}", now.clamp(0, u32::MAX.into()), random_token())
}

/// The key in the store of an opaque access token or a refresh token: the SHA-256 of the token
/// (base64url), after the issue-time prefix of a token from [`new_opaque_token`]. Tokens without
/// one (refresh tokens, and opaque access tokens issued before the prefix) are keyed by the hash
/// alone; nothing of a token's random part is stored.
pub fn stored_key(token: &str) -> String {
    match token.get(..TIME_PREFIX) {
        Some(prefix)
            if token.len() == OPAQUE_LEN
                && prefix.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) =>
        {
            format!("{prefix}{}", sha256_b64(token))
        }
        _ => sha256_b64(token),
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
            let value = new_opaque_token(ctx.now);
            // A stored token's jti is its key: what revokes it by jti finds it by its key.
            let hash = stored_key(&value);
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
        .find_token_and_user(&ctx.domain.name, &stored_key(token))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_opaque_token_is_its_issue_time_then_256_random_bits() {
        let t = new_opaque_token(0x6b0f_1234);
        assert_eq!(t.len(), OPAQUE_LEN);
        assert_eq!(&t[..TIME_PREFIX], "6b0f1234");
        assert!(
            t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{t}"
        );
        assert_ne!(t[TIME_PREFIX..], new_opaque_token(0x6b0f_1234)[TIME_PREFIX..]);
        // Out of range clocks are clamped, never a longer or shorter token.
        assert_eq!(&new_opaque_token(-5)[..TIME_PREFIX], "00000000");
        assert_eq!(&new_opaque_token(i64::MAX)[..TIME_PREFIX], "ffffffff");
        assert_eq!(new_opaque_token(i64::MAX).len(), OPAQUE_LEN);
    }

    #[test]
    fn stored_keys_follow_the_issue_order_and_keep_only_a_hash_of_the_random_part() {
        let times = [
            0,
            9,
            10,
            0xff,
            0x100,
            0x0fff_ffff,
            0x1000_0000,
            0x6b0f_1234,
            0x6b0f_1235,
        ];
        let keys: Vec<String> = times.iter().map(|t| stored_key(&new_opaque_token(*t))).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{keys:?}");
        let t = new_opaque_token(0x6b0f_1234);
        let key = stored_key(&t);
        assert_eq!(key, format!("6b0f1234{}", sha256_b64(&t)));
        assert!(!key.contains(&t[TIME_PREFIX..TIME_PREFIX + 8]), "{key}");
    }

    #[test]
    fn tokens_without_a_time_prefix_are_keyed_by_their_hash() {
        // A refresh token, or an opaque access token issued before the prefix.
        let old = random_token();
        assert_eq!(stored_key(&old), sha256_b64(&old));
        // The right length but not a prefix of lowercase hex digits: the hash alone, as for
        // anything else a client may send.
        for odd in [
            format!("6B0F1234{}", random_token()),
            format!("6b0f123g{}", random_token()),
            format!("é6b0f12{}", random_token()),
            format!("6b0f123é{}", &random_token()[..42]),
        ] {
            assert_eq!(stored_key(&odd), sha256_b64(&odd), "{odd}");
        }
        assert_eq!(stored_key(""), sha256_b64(""));
    }
}
