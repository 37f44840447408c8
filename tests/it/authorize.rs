//! The authorization endpoint over HTTP: where errors go (a page or the client), the request's
//! parameters (response_type, scope, PKCE, response_mode, prompt, max_age), consent, CSRF, and
//! what the pages carry (headers, escaping).

use std::collections::HashMap;

use base64::Engine;
use sha2::{Digest, Sha256};

use crate::flow::{
    Browser, Page, Pkce, authorize_url, code_flow, exchange, form_action, pkce, redirect_uri_of,
    sign_in_again, signed_in_browser, token_request, userinfo, walk,
};
use ostiary::clock::Clock;

use crate::harness::{TestApp, jwt_parts, password};

const WEBAPP_CB: &str = "https://app.example.com/cb";

/// A valid request of `client` at `redirect_uri` with an S256 challenge and state `st-1`.
fn request<'a>(client: &'a str, redirect_uri: &'a str, p: &'a Pkce) -> Vec<(&'a str, &'a str)> {
    vec![
        ("response_type", "code"),
        ("client_id", client),
        ("redirect_uri", redirect_uri),
        ("scope", "openid profile"),
        ("state", "st-1"),
        ("code_challenge", p.challenge.as_str()),
        ("code_challenge_method", "S256"),
    ]
}

/// Redeems the code `page` redirected to the client with, as `client` with `p`'s verifier;
/// asserts 200 and returns the token response.
async fn redeem_page(app: &TestApp, page: &Page, p: &Pkce, client: &str) -> serde_json::Value {
    let code = crate::flow::Code {
        code: code_of(page),
        verifier: p.verifier.clone(),
        redirect_uri: redirect_uri_of(client).into(),
        client: client.into(),
    };
    let (status, body) = exchange(app, &code).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// The request with `name` set to `value` (replaced, or added).
fn with<'a>(mut params: Vec<(&'a str, &'a str)>, name: &'a str, value: &'a str) -> Vec<(&'a str, &'a str)> {
    params.retain(|(k, _)| *k != name);
    params.push((name, value));
    params
}

/// The request without `name`.
fn without<'a>(mut params: Vec<(&'a str, &'a str)>, name: &str) -> Vec<(&'a str, &'a str)> {
    params.retain(|(k, _)| *k != name);
    params
}

/// What every HTML page of the server carries.
fn assert_page_headers(page: &Page, what: &str) {
    assert!(
        page.header("content-type").starts_with("text/html"),
        "{what}: content-type {}",
        page.header("content-type")
    );
    assert_eq!(page.header("x-frame-options"), "DENY", "{what}");
    assert_eq!(page.header("referrer-policy"), "no-referrer", "{what}");
    assert_eq!(page.header("cache-control"), "no-store", "{what}");
    assert_eq!(page.header("x-content-type-options"), "nosniff", "{what}");
    let csp = page.header("content-security-policy");
    assert!(csp.contains("frame-ancestors 'none'"), "{what}: CSP {csp}");
    assert!(csp.contains("default-src 'none'"), "{what}: CSP {csp}");
}

/// An error shown as a page: 400, HTML, never a redirect.
fn assert_error_page(page: &Page, what: &str) {
    assert_eq!(page.status, 400, "{what}: {}", page.body);
    assert!(
        page.location().is_none(),
        "{what}: redirected to {:?}",
        page.location()
    );
    assert_page_headers(page, what);
    assert!(
        page.body.contains("Something went wrong"),
        "{what}: {}",
        page.body
    );
    assert!(!page.body.contains("name=\"password\""), "{what}");
}

/// An error sent back to the client: 303 to `redirect_uri` with error, error_description,
/// state (when sent) and iss. Returns the parameters.
fn assert_error_redirect(
    app: &TestApp,
    page: &Page,
    redirect_uri: &str,
    error: &str,
) -> HashMap<String, String> {
    assert_eq!(
        page.status, 303,
        "expected a redirect with {error}: {}",
        page.body
    );
    let loc = page.location().unwrap();
    assert!(
        loc.starts_with(&format!("{redirect_uri}?")),
        "{loc} is not at {redirect_uri}"
    );
    assert!(!loc.contains('#'), "{loc}");
    assert_eq!(page.header("cache-control"), "no-store");
    let q = page.redirect_params();
    assert_eq!(q.get("error").map(String::as_str), Some(error), "{loc}");
    assert!(q.get("error_description").is_some_and(|d| !d.is_empty()), "{loc}");
    assert_eq!(q.get("iss"), Some(&app.issuer), "RFC 9207 iss: {loc}");
    assert!(!q.contains_key("code"), "{loc}");
    q
}

/// GETs the authorization URL with a fresh browser and expects `error` at the webapp's redirect URI.
async fn expect_webapp_error(app: &TestApp, params: &[(&str, &str)], error: &str) -> HashMap<String, String> {
    let page = Browser::new().get(&authorize_url(app, params)).await;
    let q = assert_error_redirect(app, &page, WEBAPP_CB, error);
    assert_eq!(q.get("state").map(String::as_str), Some("st-1"));
    q
}

/// The code of an answer to the client.
fn code_of(page: &Page) -> String {
    assert_eq!(page.status, 303, "expected a code: {}", page.body);
    let q = page.redirect_params();
    assert!(!q.contains_key("error"), "{:?}", page.location());
    q.get("code").cloned().unwrap()
}

// ---------------------------------------------------------------------------------------------
// Client and redirect URI not established: a page, never a redirect.

#[tokio::test]
async fn missing_client_id_is_an_error_page() {
    let app = TestApp::spawn().await;
    let p = pkce();
    let params = without(request("webapp", WEBAPP_CB, &p), "client_id");
    let page = Browser::new().get(&authorize_url(&app, &params)).await;
    assert_error_page(&page, "missing client_id");
    assert!(page.body.contains("client_id"), "{}", page.body);
}

#[tokio::test]
async fn unknown_client_id_is_an_error_page() {
    let app = TestApp::spawn().await;
    let p = pkce();
    for client in ["nobody", "WEBAPP", "webapp ", "tenant2"] {
        let params = request(client, WEBAPP_CB, &p);
        let page = Browser::new().get(&authorize_url(&app, &params)).await;
        assert_error_page(&page, client);
    }
    // Even with another error in the request, the unknown client wins: no redirect.
    let params = with(request("nobody", WEBAPP_CB, &p), "response_type", "token");
    let page = Browser::new().get(&authorize_url(&app, &params)).await;
    assert_error_page(&page, "unknown client and response_type=token");
}

#[tokio::test]
async fn unregistered_redirect_uri_variants_are_an_error_page() {
    let app = TestApp::spawn().await;
    let p = pkce();
    for bad in [
        "https://APP.EXAMPLE.COM/cb",
        "https://App.example.com/cb",
        "https://app.example.com/CB",
        "https://app.example.com/cb/",
        "https://app.example.com/cb?x=1",
        "https://app.example.com/cb?",
        "https://app.example.com/cb#frag",
        "https://app.example.com/cb#",
        "https://app.example.com/%2e%2e/cb",
        "https://app.example.com/x/%2e%2e/cb",
        "https://app.example.com/x/%2E%2E/cb",
        "https://app.example.com/x/../cb",
        "https://app.example.com/%63b",
        "https://evil@app.example.com/cb",
        "https://user:pw@app.example.com/cb",
        "https://app.example.com@evil.example.net/cb",
        "https://app.example.com.evil.example.net/cb",
        "https://sub.app.example.com/cb",
        "https://app.example.com:443/cb",
        "https://app.example.com:8443/cb",
        "http://app.example.com/cb",
        "https://app.example.com/cb3",
        "https://app.example.com/c",
        "//app.example.com/cb",
        "/cb",
        "https://legacy.example.com/cb",
    ] {
        let params = with(request("webapp", WEBAPP_CB, &p), "redirect_uri", bad);
        let page = Browser::new().get(&authorize_url(&app, &params)).await;
        assert_error_page(&page, bad);
    }
    // Another error in the request does not make it a redirect to the unregistered URI.
    let params = with(
        with(
            request("webapp", WEBAPP_CB, &p),
            "redirect_uri",
            "https://evil.example.net/cb",
        ),
        "response_type",
        "token",
    );
    let page = Browser::new().get(&authorize_url(&app, &params)).await;
    assert_error_page(&page, "unregistered redirect_uri and response_type=token");
}

#[tokio::test]
async fn missing_redirect_uri_is_an_error_page_when_it_cannot_be_implied() {
    let app = TestApp::spawn().await;
    let p = pkce();
    // webapp registers two redirect URIs: none can be implied.
    let params = without(request("webapp", WEBAPP_CB, &p), "redirect_uri");
    let page = Browser::new().get(&authorize_url(&app, &params)).await;
    assert_error_page(&page, "webapp without redirect_uri");
    // OpenID Connect requests must name it even with one registered.
    let fp = redirect_uri_of("firstparty");
    let params = without(request("firstparty", fp, &p), "redirect_uri");
    let page = Browser::new().get(&authorize_url(&app, &params)).await;
    assert_error_page(&page, "openid request without redirect_uri");
}

#[tokio::test]
async fn loopback_client_accepts_any_port_on_the_ip_literal_only() {
    let app = TestApp::spawn().await;
    let p = pkce();
    // RFC 8252 s7.3: any port on the loopback IP literal.
    for ok in [
        "http://127.0.0.1:51234/callback",
        "http://127.0.0.1:1/callback",
        "http://127.0.0.1/callback",
    ] {
        let params = request("spa", ok, &p);
        let page = Browser::new().get(&authorize_url(&app, &params)).await;
        assert!(page.is_login(), "{ok}: {} {}", page.status, page.body);
    }
    // RFC 8252 s8.3: not localhost; and the rest of the URI is compared as written.
    for bad in [
        "http://localhost:51234/callback",
        "http://localhost/callback",
        "http://LOCALHOST:51234/callback",
        "http://[::1]:51234/callback",
        "http://127.0.0.2:51234/callback",
        "http://127.1:51234/callback",
        "https://127.0.0.1:51234/callback",
        "HTTP://127.0.0.1:51234/callback",
        "http://127.0.0.1:51234/callback/",
        "http://127.0.0.1:51234/Callback",
        "http://127.0.0.1:51234/callback?x=1",
        "http://127.0.0.1:51234/callback#f",
        "http://127.0.0.1:51234/x/%2e%2e/callback",
        "http://127.0.0.1:51234/x/../callback",
        "http://127.0.0.1:51234/./callback",
        "http://u@127.0.0.1:51234/callback",
        "http://127.0.0.1:99999/callback",
    ] {
        let params = with(request("spa", "x", &p), "redirect_uri", bad);
        let page = Browser::new().get(&authorize_url(&app, &params)).await;
        assert_error_page(&page, bad);
    }
    // Errors go back to the port the request named.
    let at = "http://127.0.0.1:51234/callback";
    let params = without(request("spa", at, &p), "code_challenge");
    let page = Browser::new().get(&authorize_url(&app, &params)).await;
    assert_error_redirect(&app, &page, at, "invalid_request");
}

#[tokio::test]
async fn repeated_client_id_or_redirect_uri_is_an_error_page() {
    let app = TestApp::spawn().await;
    let p = pkce();
    let mut params = request("webapp", WEBAPP_CB, &p);
    params.push(("client_id", "webapp"));
    let page = Browser::new().get(&authorize_url(&app, &params)).await;
    assert_error_page(&page, "client_id twice");
    let mut params = request("webapp", WEBAPP_CB, &p);
    params.push(("redirect_uri", "https://app.example.com/cb2"));
    let page = Browser::new().get(&authorize_url(&app, &params)).await;
    assert_error_page(&page, "redirect_uri twice");
}

// ---------------------------------------------------------------------------------------------
// Client and redirect URI established: errors go back to the client (RFC 6749 s4.1.2.1).

#[tokio::test]
async fn missing_response_type_redirects_invalid_request() {
    let app = TestApp::spawn().await;
    let p = pkce();
    let params = without(request("webapp", WEBAPP_CB, &p), "response_type");
    expect_webapp_error(&app, &params, "invalid_request").await;
}

#[tokio::test]
async fn response_type_token_redirects_unsupported_response_type() {
    let app = TestApp::spawn().await;
    let p = pkce();
    for rt in ["token", "id_token", "code token", "code id_token", "CODE"] {
        let params = with(request("webapp", WEBAPP_CB, &p), "response_type", rt);
        expect_webapp_error(&app, &params, "unsupported_response_type").await;
    }
}

#[tokio::test]
async fn scope_not_allowed_for_the_client_redirects_invalid_scope() {
    let app = TestApp::spawn().await;
    let p = pkce();
    // billing.read exists but webapp may not have it; the others do not exist.
    for scope in [
        "openid billing.read",
        "openid admin",
        "orders.delete",
        "openid \"x\"",
    ] {
        let params = with(request("webapp", WEBAPP_CB, &p), "scope", scope);
        expect_webapp_error(&app, &params, "invalid_scope").await;
    }
}

#[tokio::test]
async fn bad_response_mode_redirects_invalid_request() {
    let app = TestApp::spawn().await;
    let p = pkce();
    for mode in ["bogus", "fragment", "FORM_POST", "query.jwt"] {
        let params = with(request("webapp", WEBAPP_CB, &p), "response_mode", mode);
        expect_webapp_error(&app, &params, "invalid_request").await;
    }
}

#[tokio::test]
async fn request_object_redirects_request_not_supported() {
    let app = TestApp::spawn().await;
    let p = pkce();
    let params = with(
        request("webapp", WEBAPP_CB, &p),
        "request",
        "eyJhbGciOiJub25lIn0.e30.",
    );
    expect_webapp_error(&app, &params, "request_not_supported").await;
}

#[tokio::test]
async fn request_uri_redirects_request_uri_not_supported() {
    let app = TestApp::spawn().await;
    let p = pkce();
    let params = with(
        request("webapp", WEBAPP_CB, &p),
        "request_uri",
        "urn:ietf:params:oauth:request_uri:abc",
    );
    expect_webapp_error(&app, &params, "request_uri_not_supported").await;
}

#[tokio::test]
async fn error_redirect_without_state_carries_no_state() {
    let app = TestApp::spawn().await;
    let p = pkce();
    let params = without(
        with(request("webapp", WEBAPP_CB, &p), "response_type", "token"),
        "state",
    );
    let page = Browser::new().get(&authorize_url(&app, &params)).await;
    let q = assert_error_redirect(&app, &page, WEBAPP_CB, "unsupported_response_type");
    assert!(!q.contains_key("state"), "{q:?}");
}

#[tokio::test]
async fn state_is_returned_exactly() {
    let app = TestApp::spawn().await;
    let p = pkce();
    let state = "a b&c=d/é?#%20";
    let params = with(
        with(request("webapp", WEBAPP_CB, &p), "response_type", "token"),
        "state",
        state,
    );
    let page = Browser::new().get(&authorize_url(&app, &params)).await;
    let q = assert_error_redirect(&app, &page, WEBAPP_CB, "unsupported_response_type");
    assert_eq!(q.get("state").map(String::as_str), Some(state));
}

#[tokio::test]
async fn unknown_extra_parameter_is_ignored() {
    let app = TestApp::spawn().await;
    let browser = Browser::new();
    let p = pkce();
    let mut params = request("firstparty", redirect_uri_of("firstparty"), &p);
    params.push(("x-unknown", "1"));
    params.push(("foo", "bar"));
    let page = walk(&app, &browser, &params).await;
    redeem_page(&app, &page, &p, "firstparty").await;
}

#[tokio::test]
async fn repeated_parameter_redirects_invalid_request() {
    let app = TestApp::spawn().await;
    let p = pkce();
    for name in ["scope", "response_type", "code_challenge", "nonce", "prompt"] {
        let mut params = request("webapp", WEBAPP_CB, &p);
        let value = params
            .iter()
            .find(|(k, _)| *k == name)
            .map_or("again", |(_, v)| *v);
        params.push((name, value));
        if name == "nonce" || name == "prompt" {
            params.push((name, "login"));
        }
        let q = expect_webapp_error(&app, &params, "invalid_request").await;
        assert!(
            q["error_description"].contains(name),
            "{name}: {}",
            q["error_description"]
        );
    }
    // A repeated state: invalid_request, with the first state.
    let mut params = request("webapp", WEBAPP_CB, &p);
    params.push(("state", "second"));
    expect_webapp_error(&app, &params, "invalid_request").await;
}

// ---------------------------------------------------------------------------------------------
// Scopes

#[tokio::test]
async fn legacy_unknown_scope_is_dropped_and_token_scope_shows_the_grant() {
    let app = TestApp::spawn().await;
    let browser = Browser::new();
    let cb = redirect_uri_of("legacy");
    let params = [
        ("response_type", "code"),
        ("client_id", "legacy"),
        ("redirect_uri", cb),
        ("scope", "openid profile unknown.scope orders.write billing.read"),
        ("state", "st-1"),
    ];
    // The consent page offers only what can be granted.
    let mut page = browser.get(&authorize_url(&app, &params)).await;
    assert!(page.is_login(), "{} {}", page.status, page.body);
    page = browser.sign_in(&page, "alice", &password("alice")).await;
    page = browser.get(&page.location().unwrap()).await;
    assert!(page.is_consent(), "{}", page.body);
    assert_eq!(page.fields("scope"), ["openid", "profile"]);
    page = browser.consent(&page, "approve", &["openid", "profile"]).await;
    let code = code_of(&page);
    let resp = token_request(
        &app,
        "legacy",
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", cb),
        ],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["scope"], "openid profile", "{body}");
    assert!(body["id_token"].is_string(), "{body}");
}

#[tokio::test]
async fn legacy_with_only_unknown_scopes_redirects_invalid_scope() {
    let app = TestApp::spawn().await;
    let params = [
        ("response_type", "code"),
        ("client_id", "legacy"),
        ("redirect_uri", redirect_uri_of("legacy")),
        ("scope", "unknown.scope billing.read"),
        ("state", "st-1"),
    ];
    let page = Browser::new().get(&authorize_url(&app, &params)).await;
    assert_error_redirect(&app, &page, redirect_uri_of("legacy"), "invalid_scope");
}

// ---------------------------------------------------------------------------------------------
// PKCE

#[tokio::test]
async fn webapp_without_code_challenge_redirects_invalid_request() {
    let app = TestApp::spawn().await;
    let p = pkce();
    let params = without(
        without(request("webapp", WEBAPP_CB, &p), "code_challenge"),
        "code_challenge_method",
    );
    let q = expect_webapp_error(&app, &params, "invalid_request").await;
    assert!(q["error_description"].contains("code_challenge"), "{q:?}");
}

#[tokio::test]
async fn spa_without_code_challenge_redirects_invalid_request() {
    let app = TestApp::spawn().await;
    let p = pkce();
    let cb = redirect_uri_of("spa");
    let params = without(
        without(request("spa", cb, &p), "code_challenge"),
        "code_challenge_method",
    );
    let page = Browser::new().get(&authorize_url(&app, &params)).await;
    assert_error_redirect(&app, &page, cb, "invalid_request");
}

#[tokio::test]
async fn plain_pkce_is_refused_for_clients_that_do_not_allow_it() {
    let app = TestApp::spawn().await;
    let p = pkce();
    // plain named, and plain implied by a missing method (RFC 7636 s4.3).
    let plain = with(
        with(request("webapp", WEBAPP_CB, &p), "code_challenge", &p.verifier),
        "code_challenge_method",
        "plain",
    );
    expect_webapp_error(&app, &plain, "invalid_request").await;
    let implied = without(
        with(request("webapp", WEBAPP_CB, &p), "code_challenge", &p.verifier),
        "code_challenge_method",
    );
    expect_webapp_error(&app, &implied, "invalid_request").await;
    let cb = redirect_uri_of("spa");
    let spa = with(
        with(request("spa", cb, &p), "code_challenge", &p.verifier),
        "code_challenge_method",
        "plain",
    );
    let page = Browser::new().get(&authorize_url(&app, &spa)).await;
    assert_error_redirect(&app, &page, cb, "invalid_request");
}

#[tokio::test]
async fn malformed_code_challenge_is_refused() {
    let app = TestApp::spawn().await;
    let p = pkce();
    let long = "a".repeat(129);
    let s256_44 = format!("{}A", p.challenge);
    let s256_42 = p.challenge[..42].to_string();
    for bad in [
        "short",
        long.as_str(),
        s256_44.as_str(),
        s256_42.as_str(),
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw+cM",
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw/cM",
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw=cM",
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-c=",
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSst cM",
    ] {
        let params = with(request("webapp", WEBAPP_CB, &p), "code_challenge", bad);
        expect_webapp_error(&app, &params, "invalid_request").await;
    }
    // An unknown method, and a method without a challenge.
    let params = with(request("webapp", WEBAPP_CB, &p), "code_challenge_method", "S512");
    expect_webapp_error(&app, &params, "invalid_request").await;
    let params = without(request("webapp", WEBAPP_CB, &p), "code_challenge");
    expect_webapp_error(&app, &params, "invalid_request").await;
}

#[tokio::test]
async fn legacy_may_omit_pkce() {
    let app = TestApp::spawn().await;
    let browser = Browser::new();
    let cb = redirect_uri_of("legacy");
    let params = [
        ("response_type", "code"),
        ("client_id", "legacy"),
        ("redirect_uri", cb),
        ("scope", "openid orders.read"),
        ("state", "st-1"),
    ];
    let page = walk(&app, &browser, &params).await;
    let code = code_of(&page);
    let resp = token_request(
        &app,
        "legacy",
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", cb),
        ],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["scope"], "openid orders.read", "{body}");
}

#[tokio::test]
async fn legacy_may_use_plain_pkce() {
    let app = TestApp::spawn().await;
    let browser = Browser::new();
    let p = pkce();
    let cb = redirect_uri_of("legacy");
    let params = [
        ("response_type", "code"),
        ("client_id", "legacy"),
        ("redirect_uri", cb),
        ("scope", "openid"),
        ("state", "st-1"),
        ("code_challenge", p.verifier.as_str()),
        ("code_challenge_method", "plain"),
    ];
    let page = walk(&app, &browser, &params).await;
    let code = code_of(&page);
    // The S256 form of the verifier is not the plain challenge.
    let redeem = |verifier: &str| {
        vec![
            ("grant_type", "authorization_code".to_string()),
            ("code", code.clone()),
            ("redirect_uri", cb.to_string()),
            ("code_verifier", verifier.to_string()),
        ]
    };
    let wrong = redeem(&p.challenge);
    let wrong: Vec<(&str, &str)> = wrong.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let resp = token_request(&app, "legacy", &wrong).await;
    assert_eq!(resp.status(), 400);
    let right = redeem(&p.verifier);
    let right: Vec<(&str, &str)> = right.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let resp = token_request(&app, "legacy", &right).await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
}

// ---------------------------------------------------------------------------------------------
// Discovery, POST, form_post

#[tokio::test]
async fn discovery_advertises_the_authorization_endpoint() {
    let app = TestApp::spawn().await;
    let (status, _, doc) = app
        .get_json(&format!("{}/.well-known/openid-configuration", app.issuer))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        doc["authorization_endpoint"],
        format!("{}/oauth2/v1/authorize", app.issuer)
    );
    assert_eq!(doc["response_types_supported"], serde_json::json!(["code"]));
    let methods = doc["code_challenge_methods_supported"].as_array().unwrap();
    assert!(methods.iter().any(|m| m == "S256"), "{methods:?}");
    assert_eq!(doc["authorization_response_iss_parameter_supported"], true);
    let modes = doc["response_modes_supported"].as_array().unwrap();
    assert!(modes.iter().any(|m| m == "form_post"), "{modes:?}");
}

#[tokio::test]
async fn post_with_a_form_body_works_like_get() {
    let app = TestApp::spawn().await;
    let browser = Browser::new();
    let p = pkce();
    let endpoint = format!("{}/oauth2/v1/authorize", app.issuer);
    let params = request("webapp", WEBAPP_CB, &p);
    // Without the session cookie (as the client's own site posts it): our page posts the same
    // request again, marked, from the issuer's site (so that the browser's cookies come along).
    let relay = browser.post(&endpoint, &params).await;
    let mut expected: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    expected.push(("relayed".into(), "1".into()));
    assert_eq!(relay.relayed_to(&endpoint), expected);
    let mut page = browser.post(&endpoint, &pairs(&expected)).await;
    assert!(page.is_login(), "{} {}", page.status, page.body);
    assert_page_headers(&page, "login page after POST");
    page = browser.sign_in(&page, "alice", &password("alice")).await;
    page = browser.get(&page.location().unwrap()).await;
    page = browser.consent(&page, "approve", &["openid", "profile"]).await;
    let code = code_of(&page);
    assert_eq!(page.redirect_params()["state"], "st-1");
    let (status, body) = exchange(
        &app,
        &crate::flow::Code {
            code,
            verifier: p.verifier.clone(),
            redirect_uri: WEBAPP_CB.into(),
            client: "webapp".into(),
        },
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // Signed in now: a POST from the client's site (no cookie) with prompt=none goes through
    // the relay and gets a code, not login_required.
    let silent = with(request("webapp", WEBAPP_CB, &p), "prompt", "none");
    let relay = Browser::new()
        .post(&endpoint, &silent)
        .await
        .relayed_to(&endpoint);
    let page = browser.post(&endpoint, &pairs(&relay)).await;
    code_of(&page);
    // The marked POST of a browser without cookies is answered, not relayed again.
    let page = Browser::new().post(&endpoint, &pairs(&relay)).await;
    assert_error_redirect(&app, &page, WEBAPP_CB, "login_required");
    // In a frame (the page may not be framed), or with a line break in a value (a form's POST
    // would turn it into CRLF): answered as it comes, without the page.
    for (dest, state) in [("iframe", "st-1"), ("document", "two\nlines")] {
        let params = with(request("webapp", WEBAPP_CB, &p), "state", state);
        let resp = app
            .http
            .post(&endpoint)
            .header("sec-fetch-dest", dest)
            .form(&params)
            .send()
            .await
            .unwrap();
        let page = crate::flow::read(resp).await;
        assert!(page.is_login(), "{dest}: {} {}", page.status, page.body);
    }
    // Errors too, without a relay: redirected once client and redirect URI hold, a page before.
    let bad = with(request("webapp", WEBAPP_CB, &p), "response_type", "token");
    let page = Browser::new().post(&endpoint, &bad).await;
    assert_error_redirect(&app, &page, WEBAPP_CB, "unsupported_response_type");
    let bad = with(request("webapp", WEBAPP_CB, &p), "client_id", "nobody");
    let page = Browser::new().post(&endpoint, &bad).await;
    assert_error_page(&page, "POST with an unknown client");
    let mut repeated = request("webapp", WEBAPP_CB, &p);
    repeated.push(("scope", "openid"));
    let page = Browser::new().post(&endpoint, &repeated).await;
    assert_error_redirect(&app, &page, WEBAPP_CB, "invalid_request");
    // A value that is not UTF-8 once percent-decoded is refused, never passed on changed (a
    // `state` would come back to the client as U+FFFD).
    let url = authorize_url(&app, &without(request("webapp", WEBAPP_CB, &p), "state"));
    for query in ["&state=%FF", "&state=ok%C3", "&nonce=%FE%FF"] {
        let page = Browser::new().get(&format!("{url}{query}")).await;
        assert_error_page(&page, query);
        assert!(page.body.contains("not valid UTF-8"), "{query}: {}", page.body);
    }
    // A U+FFFD sent as such (valid UTF-8) is a value like any other.
    let page = Browser::new().get(&format!("{url}&state=%EF%BF%BD")).await;
    assert!(page.is_login(), "{} {}", page.status, page.body);
}

/// Owned form pairs as the test browser posts them.
fn pairs(owned: &[(String, String)]) -> Vec<(&str, &str)> {
    owned.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// The `script-src` directive of a CSP.
fn script_src(csp: &str) -> String {
    csp.split(';')
        .map(str::trim)
        .find(|d| d.starts_with("script-src"))
        .unwrap_or("")
        .to_string()
}

/// Checks a form_post page: 200, action, auto-submitting script allowed by hash only.
fn assert_form_post_page(page: &Page, action: &str) {
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.location().is_none());
    assert_page_headers(page, "form_post page");
    assert_eq!(form_action(page), action);
    assert!(page.body.contains("method=\"post\""), "{}", page.body);
    let start = page.body.find("<script>").expect("an inline script") + "<script>".len();
    let len = page.body[start..].find("</script>").unwrap();
    let script = &page.body[start..start + len];
    assert_eq!(page.body.matches("<script").count(), 1, "{}", page.body);
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(script.as_bytes()));
    let csp = page.header("content-security-policy");
    assert_eq!(script_src(&csp), format!("script-src 'sha256-{hash}'"), "{csp}");
    assert!(!script_src(&csp).contains("unsafe"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
}

#[tokio::test]
async fn form_post_answers_with_an_auto_submitting_form() {
    let app = TestApp::spawn().await;
    let browser = Browser::new();
    let p = pkce();
    let params = with(request("webapp", WEBAPP_CB, &p), "response_mode", "form_post");
    let page = walk(&app, &browser, &params).await;
    assert_form_post_page(&page, WEBAPP_CB);
    assert_eq!(page.fields("state"), ["st-1"]);
    assert_eq!(page.fields("iss"), [app.issuer.as_str()]);
    let codes = page.fields("code");
    assert_eq!(codes.len(), 1, "{}", page.body);
    assert!(page.fields("error").is_empty());
    let (status, body) = exchange(
        &app,
        &crate::flow::Code {
            code: codes[0].clone(),
            verifier: p.verifier.clone(),
            redirect_uri: WEBAPP_CB.into(),
            client: "webapp".into(),
        },
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // With a session and consent, the answer is the form straight away.
    let page = browser.get(&authorize_url(&app, &params)).await;
    assert_form_post_page(&page, WEBAPP_CB);
    assert_eq!(page.fields("code").len(), 1);
}

#[tokio::test]
async fn form_post_errors_are_posted_too() {
    let app = TestApp::spawn().await;
    let p = pkce();
    let params = with(
        with(request("webapp", WEBAPP_CB, &p), "response_mode", "form_post"),
        "response_type",
        "token",
    );
    let page = Browser::new().get(&authorize_url(&app, &params)).await;
    assert_form_post_page(&page, WEBAPP_CB);
    assert_eq!(page.fields("error"), ["unsupported_response_type"]);
    assert_eq!(page.fields("state"), ["st-1"]);
    assert_eq!(page.fields("iss"), [app.issuer.as_str()]);
    assert!(page.fields("code").is_empty());
}

// ---------------------------------------------------------------------------------------------
// Pages: headers and escaping

#[tokio::test]
async fn pages_carry_the_security_headers() {
    let app = TestApp::spawn().await;
    let browser = Browser::new();
    let p = pkce();
    let params = request("webapp", WEBAPP_CB, &p);
    let login = browser.get(&authorize_url(&app, &params)).await;
    assert!(login.is_login());
    assert_page_headers(&login, "login page");
    assert!(script_src(&login.header("content-security-policy")).contains("'none'"));
    let after = browser.sign_in(&login, "alice", &password("alice")).await;
    assert_eq!(after.status, 303);
    assert_eq!(after.header("cache-control"), "no-store");
    let consent = browser.get(&after.location().unwrap()).await;
    assert!(consent.is_consent());
    assert_page_headers(&consent, "consent page");
    let error = Browser::new()
        .get(&authorize_url(&app, &[("client_id", "nobody")]))
        .await;
    assert_error_page(&error, "error page");
    // A failed sign-in page too.
    let other = Browser::new();
    let login = other.get(&authorize_url(&app, &params)).await;
    let failed = other.sign_in(&login, "alice", "wrong").await;
    assert_eq!(failed.status, 401, "{}", failed.body);
    assert_page_headers(&failed, "refused sign-in");
}

#[tokio::test]
async fn login_hint_is_escaped_in_the_login_page() {
    let app = TestApp::spawn().await;
    let p = pkce();
    let hint = "\"><script>alert(1)</script>";
    let params = with(request("webapp", WEBAPP_CB, &p), "login_hint", hint);
    let page = Browser::new().get(&authorize_url(&app, &params)).await;
    assert!(page.is_login(), "{}", page.body);
    assert!(!page.body.contains(hint), "raw login_hint in {}", page.body);
    assert!(!page.body.contains("<script>alert"), "{}", page.body);
    let escaped = [
        "&lt;script&gt;alert(1)&lt;/script&gt;",
        "&#60;script&#62;alert(1)&#60;/script&#62;",
        "&#x3c;script&#x3e;alert(1)&#x3c;/script&#x3e;",
    ];
    assert!(escaped.iter().any(|e| page.body.contains(e)), "{}", page.body);
    // The field still holds the hint once unescaped (flow's unescape knows named entities and
    // &#34;; askama writes < and > as &#60; and &#62;).
    let value = page.field("username").unwrap();
    assert_eq!(value.replace("&#60;", "<").replace("&#62;", ">"), hint);
}

#[tokio::test]
async fn client_name_is_escaped_in_the_pages() {
    let app = TestApp::spawn().await;
    let browser = Browser::new();
    let p = pkce();
    let params = request("webapp", WEBAPP_CB, &p);
    let login = browser.get(&authorize_url(&app, &params)).await;
    let escaped = [
        "Web &lt;App&gt; &amp; Co",
        "Web &#60;App&#62; &#38; Co",
        "Web &#x3c;App&#x3e; &#x26; Co",
    ];
    assert!(!login.body.contains("Web <App>"), "{}", login.body);
    assert!(escaped.iter().any(|e| login.body.contains(e)), "{}", login.body);
    let after = browser.sign_in(&login, "alice", &password("alice")).await;
    let consent = browser.get(&after.location().unwrap()).await;
    assert!(consent.is_consent());
    assert!(!consent.body.contains("Web <App>"), "{}", consent.body);
    assert!(
        escaped.iter().any(|e| consent.body.contains(e)),
        "{}",
        consent.body
    );
}

// ---------------------------------------------------------------------------------------------
// prompt and max_age

#[tokio::test]
async fn prompt_none_without_session_redirects_login_required() {
    let app = TestApp::spawn().await;
    let p = pkce();
    let params = with(request("webapp", WEBAPP_CB, &p), "prompt", "none");
    expect_webapp_error(&app, &params, "login_required").await;
}

#[tokio::test]
async fn prompt_none_with_session_but_no_consent_redirects_consent_required() {
    let app = TestApp::spawn().await;
    let browser = signed_in_browser(&app).await;
    let p = pkce();
    let params = with(request("webapp", WEBAPP_CB, &p), "prompt", "none");
    let page = browser.get(&authorize_url(&app, &params)).await;
    let q = assert_error_redirect(&app, &page, WEBAPP_CB, "consent_required");
    assert_eq!(q["state"], "st-1");
}

#[tokio::test]
async fn prompt_none_with_session_and_consent_gives_a_code_without_a_page() {
    let app = TestApp::spawn().await;
    let browser = Browser::new();
    code_flow(&app, &browser, "webapp", "openid profile", &[]).await;
    let p = pkce();
    let params = with(request("webapp", WEBAPP_CB, &p), "prompt", "none");
    let page = browser.get(&authorize_url(&app, &params)).await;
    let code = code_of(&page);
    let q = page.redirect_params();
    assert_eq!(q["state"], "st-1");
    assert_eq!(q["iss"], app.issuer);
    let (status, body) = exchange(
        &app,
        &crate::flow::Code {
            code,
            verifier: p.verifier.clone(),
            redirect_uri: WEBAPP_CB.into(),
            client: "webapp".into(),
        },
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn prompt_none_with_login_is_invalid_request() {
    let app = TestApp::spawn().await;
    let browser = signed_in_browser(&app).await;
    let p = pkce();
    for prompt in ["none login", "login none", "none consent"] {
        let params = with(request("webapp", WEBAPP_CB, &p), "prompt", prompt);
        let page = browser.get(&authorize_url(&app, &params)).await;
        assert_error_redirect(&app, &page, WEBAPP_CB, "invalid_request");
    }
}

#[tokio::test]
async fn unsupported_prompt_values_redirect_invalid_request() {
    let app = TestApp::spawn().await;
    let browser = signed_in_browser(&app).await;
    let p = pkce();
    // OpenID Connect Prompt Create 1.0 s4.1: a value not in prompt_values_supported.
    for prompt in ["create", "login create", "LOGIN", "consent select_account create"] {
        let params = with(request("webapp", WEBAPP_CB, &p), "prompt", prompt);
        let page = browser.get(&authorize_url(&app, &params)).await;
        let q = assert_error_redirect(&app, &page, WEBAPP_CB, "invalid_request");
        assert!(q["error_description"].contains("prompt"), "{prompt}: {q:?}");
    }
}

#[tokio::test]
async fn a_client_without_the_code_grant_gets_unauthorized_client_at_its_redirect_uri() {
    let hash = ostiary::crypto::secrets::SecretHash::sha256_string(&crate::harness::secret("m2m"));
    let app = TestApp::spawn_with(crate::harness::Opts {
        domain_extra: format!(
            "[[domain.client]]\nclient_id = \"m2m\"\nsecret_hash = \"{hash}\"\ngrant_types = [\"client_credentials\"]\nredirect_uris = [\"https://m2m.example.com/cb\"]\n"
        ),
        ..crate::harness::Opts::default()
    })
    .await;
    let p = pkce();
    // RFC 6749 s4.1.2.1: the client and its redirect URI hold, so the error goes back to it.
    let params = request("m2m", "https://m2m.example.com/cb", &p);
    let page = Browser::new().get(&authorize_url(&app, &params)).await;
    let q = assert_error_redirect(&app, &page, "https://m2m.example.com/cb", "unauthorized_client");
    assert_eq!(q.get("state").map(String::as_str), Some("st-1"));
}

#[tokio::test]
async fn prompt_login_with_a_session_shows_the_login_page_again() {
    let app = TestApp::spawn().await;
    let browser = signed_in_browser(&app).await;
    let first_auth = app.clock.now();
    app.clock.advance(30);
    let p = pkce();
    let cb = redirect_uri_of("firstparty");
    let params = with(request("firstparty", cb, &p), "prompt", "login");
    let page = browser.get(&authorize_url(&app, &params)).await;
    assert!(page.is_login(), "{} {}", page.status, page.body);
    let page = browser.sign_in(&page, "alice", &password("alice")).await;
    // After a form POST: 303, never 307/308.
    assert_eq!(page.status, 303, "{}", page.body);
    let body = redeem_page(&app, &page, &p, "firstparty").await;
    let (_, id) = jwt_parts(body["id_token"].as_str().unwrap());
    assert_eq!(id["auth_time"], first_auth + 30, "a new authentication: {id}");
}

#[tokio::test]
async fn max_age_older_than_the_session_shows_the_login_page() {
    let app = TestApp::spawn().await;
    let browser = signed_in_browser(&app).await;
    app.clock.advance(120);
    let p = pkce();
    let cb = redirect_uri_of("firstparty");
    let params = with(request("firstparty", cb, &p), "max_age", "60");
    let page = browser.get(&authorize_url(&app, &params)).await;
    assert!(page.is_login(), "{} {}", page.status, page.body);
    let page = browser.sign_in(&page, "alice", &password("alice")).await;
    code_of(&page);
    // prompt=none cannot show the page: login_required.
    app.clock.advance(120);
    let params = with(
        with(request("firstparty", cb, &p), "max_age", "60"),
        "prompt",
        "none",
    );
    let page = browser.get(&authorize_url(&app, &params)).await;
    assert_error_redirect(&app, &page, cb, "login_required");
}

#[tokio::test]
async fn max_age_within_the_session_needs_no_login() {
    let app = TestApp::spawn().await;
    let browser = signed_in_browser(&app).await;
    let auth_time = app.clock.now();
    app.clock.advance(30);
    let p = pkce();
    let cb = redirect_uri_of("firstparty");
    let params = with(request("firstparty", cb, &p), "max_age", "60");
    let page = browser.get(&authorize_url(&app, &params)).await;
    let body = redeem_page(&app, &page, &p, "firstparty").await;
    // OpenID Connect Core s3.1.2.1: with max_age, the ID token carries auth_time.
    let (_, id) = jwt_parts(body["id_token"].as_str().unwrap());
    assert_eq!(id["auth_time"], auth_time, "{id}");
}

#[tokio::test]
async fn max_age_zero_asks_for_a_new_sign_in_once() {
    let app = TestApp::spawn().await;
    let browser = signed_in_browser(&app).await;
    let p = pkce();
    let cb = redirect_uri_of("firstparty");
    let params = with(request("firstparty", cb, &p), "max_age", "0");
    let page = browser.get(&authorize_url(&app, &params)).await;
    assert!(page.is_login(), "{} {}", page.status, page.body);
    // The sign-in satisfies it even when the clock moves on meanwhile: no loop.
    app.clock.advance(2);
    let page = browser.sign_in(&page, "alice", &password("alice")).await;
    code_of(&page);
    let bad = with(request("firstparty", cb, &p), "max_age", "-1");
    let page = browser.get(&authorize_url(&app, &bad)).await;
    assert_error_redirect(&app, &page, cb, "invalid_request");
}

#[tokio::test]
async fn the_consent_form_cannot_skip_the_sign_in_the_request_asked_for() {
    let app = TestApp::spawn().await;
    let browser = signed_in_browser(&app).await;
    app.clock.advance(120);
    let p = pkce();
    let consent = format!("{}/consent", app.issuer);
    // A session two minutes old; each request asks for a sign-in it has not made. The sign-in
    // page's request and CSRF token, posted to the consent form instead (or its page asked
    // for), give the sign-in page again, never a code.
    let mut last = None;
    for (client, name, value) in [
        ("webapp", "prompt", "login"),
        ("webapp", "prompt", "select_account"),
        ("webapp", "max_age", "60"),
        ("firstparty", "prompt", "login"),
    ] {
        let params = with(request(client, redirect_uri_of(client), &p), name, value);
        let login = browser.get(&authorize_url(&app, &params)).await;
        assert!(login.is_login(), "{client} {name}={value}: {}", login.status);
        let id = login.field("request").unwrap();
        let csrf = login.field("csrf").unwrap();
        let form = [
            ("request", id.as_str()),
            ("csrf", csrf.as_str()),
            ("decision", "approve"),
            ("scope", "openid"),
            ("scope", "profile"),
        ];
        let page = browser.post(&consent, &form).await;
        assert!(
            page.is_login(),
            "{client} {name}={value}: {} {:?} {}",
            page.status,
            page.location(),
            page.body
        );
        let page = browser.get(&format!("{consent}?request={id}")).await;
        assert!(page.is_login(), "{client} {name}={value}: {}", page.status);
        last = Some(page);
    }
    // Signing in goes on with the same request, to a code carrying the new auth_time.
    let page = browser.sign_in(&last.unwrap(), "alice", &password("alice")).await;
    let body = redeem_page(&app, &page, &p, "firstparty").await;
    let (_, id) = jwt_parts(body["id_token"].as_str().unwrap());
    assert_eq!(id["auth_time"], app.clock.now(), "{id}");
    // max_age=0 with consent: the sign-in made for the request is enough for its consent page,
    // however long the person takes there.
    let params = with(request("webapp", WEBAPP_CB, &p), "max_age", "0");
    let login = browser.get(&authorize_url(&app, &params)).await;
    assert!(login.is_login(), "{}", login.status);
    let page = browser.sign_in(&login, "alice", &password("alice")).await;
    app.clock.advance(5);
    let page = browser.get(&page.location().expect("to the consent page")).await;
    assert!(page.is_consent(), "{} {}", page.status, page.body);
    app.clock.advance(5);
    let page = browser.consent(&page, "approve", &["openid", "profile"]).await;
    code_of(&page);
    // A session within max_age when the request came goes straight to consent, and stays good
    // however long the person reads the page.
    let browser = signed_in_browser(&app).await;
    app.clock.advance(30);
    let params = with(
        with(request("webapp", WEBAPP_CB, &p), "max_age", "60"),
        "scope",
        "openid orders.read",
    );
    let page = browser.get(&authorize_url(&app, &params)).await;
    assert!(page.is_consent(), "{} {}", page.status, page.body);
    app.clock.advance(120);
    let page = browser
        .consent(&page, "approve", &["openid", "orders.read"])
        .await;
    code_of(&page);
}

#[tokio::test]
async fn sign_in_answers_303_never_307_or_308() {
    let app = TestApp::spawn().await;
    let p = pkce();
    // To the consent page (webapp) and to the client (firstparty).
    for (client, to_client) in [("webapp", false), ("firstparty", true)] {
        let browser = Browser::new();
        let params = request(client, redirect_uri_of(client), &p);
        let login = browser.get(&authorize_url(&app, &params)).await;
        let page = browser.sign_in(&login, "alice", &password("alice")).await;
        assert_eq!(page.status, 303, "{client}: {}", page.body);
        let loc = page.location().unwrap();
        assert_eq!(
            loc.starts_with(redirect_uri_of(client)),
            to_client,
            "{client}: {loc}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Consent

#[tokio::test]
async fn a_consent_page_shown_for_another_session_decides_nothing() {
    let app = TestApp::spawn().await;
    let browser = Browser::new();
    let p = pkce();
    // alice signs in and sees the consent page.
    let login = browser
        .get(&authorize_url(&app, &request("webapp", WEBAPP_CB, &p)))
        .await;
    let page = browser.sign_in(&login, "alice", &password("alice")).await;
    let shown = browser.get(&page.location().expect("to the consent page")).await;
    assert!(shown.is_consent(), "{} {}", shown.status, shown.body);
    assert!(
        shown.body.contains("Signed in as <strong>alice</strong>"),
        "{}",
        shown.body
    );
    // In another tab of the same browser, carol signs in (a new session replaces alice's).
    sign_in_again(&app, &browser, "carol").await;
    // alice's page, submitted now (approve or deny, or without its session field), decides
    // nothing: the page again, for carol, the request kept.
    let request_id = shown.field("request").unwrap();
    let csrf = shown.field("csrf").unwrap();
    let alice_sid = shown.field("session").unwrap();
    for session in [Some(alice_sid.as_str()), None] {
        for decision in ["approve", "deny"] {
            let mut form = vec![
                ("request", request_id.as_str()),
                ("csrf", csrf.as_str()),
                ("decision", decision),
                ("scope", "openid"),
                ("scope", "profile"),
            ];
            form.extend(session.map(|s| ("session", s)));
            let page = browser.post(&form_action(&shown), &form).await;
            assert!(
                page.is_consent(),
                "{session:?} {decision}: {} {}",
                page.status,
                page.body
            );
            assert!(page.location().is_none());
            assert!(
                page.body.contains("Signed in as <strong>carol</strong>"),
                "{}",
                page.body
            );
            assert!(page.body.contains("role=\"alert\""), "{}", page.body);
            assert!(page.body.contains("Someone signed in again"), "{}", page.body);
            assert_eq!(page.field("request").unwrap(), request_id);
            assert_ne!(page.field("session").unwrap(), alice_sid);
        }
    }
    // The page shown for carol decides, for carol.
    let page = browser
        .get(&format!("{}/consent?request={request_id}", app.issuer))
        .await;
    assert!(
        page.body.contains("Signed in as <strong>carol</strong>"),
        "{}",
        page.body
    );
    let page = browser.consent(&page, "approve", &["openid", "profile"]).await;
    let body = redeem_page(&app, &page, &p, "webapp").await;
    let info = userinfo(&app, body["access_token"].as_str().unwrap()).await;
    assert_eq!(info["preferred_username"], "carol", "{info}");
}

#[tokio::test]
async fn firstparty_never_shows_the_consent_page() {
    let app = TestApp::spawn().await;
    let browser = Browser::new();
    let p = pkce();
    let cb = redirect_uri_of("firstparty");
    let params = with(
        request("firstparty", cb, &p),
        "scope",
        "openid profile email orders.read",
    );
    let login = browser.get(&authorize_url(&app, &params)).await;
    let page = browser.sign_in(&login, "alice", &password("alice")).await;
    assert_eq!(page.status, 303);
    assert!(page.location().unwrap().starts_with(cb), "{:?}", page.location());
    code_of(&page);
    let again = with(params.clone(), "prompt", "consent");
    let page = browser.get(&authorize_url(&app, &again)).await;
    assert!(!page.is_consent(), "{}", page.body);
    code_of(&page);
}

#[tokio::test]
async fn consent_given_once_is_reused() {
    let app = TestApp::spawn().await;
    let browser = Browser::new();
    code_flow(&app, &browser, "webapp", "openid profile orders.read", &[]).await;
    let p = pkce();
    // The same scopes, and fewer: no page.
    for scope in ["openid profile orders.read", "openid orders.read"] {
        let params = with(request("webapp", WEBAPP_CB, &p), "scope", scope);
        let page = browser.get(&authorize_url(&app, &params)).await;
        code_of(&page);
    }
    // A scope not consented to yet: the page again.
    let params = with(request("webapp", WEBAPP_CB, &p), "scope", "openid email");
    let page = browser.get(&authorize_url(&app, &params)).await;
    assert!(page.is_consent(), "{} {}", page.status, page.body);
}

#[tokio::test]
async fn prompt_consent_shows_the_consent_page_again() {
    let app = TestApp::spawn().await;
    let browser = Browser::new();
    code_flow(&app, &browser, "webapp", "openid profile", &[]).await;
    let p = pkce();
    let params = with(request("webapp", WEBAPP_CB, &p), "prompt", "consent");
    let page = browser.get(&authorize_url(&app, &params)).await;
    assert!(page.is_consent(), "{} {}", page.status, page.body);
    let page = browser.consent(&page, "approve", &["openid", "profile"]).await;
    code_of(&page);
}

// ---------------------------------------------------------------------------------------------
// CSRF on the sign-in form

/// Checks that a sign-in POST was refused: no session cookie, no redirect; then that the browser
/// has no session (prompt=none answers login_required).
async fn assert_sign_in_refused(app: &TestApp, browser: &Browser, page: &Page) {
    assert_eq!(page.status, 403, "{}", page.body);
    assert!(page.location().is_none(), "{:?}", page.location());
    assert!(
        !page.set_cookies().iter().any(|c| c.contains("ostiary_session")),
        "{:?}",
        page.set_cookies()
    );
    assert_page_headers(page, "refused sign-in");
    let p = pkce();
    let params = with(request("webapp", WEBAPP_CB, &p), "prompt", "none");
    let page = browser.get(&authorize_url(app, &params)).await;
    assert_error_redirect(app, &page, WEBAPP_CB, "login_required");
}

/// The sign-in form of a fresh login page: (action, request id, csrf).
async fn login_form(app: &TestApp, browser: &Browser) -> (String, String, String) {
    let p = pkce();
    let params = request("webapp", WEBAPP_CB, &p);
    let page = browser.get(&authorize_url(app, &params)).await;
    assert!(page.is_login());
    (
        form_action(&page),
        page.field("request").unwrap(),
        page.field("csrf").unwrap(),
    )
}

#[tokio::test]
async fn sign_in_with_a_wrong_csrf_is_refused() {
    let app = TestApp::spawn().await;
    let browser = Browser::new();
    let (action, request_id, csrf) = login_form(&app, &browser).await;
    let wrong = format!("{csrf}x");
    let pw = password("alice");
    for bad in [wrong.as_str(), "x", "0"] {
        let form = [
            ("request", request_id.as_str()),
            ("csrf", bad),
            ("username", "alice"),
            ("password", pw.as_str()),
        ];
        let page = browser.post(&action, &form).await;
        assert_sign_in_refused(&app, &browser, &page).await;
    }
}

#[tokio::test]
async fn sign_in_without_csrf_is_refused() {
    let app = TestApp::spawn().await;
    let browser = Browser::new();
    let (action, request_id, _) = login_form(&app, &browser).await;
    let pw = password("alice");
    let form = [
        ("request", request_id.as_str()),
        ("username", "alice"),
        ("password", pw.as_str()),
    ];
    let page = browser.post(&action, &form).await;
    assert_sign_in_refused(&app, &browser, &page).await;
}

#[tokio::test]
async fn sign_in_without_the_csrf_cookie_is_refused() {
    let app = TestApp::spawn().await;
    let (action, request_id, csrf) = login_form(&app, &Browser::new()).await;
    // Another browser (no CSRF cookie) posts the right values: refused.
    let other = Browser::new();
    let pw = password("alice");
    let form = [
        ("request", request_id.as_str()),
        ("csrf", csrf.as_str()),
        ("username", "alice"),
        ("password", pw.as_str()),
    ];
    let page = other.post(&action, &form).await;
    assert_sign_in_refused(&app, &other, &page).await;
    // Nor with its own CSRF cookie from another request.
    let (_, _, own) = login_form(&app, &other).await;
    assert_ne!(own, csrf);
    let page = other.post(&action, &form).await;
    assert_sign_in_refused(&app, &other, &page).await;
}
