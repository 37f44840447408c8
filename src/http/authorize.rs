//! `GET|POST /oauth2/v1/authorize` (RFC 6749 s3.1, OpenID Connect Core s3.1.2).

use axum::extract::{Request, State};
use axum::http::Method;
use axum::response::Response;

use super::extract::CurrentDomain;
use super::pages::{
    RELAYED, current_session, error_page, error_to_client, has_session_cookie, is_the_named_user, proceed,
    relay,
};
use crate::app::AppState;
use crate::domain::paths;
use crate::error::OAuthError;
use crate::oauth::authorize::{AuthorizeError, parse_request, validate};
use crate::oauth::id_token::hint_subject;

/// Handles an authorization request by GET (query) or POST (form body).
pub async fn authorize(State(app): State<AppState>, cur: CurrentDomain, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    // RFC 6749 s3.1: the endpoint must support GET and may support POST (a form body).
    let mut posted = None;
    let params = if parts.method == Method::POST {
        if !super::extract::is_form(&parts.headers) {
            return error_page(&OAuthError::invalid_request("the request body must be a form"));
        }
        super::response::read_body(body, &app).await.and_then(|b| {
            let p = parse_request(&b);
            posted = Some(b);
            p
        })
    } else {
        parse_request(parts.uri.query().unwrap_or("").as_bytes())
    };
    let mut req = match validate(&cur.domain, params) {
        Ok(r) => r,
        Err(AuthorizeError::Page(e)) => return error_page(&e),
        Err(AuthorizeError::Redirect(r, e)) => return error_to_client(&cur.domain, &r, &e),
    };
    // OpenID Connect Core s3.1.2.1: POST works as GET. A POST from the client's own site does
    // not carry the SameSite=Lax cookies, so the session would not be seen (prompt=none would
    // answer login_required to someone signed in) and a new CSRF cookie would replace the
    // browser's. Our page posts the same request again, a same-site POST that carries them;
    // that POST is marked, so it is answered even when the browser has no cookie.
    if let Some(body) = &posted
        && !has_session_cookie(&cur.domain, &parts.headers)
    {
        let pairs: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
        let fields: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        if !pairs.iter().any(|(k, _)| k == RELAYED)
            && let Some(page) = relay(
                &parts.headers,
                &cur.domain.url(paths::AUTHORIZE),
                &fields,
                "Press Continue to go on to the sign-in.",
            )
        {
            return page;
        }
    }
    // RFC 6749 s4.1.2.1: with the client and its redirect URI verified, a request that fails
    // for any other reason (the store's too) is answered at the client.
    let mut session = match current_session(&app, &cur.domain, &parts.headers).await {
        Ok(s) => s,
        Err(e) => return error_to_client(&cur.domain, &req, &e),
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
