//! The authorization_code grant over HTTP (RFC 6749 s4.1.3, RFC 7636 s4.5, RFC 9700 s2.1.1,
//! OpenID Connect Core s3.1.3): what a redemption gives, and every reason it is refused.

use std::sync::Arc;

use base64::Engine;
use ostiary::clock::Clock;
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::Connection;

use crate::flow::{
    Browser, Code, code_flow, exchange, pkce, redirect_uri_of, sign_in_tokens, token_request, walk,
    with_opaque_web,
};
use crate::harness::{Opts, TestApp, jwt_parts, secret, verify_with_jwks};

const SCOPE: &str = "openid profile orders.read";

/// A token endpoint answer read whole.
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }
}

async fn answer(resp: reqwest::Response) -> Answer {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.json().await.unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
    }
}

/// Redeems `code` as `client` with these fields (grant_type and code added).
async fn redeem(app: &TestApp, client: &str, code: &str, fields: &[(&str, &str)]) -> Answer {
    let mut form = vec![("grant_type", "authorization_code"), ("code", code)];
    form.extend_from_slice(fields);
    answer(token_request(app, client, &form).await).await
}

/// Asserts an RFC 6749 s5.2 error answer.
fn assert_error(a: &Answer, status: u16, error: &str, what: &str) {
    assert_eq!(a.status, status, "{what}: {}", a.body);
    assert_eq!(a.body["error"], error, "{what}: {}", a.body);
    assert!(a.body["error_description"].is_string(), "{what}: {}", a.body);
    assert!(a.body.get("access_token").is_none(), "{what}: {}", a.body);
    assert_eq!(a.header("cache-control"), "no-store", "{what}");
}

/// A fresh code of webapp for alice (signing in and consenting the first time).
async fn webapp_code(app: &TestApp, browser: &Browser) -> Code {
    code_flow(app, browser, "webapp", SCOPE, &[("nonce", "n-1")]).await
}

#[tokio::test]
async fn success_gives_access_and_id_tokens_not_cached() {
    let app = TestApp::spawn().await;
    let browser = Browser::new();
    let code = webapp_code(&app, &browser).await;
    let a = redeem(
        &app,
        "webapp",
        &code.code,
        &[
            ("redirect_uri", &code.redirect_uri),
            ("code_verifier", &code.verifier),
        ],
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(
        a.body["access_token"].as_str().is_some_and(|t| !t.is_empty()),
        "{}",
        a.body
    );
    assert_eq!(a.body["token_type"], "Bearer");
    let expires_in = a.body["expires_in"].as_i64().unwrap();
    assert!(expires_in > 0 && expires_in <= 1800, "{}", a.body);
    assert_eq!(a.body["scope"], SCOPE);
    assert!(
        a.body["id_token"]
            .as_str()
            .is_some_and(|t| t.split('.').count() == 3)
    );
    assert!(
        a.body.get("refresh_token").is_none(),
        "no offline_access: {}",
        a.body
    );
    assert_eq!(a.header("cache-control"), "no-store");
    assert_eq!(a.header("pragma"), "no-cache");
    assert!(a.header("content-type").starts_with("application/json"));
    // The access token is for the orders API, for alice, from webapp.
    let (_, at) = jwt_parts(a.body["access_token"].as_str().unwrap());
    assert_eq!(at["aud"], "https://api.example.com/orders");
    assert_eq!(at["client_id"], "webapp");
    assert_eq!(at["scope"], SCOPE);
    assert_eq!(
        at["exp"].as_i64().unwrap() - at["iat"].as_i64().unwrap(),
        expires_in
    );
}

#[tokio::test]
async fn without_openid_there_is_no_id_token() {
    let app = TestApp::spawn().await;
    let browser = Browser::new();
    let code = code_flow(&app, &browser, "webapp", "orders.read", &[]).await;
    let (status, body) = exchange(&app, &code).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("id_token").is_none(), "{body}");
    assert_eq!(body["scope"], "orders.read");
}

#[tokio::test]
async fn redirect_uri_must_equal_the_authorization_request() {
    let app = TestApp::spawn().await;
    let browser = Browser::new();
    for (what, redirect_uri) in [
        ("the other registered URI", Some("https://app.example.com/cb2")),
        ("omitted", None),
        ("a trailing slash", Some("https://app.example.com/cb/")),
        ("upper case", Some("https://APP.example.com/cb")),
        ("another URI", Some("https://evil.example.net/cb")),
    ] {
        let code = webapp_code(&app, &browser).await;
        let mut fields = vec![("code_verifier", code.verifier.as_str())];
        if let Some(r) = redirect_uri {
            fields.push(("redirect_uri", r));
        }
        let a = redeem(&app, "webapp", &code.code, &fields).await;
        assert_error(&a, 400, "invalid_grant", what);
    }
    let code = webapp_code(&app, &browser).await;
    let (status, body) = exchange(&app, &code).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn wrong_code_verifier_is_invalid_grant() {
    let app = TestApp::spawn().await;
    let browser = Browser::new();
    let other = pkce();
    // Each case on a fresh code: (what, the verifier sent given the right one).
    type Wrong<'a> = Box<dyn Fn(&str) -> String + 'a>;
    let cases: [(&str, Wrong); 5] = [
        ("another valid verifier", Box::new(|_| other.verifier.clone())),
        ("the challenge itself", Box::new(|_| other.challenge.clone())),
        ("a malformed verifier", Box::new(|_| "short".to_string())),
        ("the right one in upper case", Box::new(|v| v.to_uppercase())),
        ("the right one and more", Box::new(|v| format!("{v}x"))),
    ];
    for (what, verifier) in cases {
        let code = webapp_code(&app, &browser).await;
        let sent = verifier(&code.verifier);
        assert_ne!(sent, code.verifier);
        let a = redeem(
            &app,
            "webapp",
            &code.code,
            &[("redirect_uri", &code.redirect_uri), ("code_verifier", &sent)],
        )
        .await;
        assert_error(&a, 400, "invalid_grant", what);
    }
}

#[tokio::test]
async fn missing_code_verifier_is_invalid_grant() {
    let app = TestApp::spawn().await;
    let browser = Browser::new();
    let code = webapp_code(&app, &browser).await;
    let a = redeem(
        &app,
        "webapp",
        &code.code,
        &[("redirect_uri", &code.redirect_uri)],
    )
    .await;
    assert_error(&a, 400, "invalid_grant", "no code_verifier");
    // A public client likewise.
    let code = code_flow(&app, &browser, "spa", "openid", &[]).await;
    let a = redeem(&app, "spa", &code.code, &[("redirect_uri", &code.redirect_uri)]).await;
    assert_error(&a, 400, "invalid_grant", "spa without code_verifier");
}

#[tokio::test]
async fn code_verifier_for_a_code_issued_without_challenge_is_invalid_grant() {
    let app = TestApp::spawn().await;
    let browser = Browser::new();
    let cb = redirect_uri_of("legacy");
    let params = [
        ("response_type", "code"),
        ("client_id", "legacy"),
        ("redirect_uri", cb),
        ("scope", "openid"),
        ("state", "st-1"),
    ];
    let page = walk(&app, &browser, &params).await;
    assert_eq!(page.status, 303, "{}", page.body);
    let code = page.redirect_params()["code"].clone();
    // RFC 9700 s2.1.1: a verifier here means the challenge was stripped: a PKCE downgrade.
    let p = pkce();
    let a = redeem(
        &app,
        "legacy",
        &code,
        &[("redirect_uri", cb), ("code_verifier", &p.verifier)],
    )
    .await;
    assert_error(&a, 400, "invalid_grant", "verifier without challenge");
}

#[tokio::test]
async fn code_issued_to_another_client_is_invalid_grant() {
    let app = TestApp::spawn().await;
    let browser = Browser::new();
    let code = webapp_code(&app, &browser).await;
    let fields = [
        ("redirect_uri", code.redirect_uri.as_str()),
        ("code_verifier", code.verifier.as_str()),
    ];
    for client in ["firstparty", "legacy", "spa"] {
        let a = redeem(&app, client, &code.code, &fields).await;
        assert_error(&a, 400, "invalid_grant", client);
    }
}

/// A user disabled between signing in and the code's redemption gets no tokens, and the code is
/// used up: enabled again, the user's code is still refused.
#[tokio::test]
async fn code_of_a_user_disabled_since_is_invalid_grant() {
    use ostiary::store::DirectoryStore;

    let app = TestApp::spawn().await;
    let browser = Browser::new();
    let code = webapp_code(&app, &browser).await;
    let store = &app.handle().state().store;
    store
        .set_user_status("default", "alice", "disabled", app.clock.now())
        .await
        .unwrap();
    let fields = [
        ("redirect_uri", code.redirect_uri.as_str()),
        ("code_verifier", code.verifier.as_str()),
    ];
    let a = redeem(&app, "webapp", &code.code, &fields).await;
    assert_error(&a, 400, "invalid_grant", "disabled user");
    assert_eq!(a.body["error_description"], "the user is no longer active");
    store
        .set_user_status("default", "alice", "active", app.clock.now())
        .await
        .unwrap();
    let a = redeem(&app, "webapp", &code.code, &fields).await;
    assert_error(&a, 400, "invalid_grant", "the code again, the user enabled");
    assert_eq!(
        a.body["error_description"],
        "the code is invalid, expired or already used"
    );
}

#[tokio::test]
async fn expired_code_is_invalid_grant() {
    let app = TestApp::spawn().await;
    let browser = Browser::new();
    // Within the 60 s lifetime: redeemed.
    let code = webapp_code(&app, &browser).await;
    app.clock.advance(59);
    let (status, body) = exchange(&app, &code).await;
    assert_eq!(status, 200, "{body}");
    // Past it: refused.
    let code = webapp_code(&app, &browser).await;
    app.clock.advance(61);
    let a = redeem(
        &app,
        "webapp",
        &code.code,
        &[
            ("redirect_uri", &code.redirect_uri),
            ("code_verifier", &code.verifier),
        ],
    )
    .await;
    assert_error(&a, 400, "invalid_grant", "expired code");
}

#[tokio::test]
async fn unknown_code_is_invalid_grant() {
    let app = TestApp::spawn().await;
    let p = pkce();
    let a = redeem(
        &app,
        "webapp",
        "no-such-code",
        &[
            ("redirect_uri", "https://app.example.com/cb"),
            ("code_verifier", &p.verifier),
        ],
    )
    .await;
    assert_error(&a, 400, "invalid_grant", "unknown code");
    let a = answer(token_request(&app, "webapp", &[("grant_type", "authorization_code")]).await).await;
    assert_error(&a, 400, "invalid_request", "no code");
}

#[tokio::test]
async fn code_reuse_is_invalid_grant_and_revokes_the_first_tokens() {
    let app = TestApp::spawn().await;
    let browser = Browser::new();
    let code = webapp_code(&app, &browser).await;
    let (status, first) = exchange(&app, &code).await;
    assert_eq!(status, 200, "{first}");
    let access = first["access_token"].as_str().unwrap();
    assert_eq!(app.introspect("webapp", access).await["active"], true);
    let userinfo = |token: String| {
        let req = app.get("/oauth2/v1/userinfo").bearer_auth(token);
        async move { req.send().await.unwrap() }
    };
    assert_eq!(userinfo(access.to_string()).await.status(), 200);

    let (status, body) = exchange(&app, &code).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_grant");

    // RFC 6749 s4.1.2 and RFC 9700 s4.5: tokens issued from the code are revoked.
    assert_eq!(
        app.introspect("webapp", access).await,
        serde_json::json!({"active": false})
    );
    let resp = userinfo(access.to_string()).await;
    assert_eq!(resp.status(), 401);
    let challenge = resp
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
}

/// A consent withdrawn while one of its codes is being redeemed: the consent is deleted (the
/// withdrawal's first step) after the code was issued, and the withdrawal had read the user's
/// families before the redemption wrote one and found the code already used up. The redemption
/// asks last whether the consent still stands, and then revokes what it issued: with and
/// without a refresh-token family. A client that never asks for consent is not concerned.
#[tokio::test]
async fn a_code_redeemed_while_its_consent_is_withdrawn_gives_nothing_that_works() {
    let app = TestApp::spawn().await;
    sqlx::any::install_default_drivers();
    let mut db = sqlx::AnyConnection::connect(&app.database_url).await.unwrap();
    for scope in [SCOPE, "openid offline_access"] {
        let code = code_flow(&app, &Browser::new(), "webapp", scope, &[]).await;
        assert_eq!(crate::harness::delete_consents(&app.database_url).await, 1);
        let (status, body) = exchange(&app, &code).await;
        assert_eq!(
            (status, &body["error"]),
            (400, &Value::from("invalid_grant")),
            "{scope}: {body}"
        );
        assert_eq!(
            body["error_description"], "the consent that approved this grant has been withdrawn",
            "{body}"
        );
        let (access, families) = crate::harness::unrevoked_grants(&app.database_url, "auth_codes").await;
        assert_eq!(access, 0, "{scope}: the access token issued is revoked");
        assert_eq!(families, 0, "{scope}: no family is left");
    }
    let (families, issued): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM refresh_families), (SELECT COUNT(*) FROM auth_codes WHERE access_jti IS NOT NULL)",
    )
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert_eq!(
        (families, issued),
        (1, 2),
        "both redemptions issued, then revoked"
    );
    // A first-party client (consent = "skip") has no consent to withdraw: its redemption stands.
    let code = code_flow(&app, &Browser::new(), "firstparty", "openid offline_access", &[]).await;
    let (status, body) = exchange(&app, &code).await;
    assert_eq!(status, 200, "{body}");
}

/// The same for an opaque access token, which is a stored row: the reuse finds and revokes it.
#[tokio::test]
async fn code_reuse_revokes_an_opaque_access_token_too() {
    let app = TestApp::spawn_with(with_opaque_web()).await;
    let code = code_flow(&app, &Browser::new(), "opaque-web", "openid orders.read", &[]).await;
    let (status, first) = exchange(&app, &code).await;
    assert_eq!(status, 200, "{first}");
    let access = first["access_token"].as_str().unwrap();
    assert!(!access.contains('.'), "opaque, not a JWT: {access}");
    let live = app.introspect("opaque-web", access).await;
    assert_eq!(live["active"], true, "{live}");
    assert_eq!(live["client_id"], "opaque-web", "{live}");

    let (status, body) = exchange(&app, &code).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")));
    assert_eq!(
        app.introspect("opaque-web", access).await,
        serde_json::json!({"active": false})
    );
}

/// Redeems `code` `n` times at once (each with its own connection); returns (status, body) of each.
async fn storm(app: &TestApp, code: &Code, n: usize) -> Vec<(u16, Value)> {
    let url = format!("{}/oauth2/v1/token", app.base);
    let host = app.issuer.trim_start_matches("http://").to_string();
    let form = Arc::new(vec![
        ("grant_type".to_string(), "authorization_code".to_string()),
        ("code".to_string(), code.code.clone()),
        ("redirect_uri".to_string(), code.redirect_uri.clone()),
        ("code_verifier".to_string(), code.verifier.clone()),
    ]);
    let start = Arc::new(tokio::sync::Barrier::new(n));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        let http = reqwest::Client::new();
        let (url, host, form, start) = (url.clone(), host.clone(), form.clone(), start.clone());
        set.spawn(async move {
            start.wait().await;
            let resp = http
                .post(&url)
                .header("host", host)
                .basic_auth("webapp", Some(secret("webapp")))
                .form(&*form)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            (status, body)
        });
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        out.push(r.unwrap());
    }
    out
}

#[tokio::test]
async fn parallel_redemptions_give_exactly_one_token() {
    let app = TestApp::spawn().await;
    let browser = Browser::new();
    let code = webapp_code(&app, &browser).await;
    let mut ok = 0;
    let mut refused = 0;
    for (status, body) in storm(&app, &code, 20).await {
        match status {
            200 => {
                assert!(body["access_token"].is_string(), "{body}");
                ok += 1;
            }
            400 => {
                assert_eq!(body["error"], "invalid_grant", "{body}");
                refused += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!((ok, refused), (1, 19));
}

/// A reuse that races the first redemption (arriving after the code is marked used but before
/// the access token is recorded against it) must still revoke that token. Each round has a
/// fair chance of hitting the window, so twenty rounds catch a missing guard almost always.
#[tokio::test]
async fn reuse_racing_the_first_redemption_still_revokes_its_token() {
    let app = TestApp::spawn().await;
    let browser = Browser::new();
    webapp_code(&app, &browser).await;
    for round in 0..20 {
        let code = code_flow(&app, &browser, "webapp", SCOPE, &[("prompt", "none")]).await;
        let answers = storm(&app, &code, 10).await;
        let winners: Vec<&Value> = answers
            .iter()
            .filter(|(s, _)| *s == 200)
            .map(|(_, b)| b)
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: {answers:?}");
        let access = winners[0]["access_token"].as_str().unwrap();
        assert_eq!(
            app.introspect("webapp", access).await["active"],
            false,
            "round {round}: nine reuses of the code, yet its token is still active"
        );
    }
}

#[tokio::test]
async fn confidential_client_without_its_secret_is_invalid_client() {
    let app = TestApp::spawn().await;
    let browser = Browser::new();
    let code = webapp_code(&app, &browser).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.code.as_str()),
        ("redirect_uri", code.redirect_uri.as_str()),
        ("code_verifier", code.verifier.as_str()),
    ];
    // Named in the form without a secret, as a public client would.
    let mut named = vec![("client_id", "webapp")];
    named.extend_from_slice(&form);
    let a = answer(app.post("/oauth2/v1/token").form(&named).send().await.unwrap()).await;
    assert_error(&a, 401, "invalid_client", "client_id without secret");
    // A wrong secret by Basic: 401 with the Basic challenge.
    let a = answer(
        app.post("/oauth2/v1/token")
            .basic_auth("webapp", Some("wrong-secret"))
            .form(&form)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(&a, 401, "invalid_client", "wrong secret");
    assert!(
        a.header("www-authenticate").starts_with("Basic"),
        "{:?}",
        a.headers
    );
    // The code was not spent by the refused attempts.
    let (status, body) = exchange(&app, &code).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn id_token_claims() {
    let app = TestApp::spawn().await;
    let browser = Browser::new();
    let signed_in_at = app.clock.now();
    let code = webapp_code(&app, &browser).await;
    app.clock.advance(5);
    let (status, body) = exchange(&app, &code).await;
    assert_eq!(status, 200, "{body}");
    let id_token = body["id_token"].as_str().unwrap();
    let access = body["access_token"].as_str().unwrap();
    let (_, _, jwks) = app.get_json(&format!("{}/oauth2/v1/keys", app.issuer)).await;
    let claims = verify_with_jwks(id_token, &jwks, &app.issuer, "webapp").unwrap();
    let (header, _) = jwt_parts(id_token);
    assert_eq!(header["alg"], "RS256", "{header}");
    assert_eq!(claims["iss"], app.issuer);
    assert_eq!(claims["aud"], "webapp");
    let (_, at) = jwt_parts(access);
    assert!(claims["sub"].as_str().is_some_and(|s| !s.is_empty()));
    assert_eq!(claims["sub"], at["sub"]);
    let now = app.clock.now();
    assert_eq!(claims["iat"], now);
    assert!(claims["exp"].as_i64().unwrap() > now, "{claims}");
    assert_eq!(claims["auth_time"], signed_in_at, "{claims}");
    assert_eq!(claims["nonce"], "n-1");
    // OpenID Connect Core s3.1.3.6: at_hash is the left half of SHA-256 of the access token.
    let digest = Sha256::digest(access.as_bytes());
    let at_hash = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..16]);
    assert_eq!(claims["at_hash"], at_hash);
    assert_eq!(claims["amr"], serde_json::json!(["pwd"]));
    let sid = claims["sid"].as_str().unwrap().to_string();
    assert!(!sid.is_empty());

    // The same session: the same sid and auth_time; no nonce when none was sent.
    let code = code_flow(&app, &browser, "webapp", SCOPE, &[]).await;
    let (status, body) = exchange(&app, &code).await;
    assert_eq!(status, 200, "{body}");
    let claims = verify_with_jwks(body["id_token"].as_str().unwrap(), &jwks, &app.issuer, "webapp").unwrap();
    assert_eq!(claims["sid"], sid);
    assert_eq!(claims["auth_time"], signed_in_at);
    assert!(claims.get("nonce").is_none(), "{claims}");
    // Another person's browser: another session id.
    let other = Browser::new();
    let code = code_flow(&app, &other, "webapp", SCOPE, &[]).await;
    let (_, body) = exchange(&app, &code).await;
    let (_, claims) = jwt_parts(body["id_token"].as_str().unwrap());
    assert_ne!(claims["sid"], sid);
}

#[tokio::test]
async fn access_token_lifetime_is_at_most_the_remaining_session_lifetime() {
    let app = TestApp::spawn_with(Opts {
        domain_keys: "session_max_lifetime = \"10m\"".into(),
        ..Opts::default()
    })
    .await;
    let browser = Browser::new();
    let signed_in_at = app.clock.now();
    let body = sign_in_tokens(&app, &browser, "webapp", SCOPE).await;
    // The orders API's tokens last 30 minutes; the session only 10.
    let expires_in = body["expires_in"].as_i64().unwrap();
    assert!(expires_in > 0 && expires_in <= 600, "{body}");
    // Later in the same session: what is left of it.
    app.clock.advance(400);
    let code = code_flow(&app, &browser, "webapp", SCOPE, &[("prompt", "none")]).await;
    let (status, body) = exchange(&app, &code).await;
    assert_eq!(status, 200, "{body}");
    let expires_in = body["expires_in"].as_i64().unwrap();
    assert!(expires_in > 0 && expires_in <= 200, "{body}");
    let (_, at) = jwt_parts(body["access_token"].as_str().unwrap());
    assert!(at["exp"].as_i64().unwrap() <= signed_in_at + 600, "{at}");
}

#[tokio::test]
async fn resource_at_the_code_exchange_is_checked_before_the_code_is_used_up() {
    let app = TestApp::spawn().await;
    let code = code_flow(&app, &Browser::new(), "webapp", SCOPE, &[]).await;
    let verifier = code.verifier.as_str();
    let uri = code.redirect_uri.as_str();
    let common = [("code_verifier", verifier), ("redirect_uri", uri)];
    // RFC 8707 s2: unknown, or not an absolute URI: invalid_target, and the code is still good.
    for resource in [
        "https://nope.example/api",
        "orders",
        "https://api.example.com/orders#x",
    ] {
        let mut fields = common.to_vec();
        fields.push(("resource", resource));
        let a = redeem(&app, "webapp", &code.code, &fields).await;
        assert_error(&a, 400, "invalid_target", resource);
    }
    // A resource the grant holds no scope of: invalid_target too, and still before the code is
    // used up.
    let mut fields = common.to_vec();
    fields.push(("resource", "https://api.example.com/billing"));
    let a = redeem(&app, "webapp", &code.code, &fields).await;
    assert_error(&a, 400, "invalid_target", "billing");
    // The same code, for orders: a token for it alone, with its scopes of the grant (no OpenID
    // scope: the token is not for userinfo; the ID token comes all the same).
    let mut fields = common.to_vec();
    fields.push(("resource", "https://api.example.com/orders"));
    let a = redeem(&app, "webapp", &code.code, &fields).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["scope"], "orders.read", "{}", a.body);
    assert!(a.body["id_token"].is_string(), "{}", a.body);
    let (_, claims) = jwt_parts(a.body["access_token"].as_str().unwrap());
    assert_eq!(claims["aud"], "https://api.example.com/orders", "{claims}");
    assert_eq!(claims["scope"], "orders.read", "{claims}");
}
