//! Request extractors: the current domain, and form bodies with the client's credentials.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use zeroize::Zeroizing;

use crate::app::{App, AppState};
use crate::domain::Domain;
use crate::error::{ErrorCode, OAuthError};
use crate::keyring::{KeyRing, KeySet};
use crate::oauth::client_auth::{Presented, parse_basic};
use crate::oauth::mtls::ClientCertificate;
use crate::oauth::params::Params;
use crate::oauth::{Ctx, Peer};
use crate::store::SqlStore;

/// The identity domain a request was routed to, with its key ring.
#[derive(Clone)]
pub struct CurrentDomain {
    /// The domain.
    pub domain: Arc<Domain>,
    /// Its signing keys.
    pub ring: Arc<KeyRing>,
}

impl CurrentDomain {
    /// The keys to verify `token` with (when the request carries a token of ours): the ring
    /// re-reads the store first when the token names a kid this replica does not know yet.
    pub async fn keys_for(&self, app: &App, token: Option<&str>) -> Arc<KeySet> {
        match token {
            Some(t) => self.ring.keys_for(t, &app.store, &app.kek).await,
            None => self.ring.current(),
        }
    }

    /// The protocol context of a request to this domain from `peer`, with `keys` (from
    /// `self.ring.current()`).
    pub fn ctx<'a>(&'a self, app: &'a App, keys: &'a KeySet, peer: Peer) -> Ctx<'a, SqlStore> {
        Ctx {
            domain: &self.domain,
            keys,
            store: &app.store,
            kek: &app.kek,
            now: app.clock.now(),
            hasher: app.authenticator.hasher(),
            audit: &app.audit_queue,
            gate: &app.gate,
            verified: &app.verified_jwts,
            peer,
        }
    }
}

/// The peer of a request: its address and client certificate.
pub fn peer_of(app: &App, parts: &Parts) -> Peer {
    Peer {
        address: client_address(app, parts),
        certificate: parts.extensions.get::<Arc<ClientCertificate>>().cloned(),
        request_id: request_id_of(&parts.headers),
    }
}

impl FromRequestParts<AppState> for Peer {
    type Rejection = OAuthError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, OAuthError> {
        Ok(peer_of(app, parts))
    }
}

/// The request id set by the request-id layer (`X-Request-Id`), or empty.
pub fn request_id_of(headers: &axum::http::HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// The client's address. From a peer in `server.trusted_proxies`, with `client_address_header`
/// set: the header's last address that is not itself a trusted proxy (each proxy appends the
/// address it was reached from, so entries left of the first untrusted one may be forged), or
/// its first when all are. Otherwise the peer address of the connection.
fn client_address(app: &App, parts: &Parts) -> String {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    if let (Some(name), Some(ip)) = (&app.client_address_header, peer)
        && app.trusted_proxies.contains(ip)
    {
        // An entry with a port (`203.0.113.9:5123`, `[2001:db8::1]:5123`, as some proxies
        // write them) counts as its address: the port changes with every connection.
        let entries: Vec<Result<IpAddr, &str>> = parts
            .headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(|v| {
                v.parse::<IpAddr>()
                    .or_else(|_| v.parse::<SocketAddr>().map(|s| s.ip()))
                    .map_err(|_| v)
            })
            .collect();
        let client = entries
            .iter()
            .rev()
            .find(|e| !e.is_ok_and(|a| app.trusted_proxies.contains(a)))
            .or(entries.first());
        if let Some(c) = client {
            return match c {
                Ok(ip) => ip.to_canonical().to_string(),
                Err(text) => (*text).to_string(),
            };
        }
    }
    peer.map(|ip| ip.to_string()).unwrap_or_default()
}

impl<S: Send + Sync> FromRequestParts<S> for CurrentDomain {
    type Rejection = OAuthError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, OAuthError> {
        parts
            .extensions
            .get::<CurrentDomain>()
            .cloned()
            .ok_or_else(|| OAuthError::new(ErrorCode::NotFound, "no identity domain here"))
    }
}

/// An `application/x-www-form-urlencoded` POST with the client credentials it presents.
pub struct ClientForm {
    /// Body parameters.
    pub params: Params,
    /// Credentials from the Authorization header and the body.
    pub presented: Presented,
}

/// True when the request's body is `application/x-www-form-urlencoded` (RFC 9110 s8.3.1: type
/// and subtype compared without regard to case; parameters such as `charset` after `;`).
pub fn is_form(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"))
}

/// The request's one `Authorization` header (`None`: there is none). RFC 9110 s5.3: it is not a
/// list, so sent twice it is `invalid_request` (which one counts would be a guess).
pub fn sole_authorization(headers: &axum::http::HeaderMap) -> Result<Option<&str>, OAuthError> {
    let mut all = headers.get_all(header::AUTHORIZATION).iter();
    let first = all.next();
    if all.next().is_some() {
        return Err(OAuthError::invalid_request(
            "the Authorization header was sent more than once",
        ));
    }
    Ok(first.and_then(|v| v.to_str().ok()))
}

/// The token of the request's `Authorization: Bearer` header (RFC 6750 s2.1), trimmed; `None`
/// without one.
pub fn bearer_token(headers: &axum::http::HeaderMap) -> Result<Option<&str>, OAuthError> {
    Ok(sole_authorization(headers)?
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim()))
}

/// Parameters that may repeat (RFC 8707 `resource`).
const REPEATABLE: &[&str] = &["resource"];

impl FromRequest<AppState> for ClientForm {
    type Rejection = OAuthError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, OAuthError> {
        let (parts, body) = req.into_parts();
        // RFC 6749 s3.2: the token endpoint takes application/x-www-form-urlencoded only.
        if !is_form(&parts.headers) {
            return Err(OAuthError::invalid_request(
                "the request body must be application/x-www-form-urlencoded",
            ));
        }
        let bytes = super::response::read_body(body, state).await?;
        let params = Params::parse(&bytes, REPEATABLE)?;
        let basic = sole_authorization(&parts.headers)?.and_then(parse_basic);
        let presented = Presented {
            basic,
            body_client_id: params.get("client_id").map(str::to_string),
            body_client_secret: params.get("client_secret").map(|s| Zeroizing::new(s.to_string())),
            client_assertion: params.get("client_assertion").map(str::to_string),
            client_assertion_type: params.get("client_assertion_type").map(str::to_string),
        };
        Ok(ClientForm { params, presented })
    }
}
