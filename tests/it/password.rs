//! The legacy resource owner password credentials grant (RFC 6749 s4.3): only for clients that
//! list it, with the sign-in page's lockout.

use serde_json::Value;

use crate::harness::{Opts, TestApp, jwt_parts, password};

const SECRET: &str = "password-grant-client-secret-0123456789abcdef";

async fn app() -> TestApp {
    app_with("").await
}

/// The password-grant clients, with these `[server]` keys.
async fn app_with(server_extra: &str) -> TestApp {
    app_with_clients(server_extra, "").await
}

/// The password-grant clients and `more` (TOML of the domain), with these `[server]` keys.
async fn app_with_clients(server_extra: &str, more: &str) -> TestApp {
    let hash = ostiary::crypto::secrets::SecretHash::sha256_string(SECRET);
    TestApp::spawn_with(Opts {
        server_extra: server_extra.into(),
        domain_extra: format!(
            r#"
  [[domain.client]]
  client_id = "pwclient"
  secret_hash = "{hash}"
  grant_types = ["password", "refresh_token"]
  scopes = ["openid", "profile", "offline_access", "orders.read"]

  [[domain.client]]
  client_id = "pwopaque"
  secret_hash = "{hash}"
  grant_types = ["password"]
  scopes = ["openid", "orders.read"]
  access_token_format = "opaque"
{more}"#
        ),
        ..Opts::default()
    })
    .await
}

async fn grant(
    app: &TestApp,
    client: &str,
    secret: &str,
    form: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut f = vec![("grant_type", "password")];
    f.extend_from_slice(form);
    token_answer(app, client, secret, &f).await
}

/// A token request of `client` (Basic) with exactly `form`.
async fn token_answer(
    app: &TestApp,
    client: &str,
    secret: &str,
    form: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, Value) {
    let resp = app
        .post("/oauth2/v1/token")
        .basic_auth(client, Some(secret))
        .form(form)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.json().await.unwrap())
}

/// Behind a reverse proxy: the client's address (here the per-address lockout's bucket) comes
/// from `client_address_header` only on a connection from a trusted proxy, as the last address
/// there that is not itself a trusted proxy; anyone else's header is ignored.
#[tokio::test]
async fn the_client_address_comes_from_the_header_of_a_trusted_proxy_only() {
    let plain = "198.51.100.7, 203.0.113.9";
    for (proxies, forwarded, bucket) in [
        (r#"["127.0.0.1"]"#, plain, "a:203.0.113.9"),
        (r#"["127.0.0.0/8", "203.0.113.0/24"]"#, plain, "a:198.51.100.7"),
        (r#"["10.0.0.1"]"#, plain, "a:127.0.0.1"),
        // With ports, as some proxies write them: the address alone (the port changes).
        (
            r#"["127.0.0.1"]"#,
            "198.51.100.7:4711, 203.0.113.9:5123",
            "a:203.0.113.9",
        ),
        // An IPv6 address counts by its /64 (one subscriber's usual share).
        (r#"["127.0.0.1"]"#, "[2001:db8::7]:4711", "a:2001:db8:0:0::/64"),
    ] {
        let app = app_with(&format!(
            "client_address_header = \"X-Forwarded-For\"\ntrusted_proxies = {proxies}"
        ))
        .await;
        let resp = app
            .post("/oauth2/v1/token")
            .basic_auth("pwclient", Some(SECRET))
            .header("X-Forwarded-For", forwarded)
            .form(&[
                ("grant_type", "password"),
                ("username", "alice"),
                ("password", "wrong"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{proxies}");
        let buckets = crate::harness::rows_text(&app.database_url, "login_attempts", "bucket").await;
        let addresses: Vec<&str> = buckets.lines().filter(|b| b.starts_with("a:")).collect();
        assert_eq!(addresses, [bucket], "{proxies}: {buckets}");
        app.stop().await;
    }
}

/// Guesses sent at once through the grant: the account's budget is checked and counted, the
/// others refused as locked without argon2 (see lockout.rs for the sign-in page).
#[tokio::test]
async fn password_guesses_sent_at_once_do_not_overshoot_the_budget() {
    let app = app().await;
    let guess = |n: usize| {
        let app = &app;
        async move {
            let password = format!("wrong-{n}");
            let form = [("username", "alice"), ("password", password.as_str())];
            let (status, _, body) = grant(app, "pwclient", SECRET, &form).await;
            assert_eq!(
                (status, body["error"].as_str()),
                (400, Some("invalid_grant")),
                "{body}"
            );
            body["error_description"].as_str().unwrap_or("").to_string()
        }
    };
    let answers = futures_util::future::join_all((0..12).map(guess)).await;
    let checked = answers.iter().filter(|a| a.contains("incorrect")).count();
    let refused = answers.iter().filter(|a| a.contains("too many")).count();
    assert_eq!((checked, refused), (5, 7), "{answers:?}");
}

/// Right passwords sent at once (people behind one address, a script) are not refused: past the
/// budget's worth in flight they wait for their turn, and all are let in.
#[tokio::test]
async fn right_passwords_sent_at_once_all_get_in() {
    let app = app().await;
    let alice = password("alice");
    let form = [("username", "alice"), ("password", alice.as_str())];
    let answers =
        futures_util::future::join_all((0..12).map(|_| grant(&app, "pwclient", SECRET, &form))).await;
    let statuses: Vec<u16> = answers.iter().map(|a| a.0).collect();
    let refused: Vec<&serde_json::Value> = answers.iter().filter(|a| a.0 != 200).map(|a| &a.2).collect();
    assert_eq!(statuses, [200; 12], "{refused:?}");
}

/// A username longer than any user's (its bucket would not fit PostgreSQL's index key) is a
/// failed sign-in like any other, never a store error.
#[tokio::test]
async fn a_username_longer_than_any_fails_like_a_wrong_one() {
    let app = app().await;
    // Random, so that PostgreSQL cannot compress the key under its limit.
    let long: String = (0..70)
        .map(|_| ostiary::crypto::secrets::random_token())
        .collect();
    let form = [("username", long.as_str()), ("password", "whatever")];
    let (status, _, body) = grant(&app, "pwclient", SECRET, &form).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_grant", "{body}");
    assert_eq!(body["error_description"], "the username or password is incorrect");
}

#[tokio::test]
async fn the_password_grant_issues_tokens_for_an_allowed_client() {
    let app = app().await;
    let alice = password("alice");
    let (status, headers, body) = grant(
        &app,
        "pwclient",
        SECRET,
        &[
            ("username", "alice"),
            ("password", &alice),
            ("scope", "openid profile offline_access orders.read"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(body["scope"], "openid profile offline_access orders.read");
    let (_, at) = jwt_parts(body["access_token"].as_str().unwrap());
    let (_, id) = jwt_parts(body["id_token"].as_str().unwrap());
    assert_eq!(id["sub"], at["sub"]);
    assert_eq!(id["aud"], "pwclient");
    assert_eq!(id["amr"], serde_json::json!(["pwd"]));
    assert!(id.get("sid").is_none(), "no browser session, no sid: {id}");
    // offline_access: a refresh token, which rotates.
    let rt = body["refresh_token"].as_str().unwrap();
    let (status, _, body) = grant(&app, "pwclient", SECRET, &[]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
    let resp = app
        .post("/oauth2/v1/token")
        .basic_auth("pwclient", Some(SECRET))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", rt)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let refreshed: Value = resp.json().await.unwrap();
    assert_ne!(refreshed["refresh_token"].as_str().unwrap(), rt);
    // Without offline_access, no refresh token.
    let (status, _, body) = grant(
        &app,
        "pwclient",
        SECRET,
        &[
            ("username", "alice"),
            ("password", &alice),
            ("scope", "orders.read"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("refresh_token").is_none(), "{body}");
    assert!(body.get("id_token").is_none(), "{body}");
}

#[tokio::test]
async fn wrong_unknown_and_disabled_users_get_one_invalid_grant() {
    let app = app().await;
    for (user, pass) in [
        ("alice", "wrong".to_string()),
        ("nobody", "whatever".to_string()),
        ("bob", password("bob")),
    ] {
        let (status, _, body) = grant(
            &app,
            "pwclient",
            SECRET,
            &[("username", user), ("password", &pass), ("scope", "orders.read")],
        )
        .await;
        assert_eq!(status, 400, "{user}: {body}");
        assert_eq!(body["error"], "invalid_grant", "{user}");
        assert_eq!(
            body["error_description"], "the username or password is incorrect",
            "{user}: the same answer"
        );
    }
}

#[tokio::test]
async fn repeated_failures_lock_the_account_for_the_grant_too() {
    let app = app().await;
    for _ in 0..5 {
        let (status, _, _) = grant(
            &app,
            "pwclient",
            SECRET,
            &[("username", "carol"), ("password", "wrong")],
        )
        .await;
        assert_eq!(status, 400);
    }
    let carol = password("carol");
    let (status, _, body) = grant(
        &app,
        "pwclient",
        SECRET,
        &[("username", "carol"), ("password", &carol)],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("too many failed attempts"),
        "{body}"
    );
    // The lockout is shared with the sign-in page's, and ends.
    app.clock.advance(31);
    let (status, _, body) = grant(
        &app,
        "pwclient",
        SECRET,
        &[("username", "carol"), ("password", &carol)],
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn clients_without_the_password_grant_are_refused() {
    let app = app().await;
    let alice = password("alice");
    let resp = app
        .post_basic(
            "/oauth2/v1/token",
            "backend",
            &[
                ("grant_type", "password"),
                ("username", "alice"),
                ("password", &alice),
            ],
        )
        .await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "unauthorized_client", "{body}");
    // A wrong client secret: the client is not authenticated, nothing about the user is checked.
    let (status, _, body) = grant(
        &app,
        "pwclient",
        "wrong",
        &[("username", "alice"), ("password", &alice)],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "{body}"
    );
}

/// A disabled user's access tokens (JWT and opaque) introspect as inactive and are refused by
/// userinfo, yet can still be revoked: enabled again, the revoked one stays dead.
#[tokio::test]
async fn a_disabled_users_access_tokens_are_inactive_and_still_revocable() {
    use ostiary::clock::Clock;
    use ostiary::store::DirectoryStore;

    let app = app().await;
    let alice = password("alice");
    let token_of = |client: &'static str| {
        let (app, alice) = (&app, alice.clone());
        async move {
            let (status, _, body) = grant(
                app,
                client,
                SECRET,
                &[
                    ("username", "alice"),
                    ("password", &alice),
                    ("scope", "openid orders.read"),
                ],
            )
            .await;
            assert_eq!(status, 200, "{body}");
            body["access_token"].as_str().unwrap().to_string()
        }
    };
    let jwt = token_of("pwclient").await;
    let opaque = token_of("pwopaque").await;
    assert_eq!(jwt.split('.').count(), 3);
    assert_eq!(opaque.split('.').count(), 1);
    let call = |path: &'static str, client: &'static str, token: String| {
        let app = &app;
        async move {
            let resp = app
                .post(path)
                .basic_auth(client, Some(SECRET))
                .form(&[("token", token.as_str())])
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let active = |client, token: &String| {
        let token = token.clone();
        async move { call("/oauth2/v1/introspect", client, token).await.1["active"].clone() }
    };
    let userinfo = |token: &String| {
        let token = token.clone();
        let app = &app;
        async move {
            app.get("/oauth2/v1/userinfo")
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(active("pwclient", &jwt).await, true);
    assert_eq!(active("pwopaque", &opaque).await, true);
    assert_eq!(userinfo(&jwt).await, 200);

    let store = &app.handle().state().store;
    store
        .set_user_status("default", "alice", "disabled", app.clock.now())
        .await
        .unwrap();
    assert_eq!(active("pwclient", &jwt).await, false);
    assert_eq!(active("pwopaque", &opaque).await, false);
    assert_eq!(userinfo(&jwt).await, 401);
    assert_eq!(userinfo(&opaque).await, 401);
    assert_eq!(call("/oauth2/v1/revoke", "pwopaque", opaque.clone()).await.0, 200);

    store
        .set_user_status("default", "alice", "active", app.clock.now())
        .await
        .unwrap();
    assert_eq!(
        active("pwclient", &jwt).await,
        true,
        "not revoked: honoured again"
    );
    assert_eq!(
        active("pwopaque", &opaque).await,
        false,
        "revoked while the user was disabled"
    );
}

/// RP-Initiated Logout 1.0 s2: an ID token of the password grant has no `sid` and belongs to no
/// browser session, so as an `id_token_hint` it signs nobody out at once: the person is asked
/// (before: any session of that user in the browser ended without a question).
#[tokio::test]
async fn a_hint_without_sid_asks_before_signing_out() {
    let app = app().await;
    let alice = password("alice");
    let (status, _, body) = grant(
        &app,
        "pwclient",
        SECRET,
        &[("username", "alice"), ("password", &alice), ("scope", "openid")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let id_token = body["id_token"].as_str().unwrap();
    let browser = crate::flow::signed_in_browser(&app).await;
    let mut url = url::Url::parse(&format!("{}/oauth2/v1/userlogout", app.issuer)).unwrap();
    url.query_pairs_mut().append_pair("id_token_hint", id_token);
    let page = browser.get(url.as_str()).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Sign out?"), "{}", page.body);
    assert!(
        page.set_cookies()
            .iter()
            .all(|c| !c.starts_with("ostiary_session_"))
    );
    app.stop().await;
}

/// A new password that lands while the old one is being checked lets nothing in: the check read
/// the old hash and found the old password right (`signin.success` is audited), but the session
/// of the sign-in page and the refresh-token family of the grant, written after the reset had
/// signed the user out everywhere, are undone, and both answer as for a wrong password. The
/// user's hash is made slow (argon2 t = 300, about two seconds here) so that the reset, sent
/// 400 ms into the check, lands inside it. Each undoing is audited (`signin.failure`, `undone`).
#[tokio::test]
async fn a_password_reset_during_the_check_lets_the_old_password_in_nowhere() {
    use crate::flow::{Browser, authorize_url, redirect_uri_of};

    let useradmin = crate::harness::admin_client("useradmin", "User Administrator");
    // Enough argon2 threads that the reset's own hash never waits for the slow check.
    let app = app_with_clients("argon2_max_concurrent = 4", &useradmin).await;
    let token = app.access_token("useradmin").await;
    let created = admin_post(
        &app,
        &token,
        "/Users",
        serde_json::json!({"username": "slow", "password": "slow-pass-0"}),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_string();
    let reset = |new: &'static str| {
        let (app, token, id) = (&app, &token, &id);
        async move {
            tokio::time::sleep(std::time::Duration::from_millis(400)).await;
            admin_post(
                app,
                token,
                &format!("/Users/{id}/password"),
                serde_json::json!({"password": new}),
            )
            .await;
        }
    };

    // The sign-in page.
    slow_password(&app, "slow-pass-1").await;
    let browser = Browser::new();
    let params = [
        ("response_type", "code"),
        ("client_id", "firstparty"),
        ("redirect_uri", redirect_uri_of("firstparty")),
        ("scope", "openid"),
        ("code_challenge", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"),
        ("code_challenge_method", "S256"),
    ];
    let login = browser.get(&authorize_url(&app, &params)).await;
    let (page, ()) = tokio::join!(
        browser.sign_in(&login, "slow", "slow-pass-1"),
        reset("slow-pass-2")
    );
    assert_eq!(
        successes(&app, &id).await,
        (1, 1),
        "the check read the old hash and found the password right"
    );
    assert_eq!(page.status, 401, "{}", page.body);
    assert!(page.body.contains("The username or password is incorrect."));
    assert_eq!(
        unended(&app, &id, "sessions", "ended_at").await,
        "",
        "no session outlives the reset"
    );
    let again = browser.get(&authorize_url(&app, &params)).await;
    assert_eq!(again.status, 200, "the browser is not signed in");
    assert!(again.field("csrf").is_some(), "the sign-in page again");

    // The password grant, with a refresh token (offline_access).
    slow_password(&app, "slow-pass-3").await;
    let form = [
        ("username", "slow"),
        ("password", "slow-pass-3"),
        ("scope", "openid offline_access"),
    ];
    let ((status, _, body), ()) = tokio::join!(grant(&app, "pwclient", SECRET, &form), reset("slow-pass-4"));
    assert_eq!(
        successes(&app, &id).await,
        (2, 2),
        "the check read the old hash and found the password right"
    );
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    assert_eq!(body["error_description"], "the username or password is incorrect");
    assert_eq!(
        unended(&app, &id, "refresh_families", "revoked_at").await,
        "",
        "no family outlives the reset"
    );
    // The new password works.
    let (status, _, body) = grant(
        &app,
        "pwclient",
        SECRET,
        &[
            ("username", "slow"),
            ("password", "slow-pass-4"),
            ("scope", "openid"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

/// POSTs `body` to the admin API's `path`; expects success and returns the body (null if none).
async fn admin_post(app: &TestApp, token: &str, path: &str, body: Value) -> Value {
    let resp = app
        .http
        .post(format!("{}/admin/v1{path}", app.issuer))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{path}: {}", resp.status());
    resp.json().await.unwrap_or(Value::Null)
}

/// Gives the store user `slow` the password `pass` under a slow hash (argon2 t = 300).
async fn slow_password(app: &TestApp, pass: &'static str) {
    use ostiary::store::DirectoryStore;
    let phc = tokio::task::spawn_blocking(move || {
        use argon2::PasswordHasher;
        let params = argon2::Params::new(19456, 300, 1, None).unwrap();
        let salt = argon2::password_hash::SaltString::encode_b64(b"slow-salt-123456").unwrap();
        argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
            .hash_password(pass.as_bytes(), &salt)
            .unwrap()
            .to_string()
    })
    .await
    .unwrap();
    let store = &app.handle().state().store;
    let slow = store.find_user("default", "slow").await.unwrap().unwrap();
    assert!(
        store
            .set_user_password("default", &slow.id, &phc, 0)
            .await
            .unwrap()
    );
}

/// How many `signin.success` events the user has, and `signin.failure` events that undid one
/// (after the audit queue is flushed).
async fn successes(app: &TestApp, id: &str) -> (usize, usize) {
    app.handle().state().audit_queue.flush().await;
    let from = format!("audit_events WHERE user_id = '{id}' AND kind LIKE 'signin.%'");
    let kinds = crate::harness::rows_text(&app.database_url, &from, "kind, details").await;
    let count = |want: &str| kinds.lines().filter(|l| l.starts_with(want)).count();
    (count("signin.success"), count("signin.failure {\"undone\":true}"))
}

/// The user's rows of `table` whose `ended` column is still null, one line each.
async fn unended(app: &TestApp, id: &str, table: &str, ended: &str) -> String {
    let from = format!("{table} WHERE user_id = '{id}' AND {ended} IS NULL");
    crate::harness::rows_text(&app.database_url, &from, "user_id").await
}

/// The audiences of an access token's `aud` (a string or an array).
fn audiences(token: &str) -> Vec<String> {
    let (_, claims) = jwt_parts(token);
    match &claims["aud"] {
        Value::String(a) => vec![a.clone()],
        Value::Array(list) => list.iter().map(|a| a.as_str().unwrap().to_string()).collect(),
        other => panic!("aud {other}"),
    }
}

#[tokio::test]
async fn resource_narrows_a_user_grants_access_token_to_those_resource_servers() {
    let hash = ostiary::crypto::secrets::SecretHash::sha256_string(SECRET);
    let both = format!(
        r#"
  [[domain.client]]
  client_id = "pwboth"
  secret_hash = "{hash}"
  grant_types = ["password", "refresh_token"]
  scopes = ["openid", "offline_access", "orders.read", "billing.read"]
"#
    );
    let app = app_with_clients("", &both).await;
    let alice = password("alice");
    let ask = |extra: &'static [(&'static str, &'static str)]| {
        let mut form = vec![
            ("username", "alice"),
            ("password", alice.as_str()),
            ("scope", "openid offline_access orders.read billing.read"),
        ];
        form.extend_from_slice(extra);
        let app = &app;
        async move { grant(app, "pwboth", SECRET, &form).await }
    };
    let (status, _, all) = ask(&[]).await;
    assert_eq!(status, 200, "{all}");
    let mut aud = audiences(all["access_token"].as_str().unwrap());
    aud.sort();
    assert_eq!(
        aud,
        [
            "https://api.example.com/billing",
            "https://api.example.com/orders"
        ]
    );
    // RFC 8707 s2.2, RFC 9068 s3: one resource, one audience, and its scopes alone.
    let (status, _, billing) = ask(&[("resource", "https://api.example.com/billing")]).await;
    assert_eq!(status, 200, "{billing}");
    assert_eq!(
        audiences(billing["access_token"].as_str().unwrap()),
        ["https://api.example.com/billing"]
    );
    assert_eq!(billing["scope"], "billing.read");
    let (_, claims) = jwt_parts(billing["access_token"].as_str().unwrap());
    assert_eq!(claims["scope"], "billing.read", "{claims}");
    // Not a token for this server: userinfo refuses it (no openid in it).
    let resp = app
        .get("/oauth2/v1/userinfo")
        .bearer_auth(billing["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    // The issuer is this server: a token for userinfo, without the resource servers' scopes.
    let mut form = vec![
        ("username", "alice"),
        ("password", alice.as_str()),
        ("scope", "openid offline_access orders.read billing.read"),
    ];
    form.push(("resource", app.issuer.as_str()));
    let (status, _, own) = grant(&app, "pwboth", SECRET, &form).await;
    assert_eq!(status, 200, "{own}");
    assert_eq!(
        audiences(own["access_token"].as_str().unwrap()),
        std::slice::from_ref(&app.issuer)
    );
    assert_eq!(own["scope"], "openid offline_access");
    // Without openid there is no token for this server to give.
    let form = [
        ("username", "alice"),
        ("password", alice.as_str()),
        ("scope", "orders.read"),
        ("resource", app.issuer.as_str()),
    ];
    let (status, _, body) = grant(&app, "pwboth", SECRET, &form).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_target")),
        "{body}"
    );
    let (status, _, body) = ask(&[("resource", "https://nope.example/api")]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_target")),
        "{body}"
    );
    // A refresh narrows its access token the same way; the family keeps the whole grant.
    let refresh = |token: String, resource: Option<&'static str>| {
        let app = &app;
        async move {
            let mut form = vec![("grant_type", "refresh_token"), ("refresh_token", token.as_str())];
            form.extend(resource.map(|r| ("resource", r)));
            let (status, _, body) = token_answer(app, "pwboth", SECRET, &form).await;
            (status, body)
        }
    };
    let rt = billing["refresh_token"].as_str().unwrap().to_string();
    let (status, orders) = refresh(rt, Some("https://api.example.com/orders")).await;
    assert_eq!(status, 200, "{orders}");
    assert_eq!(
        audiences(orders["access_token"].as_str().unwrap()),
        ["https://api.example.com/orders"]
    );
    assert_eq!(orders["scope"], "orders.read");
    let (status, again) = refresh(orders["refresh_token"].as_str().unwrap().to_string(), None).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(
        audiences(again["access_token"].as_str().unwrap()).len(),
        2,
        "{again}"
    );
    // A resource the family holds no scope of is refused before the token is used up: it still
    // refreshes afterwards (a refusal after the rotation would leave the client a used token,
    // whose next use revokes the family).
    let form = [
        ("username", "alice"),
        ("password", alice.as_str()),
        ("scope", "openid offline_access orders.read"),
    ];
    let (status, _, narrow) = grant(&app, "pwboth", SECRET, &form).await;
    assert_eq!(status, 200, "{narrow}");
    let rt = narrow["refresh_token"].as_str().unwrap().to_string();
    let (status, body) = refresh(rt.clone(), Some("https://api.example.com/billing")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_target")),
        "{body}"
    );
    let (status, body) = refresh(rt, None).await;
    assert_eq!(status, 200, "the refresh token is still good: {body}");
}
