//! SSO sessions: idle and absolute timeouts, and the cookie's attributes on http and https
//! issuers.

use crate::flow::{Browser, Page, code_flow, code_request_url, exchange, pkce, read};
use crate::harness::{Opts, TestApp, count_rows, password};
use ostiary::clock::Clock;

async fn silent(app: &TestApp, browser: &Browser) -> Page {
    let p = pkce();
    browser
        .get(&code_request_url(
            app,
            "firstparty",
            "openid",
            &p.challenge,
            &[("prompt", "none")],
        ))
        .await
}

async fn signed_in(app: &TestApp) -> Browser {
    let browser = Browser::new();
    let p = pkce();
    let login = browser
        .get(&code_request_url(app, "firstparty", "openid", &p.challenge, &[]))
        .await;
    let page = browser.sign_in(&login, "alice", &password("alice")).await;
    assert_eq!(page.status, 303, "{}", page.body);
    browser
}

fn outcome(page: &Page) -> String {
    let q = page.redirect_params();
    q.get("code")
        .map(|_| "code".to_string())
        .or_else(|| q.get("error").cloned())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_session_ends_after_its_idle_timeout_but_use_keeps_it_alive() {
    let app = TestApp::spawn().await;
    let browser = signed_in(&app).await;
    // Used within every two hours, it lives on.
    for _ in 0..3 {
        app.clock.advance(7200 - 60);
        assert_eq!(outcome(&silent(&app, &browser).await), "code");
    }
    // Two hours without use: gone.
    app.clock.advance(7200 + 1);
    assert_eq!(outcome(&silent(&app, &browser).await), "login_required");
}

/// Sessions of this app whose recorded last use is `t`.
async fn last_seen_at(app: &TestApp, t: i64) -> i64 {
    count_rows(&app.database_url, &format!("sessions WHERE last_seen = {t}")).await
}

#[tokio::test]
async fn a_session_records_its_use_at_most_once_a_minute_and_idles_from_the_recorded_use() {
    let app = TestApp::spawn().await;
    let browser = signed_in(&app).await;
    let t0 = app.clock.now();
    assert_eq!(last_seen_at(&app, t0).await, 1);
    // Used 59 s after the recorded use: read, not written.
    app.clock.advance(59);
    assert_eq!(outcome(&silent(&app, &browser).await), "code");
    assert_eq!(
        last_seen_at(&app, t0).await,
        1,
        "a use within the minute is not written"
    );
    // A minute after it: written.
    app.clock.advance(1);
    assert_eq!(outcome(&silent(&app, &browser).await), "code");
    assert_eq!(
        last_seen_at(&app, t0 + 60).await,
        1,
        "a use a minute later is written"
    );
    // The unrecorded use at t0 + 119 does not extend the idle timeout (2 h) from the one at t0 + 60.
    app.clock.advance(59);
    assert_eq!(outcome(&silent(&app, &browser).await), "code");
    app.clock.set(t0 + 60 + 7200 - 1);
    assert_eq!(
        outcome(&silent(&app, &browser).await),
        "code",
        "the last second of the idle timeout"
    );
    app.clock.set(t0 + 60 + 7200 - 1 + 7200);
    assert_eq!(outcome(&silent(&app, &browser).await), "login_required");
}

/// A server whose sessions last at most 3 hours, and a browser signed in two hours ago that used
/// its session every hour (so only the absolute limit can end it).
async fn two_hours_into_a_three_hour_session() -> (TestApp, Browser) {
    let app = TestApp::spawn_with(Opts {
        domain_keys: "session_max_lifetime = \"3h\"".into(),
        ..Opts::default()
    })
    .await;
    let browser = signed_in(&app).await;
    for _ in 0..2 {
        app.clock.advance(3600);
        assert_eq!(outcome(&silent(&app, &browser).await), "code");
    }
    (app, browser)
}

#[tokio::test]
async fn a_session_ends_at_its_absolute_limit_however_much_it_is_used() {
    let (app, browser) = two_hours_into_a_three_hour_session().await;
    app.clock.advance(3600 + 1);
    assert_eq!(outcome(&silent(&app, &browser).await), "login_required");
}

/// A code issued in the last seconds of its session's absolute lifetime is refused once that
/// lifetime has passed, though the code itself (60 s) has not expired: the tokens never outlive
/// the sign-in that approved them.
#[tokio::test]
async fn a_code_is_refused_once_the_session_that_approved_it_reaches_its_absolute_limit() {
    let (app, browser) = two_hours_into_a_three_hour_session().await;
    app.clock.advance(3600 - 30);
    let late = code_flow(&app, &browser, "firstparty", "openid", &[]).await;
    let twin = code_flow(&app, &browser, "firstparty", "openid", &[]).await;
    let (status, body) = exchange(&app, &twin).await;
    assert_eq!(status, 200, "within the session's lifetime: {body}");
    app.clock.advance(30);
    let (status, body) = exchange(&app, &late).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_grant", "{body}");
}

fn cookie<'a>(page: &'a Page, prefix: &str) -> &'a str {
    page.headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix} cookie in {:?}", page.headers))
}

#[tokio::test]
async fn cookies_are_host_prefixed_and_secure_on_an_https_issuer_and_lax_httponly_everywhere() {
    // The same client in two https domains of one host, one with a path.
    let client = format!(
        r#"
  [[domain.client]]
  client_id = "web"
  secret_hash = "{}"
  grant_types = ["authorization_code"]
  redirect_uris = ["https://app.example.com/cb"]
  scopes = ["openid"]
"#,
        ostiary::crypto::secrets::SecretHash::sha256_string(&crate::harness::secret("web"))
    );
    let app = TestApp::spawn_with(Opts {
        domain_extra: format!(
            r#"
[[domain]]
name = "pathy"
issuer = "https://id.example.com/t2"
{client}
[[domain]]
name = "secure"
issuer = "https://id.example.com"
{client}
  [[domain.user]]
  username = "alice"
  password_hash = "{}"
"#,
            crate::harness::password_hash("alice")
        ),
        ..Opts::default()
    })
    .await;
    let p = pkce();
    let query = format!(
        "response_type=code&client_id=web&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb&scope=openid&code_challenge={}&code_challenge_method=S256",
        p.challenge
    );
    // The https domain behind a TLS-terminating proxy: requests carry its Host.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let login = read(
        http.get(format!("{}/oauth2/v1/authorize?{query}", app.base))
            .header("host", "id.example.com")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(login.status, 200, "{}", login.body);
    // RFC 6797: the https issuer asks browsers to come back over https only.
    assert_eq!(login.header("strict-transport-security"), "max-age=31536000");
    let csrf_cookie = cookie(&login, "__Host-ostiary_csrf_secure=");
    for attr in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/"] {
        assert!(csrf_cookie.contains(attr), "{attr}: {csrf_cookie}");
    }
    assert!(
        !csrf_cookie.contains("Domain="),
        "__Host- cookies carry no Domain"
    );
    let csrf = login.field("csrf").unwrap();
    let value = csrf_cookie.split(';').next().unwrap();
    let signed = read(
        http.post(format!("{}/signin", app.base))
            .header("host", "id.example.com")
            .header("cookie", value)
            .form(&[
                ("request", login.field("request").unwrap().as_str()),
                ("csrf", csrf.as_str()),
                ("username", "alice"),
                ("password", &password("alice")),
            ])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(signed.status, 303, "{}", signed.body);
    let session = cookie(&signed, "__Host-ostiary_session_secure=");
    for attr in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/"] {
        assert!(session.contains(attr), "{attr}: {session}");
    }
    assert!(
        !session.contains("Max-Age"),
        "no remember me: a browser-session cookie"
    );

    // An https issuer with a path: host-prefixed too, so with Path=/ (its name keeps it apart).
    let login = read(
        http.get(format!("{}/t2/oauth2/v1/authorize?{}", app.base, query))
            .header("host", "id.example.com")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(login.status, 200, "{}", login.body);
    let csrf_cookie = cookie(&login, "__Host-ostiary_csrf_pathy=");
    for attr in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/;"] {
        assert!(format!("{csrf_cookie};").contains(attr), "{attr}: {csrf_cookie}");
    }
    assert!(!csrf_cookie.contains("Domain="), "{csrf_cookie}");

    // On the plain-http loopback issuer: no prefix and no Secure (the browser would drop it).
    let browser = Browser::new();
    let page = browser
        .get(&code_request_url(&app, "firstparty", "openid", &p.challenge, &[]))
        .await;
    let plain = cookie(&page, "ostiary_csrf_default=");
    assert!(
        page.headers.get("strict-transport-security").is_none(),
        "not on plain http"
    );
    assert!(
        plain.contains("HttpOnly") && plain.contains("SameSite=Lax") && !plain.contains("Secure"),
        "{plain}"
    );
    let signed = browser
        .sign_in_with(&page, "alice", &password("alice"), &[("remember", "1")])
        .await;
    let remembered = cookie(&signed, "ostiary_session_default=");
    assert!(
        remembered.contains("Max-Age=43200"),
        "remember me lasts the session's 12h: {remembered}"
    );
}
