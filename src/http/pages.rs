//! What the sign-in pages share: cookies, page responses, and moving an authorization request
//! on (sign in, consent, or a code back to the client).

use std::sync::Arc;

use askama::Template;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use cookie::{Cookie, SameSite};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::extract::CurrentDomain;
use crate::app::AppState;
use crate::config::ConsentPolicy;
use crate::crypto::secrets::{ct_eq, random_id, random_token, sha256_b64};
use crate::domain::{Client, Domain, paths};
use crate::error::{ErrorCode, OAuthError};
use crate::oauth::authorize::{AuthorizationRequest, Next, error_params, next_step, redirect_with};
use crate::oauth::params::Params;
use crate::store::logout::LogoutStore;
use crate::store::signin::{AuthRequestRow, CodeRow, SessionRow, SignInStore};
use crate::views::{ConsentPage, ConsentScope, ErrorPage, FORM_POST_SCRIPT, FormPostPage, LoginPage};

/// How long a pending authorization request waits for the person.
const REQUEST_LIFETIME: i64 = 1800;

/// Cookie names of a domain: (session, csrf). `__Host-` on every https issuer, with a path or
/// not (its cookies then have `Path=/`; the domain's name in the cookie's keeps domains apart):
/// a sibling subdomain cannot then set one of its own for the browser to send here (a CSRF
/// cookie whose value it knows, to sign a person in as someone else).
fn cookie_names(d: &Domain) -> (String, String) {
    let host_prefix = d.issuer.starts_with("https://");
    let p = if host_prefix { "__Host-" } else { "" };
    (
        format!("{p}ostiary_session_{}", d.name),
        format!("{p}ostiary_csrf_{}", d.name),
    )
}

fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| {
            Cookie::split_parse(v.to_string())
                .filter_map(Result::ok)
                .collect::<Vec<_>>()
        })
        .find(|c| c.name() == name)
        .map(|c| c.value().to_string())
}

fn set_cookie(d: &Domain, name: &str, value: &str, max_age: Option<i64>) -> Option<HeaderValue> {
    let mut c = Cookie::new(name.to_string(), value.to_string());
    c.set_http_only(true);
    c.set_same_site(SameSite::Lax);
    let https = d.issuer.starts_with("https://");
    c.set_secure(https);
    // `__Host-` requires `Path=/`.
    c.set_path(if d.path.is_empty() || https {
        "/".to_string()
    } else {
        d.path.clone()
    });
    if let Some(age) = max_age {
        c.set_max_age(cookie::time::Duration::seconds(age));
    }
    HeaderValue::from_str(&c.to_string()).ok()
}

/// The browser's live session in this domain, if any.
pub async fn current_session(
    app: &AppState,
    d: &Domain,
    headers: &HeaderMap,
) -> Result<Option<SessionRow>, OAuthError> {
    browser_session(app, d, headers, false).await
}

/// The session the browser's cookie names: a live one (recorded as used, as
/// [`current_session`]), or with `idle_too` also one left idle past its timeout but neither
/// ended nor past its absolute lifetime (not recorded as used): what signing out ends, since the
/// clients it served may still be signed in and are told when it ends.
pub async fn browser_session(
    app: &AppState,
    d: &Domain,
    headers: &HeaderMap,
    idle_too: bool,
) -> Result<Option<SessionRow>, OAuthError> {
    let Some(value) = cookie_value(headers, &cookie_names(d).0) else {
        return Ok(None);
    };
    let (hash, now) = (sha256_b64(&value), app.clock.now());
    Ok(if idle_too {
        app.store.find_unended_session(&d.name, &hash, now).await?
    } else {
        app.store.find_live_session(&d.name, &hash, now).await?
    })
}

/// True when the request carries this domain's session cookie (live or not). A cross-site POST
/// does not: the cookie is `SameSite=Lax`.
pub fn has_session_cookie(d: &Domain, headers: &HeaderMap) -> bool {
    cookie_value(headers, &cookie_names(d).0).is_some()
}

/// The browser's CSRF cookie value, if any.
pub fn csrf_cookie(d: &Domain, headers: &HeaderMap) -> Option<String> {
    cookie_value(headers, &cookie_names(d).1)
}

/// The browser's CSRF token: its cookie, or a new one with the Set-Cookie to send.
pub fn csrf_token(d: &Domain, headers: &HeaderMap) -> (String, Option<HeaderValue>) {
    match csrf_cookie(d, headers) {
        Some(c) => (c, None),
        None => {
            let c = random_token();
            let set = set_cookie(d, &cookie_names(d).1, &c, None);
            (c, set)
        }
    }
}

/// True when the form's token is the browser's CSRF cookie and the one bound to the request.
pub fn csrf_ok(d: &Domain, headers: &HeaderMap, form_token: Option<&str>, row: &AuthRequestRow) -> bool {
    match (bound_csrf(d, headers, row), form_token) {
        (Some(cookie), Some(form)) => ct_eq(cookie.as_bytes(), form.as_bytes()),
        _ => false,
    }
}

/// The browser's CSRF cookie when it is the one `row` was made for (a request is bound to the
/// browser that started it); None otherwise.
pub fn bound_csrf(d: &Domain, headers: &HeaderMap, row: &AuthRequestRow) -> Option<String> {
    csrf_cookie(d, headers).filter(|c| ct_eq(sha256_b64(c).as_bytes(), row.csrf_hash.as_bytes()))
}

/// An HTML page: no caching, no framing, no scripts (except the form_post page's own).
pub fn page(status: StatusCode, body: Result<String, askama::Error>, script_hash: Option<&str>) -> Response {
    page_with_frames(status, body, script_hash, &[])
}

/// An HTML page as [`page`] makes it, that may also frame these origins (the front-channel
/// logout iframes of the signed-out page).
pub fn page_with_frames(
    status: StatusCode,
    body: Result<String, askama::Error>,
    script_hash: Option<&str>,
    frame_origins: &[String],
) -> Response {
    let html = match body {
        Ok(h) => h,
        Err(e) => return OAuthError::server_error(e).into_response(),
    };
    let script = script_hash
        .map(|h| format!("'sha256-{h}'"))
        .unwrap_or_else(|| "'none'".into());
    let frames = if frame_origins.is_empty() {
        String::new()
    } else {
        format!(" frame-src {};", frame_origins.join(" "))
    };
    let csp = format!(
        "default-src 'none'; style-src 'unsafe-inline'; script-src {script};{frames} frame-ancestors 'none'; base-uri 'none'"
    );
    let mut resp = (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response();
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    resp
}

/// An error shown as a page (never redirected).
pub fn error_page(err: &OAuthError) -> Response {
    let status = StatusCode::from_u16(err.code.status()).unwrap_or(StatusCode::BAD_REQUEST);
    tracing::info!(error.code = err.code.as_str(), error.description = %err.description, error.cause = err.cause.as_deref().unwrap_or(""), "request refused with an error page");
    page(
        status,
        ErrorPage {
            message: &err.description,
        }
        .render(),
        None,
    )
}

/// Sends the response parameters back to the client: a 303 redirect (query) or a form (form_post).
pub fn to_client(req: &AuthorizationRequest, params: &[(&str, &str)]) -> Response {
    if req.response_mode == "form_post" {
        return post_form(
            &req.redirect_uri,
            params.to_vec(),
            "Press Continue to return to the application.",
        );
    }
    see_other(&redirect_with(&req.redirect_uri, params))
}

/// The field that marks a request posted again by our own relay page ([`relay`]).
pub const RELAYED: &str = "relayed";

/// Our relay page for a request POSTed without the session cookie (from another site: the
/// cookies are SameSite=Lax): it posts `fields`, marked [`RELAYED`], to `action` again, a
/// same-site POST that carries the cookies. None when the browser could not use it: the request
/// came in a frame (the page may not be framed, so its POST would never be sent), or a value
/// holds a line break (a form's POST turns CR and LF into CRLF, so it would arrive changed).
pub fn relay(headers: &HeaderMap, action: &str, fields: &[(&str, &str)], prompt: &str) -> Option<Response> {
    let framed = headers
        .get("sec-fetch-dest")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|d| matches!(d, "iframe" | "frame" | "embed" | "object"));
    let breaks = |s: &str| s.contains(['\r', '\n']);
    if framed || fields.iter().any(|(k, v)| breaks(k) || breaks(v)) {
        return None;
    }
    let mut fields = fields.to_vec();
    fields.push((RELAYED, "1"));
    Some(post_form(action, fields, prompt))
}

/// A page whose script POSTs `fields` to `action` at once (a Continue button without scripts).
pub fn post_form(action: &str, fields: Vec<(&str, &str)>, prompt: &str) -> Response {
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(FORM_POST_SCRIPT.as_bytes()));
    let view = FormPostPage {
        action,
        fields,
        prompt,
    };
    page(StatusCode::OK, view.render(), Some(&hash))
}

/// A 303 See Other (never 307/308 after a form POST).
pub fn see_other(location: &str) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// An authorization error redirected to the client with state and iss (RFC 9207).
pub fn error_to_client(d: &Domain, req: &AuthorizationRequest, err: &OAuthError) -> Response {
    // Nothing is sent to a redirect URI the configuration no longer has (a reload since the
    // request was checked).
    if registered_client(d, req).is_none() {
        return error_page(&no_longer_registered());
    }
    tracing::info!(error.code = err.code.as_str(), error.description = %err.description, "authorization error returned to the client");
    to_client(req, &error_params(err, req.state.as_deref(), &d.issuer))
}

/// A store failure after the pending request was taken (single use), as the client is told of it
/// (RFC 6749 s4.1.2.1: a request that fails for any reason but its redirect URI is answered
/// there; only the client can start it again): `temporarily_unavailable` when the store is,
/// `server_error` otherwise (the request itself was checked).
pub fn taken_request_failed(e: crate::store::StoreError) -> OAuthError {
    let err: OAuthError = e.into();
    if err.code == ErrorCode::TemporarilyUnavailable {
        err
    } else {
        OAuthError::server_error(err)
    }
}

/// OpenID Connect Core s3.1.2.2: false when the client named a user (`subject`) and the session
/// is someone else's, who must not get a code, an ID token or an access token.
pub fn is_the_named_user(req: &AuthorizationRequest, s: &SessionRow) -> bool {
    req.subject.as_ref().is_none_or(|want| *want == s.user_id)
}

/// s3.1.2.1: the user named by `id_token_hint` (or a `sub` claim value) is not the one signed in.
fn not_the_named_user() -> OAuthError {
    OAuthError::new(
        ErrorCode::LoginRequired,
        "the person signed in is not the user the client asked for",
    )
}

/// Moves the request on from where it stands. `pending`: the stored request it came from.
pub async fn proceed(
    app: &AppState,
    cur: &CurrentDomain,
    headers: &HeaderMap,
    req: AuthorizationRequest,
    session: Option<SessionRow>,
    pending: Option<AuthRequestRow>,
    after_post: bool,
) -> Response {
    let d = &cur.domain;
    // RFC 8628 s3.3: a device authorization goes on at the device page once the person is
    // signed in; it has no redirect URI.
    if req.device.is_some() {
        return match (&session, &pending) {
            (Some(_), Some(p)) => {
                see_other(&redirect_with(&d.url(paths::DEVICE_PAGE), &[("request", &p.id)]))
            }
            _ => error_page(&OAuthError::invalid_request(
                "this request has expired or is unknown; start again",
            )),
        };
    }
    // The account page asked the person to sign in: back to it.
    if req.account {
        return match (&session, &pending) {
            (Some(_), Some(p)) => {
                let _ = app.store.take_auth_request(&d.name, &p.id).await;
                see_other(&d.url(paths::ACCOUNT))
            }
            _ => error_page(&OAuthError::invalid_request(
                "this request has expired or is unknown; start again",
            )),
        };
    }
    let Some(client) = registered_client(d, &req) else {
        return error_page(&no_longer_registered());
    };
    // The person has just signed in as someone other than the user the client named.
    if let Some(s) = &session
        && !is_the_named_user(&req, s)
    {
        if let Some(p) = &pending {
            let _ = app.store.take_auth_request(&d.name, &p.id).await;
        }
        return error_to_client(d, &req, &not_the_named_user());
    }
    let now = app.clock.now();
    // First-party clients never ask: no consent to look up.
    let consented = match &session {
        Some(_) if client.consent == ConsentPolicy::Skip => None,
        Some(s) => match app.store.find_consent(&d.name, &s.user_id, &client.id).await {
            Ok(c) => c,
            // RFC 6749 s4.1.2.1: anything but the redirect URI failing is answered there.
            Err(e) => return error_to_client(d, &req, &e.into()),
        },
        None => None,
    };
    let step = next_step(
        client,
        &req,
        session.as_ref().map(|s| s.auth_time),
        consented.as_deref(),
        now,
    );
    match (step, session) {
        (Err(e), _) => error_to_client(d, &req, &e),
        (Ok(Next::Issue), Some(s)) => {
            if let Some(p) = &pending {
                let _ = app.store.take_auth_request(&d.name, &p.id).await;
            }
            issue_code(app, d, &req, &s).await
        }
        (Ok(Next::Consent), Some(s)) => match ensure_pending(app, d, headers, &req, pending).await {
            // After a form POST, a 303 to the consent page, so that reloading does not post again.
            Ok((row, _, set)) if after_post => with_cookie(
                see_other(&redirect_with(&d.url(paths::CONSENT), &[("request", &row.id)])),
                set,
            ),
            Ok((row, csrf, set)) => with_cookie(consent_page(app, d, &req, &s, &row, &csrf, None).await, set),
            Err(e) => error_to_client(d, &req, &e),
        },
        (Ok(_), _) => match ensure_pending(app, d, headers, &req, pending).await {
            Ok((row, csrf, set)) => {
                let username = req.login_hint.as_deref().unwrap_or("");
                with_cookie(
                    login_page(d, &client.name, &row.id, &csrf, username, None, StatusCode::OK),
                    set,
                )
            }
            Err(e) => error_to_client(d, &req, &e),
        },
    }
}

/// The response with a Set-Cookie added, when there is one.
pub fn with_cookie(mut resp: Response, cookie: Option<HeaderValue>) -> Response {
    if let Some(c) = cookie {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    resp
}

/// The pending request for `req`, created (with the browser's CSRF cookie, set when missing)
/// unless it exists. Returns it, the CSRF token, and a Set-Cookie to send.
pub async fn ensure_pending(
    app: &AppState,
    d: &Domain,
    headers: &HeaderMap,
    req: &AuthorizationRequest,
    pending: Option<AuthRequestRow>,
) -> Result<(AuthRequestRow, String, Option<HeaderValue>), OAuthError> {
    let (csrf, set) = csrf_token(d, headers);
    if let Some(row) = pending {
        return Ok((row, csrf, set));
    }
    let now = app.clock.now();
    let row = AuthRequestRow {
        id: random_token(),
        domain: d.name.clone(),
        client_id: req.client_id.clone(),
        params: serde_json::to_string(req).map_err(OAuthError::server_error)?,
        csrf_hash: sha256_b64(&csrf),
        created_at: now,
        expires_at: now + REQUEST_LIFETIME,
    };
    app.store.insert_auth_request(&row).await?;
    Ok((row, csrf, set))
}

/// The sign-in page.
pub fn login_page(
    d: &Domain,
    client_name: &str,
    request_id: &str,
    csrf: &str,
    username: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let action = d.url(paths::LOGIN);
    let view = LoginPage {
        action: &action,
        client_name,
        request_id,
        csrf,
        username,
        error,
    };
    page(status, view.render(), None)
}

/// The consent page of a pending request.
pub async fn consent_page(
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
            required: name == "openid",
        })
        .collect();
    let action = d.url(paths::CONSENT);
    let view = ConsentPage {
        action: &action,
        client_name: &client_name,
        username: &username,
        request_id: &row.id,
        csrf,
        session: &s.sid,
        notice,
        scopes,
    };
    page(StatusCode::OK, view.render(), None)
}

/// What a decision form shown for another session than the browser's now is answered with: its
/// page again, for the session there is now.
pub const SIGNED_IN_ANEW: &str = "Someone signed in again in this browser since this page was shown. \
     Check who is signed in and what is asked, then choose again.";

/// Whether a decision form was shown for the session `s` (its hidden `session` field): a form
/// shown for another account, or before a sign-in since, decides nothing for this one.
pub fn shown_for(form: &Params, s: &SessionRow) -> bool {
    form.get("session") == Some(s.sid.as_str())
}

/// The consent-page text of a scope.
pub fn scope_description(d: &Domain, name: &str) -> String {
    if let Some(s) = d.scope(name).filter(|s| !s.description.is_empty()) {
        return s.description.clone();
    }
    match name {
        "openid" => "Know who you are".into(),
        "profile" => "See your name and profile".into(),
        "email" => "See your email address".into(),
        "address" => "See your postal address".into(),
        "phone" => "See your phone number".into(),
        "groups" => "See the groups you belong to".into(),
        "get_groups" => "Receive your groups when you sign in".into(),
        "offline_access" => "Keep access when you are not using it".into(),
        other => match d
            .resource_servers
            .iter()
            .find(|rs| rs.offline_scope.as_deref() == Some(other))
        {
            Some(rs) => format!("Keep access to {} when you are not using it", rs.name),
            None => other.to_string(),
        },
    }
}

/// Starts a session for `user_id` signed in now by password (or renews the browser's live one
/// when it is theirs already); returns it and its Set-Cookie.
/// `remember`: a persistent cookie that lasts as long as the session may; otherwise a cookie
/// that ends when the browser closes.
pub async fn start_session(
    app: &AppState,
    d: &Domain,
    headers: &HeaderMap,
    user_id: &str,
    remember: bool,
) -> Result<(SessionRow, Option<HeaderValue>), OAuthError> {
    let now = app.clock.now();
    let value = random_token();
    let max_age = remember.then_some(d.session_max_lifetime);
    let set = set_cookie(d, &cookie_names(d).0, &value, max_age);
    // A browser that holds a live session already: the same person signing in again (prompt=login,
    // select_account, max_age) keeps that session, its sid and what is bound to it, under the new
    // cookie value; someone else is signed out of it first (as at the end-session endpoint), and
    // so is a session left idle past its timeout (its clients are told), so that no session is
    // left that no browser holds.
    if let Some(old) = browser_session(app, d, headers, true).await? {
        let live = old.last_seen + old.idle_timeout > now;
        if live && old.user_id == user_id {
            let renewed = app
                .store
                .renew_session(
                    &d.name,
                    &old.hash,
                    &sha256_b64(&value),
                    now,
                    now + d.session_max_lifetime,
                )
                .await?;
            if let Some(row) = renewed {
                return Ok((row, set));
            }
        } else {
            let (_, queued) = crate::oauth::logout::end_session(&app.store, d, &old, now).await?;
            if queued {
                crate::app::deliver_logouts_soon(app);
            }
        }
    }
    let row = SessionRow {
        hash: sha256_b64(&value),
        domain: d.name.clone(),
        sid: random_id(),
        user_id: user_id.to_string(),
        auth_time: now,
        amr: json!(["pwd"]).to_string(),
        created_at: now,
        last_seen: now,
        expires_at: now + d.session_max_lifetime,
        idle_timeout: d.session_idle_timeout,
        ended_at: None,
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| ua.chars().take(256).collect()),
    };
    app.store.insert_session(&row).await?;
    Ok((row, set))
}

/// The Set-Cookie that removes the browser's session cookie.
pub fn clear_session_cookie(d: &Domain) -> Option<HeaderValue> {
    set_cookie(d, &cookie_names(d).0, "", Some(0))
}

/// The request's client, while it is still enabled and still has the request's redirect URI:
/// the configuration may have changed since the request was checked (a reload), and then no
/// code is issued and nothing is sent to that URI.
pub fn registered_client<'d>(d: &'d Domain, req: &AuthorizationRequest) -> Option<&'d Arc<Client>> {
    d.client(&req.client_id)
        .filter(|c| c.enabled)
        .filter(|c| crate::oauth::redirect_uri::matching(&c.redirect_uris, &req.redirect_uri).is_some())
}

pub fn no_longer_registered() -> OAuthError {
    OAuthError::invalid_request(
        "the client or its redirect URI is no longer registered; start again from the application",
    )
}

/// Issues a code for the session and sends it to the client.
pub async fn issue_code(app: &AppState, d: &Domain, req: &AuthorizationRequest, s: &SessionRow) -> Response {
    if registered_client(d, req).is_none() {
        return error_page(&no_longer_registered());
    }
    // The last guard: the session may have changed hands since the request was checked.
    if !is_the_named_user(req, s) {
        return error_to_client(d, req, &not_the_named_user());
    }
    let now = app.clock.now();
    let code = random_token();
    let row = CodeRow {
        hash: sha256_b64(&code),
        domain: d.name.clone(),
        client_id: req.client_id.clone(),
        user_id: s.user_id.clone(),
        redirect_uri: req.redirect_uri.clone(),
        redirect_uri_given: i64::from(req.redirect_uri_given),
        scope: req.scopes.join(" "),
        nonce: req.nonce.clone(),
        code_challenge: req.code_challenge.clone(),
        code_challenge_method: req.code_challenge_method.clone(),
        sid: s.sid.clone(),
        auth_time: s.auth_time,
        amr: s.amr.clone(),
        session_expires_at: s.expires_at,
        issued_at: now,
        expires_at: now + d.code_lifetime,
        used_at: None,
        access_jti: None,
        access_expires_at: None,
        family_id: None,
        reused_at: None,
        claims: req.claims.as_ref().and_then(|c| serde_json::to_string(c).ok()),
    };
    if let Err(e) = app.store.insert_code(&row).await {
        return error_to_client(d, req, &taken_request_failed(e));
    }
    // Back- and Front-Channel Logout 1.0: remember which clients this session served, to tell
    // them at sign-out (codes themselves are collected a day after expiry).
    if let Err(e) = app
        .store
        .record_session_client(&d.name, &s.sid, &s.user_id, &req.client_id, now, s.expires_at)
        .await
    {
        return error_to_client(d, req, &taken_request_failed(e));
    }
    let mut params = vec![("code", code.as_str())];
    if let Some(st) = &req.state {
        params.push(("state", st));
    }
    params.push(("iss", &d.issuer));
    to_client(req, &params)
}

/// A page's form POST, read whole; `repeatable`: parameters that may appear more than once.
pub async fn read_form(
    app: &AppState,
    body: axum::body::Body,
    repeatable: &[&str],
) -> Result<Params, Response> {
    super::response::read_body(body, app)
        .await
        .and_then(|b| Params::parse(&b, repeatable))
        .map_err(|e| error_page(&e))
}

/// The page for a pending request that is missing, unknown or expired.
pub fn expired_request() -> Response {
    error_page(&OAuthError::invalid_request(
        "this request has expired or is unknown; start again",
    ))
}

/// The pending authorization request `id` names, stored row and request; a page when it is
/// missing, unknown or expired.
pub async fn pending(
    app: &AppState,
    d: &Domain,
    id: Option<&str>,
) -> Result<(AuthRequestRow, AuthorizationRequest), Response> {
    let id = id.ok_or_else(expired_request)?;
    match app.store.find_auth_request(&d.name, id, app.clock.now()).await {
        Ok(row) => parse_pending(row).ok_or_else(expired_request),
        Err(e) => Err(error_page(&e.into())),
    }
}

/// A pending request as read from the store (`None`: unknown or expired), with its request;
/// `None` when there is none or it cannot be read back.
pub fn parse_pending(row: Option<AuthRequestRow>) -> Option<(AuthRequestRow, AuthorizationRequest)> {
    let row = row?;
    let req = serde_json::from_str::<AuthorizationRequest>(&row.params).ok()?;
    Some((row, req))
}

/// The pending request of a page's form, once its CSRF token is verified (bound to the browser
/// and to this request).
pub async fn pending_form(
    app: &AppState,
    d: &Domain,
    headers: &HeaderMap,
    form: &Params,
) -> Result<(AuthRequestRow, AuthorizationRequest), Response> {
    let pending = pending(app, d, form.get("request")).await?;
    match unverified_form(d, headers, form, &pending.0) {
        Some(page) => Err(page),
        None => Ok(pending),
    }
}

/// The page for a form of the pending request `row` whose CSRF token is not verified (bound to
/// the browser and to this request); `None` when it is.
pub fn unverified_form(
    d: &Domain,
    headers: &HeaderMap,
    form: &Params,
    row: &AuthRequestRow,
) -> Option<Response> {
    (!csrf_ok(d, headers, form.get("csrf"), row)).then(|| {
        error_page(&OAuthError::new(
            ErrorCode::AccessDenied,
            "the form could not be verified; start again",
        ))
    })
}

/// The browser's live session; a page when there is none.
pub async fn require_session(
    app: &AppState,
    d: &Domain,
    headers: &HeaderMap,
) -> Result<SessionRow, Response> {
    match current_session(app, d, headers).await {
        Ok(Some(s)) => Ok(s),
        Ok(None) => Err(error_page(&OAuthError::invalid_request(
            "you are no longer signed in; start again",
        ))),
        Err(e) => Err(error_page(&e)),
    }
}
