//! Refresh tokens: families, rotation, reuse detection, grace, narrowing, offline and
//! session-bound tokens, expiry, revocation, and the events that end them.

use ostiary::clock::Clock;
use ostiary::store::DirectoryStore;
use ostiary::store::signin::SignInStore;
use serde_json::Value;

use crate::flow::{Browser, code_flow, code_request_url, exchange, refresh, sign_in_tokens, with_opaque_web};
use crate::harness::{Opts, TestApp, jwt_parts, on_postgres};

fn rt(body: &Value) -> String {
    body["refresh_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no refresh_token in {body}"))
        .to_string()
}

fn at(body: &Value) -> String {
    body["access_token"].as_str().expect("access_token").to_string()
}

async fn introspect_as(app: &TestApp, client: &str, token: &str) -> Value {
    app.introspect(client, token).await
}

#[tokio::test]
async fn offline_access_gives_a_refresh_token_that_rotates_and_whose_reuse_kills_the_family() {
    let app = TestApp::spawn().await;
    let first = sign_in_tokens(
        &app,
        &Browser::new(),
        "webapp",
        "openid orders.read offline_access",
    )
    .await;
    let r1 = rt(&first);
    let live: Value = introspect_as(&app, "webapp", &r1).await;
    assert_eq!(live["active"], true);
    assert_eq!(live["token_type"], "refresh_token");

    let (status, second) = refresh(&app, "webapp", &r1, &[]).await;
    assert_eq!(status, 200, "{second}");
    let r2 = rt(&second);
    assert_ne!(r1, r2, "every use rotates");
    assert_eq!(second["scope"], "openid orders.read offline_access");
    assert_eq!(
        introspect_as(&app, "webapp", &r1).await["active"],
        false,
        "rotated"
    );
    assert_eq!(introspect_as(&app, "webapp", &r2).await["active"], true);
    let access2 = at(&second);
    assert_eq!(introspect_as(&app, "webapp", &access2).await["active"], true);

    // Replaying the rotated token: invalid_grant, and the whole family dies, access tokens too.
    let (status, body) = refresh(&app, "webapp", &r1, &[]).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(introspect_as(&app, "webapp", &r2).await["active"], false);
    assert_eq!(introspect_as(&app, "webapp", &access2).await["active"], false);
    assert_eq!(introspect_as(&app, "webapp", &at(&first)).await["active"], false);
    let (status, body) = refresh(&app, "webapp", &r2, &[]).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")));
}

/// The same with opaque access tokens, stored rows that the family's revocation finds: the one
/// issued with the code and the one issued by the refresh.
#[tokio::test]
async fn reuse_kills_the_opaque_access_tokens_of_the_family_too() {
    let app = TestApp::spawn_with(with_opaque_web()).await;
    let scope = "openid orders.read offline_access";
    let first = sign_in_tokens(&app, &Browser::new(), "opaque-web", scope).await;
    let (status, second) = refresh(&app, "opaque-web", &rt(&first), &[]).await;
    assert_eq!(status, 200, "{second}");
    for access in [at(&first), at(&second)] {
        assert!(!access.contains('.'), "opaque, not a JWT: {access}");
        assert_eq!(introspect_as(&app, "opaque-web", &access).await["active"], true);
    }

    let (status, body) = refresh(&app, "opaque-web", &rt(&first), &[]).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")));
    for access in [at(&first), at(&second)] {
        assert_eq!(introspect_as(&app, "opaque-web", &access).await["active"], false);
    }
}

#[tokio::test]
async fn refresh_returns_a_new_id_token_with_the_original_auth_time_and_no_nonce() {
    let app = TestApp::spawn().await;
    let browser = Browser::new();
    let code = code_flow(
        &app,
        &browser,
        "webapp",
        "openid profile offline_access",
        &[("nonce", "n-9")],
    )
    .await;
    let (_, first) = exchange(&app, &code).await;
    let (_, c1) = jwt_parts(first["id_token"].as_str().unwrap());
    assert_eq!(c1["nonce"], "n-9");
    app.clock.advance(120);
    let (status, second) = refresh(&app, "webapp", &rt(&first), &[]).await;
    assert_eq!(status, 200, "{second}");
    let (_, c2) = jwt_parts(second["id_token"].as_str().unwrap());
    for same in ["iss", "sub", "aud", "auth_time", "sid", "acr"] {
        assert_eq!(c1[same], c2[same], "{same}");
    }
    assert!(c2["iat"].as_i64().unwrap() >= c1["iat"].as_i64().unwrap() + 120);
    assert!(
        c2.get("nonce").is_none(),
        "OpenID Connect Core s12.2: no nonce on refresh"
    );
}

#[tokio::test]
async fn no_refresh_token_without_an_offline_scope_unless_the_client_always_gets_one() {
    let app = TestApp::spawn().await;
    let body = sign_in_tokens(&app, &Browser::new(), "webapp", "openid orders.read").await;
    assert!(body.get("refresh_token").is_none(), "{body}");
    // The resource server's own offline scope asks for one too.
    let body = sign_in_tokens(
        &app,
        &Browser::new(),
        "webapp",
        "openid orders.read orders.offline",
    )
    .await;
    assert!(body.get("refresh_token").is_some(), "{body}");
    // refresh_tokens = "always": a session-bound one.
    let body = sign_in_tokens(&app, &Browser::new(), "firstparty", "openid orders.read").await;
    assert!(body.get("refresh_token").is_some(), "{body}");
}

#[tokio::test]
async fn session_bound_refresh_tokens_die_with_the_session_and_offline_ones_do_not() {
    let app = TestApp::spawn().await;
    let bound = sign_in_tokens(&app, &Browser::new(), "firstparty", "openid orders.read").await;
    let offline = sign_in_tokens(
        &app,
        &Browser::new(),
        "firstparty",
        "openid orders.read offline_access",
    )
    .await;
    // The session-bound access token never outlives the session (12h by default) and the
    // refresh works while the session lives.
    let (status, b2) = refresh(&app, "firstparty", &rt(&bound), &[]).await;
    assert_eq!(status, 200, "{b2}");
    // Past the session's idle timeout (2h): the session has ended.
    app.clock.advance(2 * 3600 + 5);
    let (status, body) = refresh(&app, "firstparty", &rt(&b2), &[]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    assert_eq!(introspect_as(&app, "firstparty", &rt(&b2)).await["active"], false);
    let (status, body) = refresh(&app, "firstparty", &rt(&offline), &[]).await;
    assert_eq!(status, 200, "offline tokens outlive the session: {body}");
}

#[tokio::test]
async fn refresh_may_narrow_the_scope_but_never_widen_it() {
    let app = TestApp::spawn().await;
    let first = sign_in_tokens(
        &app,
        &Browser::new(),
        "webapp",
        "openid orders.read offline_access",
    )
    .await;
    let (status, body) = refresh(
        &app,
        "webapp",
        &rt(&first),
        &[("scope", "orders.read orders.write")],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_scope")),
        "{body}"
    );
    // A refused widening does not use the token up.
    let (status, narrow) = refresh(&app, "webapp", &rt(&first), &[("scope", "orders.read")]).await;
    assert_eq!(status, 200, "{narrow}");
    assert_eq!(narrow["scope"], "orders.read");
    assert!(narrow.get("id_token").is_none(), "no openid, no ID token");
    let (_, claims) = jwt_parts(&at(&narrow));
    assert_eq!(claims["scope"], "orders.read");
    // The new refresh token keeps the original grant (RFC 6749 s6).
    let (status, full) = refresh(&app, "webapp", &rt(&narrow), &[]).await;
    assert_eq!(status, 200, "{full}");
    assert_eq!(full["scope"], "openid orders.read offline_access");
}

#[tokio::test]
async fn a_refresh_token_is_bound_to_its_client() {
    let app = TestApp::spawn().await;
    let first = sign_in_tokens(&app, &Browser::new(), "webapp", "openid offline_access").await;
    let (status, body) = refresh(&app, "firstparty", &rt(&first), &[]).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")));
    let (status, body) = refresh(&app, "webapp", "not-a-refresh-token", &[]).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")));
    // The original owner can still use it.
    let (status, _) = refresh(&app, "webapp", &rt(&first), &[]).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn within_the_grace_window_a_retry_gets_the_same_new_token_and_after_it_the_family_dies() {
    let app = TestApp::spawn().await;
    let first = sign_in_tokens(&app, &Browser::new(), "spa", "openid offline_access").await;
    let r1 = rt(&first);
    let (status, a) = refresh(&app, "spa", &r1, &[]).await;
    assert_eq!(status, 200, "{a}");
    app.clock.advance(10);
    // The response was "lost": the client retries with the old token within 30 s.
    let (status, b) = refresh(&app, "spa", &r1, &[]).await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(rt(&a), rt(&b), "the same new refresh token");
    // Once the successor has been used, the old one is a replay even within the window.
    let (status, c) = refresh(&app, "spa", &rt(&a), &[]).await;
    assert_eq!(status, 200, "{c}");
    let (status, _) = refresh(&app, "spa", &r1, &[]).await;
    assert_eq!(status, 400);
    let (status, _) = refresh(&app, "spa", &rt(&c), &[]).await;
    assert_eq!(status, 400, "the family was revoked");
    // The access tokens of both the first answer and the retry died with it.
    for token in [at(&a), at(&b), at(&c)] {
        let resp = app
            .get("/oauth2/v1/userinfo")
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
    }
}

#[tokio::test]
async fn revoking_a_rotated_token_within_the_grace_window_ends_its_family() {
    let app = TestApp::spawn().await;
    let first = sign_in_tokens(&app, &Browser::new(), "spa", "openid offline_access").await;
    let r1 = rt(&first);
    let (status, a) = refresh(&app, "spa", &r1, &[]).await;
    assert_eq!(status, 200, "{a}");
    // The client revokes the token it holds: the old one, its answer lost (RFC 7009 s2.1: it
    // cannot be used again).
    let resp = app
        .post("/oauth2/v1/revoke")
        .form(&[("token", r1.as_str()), ("client_id", "spa")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (status, body) = refresh(&app, "spa", &r1, &[]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    let (status, body) = refresh(&app, "spa", &rt(&a), &[]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    let resp = app
        .get("/oauth2/v1/userinfo")
        .bearer_auth(at(&a))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    // Another client's rotated token is left alone (and tells nothing).
    let second = sign_in_tokens(&app, &Browser::new(), "spa", "openid offline_access").await;
    let (status, b) = refresh(&app, "spa", &rt(&second), &[]).await;
    assert_eq!(status, 200, "{b}");
    let resp = app
        .post_basic("/oauth2/v1/revoke", "webapp", &[("token", &rt(&second))])
        .await;
    assert_eq!(resp.status(), 200);
    let (status, c) = refresh(&app, "spa", &rt(&b), &[]).await;
    assert_eq!(status, 200, "{c}");
}

#[tokio::test]
async fn a_replay_asking_for_a_refused_scope_still_revokes_the_family() {
    let app = TestApp::spawn().await;
    let first = sign_in_tokens(&app, &Browser::new(), "webapp", "openid offline_access").await;
    let (status, next) = refresh(&app, "webapp", &rt(&first), &[]).await;
    assert_eq!(status, 200, "{next}");
    // The old token again, with a scope never granted: a replay first, refused as one.
    let (status, body) = refresh(&app, "webapp", &rt(&first), &[("scope", "orders.write")]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    let (status, body) = refresh(&app, "webapp", &rt(&next), &[]).await;
    assert_eq!(status, 400, "the family was revoked: {body}");
}

#[tokio::test]
async fn after_the_grace_window_a_retry_is_reuse() {
    let app = TestApp::spawn().await;
    let first = sign_in_tokens(&app, &Browser::new(), "spa", "openid offline_access").await;
    let (status, a) = refresh(&app, "spa", &rt(&first), &[]).await;
    assert_eq!(status, 200);
    app.clock.advance(31);
    let (status, _) = refresh(&app, "spa", &rt(&first), &[]).await;
    assert_eq!(status, 400);
    let (status, _) = refresh(&app, "spa", &rt(&a), &[]).await;
    assert_eq!(status, 400, "the family was revoked");
}

#[tokio::test]
async fn idle_and_absolute_expiry_and_rotation_never_extends_the_absolute_one() {
    let app = TestApp::spawn_with(Opts {
        domain_keys: "refresh_token_idle_lifetime = \"1d\"\nrefresh_token_max_lifetime = \"3d\"".into(),
        ..Opts::default()
    })
    .await;
    // Idle: unused for more than a day.
    let idle = sign_in_tokens(&app, &Browser::new(), "webapp", "openid offline_access").await;
    let mut token = rt(&sign_in_tokens(&app, &Browser::new(), "webapp", "openid offline_access").await);
    app.clock.advance(86_400 + 1);
    let (status, _) = refresh(&app, "webapp", &rt(&idle), &[]).await;
    assert_eq!(status, 400, "idle expiry");
    let _ = token;
    // Absolute: rotating twice a day still ends three days after sign-in.
    let fresh = sign_in_tokens(&app, &Browser::new(), "webapp", "openid offline_access").await;
    token = rt(&fresh);
    for _ in 0..5 {
        app.clock.advance(12 * 3600);
        let (status, body) = refresh(&app, "webapp", &token, &[]).await;
        assert_eq!(status, 200, "{body}");
        token = rt(&body);
    }
    app.clock.advance(12 * 3600 + 1);
    let (status, body) = refresh(&app, "webapp", &token, &[]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "absolute expiry"
    );
}

#[tokio::test]
async fn revoking_a_refresh_token_revokes_its_family_and_access_tokens() {
    let app = TestApp::spawn().await;
    let first = sign_in_tokens(
        &app,
        &Browser::new(),
        "webapp",
        "openid orders.read offline_access",
    )
    .await;
    let resp = app
        .post_basic(
            "/oauth2/v1/revoke",
            "webapp",
            &[("token", &rt(&first)), ("token_type_hint", "refresh_token")],
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(introspect_as(&app, "webapp", &at(&first)).await["active"], false);
    let (status, _) = refresh(&app, "webapp", &rt(&first), &[]).await;
    assert_eq!(status, 400);
}

/// Disabling a user or changing their password (here by reloads of the file; the admin API and the
/// CLI take the same path) ends the browser's session and the refresh tokens, offline ones too, and
/// revokes the access tokens issued with them (a user still active, with a new password, would
/// otherwise keep using them).
#[tokio::test]
async fn disabling_the_user_or_changing_the_password_ends_sessions_and_refresh_tokens() {
    for change in ["disable", "password"] {
        let app = TestApp::spawn().await;
        let browser = Browser::new();
        let first = sign_in_tokens(&app, &browser, "webapp", "openid offline_access").await;
        assert_eq!(introspect_as(&app, "webapp", &at(&first)).await["active"], true);
        let text = match change {
            "disable" => app.config_text.replacen(
                "username = \"alice\"\n",
                "username = \"alice\"\n  enabled = false\n",
                1,
            ),
            _ => crate::logout::alice_given_a_new_password(&app),
        };
        assert_ne!(text, app.config_text);
        app.handle()
            .reload(ostiary::config::Config::from_toml_str(&text).unwrap())
            .await
            .unwrap();
        let (status, body) = refresh(&app, "webapp", &rt(&first), &[]).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_grant")),
            "{change}"
        );
        assert_eq!(
            introspect_as(&app, "webapp", &at(&first)).await["active"],
            false,
            "{change}"
        );
        // The browser's session is gone: the login page again.
        let pk = crate::flow::pkce();
        let page = browser
            .get(&code_request_url(&app, "webapp", "openid", &pk.challenge, &[]))
            .await;
        assert_eq!(page.status, 200, "{change}");
        assert!(page.body.contains("name=\"password\""), "{change}: sign in again");
    }
}

#[tokio::test]
async fn withdrawn_consent_ends_refresh() {
    let app = TestApp::spawn().await;
    let first = sign_in_tokens(
        &app,
        &Browser::new(),
        "webapp",
        "openid orders.read offline_access",
    )
    .await;
    let store = &app.handle().state().store;
    let alice = store.find_user("default", "alice").await.unwrap().unwrap();
    let consent = store.find_consent("default", &alice.id, "webapp").await.unwrap();
    assert!(consent.is_some());
    let narrowed = store
        .write_consent(
            "default",
            &alice.id,
            "webapp",
            consent.as_deref(),
            "openid",
            app.clock.now(),
        )
        .await
        .unwrap();
    assert!(narrowed);
    let (status, _) = refresh(&app, "webapp", &rt(&first), &[]).await;
    assert_eq!(status, 400);
}

/// Approvals recorded at once (two tabs, a device page) all land: each reads the consent, widens
/// it and writes it only if unchanged since the read (`store::write_consent`), reading again
/// otherwise, so none is lost (with a plain upsert, the last write replaced the others). A write
/// from a stale read is refused, as is a first write over an existing consent.
#[tokio::test]
async fn consents_recorded_at_once_all_land() {
    let app = TestApp::spawn().await;
    let store = &app.handle().state().store;
    let alice = store.find_user("default", "alice").await.unwrap().unwrap();
    let now = app.clock.now();
    let scopes: Vec<String> = (0..6).map(|i| format!("s{i}")).collect();
    let writes = scopes.iter().map(|s| {
        ostiary::oauth::authorize::record_consent(
            store,
            "default",
            &alice.id,
            "webapp",
            std::slice::from_ref(s),
            now,
        )
    });
    for written in futures_util::future::join_all(writes).await {
        written.unwrap();
    }
    let consent = store.find_consent("default", &alice.id, "webapp").await.unwrap();
    let mut got: Vec<&str> = consent.as_deref().unwrap_or_default().split(' ').collect();
    got.sort_unstable();
    assert_eq!(got, ["s0", "s1", "s2", "s3", "s4", "s5"], "{consent:?}");
    for stale in [Some("s0"), None] {
        let written = store
            .write_consent("default", &alice.id, "webapp", stale, "x", now)
            .await
            .unwrap();
        assert!(!written, "{stale:?}");
    }
    assert_eq!(
        store.find_consent("default", &alice.id, "webapp").await.unwrap(),
        consent
    );
}

async fn race(apps: &[&TestApp], client: &str, token: &str, n: usize) -> Vec<(u16, Value)> {
    let tasks = (0..n).map(|i| refresh(apps[i % apps.len()], client, token, &[]));
    // Polled concurrently: the requests are in flight together.
    futures_util::future::join_all(tasks).await
}

#[tokio::test]
async fn concurrent_refreshes_never_fork_a_family_nor_fail_with_5xx() {
    let app = TestApp::spawn().await;
    // Without grace: at most one wins, and the reuse by the others revokes the family.
    let first = sign_in_tokens(&app, &Browser::new(), "webapp", "openid offline_access").await;
    let results = race(&[&app], "webapp", &rt(&first), 10).await;
    check_race(&app, "webapp", &results, false).await;
    // With grace: every retry gets the same successor, which stays usable.
    let first = sign_in_tokens(&app, &Browser::new(), "spa", "openid offline_access").await;
    let results = race(&[&app], "spa", &rt(&first), 10).await;
    check_race(&app, "spa", &results, true).await;
}

async fn check_race(app: &TestApp, client: &str, results: &[(u16, Value)], grace: bool) {
    assert!(results.iter().all(|(s, _)| *s == 200 || *s == 400), "{results:?}");
    let new: std::collections::HashSet<String> = results
        .iter()
        .filter(|(s, _)| *s == 200)
        .map(|(_, b)| rt(b))
        .collect();
    assert!(new.len() <= 1, "one family, one successor: {new:?}");
    if grace {
        assert!(results.iter().all(|(s, _)| *s == 200), "{results:?}");
        let next = new.into_iter().next().unwrap();
        let (status, body) = refresh(app, client, &next, &[]).await;
        assert_eq!(status, 200, "the shared successor works: {body}");
    } else {
        assert!(results.iter().any(|(s, _)| *s == 400));
        for t in new {
            let (status, _) = refresh(app, client, &t, &[]).await;
            assert_eq!(status, 400, "reuse revoked the family");
        }
    }
}

#[tokio::test]
async fn concurrent_refreshes_on_two_replicas_never_fork_a_family() {
    if !on_postgres() {
        eprintln!("note: the two-replica refresh test runs on PostgreSQL only");
        return;
    }
    let a = TestApp::spawn().await;
    let a_port: u16 = a.issuer.rsplit(':').next().unwrap().parse().unwrap();
    let b = TestApp::spawn_with(Opts {
        database_url: Some(a.database_url.clone()),
        dir: Some(a.dir.clone()),
        issuer_port: Some(a_port),
        ..Opts::default()
    })
    .await;
    let first = sign_in_tokens(&a, &Browser::new(), "spa", "openid offline_access").await;
    let results = race(&[&a, &b], "spa", &rt(&first), 10).await;
    check_race(&a, "spa", &results, true).await;
    let first = sign_in_tokens(&a, &Browser::new(), "webapp", "openid offline_access").await;
    let results = race(&[&a, &b], "webapp", &rt(&first), 10).await;
    check_race(&b, "webapp", &results, false).await;
}
