//! What a request leaves when one of its statements fails or another request's write lands in
//! the middle of it: faults injected as triggers in the app's database (`harness::add_fault`),
//! on both stores, with the server's own code untouched.

use serde_json::{Value, json};

use crate::admin::{call, spawn};
use crate::flow::{Browser, code_flow, code_request_url, pkce};
use crate::harness::{Fault, TestApp, add_fault, drop_fault, live_sessions, rows_text};

/// Creates the store-managed user zed through the admin API; returns its id.
async fn create_zed(app: &TestApp, token: &str) -> String {
    let (status, _, created) = call(
        app,
        "POST",
        "/Users",
        Some(token),
        Some(json!({"username": "zed", "password": "zed-pass-123", "claims": {"email": "zed@example.com"}})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    created["id"].as_str().unwrap().to_string()
}

/// Signs zed in with `password` through `firstparty` (no consent) in a new browser, so that zed
/// has a session.
async fn sign_in_zed(app: &TestApp, password: &str) -> Browser {
    let browser = Browser::new();
    let login = browser
        .get(&code_request_url(
            app,
            "firstparty",
            "openid",
            &pkce().challenge,
            &[],
        ))
        .await;
    assert!(login.is_login(), "{}", login.body);
    let page = browser.sign_in(&login, "zed", password).await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert!(
        page.redirect_params().contains_key("code"),
        "{:?}",
        page.location()
    );
    browser
}

/// The newest audit event about `user`.
async fn last_event(app: &TestApp, user: &str) -> Value {
    let sec = app.access_token("secadmin").await;
    let (status, _, events) = call(app, "GET", &format!("/Events?user={user}"), Some(&sec), None).await;
    assert_eq!(status, 200, "{events}");
    events["Resources"][0].clone()
}

#[tokio::test]
async fn a_status_change_that_fails_after_the_claims_were_written_is_audited_as_a_failure() {
    let app = spawn().await;
    let token = app.access_token("useradmin").await;
    let id = create_zed(&app, &token).await;
    add_fault(
        &app.database_url,
        "status_fails",
        "BEFORE UPDATE OF status ON users",
        Fault::Abort,
    )
    .await;
    let change = json!({"claims": {"email": "new@example.com"}, "status": "disabled"});
    let path = format!("/Users/{id}");
    let (status, _, body) = call(&app, "PATCH", &path, Some(&token), Some(change.clone())).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("temporarily_unavailable")),
        "{body}"
    );
    assert!(
        !body.to_string().contains("injected"),
        "the cause stays private: {body}"
    );
    // The claims were written, the status was not; the event says exactly that.
    let (_, _, user) = call(&app, "GET", &path, Some(&token), None).await;
    assert_eq!(
        (user["claims"]["email"].as_str(), user["status"].as_str()),
        (Some("new@example.com"), Some("active")),
        "{user}"
    );
    let event = last_event(&app, &id).await;
    assert_eq!(
        (event["type"].as_str(), event["outcome"].as_str()),
        (Some("admin.user.updated"), Some("failure")),
        "{event}"
    );
    assert_eq!(event["details"]["changed"], json!(["claims"]), "{event}");
    // Once the store writes again, the same request does all of it.
    drop_fault(&app.database_url, "status_fails", "users").await;
    let (status, _, user) = call(&app, "PATCH", &path, Some(&token), Some(change)).await;
    assert_eq!(
        (status, user["status"].as_str()),
        (200, Some("disabled")),
        "{user}"
    );
    let event = last_event(&app, &id).await;
    assert_eq!(event["outcome"], "success", "{event}");
    assert_eq!(
        event["details"]["changed"],
        json!(["claims", "status"]),
        "{event}"
    );
}

#[tokio::test]
async fn a_password_reset_whose_sign_out_fails_is_not_stored_and_its_retry_signs_out() {
    let app = spawn().await;
    let token = app.access_token("useradmin").await;
    let id = create_zed(&app, &token).await;
    sign_in_zed(&app, "zed-pass-123").await;
    assert_eq!(live_sessions(&app.database_url, &id).await, 1);
    let hash = || rows_text(&app.database_url, "users WHERE username = 'zed'", "password_hash");
    let before = hash().await;
    // Ending a session fails: the sign-out that comes before the new password.
    add_fault(
        &app.database_url,
        "end_fails",
        "BEFORE UPDATE OF ended_at ON sessions",
        Fault::Abort,
    )
    .await;
    let path = format!("/Users/{id}/password");
    let reset = json!({"password": "zed-new-pass-456"});
    let (status, _, body) = call(&app, "POST", &path, Some(&token), Some(reset.clone())).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("temporarily_unavailable")),
        "{body}"
    );
    // Not stored: the old password stands, and so does the session a retry must end.
    assert_eq!(hash().await, before);
    assert_eq!(live_sessions(&app.database_url, &id).await, 1);
    drop_fault(&app.database_url, "end_fails", "sessions").await;
    let (status, _, body) = call(&app, "POST", &path, Some(&token), Some(reset)).await;
    assert_eq!(status, 204, "{body}");
    assert_ne!(hash().await, before);
    assert_eq!(live_sessions(&app.database_url, &id).await, 0);
}

/// A password reset whose write finds the user changed since it was read (deleted, or declared
/// in configuration by a reload; injected as a row the write skips) set nothing: 404, and no
/// reset is audited (before: 204 and an audited reset that never happened).
#[tokio::test]
async fn a_password_reset_that_writes_nothing_says_so() {
    let app = spawn().await;
    let token = app.access_token("useradmin").await;
    let id = create_zed(&app, &token).await;
    add_fault(
        &app.database_url,
        "skipped",
        "BEFORE UPDATE OF password_hash ON users",
        Fault::Ignore,
    )
    .await;
    let path = format!("/Users/{id}/password");
    let reset = json!({"password": "zed-new-pass-456"});
    let (status, _, body) = call(&app, "POST", &path, Some(&token), Some(reset)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );
    let kinds = rows_text(&app.database_url, "audit_events", "kind").await;
    assert!(!kinds.contains("admin.user.password_reset"), "{kinds}");
}

#[tokio::test]
async fn a_session_written_while_a_user_is_disabled_or_reset_is_ended_after_the_write() {
    let app = spawn().await;
    let token = app.access_token("useradmin").await;
    let id = create_zed(&app, &token).await;
    // A sign-in that checked the old password writes its session after the first sign-out and
    // before the change: the change's own statement brings zed's sessions back to life.
    let revive = "UPDATE sessions SET ended_at = NULL WHERE user_id = NEW.id";
    for (column, signs_in_with, path, body) in [
        (
            "password_hash",
            "zed-pass-123",
            format!("/Users/{id}/password"),
            json!({"password": "zed-new-pass-456"}),
        ),
        (
            "status",
            "zed-new-pass-456",
            format!("/Users/{id}"),
            json!({"status": "disabled"}),
        ),
    ] {
        sign_in_zed(&app, signs_in_with).await;
        assert_eq!(live_sessions(&app.database_url, &id).await, 1, "{column}");
        let when = format!("AFTER UPDATE OF {column} ON users");
        add_fault(&app.database_url, "revive", &when, Fault::Run(revive.into())).await;
        let method = if column == "status" { "PATCH" } else { "POST" };
        let (status, _, answer) = call(&app, method, &path, Some(&token), Some(body)).await;
        assert!(status == 200 || status == 204, "{column}: {status} {answer}");
        assert_eq!(
            live_sessions(&app.database_url, &id).await,
            0,
            "{column}: a session outlived the change"
        );
        drop_fault(&app.database_url, "revive", "users").await;
    }
}

#[tokio::test]
async fn an_approval_that_cannot_be_stored_is_reported_to_the_client() {
    let app = TestApp::spawn().await;
    let browser = Browser::new();
    let page = browser
        .get(&code_request_url(
            &app,
            "webapp",
            "openid orders.read",
            &pkce().challenge,
            &[("state", "st-1")],
        ))
        .await;
    let page = browser
        .sign_in(&page, "alice", &crate::harness::password("alice"))
        .await;
    let page = browser.get(&page.location().expect("to the consent page")).await;
    assert!(page.is_consent(), "{}", page.body);
    // Every consent write finds the row changed by someone else (it writes nothing), however
    // often it reads again.
    for (name, when) in [
        ("insert_lost", "BEFORE INSERT ON consents"),
        ("update_lost", "BEFORE UPDATE ON consents"),
    ] {
        add_fault(&app.database_url, name, when, Fault::Ignore).await;
    }
    let answer = browser
        .consent(&page, "approve", &["openid", "orders.read"])
        .await;
    // The request was used up: the client is told (RFC 6749 s4.1.2.1), with its state, and no code.
    assert_eq!(answer.status, 303, "{}", answer.body);
    let q = answer.redirect_params();
    assert_eq!(
        (
            q.get("error").map(String::as_str),
            q.get("state").map(String::as_str)
        ),
        (Some("temporarily_unavailable"), Some("st-1")),
        "{:?}",
        answer.location()
    );
    assert!(!q.contains_key("code") && !answer.location().unwrap_or_default().contains("injected"));
    assert_eq!(rows_text(&app.database_url, "consents", "scope").await, "");
    // Once the store writes again, the client's new request goes through.
    for name in ["insert_lost", "update_lost"] {
        drop_fault(&app.database_url, name, "consents").await;
    }
    let code = code_flow(&app, &browser, "webapp", "openid orders.read", &[]).await;
    assert!(!code.code.is_empty());
    assert_eq!(
        rows_text(&app.database_url, "consents", "scope").await,
        "openid orders.read"
    );
}

#[tokio::test]
async fn a_request_the_store_cannot_keep_is_answered_at_the_client() {
    let app = TestApp::spawn().await;
    // RFC 6749 s4.1.2.1: with the client and its redirect URI verified, a request that fails
    // for another reason (here the store, keeping the request for its sign-in page) is answered
    // at the client, with its state and iss, not on a page the client never sees.
    add_fault(
        &app.database_url,
        "no_requests",
        "BEFORE INSERT ON auth_requests",
        Fault::Abort,
    )
    .await;
    let url = code_request_url(&app, "webapp", "openid", &pkce().challenge, &[("state", "st-9")]);
    let page = Browser::new().get(&url).await;
    assert_eq!(page.status, 303, "{}", page.body);
    let q = page.redirect_params();
    // (How the store's failure reads, unavailable or not, is the store's to say.)
    assert!(
        matches!(
            q.get("error").map(String::as_str),
            Some("temporarily_unavailable" | "server_error")
        ),
        "{q:?}"
    );
    assert_eq!(q.get("state").map(String::as_str), Some("st-9"));
    assert_eq!(q.get("iss"), Some(&app.issuer));
    assert!(!page.location().unwrap_or_default().contains("injected"));
    drop_fault(&app.database_url, "no_requests", "auth_requests").await;
    let page = Browser::new().get(&url).await;
    assert!(page.is_login(), "{}", page.body);
}
