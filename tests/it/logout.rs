//! Sign-out over HTTP: RP-Initiated Logout 1.0 (with a hint, an expired hint, no hint, a bad
//! post_logout_redirect_uri), what dies with a session, Back-Channel Logout 1.0 delivered to a
//! listener of the test's own (retried, and across a restart), and Front-Channel Logout iframes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::Value;
use sqlx::Connection;
use tokio::sync::mpsc;

use crate::flow::{Browser, Code, Page, Pkce, authorize_url, exchange, pkce, refresh, walk};
use crate::harness::{Opts, TestApp, jwt_parts, secret, verify_with_jwks};

pub const RP_REDIRECT: &str = "https://rp.example.com/cb";
pub const RP_AFTER: &str = "https://rp.example.com/bye";
/// The redirect URI of the account tests' consenting client `rpc`.
pub const RPC_REDIRECT: &str = "https://rpc.example.com/cb";
const FC_REDIRECT: &str = "https://fc.example.com/cb";
/// The redirect URI of `bare`, a client given no refresh token without `offline_access`.
const BARE_REDIRECT: &str = "https://bare.example.com/cb";
const FC_AFTER: &str = "https://fc.example.com/bye";
pub const FC_FRAME: &str = "https://fc.example.com/frontchannel?x=1";

/// A listener standing in for a client's back-channel logout endpoint: records every
/// `logout_token` and answers with the queued statuses (200 once they run out).
pub struct Listener {
    pub uri: String,
    pub tokens: mpsc::UnboundedReceiver<String>,
}

type Answers = Arc<Mutex<Vec<u16>>>;

async fn backchannel(
    State((tx, answers)): State<(mpsc::UnboundedSender<String>, Answers)>,
    body: String,
) -> StatusCode {
    let token = url::form_urlencoded::parse(body.as_bytes())
        .find(|(k, _)| k == "logout_token")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let _ = tx.send(token);
    let mut a = answers.lock().expect("lock");
    let code = if a.is_empty() { 200 } else { a.remove(0) };
    StatusCode::from_u16(code).expect("status")
}

impl Listener {
    /// Starts the listener; `answers`: statuses of the first requests.
    pub async fn start(answers: &[u16]) -> Listener {
        let (tx, rx) = mpsc::unbounded_channel();
        let state = (tx, Arc::new(Mutex::new(answers.to_vec())));
        let router = axum::Router::new()
            .route("/backchannel", post(backchannel))
            .with_state(state);
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = tcp.local_addr().expect("addr").port();
        tokio::spawn(async move {
            let _ = axum::serve(tcp, router).await;
        });
        Listener {
            uri: format!("http://127.0.0.1:{port}/backchannel"),
            tokens: rx,
        }
    }

    /// The next logout token received, within a few seconds.
    pub async fn next(&mut self) -> String {
        tokio::time::timeout(Duration::from_secs(10), self.tokens.recv())
            .await
            .expect("a back-channel logout within 10 s")
            .expect("listener open")
    }

    /// True when nothing arrives within `ms` milliseconds.
    pub async fn quiet(&mut self, ms: u64) -> bool {
        tokio::time::timeout(Duration::from_millis(ms), self.tokens.recv())
            .await
            .is_err()
    }
}

/// Test clients: `rp` (back-channel logout, post-logout redirect, sid required) and `fc`
/// (front-channel logout), both first-party (no consent page) with refresh tokens.
pub fn clients(backchannel_uri: &str) -> String {
    let sha = |id: &str| ostiary::crypto::secrets::SecretHash::sha256_string(&secret(id));
    format!(
        r#"
  [[domain.client]]
  client_id = "rp"
  name = "Relying Party"
  secret_hash = "{rp}"
  consent = "skip"
  refresh_tokens = "always"
  grant_types = ["authorization_code", "refresh_token"]
  redirect_uris = ["{RP_REDIRECT}"]
  post_logout_redirect_uris = ["{RP_AFTER}"]
  backchannel_logout_uri = "{backchannel_uri}"
  backchannel_logout_session_required = true
  scopes = ["openid", "profile", "offline_access"]

  [[domain.client]]
  client_id = "fc"
  name = "Front Channel"
  secret_hash = "{fc}"
  consent = "skip"
  refresh_tokens = "always"
  grant_types = ["authorization_code", "refresh_token"]
  redirect_uris = ["{FC_REDIRECT}"]
  post_logout_redirect_uris = ["{FC_AFTER}"]
  frontchannel_logout_uri = "{FC_FRAME}"
  frontchannel_logout_session_required = true
  scopes = ["openid", "profile", "offline_access"]
"#,
        rp = sha("rp"),
        fc = sha("fc"),
    )
}

async fn spawn(listener: &Listener, domain_keys: &str) -> TestApp {
    TestApp::spawn_with(Opts {
        domain_extra: clients(&listener.uri),
        domain_keys: domain_keys.to_string(),
        ..Opts::default()
    })
    .await
}

/// Signs in (or reuses the browser's session) through `client` and exchanges the code.
pub async fn tokens(app: &TestApp, browser: &Browser, client: &str, scope: &str) -> Value {
    tokens_with(app, browser, client, scope, &[]).await
}

/// [`tokens`] with more authorization parameters (`prompt=login`: alice signs in again).
async fn tokens_with(
    app: &TestApp,
    browser: &Browser,
    client: &str,
    scope: &str,
    extra: &[(&str, &str)],
) -> Value {
    let p = pkce();
    let redirect = match client {
        "rp" => RP_REDIRECT,
        "fc" => FC_REDIRECT,
        "rpc" => RPC_REDIRECT,
        "bare" => BARE_REDIRECT,
        other => panic!("no redirect URI for {other}"),
    };
    let mut params = vec![
        ("response_type", "code"),
        ("client_id", client),
        ("redirect_uri", redirect),
        ("scope", scope),
        ("code_challenge", &p.challenge),
        ("code_challenge_method", "S256"),
        ("nonce", "n-0S6"),
    ];
    params.extend_from_slice(extra);
    let page = walk(app, browser, &params).await;
    assert_eq!(page.status, 303, "{}", page.body);
    let code = page.redirect_params().get("code").expect("code").clone();
    let (status, body) = exchange(
        app,
        &Code {
            code,
            verifier: p.verifier,
            redirect_uri: redirect.to_string(),
            client: client.to_string(),
        },
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

fn end_session_url(app: &TestApp, params: &[(&str, &str)]) -> String {
    let mut u = url::Url::parse(&format!("{}/oauth2/v1/userlogout", app.issuer)).expect("url");
    for (k, v) in params {
        u.query_pairs_mut().append_pair(k, v);
    }
    u.to_string()
}

/// True when the browser still has a live session (an authorization goes straight to a code).
pub async fn signed_in(app: &TestApp, browser: &Browser) -> bool {
    !browser.get(&rp_request(app, &pkce())).await.is_login()
}

/// An authorization request of `rp` for `openid`, with the challenge of `p`.
fn rp_request(app: &TestApp, p: &Pkce) -> String {
    authorize_url(
        app,
        &[
            ("response_type", "code"),
            ("client_id", "rp"),
            ("redirect_uri", RP_REDIRECT),
            ("scope", "openid"),
            ("code_challenge", &p.challenge),
            ("code_challenge_method", "S256"),
        ],
    )
}

async fn userinfo_status(app: &TestApp, access_token: &str) -> u16 {
    app.get("/oauth2/v1/userinfo")
        .bearer_auth(access_token)
        .send()
        .await
        .expect("request")
        .status()
        .as_u16()
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or_else(|| panic!("no {k} in {v}"))
}

/// Checks a logout token as a client would (Back-Channel Logout 1.0 s2.6); returns its claims.
pub async fn check_logout_token(app: &TestApp, token: &str, client: &str) -> Value {
    let (header, _) = jwt_parts(token);
    assert_eq!(header["typ"], "logout+jwt");
    assert_eq!(header["alg"], "RS256");
    let (_, _, jwks) = app.get_json(&format!("{}/oauth2/v1/keys", app.base)).await;
    let claims = verify_with_jwks(token, &jwks, &app.issuer, client).expect("a valid logout token");
    assert!(claims.get("nonce").is_none(), "a logout token never has a nonce");
    assert!(
        claims["events"]["http://schemas.openid.net/event/backchannel-logout"].is_object(),
        "{claims}"
    );
    assert!(!s(&claims, "jti").is_empty());
    let (iat, exp) = (
        claims["iat"].as_i64().expect("iat"),
        claims["exp"].as_i64().expect("exp"),
    );
    assert!(exp > iat && exp - iat <= 120, "short-lived: {claims}");
    claims
}

/// The (attempts, delivered, failed) of the only back-channel delivery in the database.
async fn delivery_state(app: &TestApp) -> (i64, bool, bool) {
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&app.database_url)
        .await
        .expect("connect");
    let (attempts, delivered, failed): (i64, i64, i64) = sqlx::query_as(
        "SELECT attempts, CASE WHEN delivered_at IS NULL THEN 0 ELSE 1 END, \
         CASE WHEN failed_at IS NULL THEN 0 ELSE 1 END FROM logout_deliveries",
    )
    .fetch_one(&mut conn)
    .await
    .expect("one delivery");
    (attempts, delivered == 1, failed == 1)
}

/// Waits until the delivery has recorded `attempts` attempts and is no longer claimed.
async fn wait_attempts(app: &TestApp, attempts: i64) {
    for _ in 0..100 {
        let mut conn = sqlx::AnyConnection::connect(&app.database_url)
            .await
            .expect("connect");
        let row: (i64, i64) = sqlx::query_as("SELECT attempts, claimed_until FROM logout_deliveries")
            .fetch_one(&mut conn)
            .await
            .expect("one delivery");
        if row.0 == attempts && row.1 == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the delivery never recorded {attempts} attempts");
}

/// One endpoint that never answers (each attempt takes the whole 10 s timeout) does not hold up
/// the logouts of other clients queued behind it, and costs one timeout a run: the outbox sends
/// each client's deliveries in a line of their own, the clients side by side, and leaves a
/// client's other deliveries for the next run at its first failure.
#[tokio::test]
async fn a_silent_endpoint_does_not_hold_up_the_other_logouts() {
    use ostiary::clock::Clock;
    use ostiary::store::logout::{DeliveryRow, LogoutStore};
    let mut listener = Listener::start(&[]).await;
    // Accepts connections, never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_uri = format!("http://{}/backchannel", silent.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((conn, _)) = silent.accept().await {
            open.push(conn);
        }
    });
    let slow = format!(
        "{}\n  [[domain.client]]\n  client_id = \"slow\"\n  secret_hash = \"{}\"\n  grant_types = [\"client_credentials\"]\n  backchannel_logout_uri = \"{silent_uri}\"\n",
        clients(&listener.uri),
        ostiary::crypto::secrets::SecretHash::sha256_string(&secret("slow"))
    );
    let app = TestApp::spawn_with(Opts {
        domain_extra: slow,
        ..Opts::default()
    })
    .await;
    let state = app.handle().state().clone();
    let now = app.clock.now();
    // Twelve of the silent client's logouts first in the outbox (due earlier), then rp's.
    let mut queued = vec!["slow"; 12];
    queued.push("rp");
    for (i, client) in queued.iter().enumerate() {
        let row = DeliveryRow {
            id: format!("d-{i}"),
            domain: "default".into(),
            client_id: client.to_string(),
            sub: "someone".into(),
            sid: Some(format!("sid-{i}")),
            attempts: 0,
            next_attempt_at: now - 20 + i64::try_from(i).unwrap(),
            claimed_until: 0,
            created_at: now,
            delivered_at: None,
            failed_at: None,
            last_error: None,
        };
        state.store.enqueue_logout(&row).await.unwrap();
    }
    let started = std::time::Instant::now();
    let run = tokio::spawn(async move { ostiary::app::deliver_logouts(&state).await });
    let token = tokio::time::timeout(Duration::from_secs(5), listener.tokens.recv())
        .await
        .expect("rp's logout within 5 s, beside the silent endpoint")
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    check_logout_token(&app, &token, "rp").await;
    assert_eq!(
        run.await.unwrap(),
        1,
        "one delivered, the silent ones retried later"
    );
    // One timeout for the silent client in this run, not one per delivery: the others wait.
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    let attempts = crate::harness::rows_text(
        &app.database_url,
        "logout_deliveries WHERE client_id = 'slow'",
        "CAST(attempts AS TEXT)",
    )
    .await;
    // One attempt by this run; the server's own outbox job (every 5 s) may have made one or two.
    let tried = attempts.lines().filter(|a| *a != "0").count();
    assert!((1..=3).contains(&tried), "{attempts}");
    held.abort();
}

/// The confirmation's notice when the request did not validate.
const UNVERIFIED: &str = "sign-out request could not be verified, so you will not be sent back";

#[tokio::test]
async fn logout_with_a_valid_hint_signs_out_at_once_and_redirects_with_state() {
    let mut listener = Listener::start(&[]).await;
    let app = spawn(&listener, "").await;
    let browser = Browser::new();
    let online = tokens(&app, &browser, "rp", "openid profile").await;
    let offline = tokens(&app, &browser, "rp", "openid offline_access").await;
    let id_token = s(&online, "id_token");
    let (_, id_claims) = jwt_parts(id_token);

    let page = browser
        .get(&end_session_url(
            &app,
            &[
                ("id_token_hint", id_token),
                ("post_logout_redirect_uri", RP_AFTER),
                ("state", "st-bye"),
                ("ui_locales", "fr en"),
            ],
        ))
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(
        page.location().as_deref(),
        Some(&*format!("{RP_AFTER}?state=st-bye"))
    );
    assert_eq!(page.header("cache-control"), "no-store");
    assert!(
        page.set_cookies()
            .iter()
            .any(|c| c.starts_with("ostiary_session_default=;") && c.contains("Max-Age=0")),
        "{:?}",
        page.set_cookies()
    );
    assert!(!signed_in(&app, &browser).await, "the session has ended");

    // The session's refresh tokens and access tokens are dead; the offline family lives.
    let (status, body) = refresh(&app, "rp", s(&online, "refresh_token"), &[]).await;
    assert_eq!((status, s(&body, "error")), (400, "invalid_grant"), "{body}");
    assert_eq!(userinfo_status(&app, s(&online, "access_token")).await, 401);
    let (status, body) = refresh(&app, "rp", s(&offline, "refresh_token"), &[]).await;
    assert_eq!(status, 200, "{body}");

    // Back-Channel Logout 1.0: the client hears of it, for this session and subject.
    let claims = check_logout_token(&app, &listener.next().await, "rp").await;
    assert_eq!(claims["sid"], id_claims["sid"]);
    assert_eq!(claims["sub"], id_claims["sub"]);
    app.stop().await;
}

/// Signing in again in the same browser keeps the session and the clients it served, past the
/// session's first end: the garbage collector then keeps their record, and the sign-out tells
/// them (before: the record ended with the session's first end, and the client never heard).
#[tokio::test]
async fn a_session_renewed_by_signing_in_again_still_tells_its_clients() {
    let mut listener = Listener::start(&[]).await;
    let app = spawn(
        &listener,
        "session_max_lifetime = \"1h\"\nsession_idle_timeout = \"1h\"",
    )
    .await;
    let browser = Browser::new();
    let (a, b) = signed_in_twice(&app, &browser, 50 * 60).await;
    assert_eq!(a["sid"], b["sid"], "the session is kept");
    assert!(b["auth_time"].as_i64() > a["auth_time"].as_i64(), "{a} {b}");
    // Past the first end (60 min), within the new one (110 min); the collector runs.
    app.clock.advance(15 * 60);
    let collected = ostiary::app::collect_garbage(app.handle().state(), 1000, 86400).await;
    assert!(collected.is_some(), "the collector ran");
    // Signed out through another client (`fc`), so that `rp` hears of it only as a client the
    // session served (the hint's own client is told in any case).
    let fc = tokens(&app, &browser, "fc", "openid").await;
    let page = browser
        .get(&end_session_url(&app, &[("id_token_hint", s(&fc, "id_token"))]))
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("You are signed out"));
    let claims = check_logout_token(&app, &listener.next().await, "rp").await;
    assert_eq!(claims["sid"], b["sid"]);
    app.stop().await;
}

/// A logout token (typ logout+jwt), signed by the same keys as ID tokens and carrying `sub` and
/// `sid`, is not an ID token: as an `id_token_hint` it is not used (the confirmation is asked,
/// without it), and nobody is signed out without saying so.
#[tokio::test]
async fn a_logout_token_is_not_an_id_token_hint() {
    let mut listener = Listener::start(&[]).await;
    let app = spawn(&listener, "").await;
    let browser = Browser::new();
    let t = tokens(&app, &browser, "rp", "openid").await;
    let page = browser
        .get(&end_session_url(&app, &[("id_token_hint", s(&t, "id_token"))]))
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    let logout_token = listener.next().await;
    let (header, _) = jwt_parts(&logout_token);
    assert_eq!(header["typ"], "logout+jwt");

    let other = Browser::new();
    tokens(&app, &other, "rp", "openid").await;
    let page = other
        .get(&end_session_url(&app, &[("id_token_hint", &logout_token)]))
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Sign out?"), "{}", page.body);
    assert!(page.body.contains(UNVERIFIED), "{}", page.body);
    assert!(signed_in(&app, &other).await, "nobody was signed out");
    // Nor at the authorization endpoint (its aud is the client, its sub the user): refused as
    // a hint there too, not taken as naming the user.
    let p = crate::flow::pkce();
    let url = authorize_url(
        &app,
        &[
            ("response_type", "code"),
            ("client_id", "rp"),
            ("redirect_uri", RP_REDIRECT),
            ("scope", "openid"),
            ("code_challenge", &p.challenge),
            ("code_challenge_method", "S256"),
            ("id_token_hint", &logout_token),
        ],
    );
    let page = other.get(&url).await;
    assert_eq!(page.status, 303, "{}", page.body);
    let q = page.redirect_params();
    assert_eq!(
        q.get("error").map(String::as_str),
        Some("invalid_request"),
        "{q:?}"
    );
    app.stop().await;
}

/// Sessions that end after 2 hours unused (12 at most), and a time just past that.
const IDLE_2H: &str = "session_max_lifetime = \"12h\"\nsession_idle_timeout = \"2h\"";
const PAST_IDLE: i64 = 2 * 3600 + 60;

/// Signing out everywhere (here: the user's new password, as the admin API, the CLI and a
/// reload do it) ends the sessions left idle too, within their absolute lifetime, and tells
/// their clients (before: only the sessions still within their idle timeout).
#[tokio::test]
async fn signing_out_everywhere_tells_the_clients_of_an_idle_session() {
    let mut listener = Listener::start(&[]).await;
    let app = spawn(&listener, IDLE_2H).await;
    let browser = Browser::new();
    let t = tokens(&app, &browser, "rp", "openid").await;
    let (_, id) = jwt_parts(s(&t, "id_token"));
    app.clock.advance(PAST_IDLE);
    assert!(!signed_in(&app, &browser).await, "idle: no longer signed in");
    let text = alice_given_a_new_password(&app);
    app.handle()
        .reload(ostiary::config::Config::from_toml_str(&text).unwrap())
        .await
        .unwrap();
    let claims = check_logout_token(&app, &listener.next().await, "rp").await;
    assert_eq!((&claims["sub"], &claims["sid"]), (&id["sub"], &id["sid"]));
    app.stop().await;
}

/// A sign-out from a browser whose session was left idle past its timeout still ends that
/// session and tells its clients, which may well still be signed in (before: the cookie named no
/// live session, so "nobody to sign out", and the other clients never heard). With a hint for
/// that session it happens at once; without one, the person is asked first, as for a live one.
#[tokio::test]
async fn signing_out_of_a_session_left_idle_still_tells_its_clients() {
    let mut listener = Listener::start(&[]).await;
    let app = spawn(&listener, IDLE_2H).await;
    let (hinted, asked) = (Browser::new(), Browser::new());
    let rp = tokens(&app, &hinted, "rp", "openid").await;
    let fc = tokens(&app, &hinted, "fc", "openid").await;
    tokens(&app, &asked, "rp", "openid").await;
    app.clock.advance(PAST_IDLE);
    assert!(!signed_in(&app, &hinted).await, "idle: no longer signed in");

    // Without a hint: asked, and nobody is told until the person says yes.
    let confirm = asked.get(&end_session_url(&app, &[])).await;
    assert_eq!(confirm.status, 200, "{}", confirm.body);
    assert!(confirm.body.contains("Sign out?"), "{}", confirm.body);
    assert!(listener.quiet(300).await, "asking tells nobody");

    // With fc's hint for that session: signed out at once; rp hears of it, fc's frame loads.
    let page = hinted
        .get(&end_session_url(&app, &[("id_token_hint", s(&fc, "id_token"))]))
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("You are signed out"), "{}", page.body);
    assert!(page.body.contains(FC_FRAME), "{}", page.body);
    let (_, id) = jwt_parts(s(&rp, "id_token"));
    let claims = check_logout_token(&app, &listener.next().await, "rp").await;
    assert_eq!((&claims["sub"], &claims["sid"]), (&id["sub"], &id["sid"]));

    // The other browser answers the question: its session ends too, and rp hears of it.
    let action = format!("{}/oauth2/v1/userlogout", app.issuer);
    let csrf = confirm.field("csrf").expect("csrf field");
    let page = asked
        .post(&action, &[("csrf", csrf.as_str()), ("logout", "yes")])
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("You are signed out"), "{}", page.body);
    let claims = check_logout_token(&app, &listener.next().await, "rp").await;
    assert_ne!(claims["sid"], id["sid"], "the other browser's session");
    app.stop().await;
}

/// Signing in again in a browser whose session was left idle ends that session and tells its
/// clients (before: a new session took the cookie, and the idle one, held by no browser, was
/// never signed out).
#[tokio::test]
async fn signing_in_again_over_a_session_left_idle_tells_its_clients() {
    let mut listener = Listener::start(&[]).await;
    let app = spawn(&listener, IDLE_2H).await;
    let (a, b) = signed_in_twice(&app, &Browser::new(), PAST_IDLE).await;
    assert_ne!(a["sid"], b["sid"], "a new session");
    let claims = check_logout_token(&app, &listener.next().await, "rp").await;
    assert_eq!((&claims["sub"], &claims["sid"]), (&a["sub"], &a["sid"]));
    app.stop().await;
}

/// Signs in at `rp` in `browser`, lets `secs` pass, and signs in at `rp` again (`prompt=login`):
/// the claims of the two ID tokens.
async fn signed_in_twice(app: &TestApp, browser: &Browser, secs: i64) -> (Value, Value) {
    let first = tokens(app, browser, "rp", "openid").await;
    app.clock.advance(secs);
    let again = tokens_with(app, browser, "rp", "openid", &[("prompt", "login")]).await;
    (
        jwt_parts(s(&first, "id_token")).1,
        jwt_parts(s(&again, "id_token")).1,
    )
}

/// The server of [`spawn`] with one client more, `bare`: consent skipped, and a refresh token
/// only with `offline_access`.
async fn spawn_with_bare(listener: &Listener) -> TestApp {
    let bare = format!(
        r#"
  [[domain.client]]
  client_id = "bare"
  secret_hash = "{}"
  consent = "skip"
  grant_types = ["authorization_code", "refresh_token"]
  redirect_uris = ["{BARE_REDIRECT}"]
  scopes = ["openid", "profile", "offline_access"]
"#,
        ostiary::crypto::secrets::SecretHash::sha256_string(&secret("bare"))
    );
    TestApp::spawn_with(Opts {
        domain_extra: format!("{}{bare}", clients(&listener.uri)),
        ..Opts::default()
    })
    .await
}

/// A code for `bare`, approved in `browser`'s session (signing in first when it has none).
async fn bare_code(app: &TestApp, browser: &Browser, scope: &str) -> Code {
    let p = pkce();
    let page = walk(
        app,
        browser,
        &[
            ("response_type", "code"),
            ("client_id", "bare"),
            ("redirect_uri", BARE_REDIRECT),
            ("scope", scope),
            ("code_challenge", &p.challenge),
            ("code_challenge_method", "S256"),
        ],
    )
    .await;
    Code {
        code: page.redirect_params()["code"].clone(),
        verifier: p.verifier,
        redirect_uri: BARE_REDIRECT.to_string(),
        client: "bare".to_string(),
    }
}

#[tokio::test]
async fn sign_out_revokes_access_tokens_outside_families_and_closes_unredeemed_codes() {
    let listener = Listener::start(&[]).await;
    let app = spawn_with_bare(&listener).await;
    let browser = Browser::new();
    // Without offline_access, no refresh token: the access token belongs to no family.
    let t = tokens(&app, &browser, "bare", "openid profile").await;
    assert!(t.get("refresh_token").is_none(), "{t}");
    let access = s(&t, "access_token");
    assert_eq!(userinfo_status(&app, access).await, 200);
    assert_eq!(app.introspect("bare", access).await["active"], true);
    // A code the session approved, not redeemed before the sign-out.
    let pending = bare_code(&app, &browser, "openid").await;

    let page = browser
        .get(&end_session_url(&app, &[("id_token_hint", s(&t, "id_token"))]))
        .await;
    assert!(page.status == 200 || page.status == 303, "{}", page.body);
    assert!(!signed_in(&app, &browser).await, "the session has ended");
    // What the session gave is gone: the access token, and the code not yet redeemed.
    assert_eq!(userinfo_status(&app, access).await, 401);
    assert_eq!(
        app.introspect("bare", access).await,
        serde_json::json!({"active": false})
    );
    let (status, body) = exchange(&app, &pending).await;
    assert_eq!((status, s(&body, "error")), (400, "invalid_grant"), "{body}");
    app.stop().await;
}

/// A sign-out that ends the session while one of its codes is being redeemed: the session has
/// ended (its first step) but the codes are not closed yet, and the redemption has used the code
/// up. The redemption asks last whether the session still stands, and then revokes what it
/// issued: with and without a refresh-token family.
#[tokio::test]
async fn a_code_redeemed_while_its_session_ends_gives_nothing_that_works() {
    let listener = Listener::start(&[]).await;
    let app = spawn_with_bare(&listener).await;
    sqlx::any::install_default_drivers();
    let mut db = sqlx::AnyConnection::connect(&app.database_url)
        .await
        .expect("connect");
    for scope in ["openid profile", "openid offline_access"] {
        let code = bare_code(&app, &Browser::new(), scope).await;
        // The sign-out's first step only: the session is marked ended, nothing else is done.
        assert_eq!(crate::harness::mark_sessions_ended(&app.database_url).await, 1);
        let (status, body) = exchange(&app, &code).await;
        assert_eq!(
            (status, s(&body, "error")),
            (400, "invalid_grant"),
            "{scope}: {body}"
        );
        assert!(body.get("access_token").is_none(), "{body}");
        // What the redemption issued and recorded is revoked: the access token's id, and the
        // family when there is one.
        let unrevoked: Vec<(String,)> = sqlx::query_as(
            "SELECT c.access_jti FROM auth_codes c WHERE c.access_jti IS NOT NULL \
             AND NOT EXISTS (SELECT 1 FROM revoked_jtis r WHERE r.jti = c.access_jti)",
        )
        .fetch_all(&mut db)
        .await
        .expect("codes");
        assert!(unrevoked.is_empty(), "{scope}: {unrevoked:?}");
        let (live_families,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM refresh_families WHERE revoked_at IS NULL")
                .fetch_one(&mut db)
                .await
                .expect("families");
        assert_eq!(live_families, 0, "{scope}");
    }
    let (issued,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM auth_codes WHERE access_jti IS NOT NULL")
        .fetch_one(&mut db)
        .await
        .expect("codes");
    assert_eq!(issued, 2, "both redemptions issued, then revoked");
    app.stop().await;
}

/// The server's configuration with alice's password changed (to "bob").
pub fn alice_given_a_new_password(app: &TestApp) -> String {
    let alice_hash = app
        .config_text
        .split("username = \"alice\"\n  password_hash = \"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_string();
    app.config_text
        .replace(&alice_hash, &crate::harness::password_hash("bob"))
}

/// A user given a new password, then disabled (here by reloads of the file; the admin API and the
/// CLI take the same path), is signed out everywhere as signing out does: each time the relying
/// party gets its back-channel logout, and what the session gave stops working.
#[tokio::test]
async fn a_user_given_a_new_password_or_disabled_is_signed_out_at_the_relying_parties() {
    let mut listener = Listener::start(&[]).await;
    let app = spawn(&listener, "").await;
    let new_password = alice_given_a_new_password(&app);
    let without_alice = app
        .config_text
        .replace("username = \"alice\"", "username = \"alice-gone\"");
    for text in [new_password, without_alice] {
        let browser = Browser::new();
        let t = tokens(&app, &browser, "rp", "openid profile").await;
        let access = s(&t, "access_token");
        let (_, id) = jwt_parts(s(&t, "id_token"));
        assert_eq!(userinfo_status(&app, access).await, 200);
        app.handle()
            .reload(ostiary::config::Config::from_toml_str(&text).unwrap())
            .await
            .unwrap();
        let claims = check_logout_token(&app, &listener.next().await, "rp").await;
        assert_eq!((&claims["sub"], &claims["sid"]), (&id["sub"], &id["sid"]));
        assert_eq!(userinfo_status(&app, access).await, 401);
        assert!(!signed_in(&app, &browser).await);
        // Back to the file as it was, for the next round.
        app.handle()
            .reload(ostiary::config::Config::from_toml_str(&app.config_text).unwrap())
            .await
            .unwrap();
    }
}

/// `username` signs in at `rp` in a new browser: the tokens, and the ID token's claims.
async fn rp_tokens_of(app: &TestApp, username: &str, password: &str) -> (Value, Value) {
    let browser = Browser::new();
    let p = pkce();
    let login = browser.get(&rp_request(app, &p)).await;
    let page = browser.sign_in(&login, username, password).await;
    let code = page.redirect_params()["code"].clone();
    let (status, t) = exchange(
        app,
        &Code {
            code,
            verifier: p.verifier,
            redirect_uri: RP_REDIRECT.to_string(),
            client: "rp".to_string(),
        },
    )
    .await;
    assert_eq!(status, 200, "{t}");
    let (_, claims) = jwt_parts(s(&t, "id_token"));
    (t, claims)
}

/// The same with the CLI (`ostiary user disable`, `ostiary user set-password`) while the server
/// runs on the same store: the logout tokens it queues are delivered by the server.
#[tokio::test]
async fn the_cli_signs_out_a_user_it_disables_or_gives_a_new_password() {
    let mut listener = Listener::start(&[]).await;
    let app = spawn(&listener, "").await;
    let config = app.write_config();
    for (name, command, stdin) in [
        ("dave", "disable", None),
        ("erin", "set-password", Some("erin-new-pass\n")),
    ] {
        let (code, out, err) = crate::cli::ostiary(
            &["user", "add", "--domain", "default", name],
            &config,
            Some(&format!("{name}-pass-123\n")),
        );
        assert_eq!(code, 0, "{out}{err}");
        let (t, claims) = rp_tokens_of(&app, name, &format!("{name}-pass-123")).await;
        let (code, out, err) =
            crate::cli::ostiary(&["user", command, "--domain", "default", name], &config, stdin);
        assert_eq!(code, 0, "{out}{err}");
        // The CLI dated the delivery by the real clock, which runs ahead of the server's test
        // clock by the seconds this test took so far: the server's clock catches up.
        app.clock.advance(60);
        let logout = check_logout_token(&app, &listener.next().await, "rp").await;
        assert_eq!(logout["sub"], claims["sub"], "{name}");
        assert_eq!(logout["sid"], claims["sid"], "{name}");
        assert_eq!(userinfo_status(&app, s(&t, "access_token")).await, 401, "{name}");
    }
}

/// The same through the admin API: a store user disabled, and another given a new password, are
/// each signed out at the relying party (a logout token with their sub and sid).
#[tokio::test]
async fn the_admin_api_signs_out_a_user_it_disables_or_gives_a_new_password() {
    let mut listener = Listener::start(&[]).await;
    let admin = crate::harness::admin_client("useradmin", "User Administrator");
    let app = TestApp::spawn_with(Opts {
        domain_extra: format!("{}{admin}", clients(&listener.uri)),
        ..Opts::default()
    })
    .await;
    let token = app.access_token("useradmin").await;
    let api = |method: &str, path: String, body: Value| {
        app.http
            .request(method.parse().unwrap(), format!("{}/admin/v1{path}", app.issuer))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    for (name, change) in [
        ("dave", ("PATCH", "", serde_json::json!({"status": "disabled"}))),
        (
            "erin",
            (
                "POST",
                "/password",
                serde_json::json!({"password": "erin-new-pass"}),
            ),
        ),
    ] {
        let created: Value = api(
            "POST",
            "/Users".into(),
            serde_json::json!({"username": name, "password": format!("{name}-pass-123")}),
        )
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        let id = s(&created, "id").to_string();
        let (t, claims) = rp_tokens_of(&app, name, &format!("{name}-pass-123")).await;
        let (method, suffix, body) = change;
        let resp = api(method, format!("/Users/{id}{suffix}"), body).await.unwrap();
        assert!(resp.status().is_success(), "{name}: {}", resp.status());
        let logout = check_logout_token(&app, &listener.next().await, "rp").await;
        assert_eq!(logout["sub"], id.as_str(), "{name}");
        assert_eq!(logout["sid"], claims["sid"], "{name}");
        assert_eq!(userinfo_status(&app, s(&t, "access_token")).await, 401, "{name}");
    }
}

#[tokio::test]
async fn a_logout_posted_from_another_site_is_posted_again_by_our_page_and_signs_out() {
    let listener = Listener::start(&[]).await;
    let app = spawn(&listener, "").await;
    let browser = Browser::new();
    let t = tokens(&app, &browser, "rp", "openid").await;
    // The RP's auto-submitted form from its own site: the browser sends no SameSite=Lax cookie.
    let cross_site = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let endpoint = format!("{}/oauth2/v1/userlogout", app.issuer);
    let form = [
        ("id_token_hint", s(&t, "id_token")),
        ("post_logout_redirect_uri", RP_AFTER),
        ("state", "st-post"),
    ];
    let resp = cross_site.post(&endpoint).form(&form).send().await.unwrap();
    // Our page posts the same request again (a same-site POST, with the cookie): no redirect,
    // so the hint never goes into a URL.
    let relay = crate::flow::read(resp).await;
    relay.relayed_to(&endpoint);
    assert_eq!(relay.field("id_token_hint").as_deref(), Some(s(&t, "id_token")));
    assert_eq!(relay.field("post_logout_redirect_uri").as_deref(), Some(RP_AFTER));
    assert_eq!(relay.field("state").as_deref(), Some("st-post"));
    assert!(
        signed_in(&app, &browser).await,
        "a POST without the cookie ends nothing itself"
    );
    // In a frame (where the page may not be shown), or with a line break in a value (which a
    // form's POST would change): the redirect to the same request by GET, as before the page.
    for (header, state) in [("iframe", "st-post"), ("document", "two\nlines")] {
        let resp = cross_site
            .post(&endpoint)
            .header("sec-fetch-dest", header)
            .form(&[
                ("id_token_hint", s(&t, "id_token")),
                ("post_logout_redirect_uri", RP_AFTER),
                ("state", state),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 303, "{header}");
        let next = url::Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap();
        assert_eq!(next.path(), "/oauth2/v1/userlogout", "{header}");
        let q: std::collections::HashMap<_, _> = next.query_pairs().into_owned().collect();
        assert_eq!(q.get("state").map(String::as_str), Some(state), "{header}");
    }
    let fields: Vec<(&str, String)> = ["id_token_hint", "post_logout_redirect_uri", "state", "relayed"]
        .into_iter()
        .map(|name| {
            (
                name,
                relay
                    .field(name)
                    .unwrap_or_else(|| panic!("no {name}: {}", relay.body)),
            )
        })
        .collect();
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // Posted again without the cookie (a browser that has none): answered, not relayed again.
    let resp = cross_site.post(&endpoint).form(&fields).send().await.unwrap();
    assert_eq!(resp.status(), 303);
    assert_eq!(
        resp.headers()["location"].to_str().unwrap(),
        format!("{RP_AFTER}?state=st-post")
    );
    assert!(
        signed_in(&app, &browser).await,
        "a POST without the cookie signed the session out"
    );
    // The browser's own POST, with its cookie: signed out, then back to the RP with state.
    let page = browser.post(&endpoint, &fields).await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(
        page.location().as_deref(),
        Some(&*format!("{RP_AFTER}?state=st-post"))
    );
    assert!(!signed_in(&app, &browser).await, "the session has ended");
    app.stop().await;
}

#[tokio::test]
async fn logout_accepts_an_expired_hint() {
    let listener = Listener::start(&[]).await;
    let app = spawn(&listener, r#"id_token_lifetime = "1m""#).await;
    let browser = Browser::new();
    let t = tokens(&app, &browser, "rp", "openid").await;
    app.clock.advance(300);
    let (_, claims) = jwt_parts(s(&t, "id_token"));
    assert!(
        claims["exp"].as_i64().expect("exp") < ostiary::clock::Clock::now(&*app.clock),
        "the hint has expired"
    );
    let page = browser
        .get(&end_session_url(
            &app,
            &[
                ("id_token_hint", s(&t, "id_token")),
                ("post_logout_redirect_uri", RP_AFTER),
            ],
        ))
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(page.location().as_deref(), Some(RP_AFTER));
    assert!(!signed_in(&app, &browser).await);
    app.stop().await;
}

#[tokio::test]
async fn logout_without_a_hint_asks_first_and_refuses_a_form_without_csrf() {
    let listener = Listener::start(&[]).await;
    let app = spawn(&listener, "").await;
    let browser = Browser::new();
    tokens(&app, &browser, "rp", "openid").await;
    let url = end_session_url(
        &app,
        &[
            ("client_id", "rp"),
            ("post_logout_redirect_uri", RP_AFTER),
            ("state", "s1"),
        ],
    );
    let confirm = browser.get(&url).await;
    assert_eq!(confirm.status, 200, "{}", confirm.body);
    assert!(confirm.body.contains("Sign out?") && confirm.body.contains("Relying Party"));
    assert!(
        confirm
            .header("content-security-policy")
            .contains("script-src 'none'")
    );
    let csrf = confirm.field("csrf").expect("csrf field");
    assert_eq!(
        confirm.field("post_logout_redirect_uri").as_deref(),
        Some(RP_AFTER)
    );
    assert!(signed_in(&app, &browser).await, "asking signs nobody out");

    // Without the CSRF token, or with another, nothing happens.
    let action = format!("{}/oauth2/v1/userlogout", app.issuer);
    for form in [
        vec![("logout", "yes"), ("client_id", "rp")],
        vec![("logout", "yes"), ("csrf", "forged"), ("client_id", "rp")],
    ] {
        let page = browser.post(&action, &form).await;
        assert_eq!(page.status, 403, "{}", page.body);
        assert!(page.location().is_none());
        assert!(page.body.contains("could not be verified"));
    }
    assert!(signed_in(&app, &browser).await);

    let page = browser
        .post(
            &action,
            &[
                ("csrf", csrf.as_str()),
                ("logout", "yes"),
                ("client_id", "rp"),
                ("post_logout_redirect_uri", RP_AFTER),
                ("state", "s1"),
            ],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(page.location().as_deref(), Some(&*format!("{RP_AFTER}?state=s1")));
    assert!(!signed_in(&app, &browser).await);

    // A hint for another session (a new sign-in) is asked about, not obeyed.
    let first = tokens(&app, &browser, "rp", "openid").await;
    let other = Browser::new();
    tokens(&app, &other, "rp", "openid").await;
    let page = other
        .get(&end_session_url(
            &app,
            &[("id_token_hint", s(&first, "id_token"))],
        ))
        .await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Sign out?"));
    assert!(signed_in(&app, &other).await);
    app.stop().await;
}

#[tokio::test]
async fn logout_never_uses_what_did_not_validate() {
    let listener = Listener::start(&[]).await;
    let app = spawn(&listener, "").await;
    let browser = Browser::new();
    let t = tokens(&app, &browser, "rp", "openid").await;
    let hint = s(&t, "id_token");
    let cases: Vec<Vec<(&str, &str)>> = vec![
        vec![
            ("id_token_hint", hint),
            ("post_logout_redirect_uri", "https://evil.example.com/"),
        ],
        vec![
            ("client_id", "rp"),
            ("post_logout_redirect_uri", "https://rp.example.com/bye/"),
        ],
        vec![("post_logout_redirect_uri", RP_AFTER)],
        vec![("client_id", "fc"), ("post_logout_redirect_uri", RP_AFTER)],
        vec![("id_token_hint", hint), ("client_id", "fc")],
        vec![
            ("id_token_hint", "not.a.jwt"),
            ("post_logout_redirect_uri", RP_AFTER),
        ],
    ];
    // RP-Initiated Logout 1.0 s4: what failed to validate is not used, but the person may still
    // sign out: the confirmation without the application's parameters, and no redirect after.
    let mut last = None;
    for params in &cases {
        let page = browser.get(&end_session_url(&app, params)).await;
        assert_eq!(page.status, 200, "{params:?}: {}", page.body);
        assert!(page.location().is_none(), "{params:?}: never redirected");
        assert!(page.header("content-type").starts_with("text/html"));
        assert!(page.body.contains(UNVERIFIED), "{params:?}: {}", page.body);
        assert!(!page.body.contains("evil.example.com"));
        for carried in ["client_id", "post_logout_redirect_uri", "state"] {
            assert!(page.field(carried).is_none(), "{params:?}: {carried} carried");
        }
        last = Some(page);
    }
    assert!(
        signed_in(&app, &browser).await,
        "a request that did not validate signs nobody out by itself"
    );
    let confirm = last.unwrap();
    let form = [
        ("csrf", confirm.field("csrf").unwrap()),
        ("logout", "yes".to_string()),
    ];
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let done = browser
        .post(&format!("{}/oauth2/v1/userlogout", app.issuer), &form)
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(done.location().is_none());
    assert!(done.body.contains("You are signed out"), "{}", done.body);
    assert!(!signed_in(&app, &browser).await);
    // Signed out already: the error page, never a redirect.
    for params in &cases {
        let page = browser.get(&end_session_url(&app, params)).await;
        assert_eq!(page.status, 400, "{params:?}: {}", page.body);
        assert!(page.location().is_none(), "{params:?}: never redirected");
    }
    app.stop().await;
}

#[tokio::test]
async fn refresh_tokens_die_with_an_expired_session_while_offline_ones_live() {
    let listener = Listener::start(&[]).await;
    let app = spawn(&listener, r#"session_max_lifetime = "10m""#).await;
    let browser = Browser::new();
    let online = tokens(&app, &browser, "rp", "openid").await;
    let offline = tokens(&app, &browser, "rp", "openid offline_access").await;
    let (status, body) = refresh(&app, "rp", s(&online, "refresh_token"), &[]).await;
    assert_eq!(status, 200, "{body}");
    let online_rt = s(&body, "refresh_token").to_string();
    app.clock.advance(11 * 60);
    let (status, body) = refresh(&app, "rp", &online_rt, &[]).await;
    assert_eq!((status, s(&body, "error")), (400, "invalid_grant"), "{body}");
    let (status, body) = refresh(&app, "rp", s(&offline, "refresh_token"), &[]).await;
    assert_eq!(status, 200, "{body}");
    app.stop().await;
}

#[tokio::test]
async fn backchannel_logout_is_retried_with_backoff() {
    let mut listener = Listener::start(&[500]).await;
    let app = spawn(&listener, "").await;
    let browser = Browser::new();
    let t = tokens(&app, &browser, "rp", "openid").await;
    let page = browser
        .get(&end_session_url(&app, &[("id_token_hint", s(&t, "id_token"))]))
        .await;
    assert_eq!(page.status, 200, "signed-out page: {}", page.body);
    assert!(page.body.contains("You are signed out"));
    check_logout_token(&app, &listener.next().await, "rp").await;
    wait_attempts(&app, 1).await;
    assert_eq!(delivery_state(&app).await, (1, false, false));

    // Not before the backoff has passed.
    let state = app.handle().state();
    assert_eq!(ostiary::app::deliver_logouts(state).await, 0);
    assert!(listener.quiet(300).await);
    app.clock.advance(31);
    ostiary::app::deliver_logouts(state).await;
    check_logout_token(&app, &listener.next().await, "rp").await;
    wait_attempts(&app, 2).await;
    assert_eq!(delivery_state(&app).await, (2, true, false));
    assert_eq!(ostiary::app::deliver_logouts(state).await, 0, "delivered once");
    assert!(listener.quiet(300).await);
    app.stop().await;
}

/// The server's clock and database URL, once it runs.
type ServerOf = Arc<Mutex<Option<(Arc<ostiary::clock::TestClock>, String)>>>;

/// What the slow listener of the next test shares: the server's clock and database once it runs,
/// whether it is armed, and what it saw.
#[derive(Clone, Default)]
struct Slow {
    app: ServerOf,
    armed: Arc<std::sync::atomic::AtomicBool>,
    /// For each POST while armed: the seconds its delivery stays claimed (claimed_until - now).
    margins: Arc<Mutex<Vec<i64>>>,
}

/// Unarmed: 500. Armed: reads the claim of the delivery being sent, then "takes" 61 s of the
/// test clock and answers 200.
async fn slow_backchannel(State(slow): State<Slow>) -> StatusCode {
    if !slow.armed.load(std::sync::atomic::Ordering::SeqCst) {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    let (clock, url) = slow.app.lock().expect("lock").clone().expect("set");
    let mut conn = sqlx::AnyConnection::connect(&url).await.expect("connect");
    let (claimed,): (i64,) = sqlx::query_as(
        "SELECT MAX(claimed_until) FROM logout_deliveries WHERE delivered_at IS NULL AND claimed_until > 0",
    )
    .fetch_one(&mut conn)
    .await
    .expect("the delivery being sent");
    slow.margins
        .lock()
        .expect("lock")
        .push(claimed - ostiary::clock::Clock::now(&*clock));
    clock.advance(61);
    StatusCode::OK
}

/// A delivery's claim is timed from when it is taken, not from the start of the outbox's run: a
/// logout sent after slow ones is still claimed while in flight, so another run (another
/// replica, or the run a sign-out starts) cannot claim and send it again. Before: the second
/// of two POSTs of 61 s each went out under a claim that had lapsed.
#[tokio::test]
async fn a_delivery_stays_claimed_while_sent_after_slow_ones() {
    sqlx::any::install_default_drivers();
    let slow = Slow::default();
    let router = axum::Router::new()
        .route("/backchannel", post(slow_backchannel))
        .with_state(slow.clone());
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let uri = format!(
        "http://127.0.0.1:{}/backchannel",
        tcp.local_addr().expect("addr").port()
    );
    tokio::spawn(async move {
        let _ = axum::serve(tcp, router).await;
    });
    let app = TestApp::spawn_with(Opts {
        domain_extra: clients(&uri),
        ..Opts::default()
    })
    .await;
    *slow.app.lock().expect("lock") = Some((app.clock.clone(), app.database_url.clone()));
    // Two sessions signed out; the first attempt of each fails (500).
    for _ in 0..2 {
        let browser = Browser::new();
        let t = tokens(&app, &browser, "rp", "openid").await;
        let page = browser
            .get(&end_session_url(&app, &[("id_token_hint", s(&t, "id_token"))]))
            .await;
        assert_eq!(page.status, 200, "{}", page.body);
    }
    let mut conn = sqlx::AnyConnection::connect(&app.database_url)
        .await
        .expect("connect");
    for i in 0.. {
        let (n,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM logout_deliveries WHERE attempts = 1 AND claimed_until = 0")
                .fetch_one(&mut conn)
                .await
                .expect("count");
        if n == 2 {
            break;
        }
        assert!(i < 200, "the first attempts never ended");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    slow.armed.store(true, std::sync::atomic::Ordering::SeqCst);
    app.clock.advance(31);
    assert_eq!(ostiary::app::deliver_logouts(app.handle().state()).await, 2);
    let margins = slow.margins.lock().expect("lock").clone();
    assert_eq!(margins.len(), 2, "{margins:?}");
    assert!(
        margins.iter().all(|m| *m > 0),
        "sent under a lapsed claim: {margins:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn backchannel_logout_survives_a_restart() {
    let mut listener = Listener::start(&[500]).await;
    let first = spawn(&listener, "").await;
    let browser = Browser::new();
    let t = tokens(&first, &browser, "rp", "openid").await;
    let page = browser
        .get(&end_session_url(&first, &[("id_token_hint", s(&t, "id_token"))]))
        .await;
    assert_eq!(page.status, 200);
    listener.next().await;
    wait_attempts(&first, 1).await;
    let (database_url, dir) = (first.database_url.clone(), first.dir.clone());
    first.stop().await;

    let second = TestApp::spawn_with(Opts {
        domain_extra: clients(&listener.uri),
        database_url: Some(database_url),
        dir: Some(dir),
        ..Opts::default()
    })
    .await;
    second.clock.advance(60);
    ostiary::app::deliver_logouts(second.handle().state()).await;
    let token = listener.next().await;
    let (_, claims) = jwt_parts(&token);
    assert_eq!(claims["aud"], "rp");
    assert_eq!(claims["sid"], jwt_parts(s(&t, "id_token")).1["sid"]);
    wait_attempts(&second, 2).await;
    assert_eq!(delivery_state(&second).await, (2, true, false));
    second.stop().await;
}

#[tokio::test]
async fn signed_out_page_loads_the_frontchannel_iframes_then_goes_back() {
    let listener = Listener::start(&[]).await;
    let app = spawn(&listener, "").await;
    let browser = Browser::new();
    let t = tokens(&app, &browser, "fc", "openid").await;
    let (_, id_claims) = jwt_parts(s(&t, "id_token"));
    let page: Page = browser
        .get(&end_session_url(
            &app,
            &[
                ("id_token_hint", s(&t, "id_token")),
                ("post_logout_redirect_uri", FC_AFTER),
                ("state", "xyz"),
            ],
        ))
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    let mut frame = url::Url::parse(FC_FRAME).expect("url");
    frame
        .query_pairs_mut()
        .append_pair("iss", &app.issuer)
        .append_pair("sid", s(&id_claims, "sid"));
    let escaped = frame.as_str().replace('&', "&#38;");
    assert!(
        page.body
            .contains(&format!("<iframe class=\"frontchannel\" src=\"{escaped}\"")),
        "{}",
        page.body
    );
    let csp = page.header("content-security-policy");
    assert!(csp.contains("frame-src https://fc.example.com;"), "{csp}");
    assert!(csp.contains("script-src 'none'"), "{csp}");
    assert!(
        page.body
            .contains(&format!("content=\"2;url={FC_AFTER}?state=xyz\"")),
        "{}",
        page.body
    );
    assert!(page.body.contains(&format!("href=\"{FC_AFTER}?state=xyz\"")));
    assert!(!signed_in(&app, &browser).await);
    app.stop().await;
}

#[tokio::test]
async fn discovery_advertises_sign_out() {
    let listener = Listener::start(&[]).await;
    let app = spawn(&listener, "").await;
    let (status, _, doc) = app
        .get_json(&format!("{}/.well-known/openid-configuration", app.base))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        doc["end_session_endpoint"],
        format!("{}/oauth2/v1/userlogout", app.issuer)
    );
    for k in [
        "frontchannel_logout_supported",
        "frontchannel_logout_session_supported",
        "backchannel_logout_supported",
        "backchannel_logout_session_supported",
    ] {
        assert_eq!(doc[k], true, "{k}");
    }
    app.stop().await;
}

/// A sign-out that fails on the way (here revoking the access token redeemed from the session's
/// code) leaves the session to be
/// signed out again, and the retry finishes it: the client is told once, the access token is
/// revoked. Before, the session was marked ended first: the retry found nothing to end, no
/// back-channel logout was ever queued, and the token stayed valid until it expired.
#[tokio::test]
async fn a_sign_out_that_fails_half_way_is_finished_by_its_retry() {
    use crate::harness::{Fault, add_fault, count_rows, drop_fault};
    let mut listener = Listener::start(&[]).await;
    let app = spawn(&listener, "").await;
    let browser = Browser::new();
    let t = tokens(&app, &browser, "rp", "openid").await;
    let url = end_session_url(&app, &[("id_token_hint", s(&t, "id_token"))]);
    // Failing before the end (revoking), then on the end itself (queueing the client's logout,
    // in the same commit as the end): each time nothing is ended, and the client is told
    // nothing of an end that did not happen.
    for (fault, table) in [
        ("BEFORE INSERT ON revoked_jtis", "revoked_jtis"),
        ("BEFORE INSERT ON logout_deliveries", "logout_deliveries"),
    ] {
        add_fault(&app.database_url, "failing", fault, Fault::Abort).await;
        let page = browser.get(&url).await;
        assert_eq!(page.status, 503, "{fault}: {}", page.body);
        assert!(
            signed_in(&app, &browser).await,
            "{fault}: not signed out half way"
        );
        drop_fault(&app.database_url, "failing", table).await;
        assert_eq!(
            count_rows(&app.database_url, "logout_deliveries").await,
            0,
            "{fault}"
        );
    }
    let page = browser.get(&url).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(!signed_in(&app, &browser).await);
    check_logout_token(&app, &listener.next().await, "rp").await;
    assert!(listener.quiet(1500).await, "told once");
    assert_eq!(userinfo_status(&app, s(&t, "access_token")).await, 401);
    app.stop().await;
}
