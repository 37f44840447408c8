//! The token endpoint with the client_credentials grant: success and every failure.

use base64::Engine;
use serde_json::Value;

use crate::harness::{Opts, TestApp, jwt_parts, secret, verify_with_jwks};

async fn error_of(resp: reqwest::Response) -> (u16, reqwest::header::HeaderMap, Value) {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body: Value = resp.json().await.unwrap();
    (status, headers, body)
}

#[tokio::test]
async fn basic_success_is_an_rfc9068_jwt_verifiable_with_the_jwks() {
    let app = TestApp::spawn().await;
    let resp = app
        .post_basic(
            "/oauth2/v1/token",
            "backend",
            &[("grant_type", "client_credentials"), ("scope", "orders.read")],
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    assert_eq!(resp.headers()["pragma"], "no-cache");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "orders.read");
    assert_eq!(body["expires_in"], 1800, "the resource server's 30m lifetime");
    assert!(
        body.get("refresh_token").is_none(),
        "RFC 6749 s4.4.3: no refresh token"
    );
    let token = body["access_token"].as_str().unwrap();
    let (header, _) = jwt_parts(token);
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["alg"], "RS256");
    let (_, _, jwks) = app.get_json(&format!("{}/oauth2/v1/keys", app.issuer)).await;
    let claims = verify_with_jwks(token, &jwks, &app.issuer, "https://api.example.com/orders").unwrap();
    for name in ["iss", "sub", "aud", "exp", "iat", "jti", "client_id", "scope"] {
        assert!(claims.get(name).is_some(), "claim {name} missing: {claims}");
    }
    assert_eq!(claims["sub"], "backend");
    assert_eq!(claims["client_id"], "backend");
    assert_eq!(claims["aud"], "https://api.example.com/orders");
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        1800
    );
    // Static custom claims of the resource server; dynamic ones need a user and are absent.
    assert_eq!(claims["tenant"], "acme");
    assert_eq!(claims["role"], "reader");
    assert!(claims.get("dept").is_none());
}

#[tokio::test]
async fn scope_claims_win_and_default_scope_is_everything_allowed() {
    let app = TestApp::spawn().await;
    let body = app.token("backend", &[]).await;
    assert_eq!(body["scope"], "orders.read orders.write billing.read");
    let (_, claims) = jwt_parts(body["access_token"].as_str().unwrap());
    assert_eq!(
        claims["aud"],
        serde_json::json!([
            "https://api.example.com/orders",
            "https://api.example.com/billing"
        ])
    );
    assert_eq!(
        claims["role"], "writer",
        "the orders.write scope's claim wins over the resource server's"
    );
    // The smallest lifetime of the audiences: orders 30m vs the domain's 1h for billing.
    assert_eq!(body["expires_in"], 1800);
}

#[tokio::test]
async fn resource_parameter_selects_the_audience() {
    let app = TestApp::spawn().await;
    let body = app
        .token("backend", &[("resource", "https://api.example.com/billing")])
        .await;
    assert_eq!(body["scope"], "billing.read");
    assert_eq!(body["expires_in"], 3600);
    let (_, claims) = jwt_parts(body["access_token"].as_str().unwrap());
    assert_eq!(claims["aud"], "https://api.example.com/billing");
    let resp = app
        .post_basic(
            "/oauth2/v1/token",
            "backend",
            &[
                ("grant_type", "client_credentials"),
                ("resource", "https://unknown.example.com"),
            ],
        )
        .await;
    let (status, _, body) = error_of(resp).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_target")));
}

#[tokio::test]
async fn client_secret_post_and_client_lifetime() {
    let app = TestApp::spawn().await;
    let s = secret("poster");
    let resp = app
        .post_form(
            &format!("{}/oauth2/v1/token", app.issuer),
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "poster"),
                ("client_secret", &s),
            ],
        )
        .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["expires_in"], 600,
        "the client's 10m lifetime wins over the resource server's 30m"
    );
}

#[tokio::test]
async fn es256_domain_tokens_verify() {
    let app = TestApp::spawn().await;
    let s = format!("t2-{}", secret("backend"));
    let resp = app
        .http
        .post(format!("{}/oauth2/v1/token", app.issuer2))
        .basic_auth("backend", Some(&s))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(jwt_parts(token).0["alg"], "ES256");
    let (_, _, jwks) = app.get_json(&format!("{}/oauth2/v1/keys", app.issuer2)).await;
    let claims = verify_with_jwks(token, &jwks, &app.issuer2, "https://api.example.com/orders").unwrap();
    assert_eq!(claims["iss"], app.issuer2.as_str());
    // The default domain's secret does not work in tenant2.
    let resp = app
        .http
        .post(format!("{}/oauth2/v1/token", app.issuer2))
        .basic_auth("backend", Some(secret("backend")))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn opaque_tokens_and_argon2_secrets() {
    let app = TestApp::spawn().await;
    let body = app.token("opaque", &[]).await;
    let token = body["access_token"].as_str().unwrap();
    // Its issue time (8 hex digits), then 256 random bits in base64url.
    assert_eq!(token.len(), 51, "{token}");
    assert!(token[..8].bytes().all(|b| b.is_ascii_hexdigit()), "{token}");
    assert!(!token.contains('.'));
    // An argon2id-hashed secret works, twice (the second check is served from the cache).
    app.token("argon", &[]).await;
    app.token("argon", &[]).await;
    let resp = app
        .http
        .post(format!("{}/oauth2/v1/token", app.issuer))
        .basic_auth("argon", Some("wrong"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn client_authentication_failures() {
    let app = TestApp::spawn().await;
    let url = format!("{}/oauth2/v1/token", app.issuer);
    let cc = ("grant_type", "client_credentials");
    // Unknown client, with Basic: 401 and a Basic challenge naming the issuer.
    let resp = app
        .http
        .post(&url)
        .basic_auth("nobody", Some("x"))
        .form(&[cc])
        .send()
        .await
        .unwrap();
    let (status, headers, body) = error_of(resp).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")));
    assert_eq!(
        headers["www-authenticate"],
        format!("Basic realm=\"{}\"", app.issuer).as_str()
    );
    assert_eq!(headers["cache-control"], "no-store");
    // Wrong secret.
    let resp = app
        .http
        .post(&url)
        .basic_auth("backend", Some("wrong"))
        .form(&[cc])
        .send()
        .await
        .unwrap();
    let (status, headers, body) = error_of(resp).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")));
    assert!(headers.contains_key("www-authenticate"));
    // Wrong method: the body when Basic is registered.
    let s = secret("backend");
    let resp = app
        .post_form(&url, &[cc, ("client_id", "backend"), ("client_secret", &s)])
        .await;
    let (status, headers, body) = error_of(resp).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")));
    // RFC 9110 s15.5.2: every 401 carries a challenge, Basic or not.
    assert_eq!(
        headers["www-authenticate"],
        format!("Basic realm=\"{}\"", app.issuer).as_str()
    );
    // Two methods at once.
    let resp = app
        .http
        .post(&url)
        .basic_auth("backend", Some(&s))
        .form(&[cc, ("client_id", "backend"), ("client_secret", &s)])
        .send()
        .await
        .unwrap();
    let (status, _, body) = error_of(resp).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_request")));
    // No credentials at all.
    let resp = app.post_form(&url, &[cc]).await;
    let (status, headers, body) = error_of(resp).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")));
    assert!(headers.contains_key("www-authenticate"));
    // A malformed Basic header.
    let resp = app
        .http
        .post(&url)
        .header("authorization", "Basic !!!")
        .form(&[cc])
        .send()
        .await
        .unwrap();
    let (status, headers, _) = error_of(resp).await;
    assert_eq!(status, 401);
    assert!(headers.contains_key("www-authenticate"));
}

#[tokio::test]
async fn request_and_grant_failures() {
    let app = TestApp::spawn().await;
    let url = format!("{}/oauth2/v1/token", app.issuer);
    let s = secret("backend");
    let cases: Vec<(&str, u16, &str)> = vec![
        (
            "grant_type=client_credentials&grant_type=client_credentials",
            400,
            "invalid_request",
        ),
        ("scope=orders.read", 400, "invalid_request"),
        (
            "grant_type=urn:example:unknown&username=a",
            400,
            "unsupported_grant_type",
        ),
        (
            "grant_type=client_credentials&scope=orders.admin",
            400,
            "invalid_scope",
        ),
        (
            "grant_type=client_credentials&scope=orders.read%20unknown",
            400,
            "invalid_scope",
        ),
        (
            "grant_type=client_credentials&resource=not-a-uri",
            400,
            "invalid_target",
        ),
        // Values the description would quote: RFC 6749 s5.2 keeps it to printable ASCII without
        // `"` and `\`.
        ("grant_type=urn:x%22%5C%C3%A9%0A", 400, "unsupported_grant_type"),
        (
            "grant_type=client_credentials&a%22%C3%A9=1&a%22%C3%A9=2",
            400,
            "invalid_request",
        ),
        // A NUL byte is refused before it reaches the store (PostgreSQL cannot keep it in text).
        (
            "grant_type=client_credentials&scope=orders.read%00",
            400,
            "invalid_request",
        ),
    ];
    for (body, want_status, want_error) in cases {
        let resp = app
            .http
            .post(&url)
            .basic_auth("backend", Some(&s))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        let (status, _, json) = error_of(resp).await;
        assert_eq!(
            (status, json["error"].as_str()),
            (want_status, Some(want_error)),
            "{body}: {json}"
        );
        let description = json["error_description"].as_str().unwrap();
        assert!(
            description
                .chars()
                .all(|c| matches!(c, '\x20'..='\x21' | '\x23'..='\x5b' | '\x5d'..='\x7e')),
            "{body}: {description:?}"
        );
    }
    // A client not registered for the grant.
    let resp = app
        .post_basic(
            "/oauth2/v1/token",
            "nogrant",
            &[("grant_type", "client_credentials")],
        )
        .await;
    let (status, _, json) = error_of(resp).await;
    assert_eq!(
        (status, json["error"].as_str()),
        (400, Some("unauthorized_client"))
    );
    // A public client cannot use client_credentials.
    let resp = app
        .post_form(
            &url,
            &[("grant_type", "client_credentials"), ("client_id", "public")],
        )
        .await;
    let (status, _, json) = error_of(resp).await;
    assert_eq!(
        (status, json["error"].as_str()),
        (400, Some("unauthorized_client"))
    );
}

#[tokio::test]
async fn wrong_content_type_method_and_oversized_body() {
    let app = TestApp::spawn().await;
    let url = format!("{}/oauth2/v1/token", app.issuer);
    let resp = app
        .http
        .post(&url)
        .basic_auth("backend", Some(secret("backend")))
        .json(&serde_json::json!({"grant_type": "client_credentials"}))
        .send()
        .await
        .unwrap();
    let (status, _, json) = error_of(resp).await;
    assert_eq!((status, json["error"].as_str()), (400, Some("invalid_request")));
    let resp = app.http.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    let big = format!("grant_type=client_credentials&pad={}", "x".repeat(10_000));
    let resp = app
        .http
        .post(&url)
        .basic_auth("backend", Some(secret("backend")))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    let json: Value = resp.json().await.unwrap();
    assert_eq!(json["error"], "payload_too_large");
    // Malformed percent-encoding is tolerated as text, never a 500.
    let resp = app
        .http
        .post(&url)
        .basic_auth("backend", Some(secret("backend")))
        .header("content-type", "application/x-www-form-urlencoded; charset=UTF-8")
        .body("grant_type=client_credentials&scope=%ZZ%")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
}

/// RFC 6749 s2.3.1: guessing a chosen (argon2id) client secret is paused per client and
/// address. After `client_secret_attempts` wrong secrets from one address, that address is
/// refused for that client, with the right secret too, for `lockout_duration`; other addresses
/// go on. Guesses sent at once cannot overshoot the budget (each enters it before argon2 runs).
/// The right secret after the pause clears the count. A generated (SHA-256) secret, which cannot
/// be guessed, is never paused.
#[tokio::test]
async fn guessing_a_client_secret_is_paused_per_client_and_address() {
    let app = TestApp::spawn_with(Opts {
        server_extra: "client_address_header = \"X-Forwarded-For\"\ntrusted_proxies = [\"127.0.0.1\"]".into(),
        domain_keys: "client_secret_attempts = 3".into(),
        ..Opts::default()
    })
    .await;
    let right = secret("argon");
    let ask = |from: &'static str, client: &'static str, secret: String| {
        app.post("/oauth2/v1/token")
            .header("X-Forwarded-For", from)
            .basic_auth(client, Some(secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
    };
    let guesser = "198.51.100.1";
    let says = |answer: &(u16, reqwest::header::HeaderMap, Value)| {
        assert_eq!(answer.0, 401, "{}", answer.2);
        assert_eq!(answer.2["error"], "invalid_client");
        assert!(answer.1.contains_key("www-authenticate"));
        answer.2["error_description"].as_str().unwrap().to_string()
    };
    // 24 different wrong secrets at once: only the budget's 3 are checked; the third locks.
    let answers =
        futures_util::future::join_all((0..24).map(|i| async move {
            error_of(ask(guesser, "argon", format!("wrong-{i}")).await.unwrap()).await
        }))
        .await;
    let descriptions: Vec<String> = answers.iter().map(says).collect();
    let failed = descriptions
        .iter()
        .filter(|d| d.as_str() == "client authentication failed")
        .count();
    assert_eq!(failed, 2, "{descriptions:?}");
    assert!(
        descriptions
            .iter()
            .filter(|d| d.as_str() != "client authentication failed")
            .all(|d| d.starts_with("too many failed attempts: try again in 30 seconds")),
        "{descriptions:?}"
    );
    // Paused: the right secret from there is refused as well, and tells nothing.
    let answer = error_of(ask(guesser, "argon", right.clone()).await.unwrap()).await;
    assert!(says(&answer).starts_with("too many failed attempts"));
    // Another address is not.
    let resp = ask("198.51.100.2", "argon", right.clone()).await.unwrap();
    assert_eq!(resp.status(), 200);
    app.clock.advance(30);
    let resp = ask(guesser, "argon", right.clone()).await.unwrap();
    assert_eq!(resp.status(), 200, "after the pause");
    // The right secret cleared the count: two wrong ones are plain failures again.
    for _ in 0..2 {
        let answer = error_of(ask(guesser, "argon", "wrong".into()).await.unwrap()).await;
        assert_eq!(says(&answer), "client authentication failed");
    }
    // A generated secret is never paused: many wrong ones, then the right one works.
    for _ in 0..6 {
        let answer = error_of(ask(guesser, "backend", "wrong".into()).await.unwrap()).await;
        assert_eq!(says(&answer), "client authentication failed");
    }
    let resp = ask(guesser, "backend", secret("backend")).await.unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn a_guess_whose_client_gave_up_during_the_check_is_still_counted_and_given_back() {
    let app = TestApp::spawn_with(Opts {
        domain_keys: "client_secret_attempts = 3".into(),
        ..Opts::default()
    })
    .await;
    let ask = || {
        app.post("/oauth2/v1/token")
            .basic_auth("argon", Some(secret("argon")))
            .form(&[("grant_type", "client_credentials")])
            .send()
    };
    // Rounds of three wrong guesses whose clients give up while argon2 runs (the request is
    // dropped), until they have counted as what they were: three wrong secrets, a pause. (A guess
    // dropped before the server took it counts for nothing, and the right secret asked then
    // clears the count: another round.)
    let mut paused = false;
    for round in 0..5 {
        for i in 0..3 {
            let _ = app
                .post("/oauth2/v1/token")
                .basic_auth("argon", Some(format!("gave-up-{round}-{i}")))
                .form(&[("grant_type", "client_credentials")])
                .timeout(std::time::Duration::from_millis(12))
                .send()
                .await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
        let (status, _, body) = error_of(ask().await.unwrap()).await;
        if status == 401 {
            let description = body["error_description"].as_str().unwrap();
            assert!(description.starts_with("too many failed attempts"), "{body}");
            paused = true;
            break;
        }
    }
    assert!(paused, "three wrong guesses never paused the client");
    // And the pause ends: the right secret works (a guess never settled would hold its place in
    // the budget for good).
    app.clock.advance(31);
    let resp = ask().await.unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn an_authorization_header_sent_twice_is_invalid_request() {
    let app = TestApp::spawn().await;
    let basic = |secret: &str| {
        let pair = format!("backend:{secret}");
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair))
    };
    let resp = app
        .post("/oauth2/v1/token")
        .header("authorization", basic(&secret("backend")))
        .header("authorization", basic("wrong"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    let (status, _, body) = error_of(resp).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
}
