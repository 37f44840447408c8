//! Protocol rules, free of HTTP and SQL types: client authentication, scopes, tokens, grants,
//! device authorization, introspection, revocation and metadata. Every function takes the domain, the key set, the
//! store (through its traits) and the time it should act at.

pub mod assertion;
pub mod authorize;
pub mod claims;
pub mod claims_request;
pub mod client_auth;
pub mod client_throttle;
pub mod device;
pub mod grants;
pub mod id_token;
pub mod introspection;
pub mod logout;
pub mod metadata;
pub mod mtls;
pub mod params;
pub mod password;
pub mod pkce;
pub mod redirect_uri;
pub mod revocation;
pub mod scopes;
pub mod throttle;
pub mod tokens;
pub mod user_tokens;
pub mod userinfo;
pub mod verified_jwts;

use std::sync::Arc;

use crate::audit::AuditQueue;
use crate::crypto::kek::Kek;
use crate::crypto::secrets::PasswordHasher;
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
    /// argon2 off the async threads, bounded (password checks).
    pub hasher: &'a PasswordHasher,
    /// Audit events of hot paths, stored in batches off the request.
    pub audit: &'a AuditQueue,
    /// Password checks in flight, per throttling bucket.
    pub gate: &'a throttle::Gate,
    /// JWT access tokens whose signature this process has verified.
    pub verified: &'a verified_jwts::VerifiedJwts,
    /// Who sent the request.
    pub peer: Peer,
}

/// The other end of a request, as far as the protocol cares.
#[derive(Debug, Clone, Default)]
pub struct Peer {
    /// The client address: the peer IP, or the last entry of the trusted proxy's header.
    pub address: String,
    /// The client certificate of the TLS connection, or from the trusted proxy's header.
    pub certificate: Option<Arc<mtls::ClientCertificate>>,
    /// The request's `X-Request-Id` (for audit events); empty when unknown.
    pub request_id: String,
}
