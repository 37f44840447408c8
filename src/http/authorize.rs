//! `GET|POST /oauth2/v1/authorize` (RFC 6749 s3.1, OpenID Connect Core s3.1.2).

use axum::extract::{Request, State};
use axum::http::Method;
use axum::response::Response;

use super::extract::CurrentDomain;
use super::pages::{current_session, error_page, error_to_client, is_the_named_user, proceed};
use crate::app::AppState;
use crate::error::OAuthError;
use crate::oauth::authorize::{AuthorizeError, parse_request, validate};
use crate::oauth::id_token::hint_subject;

/// Handles an authorization request by GET (query) or POST (form body).
pub async fn authorize(State(app): State<AppState>, cur: CurrentDomain, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    // RFC 6749 s3.1: the endpoint must support GET and may support POST (a form body).
    let params = if parts.method == Method::POST {
        if !super::extract::is_form(&parts.headers) {
            return error_page(&OAuthError::invalid_request("the request body must be a form"));
        }
        super::response::read_body(body, &app)
            .await
            .and_then(|b| parse_request(&b))
    } else {
        parse_request(parts.uri.query().unwrap_or("").as_bytes())
    };
    let mut req = match validate(&cur.domain, params) {
        Ok(r) => r,
        Err(AuthorizeError::Page(e)) => return error_page(&e),
        Err(AuthorizeError::Redirect(r, e)) => return error_to_client(&cur.domain, &r, &e),
    };
    let mut session = match current_session(&app, &cur.domain, &parts.headers).await {
        Ok(s) => s,
        Err(e) => return error_page(&e),
    };
    // OpenID Connect Core s3.1.2.1: id_token_hint names the user the client expects, as a `sub`
    // value in its claims request does (s3.1.2.2).
    if let Some(hint) = &req.id_token_hint {
        let keys = cur.keys_for(&app, Some(hint)).await;
        match hint_subject(&cur.domain, &keys, &req.client_id, hint) {
            Ok(sub) if req.subject.as_ref().is_some_and(|s| *s != sub) => {
                let e = OAuthError::invalid_request(
                    "id_token_hint and the sub of the claims request name different users",
                );
                return error_to_client(&cur.domain, &req, &e);
            }
            Ok(sub) => req.subject = Some(sub),
            Err(e) => return error_to_client(&cur.domain, &req, &e),
        }
    }
    // The session of someone else counts as none: the person is asked to sign in, and
    // prompt=none answers login_required.
    if session.as_ref().is_some_and(|s| !is_the_named_user(&req, s)) {
        session = None;
    }
    proceed(&app, &cur, &parts.headers, req, session, None, false).await
}
