//! Discovery (OpenID Connect Discovery 1.0, RFC 8414) and the JWKS.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::extract::CurrentDomain;
use crate::app::AppState;
use crate::oauth::metadata::{Flavor, document};

/// `GET /.well-known/openid-configuration`.
pub async fn get_openid_configuration(State(app): State<AppState>, cur: CurrentDomain) -> Response {
    cached(
        json_doc(document(&cur.domain, &app.grants.types(), Flavor::OpenId)),
        300,
    )
}

/// `GET /.well-known/oauth-authorization-server` (RFC 8414).
pub async fn get_oauth_authorization_server(State(app): State<AppState>, cur: CurrentDomain) -> Response {
    cached(
        json_doc(document(&cur.domain, &app.grants.types(), Flavor::OAuth)),
        300,
    )
}

/// `GET /oauth2/v1/keys`: the public keys that are active, upcoming, or retired but still
/// verifying unexpired tokens.
pub async fn get_keys(State(app): State<AppState>, cur: CurrentDomain) -> Response {
    let set = cur.ring.current();
    let retain = cur.domain.max_token_lifetime();
    let keys: Vec<&Value> = set
        .published(app.clock.now(), retain)
        .map(|k| k.key.public_jwk())
        .collect();
    cached(json_doc(json!({ "keys": keys })), 300)
}

fn json_doc(v: Value) -> Response {
    Json(v).into_response()
}

fn cached(mut resp: Response, max_age: u32) -> Response {
    if let Ok(v) = HeaderValue::from_str(&format!("public, max-age={max_age}")) {
        resp.headers_mut().insert(header::CACHE_CONTROL, v);
    }
    resp
}
