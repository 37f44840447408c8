//! `POST {issuer}/consent`: the consent form.

use axum::extract::{Request, State};
use axum::response::Response;

use super::extract::CurrentDomain;
use super::pages::{
    consent_page, csrf_cookie, csrf_ok, current_session, error_page, error_to_client, issue_code,
};
use crate::app::AppState;
use crate::error::{ErrorCode, OAuthError};
use crate::oauth::authorize::AuthorizationRequest;
use crate::oauth::params::Params;
use crate::store::signin::SignInStore;

/// `GET {issuer}/consent?request=ID`: the consent page of a pending request (reached by 303
/// after sign-in).
pub async fn get_consent(State(app): State<AppState>, cur: CurrentDomain, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    let d = &cur.domain;
    let query = Params::parse(parts.uri.query().unwrap_or("").as_bytes(), &[]).unwrap_or_default();
    let expired = || {
        error_page(&OAuthError::invalid_request(
            "this request has expired or is unknown",
        ))
    };
    let row = match query.get("request") {
        Some(id) => match app.store.find_auth_request(&d.name, id, app.clock.now()).await {
            Ok(Some(r)) => r,
            Ok(None) => return expired(),
            Err(e) => return error_page(&e.into()),
        },
        None => return expired(),
    };
    let Some(csrf) = csrf_cookie(d, &parts.headers) else {
        return expired();
    };
    let session = match current_session(&app, d, &parts.headers).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            return error_page(&OAuthError::invalid_request(
                "you are no longer signed in; start again",
            ));
        }
        Err(e) => return error_page(&e),
    };
    let Ok(req) = serde_json::from_str::<AuthorizationRequest>(&row.params) else {
        return expired();
    };
    consent_page(&app, d, &req, &session, &row, &csrf).await
}

/// Records the decision: deny answers access_denied; approve stores the consent (for the
/// scopes left ticked) and issues the code.
pub async fn post_consent(State(app): State<AppState>, cur: CurrentDomain, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let form = match axum::body::to_bytes(body, app.max_body_bytes).await {
        Ok(b) => Params::parse(&b, &["scope"]),
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
            "this request has expired or is unknown",
        ))
    };
    let row = match form.get("request") {
        Some(id) => match app.store.find_auth_request(&d.name, id, now).await {
            Ok(Some(r)) => r,
            Ok(None) => return expired(),
            Err(e) => return error_page(&e.into()),
        },
        None => return expired(),
    };
    if !csrf_ok(d, &parts.headers, form.get("csrf"), &row) {
        return error_page(&OAuthError::new(
            ErrorCode::AccessDenied,
            "the form could not be verified; start again",
        ));
    }
    let session = match current_session(&app, d, &parts.headers).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            return error_page(&OAuthError::invalid_request(
                "you are no longer signed in; start again",
            ));
        }
        Err(e) => return error_page(&e),
    };
    let Ok(mut req) = serde_json::from_str::<AuthorizationRequest>(&row.params) else {
        return expired();
    };
    // Single use of the pending request.
    match app.store.take_auth_request(&d.name, &row.id).await {
        Ok(true) => {}
        Ok(false) => return expired(),
        Err(e) => return error_page(&e.into()),
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
    let previous = app
        .store
        .find_consent(&d.name, &session.user_id, &req.client_id)
        .await
        .ok()
        .flatten();
    let mut all: Vec<String> = previous
        .map(|p| p.split(' ').map(str::to_string).collect())
        .unwrap_or_default();
    for s in &req.scopes {
        if !all.contains(s) {
            all.push(s.clone());
        }
    }
    if let Err(e) = app
        .store
        .upsert_consent(&d.name, &session.user_id, &req.client_id, &all.join(" "), now)
        .await
    {
        return error_page(&e.into());
    }
    issue_code(&app, d, &req, &session).await
}
