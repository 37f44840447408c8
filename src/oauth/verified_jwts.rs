//! A bounded cache of our own JWT access tokens whose signature this process has verified, keyed
//! by the SHA-256 of the token: a token presented again (introspection, userinfo) skips the
//! signature check. Only what a token says about itself is kept (it cannot change); whether it
//! was revoked is never cached, and is asked of the store every time, so a revocation on any
//! replica holds at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use crate::oauth::tokens::PresentedToken;

/// How many verified tokens are kept; when full, the cache starts over.
const LIMIT: usize = 8192;

/// A token that verified: its claims, the key that signed it and its issuer.
#[derive(Debug)]
pub struct Verified {
    /// The claims read from it.
    pub token: PresentedToken,
    /// The kid of the key whose signature verified.
    pub kid: String,
    /// Its `iss`.
    pub iss: String,
}

/// Verified tokens by the SHA-256 of their compact form.
#[derive(Debug, Default)]
pub struct VerifiedJwts {
    map: Mutex<HashMap<[u8; 32], Arc<Verified>>>,
}

impl VerifiedJwts {
    /// The key of `token` in the cache.
    pub fn digest(token: &str) -> [u8; 32] {
        Sha256::digest(token.as_bytes()).into()
    }

    /// The token verified earlier under this digest, if any.
    pub fn get(&self, digest: &[u8; 32]) -> Option<Arc<Verified>> {
        self.map.lock().ok().and_then(|m| m.get(digest).cloned())
    }

    /// Remembers a token whose signature verified.
    pub fn insert(&self, digest: [u8; 32], verified: Verified) {
        if let Ok(mut m) = self.map.lock() {
            if m.len() >= LIMIT {
                m.clear();
            }
            m.insert(digest, Arc::new(verified));
        }
    }
}
