//! Protocol rules, free of HTTP and SQL types: client authentication, scopes, tokens, grants,
//! introspection, revocation and metadata. Every function takes the domain, the key set, the
//! store (through its traits) and the time it should act at.

pub mod authorize;
pub mod claims;
pub mod claims_request;
pub mod client_auth;
pub mod grants;
pub mod id_token;
pub mod introspection;
pub mod metadata;
pub mod params;
pub mod pkce;
pub mod redirect_uri;
pub mod revocation;
pub mod scopes;
pub mod tokens;
pub mod user_tokens;
pub mod userinfo;

use crate::crypto::kek::Kek;
use crate::domain::Domain;
use crate::keyring::KeySet;

/// What every protocol operation acts on.
pub struct Ctx<'a, S> {
    /// The identity domain of the request.
    pub domain: &'a Domain,
    /// Its signing keys at this moment.
    pub keys: &'a KeySet,
    /// The store.
    pub store: &'a S,
    /// The key-encryption key (for derived secrets).
    pub kek: &'a Kek,
    /// The current unix time.
    pub now: i64,
}
