//! Browser sign-in end to end over HTTP: authorize, sign in, consent, code, tokens, userinfo.

use crate::flow::{Browser, code_flow, exchange};
use crate::harness::{TestApp, jwt_parts, verify_with_jwks};

#[tokio::test]
async fn code_flow_gives_access_and_id_tokens_and_userinfo() {
    let app = TestApp::spawn().await;
    let browser = Browser::new();
    let code = code_flow(
        &app,
        &browser,
        "webapp",
        "openid profile email orders.read",
        &[("nonce", "n-1")],
    )
    .await;
    let (status, body) = exchange(&app, &code).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    let id_token = body["id_token"].as_str().unwrap();
    let (_, _, jwks) = app.get_json(&format!("{}/oauth2/v1/keys", app.issuer)).await;
    let claims = verify_with_jwks(id_token, &jwks, &app.issuer, "webapp").unwrap();
    assert_eq!(claims["nonce"], "n-1");
    let (_, at) = jwt_parts(body["access_token"].as_str().unwrap());
    assert_eq!(claims["sub"], at["sub"]);
    let info = crate::flow::userinfo(&app, body["access_token"].as_str().unwrap()).await;
    assert_eq!(info["email"], "alice@example.com");
    assert_eq!(info["sub"], claims["sub"]);
}

async fn tokens_for(app: &TestApp, scope: &str) -> serde_json::Value {
    let browser = Browser::new();
    let code = code_flow(app, &browser, "webapp", scope, &[]).await;
    let (status, body) = exchange(app, &code).await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test]
async fn userinfo_gives_claims_by_scope_and_groups_where_asked() {
    let app = TestApp::spawn().await;
    let body = tokens_for(&app, "openid profile email address phone groups").await;
    let token = body["access_token"].as_str().unwrap();
    let info = crate::flow::userinfo(&app, token).await;
    assert_eq!(info["name"], "Alice Example");
    assert_eq!(info["given_name"], "Alice");
    assert_eq!(info["preferred_username"], "alice");
    assert_eq!(info["email_verified"], true);
    assert_eq!(info["phone_number"], "+1 555 0100");
    assert_eq!(info["address"]["locality"], "Springfield");
    assert_eq!(info["groups"], serde_json::json!(["staff", "admins"]));
    assert!(
        info.get("department").is_none(),
        "attributes are not OpenID claims"
    );
    let (_, id) = jwt_parts(body["id_token"].as_str().unwrap());
    assert!(
        id.get("groups").is_none(),
        "groups go in the ID token only with get_groups"
    );
    assert_eq!(id["acr"], "1");
    assert_eq!(id["amr"], serde_json::json!(["pwd"]));

    let body = tokens_for(&app, "openid get_groups").await;
    let (_, id) = jwt_parts(body["id_token"].as_str().unwrap());
    assert_eq!(id["groups"], serde_json::json!(["staff", "admins"]));
    let info: serde_json::Value = app
        .get("/oauth2/v1/userinfo")
        .bearer_auth(body["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(info.get("email").is_none(), "no email scope, no email: {info}");
    assert!(info.get("groups").is_none(), "no groups scope: {info}");
}

#[tokio::test]
async fn userinfo_accepts_the_token_in_the_header_or_a_form_body_and_answers_errors_per_rfc6750() {
    let app = TestApp::spawn().await;
    let body = tokens_for(&app, "openid email").await;
    let token = body["access_token"].as_str().unwrap();
    // RFC 6750 s2.2: form-encoded body parameter.
    let resp = app
        .post("/oauth2/v1/userinfo")
        .form(&[("access_token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    // The media type's case does not matter, a charset may follow (RFC 9110 s8.3.1); another
    // type is not a form.
    for (content_type, status) in [
        ("Application/X-WWW-Form-Urlencoded; charset=UTF-8", 200),
        ("application/x-www-form-urlencodedX", 401),
    ] {
        let resp = app
            .post("/oauth2/v1/userinfo")
            .header("content-type", content_type)
            .body(format!("access_token={token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), status, "{content_type}");
    }
    // The Authorization header twice: invalid_request.
    crate::harness::assert_two_bearers_refused(app.get("/oauth2/v1/userinfo"), token).await;
    // Both ways at once: invalid_request.
    let resp = app
        .post("/oauth2/v1/userinfo")
        .bearer_auth(token)
        .form(&[("access_token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(
        resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("error=\"invalid_request\"")
    );
    // No token: 401 with the bare challenge and no error information (RFC 6750 s3.1).
    let resp = app.get("/oauth2/v1/userinfo").send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(
        resp.headers()["www-authenticate"],
        format!("Bearer realm=\"{}\"", app.issuer).as_str()
    );
    assert_eq!(resp.headers()["cache-control"], "no-store");
    assert_eq!(resp.text().await.unwrap(), "");
    // A form body over server.max_body_bytes: 413, as on every endpoint.
    let resp = app
        .post("/oauth2/v1/userinfo")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("access_token={}", "a".repeat(70_000)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    // A bad token: invalid_token.
    let resp = app
        .get("/oauth2/v1/userinfo")
        .bearer_auth("garbage")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(
        resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("error=\"invalid_token\"")
    );
    // A token without openid (a client_credentials one): insufficient_scope, 403.
    let cc = app.access_token("backend").await;
    let resp = app
        .get("/oauth2/v1/userinfo")
        .bearer_auth(&cc)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert!(
        resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("error=\"insufficient_scope\"")
    );
    // An expired token: invalid_token.
    app.clock.advance(3 * 3600);
    let resp = app
        .get("/oauth2/v1/userinfo")
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn claims_requested_with_the_claims_parameter_land_where_asked() {
    let app = TestApp::spawn().await;
    let browser = Browser::new();
    let claims = r#"{"id_token":{"email":{"essential":true},"nickname":null},"userinfo":{"phone_number":null,"address":null}}"#;
    let code = code_flow(
        &app,
        &browser,
        "webapp",
        "openid offline_access",
        &[("claims", claims)],
    )
    .await;
    let (status, body) = exchange(&app, &code).await;
    assert_eq!(status, 200, "{body}");
    let (_, id) = jwt_parts(body["id_token"].as_str().unwrap());
    assert_eq!(id["email"], "alice@example.com", "asked in the ID token");
    assert!(id.get("nickname").is_none(), "a claim the user lacks is left out");
    assert!(id.get("phone_number").is_none(), "asked at userinfo only");
    let info: serde_json::Value = app
        .get("/oauth2/v1/userinfo")
        .bearer_auth(body["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["phone_number"], "+1 555 0100");
    assert_eq!(info["address"]["country"], "US");
    assert!(info.get("email").is_none(), "asked in the ID token only: {info}");
    // A refreshed ID token carries them again.
    let (status, refreshed) =
        crate::flow::refresh(&app, "webapp", body["refresh_token"].as_str().unwrap(), &[]).await;
    assert_eq!(status, 200, "{refreshed}");
    let (_, id2) = jwt_parts(refreshed["id_token"].as_str().unwrap());
    assert_eq!(id2["email"], "alice@example.com");

    // A malformed claims parameter is redirected as invalid_request.
    let pk = crate::flow::pkce();
    let page = browser
        .get(&crate::flow::code_request_url(
            &app,
            "webapp",
            "openid",
            &pk.challenge,
            &[("state", "s1"), ("claims", "[1,2]")],
        ))
        .await;
    assert_eq!(page.status, 303);
    let q = page.redirect_params();
    assert_eq!(q["error"], "invalid_request");
    assert_eq!(q["state"], "s1");
}

#[tokio::test]
async fn id_tokens_are_signed_with_the_clients_registered_algorithm() {
    let app = TestApp::spawn_with(crate::harness::Opts {
        domain_extra: format!(
            r#"
  [[domain.client]]
  client_id = "ecapp"
  secret_hash = "{}"
  id_token_signed_response_alg = "ES256"
  consent = "skip"
  grant_types = ["authorization_code"]
  redirect_uris = ["https://app.example.com/cb"]
  scopes = ["openid"]
"#,
            ostiary::crypto::secrets::SecretHash::sha256_string(&crate::harness::secret("ecapp"))
        ),
        ..Default::default()
    })
    .await;
    let browser = Browser::new();
    let mut code = code_flow(&app, &browser, "webapp", "openid", &[]).await;
    let (_, body) = exchange(&app, &code).await;
    let (header, _) = jwt_parts(body["id_token"].as_str().unwrap());
    assert_eq!(header["alg"], "RS256", "the default");
    // Same browser, now signed in: the first-party client gets its code without any page.
    let p = crate::flow::pkce();
    let page = browser
        .get(&crate::flow::authorize_url(
            &app,
            &[
                ("response_type", "code"),
                ("client_id", "ecapp"),
                ("redirect_uri", "https://app.example.com/cb"),
                ("scope", "openid"),
                ("code_challenge", &p.challenge),
                ("code_challenge_method", "S256"),
            ],
        ))
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    code.code = page.redirect_params()["code"].clone();
    code.verifier = p.verifier;
    code.client = "ecapp".into();
    let (status, body) = exchange(&app, &code).await;
    assert_eq!(status, 200, "{body}");
    let id_token = body["id_token"].as_str().unwrap();
    let (header, _) = jwt_parts(id_token);
    assert_eq!(header["alg"], "ES256");
    let (_, _, jwks) = app.get_json(&format!("{}/oauth2/v1/keys", app.issuer)).await;
    verify_with_jwks(id_token, &jwks, &app.issuer, "ecapp").unwrap();
    let (_, _, disco) = app
        .get_json(&format!("{}/.well-known/openid-configuration", app.issuer))
        .await;
    assert!(
        disco["id_token_signing_alg_values_supported"]
            .as_array()
            .unwrap()
            .contains(&"ES256".into())
    );
}

#[tokio::test]
async fn the_consent_page_describes_every_scope_and_names_the_client_escaped() {
    let app = TestApp::spawn().await;
    let browser = Browser::new();
    let p = crate::flow::pkce();
    let login = browser
        .get(&crate::flow::code_request_url(
            &app,
            "webapp",
            "openid orders.read groups get_groups offline_access orders.offline",
            &p.challenge,
            &[],
        ))
        .await;
    let after = browser
        .sign_in(&login, "alice", &crate::harness::password("alice"))
        .await;
    assert_eq!(after.status, 303);
    let page = browser.get(&after.location().unwrap()).await;
    assert_eq!(page.status, 200);
    for text in [
        "Web &#60;App&#62; &#38; Co",
        "Know who you are",
        "Read orders",
        "See the groups you belong to",
        "Receive your groups when you sign in",
        "Keep access when you are not using it",
        "Keep access to https://api.example.com/orders when you are not using it",
    ] {
        assert!(page.body.contains(text), "{text} missing from {}", page.body);
    }
    assert!(!page.body.contains("Web <App>"), "the client name is escaped");
}

fn silent(app: &TestApp, hint: &str, challenge: &str) -> String {
    crate::flow::code_request_url(
        app,
        "webapp",
        "openid",
        challenge,
        &[("state", "h"), ("prompt", "none"), ("id_token_hint", hint)],
    )
}

#[tokio::test]
async fn id_token_hint_must_name_the_signed_in_user() {
    let app = TestApp::spawn().await;
    let alice = Browser::new();
    let tokens = tokens_with(&app, &alice, "openid").await;
    let hint = tokens["id_token"].as_str().unwrap().to_string();
    let p = crate::flow::pkce();
    // Alice's own session: a code without any page, also once the hint has expired (1h).
    app.clock.advance(3600 + 60);
    let page = alice.get(&silent(&app, &hint, &p.challenge)).await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert!(
        page.redirect_params().contains_key("code"),
        "{:?}",
        page.location()
    );
    // Carol's browser with Alice's hint: as if nobody were signed in.
    let carol = Browser::new();
    let login = carol
        .get(&crate::flow::code_request_url(
            &app,
            "firstparty",
            "openid",
            &p.challenge,
            &[],
        ))
        .await;
    let signed = carol
        .sign_in(&login, "carol", &crate::harness::password("carol"))
        .await;
    assert_eq!(signed.status, 303);
    let page = carol.get(&silent(&app, &hint, &p.challenge)).await;
    assert_eq!(page.status, 303);
    assert_eq!(page.redirect_params()["error"], "login_required");
    // A hint that is not an ID token of ours for this client.
    for bad in ["garbage", &app.access_token("backend").await] {
        let page = alice.get(&silent(&app, bad, &p.challenge)).await;
        assert_eq!(page.status, 303);
        let q = page.redirect_params();
        assert_eq!(q["error"], "invalid_request", "{bad}");
        assert_eq!(q["state"], "h");
    }
}

#[tokio::test]
async fn a_code_is_only_for_the_user_the_client_named() {
    let app = TestApp::spawn().await;
    let alice = Browser::new();
    let tokens = tokens_with(&app, &alice, "openid").await;
    let hint = tokens["id_token"].as_str().unwrap().to_string();
    let alice_sub = jwt_parts(&hint).1["sub"].as_str().unwrap().to_string();
    let p = crate::flow::pkce();
    let named = |extra: &[(&str, &str)]| {
        let mut e = vec![("state", "n")];
        e.extend_from_slice(extra);
        crate::flow::code_request_url(&app, "webapp", "openid", &p.challenge, &e)
    };
    let sub_claims = serde_json::json!({"id_token": {"sub": {"value": alice_sub}}}).to_string();
    // Nobody signed in, Alice's hint: the sign-in page; signing in as Carol gets no code but
    // login_required at the client (OpenID Connect Core s3.1.2.2), with state and iss.
    for extra in [("id_token_hint", hint.as_str()), ("claims", sub_claims.as_str())] {
        let carol = Browser::new();
        let login = carol.get(&named(&[extra])).await;
        assert!(login.is_login(), "{}: {}", extra.0, login.body);
        let signed = carol
            .sign_in(&login, "carol", &crate::harness::password("carol"))
            .await;
        assert_eq!(signed.status, 303, "{}", signed.body);
        let q = signed.redirect_params();
        assert_eq!(
            q.get("error").map(String::as_str),
            Some("login_required"),
            "{}: {q:?}",
            extra.0
        );
        assert!(!q.contains_key("code"), "{q:?}");
        assert_eq!(q["state"], "n");
        assert_eq!(q["iss"], app.issuer);
        // Carol is signed in now, but her session counts as none for a request naming Alice:
        // prompt=none answers login_required, and without it the sign-in page is shown again.
        let silent = carol.get(&named(&[extra, ("prompt", "none")])).await;
        assert_eq!(silent.redirect_params()["error"], "login_required", "{}", extra.0);
        let again = carol.get(&named(&[extra])).await;
        assert!(again.is_login(), "{}: {}", extra.0, again.body);
        // Signing in there as Alice gets the code.
        let signed = carol
            .sign_in(&again, "alice", &crate::harness::password("alice"))
            .await;
        assert_eq!(signed.status, 303, "{}", signed.body);
        assert!(
            signed.redirect_params().contains_key("code"),
            "{:?}",
            signed.location()
        );
    }
    // Alice's own session and a claims request naming her: a code without any page.
    let page = alice
        .get(&named(&[("claims", &sub_claims), ("prompt", "none")]))
        .await;
    assert!(
        page.redirect_params().contains_key("code"),
        "{:?}",
        page.location()
    );
    // A hint and a claims sub naming different users cannot both be met.
    let other = serde_json::json!({"id_token": {"sub": {"value": "someone-else"}}}).to_string();
    let page = alice
        .get(&named(&[("id_token_hint", &hint), ("claims", &other)]))
        .await;
    let q = page.redirect_params();
    assert_eq!(
        (q["error"].as_str(), q["state"].as_str()),
        ("invalid_request", "n"),
        "{q:?}"
    );
}

#[tokio::test]
async fn an_essential_acr_that_cannot_be_met_fails_the_request() {
    let app = TestApp::spawn().await;
    let alice = Browser::new();
    tokens_with(&app, &alice, "openid").await;
    let p = crate::flow::pkce();
    let with_claims = |claims: serde_json::Value| {
        crate::flow::code_request_url(
            &app,
            "webapp",
            "openid",
            &p.challenge,
            &[("state", "a"), ("claims", &claims.to_string())],
        )
    };
    // OpenID Connect Core s5.5.1.1: only acr "1" (a password) is reached here.
    for acr in [
        serde_json::json!({"essential": true, "values": ["urn:example:mfa"]}),
        serde_json::json!({"essential": true, "value": "2"}),
    ] {
        let page = alice
            .get(&with_claims(serde_json::json!({"id_token": {"acr": acr}})))
            .await;
        let q = page.redirect_params();
        assert_eq!(q["error"], "unmet_authentication_requirements", "{acr}: {q:?}");
        assert_eq!(q["state"], "a");
        assert!(!q.contains_key("code"));
    }
    // One of the values is "1", or the acr is voluntary: the code.
    for acr in [
        serde_json::json!({"essential": true, "values": ["urn:example:mfa", "1"]}),
        serde_json::json!({"values": ["urn:example:mfa"]}),
    ] {
        let page = alice
            .get(&with_claims(serde_json::json!({"id_token": {"acr": acr}})))
            .await;
        assert!(
            page.redirect_params().contains_key("code"),
            "{acr}: {:?}",
            page.location()
        );
    }
}

#[tokio::test]
async fn signing_in_again_keeps_the_session_and_someone_else_ends_it() {
    let app = TestApp::spawn().await;
    let alice = Browser::new();
    let first = tokens_with(&app, &alice, "openid").await;
    let (_, c1) = jwt_parts(first["id_token"].as_str().unwrap());
    let p = crate::flow::pkce();
    let again =
        |extra: &[(&str, &str)]| crate::flow::code_request_url(&app, "webapp", "openid", &p.challenge, extra);
    // prompt=login: Alice signs in again in the same browser. The session is kept (same sid,
    // so what is bound to it stays), with the new sign-in time.
    app.clock.advance(30);
    let login = alice.get(&again(&[("prompt", "login")])).await;
    assert!(login.is_login(), "{}", login.body);
    let signed = alice
        .sign_in(&login, "alice", &crate::harness::password("alice"))
        .await;
    let code = signed.redirect_params()["code"].clone();
    let (status, second) = exchange(
        &app,
        &crate::flow::Code {
            code,
            verifier: p.verifier.clone(),
            redirect_uri: crate::flow::redirect_uri_of("webapp").to_string(),
            client: "webapp".into(),
        },
    )
    .await;
    assert_eq!(status, 200, "{second}");
    let (_, c2) = jwt_parts(second["id_token"].as_str().unwrap());
    assert_eq!(c2["sid"], c1["sid"], "the same session");
    assert!(c2["auth_time"].as_i64() >= Some(c1["auth_time"].as_i64().unwrap() + 30));
    let access = second["access_token"].as_str().unwrap().to_string();
    assert_eq!(app.introspect("webapp", &access).await["active"], true);
    // select_account: Carol signs in in Alice's browser. Alice is signed out of it first: what
    // her session gave is revoked, and no session of hers is left that no browser holds.
    let login = alice.get(&again(&[("prompt", "select_account")])).await;
    assert!(login.is_login(), "{}", login.body);
    let signed = alice
        .sign_in(&login, "carol", &crate::harness::password("carol"))
        .await;
    assert_eq!(signed.status, 303, "{}", signed.body);
    assert_eq!(
        app.introspect("webapp", &access).await,
        serde_json::json!({"active": false})
    );
    let alive = crate::harness::count_rows(
        &app.database_url,
        "sessions WHERE ended_at IS NULL AND user_id IN (SELECT id FROM users WHERE username = 'alice')",
    )
    .await;
    assert_eq!(alive, 0);
}

async fn tokens_with(app: &TestApp, browser: &Browser, scope: &str) -> serde_json::Value {
    let code = code_flow(app, browser, "webapp", scope, &[]).await;
    let (status, body) = exchange(app, &code).await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test]
async fn oversized_page_forms_get_413_and_malformed_ones_a_400_page() {
    let app = TestApp::spawn().await;
    let big = "a".repeat(10_000);
    for path in ["/signin", "/consent", "/oauth2/v1/authorize"] {
        let resp = app
            .post(path)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(big.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 413, "{path}");
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        let resp = app
            .post(path)
            .form(&[("request", "nope"), ("csrf", "x")])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{path}");
    }
}
