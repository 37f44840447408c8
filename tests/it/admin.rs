//! The administration API: who may call it (roles, domains, expiry, revocation), each resource's
//! operations, the token caps of administrator clients, audit events and the OpenAPI document.

use ostiary::crypto::secrets::SecretHash;
use serde_json::{Value, json};

use crate::flow::{Browser, refresh, sign_in_tokens};
use crate::harness::{Opts, TestApp, jwt_parts, password, secret};

/// One admin client per role, plus one with every role and a long configured lifetime.
fn admin_clients() -> String {
    let roles = [
        ("superadmin", "Identity Domain Administrator"),
        ("useradmin", "User Administrator"),
        ("consentadmin", "Consent Administrator"),
        ("secadmin", "Security Administrator"),
        ("appadmin", "Application Administrator"),
    ];
    let mut out = String::new();
    // mixedadmin also has a resource-server scope: its plain token is for that API.
    for (id, role) in roles.into_iter().chain([("mixedadmin", "User Administrator")]) {
        let scopes = if id == "mixedadmin" {
            r#"scopes = ["orders.read"]"#
        } else {
            ""
        };
        out.push_str(&format!(
            r#"
  [[domain.client]]
  client_id = "{id}"
  secret_hash = "{}"
  grant_types = ["client_credentials"]
  {scopes}
  access_token_lifetime = "1d"
  admin_roles = ["{role}"]
"#,
            SecretHash::sha256_string(&secret(id))
        ));
    }
    out
}

pub async fn spawn() -> TestApp {
    TestApp::spawn_with(Opts {
        domain_extra: admin_clients(),
        ..Default::default()
    })
    .await
}

pub async fn call(
    app: &TestApp,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let url = format!("{}/admin/v1{path}", app.issuer);
    let mut req = app.http.request(method.parse().unwrap(), &url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap()
    };
    (status, headers, body)
}

#[tokio::test]
async fn the_role_matrix_allows_and_refuses_each_resource() {
    let app = spawn().await;
    let resources = [
        "/Users",
        "/Sessions",
        "/OAuthConsents",
        "/Clients",
        "/Keys",
        "/Events",
    ];
    let allowed: &[(&str, &[&str])] = &[
        (
            "superadmin",
            &[
                "/Users",
                "/Sessions",
                "/OAuthConsents",
                "/Clients",
                "/Keys",
                "/Events",
            ],
        ),
        ("useradmin", &["/Users", "/Sessions"]),
        ("consentadmin", &["/OAuthConsents"]),
        ("secadmin", &["/Keys", "/Events"]),
        ("appadmin", &["/Clients"]),
    ];
    for (client, ok) in allowed {
        let token = app.access_token(client).await;
        for r in resources {
            let (status, headers, body) = call(&app, "GET", r, Some(&token), None).await;
            if ok.contains(&r) {
                assert_eq!(status, 200, "{client} {r}: {body}");
                assert!(body["Resources"].is_array(), "{body}");
                assert_eq!(headers["cache-control"], "no-store");
            } else {
                assert_eq!(status, 403, "{client} {r}: {body}");
                assert_eq!(body["error"], "insufficient_scope");
                let www = headers["www-authenticate"].to_str().unwrap();
                assert!(
                    www.starts_with("Bearer ") && www.contains("insufficient_scope"),
                    "{www}"
                );
            }
        }
    }
}

#[tokio::test]
async fn missing_foreign_expired_and_revoked_tokens_are_refused() {
    let app = spawn().await;
    // No token: the bare challenge and no error information (RFC 6750 s3.1).
    let (status, headers, body) = call(&app, "GET", "/Users", None, None).await;
    assert_eq!(status, 401);
    assert_eq!(body, Value::Null);
    assert_eq!(
        headers["www-authenticate"],
        format!("Bearer realm=\"{}\"", app.issuer).as_str()
    );

    // A token of this domain presented to the other domain.
    let token = app.access_token("superadmin").await;
    let resp = app
        .http
        .get(format!("{}/admin/v1/Users", app.issuer2))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(
        resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );

    // Revoked (RFC 7009) by its client.
    let revoked = app.access_token("superadmin").await;
    let resp = app
        .post_basic("/oauth2/v1/revoke", "superadmin", &[("token", revoked.as_str())])
        .await;
    assert_eq!(resp.status(), 200);
    let (status, _, body) = call(&app, "GET", "/Users", Some(&revoked), None).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_token")));

    // Still good, then expired after its one-hour cap.
    let (status, _, _) = call(&app, "GET", "/Users", Some(&token), None).await;
    assert_eq!(status, 200);
    app.clock.advance(3601);
    let (status, headers, body) = call(&app, "GET", "/Users", Some(&token), None).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_token")));
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
}

#[tokio::test]
async fn admin_tokens_live_an_hour_at_most_and_carry_their_roles() {
    let app = spawn().await;
    let body = app.token("useradmin", &[]).await;
    assert_eq!(body["expires_in"], 3600, "1d configured, capped at 1h: {body}");
    let (_, claims) = jwt_parts(body["access_token"].as_str().unwrap());
    assert_eq!(claims["admin_roles"], json!(["User Administrator"]));
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        3600
    );
    // An administrator client without API scopes gets a token for this domain's admin API only.
    let body = app.token("appadmin", &[]).await;
    assert!(body.get("scope").is_none(), "{body}");
    let (_, claims) = jwt_parts(body["access_token"].as_str().unwrap());
    assert_eq!(claims["aud"], app.issuer.as_str());
    let (status, _, _) = call(&app, "GET", "/Clients", body["access_token"].as_str(), None).await;
    assert_eq!(status, 200);
    // A client with roles and a resource-server scope: its plain token is for that API, carries
    // no roles, and is refused here (401: not meant for this domain); asked with resource = the
    // issuer, it gets an admin-API token.
    let body = app.token("mixedadmin", &[]).await;
    assert_eq!(body["scope"], "orders.read", "{body}");
    let (_, claims) = jwt_parts(body["access_token"].as_str().unwrap());
    assert_eq!(claims["aud"], "https://api.example.com/orders", "{claims}");
    assert!(claims.get("admin_roles").is_none(), "{claims}");
    let (status, headers, err) = call(&app, "GET", "/Users", body["access_token"].as_str(), None).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (401, Some("invalid_token")),
        "{err}"
    );
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
    let body = app
        .token("mixedadmin", &[("resource", app.issuer.as_str())])
        .await;
    assert!(body.get("scope").is_none(), "{body}");
    let (_, claims) = jwt_parts(body["access_token"].as_str().unwrap());
    assert_eq!(claims["aud"], app.issuer.as_str());
    assert_eq!(claims["admin_roles"], json!(["User Administrator"]));
    let (status, _, _) = call(&app, "GET", "/Users", body["access_token"].as_str(), None).await;
    assert_eq!(status, 200);
    // A client without roles keeps its configured lifetime and has no roles claim; its token,
    // meant for a resource server, is refused here like mixedadmin's.
    let body = app.token("backend", &[]).await;
    let (_, claims) = jwt_parts(body["access_token"].as_str().unwrap());
    assert!(claims.get("admin_roles").is_none());
    let (status, _, err) = call(&app, "GET", "/Users", body["access_token"].as_str(), None).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (401, Some("invalid_token")),
        "{err}"
    );
}

#[test]
fn admin_roles_are_validated_in_configuration() {
    let base =
        |client: &str| format!("[[domain]]\nname = \"d\"\nissuer = \"http://127.0.0.1:8080\"\n{client}");
    let hash = SecretHash::sha256_string("x");
    let unknown = format!(
        "[[domain.client]]\nclient_id = \"a\"\nsecret_hash = \"{hash}\"\ngrant_types = [\"client_credentials\"]\nadmin_roles = [\"Root\"]\n"
    );
    let err = ostiary::config::Config::from_toml_str(&base(&unknown))
        .unwrap_err()
        .to_string();
    assert!(err.contains("admin_roles"), "{err}");
    let no_cc = format!(
        "[[domain.client]]\nclient_id = \"a\"\nsecret_hash = \"{hash}\"\ngrant_types = [\"refresh_token\"]\nadmin_roles = [\"User Administrator\"]\n"
    );
    let err = ostiary::config::Config::from_toml_str(&base(&no_cc))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("admin_roles") && err.contains("client_credentials"),
        "{err}"
    );
    let good = format!(
        "[[domain.client]]\nclient_id = \"a\"\nsecret_hash = \"{hash}\"\ngrant_types = [\"client_credentials\"]\nadmin_roles = [\"User Administrator\"]\n"
    );
    assert!(ostiary::config::Config::from_toml_str(&base(&good)).is_ok());
}

#[tokio::test]
async fn users_are_listed_a_page_at_a_time_in_username_order() {
    let app = spawn().await;
    let token = app.access_token("useradmin").await;
    for name in ["page-c", "page-a", "page-e", "page-b", "page-d"] {
        let body = json!({"username": name, "password": "page-pass-123"});
        let (status, _, created) = call(&app, "POST", "/Users", Some(&token), Some(body)).await;
        assert_eq!(status, 201, "{created}");
    }
    let (status, _, none) = call(&app, "GET", "/Users?count=0", Some(&token), None).await;
    assert_eq!(status, 200, "{none}");
    assert_eq!(none["Resources"], json!([]), "count=0 gives the total only");
    let total = none["totalResults"].as_i64().unwrap();
    assert!(total >= 5, "{none}");

    let mut names = Vec::new();
    let mut start = 1;
    loop {
        let path = format!("/Users?count=2&startIndex={start}");
        let (status, _, page) = call(&app, "GET", &path, Some(&token), None).await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(
            (page["totalResults"].as_i64(), page["startIndex"].as_i64()),
            (Some(total), Some(start))
        );
        let items = page["Resources"].as_array().unwrap();
        assert!(items.len() <= 2, "{page}");
        if items.is_empty() {
            break;
        }
        names.extend(items.iter().map(|u| u["username"].as_str().unwrap().to_string()));
        start += 2;
    }
    assert_eq!(
        names.len() as i64,
        total,
        "every user on exactly one page: {names:?}"
    );
    let mut once = names.clone();
    once.sort();
    once.dedup();
    assert_eq!(once.len(), names.len(), "no user twice: {names:?}");
    let created: Vec<&String> = names.iter().filter(|n| n.starts_with("page-")).collect();
    assert_eq!(
        created,
        ["page-a", "page-b", "page-c", "page-d", "page-e"],
        "by username"
    );
}

#[tokio::test]
async fn users_are_created_read_updated_disabled_and_reset() {
    let app = spawn().await;
    let token = app.access_token("useradmin").await;
    let (status, headers, created) = call(
        &app,
        "POST",
        "/Users",
        Some(&token),
        Some(json!({"username": "zed", "password": "zed-pass-123", "claims": {"email": "zed@example.com"}})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["username"], "zed");
    assert_eq!(
        headers["location"].to_str().unwrap(),
        format!(
            "{}/admin/v1/Users/{}",
            app.issuer,
            created["id"].as_str().unwrap()
        )
    );
    assert_eq!(created["readOnly"], false);
    assert!(created.get("password_hash").is_none() && !created.to_string().contains("argon2"));
    let id = created["id"].as_str().unwrap().to_string();
    let (status, _, body) = call(
        &app,
        "POST",
        "/Users",
        Some(&token),
        Some(json!({"username": "zed", "password": "x-long-enough"})),
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (409, Some("conflict")));
    // NIST SP 800-63B s5.1.1.2: at least 8 characters.
    for (password, why) in [
        ("seven77", "password must be at least 8 characters"),
        ("", "password must be at least 8 characters"),
    ] {
        let (status, _, body) = call(
            &app,
            "POST",
            "/Users",
            Some(&token),
            Some(json!({"username": "short", "password": password})),
        )
        .await;
        assert_eq!(
            (status, body["error_description"].as_str()),
            (400, Some(why)),
            "{body}"
        );
    }
    let (status, _, body) = call(
        &app,
        "POST",
        "/Users",
        Some(&token),
        Some(json!({"username": "dave"})),
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_request")));
    // A misspelt or unknown member, a value of the wrong type, an invisible character or an
    // overlong name is refused with a message saying which, never ignored.
    let cases = [
        (
            "POST",
            "/Users".to_string(),
            json!({"username": "eve", "password": "eve-pass-123", "status": "disabled"}),
            "unknown member status",
        ),
        (
            "POST",
            "/Users".to_string(),
            json!({"username": "eve", "password": 123}),
            "password must be a string",
        ),
        (
            "POST",
            "/Users".to_string(),
            json!({"username": 7, "password": "eve-pass-123"}),
            "username must be a string",
        ),
        (
            "POST",
            "/Users".to_string(),
            json!({"username": "e\u{202e}ve", "password": "eve-pass-123"}),
            "invisible",
        ),
        (
            "POST",
            "/Users".to_string(),
            json!({"username": "e".repeat(256), "password": "eve-pass-123"}),
            "at most 255",
        ),
        (
            "PATCH",
            format!("/Users/{id}"),
            json!({"stauts": "disabled"}),
            "unknown member stauts",
        ),
        ("PATCH", format!("/Users/{id}"), json!({}), "nothing to change"),
        // Claims have the types of OpenID Connect Core s5.1, as a file's users do.
        (
            "PATCH",
            format!("/Users/{id}"),
            json!({"claims": {"email_verified": "false"}}),
            "claims.email_verified: invalid type: string",
        ),
        (
            "PATCH",
            format!("/Users/{id}"),
            json!({"claims": {"address": {"country": 49}}}),
            "claims.address: invalid type: integer",
        ),
        (
            "PATCH",
            format!("/Users/{id}"),
            json!({"claims": {"groups": "admins"}}),
            "claims.groups: invalid type: string",
        ),
        (
            "PATCH",
            format!("/Users/{id}"),
            json!({"claims": {"address": {"street": "Main St 1"}}}),
            "claims.address: unknown field `street`",
        ),
        (
            "PATCH",
            format!("/Users/{id}"),
            json!({"claims": {"sub": "someone-else"}}),
            "claims.sub: set by the server",
        ),
        (
            "POST",
            "/Users".to_string(),
            json!({"username": "eve", "password": "eve-pass-123", "claims": {"shoe_size": 44}}),
            "claims.shoe_size: not a claim a user has here; put data of your own in attributes",
        ),
        (
            "PATCH",
            format!("/Users/{id}"),
            json!({"claims": {"password_hash": "$argon2id$x"}}),
            "claims.password_hash: not a claim",
        ),
        (
            "POST",
            format!("/Users/{id}/password"),
            json!({"password": "p-123456", "extra": 1}),
            "unknown member extra",
        ),
    ];
    for (method, path, body, says) in cases {
        let (status, _, got) = call(&app, method, &path, Some(&token), Some(body.clone())).await;
        assert_eq!(
            (status, got["error"].as_str()),
            (400, Some("invalid_request")),
            "{body}: {got}"
        );
        let description = got["error_description"].as_str().unwrap();
        assert!(description.contains(says), "{body}: {description}");
    }
    let (_, _, list) = call(&app, "GET", "/Users", Some(&token), None).await;
    assert!(!list.to_string().contains("\"eve"), "no eve was created: {list}");
    // A NUL anywhere in the body is refused on every store (PostgreSQL cannot keep one in text).
    for body in [
        json!({"username": "nul\u{0}", "password": "zed-pass-123"}),
        json!({"username": "nul", "password": "zed-pass-123", "claims": {"attributes": {"a\u{0}": "x"}}}),
    ] {
        let (status, _, got) = call(&app, "POST", "/Users", Some(&token), Some(body.clone())).await;
        assert_eq!(
            (status, got["error"].as_str()),
            (400, Some("invalid_request")),
            "{body}"
        );
    }
    // A body over server.max_body_bytes (64 KiB here) is a 413, a path that is not UTF-8 a 400,
    // both in the API's JSON error format.
    let big = json!({"username": "big", "password": "zed-pass-123", "claims": {"pad": "x".repeat(70_000)}});
    for (method, path, body, want) in [
        ("POST", "/Users", Some(big), (413, "payload_too_large")),
        ("GET", "/Users/%FF", None, (400, "invalid_request")),
    ] {
        let (status, headers, got) = call(&app, method, path, Some(&token), body).await;
        assert_eq!(
            (status, got["error"].as_str()),
            (want.0, Some(want.1)),
            "{path}: {got}"
        );
        let content_type = headers["content-type"].to_str().unwrap();
        assert!(
            content_type.starts_with("application/json"),
            "{path}: {content_type}"
        );
    }
    // One in a path reaches the store: PostgreSQL refuses it, which is the request's fault (400),
    // not the store's (503); SQLite finds no such user.
    let (status, _, got) = call(&app, "GET", "/Users/nul%00", Some(&token), None).await;
    let want = if crate::harness::on_postgres() { 400 } else { 404 };
    assert_eq!(status, want, "{got}");

    let (status, _, got) = call(&app, "GET", &format!("/Users/{id}"), Some(&token), None).await;
    assert_eq!(status, 200);
    assert_eq!(got["claims"]["email"], "zed@example.com");
    let (status, _, list) = call(&app, "GET", "/Users?count=1&startIndex=1", Some(&token), None).await;
    assert_eq!(status, 200);
    assert_eq!(list["itemsPerPage"], 1);
    assert!(list["totalResults"].as_i64().unwrap() >= 2);

    let (status, _, updated) = call(
        &app,
        "PATCH",
        &format!("/Users/{id}"),
        Some(&token),
        Some(json!({"claims": {"name": "Zed"}, "status": "disabled"})),
    )
    .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["status"], "disabled");
    assert_eq!(updated["claims"]["name"], "Zed");
    // Typed claims and data of one's own (in attributes) are kept as given; a null is left out.
    let claims = json!({
        "email_verified": true,
        "address": {"country": "DE"},
        "attributes": {"shoe_size": 44},
    });
    let mut given = claims.clone();
    given["nickname"] = Value::Null;
    given["groups"] = Value::Null;
    let (status, _, updated) = call(
        &app,
        "PATCH",
        &format!("/Users/{id}"),
        Some(&token),
        Some(json!({"claims": given})),
    )
    .await;
    assert_eq!((status, &updated["claims"]), (200, &claims), "{updated}");
    let (status, _, _) = call(
        &app,
        "POST",
        &format!("/Users/{id}/password"),
        Some(&token),
        Some(json!({"password": "new-pass-456"})),
    )
    .await;
    assert_eq!(status, 204);
    let store = &app.handle().state().store;
    use ostiary::store::DirectoryStore;
    let row = store.find_user("default", "zed").await.unwrap().unwrap();
    assert!(ostiary::crypto::secrets::argon2_verify(
        row.password_hash.as_deref().unwrap(),
        "new-pass-456"
    ));

    // Users declared in configuration are read-only here.
    let alice = store.find_user("default", "alice").await.unwrap().unwrap();
    let (status, _, body) = call(&app, "GET", &format!("/Users/{}", alice.id), Some(&token), None).await;
    assert_eq!((status, body["readOnly"].as_bool()), (200, Some(true)));
    let (status, _, body) = call(
        &app,
        "PATCH",
        &format!("/Users/{}", alice.id),
        Some(&token),
        Some(json!({"status": "disabled"})),
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (403, Some("forbidden")));
    let (status, _, _) = call(
        &app,
        "POST",
        &format!("/Users/{}/password", alice.id),
        Some(&token),
        Some(json!({"password": "x"})),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _, body) = call(&app, "GET", "/Users/nobody", Some(&token), None).await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));

    // Every change is audited, without the password.
    let sec = app.access_token("secadmin").await;
    let (_, _, events) = call(&app, "GET", &format!("/Events?user={id}"), Some(&sec), None).await;
    let kinds: Vec<&str> = events["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "admin.user.password_reset",
            "admin.user.updated",
            "admin.user.updated",
            "admin.user.created"
        ]
    );
    assert_eq!(events["Resources"][0]["actor"], "client:useradmin");
    assert!(!events.to_string().contains("new-pass-456") && !events.to_string().contains("zed-pass-123"));
}

#[tokio::test]
async fn sessions_are_listed_and_revoked() {
    let app = spawn().await;
    let tokens = sign_in_tokens(&app, &Browser::new(), "firstparty", "openid").await;
    assert!(tokens["refresh_token"].is_string());
    let userinfo = || async {
        app.get("/oauth2/v1/userinfo")
            .bearer_auth(tokens["access_token"].as_str().unwrap())
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(userinfo().await, 200);
    let token = app.access_token("useradmin").await;
    use ostiary::store::DirectoryStore;
    let alice = app
        .handle()
        .state()
        .store
        .find_user("default", "alice")
        .await
        .unwrap()
        .unwrap();
    let (status, _, list) = call(
        &app,
        "GET",
        &format!("/Sessions?user={}", alice.id),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["totalResults"], 1);
    assert_eq!(list["Resources"][0]["userAgent"], crate::flow::USER_AGENT);
    let sid = list["Resources"][0]["id"].as_str().unwrap().to_string();
    let (status, _, _) = call(&app, "DELETE", &format!("/Sessions/{sid}"), Some(&token), None).await;
    assert_eq!(status, 204);
    let (_, _, list) = call(&app, "GET", "/Sessions", Some(&token), None).await;
    assert_eq!(list["totalResults"], 0);
    let (status, _, _) = call(&app, "DELETE", &format!("/Sessions/{sid}"), Some(&token), None).await;
    assert_eq!(status, 404);
    // As at sign-out: the session-bound refresh token died with the session, and so did the
    // access token issued with it.
    let (status, _) = refresh(&app, "firstparty", tokens["refresh_token"].as_str().unwrap(), &[]).await;
    assert_eq!(status, 400);
    assert_eq!(userinfo().await, 401);
}

#[tokio::test]
async fn consents_are_listed_filtered_and_withdrawn_with_their_refresh_tokens() {
    let app = spawn().await;
    let first = sign_in_tokens(
        &app,
        &Browser::new(),
        "webapp",
        "openid orders.read offline_access",
    )
    .await;
    let rt = first["refresh_token"].as_str().unwrap().to_string();
    let token = app.access_token("consentadmin").await;
    use ostiary::store::DirectoryStore;
    let alice = app
        .handle()
        .state()
        .store
        .find_user("default", "alice")
        .await
        .unwrap()
        .unwrap();
    let (status, _, list) = call(&app, "GET", "/OAuthConsents?client=webapp", Some(&token), None).await;
    assert_eq!(status, 200);
    assert_eq!(list["totalResults"], 1, "{list}");
    assert_eq!(list["Resources"][0]["userId"], alice.id.as_str());
    let (_, _, none) = call(&app, "GET", "/OAuthConsents?client=spa", Some(&token), None).await;
    assert_eq!(none["totalResults"], 0);
    let path = format!("/OAuthConsents/{}/webapp", alice.id);
    let (status, _, one) = call(&app, "GET", &path, Some(&token), None).await;
    assert_eq!(status, 200);
    assert!(one["scope"].as_str().unwrap().contains("offline_access"));
    let (status, deleted, _) = call(&app, "DELETE", &path, Some(&token), None).await;
    assert_eq!(status, 204);
    let request_id = deleted["x-request-id"].to_str().unwrap().to_string();
    let (status, _, _) = call(&app, "GET", &path, Some(&token), None).await;
    assert_eq!(status, 404);
    let (status, _) = refresh(&app, "webapp", &rt, &[]).await;
    assert_eq!(status, 400, "the refresh token ended with the consent");

    let sec = app.access_token("secadmin").await;
    let (_, _, ev) = call(&app, "GET", "/Events?type=consent.withdrawn", Some(&sec), None).await;
    assert_eq!(ev["totalResults"], 1);
    assert_eq!(ev["Resources"][0]["details"]["refresh_families_revoked"], 1);
    assert_eq!(
        ev["Resources"][0]["requestId"],
        request_id.as_str(),
        "the withdrawal's request: {ev}"
    );
    let (_, _, ev) = call(
        &app,
        "GET",
        "/Events?type=consent.given&client=webapp",
        Some(&sec),
        None,
    )
    .await;
    assert_eq!(ev["totalResults"], 1);
    // The code exchange's tokens are alice's: their event names her.
    let path = format!("/Events?type=token.issued&user={}", alice.id);
    let (_, _, issued) = call(&app, "GET", &path, Some(&sec), None).await;
    assert_eq!(issued["totalResults"], 1, "{issued}");
    assert_eq!(
        issued["Resources"][0]["details"]["grant_type"],
        "authorization_code"
    );
    assert_eq!(issued["Resources"][0]["userId"], alice.id.as_str());
}

#[tokio::test]
async fn clients_are_read_without_secrets() {
    let app = spawn().await;
    let token = app.access_token("appadmin").await;
    let (status, _, list) = call(&app, "GET", "/Clients?count=200", Some(&token), None).await;
    assert_eq!(status, 200);
    let text = list.to_string();
    assert!(!text.contains("sha256:") && !text.contains("secret_hash") && !text.contains(&secret("webapp")));
    let ids: Vec<&str> = list["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"webapp") && ids.contains(&"appadmin"));
    let (status, _, c) = call(&app, "GET", "/Clients/superadmin", Some(&token), None).await;
    assert_eq!(status, 200);
    assert_eq!(c["adminRoles"], json!(["Identity Domain Administrator"]));
    assert_eq!(c["hasSecret"], true);
    let (status, _, _) = call(&app, "GET", "/Clients/ghost", Some(&token), None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn keys_are_listed_and_rotated() {
    let app = spawn().await;
    let token = app.access_token("secadmin").await;
    let (status, _, before) = call(&app, "GET", "/Keys", Some(&token), None).await;
    assert_eq!(status, 200);
    let n = before["totalResults"].as_i64().unwrap();
    assert!(n >= 1);
    assert!(!before.to_string().contains("private"));
    let (status, _, rotated) = call(&app, "POST", "/Keys/rotate", Some(&token), None).await;
    assert_eq!(status, 200, "{rotated}");
    let created = rotated["created"].as_array().unwrap().len() as i64;
    assert!(created >= 1);
    // Again while those keys wait to sign: nothing new is staged (it would never sign before
    // them), and the answer says which keys are waiting.
    let (status, _, again) = call(&app, "POST", "/Keys/rotate", Some(&token), None).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["created"], json!([]));
    let waiting: Vec<&str> = again["alreadyStaged"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(json!(waiting), rotated["created"]);
    // Both requests are audited, the second with the keys that made it stage none.
    let (_, _, events) = call(&app, "GET", "/Events?type=admin.keys.rotated", Some(&token), None).await;
    let details: Vec<&Value> = events["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["details"])
        .collect();
    assert_eq!(
        details,
        [
            &json!({"kids": [], "alreadyStaged": rotated["created"], "failed": false}),
            &json!({"kids": rotated["created"], "alreadyStaged": [], "failed": false}),
        ],
        "{events}"
    );
    let (_, _, after) = call(&app, "GET", "/Keys", Some(&token), None).await;
    assert_eq!(after["totalResults"].as_i64().unwrap(), n + created);
    assert!(
        after["Resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["state"] == "next")
    );
    let (_, _, jwks) = app.get_json(&format!("{}/oauth2/v1/keys", app.issuer)).await;
    let kid = rotated["created"][0].as_str().unwrap();
    assert!(
        jwks["keys"].as_array().unwrap().iter().any(|k| k["kid"] == kid),
        "the new key is published"
    );
}

#[tokio::test]
async fn sign_ins_tokens_and_revocations_are_audited_and_filtered() {
    let app = spawn().await;
    let browser = Browser::new();
    // A failed sign-in, then a good one (through the flow helper).
    let page = browser
        .get(&crate::flow::authorize_url(
            &app,
            &[
                ("response_type", "code"),
                ("client_id", "firstparty"),
                ("redirect_uri", crate::flow::redirect_uri_of("firstparty")),
                ("scope", "openid"),
                ("code_challenge", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"),
                ("code_challenge_method", "S256"),
            ],
        ))
        .await;
    let failed = browser.sign_in(&page, "alice", "wrong").await;
    assert_eq!(failed.status, 401);
    let ok = browser.sign_in(&failed, "alice", &password("alice")).await;
    assert_eq!(ok.status, 303);
    let t = app.access_token("backend").await;
    let resp = app
        .post_basic("/oauth2/v1/revoke", "backend", &[("token", t.as_str())])
        .await;
    assert_eq!(resp.status(), 200);

    let before = ostiary::clock::Clock::now(app.clock.as_ref());
    let sec = app.access_token("secadmin").await;
    let (status, _, all) = call(&app, "GET", "/Events?count=200", Some(&sec), None).await;
    assert_eq!(status, 200);
    let kinds: Vec<&str> = all["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    for k in [
        "signin.failure",
        "signin.success",
        "token.issued",
        "token.revoked",
    ] {
        assert!(kinds.contains(&k), "{k} in {kinds:?}");
    }
    let text = all.to_string();
    assert!(!text.contains(&t) && !text.contains(&password("alice")) && !text.contains("wrong"));
    let (_, _, f) = call(&app, "GET", "/Events?type=signin.failure", Some(&sec), None).await;
    assert_eq!(f["totalResults"], 1);
    assert_eq!(f["Resources"][0]["outcome"], "failure");
    assert_eq!(f["Resources"][0]["clientId"], "firstparty");
    assert!(
        f["Resources"][0]["requestId"]
            .as_str()
            .is_some_and(|r| !r.is_empty())
    );
    let (_, _, c) = call(
        &app,
        "GET",
        "/Events?client=backend&type=token.issued",
        Some(&sec),
        None,
    )
    .await;
    assert_eq!(c["totalResults"], 1);
    assert_eq!(c["Resources"][0]["details"]["grant_type"], "client_credentials");
    assert_eq!(
        c["Resources"][0]["userId"],
        Value::Null,
        "a client's own token has no user"
    );
    let (_, _, later) = call(
        &app,
        "GET",
        &format!("/Events?since={}", before + 1000),
        Some(&sec),
        None,
    )
    .await;
    assert_eq!(later["totalResults"], 0);
    let (_, _, until) = call(
        &app,
        "GET",
        &format!("/Events?until={}", before + 1000),
        Some(&sec),
        None,
    )
    .await;
    assert!(until["totalResults"].as_i64().unwrap() >= 4);
    let (status, _, bad) = call(&app, "GET", "/Events?since=yesterday", Some(&sec), None).await;
    assert_eq!((status, bad["error"].as_str()), (400, Some("invalid_request")));
    let (status, _, _) = call(&app, "GET", "/Events?count=1000", Some(&sec), None).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn lockouts_are_audited() {
    let app = spawn().await;
    let browser = Browser::new();
    let mut page = browser
        .get(&crate::flow::authorize_url(
            &app,
            &[
                ("response_type", "code"),
                ("client_id", "firstparty"),
                ("redirect_uri", crate::flow::redirect_uri_of("firstparty")),
                ("scope", "openid"),
                ("code_challenge", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"),
                ("code_challenge_method", "S256"),
            ],
        ))
        .await;
    for _ in 0..12 {
        page = browser.sign_in(&page, "alice", "wrong").await;
        if page.status == 429 {
            break;
        }
    }
    assert_eq!(page.status, 429);
    let sec = app.access_token("secadmin").await;
    let (_, _, ev) = call(&app, "GET", "/Events?type=signin.lockout", Some(&sec), None).await;
    assert_eq!(ev["totalResults"], 1);
    assert_eq!(ev["Resources"][0]["outcome"], "failure");
    // Where the attempts came from, as their budget counts it.
    assert_eq!(ev["Resources"][0]["details"]["address"], "127.0.0.1", "{ev}");
    let (_, _, ev) = call(&app, "GET", "/Events?type=signin.failure", Some(&sec), None).await;
    assert_eq!(ev["Resources"][0]["details"]["address"], "127.0.0.1", "{ev}");
}

#[tokio::test]
async fn the_openapi_document_lists_every_path() {
    let app = spawn().await;
    let (status, headers, doc) = app
        .get_json(&format!("{}/admin/v1/openapi.json", app.issuer))
        .await;
    assert_eq!(status, 200);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    assert_eq!(doc["openapi"], "3.0.3");
    assert_eq!(
        doc["servers"][0]["url"],
        format!("{}/admin/v1", app.issuer).as_str()
    );
    for p in [
        "/Users",
        "/Users/{id}",
        "/Users/{id}/password",
        "/Sessions",
        "/Sessions/{id}",
        "/OAuthConsents",
        "/OAuthConsents/{user}/{client}",
        "/Clients",
        "/Clients/{id}",
        "/Keys",
        "/Keys/rotate",
        "/Events",
    ] {
        assert!(doc["paths"][p].is_object(), "{p} missing");
        for (method, operation) in doc["paths"][p].as_object().unwrap() {
            for status in ["400", "401", "403", "503"] {
                assert!(
                    operation["responses"][status].is_object(),
                    "{method} {p}: no {status}"
                );
            }
        }
    }
    let body = |path: &str, method: &str| {
        doc["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"].clone()
    };
    assert_eq!(
        body("/Users", "post")["required"],
        json!(["username", "password"])
    );
    assert_eq!(
        body("/Users/{id}/password", "post")["required"],
        json!(["password"])
    );
    assert_eq!(body("/Users/{id}", "patch")["minProperties"], 1);
    for (path, method) in [
        ("/Users", "post"),
        ("/Users/{id}", "patch"),
        ("/Users/{id}/password", "post"),
    ] {
        assert!(
            doc["paths"][path][method]["responses"]["413"].is_object(),
            "{method} {path}"
        );
    }
    let codes = doc["components"]["schemas"]["Error"]["properties"]["error"]["enum"].clone();
    for code in [
        "payload_too_large",
        "method_not_allowed",
        "temporarily_unavailable",
    ] {
        assert!(codes.as_array().unwrap().contains(&json!(code)), "{code}");
    }
    assert!(doc["components"]["responses"]["Unauthorized"]["headers"]["WWW-Authenticate"].is_object());
}

/// A list refuses a query parameter it does not take (a misspelt filter would answer the whole
/// list as if filtered) and a repeated one, after the token is checked; each list takes its own.
#[tokio::test]
async fn lists_refuse_query_parameters_they_do_not_take_or_repeat() {
    let app = spawn().await;
    sign_in_tokens(&app, &Browser::new(), "firstparty", "openid").await;
    let users = app.access_token("useradmin").await;
    let (status, _, b) = call(&app, "GET", "/Sessions?userId=nobody", Some(&users), None).await;
    assert_eq!(
        (status, b["error"].as_str()),
        (400, Some("invalid_request")),
        "{b}"
    );
    let description = b["error_description"].as_str().unwrap();
    assert!(
        description.contains("userId") && description.contains("user"),
        "{b}"
    );
    let (status, _, b) = call(&app, "GET", "/Sessions?user=a&user=b", Some(&users), None).await;
    assert_eq!(status, 400, "{b}");
    assert!(
        b["error_description"]
            .as_str()
            .unwrap()
            .contains("more than once"),
        "{b}"
    );
    let (status, _, b) = call(&app, "GET", "/Users?username=bob", Some(&users), None).await;
    assert_eq!(status, 400, "{b}");
    // A name quoted in the description keeps to RFC 6749 s5.2's characters.
    let (status, _, b) = call(&app, "GET", "/Users?%22%3Cx%3E%0A=1", Some(&users), None).await;
    assert_eq!(status, 400, "{b}");
    let description = b["error_description"].as_str().unwrap();
    assert!(
        description
            .chars()
            .all(|c| (' '..='~').contains(&c) && c != '"' && c != '\\'),
        "{b}"
    );
    // A NUL is refused on every store (PostgreSQL cannot keep one in text).
    let (status, _, b) = call(&app, "GET", "/Sessions?user=%00", Some(&users), None).await;
    assert_eq!(
        (status, b["error"].as_str()),
        (400, Some("invalid_request")),
        "{b}"
    );
    // What each list takes still works.
    let (status, _, b) = call(
        &app,
        "GET",
        "/Sessions?user=x&startIndex=1&count=5",
        Some(&users),
        None,
    )
    .await;
    assert_eq!((status, b["totalResults"].as_i64()), (200, Some(0)), "{b}");
    let (status, _, _) = call(&app, "GET", "/Users?count=1", Some(&users), None).await;
    assert_eq!(status, 200);
    let sec = app.access_token("secadmin").await;
    let (status, _, _) = call(
        &app,
        "GET",
        "/Events?type=x&user=u&client=c&since=1&until=2&startIndex=1&count=1",
        Some(&sec),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, _, _) = call(&app, "GET", "/Events?tpye=signin.failure", Some(&sec), None).await;
    assert_eq!(status, 400);
    let (status, _, _) = call(&app, "GET", "/Keys?user=x", Some(&sec), None).await;
    assert_eq!(status, 400);
    let consents = app.access_token("consentadmin").await;
    let (status, _, _) = call(
        &app,
        "GET",
        "/OAuthConsents?user=u&client=c",
        Some(&consents),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, _, _) = call(&app, "GET", "/OAuthConsents?client_id=c", Some(&consents), None).await;
    assert_eq!(status, 400);
    // Without a token: the challenge first, whatever the query.
    let (status, headers, _) = call(&app, "GET", "/Sessions?userId=nobody", None, None).await;
    assert_eq!(status, 401);
    assert!(headers.contains_key("www-authenticate"));
}

/// RFC 6750 s3: a request without credentials gets the 401 challenge, even with a body too
/// large or a path that is not valid (before: 413 and 400 without a challenge).
#[tokio::test]
async fn a_request_without_a_token_is_challenged_before_its_body_or_path_is_judged() {
    let app = spawn().await;
    let big = "x".repeat(70_000);
    let resp = app
        .http
        .post(format!("{}/admin/v1/Users", app.issuer))
        .header("content-type", "application/json")
        .body(format!("{{\"username\":\"{big}\"}}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(
        resp.headers()["www-authenticate"],
        format!("Bearer realm=\"{}\"", app.issuer).as_str()
    );
    let (status, headers, _) = call(&app, "GET", "/Users/%FF", None, None).await;
    assert_eq!(status, 401);
    assert!(headers.contains_key("www-authenticate"));
    // With a token, the same requests get their own errors.
    let users = app.access_token("useradmin").await;
    let resp = app
        .http
        .post(format!("{}/admin/v1/Users", app.issuer))
        .bearer_auth(&users)
        .header("content-type", "application/json")
        .body(format!("{{\"username\":\"{big}\"}}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    let b: Value = resp.json().await.unwrap();
    assert_eq!(b["error"], "payload_too_large");
    let (status, _, b) = call(&app, "GET", "/Users/%FF", Some(&users), None).await;
    assert_eq!((status, b["error"].as_str()), (400, Some("invalid_request")));
}

/// Usernames with invisible characters beyond the bidirectional controls (Unicode's
/// Default_Ignorable_Code_Point, the line separators) are refused.
#[tokio::test]
async fn usernames_with_invisible_characters_are_refused() {
    let app = spawn().await;
    let t = app.access_token("useradmin").await;
    for name in [
        "al\u{061C}ice",
        "bob\u{E0041}",
        "a\u{2028}b",
        "\u{3164}alice",
        "x\u{034F}y",
    ] {
        let (status, _, b) = call(
            &app,
            "POST",
            "/Users",
            Some(&t),
            Some(json!({"username": name, "password": "pass-123456"})),
        )
        .await;
        assert_eq!(
            (status, b["error"].as_str()),
            (400, Some("invalid_request")),
            "{name:?}: {b}"
        );
    }
    let (status, _, b) = call(
        &app,
        "POST",
        "/Users",
        Some(&t),
        Some(json!({"username": "zoë", "password": "pass-123456"})),
    )
    .await;
    assert_eq!(status, 201, "{b}");
}

#[tokio::test]
async fn an_administrator_clients_refresh_tokens_live_a_week_at_most() {
    let app = TestApp::spawn_with(Opts {
        domain_extra: format!(
            r#"
  [[domain.client]]
  client_id = "adminapp"
  secret_hash = "{}"
  grant_types = ["client_credentials", "password", "refresh_token"]
  scopes = ["openid", "offline_access", "orders.read"]
  admin_roles = ["User Administrator"]
"#,
            SecretHash::sha256_string(&secret("adminapp"))
        ),
        domain_keys: "refresh_token_max_lifetime = \"90d\"\nrefresh_token_idle_lifetime = \"30d\"".into(),
        ..Default::default()
    })
    .await;
    let grant = |form: Vec<(&'static str, String)>| {
        let app = &app;
        async move {
            let resp = app
                .post("/oauth2/v1/token")
                .basic_auth("adminapp", Some(secret("adminapp")))
                .form(&form)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = grant(vec![
        ("grant_type", "password".into()),
        ("username", "alice".into()),
        ("password", password("alice")),
        ("scope", "openid offline_access orders.read".into()),
    ])
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["expires_in"].as_i64().unwrap() <= 3600, "{body}");
    let rt = body["refresh_token"].as_str().unwrap().to_string();
    // Six days on, the family still lives (configured: 90 days), and rotates.
    app.clock.advance(6 * 86_400);
    let (status, body) = grant(vec![
        ("grant_type", "refresh_token".into()),
        ("refresh_token", rt),
    ])
    .await;
    assert_eq!(status, 200, "{body}");
    let rt = body["refresh_token"].as_str().unwrap().to_string();
    // Past seven days since the grant, it is over, whatever the configuration says.
    app.clock.advance(86_400 + 60);
    let (status, body) = grant(vec![
        ("grant_type", "refresh_token".into()),
        ("refresh_token", rt),
    ])
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
}

#[tokio::test]
async fn an_authorization_header_sent_twice_is_invalid_request() {
    let app = spawn().await;
    let token = app.access_token("useradmin").await;
    let users = app.http.get(format!("{}/admin/v1/Users", app.issuer));
    crate::harness::assert_two_bearers_refused(users, &token).await;
    // One of them alone is fine.
    let (status, _, _) = call(&app, "GET", "/Users", Some(&token), None).await;
    assert_eq!(status, 200);
}
