//! ID tokens (OpenID Connect Core s2, s3.1.3.6).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::crypto::jws;
use crate::domain::{Client, Domain};
use crate::error::{OAuthError, OAuthResult};
use crate::keyring::KeySet;
use crate::oauth::Ctx;

/// What an ID token says.
pub struct IdTokenSpec<'a> {
    pub client: &'a Client,
    pub sub: &'a str,
    pub nonce: Option<&'a str>,
    pub auth_time: i64,
    pub amr: Value,
    pub sid: &'a str,
    /// The access token issued with it, for `at_hash`.
    pub access_token: Option<&'a str>,
    /// User claims asked for in the ID token (`get_groups`, the `claims` parameter).
    pub extra: Map<String, Value>,
}

/// The authentication context class of a password sign-in, the only method so far: ISO/IEC
/// 29115 level 1, written as identity servers commonly do.
pub const ACR_PASSWORD: &str = "1";

/// OpenID Connect Core s3.1.3.6: the left half of the SHA-256 of the access token, base64url.
/// SHA-256 is the hash of RS256, PS256 and ES256 alike.
pub fn at_hash(access_token: &str) -> String {
    let digest = Sha256::digest(access_token.as_bytes());
    B64.encode(&digest[..16])
}

/// Signs an ID token with the client's registered algorithm.
pub fn sign<S>(ctx: &Ctx<'_, S>, spec: IdTokenSpec<'_>) -> OAuthResult<String> {
    let key = ctx
        .keys
        .signing_key(spec.client.id_token_alg, ctx.now)
        .ok_or_else(|| OAuthError::server_error("no active key for the ID token algorithm"))?;
    let mut c = spec.extra;
    c.insert("iss".into(), json!(ctx.domain.issuer));
    c.insert("sub".into(), json!(spec.sub));
    c.insert("aud".into(), json!(spec.client.id));
    c.insert("exp".into(), json!(ctx.now + ctx.domain.id_token_lifetime));
    c.insert("iat".into(), json!(ctx.now));
    c.insert("auth_time".into(), json!(spec.auth_time));
    if let Some(n) = spec.nonce {
        c.insert("nonce".into(), json!(n));
    }
    if let Some(at) = spec.access_token {
        c.insert("at_hash".into(), json!(at_hash(at)));
    }
    c.insert("acr".into(), json!(ACR_PASSWORD));
    c.insert("amr".into(), spec.amr);
    // A grant without a browser session (password grant) has no sid.
    if !spec.sid.is_empty() {
        c.insert("sid".into(), json!(spec.sid));
    }
    jws::sign(key, "JWT", &c).map_err(OAuthError::server_error)
}

/// The claims of an ID token this domain issued: its signature by a key of `keys`, its issuer,
/// and its type (our ID tokens are typed `JWT`; an access token, `at+jwt`, or a logout token,
/// `logout+jwt`, signed by the same keys is not one: RFC 8725 s3.11). Its expiry is not checked:
/// an expired ID token is still a valid hint. None when any of that fails.
pub fn issued_id_token(domain: &Domain, keys: &KeySet, token: &str) -> Option<Map<String, Value>> {
    let header = jws::peek_header(token).ok()?;
    if header
        .typ
        .as_deref()
        .is_some_and(|t| !t.eq_ignore_ascii_case("JWT"))
    {
        return None;
    }
    let key = keys.verifying_key(header.kid.as_deref()?)?;
    let claims = jws::verify(token, &key).ok()?;
    (claims.get("iss").and_then(Value::as_str) == Some(domain.issuer.as_str())).then_some(claims)
}

/// OpenID Connect Core s3.1.2.1 `id_token_hint`: the subject of an ID token this domain issued
/// to `client_id` ([`issued_id_token`], and its audience).
pub fn hint_subject(domain: &Domain, keys: &KeySet, client_id: &str, token: &str) -> OAuthResult<String> {
    let bad = || OAuthError::invalid_request("the id_token_hint is not an ID token issued to this client");
    let claims = issued_id_token(domain, keys, token).ok_or_else(bad)?;
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => a == client_id,
        Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(client_id)),
        _ => false,
    };
    match claims.get("sub").and_then(Value::as_str) {
        Some(sub) if aud_ok => Ok(sub.to_string()),
        _ => Err(bad()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    #[test]
    fn at_hash_is_left_half_of_sha256() {
        // 16 bytes -> 22 base64url characters.
        assert_eq!(super::at_hash("x").len(), 22);
        assert_ne!(super::at_hash("x"), super::at_hash("y"));
    }
}
