//! Request extractors: the current domain, and form bodies with the client's credentials.

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use zeroize::Zeroizing;

use crate::app::{App, AppState};
use crate::domain::Domain;
use crate::error::{ErrorCode, OAuthError};
use crate::keyring::{KeyRing, KeySet};
use crate::oauth::Ctx;
use crate::oauth::client_auth::{Presented, parse_basic};
use crate::oauth::params::Params;
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
    /// The protocol context of a request to this domain, with `keys` (from `self.ring.current()`).
    pub fn ctx<'a>(&'a self, app: &'a App, keys: &'a KeySet) -> Ctx<'a, SqlStore> {
        Ctx {
            domain: &self.domain,
            keys,
            store: &app.store,
            kek: &app.kek,
            now: app.clock.now(),
        }
    }
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

/// Parameters that may repeat (RFC 8707 `resource`).
const REPEATABLE: &[&str] = &["resource"];

impl FromRequest<AppState> for ClientForm {
    type Rejection = OAuthError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, OAuthError> {
        let (parts, body) = req.into_parts();
        // RFC 6749 s3.2: the token endpoint takes application/x-www-form-urlencoded only.
        let is_form = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"));
        if !is_form {
            return Err(OAuthError::invalid_request(
                "the request body must be application/x-www-form-urlencoded",
            ));
        }
        let bytes = axum::body::to_bytes(body, state.max_body_bytes)
            .await
            .map_err(|e| {
                let too_large =
                    std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
                if too_large {
                    OAuthError::new(ErrorCode::PayloadTooLarge, "the request body is too large")
                } else {
                    OAuthError::invalid_request("the request body could not be read").with_cause(e)
                }
            })?;
        let params = Params::parse(&bytes, REPEATABLE)?;
        let basic = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_basic);
        let presented = Presented {
            basic,
            body_client_id: params.get("client_id").map(str::to_string),
            body_client_secret: params.get("client_secret").map(|s| Zeroizing::new(s.to_string())),
        };
        Ok(ClientForm { params, presented })
    }
}
