//! Client authentication: the one front door for every endpoint that authenticates clients
//! (RFC 6749 s2.3).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use serde_json::Value;

use crate::config::AuthMethod;
use crate::crypto::jws;
use crate::crypto::keys::SigningAlg;
use crate::crypto::secrets::{PasswordHasher, SecretHash, ct_eq};
use crate::domain::Client;
use crate::error::{OAuthError, OAuthResult};
use crate::jwks_cache::JwksCache;
use crate::oauth::client_throttle::{Rules, SecretThrottle};
use crate::oauth::{Ctx, assertion, mtls};
use crate::store::assertion::AssertionStore;

/// The credentials a request presented, before checking them.
#[derive(Default)]
pub struct Presented {
    /// From `Authorization: Basic`.
    pub basic: Option<Basic>,
    /// `client_id` in the body.
    pub body_client_id: Option<String>,
    /// `client_secret` in the body.
    pub body_client_secret: Option<Zeroizing<String>>,
    /// `client_assertion` (RFC 7521 s4.2).
    pub client_assertion: Option<String>,
    /// `client_assertion_type` (RFC 7521 s4.2).
    pub client_assertion_type: Option<String>,
}

/// The client a JWT client assertion is for: its `sub` (RFC 7523 s3 item 2.B), which a
/// `client_id` in the body, when sent, must equal (RFC 7521 s4.2).
fn assertion_client_id(presented: &Presented, jwt: &str) -> OAuthResult<String> {
    match presented.client_assertion_type.as_deref() {
        Some(CLIENT_ASSERTION_TYPE) => {}
        Some(_) => {
            return Err(OAuthError::invalid_request(format!(
                "client_assertion_type must be {CLIENT_ASSERTION_TYPE}"
            )));
        }
        None => return Err(OAuthError::invalid_request("client_assertion_type is missing")),
    }
    // RFC 7523 s3.2: a client JWT that is not valid is invalid_client, whatever is wrong with it.
    let claims =
        jws::peek_claims(jwt).map_err(|_| OAuthError::invalid_client("client_assertion is not a JWT"))?;
    let sub = claims
        .get("sub")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| OAuthError::invalid_client("client_assertion has no sub"))?;
    if presented.body_client_id.as_deref().is_some_and(|b| b != sub) {
        return Err(OAuthError::invalid_client(
            "client_id does not match the client assertion's sub",
        ));
    }
    Ok(sub.to_string())
}

/// A decoded HTTP Basic header.
pub enum Basic {
    /// RFC 6749 s2.3.1: id and secret, each form-urlencoded, joined by a colon.
    Valid {
        /// The client_id.
        id: String,
        /// The secret.
        secret: Zeroizing<String>,
    },
    /// The header was present but not valid Basic credentials.
    Malformed,
}

/// Decodes the value of an `Authorization` header; None when it is not Basic.
pub fn parse_basic(header: &str) -> Option<Basic> {
    let (scheme, rest) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let Ok(raw) = STANDARD.decode(rest.trim()) else {
        return Some(Basic::Malformed);
    };
    let raw = Zeroizing::new(raw);
    let Ok(text) = std::str::from_utf8(&raw) else {
        return Some(Basic::Malformed);
    };
    let Some((id, secret)) = text.split_once(':') else {
        return Some(Basic::Malformed);
    };
    // Form-urlencoded decoding of each half (RFC 6749 s2.3.1).
    let id = percent_decode(id);
    let secret = percent_decode(secret);
    match (id, secret) {
        (Some(id), Some(secret)) if !id.is_empty() => Some(Basic::Valid {
            id,
            secret: Zeroizing::new(secret),
        }),
        _ => Some(Basic::Malformed),
    }
}

/// application/x-www-form-urlencoded decoding of one value ('+' is a space).
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// RFC 7523 s2.2: the `client_assertion_type` of JWT client assertions.
pub const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Checks client credentials; argon2 secrets are verified off the async threads and remembered;
/// clients' JWK Sets are fetched and cached.
#[derive(Clone)]
pub struct ClientAuthenticator {
    hasher: PasswordHasher,
    verified: Arc<Mutex<HashMap<[u8; 32], bool>>>,
    jwks: JwksCache,
    guesses: Arc<SecretThrottle>,
}

/// Most argon2 results remembered before the cache is emptied.
const CACHE_LIMIT: usize = 10_000;

/// What a request offered as credentials, once sorted out.
enum Offered<'p> {
    Secret(&'p Zeroizing<String>, AuthMethod),
    Assertion(&'p str),
    IdOnly,
}

impl ClientAuthenticator {
    /// An authenticator that runs argon2 through `hasher`.
    pub fn new(hasher: PasswordHasher) -> Self {
        ClientAuthenticator {
            hasher,
            verified: Arc::new(Mutex::new(HashMap::new())),
            jwks: JwksCache::default(),
            guesses: Arc::new(SecretThrottle::default()),
        }
    }

    /// The password hasher (argon2 off the async threads, bounded), shared with sign-in.
    pub fn hasher(&self) -> &PasswordHasher {
        &self.hasher
    }

    /// Authenticates the client of a request with the method it registered. `allow_public`:
    /// whether a client with method `none` may use this endpoint.
    pub async fn authenticate<S: AssertionStore + Sync>(
        &self,
        ctx: &Ctx<'_, S>,
        presented: &Presented,
        allow_public: bool,
    ) -> OAuthResult<Arc<Client>> {
        let used_basic = presented.basic.is_some();
        let failed = || OAuthError::invalid_client("client authentication failed");
        let methods = usize::from(used_basic)
            + usize::from(presented.body_client_secret.is_some())
            + usize::from(presented.client_assertion.is_some());
        // RFC 6749 s2.3: the client MUST NOT use more than one authentication method per request.
        if methods > 1 {
            return Err(OAuthError::invalid_request(
                "more than one client authentication method was used",
            ));
        }
        let (id, offered) = match (&presented.basic, &presented.client_assertion) {
            (Some(Basic::Malformed), _) => {
                return Err(OAuthError::invalid_client("malformed Basic authorization header"));
            }
            (Some(Basic::Valid { id, secret }), _) => {
                if presented.body_client_id.as_deref().is_some_and(|b| b != id) {
                    return Err(OAuthError::invalid_request(
                        "client_id in the body does not match the Authorization header",
                    ));
                }
                (id.clone(), Offered::Secret(secret, AuthMethod::ClientSecretBasic))
            }
            (None, Some(jwt)) => (assertion_client_id(presented, jwt)?, Offered::Assertion(jwt)),
            (None, None) => match (&presented.body_client_id, &presented.body_client_secret) {
                (Some(id), Some(secret)) => {
                    (id.clone(), Offered::Secret(secret, AuthMethod::ClientSecretPost))
                }
                (Some(id), None) => (id.clone(), Offered::IdOnly),
                (None, Some(_)) => {
                    return Err(OAuthError::invalid_request(
                        "client_secret was sent without client_id",
                    ));
                }
                (None, None) => {
                    return Err(OAuthError::invalid_client("client authentication is required"));
                }
            },
        };
        let client = ctx
            .domain
            .client(&id)
            .filter(|c| c.enabled)
            .ok_or_else(|| failed().with_cause(format!("unknown or disabled client {id:?}")))?;
        let method = client.auth_method;
        match offered {
            Offered::Secret(secret, m) if m == method => {
                let Some(hash) = &client.secret else {
                    return Err(failed().with_cause("confidential client without a configured secret"));
                };
                self.check_secret(ctx, client, hash, secret).await?;
            }
            Offered::Assertion(jwt)
                if matches!(method, AuthMethod::PrivateKeyJwt | AuthMethod::ClientSecretJwt) =>
            {
                self.verify_client_assertion(ctx, client, jwt).await?;
            }
            Offered::IdOnly if method == AuthMethod::None => {
                if !allow_public {
                    return Err(OAuthError::invalid_client(
                        "a public client cannot use this endpoint",
                    ));
                }
            }
            // RFC 8705 s2: the client_id in the body names the client; the certificate proves it.
            Offered::IdOnly
                if matches!(
                    method,
                    AuthMethod::TlsClientAuth | AuthMethod::SelfSignedTlsClientAuth
                ) =>
            {
                // Without a certificate there is nothing to match: no key set is fetched.
                let self_signed =
                    method == AuthMethod::SelfSignedTlsClientAuth && ctx.peer.certificate.is_some();
                let keys = if self_signed {
                    self.client_keys(ctx, client, false).await?
                } else {
                    Arc::new(Vec::new())
                };
                let certificate = ctx.peer.certificate.as_deref();
                match mtls::authenticate(client, certificate, &keys) {
                    Ok(()) => {}
                    // RFC 8705 s2.2: a jwks_uri lets the client rotate its certificates: a new
                    // one is looked for in its keys fetched again, once.
                    Err(_) if self_signed && client.jwks_uri.is_some() => {
                        let keys = self.client_keys(ctx, client, true).await?;
                        mtls::authenticate(client, certificate, &keys)?;
                    }
                    Err(e) => return Err(e),
                }
            }
            _ => {
                return Err(OAuthError::invalid_client(format!(
                    "this client must authenticate with {}",
                    method.as_str()
                )));
            }
        }
        Ok(client.clone())
    }

    /// The client's public keys: its inline `jwks`, or its `jwks_uri` (cached; `refresh` asks
    /// for a new fetch).
    async fn client_keys<S>(
        &self,
        ctx: &Ctx<'_, S>,
        client: &Client,
        refresh: bool,
    ) -> OAuthResult<Arc<Vec<Value>>> {
        if let Some(set) = &client.jwks {
            let keys = set
                .get("keys")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            return Ok(Arc::new(keys));
        }
        let Some(uri) = &client.jwks_uri else {
            return Err(OAuthError::invalid_client("client authentication failed")
                .with_cause(format!("client {:?} has no keys", client.id)));
        };
        self.jwks
            .keys(uri, ctx.domain.config.allow_private_jwks_uri, refresh, ctx.now)
            .await
            .map_err(|e| {
                OAuthError::invalid_client("the client's keys could not be fetched from its jwks_uri")
                    .with_cause(format!("client {:?}: {e}", client.id))
            })
    }

    /// RFC 7523 s2.2 and s3, OpenID Connect Core s9: checks a client assertion of `client`.
    async fn verify_client_assertion<S: AssertionStore + Sync>(
        &self,
        ctx: &Ctx<'_, S>,
        client: &Client,
        jwt: &str,
    ) -> OAuthResult<()> {
        let failed = |why: &str| {
            OAuthError::invalid_client("the client assertion is invalid")
                .with_cause(format!("client {:?}: {why}", client.id))
        };
        let header =
            jws::peek_header(jwt).map_err(|_| OAuthError::invalid_client("client_assertion is not a JWT"))?;
        // The algorithm must be the client's registered one, when it registered one.
        if client.assertion_alg.as_deref().is_some_and(|a| a != header.alg) {
            return Err(failed("alg differs from token_endpoint_auth_signing_alg"));
        }
        let claims = if client.auth_method == AuthMethod::ClientSecretJwt {
            // OpenID Connect Core s9: an HMAC keyed by the client secret; never `none`.
            if !jws::HMAC_ALGS.contains(&header.alg.as_str()) {
                return Err(failed("client_secret_jwt needs an HMAC algorithm"));
            }
            let secret = client
                .shared_secret
                .as_ref()
                .ok_or_else(|| failed("no secret to check the HMAC with"))?;
            jws::verify_hmac(jwt, &header.alg, &secret.0).map_err(|e| failed(&e.to_string()))?
        } else {
            // private_key_jwt: asymmetric algorithms only, so `none` and an HMAC keyed with a
            // public key can never verify.
            let alg = SigningAlg::parse(&header.alg)
                .ok_or_else(|| failed("private_key_jwt needs RS256, PS256 or ES256"))?;
            let keys = self.client_keys(ctx, client, false).await?;
            match jws::verify_with_jwks(jwt, &keys, alg, header.kid.as_deref()) {
                Some(c) => c,
                // The client may have rotated its keys: fetch its jwks_uri again, once.
                None if client.jwks_uri.is_some() => {
                    let keys = self.client_keys(ctx, client, true).await?;
                    jws::verify_with_jwks(jwt, &keys, alg, header.kid.as_deref())
                        .ok_or_else(|| failed("no key of the client verifies the signature"))?
                }
                None => return Err(failed("no key of the client verifies the signature")),
            }
        };
        // RFC 7523 s3: aud identifies this server.
        let audiences = assertion::audiences(ctx.domain);
        let accepted = assertion::check(
            &claims,
            &assertion::Expect {
                issuer: &client.id,
                subject: Some(&client.id),
                audiences: &audiences,
                single_audience: true,
                max_lifetime: ctx.domain.assertion_max_lifetime,
                now: ctx.now,
            },
        )
        .map_err(failed)?;
        assertion::refuse_replay(ctx, &format!("client:{}", client.id), &accepted, |m| {
            OAuthError::invalid_client(m)
        })
        .await
    }

    /// Checks a client secret. A SHA-256 one (generated, or given in clear of at least 32
    /// characters) cannot be guessed: one constant-time comparison. An argon2id one is a secret a
    /// person chose: checked within the guessing budget of this client and address (RFC 6749
    /// s2.3.1), which the guess enters before argon2 runs; a locked pair is refused without
    /// looking at the secret (so a guess neither runs argon2 nor tells anything).
    async fn check_secret<S>(
        &self,
        ctx: &Ctx<'_, S>,
        client: &Client,
        hash: &SecretHash,
        secret: &Zeroizing<String>,
    ) -> OAuthResult<()> {
        let cause = || format!("wrong secret for client {:?}", client.id);
        if let SecretHash::Sha256(_) = hash {
            return if self.verify(&client.id, hash, secret).await {
                Ok(())
            } else {
                Err(OAuthError::invalid_client("client authentication failed").with_cause(cause()))
            };
        }
        let too_many = |secs: i64| {
            OAuthError::invalid_client(format!("too many failed attempts: try again in {secs} seconds"))
        };
        let c = &ctx.domain.config;
        let rules = Rules {
            attempts: c.client_secret_attempts,
            first: c.lockout_duration.0,
            max: c.lockout_max.0,
        };
        let pair = self.guesses.pair(&ctx.domain.name, &client.id, &ctx.peer.address);
        if let Err(secs) = self.guesses.admit(pair, rules, ctx.now) {
            return Err(too_many(secs).with_cause(format!(
                "client {:?} from {}: wrong secrets, paused",
                client.id, ctx.peer.address
            )));
        }
        // Checked and settled in a task of its own: a guess whose request is dropped while
        // argon2 runs (its client gave up) still counts as what it was and gives its place in
        // the budget back; left unsettled, it would hold that place for good.
        let (this, id, hash, secret, now) = (
            self.clone(),
            client.id.clone(),
            hash.clone(),
            secret.clone(),
            ctx.now,
        );
        let checked = tokio::spawn(async move {
            let right = this.verify(&id, &hash, &secret).await;
            (right, this.guesses.settle(pair, right, rules, now))
        });
        let (right, locked) = checked.await.map_err(OAuthError::server_error)?;
        match locked {
            _ if right => Ok(()),
            0 => Err(OAuthError::invalid_client("client authentication failed").with_cause(cause())),
            secs => Err(too_many(secs).with_cause(cause())),
        }
    }

    async fn verify(&self, client_id: &str, hash: &SecretHash, secret: &Zeroizing<String>) -> bool {
        match hash {
            // Generated secrets are high-entropy: one SHA-256 compared in constant time.
            SecretHash::Sha256(expected) => {
                let got = Sha256::digest(secret.as_bytes());
                ct_eq(got.as_slice(), expected)
            }
            // argon2 runs at most once per (client, hash, secret) per process.
            SecretHash::Argon2(phc) => {
                let mut h = Sha256::new();
                for part in [client_id.as_bytes(), phc.as_bytes(), secret.as_bytes()] {
                    h.update((part.len() as u64).to_be_bytes());
                    h.update(part);
                }
                let key: [u8; 32] = h.finalize().into();
                if let Some(ok) = self.cached(&key) {
                    return ok;
                }
                let ok = self.hasher.verify(phc.clone(), secret.clone()).await;
                if let Ok(mut m) = self.verified.lock() {
                    if m.len() >= CACHE_LIMIT {
                        m.clear();
                    }
                    m.insert(key, ok);
                }
                ok
            }
        }
    }

    fn cached(&self, key: &[u8; 32]) -> Option<bool> {
        self.verified.lock().ok().and_then(|m| m.get(key).copied())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn basic_is_form_decoded() {
        let h = format!("Basic {}", STANDARD.encode("my%3Aclient:s%2Bc+r%25t"));
        match parse_basic(&h) {
            Some(Basic::Valid { id, secret }) => {
                assert_eq!(id, "my:client");
                assert_eq!(secret.as_str(), "s+c r%t");
            }
            _ => panic!("expected valid basic"),
        }
        assert!(matches!(parse_basic("Basic !!!"), Some(Basic::Malformed)));
        assert!(matches!(
            parse_basic(&format!("Basic {}", STANDARD.encode("nocolon"))),
            Some(Basic::Malformed)
        ));
        assert!(parse_basic("Bearer abc").is_none());
    }
}
