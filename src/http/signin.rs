//! `POST {issuer}/signin`: the sign-in form, with throttling per account and per client address.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use zeroize::Zeroizing;

use super::extract::CurrentDomain;
use super::pages::{error_page, login_page, pending_form, proceed, read_form, start_session};
use crate::app::AppState;
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
    let d = &cur.domain;
    let now = app.clock.now();
    let form = match read_form(&app, body, &[]).await {
        Ok(f) => f,
        Err(page) => return page,
    };
    let (row, mut req) = match pending_form(&app, d, &parts.headers, &form).await {
        Ok(p) => p,
        Err(page) => return page,
    };
    let client_name = d
        .client(&req.client_id)
        .map(|c| c.name.clone())
        .unwrap_or_default();
    let username = form.get("username").unwrap_or("").trim();
    let password = Zeroizing::new(form.get("password").unwrap_or("").to_string());
    let csrf = form.get("csrf").unwrap_or("");
    let retry = |message: &str, status: StatusCode| {
        login_page(d, &client_name, &row.id, csrf, username, Some(message), status)
    };

    // Throttling per account and per client address; the same for known and unknown names, and
    // decided before any password is checked.
    let limits = &d.config;
    let buckets = [
        (format!("u:{}", username.to_lowercase()), limits.lockout_threshold),
        (
            format!("a:{}", client_address(&app, &parts)),
            limits.address_lockout_threshold,
        ),
    ];
    let mut locked = 0;
    for (bucket, _) in &buckets {
        match app.store.login_locked_for(&d.name, bucket, now).await {
            Ok(secs) => locked = locked.max(secs),
            Err(e) => return error_page(&e.into()),
        }
    }
    if locked > 0 {
        tracing::info!(domain = %d.name, "sign-in refused: locked after repeated failures");
        let message = format!("Too many failed sign-ins. Try again in {}.", wait_text(locked));
        let mut resp = retry(&message, StatusCode::TOO_MANY_REQUESTS);
        if let Ok(v) = HeaderValue::from_str(&locked.to_string()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return resp;
    }

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
    let user = match user {
        Some(u) if verified && active && hash.is_some() => u,
        _ => {
            tracing::info!(domain = %d.name, "sign-in failed");
            for (bucket, threshold) in &buckets {
                let r = app
                    .store
                    .record_login_failure(
                        &d.name,
                        bucket,
                        now,
                        *threshold,
                        limits.lockout_duration.0,
                        limits.lockout_max.0,
                    )
                    .await;
                if let Err(e) = r {
                    return error_page(&e.into());
                }
            }
            return retry(FAILED, StatusCode::UNAUTHORIZED);
        }
    };
    // The account's failures are forgotten; the address's are not (one good account must not
    // reset the count of an address guessing others).
    if let Err(e) = app.store.clear_login_failures(&d.name, &buckets[0].0).await {
        return error_page(&e.into());
    }
    let remember = form.get("remember").is_some();
    let (session, cookie) = match start_session(&app, d, &user.id, remember).await {
        Ok(s) => s,
        Err(e) => return error_page(&e),
    };
    tracing::info!(domain = %d.name, user.id = %user.id, "signed in");
    // The person has just signed in: prompt=login, select_account and max_age are satisfied.
    req.prompt.retain(|p| p != "login" && p != "select_account");
    let mut resp = proceed(&app, &cur, &parts.headers, req, Some(session), Some(row), true).await;
    if let Some(c) = cookie {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    resp
}

/// The client's address: the last entry of the trusted proxy's header when one is configured,
/// else the peer address of the connection.
fn client_address(app: &AppState, parts: &Parts) -> String {
    if let Some(name) = &app.client_address_header
        && let Some(last) = parts
            .headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .rfind(|v| !v.is_empty())
    {
        return last.to_string();
    }
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_default()
}

/// "45 seconds", "3 minutes".
fn wait_text(secs: i64) -> String {
    if secs < 90 {
        format!("{secs} seconds")
    } else {
        format!("{} minutes", (secs + 59) / 60)
    }
}
