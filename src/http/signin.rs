//! `POST {issuer}/signin`: the sign-in form, with throttling per account and per client address.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use zeroize::Zeroizing;

use super::extract::{CurrentDomain, peer_of};
use super::pages::{
    error_page, expired_request, login_page, parse_pending, proceed, read_form, start_session,
    unverified_form,
};
use crate::app::AppState;
use crate::oauth::password::{Attempt, PasswordCheck, buckets, check_password_read, still_valid};
use crate::store::signin::SignInStore;

/// One message for an unknown user, a wrong password, and a disabled user.
const FAILED: &str = "The username or password is incorrect.";
/// The answer when too many sign-ins are being checked at once (nobody's failure).
const BUSY: &str = "Too many sign-ins at once. Try again in a moment.";

/// Checks the credentials, starts the session and moves the request on (303 to the client).
pub async fn post_signin(State(app): State<AppState>, cur: CurrentDomain, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let d = &cur.domain;
    let now = app.clock.now();
    let form = match read_form(&app, body, &[]).await {
        Ok(f) => f,
        Err(page) => return page,
    };
    let username = form.get("username").unwrap_or("").trim();
    let peer = peer_of(&app, &parts);
    // One read: the pending request, and the user with the locks of its throttling buckets.
    let Some(request_id) = form.get("request") else {
        return expired_request();
    };
    let keys = buckets(d, username, &peer.address).map(|b| b.key);
    let read = app
        .store
        .find_sign_in(&d.name, request_id, now, username, [&keys[0], &keys[1]])
        .await;
    let (row, user_and_locks) = match read {
        Ok(r) => r,
        Err(e) => return error_page(&e.into()),
    };
    let Some((row, mut req)) = parse_pending(row) else {
        return expired_request();
    };
    if let Some(page) = unverified_form(d, &parts.headers, &form, &row) {
        return page;
    }
    let client_name = d
        .client(&req.client_id)
        .map(|c| c.name.clone())
        .unwrap_or_default();
    let password = Zeroizing::new(form.get("password").unwrap_or("").to_string());
    let csrf = form.get("csrf").unwrap_or("");
    let retry = |message: &str, status: StatusCode| {
        login_page(d, &client_name, &row.id, csrf, username, Some(message), status)
    };

    let attempt = Attempt {
        domain: d,
        gate: &app.gate,
        username,
        peer: &peer,
        client_id: &req.client_id,
        now,
    };
    let checked = check_password_read(
        &app.store,
        app.authenticator.hasher(),
        &app.audit_queue,
        &attempt,
        password,
        user_and_locks,
    )
    .await;
    let user = match checked {
        Ok(PasswordCheck::Valid(u)) => u,
        Ok(PasswordCheck::Locked(locked)) => {
            let message = format!("Too many failed sign-ins. Try again in {}.", wait_text(locked));
            let mut resp = retry(&message, StatusCode::TOO_MANY_REQUESTS);
            if let Ok(v) = HeaderValue::from_str(&locked.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return resp;
        }
        Ok(PasswordCheck::Failed) => return retry(FAILED, StatusCode::UNAUTHORIZED),
        Ok(PasswordCheck::Busy) => {
            let mut resp = retry(BUSY, StatusCode::SERVICE_UNAVAILABLE);
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return resp;
        }
        Err(e) => return error_page(&e.into()),
    };
    let remember = form.get("remember").is_some();
    let (session, cookie) = match start_session(&app, d, &parts.headers, &user.id, remember).await {
        Ok(s) => s,
        Err(e) => return error_page(&e),
    };
    // A new password or a disabled account that landed while the password was being checked:
    // the session just written must not outlive it (nor when that cannot be read: a store error).
    let valid = still_valid(&app.store, &app.audit_queue, &attempt, &user).await;
    if !matches!(valid, Ok(true)) {
        let ended = crate::oauth::logout::end_session(&app.store, d, &session, now).await;
        if let Ok((_, true)) = ended {
            crate::app::deliver_logouts_soon(&app);
        }
        return match (valid, ended) {
            (Err(e), _) => error_page(&e.into()),
            (_, Err(e)) => error_page(&e),
            _ => retry(FAILED, StatusCode::UNAUTHORIZED),
        };
    }
    tracing::info!(domain = %d.name, user.id = %user.id, "signed in");
    // The person has just signed in: prompt=login, select_account and max_age are satisfied.
    req.prompt.retain(|p| p != "login" && p != "select_account");
    let mut resp = proceed(&app, &cur, &parts.headers, req, Some(session), Some(row), true).await;
    if let Some(c) = cookie {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    resp
}

/// How long a pause lasts, for a page: "45 seconds", "3 minutes".
pub fn wait_text(secs: i64) -> String {
    if secs < 90 {
        format!("{secs} seconds")
    } else {
        format!("{} minutes", (secs + 59) / 60)
    }
}
