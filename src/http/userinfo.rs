//! `GET|POST /oauth2/v1/userinfo` (OpenID Connect Core s5.3) with RFC 6750 bearer tokens.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::extract::{CurrentDomain, peer_of};
use super::response::{error_response, json_no_store, no_store};
use crate::app::AppState;
use crate::error::{ErrorCode, OAuthError};
use crate::oauth::params::Params;
use crate::oauth::userinfo::userinfo;

/// Answers the claims of the token's user.
pub async fn get_userinfo(State(app): State<AppState>, cur: CurrentDomain, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let peer = peer_of(&app, &parts);
    let realm = cur.domain.issuer.clone();
    let header_token = match super::extract::bearer_token(&parts.headers) {
        Ok(t) => t.map(str::to_string),
        Err(e) => return bearer_error(&e, &realm),
    };
    // RFC 6750 s2.2: the form body carries the token only in a form POST.
    let body_token = if parts.method == Method::POST && super::extract::is_form(&parts.headers) {
        match super::response::read_body(body, &app)
            .await
            .and_then(|b| Params::parse(&b, &[]))
        {
            Ok(p) => p.get("access_token").map(str::to_string),
            // 413 for a body over the limit, as on every endpoint; 400 for one not a form.
            Err(e) => return bearer_error(&e, &realm),
        }
    } else {
        None
    };
    let token = match (header_token, body_token) {
        (Some(_), Some(_)) => {
            // RFC 6750 s2: clients must not use more than one method.
            return bearer_error(
                &OAuthError::invalid_request("the token was sent in more than one way"),
                &realm,
            );
        }
        (Some(t), None) | (None, Some(t)) => t,
        (None, None) => return bearer_challenge(&realm),
    };
    let keys = cur.keys_for(&app, Some(&token)).await;
    let ctx = cur.ctx(&app, &keys, peer);
    match userinfo(&ctx, &token).await {
        Ok(v) => json_no_store(StatusCode::OK, &v),
        Err(e) => bearer_error(&e, &realm),
    }
}

/// RFC 6750 s3.1: a request without a token gets the challenge and no error information
/// (an empty body).
pub fn bearer_challenge(realm: &str) -> Response {
    let mut resp = no_store(StatusCode::UNAUTHORIZED.into_response());
    if let Ok(v) = HeaderValue::from_str(&format!("Bearer realm=\"{realm}\"")) {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    resp
}

/// RFC 6750 s3: errors with `WWW-Authenticate: Bearer error="..."`.
pub fn bearer_error(err: &OAuthError, realm: &str) -> Response {
    let mut resp = error_response(err, realm);
    let in_header = matches!(
        err.code,
        ErrorCode::InvalidToken | ErrorCode::InsufficientScope | ErrorCode::InvalidRequest
    );
    if in_header {
        let v = format!(
            "Bearer realm=\"{realm}\", error=\"{}\", error_description=\"{}\"",
            err.code.as_str(),
            err.description.replace('"', "'")
        );
        if let Ok(v) = HeaderValue::from_str(&v) {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
    }
    resp
}
