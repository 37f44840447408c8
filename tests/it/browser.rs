//! The sign-in pages in a real browser: headless Chromium (Debian's `chromium`) driven through
//! WebDriver (`chromedriver`, one per test on a port of its own choosing), sent back to a small
//! "client" listener on a loopback port that records what it receives.
//!
//! Without /usr/bin/chromedriver these tests print a notice and pass, except under CI=true,
//! where they fail: install `chromium` and `chromium-driver` (`.ci/run` does).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, Method, header};
use axum::response::Html;
use fantoccini::wd::TimeoutConfiguration;
use fantoccini::{Client, ClientBuilder, Locator, elements::Element};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::flow::{Code, Pkce, authorize_url, exchange, pkce};
use crate::harness::{Opts, TestApp, jwt_parts, password, secret, verify_with_jwks};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
/// The longest wait for the browser (page loads, elements, the callback).
const WAIT: Duration = Duration::from_secs(30);
const SESSION_COOKIE: &str = "ostiary_session_default";
const FAILED: &str = "The username or password is incorrect.";
/// The registered redirect URI of `browserapp`; any port may be used with it (RFC 8252 s7.3).
const REGISTERED_REDIRECT: &str = "http://127.0.0.1/callback";

/// A confidential client of our own, with a name that must be shown escaped and literal.
fn browserapp() -> String {
    format!(
        r#"
  [[domain.client]]
  client_id = "browserapp"
  name = "Browser <Test> App"
  secret_hash = "{}"
  grant_types = ["authorization_code", "refresh_token"]
  redirect_uris = ["{REGISTERED_REDIRECT}"]
  scopes = ["openid", "profile", "email", "orders.read", "offline_access"]
"#,
        ostiary::crypto::secrets::SecretHash::sha256_string(&secret("browserapp"))
    )
}

async fn spawn_app() -> TestApp {
    TestApp::spawn_with(Opts {
        domain_extra: browserapp(),
        ..Opts::default()
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// chromedriver and the browser

/// A running chromedriver in a process group of its own (with the browsers it starts), and the
/// temporary directory of its log and the browser profile. Dropping it kills the whole group.
struct Driver {
    child: Child,
    dir: tempfile::TempDir,
}

impl Driver {
    /// Starts chromedriver on a free port and waits until it answers; returns it and its URL. A
    /// chromedriver that exits before it names its port (seen once on a loaded machine) is
    /// started again, up to three times, its log printed.
    async fn start() -> (Driver, String) {
        for attempt in 1..=3 {
            if let Some(started) = Driver::try_start().await {
                return started;
            }
            eprintln!("chromedriver exited before naming its port (attempt {attempt} of 3)");
        }
        panic!("chromedriver exited before naming its port, three times");
    }

    /// One start: None when chromedriver exited before naming its port.
    async fn try_start() -> Option<(Driver, String)> {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("chromedriver.log");
        let mut child = Command::new(CHROMEDRIVER)
            .arg("--port=0")
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {CHROMEDRIVER}: {e}"));
        let stdout = child.stdout.take().expect("stdout");
        let driver = Driver { child, dir };
        // "ChromeDriver was started successfully on port N." (then keep draining its output).
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("started successfully on port ").nth(1)
                    && let Ok(port) = rest.trim_end_matches('.').trim().parse::<u16>()
                {
                    let _ = tx.send(port);
                }
            }
        });
        let port = match tokio::task::spawn_blocking(move || rx.recv_timeout(WAIT))
            .await
            .expect("join")
        {
            Ok(port) => port,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                eprintln!("{}", driver.log_tail());
                return None;
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                panic!("chromedriver did not start{}", driver.log_tail())
            }
        };
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + WAIT;
        loop {
            let ready = match http.get(format!("{url}/status")).send().await {
                Ok(r) => r.json::<Value>().await.is_ok_and(|v| v["value"]["ready"] == true),
                Err(_) => false,
            };
            if ready {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver does not answer on {url}{}",
                driver.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Some((driver, url))
    }

    /// The end of chromedriver's log, for failure messages.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("chromedriver.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(30)..].join("\n");
        format!("\n--- chromedriver log (end) ---\n{tail}")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.log_tail());
        }
        // The whole process group: chromedriver and the browser processes it started.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// True when this machine can run the browser tests. Without chromedriver: a failure under
/// CI=true, a loud notice otherwise.
fn browser_installed() -> bool {
    if std::path::Path::new(CHROMEDRIVER).exists() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{CHROMEDRIVER} is missing: CI must run the browser tests \
         (apt-get install chromium chromium-driver; .ci/run installs them)"
    );
    // Written to the process's stderr itself, which the test harness does not capture, so that
    // the notice shows in a passing run (once per test binary).
    static NOTICE: std::sync::Once = std::sync::Once::new();
    NOTICE.call_once(|| {
        let bar = "!".repeat(80);
        let _ = writeln!(
            std::io::stderr(),
            "\n{bar}\n\
             notice: {CHROMEDRIVER} is missing: the browser tests (browser::*) were SKIPPED.\n\
             notice: install it (Debian: apt-get install chromium chromium-driver) to run them.\n\
             {bar}\n"
        );
    });
    false
}

/// A headless Chromium with a fresh profile, driven through its own chromedriver.
pub(crate) struct Browser {
    client: Client,
    // Dropped after `client`: kills chromedriver and the browser.
    _driver: Driver,
}

impl Browser {
    /// A browser, or None (after the notice) when chromedriver is not installed.
    pub(crate) async fn start() -> Option<Browser> {
        if !browser_installed() {
            return None;
        }
        let (driver, url) = Driver::start().await;
        let profile = driver.dir.path().join("profile");
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    format!("--user-data-dir={}", profile.display()),
                ],
                "prefs": {
                    "credentials_enable_service": false,
                    "profile.password_manager_enabled": false,
                },
            },
        });
        let caps = caps.as_object().cloned().expect("capabilities object");
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&url)
            .await
            .unwrap_or_else(|e| panic!("no WebDriver session with Chromium: {e}{}", driver.log_tail()));
        client
            .update_timeouts(TimeoutConfiguration::new(
                Some(WAIT),
                Some(WAIT),
                Some(Duration::ZERO),
            ))
            .await
            .expect("timeouts");
        Some(Browser {
            client,
            _driver: driver,
        })
    }

    /// Ends the WebDriver session (the browser quits); the driver is then killed.
    pub(crate) async fn quit(self) {
        let _ = self.client.clone().close().await;
    }

    pub(crate) async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("goto {url}: {e}"));
    }

    /// Waits for an element of the current page.
    pub(crate) async fn find(&self, css: &str) -> Element {
        match self
            .client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
        {
            Ok(e) => e,
            Err(e) => panic!(
                "no {css} on {}: {e}\n{}",
                self.url().await,
                self.client.source().await.unwrap_or_default()
            ),
        }
    }

    async fn find_all(&self, css: &str) -> Vec<Element> {
        self.client.find_all(Locator::Css(css)).await.expect("find_all")
    }

    pub(crate) async fn url(&self) -> String {
        self.client
            .current_url()
            .await
            .map(|u| u.to_string())
            .unwrap_or_default()
    }

    pub(crate) async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.expect("text")
    }

    pub(crate) async fn value(&self, css: &str) -> String {
        self.find(css)
            .await
            .prop("value")
            .await
            .expect("value")
            .unwrap_or_default()
    }

    pub(crate) async fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        e.clear().await.expect("clear");
        e.send_keys(text).await.expect("send_keys");
    }

    /// Clicks, then waits until the page it was on has been replaced by another document.
    pub(crate) async fn click_to_next_page(&self, css: &str) {
        let old = self.find("html").await;
        self.find(css).await.click().await.expect("click");
        let deadline = Instant::now() + WAIT;
        loop {
            match old.tag_name().await {
                Err(e) if e.is_stale_element_reference() || e.is_no_such_element() => break,
                _ => {}
            }
            assert!(
                Instant::now() < deadline,
                "clicking {css} on {} led to no new page",
                self.url().await
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Fills in and submits the sign-in form of the current page.
    pub(crate) async fn sign_in(&self, username: &str, password: &str, remember: bool) {
        self.type_into("#username", username).await;
        self.type_into("#password", password).await;
        if remember {
            let r = self.find("#remember").await;
            r.click().await.expect("click remember");
            assert!(
                r.is_selected().await.expect("selected"),
                "#remember is not ticked"
            );
        }
        self.click_to_next_page("form button[type=submit]").await;
    }

    /// Waits for the consent page (its Allow button).
    async fn consent_page(&self) {
        self.find("button[name=decision][value=approve]").await;
    }

    /// The session cookie as the browser keeps it (cookies of 127.0.0.1 are shared by its ports).
    async fn session_cookie(&self) -> Option<fantoccini::cookies::Cookie<'static>> {
        self.client
            .get_all_cookies()
            .await
            .expect("cookies")
            .into_iter()
            .find(|c| c.name() == SESSION_COOKIE)
    }
}

// ---------------------------------------------------------------------------------------------
// the client's redirect target

/// One request the client's callback received.
#[derive(Debug)]
struct Hit {
    method: Method,
    content_type: Option<String>,
    /// The raw query string (GET) or form body (POST).
    raw: String,
    params: HashMap<String, String>,
}

/// A listener on 127.0.0.1:0 that answers `/callback` (GET or POST) with a small page and
/// records what it received.
struct Callback {
    /// `http://127.0.0.1:PORT/callback`
    uri: String,
    rx: mpsc::UnboundedReceiver<Hit>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Callback {
    fn drop(&mut self) {
        self.server.abort();
    }
}

const CALLBACK_PAGE: &str = "<!doctype html><html lang=\"en\"><title>Client</title><h1 id=\"callback\">Back at the client</h1></html>";

impl Callback {
    async fn start() -> Callback {
        let (tx, rx) = mpsc::unbounded_channel();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let handler = move |method: Method, headers: HeaderMap, uri: axum::http::Uri, body: String| {
            let tx = tx.clone();
            async move {
                let raw = if method == Method::POST {
                    body
                } else {
                    uri.query().unwrap_or("").to_string()
                };
                let params = url::form_urlencoded::parse(raw.as_bytes()).into_owned().collect();
                let content_type = headers
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let _ = tx.send(Hit {
                    method,
                    content_type,
                    raw,
                    params,
                });
                Html(CALLBACK_PAGE)
            }
        };
        let router = axum::Router::new().route("/callback", axum::routing::any(handler));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Callback {
            uri: format!("http://127.0.0.1:{port}/callback"),
            rx,
            server,
        }
    }

    /// The next request to the callback.
    async fn next(&mut self) -> Hit {
        tokio::time::timeout(WAIT, self.rx.recv())
            .await
            .expect("the browser did not come back to the client's callback in time")
            .expect("callback channel")
    }
}

// ---------------------------------------------------------------------------------------------
// the authorization request

/// An authorization request of `browserapp` back to `cb`.
struct Authorize {
    url: String,
    state: String,
    pkce: Pkce,
    redirect_uri: String,
}

fn authorize(app: &TestApp, cb: &Callback, scope: &str, extra: &[(&str, &str)]) -> Authorize {
    let p = pkce();
    let state = format!("st-{}", ostiary::crypto::secrets::random_id());
    let mut params = vec![
        ("response_type", "code"),
        ("client_id", "browserapp"),
        ("redirect_uri", cb.uri.as_str()),
        ("scope", scope),
        ("state", state.as_str()),
        ("code_challenge", p.challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    params.extend_from_slice(extra);
    Authorize {
        url: authorize_url(app, &params),
        state: state.clone(),
        pkce: p,
        redirect_uri: cb.uri.clone(),
    }
}

impl Authorize {
    /// Checks that the client got a code for this request (with state and iss) and exchanges it
    /// over HTTP; returns the token response.
    async fn exchange(&self, app: &TestApp, hit: &Hit) -> Value {
        let code = hit
            .params
            .get("code")
            .unwrap_or_else(|| panic!("no code at the callback: {hit:?}"));
        assert_eq!(hit.params.get("state"), Some(&self.state), "{hit:?}");
        assert_eq!(hit.params.get("iss"), Some(&app.issuer), "{hit:?}");
        assert!(!hit.params.contains_key("error"), "{hit:?}");
        let code = Code {
            code: code.clone(),
            verifier: self.pkce.verifier.clone(),
            redirect_uri: self.redirect_uri.clone(),
            client: "browserapp".into(),
        };
        let (status, body) = exchange(app, &code).await;
        assert_eq!(status, 200, "{body}");
        body
    }
}

fn scopes_of(token_response: &Value) -> Vec<String> {
    token_response["scope"]
        .as_str()
        .unwrap_or_else(|| panic!("no scope: {token_response}"))
        .split(' ')
        .map(str::to_string)
        .collect()
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// the tests

#[tokio::test]
async fn browser_sign_in_and_consent_gives_a_code_and_tokens() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let app = spawn_app().await;
    let mut cb = Callback::start().await;
    let req = authorize(&app, &cb, "openid profile email", &[("nonce", "n-browser")]);

    b.goto(&req.url).await;
    // The sign-in page: labelled fields, the client's name escaped and shown literally.
    b.find("label[for=username]").await;
    b.find("label[for=password]").await;
    assert_eq!(b.text("h1").await, "Sign in");
    assert_eq!(b.text("main p strong").await, "Browser <Test> App");
    assert!(b.find_all("[role=alert]").await.is_empty(), "no error yet");
    // Nothing loaded from anywhere (no scripts, styles, images, fonts), and no absolute URL in
    // the page but the form's action, which is on the issuer.
    let loaded = b
        .client
        .execute(
            "return performance.getEntriesByType('resource').map(e => e.name);",
            vec![],
        )
        .await
        .expect("script");
    assert_eq!(loaded, json!([]), "the sign-in page loaded resources");
    let action = b
        .find("form")
        .await
        .attr("action")
        .await
        .expect("attr")
        .expect("a form action");
    assert_eq!(action, format!("{}/signin", app.issuer));
    let refs = b
        .client
        .execute(
            "return Array.from(document.querySelectorAll('[src],[href]'))\
             .map(e => e.getAttribute('src') || e.getAttribute('href'));",
            vec![],
        )
        .await
        .expect("script");
    assert_eq!(refs, json!([]), "src/href attributes on the sign-in page");
    let source = b.client.source().await.expect("source").replace(&action, "");
    assert!(
        !source.contains("http://") && !source.contains("https://"),
        "an absolute URL other than the form action in the sign-in page:\n{source}"
    );

    b.sign_in("alice", &password("alice"), false).await;

    // The consent page names the client and describes each scope; openid cannot be unticked.
    b.consent_page().await;
    assert_eq!(b.text("h1").await, "Allow Browser <Test> App?");
    let listed = b.text("ul.scopes").await;
    for d in [
        "Know who you are",
        "See your name and profile",
        "See your email address",
    ] {
        assert!(listed.contains(d), "{d:?} not on the consent page: {listed}");
    }
    let mut boxes = vec![];
    for e in b.find_all("input[type=checkbox][name=scope]").await {
        assert!(e.is_selected().await.expect("selected"), "scopes start ticked");
        boxes.push(e.attr("value").await.expect("attr").expect("value"));
    }
    assert_eq!(boxes, ["profile", "email"]);
    b.find("input[type=hidden][name=scope][value=openid]").await;

    b.click_to_next_page("button[name=decision][value=approve]").await;
    let hit = cb.next().await;
    assert_eq!(hit.method, Method::GET, "{hit:?}");
    b.find("#callback").await;
    let tokens = req.exchange(&app, &hit).await;
    assert_eq!(scopes_of(&tokens), ["openid", "profile", "email"]);
    let id_token = tokens["id_token"].as_str().expect("an id_token");
    let (_, _, jwks) = app.get_json(&format!("{}/oauth2/v1/keys", app.issuer)).await;
    let claims = verify_with_jwks(id_token, &jwks, &app.issuer, "browserapp").expect("valid id_token");
    assert_eq!(claims["nonce"], "n-browser");
    let (_, at) = jwt_parts(tokens["access_token"].as_str().expect("access_token"));
    assert_eq!(claims["sub"], at["sub"]);

    b.quit().await;
    app.stop().await;
}

#[tokio::test]
async fn browser_unticked_scope_is_not_granted() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let app = spawn_app().await;
    let mut cb = Callback::start().await;
    let req = authorize(&app, &cb, "openid profile email", &[]);

    b.goto(&req.url).await;
    b.sign_in("alice", &password("alice"), false).await;
    b.consent_page().await;
    let email = b.find("input[type=checkbox][name=scope][value=email]").await;
    email.click().await.expect("untick email");
    assert!(!email.is_selected().await.expect("selected"));
    b.click_to_next_page("button[name=decision][value=approve]").await;

    let hit = cb.next().await;
    let tokens = req.exchange(&app, &hit).await;
    let scopes = scopes_of(&tokens);
    assert!(
        !scopes.iter().any(|s| s == "email"),
        "email was unticked: {scopes:?}"
    );
    assert!(scopes.iter().any(|s| s == "openid"), "{scopes:?}");
    assert!(scopes.iter().any(|s| s == "profile"), "{scopes:?}");
    let resp = app
        .get("/oauth2/v1/userinfo")
        .bearer_auth(tokens["access_token"].as_str().expect("access_token"))
        .send()
        .await
        .expect("userinfo");
    assert_eq!(resp.status(), 200);
    let info: Value = resp.json().await.expect("json");
    assert!(info.get("email").is_none(), "{info}");
    assert_eq!(info["name"], "Alice Example");

    b.quit().await;
    app.stop().await;
}

#[tokio::test]
async fn browser_deny_sends_access_denied_to_the_client() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let app = spawn_app().await;
    let mut cb = Callback::start().await;
    let req = authorize(&app, &cb, "openid profile", &[]);

    b.goto(&req.url).await;
    b.sign_in("alice", &password("alice"), false).await;
    b.consent_page().await;
    b.click_to_next_page("button[name=decision][value=deny]").await;

    let hit = cb.next().await;
    assert_eq!(hit.method, Method::GET);
    assert_eq!(
        hit.params.get("error").map(String::as_str),
        Some("access_denied"),
        "{hit:?}"
    );
    assert_eq!(hit.params.get("state"), Some(&req.state), "{hit:?}");
    assert_eq!(hit.params.get("iss"), Some(&app.issuer), "{hit:?}");
    assert!(!hit.params.contains_key("code"), "{hit:?}");
    b.find("#callback").await;

    b.quit().await;
    app.stop().await;
}

#[tokio::test]
async fn browser_wrong_password_then_right_one() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let app = spawn_app().await;
    let mut cb = Callback::start().await;
    let req = authorize(&app, &cb, "openid profile", &[]);

    b.goto(&req.url).await;
    // A wrong password, an unknown username, a disabled user: one message, the username kept,
    // the password not.
    for (username, pw) in [
        ("alice", "not-the-password"),
        ("nobody", "whatever-password"),
        ("bob", password("bob").as_str()),
    ] {
        b.sign_in(username, pw, false).await;
        assert_eq!(b.text("[role=alert]").await, FAILED, "for {username}");
        assert_eq!(b.value("#username").await, username);
        assert_eq!(b.value("#password").await, "");
        assert_eq!(b.text("h1").await, "Sign in");
    }

    b.sign_in("alice", &password("alice"), false).await;
    b.consent_page().await;
    assert!(b.find_all("[role=alert]").await.is_empty());
    b.click_to_next_page("button[name=decision][value=approve]").await;
    let hit = cb.next().await;
    let tokens = req.exchange(&app, &hit).await;
    assert!(tokens["id_token"].is_string(), "{tokens}");

    b.quit().await;
    app.stop().await;
}

#[tokio::test]
async fn browser_remember_me_keeps_a_persistent_session_and_sso_skips_the_pages() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let app = spawn_app().await;
    let mut cb = Callback::start().await;
    let req = authorize(&app, &cb, "openid profile", &[]);

    b.goto(&req.url).await;
    b.sign_in("alice", &password("alice"), true).await;
    b.consent_page().await;
    b.click_to_next_page("button[name=decision][value=approve]").await;
    let hit = cb.next().await;
    req.exchange(&app, &hit).await;

    let c = b.session_cookie().await.expect("a session cookie");
    assert_eq!(c.http_only(), Some(true));
    assert_eq!(c.same_site(), Some(cookie::SameSite::Lax));
    assert_eq!(c.path(), Some("/"));
    let expires = c
        .expires_datetime()
        .expect("a persistent cookie (with an expiry) after remember me")
        .unix_timestamp();
    let ahead = expires - now_unix();
    assert!(
        (12 * 3600 - 300..=12 * 3600 + 60).contains(&ahead),
        "the session cookie expires in {ahead}s, not about 12h"
    );

    // Signed in and consented: a second request goes straight back to the client with a code.
    let again = authorize(&app, &cb, "openid profile", &[]);
    b.goto(&again.url).await;
    let hit = cb.next().await;
    assert!(
        b.url().await.starts_with(&cb.uri),
        "the browser stopped at {}",
        b.url().await
    );
    assert!(b.find_all("#password").await.is_empty());
    again.exchange(&app, &hit).await;

    b.quit().await;
    app.stop().await;
}

#[tokio::test]
async fn browser_without_remember_me_the_session_cookie_ends_with_the_browser() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let app = spawn_app().await;
    let mut cb = Callback::start().await;
    let req = authorize(&app, &cb, "openid profile", &[]);

    b.goto(&req.url).await;
    assert!(
        !b.find("#remember").await.is_selected().await.expect("selected"),
        "remember me starts unticked"
    );
    b.sign_in("alice", &password("alice"), false).await;
    b.consent_page().await;
    b.click_to_next_page("button[name=decision][value=approve]").await;
    let hit = cb.next().await;
    req.exchange(&app, &hit).await;

    let c = b.session_cookie().await.expect("a session cookie");
    assert_eq!(c.http_only(), Some(true));
    assert_eq!(
        c.expires_datetime(),
        None,
        "without remember me the session cookie must be a browser-session cookie: {c}"
    );

    // The session still serves SSO while the browser runs.
    let again = authorize(&app, &cb, "openid profile", &[]);
    b.goto(&again.url).await;
    let hit = cb.next().await;
    again.exchange(&app, &hit).await;

    b.quit().await;
    app.stop().await;
}

#[tokio::test]
async fn browser_form_post_response_mode_posts_to_the_client() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let app = spawn_app().await;
    let mut cb = Callback::start().await;
    let req = authorize(&app, &cb, "openid profile", &[("response_mode", "form_post")]);

    b.goto(&req.url).await;
    b.sign_in("alice", &password("alice"), false).await;
    b.consent_page().await;
    b.click_to_next_page("button[name=decision][value=approve]").await;

    // The page's script submits the form by itself (its CSP allows that one script).
    let hit = cb.next().await;
    assert_eq!(hit.method, Method::POST, "{hit:?}");
    assert_eq!(
        hit.content_type.as_deref(),
        Some("application/x-www-form-urlencoded"),
        "{hit:?}"
    );
    assert!(!hit.raw.is_empty());
    b.find("#callback").await;
    assert_eq!(b.url().await, cb.uri, "the browser shows the client's page");
    let tokens = req.exchange(&app, &hit).await;
    assert!(tokens["id_token"].is_string(), "{tokens}");

    b.quit().await;
    app.stop().await;
}

/// An RP's page on another site (127.0.0.2, which is not the issuer's 127.0.0.1) whose form
/// (button `#go`) POSTs `fields` to `action`, as an RP's own site posts an end-session request
/// (RP-Initiated Logout 1.0 s2) or an authorization request (OpenID Connect Core s3.1.2.1).
async fn cross_site_form(action: &str, fields: &[(&str, &str)]) -> (String, tokio::task::JoinHandle<()>) {
    let escape = |v: &str| {
        v.replace('&', "&amp;")
            .replace('"', "&quot;")
            .replace('<', "&lt;")
    };
    let inputs: String = fields
        .iter()
        .map(|(k, v)| format!("<input type=\"hidden\" name=\"{k}\" value=\"{}\">", escape(v)))
        .collect();
    let page = format!(
        "<!doctype html><html lang=\"en\"><title>RP</title>\
         <form method=\"post\" action=\"{action}\">{inputs}\
         <button id=\"go\" type=\"submit\">Go</button></form></html>"
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.2:0")
        .await
        .expect("bind 127.0.0.2");
    let port = listener.local_addr().expect("addr").port();
    let router = axum::Router::new().route(
        "/rp",
        axum::routing::get(move || {
            let page = page.clone();
            async move { Html(page) }
        }),
    );
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (format!("http://127.0.0.2:{port}/rp"), server)
}

#[tokio::test]
async fn browser_logout_posted_from_another_site_signs_out() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let mut cb = Callback::start().await;
    let app = TestApp::spawn_with(Opts {
        domain_extra: format!("{}  post_logout_redirect_uris = [\"{}\"]\n", browserapp(), cb.uri),
        ..Opts::default()
    })
    .await;
    let req = authorize(&app, &cb, "openid", &[]);
    b.goto(&req.url).await;
    b.sign_in("alice", &password("alice"), false).await;
    b.consent_page().await;
    b.click_to_next_page("button[name=decision][value=approve]").await;
    let hit = cb.next().await;
    let tokens = req.exchange(&app, &hit).await;
    let id_token = tokens["id_token"].as_str().expect("an id_token");

    // The RP's form, submitted from its own site: the browser sends no SameSite=Lax cookie with
    // the POST; our page's script posts it again from the issuer's site, which carries it.
    let (rp, server) = cross_site_form(
        &format!("{}/oauth2/v1/userlogout", app.issuer),
        &[
            ("id_token_hint", id_token),
            ("post_logout_redirect_uri", &cb.uri),
            ("state", "st-bye"),
        ],
    )
    .await;
    b.goto(&rp).await;
    b.click_to_next_page("#go").await;
    let hit = cb.next().await;
    assert_eq!(
        hit.params.get("state").map(String::as_str),
        Some("st-bye"),
        "{hit:?}"
    );
    assert!(
        b.session_cookie().await.is_none(),
        "the session cookie was removed"
    );
    // Signed out for real: the next authorization shows the sign-in page.
    let again = authorize(&app, &cb, "openid", &[]);
    b.goto(&again.url).await;
    b.find("#password").await;
    server.abort();
    b.quit().await;
    app.stop().await;
}

/// OpenID Connect Core s3.1.2.1: an authorization request POSTed from the client's own site,
/// which the browser sends without the SameSite=Lax session cookie, still finds the session:
/// prompt=none gets a code, not login_required.
#[tokio::test]
async fn browser_authorization_posted_from_another_site_finds_the_session() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let app = spawn_app().await;
    let mut cb = Callback::start().await;
    let first = authorize(&app, &cb, "openid", &[]);
    b.goto(&first.url).await;
    b.sign_in("alice", &password("alice"), false).await;
    b.consent_page().await;
    b.click_to_next_page("button[name=decision][value=approve]").await;
    cb.next().await;

    let req = authorize(&app, &cb, "openid", &[("prompt", "none")]);
    let query = url::Url::parse(&req.url).expect("authorize URL");
    let fields: Vec<(String, String)> = query.query_pairs().into_owned().collect();
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (rp, server) = cross_site_form(&format!("{}/oauth2/v1/authorize", app.issuer), &fields).await;
    b.goto(&rp).await;
    b.click_to_next_page("#go").await;
    let hit = cb.next().await;
    assert_eq!(hit.params.get("error"), None, "{hit:?}");
    assert_eq!(hit.params.get("state"), Some(&req.state), "{hit:?}");
    let tokens = req.exchange(&app, &hit).await;
    assert!(tokens["id_token"].is_string(), "{tokens}");
    server.abort();
    b.quit().await;
    app.stop().await;
}
