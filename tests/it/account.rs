//! The account page: sign-in first and back, CSRF on its forms, and in a real headless Chromium,
//! withdrawing a consent (the client's refresh token dies, its back-channel logout arrives) and
//! signing out everywhere (every session ends).

use serde_json::Value;

use crate::browser::Browser as Chrome;
use crate::flow::{Browser, refresh};
use crate::harness::{Opts, TestApp, jwt_parts, password, secret};
use crate::logout::{Listener, RPC_REDIRECT, check_logout_token, clients, signed_in, tokens};

/// The sign-out clients plus `rpc`, which asks for consent and has a back-channel endpoint.
async fn spawn(listener: &Listener) -> TestApp {
    let rpc = format!(
        r#"
  [[domain.client]]
  client_id = "rpc"
  name = "Consenting <RP>"
  secret_hash = "{}"
  refresh_tokens = "always"
  grant_types = ["authorization_code", "refresh_token"]
  redirect_uris = ["{RPC_REDIRECT}"]
  backchannel_logout_uri = "{}"
  scopes = ["openid", "profile", "offline_access"]
"#,
        ostiary::crypto::secrets::SecretHash::sha256_string(&secret("rpc")),
        listener.uri
    );
    TestApp::spawn_with(Opts {
        domain_extra: format!("{}{rpc}", clients(&listener.uri)),
        ..Opts::default()
    })
    .await
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or_else(|| panic!("no {k} in {v}"))
}

#[tokio::test]
async fn account_page_signs_in_first_and_refuses_forms_without_csrf() {
    let listener = Listener::start(&[]).await;
    let app = spawn(&listener).await;
    let browser = Browser::new();
    let url = format!("{}/account", app.issuer);
    let login = browser.get(&url).await;
    assert!(login.is_login(), "{}", login.body);
    assert!(login.body.contains("your account"));
    let back = browser.sign_in(&login, "alice", &password("alice")).await;
    assert_eq!(back.status, 303, "{}", back.body);
    assert_eq!(back.location().as_deref(), Some(url.as_str()));
    let page = browser.get(&url).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Signed in as <strong>alice</strong>"));
    assert!(page.body.contains("You have not given any application access."));
    assert!(
        page.body
            .contains("<strong>This browser</strong> (Firefox on Linux)"),
        "{}",
        page.body
    );
    assert_eq!(page.header("cache-control"), "no-store");

    for form in [
        vec![("action", "everywhere")],
        vec![("action", "everywhere"), ("csrf", "forged")],
    ] {
        let refused = browser.post(&url, &form).await;
        assert_eq!(refused.status, 403, "{}", refused.body);
        assert!(refused.body.contains("could not be verified"));
    }
    assert!(signed_in(&app, &browser).await, "a refused form changes nothing");
    app.stop().await;
}

/// Withdrawing access a client never had (any client_id a form names) does nothing: no
/// back-channel logout carries the user's `sub` to that client, nothing is audited.
#[tokio::test]
async fn withdrawing_what_was_never_given_tells_no_one() {
    let listener = Listener::start(&[]).await;
    let app = spawn(&listener).await;
    let browser = Browser::new();
    let url = format!("{}/account", app.issuer);
    let login = browser.get(&url).await;
    let back = browser.sign_in(&login, "alice", &password("alice")).await;
    assert_eq!(back.status, 303, "{}", back.body);
    let page = browser.get(&url).await;
    let csrf = page.field("csrf").expect("a csrf field");
    for client in ["rpc", "no-such-client"] {
        let form = [
            ("action", "withdraw"),
            ("client_id", client),
            ("csrf", csrf.as_str()),
        ];
        let done = browser.post(&url, &form).await;
        assert_eq!(done.status, 303, "{client}: {}", done.body);
    }
    let db = &app.database_url;
    assert_eq!(crate::harness::count_rows(db, "logout_deliveries").await, 0);
    let events = crate::harness::rows_text(db, "audit_events", "kind").await;
    assert!(!events.contains("consent.withdrawn"), "{events}");
    app.stop().await;
}

#[tokio::test]
async fn browser_account_withdraws_a_consent_and_signs_out_everywhere() {
    let Some(chrome) = Chrome::start().await else {
        return;
    };
    let mut listener = Listener::start(&[]).await;
    let app = spawn(&listener).await;
    // Another browser consents to rpc and signs in to rp.
    let other = Browser::new();
    let rpc = tokens(&app, &other, "rpc", "openid profile").await;
    let rp = tokens(&app, &other, "rp", "openid").await;
    let other_sid = jwt_parts(s(&rpc, "id_token")).1["sid"].clone();

    chrome.goto(&format!("{}/account", app.issuer)).await;
    chrome.sign_in("alice", &password("alice"), false).await;
    assert!(chrome.url().await.ends_with("/account"), "{}", chrome.url().await);
    let app_line = chrome.text("li.app[data-client=rpc]").await;
    assert!(app_line.contains("Consenting <RP>"), "{app_line}");
    assert!(app_line.contains("See your name and profile"), "{app_line}");
    assert_eq!(chrome.text("ul.sessions").await.lines().count(), 2);

    chrome.click_to_next_page("#withdraw-rpc").await;
    assert_eq!(chrome.text(".notice").await, "Access removed.");
    assert!(
        chrome
            .text("#no-apps")
            .await
            .contains("not given any application access")
    );
    let (status, body) = refresh(&app, "rpc", s(&rpc, "refresh_token"), &[]).await;
    assert_eq!((status, s(&body, "error")), (400, "invalid_grant"), "{body}");
    let claims = check_logout_token(&app, &listener.next().await, "rpc").await;
    assert_eq!(claims["sid"], other_sid);
    let (status, body) = refresh(&app, "rp", s(&rp, "refresh_token"), &[]).await;
    assert_eq!(status, 200, "another client is untouched: {body}");
    let rp_refresh = s(&body, "refresh_token").to_string();

    chrome.click_to_next_page("#everywhere").await;
    assert!(chrome.text("h1").await.contains("You are signed out"));
    assert!(
        !signed_in(&app, &other).await,
        "the other browser's session ended too"
    );
    let (status, _) = refresh(&app, "rp", &rp_refresh, &[]).await;
    assert_eq!(status, 400);
    // The session the other browser ended served rp and rpc: both hear of it, in any order.
    let (a, b) = (listener.next().await, listener.next().await);
    let rp_token = [a, b]
        .into_iter()
        .find(|t| jwt_parts(t).1["aud"] == "rp")
        .expect("a logout token for rp");
    let claims = check_logout_token(&app, &rp_token, "rp").await;
    assert_eq!(claims["sid"], other_sid);
    chrome.goto(&format!("{}/account", app.issuer)).await;
    chrome.find("#password").await;
    chrome.quit().await;
    app.stop().await;
}

#[tokio::test]
async fn signing_out_everywhere_loads_the_frontchannel_iframes_of_every_session() {
    use crate::logout::FC_FRAME;
    let listener = Listener::start(&[]).await;
    let app = spawn(&listener).await;
    // Two browsers of alice's, each signed in to the front-channel client `fc`.
    let (here, there) = (Browser::new(), Browser::new());
    let mut sids = Vec::new();
    for b in [&here, &there] {
        let t = tokens(&app, b, "fc", "openid").await;
        let (_, id) = jwt_parts(s(&t, "id_token"));
        sids.push(s(&id, "sid").to_string());
    }
    let url = format!("{}/account", app.issuer);
    let page = here.get(&url).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let csrf = page.field("csrf").expect("csrf field");
    let done = here
        .post(&url, &[("action", "everywhere"), ("csrf", &csrf)])
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    for sid in &sids {
        let mut frame = url::Url::parse(FC_FRAME).unwrap();
        frame
            .query_pairs_mut()
            .append_pair("iss", &app.issuer)
            .append_pair("sid", sid);
        let escaped = frame.as_str().replace('&', "&#38;");
        assert!(
            done.body
                .contains(&format!("<iframe class=\"frontchannel\" src=\"{escaped}\"")),
            "{sid}: {}",
            done.body
        );
    }
    let csp = done.header("content-security-policy");
    assert!(csp.contains("frame-src https://fc.example.com;"), "{csp}");
    assert!(!signed_in(&app, &here).await);
    assert!(!signed_in(&app, &there).await);
    app.stop().await;
}
