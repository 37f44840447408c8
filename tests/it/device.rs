//! The device authorization grant (RFC 8628) over HTTP: the device authorization endpoint, the
//! verification page walked as a person would (cookies, hidden fields, sign-in), and the device
//! polling the token endpoint, with the test clock standing in for waiting.

use ostiary::clock::Clock;
use reqwest::header::HeaderMap;
use serde_json::Value;
use sqlx::Connection;

use crate::flow::{Browser, Page, signed_in_browser};
use crate::harness::{Opts, TestApp, count_rows, jwt_parts, password, secret, verify_with_jwks};

const GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
const ALPHABET: &str = "BCDFGHJKLMNPQRSTVWXZ";
const UNKNOWN: &str = "That code is not right.";
const EXPIRED: &str = "That code has expired.";
const DECIDED: &str = "That code has already been used.";

/// Device clients: `tv` (public, with refresh tokens) and `console` (confidential, Basic).
fn device_clients() -> String {
    format!(
        r#"
  [[domain.client]]
  client_id = "tv"
  name = "Living-room TV"
  token_endpoint_auth_method = "none"
  grant_types = ["{GRANT}", "refresh_token"]
  scopes = ["openid", "profile", "offline_access", "orders.read"]

  [[domain.client]]
  client_id = "console"
  name = "Game <Console>"
  secret_hash = "{}"
  grant_types = ["{GRANT}"]
  scopes = ["openid", "orders.read", "orders.write"]
"#,
        ostiary::crypto::secrets::SecretHash::sha256_string(&secret("console"))
    )
}

async fn spawn() -> TestApp {
    spawn_with("").await
}

/// A server with the device clients and these domain keys.
async fn spawn_with(domain_keys: &str) -> TestApp {
    TestApp::spawn_with(Opts {
        domain_extra: device_clients(),
        domain_keys: domain_keys.to_string(),
        ..Opts::default()
    })
    .await
}

/// POSTs a form to `path` as `client` authenticates: `tv` by client_id alone, `console` and the
/// harness's confidential clients with Basic, `none:ID` by client_id alone whatever its method.
async fn post_as(app: &TestApp, path: &str, client: &str, form: &[(&str, &str)]) -> (u16, HeaderMap, Value) {
    let resp = match client.strip_prefix("none:").or((client == "tv").then_some("tv")) {
        Some(id) => {
            let mut f = vec![("client_id", id)];
            f.extend_from_slice(form);
            app.post(path).form(&f).send().await.expect("request")
        }
        None => app.post_basic(path, client, form).await,
    };
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.json().await.expect("json"))
}

/// Starts a device authorization; returns status, headers and body.
async fn start(app: &TestApp, client: &str, scope: Option<&str>) -> (u16, HeaderMap, Value) {
    let form: Vec<(&str, &str)> = scope.map(|s| vec![("scope", s)]).unwrap_or_default();
    post_as(app, "/oauth2/v1/device", client, &form).await
}

/// A started device authorization: (device_code, user_code).
async fn started(app: &TestApp, client: &str, scope: &str) -> (String, String) {
    let (status, _, body) = start(app, client, Some(scope)).await;
    assert_eq!(status, 200, "{body}");
    (
        body["device_code"].as_str().expect("device_code").to_string(),
        body["user_code"].as_str().expect("user_code").to_string(),
    )
}

/// The device polls once: status, headers and body.
async fn poll(app: &TestApp, client: &str, device_code: &str) -> (u16, HeaderMap, Value) {
    post_as(
        app,
        "/oauth2/v1/token",
        client,
        &[("grant_type", GRANT), ("device_code", device_code)],
    )
    .await
}

/// Asserts an RFC 6749 s5.2 error answer of the token endpoint.
fn assert_token_error(answer: &(u16, HeaderMap, Value), error: &str) {
    let (status, headers, body) = answer;
    assert_eq!(*status, 400, "{body}");
    assert_eq!(body["error"], error, "{body}");
    assert!(body["error_description"].is_string(), "{body}");
    assert_eq!(headers["cache-control"], "no-store");
}

fn device_url(app: &TestApp) -> String {
    format!("{}/device", app.issuer)
}

/// Types `typed` into a fresh code form of `browser` and submits it.
async fn enter_code(app: &TestApp, browser: &Browser, typed: &str) -> Page {
    let form = browser.get(&device_url(app)).await;
    assert_eq!(form.status, 200, "{}", form.body);
    let csrf = form.field("csrf").expect("csrf field");
    browser
        .post(&device_url(app), &[("csrf", &csrf), ("user_code", typed)])
        .await
}

/// Enters the code and follows on to the confirmation page, signing in as alice when asked.
async fn to_confirmation(app: &TestApp, browser: &Browser, typed: &str) -> Page {
    let page = enter_code(app, browser, typed).await;
    assert_eq!(page.status, 303, "{}", page.body);
    let next = page.location().expect("location");
    assert!(
        next.starts_with(&format!("{}?request=", device_url(app))),
        "{next}"
    );
    let mut page = browser.get(&next).await;
    if page.is_login() {
        page = browser.sign_in(&page, "alice", &password("alice")).await;
        assert_eq!(page.status, 303, "{}", page.body);
        assert_eq!(
            page.location().as_deref(),
            Some(next.as_str()),
            "back to the device page"
        );
        page = browser.get(&next).await;
    }
    assert!(
        page.is_consent(),
        "not the confirmation: {} {}",
        page.status,
        page.body
    );
    page
}

/// Approves (or denies) on a confirmation page; asserts the result page.
async fn decide(browser: &Browser, confirm: &Page, decision: &str) -> Page {
    let done = browser.consent(confirm, decision, &[]).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_page_headers(&done, "device done page");
    done
}

/// What every HTML page of the server carries.
fn assert_page_headers(page: &Page, what: &str) {
    assert!(page.header("content-type").starts_with("text/html"), "{what}");
    assert_eq!(page.header("x-frame-options"), "DENY", "{what}");
    assert_eq!(page.header("cache-control"), "no-store", "{what}");
    assert_eq!(page.header("x-content-type-options"), "nosniff", "{what}");
    assert_eq!(page.header("referrer-policy"), "no-referrer", "{what}");
    let csp = page.header("content-security-policy");
    assert!(csp.contains("frame-ancestors 'none'"), "{what}: CSP {csp}");
    assert!(csp.contains("script-src 'none'"), "{what}: CSP {csp}");
}

/// One row of the app's database, as text columns.
async fn device_row(app: &TestApp, device_code: &str) -> (String, Option<String>, i64) {
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&app.database_url)
        .await
        .expect("connect");
    let hash = ostiary::crypto::secrets::sha256_b64(device_code);
    sqlx::query_as("SELECT status, user_id, poll_interval FROM device_codes WHERE hash = $1")
        .bind(hash)
        .fetch_one(&mut conn)
        .await
        .expect("device row")
}

// ---------------------------------------------------------------------------------------------
// the device authorization endpoint

#[tokio::test]
async fn device_authorization_response_has_the_rfc_8628_shape() {
    let app = spawn().await;
    let (status, headers, body) = start(&app, "tv", Some("openid orders.read")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let mut keys: Vec<&str> = body.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "device_code",
            "expires_in",
            "interval",
            "user_code",
            "verification_uri",
            "verification_uri_complete"
        ]
    );
    // 256 bits, base64url without padding.
    let device_code = body["device_code"].as_str().unwrap();
    assert_eq!(device_code.len(), 43, "{device_code}");
    let user_code = body["user_code"].as_str().unwrap();
    assert_eq!(user_code.len(), 9, "{user_code}");
    for (i, c) in user_code.chars().enumerate() {
        if i == 4 {
            assert_eq!(c, '-', "{user_code}");
        } else {
            assert!(ALPHABET.contains(c), "{c} of {user_code} is not in the alphabet");
        }
    }
    assert_eq!(body["verification_uri"], format!("{}/device", app.issuer));
    assert_eq!(
        body["verification_uri_complete"],
        format!("{}/device?user_code={user_code}", app.issuer)
    );
    assert_eq!(body["expires_in"], 600);
    assert_eq!(body["interval"], 5);

    // Another request: other codes. Only hashes are stored.
    let (other_device, other_user) = started(&app, "tv", "openid").await;
    assert_ne!(other_device, device_code);
    assert_ne!(other_user, user_code);
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&app.database_url).await.unwrap();
    let rows: Vec<(String, String, String, String)> =
        sqlx::query_as("SELECT hash, user_code_hash, client_id, scope FROM device_codes ORDER BY issued_at")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(rows.len(), 2);
    for (hash, user_hash, client, _) in &rows {
        assert_eq!(client, "tv");
        for secret in [
            device_code,
            user_code,
            &user_code.replace('-', ""),
            &other_device,
            &other_user,
        ] {
            assert_ne!(hash, secret);
            assert_ne!(user_hash, secret);
        }
    }
    // The user code (about 34 bits) is kept keyed (an HMAC under the server's key), not as a
    // plain SHA-256 of its letters, which a reader of the table could reverse by trying them all.
    let stored: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
    for code in [user_code, other_user.as_str()] {
        let plain = ostiary::crypto::secrets::sha256_b64(&code.replace('-', ""));
        assert!(!stored.contains(&plain.as_str()), "{code}: {stored:?}");
    }
    assert!(rows.iter().any(|r| r.3 == "openid orders.read"), "{rows:?}");
}

#[tokio::test]
async fn device_authorization_lifetime_and_interval_come_from_the_domain() {
    let app = spawn_with("device_code_lifetime = \"15m\"\ndevice_poll_interval = \"8s\"").await;
    let (status, _, body) = start(&app, "console", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["expires_in"], 900);
    assert_eq!(body["interval"], 8);
    // Without scope: the client's API scopes, as in the code flow (RFC 6749 s3.3).
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&app.database_url).await.unwrap();
    let (scope,): (String,) = sqlx::query_as("SELECT scope FROM device_codes WHERE hash = $1")
        .bind(ostiary::crypto::secrets::sha256_b64(
            body["device_code"].as_str().unwrap(),
        ))
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(scope, "orders.read orders.write");
}

#[tokio::test]
async fn clients_without_the_device_grant_are_unauthorized() {
    let app = spawn().await;
    // A confidential client with client_credentials only, and a code-flow client.
    for client in ["backend", "webapp"] {
        let (status, headers, body) = start(&app, client, Some("orders.read")).await;
        assert_eq!(status, 400, "{client}: {body}");
        assert_eq!(body["error"], "unauthorized_client", "{client}: {body}");
        assert_eq!(headers["cache-control"], "no-store");
    }
    // A public code-flow client.
    let (status, _, body) = start(&app, "none:spa", Some("openid")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unauthorized_client")),
        "{body}"
    );
}

#[tokio::test]
async fn device_authorization_authenticates_clients_like_the_token_endpoint() {
    let app = spawn().await;
    // A public client: client_id alone.
    let (status, _, body) = start(&app, "tv", Some("openid")).await;
    assert_eq!(status, 200, "{body}");
    // A confidential client without its secret, with a wrong one, and an unknown client.
    let (status, _, body) = start(&app, "none:console", Some("openid")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "{body}"
    );
    let resp = app
        .post("/oauth2/v1/device")
        .basic_auth("console", Some("wrong-secret"))
        .form(&[("scope", "openid")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(
        resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client");
    let (status, _, body) = start(&app, "none:nobody", None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "{body}"
    );
    // Scopes as in the code flow: one the client may not have is invalid_scope.
    let (status, _, body) = start(&app, "tv", Some("openid orders.write")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_scope")),
        "{body}"
    );
    // Not a form: invalid_request.
    let resp = app
        .post("/oauth2/v1/device")
        .json(&serde_json::json!({"client_id": "tv"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.json::<Value>().await.unwrap()["error"], "invalid_request");
}

#[tokio::test]
async fn discovery_advertises_the_device_authorization_endpoint() {
    let app = spawn().await;
    for doc in ["openid-configuration", "oauth-authorization-server"] {
        let (status, _, body) = app.get_json(&format!("{}/.well-known/{doc}", app.issuer)).await;
        assert_eq!(status, 200);
        assert_eq!(
            body["device_authorization_endpoint"],
            format!("{}/oauth2/v1/device", app.issuer),
            "{doc}"
        );
        let grants = body["grant_types_supported"].as_array().unwrap();
        assert!(grants.iter().any(|g| g == GRANT), "{doc}: {grants:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// the whole flow

#[tokio::test]
async fn device_flow_end_to_end_issues_tokens_once() {
    let app = spawn().await;
    let (device_code, user_code) = started(&app, "tv", "openid profile offline_access orders.read").await;
    assert_token_error(&poll(&app, "tv", &device_code).await, "authorization_pending");

    let browser = Browser::new();
    // Typed as a person might: lower case, a space for the dash.
    let confirm = to_confirmation(&app, &browser, &user_code.replace('-', " ").to_lowercase()).await;
    assert_page_headers(&confirm, "confirmation");
    assert!(confirm.body.contains("Allow Living-room TV?"), "{}", confirm.body);
    // In the store, the code is only sealed (the pending request) or hashed (the device code).
    let plain = user_code.replace('-', "");
    for (table, columns) in [
        ("auth_requests", "id, client_id, params, csrf_hash"),
        ("device_codes", "hash, user_code_hash, client_id, scope, status"),
    ] {
        let dump = crate::harness::rows_text(&app.database_url, table, columns).await;
        assert!(!dump.is_empty(), "{table} is empty");
        assert!(
            !dump.contains(&user_code) && !dump.contains(&plain),
            "{table} holds the user code: {dump}"
        );
    }
    assert!(
        confirm.body.contains("Signed in as <strong>alice</strong>"),
        "{}",
        confirm.body
    );
    // The code, as the device shows it, to compare (RFC 8628 s3.3.1, s5.4).
    assert!(
        confirm
            .body
            .contains(&format!("Check that your device shows this code: <strong class=\"user-code\" id=\"confirm-code\">{user_code}</strong>")),
        "{}",
        confirm.body
    );
    for d in [
        "Know who you are",
        "See your name and profile",
        "Keep access when you are not using it",
        "Read orders",
    ] {
        assert!(
            confirm.body.contains(d),
            "{d:?} not on the page: {}",
            confirm.body
        );
    }
    // Still pending until the person approves.
    app.clock.advance(5);
    assert_token_error(&poll(&app, "tv", &device_code).await, "authorization_pending");

    let done = decide(&browser, &confirm, "approve").await;
    assert!(done.body.contains("Device connected"), "{}", done.body);
    let (status, user_id, _) = device_row(&app, &device_code).await;
    assert_eq!(status, "approved");
    // The approving session now counts the device's client among those told of its sign-out.
    assert_eq!(
        crate::harness::count_rows(&app.database_url, "session_clients").await,
        1
    );

    app.clock.advance(5);
    let (status, headers, tokens) = poll(&app, "tv", &device_code).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["scope"], "openid profile offline_access orders.read");
    assert!(tokens["refresh_token"].is_string(), "offline_access: {tokens}");
    let (_, at) = jwt_parts(tokens["access_token"].as_str().unwrap());
    assert_eq!(at["client_id"], "tv");
    assert_eq!(Some(at["sub"].as_str().unwrap().to_string()), user_id);
    let (_, _, jwks) = app.get_json(&format!("{}/oauth2/v1/keys", app.issuer)).await;
    let id = verify_with_jwks(tokens["id_token"].as_str().unwrap(), &jwks, &app.issuer, "tv")
        .expect("valid id_token");
    assert_eq!(id["sub"], at["sub"]);
    assert!(id.get("nonce").is_none(), "{id}");
    assert!(id["sid"].as_str().is_some_and(|s| !s.is_empty()), "{id}");
    assert!(
        id["auth_time"].as_i64().is_some_and(|t| t <= app.clock.now()),
        "{id}"
    );
    assert_eq!(id["amr"], serde_json::json!(["pwd"]));

    let userinfo = |token: &str| {
        let req = app.get("/oauth2/v1/userinfo").bearer_auth(token);
        async move { req.send().await.unwrap().status() }
    };
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(userinfo(access).await, 200);
    // The refresh token works like one from the code flow.
    let refresh_token = tokens["refresh_token"].as_str().unwrap();
    let refresh = |token: String| {
        let app = &app;
        async move {
            post_as(
                app,
                "/oauth2/v1/token",
                "tv",
                &[("grant_type", "refresh_token"), ("refresh_token", &token)],
            )
            .await
        }
    };
    let (status, _, refreshed) = refresh(refresh_token.to_string()).await;
    assert_eq!(status, 200, "{refreshed}");
    assert!(refreshed["id_token"].is_string(), "{refreshed}");
    let refreshed_access = refreshed["access_token"].as_str().unwrap();
    assert_eq!(userinfo(refreshed_access).await, 200);

    // The device code works once. Presented again, it is refused and what it issued is revoked
    // (RFC 6749 s4.1.2, as for an authorization code): the first access token, and the refresh
    // family with the tokens issued in it since.
    app.clock.advance(5);
    assert_token_error(&poll(&app, "tv", &device_code).await, "invalid_grant");
    assert_eq!(userinfo(access).await, 401, "the first access token");
    assert_eq!(
        userinfo(refreshed_access).await,
        401,
        "an access token of the family"
    );
    let next = refreshed["refresh_token"].as_str().unwrap().to_string();
    let (status, _, body) = refresh(next).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_grant");
    // A second replay changes nothing and still says invalid_grant.
    assert_token_error(&poll(&app, "tv", &device_code).await, "invalid_grant");
    // The approval was the consent: recorded for the scopes asked for.
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&app.database_url).await.unwrap();
    let (scope,): (String,) = sqlx::query_as("SELECT scope FROM consents WHERE client_id = 'tv'")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(scope, "openid profile offline_access orders.read");
    // And the code is now used: typing it again says so.
    let page = enter_code(&app, &browser, &user_code).await;
    assert_eq!(page.status, 400);
    assert!(page.body.contains(DECIDED), "{}", page.body);
}

/// Two polls racing for one approved device code: exactly one gets tokens, and since the other is
/// a replay of a redeemed code, those tokens end revoked whichever order the race took. The
/// replay usually lands before the winner has recorded its token, and is then caught by the
/// winner's own record (without that check this failed in 5 of 5 runs; with ten racers, one
/// late enough to revoke directly hid it). Thirty rounds.
#[tokio::test]
async fn racing_polls_get_one_answer_with_tokens_that_the_replays_revoke() {
    let app = spawn().await;
    let browser = signed_in_browser(&app).await;
    for round in 0..30 {
        let (device_code, user_code) = started(&app, "tv", "openid orders.read").await;
        let confirm = to_confirmation(&app, &browser, &user_code).await;
        decide(&browser, &confirm, "approve").await;
        let answers = futures_util::future::join_all((0..2).map(|_| poll(&app, "tv", &device_code))).await;
        let winners: Vec<&Value> = answers
            .iter()
            .filter(|(s, _, _)| *s == 200)
            .map(|(_, _, b)| b)
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: {answers:?}");
        for (status, _, body) in answers.iter().filter(|(s, _, _)| *s != 200) {
            assert_eq!(
                (*status, &body["error"]),
                (400, &Value::from("invalid_grant")),
                "round {round}"
            );
        }
        let access = winners[0]["access_token"].as_str().unwrap();
        let status = app
            .get("/oauth2/v1/userinfo")
            .bearer_auth(access)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 401, "round {round}: a replay, yet its token still works");
    }
}

/// A device code polled at the moment the sign-in that approved it ends: the session is marked
/// ended (sign-out's first step) after the approval, before the poll. The poll asks last whether
/// the session still stands, so it issues nothing that works: invalid_grant, and what it
/// recorded (the access token's id, the family) is revoked.
#[tokio::test]
async fn a_device_code_polled_while_its_session_ends_gives_nothing_that_works() {
    let app = spawn().await;
    let (device_code, user_code) = started(&app, "tv", "openid offline_access").await;
    let browser = signed_in_browser(&app).await;
    let confirm = to_confirmation(&app, &browser, &user_code).await;
    decide(&browser, &confirm, "approve").await;
    assert_eq!(crate::harness::mark_sessions_ended(&app.database_url).await, 1);
    let answer = poll(&app, "tv", &device_code).await;
    sqlx::any::install_default_drivers();
    let mut db = sqlx::AnyConnection::connect(&app.database_url).await.unwrap();
    assert_token_error(&answer, "invalid_grant");
    let (jti,): (Option<String>,) = sqlx::query_as("SELECT access_jti FROM device_codes")
        .fetch_one(&mut db)
        .await
        .unwrap();
    let jti = jti.expect("the redemption recorded its access token");
    let (revoked,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM revoked_jtis WHERE jti = $1")
        .bind(&jti)
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(revoked, 1);
    let (live,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM refresh_families WHERE revoked_at IS NULL")
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(live, 0);
}

/// The same for a consent withdrawn at that moment: the consent is deleted (the withdrawal's
/// first step) after the approval, before the poll, whose families the withdrawal had read. The
/// poll asks last whether the consent still stands: invalid_grant, and what it recorded is
/// revoked.
#[tokio::test]
async fn a_device_code_polled_while_its_consent_is_withdrawn_gives_nothing_that_works() {
    let app = spawn().await;
    let (device_code, user_code) = started(&app, "tv", "openid offline_access").await;
    let browser = signed_in_browser(&app).await;
    let confirm = to_confirmation(&app, &browser, &user_code).await;
    decide(&browser, &confirm, "approve").await;
    assert_eq!(crate::harness::delete_consents(&app.database_url).await, 1);
    let answer = poll(&app, "tv", &device_code).await;
    assert_token_error(&answer, "invalid_grant");
    assert_eq!(
        answer.2["error_description"], "the consent that approved this grant has been withdrawn",
        "{:?}",
        answer.2
    );
    let (access, live) = crate::harness::unrevoked_grants(&app.database_url, "device_codes").await;
    assert_eq!(access, 0, "the access token issued is revoked");
    assert_eq!(live, 0, "the family started is revoked");
    assert_eq!(count_rows(&app.database_url, "refresh_families").await, 1);
    // The session stands: only the consent ended this grant.
    assert_eq!(crate::harness::mark_sessions_ended(&app.database_url).await, 1);
}

#[tokio::test]
async fn without_offline_access_no_refresh_token_and_without_openid_no_id_token() {
    let app = spawn().await;
    let (device_code, user_code) = started(&app, "console", "orders.read").await;
    let browser = signed_in_browser(&app).await;
    // Already signed in: straight to the confirmation.
    let confirm = to_confirmation(&app, &browser, &user_code).await;
    // The client's name, escaped.
    assert!(
        confirm.body.contains("<h1>Allow Game &#60;Console&#62;?</h1>"),
        "{}",
        confirm.body
    );
    assert!(!confirm.body.contains("<Console>"), "{}", confirm.body);
    decide(&browser, &confirm, "approve").await;
    let (status, _, tokens) = poll(&app, "console", &device_code).await;
    assert_eq!(status, 200, "{tokens}");
    assert!(tokens.get("refresh_token").is_none(), "{tokens}");
    assert!(tokens.get("id_token").is_none(), "{tokens}");
    assert_eq!(tokens["scope"], "orders.read");
    let (_, at) = jwt_parts(tokens["access_token"].as_str().unwrap());
    assert_eq!(at["aud"], "https://api.example.com/orders");
}

#[tokio::test]
async fn polling_too_fast_slows_down_and_the_interval_grows_by_5_seconds() {
    let app = spawn().await;
    let (device_code, _) = started(&app, "tv", "openid").await;
    assert_token_error(&poll(&app, "tv", &device_code).await, "authorization_pending");
    // At once: slow_down; the interval is now 10 s.
    assert_token_error(&poll(&app, "tv", &device_code).await, "slow_down");
    assert_eq!(device_row(&app, &device_code).await.2, 10);
    app.clock.advance(10);
    assert_token_error(&poll(&app, "tv", &device_code).await, "authorization_pending");
    // 5 s was enough before, no longer: slow_down again, 15 s now.
    app.clock.advance(5);
    assert_token_error(&poll(&app, "tv", &device_code).await, "slow_down");
    assert_eq!(device_row(&app, &device_code).await.2, 15);
    app.clock.advance(15);
    assert_token_error(&poll(&app, "tv", &device_code).await, "authorization_pending");
}

#[tokio::test]
async fn another_client_polling_gets_invalid_grant() {
    let app = spawn().await;
    let (device_code, user_code) = started(&app, "tv", "openid orders.read").await;
    assert_token_error(&poll(&app, "console", &device_code).await, "invalid_grant");
    let browser = Browser::new();
    let confirm = to_confirmation(&app, &browser, &user_code).await;
    decide(&browser, &confirm, "approve").await;
    // Approved, and still not for another client; nor does its attempt use the code up.
    assert_token_error(&poll(&app, "console", &device_code).await, "invalid_grant");
    let (status, _, tokens) = poll(&app, "tv", &device_code).await;
    assert_eq!(status, 200, "{tokens}");
    // An unknown device code, and none at all.
    assert_token_error(&poll(&app, "tv", "not-a-device-code").await, "invalid_grant");
    let (status, _, body) = post_as(&app, "/oauth2/v1/token", "tv", &[("grant_type", GRANT)]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
}

#[tokio::test]
async fn an_expired_device_code_gives_expired_token() {
    let app = spawn().await;
    let (device_code, user_code) = started(&app, "tv", "openid").await;
    app.clock.advance(601);
    assert_token_error(&poll(&app, "tv", &device_code).await, "expired_token");
    // The page says so too.
    let page = enter_code(&app, &Browser::new(), &user_code).await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(page.body.contains(EXPIRED), "{}", page.body);
}

#[tokio::test]
async fn a_code_expiring_while_its_confirmation_is_open_cannot_be_approved() {
    let app = spawn().await;
    let (device_code, user_code) = started(&app, "tv", "openid").await;
    let browser = Browser::new();
    let confirm = to_confirmation(&app, &browser, &user_code).await;
    // The code expires while the confirmation page is open: the approval is refused.
    app.clock.advance(601);
    let page = browser.consent(&confirm, "approve", &[]).await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(page.body.contains(EXPIRED), "{}", page.body);
    assert_eq!(device_row(&app, &device_code).await.0, "pending");
    assert_token_error(&poll(&app, "tv", &device_code).await, "expired_token");
}

/// Approved in time, but first polled after the code's lifetime: expired_token (RFC 8628 s3.5),
/// and nothing is issued.
#[tokio::test]
async fn a_code_approved_in_time_but_polled_after_expiry_is_expired() {
    let app = spawn().await;
    let (device_code, user_code) = started(&app, "tv", "openid").await;
    let browser = Browser::new();
    let confirm = to_confirmation(&app, &browser, &user_code).await;
    decide(&browser, &confirm, "approve").await;
    assert_eq!(device_row(&app, &device_code).await.0, "approved");
    app.clock.advance(601);
    assert_token_error(&poll(&app, "tv", &device_code).await, "expired_token");
    assert_eq!(count_rows(&app.database_url, "tokens").await, 0, "nothing issued");
}

/// Expired between the poll's read and its redemption (its time ran out, or a sign-out ended it,
/// at that moment; injected as a trigger on the redemption): expired_token, as any expired code
/// (RFC 8628 s3.5), not invalid_grant.
#[tokio::test]
async fn a_code_that_expires_as_it_is_redeemed_is_expired() {
    use crate::harness::{Fault, add_fault};
    let app = spawn().await;
    let (device_code, user_code) = started(&app, "tv", "openid").await;
    let browser = Browser::new();
    let confirm = to_confirmation(&app, &browser, &user_code).await;
    decide(&browser, &confirm, "approve").await;
    let sql = if app.database_url.starts_with("postgres") {
        "UPDATE device_codes SET expires_at = 1 WHERE hash = NEW.hash; RETURN NULL"
    } else {
        "UPDATE device_codes SET expires_at = 1 WHERE hash = NEW.hash; SELECT RAISE(IGNORE)"
    };
    add_fault(
        &app.database_url,
        "expires_now",
        "BEFORE UPDATE OF used_at ON device_codes",
        Fault::Run(sql.into()),
    )
    .await;
    assert_token_error(&poll(&app, "tv", &device_code).await, "expired_token");
    assert_eq!(count_rows(&app.database_url, "tokens").await, 0, "nothing issued");
}

/// A reload disables the client while its confirmation page is open: Allow gives an error page,
/// records no consent, and approves nothing, so the device gets nothing even once the client is
/// enabled again.
#[tokio::test]
async fn a_client_disabled_while_its_confirmation_is_open_gets_no_approval() {
    let app = spawn().await;
    let (device_code, user_code) = started(&app, "tv", "openid profile").await;
    let browser = Browser::new();
    let confirm = to_confirmation(&app, &browser, &user_code).await;
    let app = &app;
    let reload = |text: String| async move {
        app.handle()
            .reload(ostiary::config::Config::from_toml_str(&text).unwrap())
            .await
            .unwrap()
    };
    let disabled = app.config_text.replacen(
        "client_id = \"tv\"\n",
        "client_id = \"tv\"\n  enabled = false\n",
        1,
    );
    assert_ne!(disabled, app.config_text);
    reload(disabled).await;
    let page = browser.consent(&confirm, "approve", &[]).await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(page.body.contains("no longer registered"), "{}", page.body);
    assert_eq!(device_row(app, &device_code).await.0, "pending");
    assert_eq!(count_rows(&app.database_url, "consents").await, 0);
    assert_eq!(count_rows(&app.database_url, "session_clients").await, 0);
    reload(app.config_text.clone()).await;
    assert_token_error(&poll(app, "tv", &device_code).await, "authorization_pending");
}

/// The confirmation page is bound to the browser that typed the code: another browser given its
/// address sees neither the code nor the client.
#[tokio::test]
async fn the_confirmation_page_shows_nothing_to_another_browser() {
    let app = spawn().await;
    let (_, user_code) = started(&app, "tv", "openid").await;
    let browser = Browser::new();
    let confirm = to_confirmation(&app, &browser, &user_code).await;
    let url = format!(
        "{}?request={}",
        device_url(&app),
        confirm.field("request").expect("request field")
    );
    let other = Browser::new();
    assert_eq!(
        other.get(&device_url(&app)).await.status,
        200,
        "a CSRF cookie of its own"
    );
    let page = other.get(&url).await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(
        !page.body.contains(&user_code) && !page.body.contains("Living-room TV"),
        "{}",
        page.body
    );
    assert!(
        browser.get(&url).await.is_consent(),
        "the browser that typed it still sees it"
    );
}

#[tokio::test]
async fn deny_gives_access_denied() {
    let app = spawn().await;
    let (device_code, user_code) = started(&app, "tv", "openid profile").await;
    let browser = Browser::new();
    let confirm = to_confirmation(&app, &browser, &user_code).await;
    let done = decide(&browser, &confirm, "deny").await;
    assert!(done.body.contains("Access denied"), "{}", done.body);
    assert_eq!(
        device_row(&app, &device_code).await,
        ("denied".to_string(), None, 5)
    );
    // RFC 8628 s3.5: access_denied, a 400 like every token error.
    assert_token_error(&poll(&app, "tv", &device_code).await, "access_denied");
    app.clock.advance(5);
    assert_token_error(&poll(&app, "tv", &device_code).await, "access_denied");
    // Decided: the code cannot be typed again, nor the same confirmation approved.
    let page = enter_code(&app, &browser, &user_code).await;
    assert_eq!(page.status, 400);
    assert!(page.body.contains(DECIDED), "{}", page.body);
    let again = browser.consent(&confirm, "approve", &[]).await;
    assert_eq!(again.status, 400, "{}", again.body);
    assert_token_error(&poll(&app, "tv", &device_code).await, "access_denied");
    // Nothing consented.
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&app.database_url).await.unwrap();
    let n: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM consents WHERE client_id = 'tv'")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(n.0, 0);
}

// ---------------------------------------------------------------------------------------------
// the verification page

#[tokio::test]
async fn the_code_is_accepted_in_lower_case_without_dash_and_with_spaces() {
    let app = spawn().await;
    let (device_code, user_code) = started(&app, "tv", "openid").await;
    let typed = format!(" {} {} ", &user_code[..4], &user_code[5..]).to_lowercase();
    assert!(!typed.contains('-'));
    let browser = Browser::new();
    let confirm = to_confirmation(&app, &browser, &typed).await;
    decide(&browser, &confirm, "approve").await;
    let (status, _, tokens) = poll(&app, "tv", &device_code).await;
    assert_eq!(status, 200, "{tokens}");
}

#[tokio::test]
async fn verification_uri_complete_prefills_the_code_and_approves_nothing() {
    let app = spawn().await;
    let (status, _, body) = start(&app, "tv", Some("openid")).await;
    assert_eq!(status, 200);
    let device_code = body["device_code"].as_str().unwrap();
    let user_code = body["user_code"].as_str().unwrap();
    // Even for a browser signed in already.
    let browser = signed_in_browser(&app).await;
    let page = browser
        .get(body["verification_uri_complete"].as_str().unwrap())
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_page_headers(&page, "code page");
    assert_eq!(page.field("user_code").as_deref(), Some(user_code));
    assert!(page.field("csrf").is_some());
    assert!(!page.is_consent(), "{}", page.body);
    assert_eq!(device_row(&app, device_code).await.0, "pending");
    assert_token_error(&poll(&app, "tv", device_code).await, "authorization_pending");
    // Submitting the pre-filled form leads to the confirmation, still not to an approval.
    let csrf = page.field("csrf").unwrap();
    let next = browser
        .post(&device_url(&app), &[("csrf", &csrf), ("user_code", user_code)])
        .await;
    assert_eq!(next.status, 303);
    let confirm = browser.get(&next.location().unwrap()).await;
    assert!(confirm.is_consent(), "{}", confirm.body);
    assert_eq!(device_row(&app, device_code).await.0, "pending");
}

#[tokio::test]
async fn a_fresh_browser_gets_a_csrf_cookie_with_the_code_form() {
    let app = spawn().await;
    let page = Browser::new().get(&device_url(&app)).await;
    assert_eq!(page.status, 200);
    assert_page_headers(&page, "code page");
    let cookies = page.set_cookies();
    let csrf = cookies
        .iter()
        .find(|c| c.starts_with("ostiary_csrf_default="))
        .unwrap_or_else(|| panic!("no CSRF cookie: {cookies:?}"));
    assert!(
        csrf.contains("HttpOnly") && csrf.contains("SameSite=Lax"),
        "{csrf}"
    );
    let value = csrf
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("ostiary_csrf_default=");
    assert_eq!(page.field("csrf").as_deref(), Some(value));
    assert!(
        page.body.contains("Enter the code shown on your device"),
        "{}",
        page.body
    );
}

#[tokio::test]
async fn the_code_form_and_the_confirmation_refuse_a_missing_or_wrong_csrf_token() {
    let app = spawn().await;
    let (device_code, user_code) = started(&app, "tv", "openid").await;
    let browser = Browser::new();
    let form = browser.get(&device_url(&app)).await;
    let csrf = form.field("csrf").unwrap();
    let url = device_url(&app);
    for fields in [
        vec![("user_code", user_code.as_str())],
        vec![("csrf", "wrong"), ("user_code", user_code.as_str())],
        vec![("csrf", ""), ("user_code", user_code.as_str())],
    ] {
        let page = browser.post(&url, &fields).await;
        assert_eq!(page.status, 403, "{fields:?}: {}", page.body);
        assert!(page.location().is_none());
        assert!(page.body.contains("could not be verified"), "{}", page.body);
    }
    // A browser without the cookie cannot replay another's token either.
    let stranger = Browser::new();
    let page = stranger
        .post(
            &url,
            &[("csrf", csrf.as_str()), ("user_code", user_code.as_str())],
        )
        .await;
    assert_eq!(page.status, 403, "{}", page.body);

    let confirm = to_confirmation(&app, &browser, &user_code).await;
    let request = confirm.field("request").unwrap();
    for fields in [
        vec![("request", request.as_str()), ("decision", "approve")],
        vec![
            ("request", request.as_str()),
            ("csrf", "wrong"),
            ("decision", "approve"),
        ],
    ] {
        let page = browser.post(&url, &fields).await;
        assert_eq!(page.status, 403, "{fields:?}: {}", page.body);
    }
    // Another signed-in browser with the request id and its own CSRF token.
    let other = signed_in_browser(&app).await;
    let other_csrf = other.get(&url).await.field("csrf").unwrap();
    let page = other
        .post(
            &url,
            &[
                ("request", request.as_str()),
                ("csrf", other_csrf.as_str()),
                ("decision", "approve"),
            ],
        )
        .await;
    assert_eq!(page.status, 403, "{}", page.body);
    assert_eq!(device_row(&app, &device_code).await.0, "pending");
    assert_token_error(&poll(&app, "tv", &device_code).await, "authorization_pending");
    // The right form still works.
    decide(&browser, &confirm, "approve").await;
    assert_eq!(device_row(&app, &device_code).await.0, "approved");
}

#[tokio::test]
async fn guessing_user_codes_is_paused_per_browser() {
    let app = spawn().await;
    let (_, user_code) = started(&app, "tv", "openid").await;
    let browser = Browser::new();
    let form = browser.get(&device_url(&app)).await;
    let csrf = form.field("csrf").unwrap();
    let url = device_url(&app);
    let wrong = if user_code == "BBBB-BBBB" {
        "CCCC-CCCC"
    } else {
        "BBBB-BBBB"
    };
    // The default budget: 5 wrong codes (a malformed one counts too).
    for typed in [wrong, wrong, "nonsense", wrong, wrong] {
        let page = browser.post(&url, &[("csrf", &csrf), ("user_code", typed)]).await;
        assert_eq!(page.status, 400, "{}", page.body);
        assert!(page.body.contains(UNKNOWN), "{}", page.body);
        assert!(page.body.contains("role=\"alert\""), "{}", page.body);
        assert_eq!(
            page.field("user_code").as_deref(),
            Some(typed),
            "the typed code is kept"
        );
    }
    // Then a pause, even for the right code.
    let page = browser
        .post(&url, &[("csrf", &csrf), ("user_code", user_code.as_str())])
        .await;
    assert_eq!(page.status, 429, "{}", page.body);
    assert_eq!(page.header("retry-after"), "30");
    assert!(
        page.body
            .contains("Too many wrong codes. Try again in 30 seconds."),
        "{}",
        page.body
    );
    assert_page_headers(&page, "paused code page");
    app.clock.advance(29);
    let page = browser
        .post(&url, &[("csrf", &csrf), ("user_code", user_code.as_str())])
        .await;
    assert_eq!(page.status, 429);
    assert_eq!(page.header("retry-after"), "1");
    // After the pause the right code goes through; a further wrong one pauses twice as long.
    app.clock.advance(1);
    let page = browser.post(&url, &[("csrf", &csrf), ("user_code", wrong)]).await;
    assert_eq!(page.status, 400);
    let page = browser
        .post(&url, &[("csrf", &csrf), ("user_code", user_code.as_str())])
        .await;
    assert_eq!(page.status, 429);
    assert_eq!(page.header("retry-after"), "60");
    app.clock.advance(60);
    let page = browser
        .post(&url, &[("csrf", &csrf), ("user_code", user_code.as_str())])
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    // Sign-in is a budget of its own: the pause did not lock alice out.
    let fresh = Browser::new();
    let confirm = to_confirmation(&app, &fresh, &user_code).await;
    assert!(confirm.is_consent());
}

/// Wrong codes typed at once all read the counts before any is counted: only the budget's worth
/// is looked up, the others are paused.
#[tokio::test]
async fn user_codes_typed_at_once_do_not_overshoot_the_budget() {
    let app = spawn().await;
    let (_, user_code) = started(&app, "tv", "openid").await;
    let browser = Browser::new();
    let csrf = browser.get(&device_url(&app)).await.field("csrf").unwrap();
    let url = device_url(&app);
    let wrong = if user_code == "BBBB-BBBB" {
        "CCCC-CCCC"
    } else {
        "BBBB-BBBB"
    };
    let form = [("csrf", csrf.as_str()), ("user_code", wrong)];
    let pages = futures_util::future::join_all((0..12).map(|_| browser.post(&url, &form))).await;
    let statuses: Vec<u16> = pages.iter().map(|p| p.status).collect();
    let looked_up = statuses.iter().filter(|s| **s == 400).count();
    let paused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((looked_up, paused), (5, 7), "{statuses:?}");
    let rows = crate::harness::rows_text(&app.database_url, "login_attempts", "bucket, failures").await;
    assert!(
        rows.lines().any(|r| r.starts_with("dc:") && r.ends_with(" 5")),
        "{rows}"
    );
}

#[tokio::test]
async fn guessing_user_codes_is_paused_per_client_address() {
    let app = spawn_with("address_user_code_attempts = 3").await;
    let (_, user_code) = started(&app, "tv", "openid").await;
    let wrong = if user_code == "BBBB-BBBB" {
        "CCCC-CCCC"
    } else {
        "BBBB-BBBB"
    };
    // A fresh browser (a new CSRF cookie) for each guess: the address still counts them.
    for _ in 0..3 {
        let page = enter_code(&app, &Browser::new(), wrong).await;
        assert_eq!(page.status, 400, "{}", page.body);
    }
    let page = enter_code(&app, &Browser::new(), &user_code).await;
    assert_eq!(page.status, 429, "{}", page.body);
    assert_eq!(page.header("retry-after"), "30");
    assert!(page.body.contains("Too many wrong codes"), "{}", page.body);
}

#[tokio::test]
async fn a_confirmation_shown_for_another_session_decides_nothing() {
    let app = spawn().await;
    let (device_code, user_code) = started(&app, "tv", "openid profile").await;
    let browser = Browser::new();
    let shown = to_confirmation(&app, &browser, &user_code).await;
    assert!(
        shown.body.contains("Signed in as <strong>alice</strong>"),
        "{}",
        shown.body
    );
    // In another tab of the same browser, carol signs in (a new session replaces alice's).
    crate::flow::sign_in_again(&app, &browser, "carol").await;
    // alice's confirmation, submitted now (either way, or without its session field), decides
    // nothing: the confirmation again, for carol, the device still waiting.
    let request = shown.field("request").unwrap();
    let csrf = shown.field("csrf").unwrap();
    let alice_sid = shown.field("session").unwrap();
    for session in [Some(alice_sid.as_str()), None] {
        for decision in ["approve", "deny"] {
            let mut form = vec![
                ("request", request.as_str()),
                ("csrf", csrf.as_str()),
                ("decision", decision),
            ];
            form.extend(session.map(|s| ("session", s)));
            let page = browser.post(&device_url(&app), &form).await;
            assert!(
                page.is_consent(),
                "{session:?} {decision}: {} {}",
                page.status,
                page.body
            );
            assert!(
                page.body.contains("Signed in as <strong>carol</strong>"),
                "{}",
                page.body
            );
            assert!(page.body.contains("Someone signed in again"), "{}", page.body);
            assert!(page.body.contains(&user_code), "the code is shown again");
            assert_ne!(page.field("session").unwrap(), alice_sid);
            assert_page_headers(&page, "confirmation shown again");
        }
    }
    assert_eq!(device_row(&app, &device_code).await.0, "pending");
    assert_token_error(&poll(&app, "tv", &device_code).await, "authorization_pending");
    // The confirmation shown for carol decides, for carol.
    let page = browser
        .get(&format!("{}?request={request}", device_url(&app)))
        .await;
    decide(&browser, &page, "approve").await;
    let (status, _, body) = poll(&app, "tv", &device_code).await;
    assert_eq!(status, 200, "{body}");
    let info = crate::flow::userinfo(&app, body["access_token"].as_str().unwrap()).await;
    assert_eq!(info["preferred_username"], "carol", "{info}");
}

#[tokio::test]
async fn the_device_request_is_not_a_consent_request() {
    let app = spawn().await;
    let (device_code, user_code) = started(&app, "tv", "openid").await;
    let browser = Browser::new();
    let confirm = to_confirmation(&app, &browser, &user_code).await;
    let request = confirm.field("request").unwrap();
    let csrf = confirm.field("csrf").unwrap();
    // The consent page does not take it (it has no redirect URI to answer at).
    let page = browser
        .get(&format!("{}/consent?request={request}", app.issuer))
        .await;
    assert_eq!(page.status, 400, "{}", page.body);
    let page = browser
        .post(
            &format!("{}/consent", app.issuer),
            &[
                ("request", request.as_str()),
                ("csrf", csrf.as_str()),
                ("decision", "approve"),
            ],
        )
        .await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(page.location().is_none());
    assert_eq!(device_row(&app, &device_code).await.0, "pending");
    // An unknown request id on the device page.
    let page = browser.get(&format!("{}?request=nope", device_url(&app))).await;
    assert_eq!(page.status, 400, "{}", page.body);
    // The device request still confirms where it belongs.
    decide(&browser, &confirm, "approve").await;
}

// ---------------------------------------------------------------------------------------------
// in a real browser

/// Headless Chromium (see `browser.rs`; skipped with a notice without chromedriver, except in CI):
/// the code typed into the page as a person would, sign-in, the confirmation, and the device's
/// poll that then gets the tokens.
#[tokio::test]
async fn browser_device_flow_with_the_code_typed_into_the_page() {
    let Some(b) = crate::browser::Browser::start().await else {
        return;
    };
    let app = spawn().await;
    let (device_code, user_code) = started(&app, "tv", "openid profile offline_access orders.read").await;
    assert_token_error(&poll(&app, "tv", &device_code).await, "authorization_pending");

    b.goto(&device_url(&app)).await;
    assert_eq!(b.text("h1").await, "Connect a device");
    assert_eq!(b.value("#user_code").await, "", "nothing pre-filled");
    b.find("label[for=user_code]").await;
    // A wrong code first: the message, the typed code kept.
    b.type_into("#user_code", "BBBB-CCCC").await;
    b.click_to_next_page("form button[type=submit]").await;
    if user_code != "BBBB-CCCC" {
        assert!(b.text("[role=alert]").await.starts_with(UNKNOWN));
        assert_eq!(b.value("#user_code").await, "BBBB-CCCC");
    }
    // Then the right one as a person might type it: lower case, without the dash.
    b.type_into("#user_code", &user_code.replace('-', "").to_lowercase())
        .await;
    b.click_to_next_page("form button[type=submit]").await;

    // Not signed in: the usual sign-in page, for the TV.
    assert_eq!(b.text("h1").await, "Sign in");
    assert_eq!(b.text("main p strong").await, "Living-room TV");
    b.sign_in("alice", &password("alice"), false).await;

    // Back on the device page: which client asks, and for what.
    b.find("button[name=decision][value=approve]").await;
    assert!(
        b.url()
            .await
            .starts_with(&format!("{}/device?request=", app.issuer)),
        "{}",
        b.url().await
    );
    assert_eq!(b.text("h1").await, "Allow Living-room TV?");
    assert_eq!(
        b.text("#confirm-code").await,
        user_code,
        "the code to compare with the device's"
    );
    let listed = b.text("ul.scopes").await;
    for d in [
        "Know who you are",
        "See your name and profile",
        "Keep access when you are not using it",
        "Read orders",
    ] {
        assert!(listed.contains(d), "{d:?} not on the page: {listed}");
    }
    assert_token_error(&poll(&app, "tv", &device_code).await, "slow_down");
    b.click_to_next_page("button[name=decision][value=approve]").await;
    assert_eq!(b.text("h1").await, "Device connected");

    // The device's next poll gets the tokens.
    app.clock.advance(10);
    let (status, _, tokens) = poll(&app, "tv", &device_code).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["scope"], "openid profile offline_access orders.read");
    assert!(tokens["refresh_token"].is_string(), "{tokens}");
    let (_, _, jwks) = app.get_json(&format!("{}/oauth2/v1/keys", app.issuer)).await;
    let id = verify_with_jwks(tokens["id_token"].as_str().unwrap(), &jwks, &app.issuer, "tv")
        .expect("valid id_token");
    assert!(id["sid"].is_string(), "{id}");

    b.quit().await;
    app.stop().await;
}
