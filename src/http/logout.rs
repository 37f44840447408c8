//! `GET|POST {issuer}/oauth2/v1/userlogout`: OpenID Connect RP-Initiated Logout 1.0. With an
//! `id_token_hint` naming the browser's session, the person is signed out at once; otherwise a
//! CSRF-protected page asks first. The signed-out page loads the front-channel logout iframes,
//! then goes back to the client's registered post_logout_redirect_uri (with `state`).

use askama::Template;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::extract::CurrentDomain;
use super::pages::{
    RELAYED, browser_session, clear_session_cookie, csrf_cookie, csrf_token, error_page, has_session_cookie,
    page, page_with_frames, read_form, relay, see_other, with_cookie,
};
use crate::app::{AppState, deliver_logouts_soon};
use crate::crypto::secrets::ct_eq;
use crate::domain::{Domain, paths};
use crate::error::{ErrorCode, OAuthError};
use crate::oauth::authorize::redirect_with;
use crate::oauth::logout::{self, EndSessionRequest};
use crate::oauth::params::Params;
use crate::store::signin::{SessionRow, SignInStore};
use crate::views::LogoutPage;

/// `GET {issuer}/oauth2/v1/userlogout`: the end-session request in the query.
pub async fn get_end_session(State(app): State<AppState>, cur: CurrentDomain, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    let query = match Params::parse(parts.uri.query().unwrap_or("").as_bytes(), &[]) {
        Ok(q) => q,
        Err(e) => return error_page(&e),
    };
    end_session_request(&app, &cur, &parts.headers, &query).await
}

/// `POST {issuer}/oauth2/v1/userlogout`: the end-session request as a form (RP-Initiated Logout
/// 1.0 s2), or the person's answer on the confirmation page (with `csrf`).
pub async fn post_end_session(State(app): State<AppState>, cur: CurrentDomain, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let form = match read_form(&app, body, &[]).await {
        Ok(f) => f,
        Err(page) => return page,
    };
    if form.get("csrf").is_some() || form.get("logout").is_some() {
        return confirmed(&app, &cur, &parts.headers, &form).await;
    }
    // s2: an RP may POST the request, typically from its own site, and a cross-site POST does
    // not carry the session cookie (SameSite=Lax). The browser gets a page of ours that posts
    // the same request again: a same-site POST, which carries the cookie, so the session is
    // found and ended. (A redirect to GET carries it too, but with the id_token_hint in the
    // URL, for the browser's history and the logs of every proxy on the way: only where the
    // page cannot serve, in a frame or for a value with a line break.) The second POST is
    // marked, so that a browser without the cookie is answered, not relayed again.
    if !has_session_cookie(&cur.domain, &parts.headers) && form.get(RELAYED).is_none() {
        let carried: Vec<(&str, &str)> = END_SESSION_PARAMETERS
            .iter()
            .filter_map(|&name| form.get(name).map(|v| (name, v)))
            .collect();
        let url = cur.domain.url(paths::END_SESSION);
        return relay(&parts.headers, &url, &carried, "Press Continue to sign out.")
            .unwrap_or_else(|| see_other(&redirect_with(&url, &carried)));
    }
    end_session_request(&app, &cur, &parts.headers, &form).await
}

/// The confirmation's notice when the application's request did not validate.
const UNVERIFIED: &str =
    "The application's sign-out request could not be verified, so you will not be sent back to it.";

/// The parameters of an end-session request (RP-Initiated Logout 1.0 s2).
const END_SESSION_PARAMETERS: &[&str] = &[
    "id_token_hint",
    "logout_hint",
    "client_id",
    "post_logout_redirect_uri",
    "state",
    "ui_locales",
];

/// Checks the request; signs out at once when the hint names this browser's session, else asks.
async fn end_session_request(
    app: &AppState,
    cur: &CurrentDomain,
    headers: &HeaderMap,
    p: &Params,
) -> Response {
    let d = &cur.domain;
    let keys = cur.keys_for(app, p.get("id_token_hint")).await;
    // ui_locales and logout_hint are accepted; the pages have one language and one account.
    let req = logout::check_request(
        d,
        &keys,
        p.get("id_token_hint"),
        p.get("client_id"),
        p.get("post_logout_redirect_uri"),
        p.get("state"),
    );
    let session = match browser_session(app, d, headers, true).await {
        Ok(s) => s,
        Err(e) => return error_page(&e),
    };
    // RP-Initiated Logout 1.0 s4: what failed to validate is not used (no redirect, no state,
    // no client named), but the person may still sign out: the confirmation, without them.
    let req = match (req, &session) {
        (Ok(r), _) => r,
        (Err(e), Some(s)) => {
            tracing::info!(domain = %d.name, error = %e.description, "end-session request not verified: asking without it");
            let bare = EndSessionRequest::default();
            return confirm_page(app, d, headers, &bare, s, Some(UNVERIFIED)).await;
        }
        (Err(e), None) => return error_page(&e),
    };
    match session {
        // Nobody to sign out: the person is signed out already.
        None => done(&req, Vec::new()),
        Some(s) if req.hint.as_ref().is_some_and(|h| logout::hint_matches(h, &s)) => {
            sign_out(app, d, &req, &s).await
        }
        Some(s) => confirm_page(app, d, headers, &req, &s, None).await,
    }
}

/// The person's answer on the confirmation page: the CSRF token must be the browser's cookie.
async fn confirmed(app: &AppState, cur: &CurrentDomain, headers: &HeaderMap, form: &Params) -> Response {
    let d = &cur.domain;
    let verified = csrf_cookie(d, headers).is_some_and(|c| {
        form.get("csrf")
            .is_some_and(|f| ct_eq(c.as_bytes(), f.as_bytes()))
    });
    if !verified {
        return error_page(&OAuthError::new(
            ErrorCode::AccessDenied,
            "the form could not be verified; start again",
        ));
    }
    let keys = cur.ring.current();
    // The carried parameters are checked again, as if sent by the client.
    let req = match logout::check_request(
        d,
        &keys,
        None,
        form.get("client_id"),
        form.get("post_logout_redirect_uri"),
        form.get("state"),
    ) {
        Ok(r) => r,
        Err(e) => return error_page(&e),
    };
    let session = match browser_session(app, d, headers, true).await {
        Ok(s) => s,
        Err(e) => return error_page(&e),
    };
    match (form.get("logout"), session) {
        (Some("yes"), Some(s)) => sign_out(app, d, &req, &s).await,
        (Some("yes"), None) => done(&req, Vec::new()),
        _ => {
            let view = LogoutPage {
                confirm: false,
                action: "",
                csrf: "",
                username: "",
                client_name: None,
                client_id: None,
                post_logout_redirect_uri: None,
                state: None,
                signed_out: false,
                frames: Vec::new(),
                redirect: None,
                notice: None,
            };
            page(StatusCode::OK, view.render(), None)
        }
    }
}

/// Ends the session (families, back-channel logouts queued) and shows the signed-out page.
async fn sign_out(app: &AppState, d: &Domain, req: &EndSessionRequest, s: &SessionRow) -> Response {
    let now = app.clock.now();
    let (clients, queued) = match logout::end_session(&app.store, d, s, now).await {
        Ok(r) => r,
        Err(e) => return error_page(&e),
    };
    tracing::info!(domain = %d.name, user.id = %s.user_id, session.sid = %s.sid, client_id = req.client_id.as_deref().unwrap_or(""), "signed out");
    if queued {
        deliver_logouts_soon(app);
    }
    let frames = clients
        .iter()
        .filter_map(|c| d.client(c))
        .filter_map(|c| logout::frontchannel_uri(d, c, &s.sid))
        .collect();
    with_cookie(done(req, frames), clear_session_cookie(d))
}

/// The signed-out page after "sign out everywhere": the front-channel iframes of every client
/// of every session that ended (`served`: sid and client_id pairs), and no redirect.
pub fn signed_out_everywhere(d: &Domain, served: &[(String, String)]) -> Response {
    let frames = served
        .iter()
        .filter_map(|(sid, c)| d.client(c).and_then(|c| logout::frontchannel_uri(d, c, sid)))
        .collect();
    done(&EndSessionRequest::default(), frames)
}

/// After sign-out: straight to the client when there is nothing to load; otherwise the page
/// with the front-channel iframes, going on to the client after a moment.
fn done(req: &EndSessionRequest, frames: Vec<String>) -> Response {
    let location = logout::post_logout_location(req);
    if frames.is_empty()
        && let Some(to) = &location
    {
        return see_other(to);
    }
    let mut origins: Vec<String> = frames.iter().filter_map(|f| origin_of(f)).collect();
    origins.sort_unstable();
    origins.dedup();
    let view = LogoutPage {
        confirm: false,
        action: "",
        csrf: "",
        username: "",
        client_name: None,
        client_id: None,
        post_logout_redirect_uri: None,
        state: None,
        signed_out: true,
        frames,
        redirect: location.as_deref(),
        notice: None,
    };
    page_with_frames(StatusCode::OK, view.render(), None, &origins)
}

/// The confirmation page, carrying the checked parameters.
async fn confirm_page(
    app: &AppState,
    d: &Domain,
    headers: &HeaderMap,
    req: &EndSessionRequest,
    s: &SessionRow,
    notice: Option<&str>,
) -> Response {
    let (csrf, set) = csrf_token(d, headers);
    let username = match app.store.find_user_by_id(&d.name, &s.user_id).await {
        Ok(Some(u)) => u.username,
        _ => String::new(),
    };
    let client = req.client_id.as_deref().and_then(|c| d.client(c));
    let action = d.url(paths::END_SESSION);
    let view = LogoutPage {
        confirm: true,
        action: &action,
        csrf: &csrf,
        username: &username,
        client_name: client.map(|c| c.name.as_str()),
        client_id: req.client_id.as_deref(),
        post_logout_redirect_uri: req.post_logout_redirect_uri.as_deref(),
        state: req.state.as_deref(),
        signed_out: false,
        frames: Vec::new(),
        redirect: None,
        notice,
    };
    with_cookie(page(StatusCode::OK, view.render(), None), set)
}

/// `scheme://host[:port]` of a URI, for the page's frame-src.
fn origin_of(uri: &str) -> Option<String> {
    let u = url::Url::parse(uri).ok()?;
    match u.origin() {
        o @ url::Origin::Tuple(..) => Some(o.ascii_serialization()),
        url::Origin::Opaque(_) => None,
    }
}
