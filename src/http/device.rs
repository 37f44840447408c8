//! `GET|POST {issuer}/device`: the verification page of the device authorization grant
//! (RFC 8628 s3.3). The person types the user code, signs in on the usual sign-in page, sees
//! which client asks for what, and approves or denies with a CSRF-protected form.

use askama::Template;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;

use super::extract::{CurrentDomain, peer_of};
use super::pages::{
    SIGNED_IN_ANEW, bound_csrf, csrf_cookie, csrf_token, current_session, ensure_pending, error_page,
    login_page, page, pending, pending_form, read_form, require_session, scope_description, see_other,
    shown_for, with_cookie,
};
use super::signin::wait_text;
use crate::app::AppState;
use crate::crypto::secrets::ct_eq;
use std::sync::Arc;

use crate::config::DEVICE_CODE_GRANT;
use crate::domain::{Client, Domain, paths};
use crate::error::{ErrorCode, OAuthError};
use crate::oauth::authorize::{AuthorizationRequest, redirect_with};
use crate::oauth::device::{
    Typist, UserCodeCheck, check_user_code, decide, format_user_code, normalize_user_code,
};
use crate::oauth::params::Params;
use crate::store::device::{Approval, DeviceStore, status};
use crate::store::signin::{AuthRequestRow, SessionRow, SignInStore};
use crate::views::{ConsentScope, DeviceConfirm, DeviceDonePage, DevicePage};

const EXPIRED_REQUEST: &str = "this request has expired or is unknown; start again";
const UNKNOWN: &str = "That code is not right. Check the code shown on your device and try again.";
const EXPIRED: &str = "That code has expired. Start again on your device to get a new one.";
const BUSY: &str = "Too many codes are being checked at once. Try again in a moment.";
const DECIDED: &str = "That code has already been used. Start again on your device to get a new one.";

/// `GET {issuer}/device[?user_code=...]`: the code form (`verification_uri_complete` only fills
/// it in; RFC 8628 s3.3.1: the person still submits it and confirms). `?request=ID`: the
/// confirmation of a code already entered (reached by 303), or the sign-in page first.
pub async fn get_device(State(app): State<AppState>, cur: CurrentDomain, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    let d = &cur.domain;
    let query = Params::parse(parts.uri.query().unwrap_or("").as_bytes(), &[]).unwrap_or_default();
    if let Some(id) = query.get("request") {
        return confirmation(&app, d, &parts.headers, id).await;
    }
    let (csrf, set) = csrf_token(d, &parts.headers);
    let typed = query.get("user_code").unwrap_or("");
    with_cookie(code_page(d, &csrf, typed, None, StatusCode::OK), set)
}

/// `POST {issuer}/device`: a typed user code (`user_code`), or the decision on a confirmation
/// (`request`, `decision`).
pub async fn post_device(State(app): State<AppState>, cur: CurrentDomain, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let form = match read_form(&app, body, &[]).await {
        Ok(f) => f,
        Err(page) => return page,
    };
    if form.get("request").is_some() {
        return post_decision(&app, &cur.domain, &parts.headers, &form).await;
    }
    let address = peer_of(&app, &parts).address;
    post_user_code(&app, &cur.domain, &parts.headers, &form, &address).await
}

/// Looks the code up within the guessing budget; a pending one becomes a pending request of this
/// browser, confirmed at `GET /device?request=ID` (after sign-in when needed).
async fn post_user_code(
    app: &AppState,
    d: &Domain,
    headers: &HeaderMap,
    form: &Params,
    address: &str,
) -> Response {
    // The form's token must be this browser's CSRF cookie (double submit).
    let browser = csrf_cookie(d, headers).filter(|c| {
        form.get("csrf")
            .is_some_and(|f| ct_eq(c.as_bytes(), f.as_bytes()))
    });
    let Some(csrf) = browser else {
        return error_page(&OAuthError::new(
            ErrorCode::AccessDenied,
            "the form could not be verified; start again",
        ));
    };
    let typed = form.get("user_code").unwrap_or("");
    let now = app.clock.now();
    let retry = |message: &str, status: StatusCode| code_page(d, &csrf, typed, Some(message), status);
    let by = Typist {
        browser: &csrf,
        address,
    };
    let row = match check_user_code(&app.store, &app.kek, &app.gate, d, typed, &by, now).await {
        Ok(UserCodeCheck::Pending(row)) => *row,
        Ok(UserCodeCheck::Locked(secs)) => {
            let message = format!("Too many wrong codes. Try again in {}.", wait_text(secs));
            let mut resp = retry(&message, StatusCode::TOO_MANY_REQUESTS);
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return resp;
        }
        Ok(UserCodeCheck::Busy) => {
            let mut resp = retry(BUSY, StatusCode::SERVICE_UNAVAILABLE);
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return resp;
        }
        Ok(UserCodeCheck::Unknown) => return retry(UNKNOWN, StatusCode::BAD_REQUEST),
        Ok(UserCodeCheck::Expired) => return retry(EXPIRED, StatusCode::BAD_REQUEST),
        Ok(UserCodeCheck::Decided) => return retry(DECIDED, StatusCode::BAD_REQUEST),
        Err(e) => return error_page(&e.into()),
    };
    // The code as the device shows it, sealed: the confirmation shows it back. Without it (the
    // key cannot seal) the confirmation goes on, without the code.
    let sealed = normalize_user_code(typed).and_then(|code| {
        app.kek
            .seal(format_user_code(&code).as_bytes(), row.hash.as_bytes())
            .inspect_err(|e| tracing::warn!(error.cause = %e, "cannot seal a user code"))
            .ok()
    });
    let req = AuthorizationRequest {
        client_id: row.client_id.clone(),
        scopes: row
            .scope
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        device: Some(row.hash),
        device_user_code: sealed,
        ..AuthorizationRequest::default()
    };
    match ensure_pending(app, d, headers, &req, None).await {
        Ok((pending, _, set)) => with_cookie(
            see_other(&redirect_with(
                &d.url(paths::DEVICE_PAGE),
                &[("request", &pending.id)],
            )),
            set,
        ),
        Err(e) => error_page(&e),
    }
}

/// The request's client while the configuration still has it enabled with the device grant.
fn device_client<'d>(d: &'d Domain, req: &AuthorizationRequest) -> Option<&'d Arc<Client>> {
    d.client(&req.client_id)
        .filter(|c| c.enabled && c.grant_types.contains(DEVICE_CODE_GRANT))
}

fn no_longer_registered_device() -> OAuthError {
    OAuthError::invalid_request("the device's client is no longer registered; start again on the device")
}

/// The sign-in page for a pending device request, or its confirmation once signed in.
async fn confirmation(app: &AppState, d: &Domain, headers: &HeaderMap, id: &str) -> Response {
    let (row, req) = match pending(app, d, Some(id)).await {
        Ok(p) if p.1.device.is_some() => p,
        Ok(_) => return error_page(&OAuthError::invalid_request(EXPIRED_REQUEST)),
        Err(page) => return page,
    };
    // The request is bound to the browser that typed the code: another one (a link passed on)
    // does not see the code, the client or the scopes.
    let Some(csrf) = bound_csrf(d, headers, &row) else {
        return error_page(&OAuthError::invalid_request(EXPIRED_REQUEST));
    };
    let Some(client) = device_client(d, &req) else {
        return error_page(&no_longer_registered_device());
    };
    let session = match current_session(app, d, headers).await {
        Ok(Some(s)) => s,
        Ok(None) => return login_page(d, &client.name, &row.id, &csrf, "", None, StatusCode::OK),
        Err(e) => return error_page(&e),
    };
    match no_longer_pending(app, d, &req).await {
        Ok(None) => {}
        Ok(Some(message)) => return code_page(d, &csrf, "", Some(message), StatusCode::BAD_REQUEST),
        Err(page) => return page,
    }
    confirm_page(app, d, &req, &session, &row, &csrf, None).await
}

/// Records the person's decision on a pending device request (single use of the request).
async fn post_decision(app: &AppState, d: &Domain, headers: &HeaderMap, form: &Params) -> Response {
    let (row, req) = match pending_form(app, d, headers, form).await {
        Ok(p) => p,
        Err(page) => return page,
    };
    let Some(hash) = req.device.clone() else {
        return error_page(&OAuthError::invalid_request(EXPIRED_REQUEST));
    };
    let approve = match form.get("decision") {
        Some("approve") => true,
        Some("deny") => false,
        _ => return error_page(&OAuthError::invalid_request("choose Allow or Deny")),
    };
    let session = match require_session(app, d, headers).await {
        Ok(s) => s,
        Err(page) => return page,
    };
    // A reload may have removed the client, or its device grant, since the page was shown:
    // then nothing is approved or recorded for it.
    if device_client(d, &req).is_none() {
        return error_page(&no_longer_registered_device());
    }
    // A page shown for another session (the browser signed in again since, perhaps as someone
    // else) decides nothing: the page again, for the session there is now.
    if !shown_for(form, &session) {
        let csrf = form.get("csrf").unwrap_or_default();
        let notice = Some(SIGNED_IN_ANEW);
        return confirm_page(app, d, &req, &session, &row, csrf, notice).await;
    }
    match app.store.take_auth_request(&d.name, &row.id).await {
        Ok(true) => {}
        Ok(false) => return error_page(&OAuthError::invalid_request(EXPIRED_REQUEST)),
        Err(e) => return error_page(&e.into()),
    }
    let approval = approve.then(|| Approval {
        user_id: session.user_id.clone(),
        sid: session.sid.clone(),
        auth_time: session.auth_time,
        amr: session.amr.clone(),
        session_expires_at: session.expires_at,
    });
    let now = app.clock.now();
    match decide(&app.store, d, &hash, approval.as_ref(), now).await {
        Ok(true) => {}
        Ok(false) => {
            let csrf = form.get("csrf").unwrap_or("");
            return match no_longer_pending(app, d, &req).await {
                Ok(message) => code_page(
                    d,
                    csrf,
                    "",
                    Some(message.unwrap_or(EXPIRED)),
                    StatusCode::BAD_REQUEST,
                ),
                Err(page) => page,
            };
        }
        Err(e) => return error_page(&e.into()),
    }
    tracing::info!(domain = %d.name, client_id = %req.client_id, user.id = %session.user_id, approved = approve, "device authorization decided");
    let client_name = d
        .client(&req.client_id)
        .map(|c| c.name.clone())
        .unwrap_or_default();
    let view = DeviceDonePage {
        client_name: &client_name,
        approved: approve,
    };
    page(StatusCode::OK, view.render(), None)
}

/// Why the device authorization of `req` can no longer be decided, if it cannot; a store that
/// cannot be read is an error page of its own (503), not an expired code.
async fn no_longer_pending(
    app: &AppState,
    d: &Domain,
    req: &AuthorizationRequest,
) -> Result<Option<&'static str>, Response> {
    let Some(hash) = req.device.as_deref() else {
        return Ok(Some(EXPIRED));
    };
    match app.store.find_device_code(&d.name, hash).await {
        Ok(Some(r)) if r.expires_at <= app.clock.now() => Ok(Some(EXPIRED)),
        Ok(Some(r)) if r.status != status::PENDING => Ok(Some(DECIDED)),
        Ok(Some(_)) => Ok(None),
        Ok(None) => Ok(Some(EXPIRED)),
        Err(e) => Err(error_page(&e.into())),
    }
}

/// The user code form.
fn code_page(d: &Domain, csrf: &str, typed: &str, error: Option<&str>, status: StatusCode) -> Response {
    let action = d.url(paths::DEVICE_PAGE);
    let view = DevicePage {
        action: &action,
        csrf,
        user_code: typed,
        error,
        confirm: None,
    };
    page(status, view.render(), None)
}

/// The confirmation: who is signed in, which client asks, and for which scopes.
async fn confirm_page(
    app: &AppState,
    d: &Domain,
    req: &AuthorizationRequest,
    s: &SessionRow,
    row: &AuthRequestRow,
    csrf: &str,
    notice: Option<&str>,
) -> Response {
    let client_name = d
        .client(&req.client_id)
        .map(|c| c.name.clone())
        .unwrap_or_default();
    let username = match app.store.find_user_by_id(&d.name, &s.user_id).await {
        Ok(Some(u)) => u.username,
        _ => String::new(),
    };
    let scopes = req
        .scopes
        .iter()
        .map(|name| ConsentScope {
            name: name.clone(),
            description: scope_description(d, name),
            required: true,
        })
        .collect();
    let user_code = match (&req.device, &req.device_user_code) {
        (Some(hash), Some(sealed)) => app
            .kek
            .open(sealed, hash.as_bytes())
            .ok()
            .and_then(|code| String::from_utf8(code.to_vec()).ok()),
        _ => None,
    };
    let action = d.url(paths::DEVICE_PAGE);
    let view = DevicePage {
        action: &action,
        csrf,
        user_code: "",
        error: None,
        confirm: Some(DeviceConfirm {
            request_id: &row.id,
            client_name: &client_name,
            username: &username,
            session: &s.sid,
            notice,
            user_code: user_code.as_deref(),
            scopes,
        }),
    };
    page(StatusCode::OK, view.render(), None)
}
