//! Client authentication: the one front door for every endpoint that authenticates clients
//! (RFC 6749 s2.3).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::config::AuthMethod;
use crate::crypto::secrets::{PasswordHasher, SecretHash, ct_eq};
use crate::domain::{Client, Domain};
use crate::error::{OAuthError, OAuthResult};

/// The credentials a request presented, before checking them.
#[derive(Default)]
pub struct Presented {
    /// From `Authorization: Basic`.
    pub basic: Option<Basic>,
    /// `client_id` in the body.
    pub body_client_id: Option<String>,
    /// `client_secret` in the body.
    pub body_client_secret: Option<Zeroizing<String>>,
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

/// Checks client credentials; argon2 secrets are verified off the async threads and remembered.
#[derive(Clone)]
pub struct ClientAuthenticator {
    hasher: PasswordHasher,
    verified: Arc<Mutex<HashMap<[u8; 32], bool>>>,
}

/// Most argon2 results remembered before the cache is emptied.
const CACHE_LIMIT: usize = 10_000;

impl ClientAuthenticator {
    /// An authenticator that runs argon2 through `hasher`.
    pub fn new(hasher: PasswordHasher) -> Self {
        ClientAuthenticator {
            hasher,
            verified: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The password hasher (argon2 off the async threads, bounded), shared with sign-in.
    pub fn hasher(&self) -> &PasswordHasher {
        &self.hasher
    }

    /// Authenticates the client of a request. `allow_public`: whether a client with method
    /// `none` may use this endpoint.
    pub async fn authenticate(
        &self,
        domain: &Domain,
        presented: &Presented,
        allow_public: bool,
    ) -> OAuthResult<Arc<Client>> {
        let used_basic = presented.basic.is_some();
        let failed =
            || OAuthError::invalid_client("client authentication failed").with_basic_challenge(used_basic);
        // RFC 6749 s2.3: the client MUST NOT use more than one authentication method per request.
        if used_basic && presented.body_client_secret.is_some() {
            return Err(OAuthError::invalid_request(
                "more than one client authentication method was used",
            ));
        }
        let (id, secret, method) = match &presented.basic {
            Some(Basic::Malformed) => {
                return Err(OAuthError::invalid_client("malformed Basic authorization header")
                    .with_basic_challenge(true));
            }
            Some(Basic::Valid { id, secret }) => {
                if presented.body_client_id.as_deref().is_some_and(|b| b != id) {
                    return Err(OAuthError::invalid_request(
                        "client_id in the body does not match the Authorization header",
                    ));
                }
                (id.as_str(), Some(secret), AuthMethod::ClientSecretBasic)
            }
            None => match (&presented.body_client_id, &presented.body_client_secret) {
                (Some(id), Some(secret)) => (id.as_str(), Some(secret), AuthMethod::ClientSecretPost),
                (Some(id), None) => (id.as_str(), None, AuthMethod::None),
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
        let client = domain
            .client(id)
            .filter(|c| c.enabled)
            .ok_or_else(|| failed().with_cause(format!("unknown or disabled client {id:?}")))?;
        if client.auth_method != method {
            return Err(OAuthError::invalid_client(format!(
                "this client must authenticate with {}",
                client.auth_method.as_str()
            ))
            .with_basic_challenge(used_basic));
        }
        match (method, secret, &client.secret) {
            (AuthMethod::None, _, _) => {
                if !allow_public {
                    return Err(OAuthError::invalid_client(
                        "a public client cannot use this endpoint",
                    ));
                }
            }
            (_, Some(secret), Some(hash)) => {
                if !self.verify(&client.id, hash, secret).await {
                    return Err(failed().with_cause(format!("wrong secret for client {id:?}")));
                }
            }
            _ => return Err(failed().with_cause("confidential client without a configured secret")),
        }
        Ok(client.clone())
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
