//! `POST {issuer}/signin`: the sign-in form.

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::Response;
use zeroize::Zeroizing;

use super::extract::CurrentDomain;
use super::pages::{csrf_ok, error_page, login_page, proceed, start_session};
use crate::app::AppState;
use crate::error::{ErrorCode, OAuthError};
use crate::oauth::authorize::AuthorizationRequest;
use crate::oauth::params::Params;
use crate::store::DirectoryStore;
use crate::store::signin::SignInStore;

/// A well-formed argon2id hash with the server's parameters that matches no password: verified
/// when the user does not exist, so that an unknown username and a wrong password take the same
/// time (the full argon2 computation) and get the same message.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$Wd4B3sS3vhm1FwnD5iLn2vAOJPD9aNMiSnHSzuUmYPc";

/// One message for an unknown user, a wrong password, and a disabled user.
const FAILED: &str = "The username or password is incorrect.";

/// Checks the credentials, starts the session and moves the request on (303 to the client).
pub async fn post_signin(State(app): State<AppState>, cur: CurrentDomain, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let form = match axum::body::to_bytes(body, app.max_body_bytes).await {
        Ok(b) => Params::parse(&b, &[]),
        Err(_) => Err(OAuthError::invalid_request("the request body is too large")),
    };
    let form = match form {
        Ok(f) => f,
        Err(e) => return error_page(&e),
    };
    let d = &cur.domain;
    let now = app.clock.now();
    let expired = || {
        error_page(&OAuthError::invalid_request(
            "this sign-in request has expired or is unknown",
        ))
    };
    let Some(request_id) = form.get("request") else {
        return expired();
    };
    let row = match app.store.find_auth_request(&d.name, request_id, now).await {
        Ok(Some(r)) => r,
        Ok(None) => return expired(),
        Err(e) => return error_page(&e.into()),
    };
    if !csrf_ok(d, &parts.headers, form.get("csrf"), &row) {
        return error_page(&OAuthError::new(
            ErrorCode::AccessDenied,
            "the form could not be verified; start again",
        ));
    }
    let Ok(mut req) = serde_json::from_str::<AuthorizationRequest>(&row.params) else {
        return expired();
    };
    let client_name = d
        .client(&req.client_id)
        .map(|c| c.name.clone())
        .unwrap_or_default();
    let username = form.get("username").unwrap_or("").trim();
    let password = Zeroizing::new(form.get("password").unwrap_or("").to_string());
    let user = match app.store.find_user(&d.name, username).await {
        Ok(u) => u,
        Err(e) => return error_page(&e.into()),
    };
    let (hash, active) = match &user {
        Some(u) => (u.password_hash.clone(), u.status == "active"),
        None => (None, false),
    };
    let verified = app
        .authenticator
        .hasher()
        .verify(hash.clone().unwrap_or_else(|| DUMMY_HASH.to_string()), password)
        .await;
    let csrf = form.get("csrf").unwrap_or("");
    let user = match user {
        Some(u) if verified && active && hash.is_some() => u,
        _ => {
            tracing::info!(domain = %d.name, "sign-in failed");
            return login_page(
                d,
                &client_name,
                &row.id,
                csrf,
                username,
                Some(FAILED),
                StatusCode::UNAUTHORIZED,
            );
        }
    };
    let (session, cookie) = match start_session(&app, d, &user.id, form.get("remember").is_some()).await {
        Ok(s) => s,
        Err(e) => return error_page(&e),
    };
    tracing::info!(domain = %d.name, user.id = %user.id, "signed in");
    // The person has just signed in: prompt=login and max_age are satisfied.
    req.prompt.retain(|p| p != "login");
    let mut resp = proceed(&app, &cur, &parts.headers, req, Some(session), Some(row), true).await;
    if let Some(c) = cookie {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    resp
}
