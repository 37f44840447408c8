//! `GET|POST {issuer}/consent`: the consent page and its form.

use axum::extract::{Request, State};
use axum::response::Response;

use super::extract::CurrentDomain;
use super::pages::{
    SIGNED_IN_ANEW, consent_page, csrf_cookie, error_page, error_to_client, issue_code, no_longer_registered,
    pending, pending_form, proceed, read_form, registered_client, require_session, shown_for,
    taken_request_failed,
};
use crate::app::AppState;
use crate::error::{ErrorCode, OAuthError};
use crate::oauth::authorize::{record_consent, signed_in_as_asked};
use crate::oauth::params::Params;
use crate::store::signin::SignInStore;

/// The answer to a request that is missing, unknown, expired or not for this page.
const EXPIRED: &str = "this request has expired or is unknown; start again";

/// `GET {issuer}/consent?request=ID`: the consent page of a pending request (reached by 303
/// after sign-in).
pub async fn get_consent(State(app): State<AppState>, cur: CurrentDomain, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    let d = &cur.domain;
    let query = Params::parse(parts.uri.query().unwrap_or("").as_bytes(), &[]).unwrap_or_default();
    let (row, req) = match pending(&app, d, query.get("request")).await {
        Ok(p) if p.1.device.is_none() => p,
        // A device authorization is confirmed on the device page, never here.
        Ok(_) => return error_page(&OAuthError::invalid_request(EXPIRED)),
        Err(page) => return page,
    };
    let Some(csrf) = csrf_cookie(d, &parts.headers) else {
        return error_page(&OAuthError::invalid_request(EXPIRED));
    };
    let session = match require_session(&app, d, &parts.headers).await {
        Ok(s) => s,
        Err(page) => return page,
    };
    if !signed_in_as_asked(&req, session.auth_time, row.created_at) {
        return proceed(&app, &cur, &parts.headers, req, None, Some(row), false).await;
    }
    consent_page(&app, d, &req, &session, &row, &csrf, None).await
}

/// Records the decision: deny answers access_denied; approve stores the consent (for the
/// scopes left ticked) and issues the code.
pub async fn post_consent(State(app): State<AppState>, cur: CurrentDomain, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let d = &cur.domain;
    let form = match read_form(&app, body, &["scope"]).await {
        Ok(f) => f,
        Err(page) => return page,
    };
    let (row, mut req) = match pending_form(&app, d, &parts.headers, &form).await {
        Ok(p) if p.1.device.is_none() => p,
        Ok(_) => return error_page(&OAuthError::invalid_request(EXPIRED)),
        Err(page) => return page,
    };
    let session = match require_session(&app, d, &parts.headers).await {
        Ok(s) => s,
        Err(page) => return page,
    };
    // The request may have asked for a sign-in this session has not made (prompt=login, a
    // max_age it has outlived): the sign-in page first, the request kept.
    if !signed_in_as_asked(&req, session.auth_time, row.created_at) {
        return proceed(&app, &cur, &parts.headers, req, None, Some(row), false).await;
    }
    // A page shown for another session (the browser signed in again since, perhaps as someone
    // else) decides nothing: the page again, for the session there is now.
    if !shown_for(&form, &session) {
        let csrf = form.get("csrf").unwrap_or_default();
        return consent_page(&app, d, &req, &session, &row, csrf, Some(SIGNED_IN_ANEW)).await;
    }
    // Single use of the pending request.
    match app.store.take_auth_request(&d.name, &row.id).await {
        Ok(true) => {}
        Ok(false) => {
            return error_page(&OAuthError::invalid_request(EXPIRED));
        }
        Err(e) => return error_page(&e.into()),
    }
    // A reload since the page was shown may have removed the client or its redirect URI: then no
    // consent is recorded and nothing is sent there.
    if registered_client(d, &req).is_none() {
        return error_page(&no_longer_registered());
    }
    if form.get("decision") != Some("approve") {
        let err = OAuthError::new(ErrorCode::AccessDenied, "the person denied the request");
        return error_to_client(d, &req, &err);
    }
    // The person may untick optional scopes; openid stays when it was asked for.
    let ticked = form.all("scope");
    req.scopes
        .retain(|s| s == "openid" || ticked.iter().any(|t| t == s));
    if req.scopes.is_empty() {
        let err = OAuthError::new(ErrorCode::AccessDenied, "no scope was allowed");
        return error_to_client(d, &req, &err);
    }
    let now = app.clock.now();
    if let Err(e) = record_consent(
        &app.store,
        &d.name,
        &session.user_id,
        &req.client_id,
        &req.scopes,
        now,
    )
    .await
    {
        return error_to_client(d, &req, &taken_request_failed(e));
    }
    issue_code(&app, d, &req, &session).await
}
