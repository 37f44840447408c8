//! Walks browser sign-in as a person and a client would: a cookie-keeping HTTP "browser" that
//! does not follow redirects, the pages' hidden fields, PKCE pairs, and the code exchange.

use std::collections::HashMap;

use base64::Engine;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::harness::{Opts, TestApp, password, secret};

/// An HTTP response read whole.
#[derive(Debug)]
pub struct Page {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Page {
    /// The Location header.
    pub fn location(&self) -> Option<String> {
        self.headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    /// The query parameters of the Location header.
    pub fn redirect_params(&self) -> HashMap<String, String> {
        let loc = self
            .location()
            .unwrap_or_else(|| panic!("no Location: {} {}", self.status, self.body));
        let u = url::Url::parse(&loc).expect("absolute Location");
        u.query_pairs().into_owned().collect()
    }

    /// The value of the first `<input name="NAME" value="...">` of the page.
    pub fn field(&self, name: &str) -> Option<String> {
        let at = self.body.find(&format!("name=\"{name}\""))?;
        let rest = &self.body[at..];
        let end = rest.find('>')?;
        let tag = &rest[..end];
        let v = tag.find("value=\"")? + 7;
        let len = tag[v..].find('"')?;
        Some(unescape(&tag[v..v + len]))
    }

    /// All Set-Cookie headers.
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect()
    }
}

impl Page {
    /// Asserts that this is our relay page posting its request again to `action`: 200, no
    /// redirect, no cookie set, a form to `action` and the one script the CSP allows by hash.
    /// Returns its hidden fields.
    pub fn relayed_to(&self, action: &str) -> Vec<(String, String)> {
        assert_eq!(self.status, 200, "{}", self.body);
        assert!(self.location().is_none(), "{:?}", self.location());
        assert!(self.set_cookies().is_empty(), "the relay sets no cookie");
        let csp = self.headers["content-security-policy"].to_str().unwrap_or("");
        assert!(csp.contains("script-src 'sha256-"), "{csp}");
        assert!(
            self.body
                .contains(&format!("<form method=\"post\" action=\"{action}\">")),
            "{}",
            self.body
        );
        self.hidden_fields()
    }

    /// The (name, value) of every `<input type="hidden">` of the page, in order.
    pub fn hidden_fields(&self) -> Vec<(String, String)> {
        let attr = |tag: &str, name: &str| -> Option<String> {
            let at = tag.find(&format!(" {name}=\""))? + name.len() + 3;
            let len = tag[at..].find('"')?;
            Some(unescape(&tag[at..at + len]))
        };
        self.body
            .split("<input ")
            .skip(1)
            .filter_map(|rest| {
                let tag = format!(" {}", &rest[..rest.find('>')?]);
                if !tag.contains(" type=\"hidden\"") {
                    return None;
                }
                Some((attr(&tag, "name")?, attr(&tag, "value").unwrap_or_default()))
            })
            .collect()
    }
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#34;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The User-Agent the test browser sends (the account page names it "Firefox on Linux").
pub const USER_AGENT: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:130.0) Gecko/20100101 Firefox/130.0";

/// A browser: keeps cookies, never follows redirects.
pub struct Browser {
    pub http: reqwest::Client,
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    /// A browser with an empty cookie jar.
    pub fn new() -> Browser {
        Browser {
            http: reqwest::Client::builder()
                .cookie_store(true)
                .user_agent(USER_AGENT)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
        }
    }

    /// GETs a URL.
    pub async fn get(&self, url: &str) -> Page {
        read(self.http.get(url).send().await.expect("request")).await
    }

    /// POSTs a form.
    pub async fn post(&self, url: &str, form: &[(&str, &str)]) -> Page {
        read(self.http.post(url).form(form).send().await.expect("request")).await
    }

    /// Submits the sign-in form of a login page.
    pub async fn sign_in(&self, login: &Page, username: &str, password: &str) -> Page {
        self.sign_in_with(login, username, password, &[]).await
    }

    /// Submits the sign-in form with extra fields (`remember`).
    pub async fn sign_in_with(
        &self,
        login: &Page,
        username: &str,
        password: &str,
        extra: &[(&str, &str)],
    ) -> Page {
        let action = form_action(login);
        let request = login.field("request").expect("request field");
        let csrf = login.field("csrf").expect("csrf field");
        let mut form = vec![
            ("request", request.as_str()),
            ("csrf", csrf.as_str()),
            ("username", username),
            ("password", password),
        ];
        form.extend_from_slice(extra);
        self.post(&action, &form).await
    }

    /// Submits the consent form: `approve` or `deny`, with the scopes left ticked.
    pub async fn consent(&self, consent: &Page, decision: &str, ticked: &[&str]) -> Page {
        let action = form_action(consent);
        let request = consent.field("request").expect("request field");
        let csrf = consent.field("csrf").expect("csrf field");
        let session = consent.field("session").expect("session field");
        let mut form = vec![
            ("request", request.as_str()),
            ("csrf", csrf.as_str()),
            ("session", session.as_str()),
            ("decision", decision),
        ];
        for s in ticked {
            form.push(("scope", s));
        }
        self.post(&action, &form).await
    }
}

/// The action of the page's form.
pub fn form_action(page: &Page) -> String {
    let at = page.body.find("action=\"").expect("a form") + 8;
    let len = page.body[at..].find('"').expect("action end");
    unescape(&page.body[at..at + len])
}

/// Reads a response whole.
pub async fn read(resp: reqwest::Response) -> Page {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.text().await.expect("body");
    Page {
        status,
        headers,
        body,
    }
}

/// A PKCE verifier and its S256 challenge.
pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

/// A fresh PKCE pair.
pub fn pkce() -> Pkce {
    let verifier = format!("{}{}", ostiary::crypto::secrets::random_token(), "-._~verifier");
    let challenge =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    Pkce { verifier, challenge }
}

/// The authorization URL of the default domain with these parameters.
pub fn authorize_url(app: &TestApp, params: &[(&str, &str)]) -> String {
    let mut u = url::Url::parse(&format!("{}/oauth2/v1/authorize", app.issuer)).expect("url");
    for (k, v) in params {
        u.query_pairs_mut().append_pair(k, v);
    }
    u.to_string()
}

/// The authorization URL of a code request by `client` (its first redirect URI) for `scope`
/// with an S256 `challenge`, plus `extra` parameters.
pub fn code_request_url(
    app: &TestApp,
    client: &str,
    scope: &str,
    challenge: &str,
    extra: &[(&str, &str)],
) -> String {
    let mut params = vec![
        ("response_type", "code"),
        ("client_id", client),
        ("redirect_uri", redirect_uri_of(client)),
        ("scope", scope),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
    ];
    params.extend_from_slice(extra);
    authorize_url(app, &params)
}

/// The first registered redirect URI of a test client.
pub fn redirect_uri_of(client: &str) -> &'static str {
    match client {
        "webapp" => "https://app.example.com/cb",
        "spa" => "http://127.0.0.1/callback",
        "firstparty" => "https://first.example.com/cb",
        "legacy" => "https://legacy.example.com/cb",
        "opaque-web" => "https://app.example.com/cb",
        other => panic!("no redirect URI for {other}"),
    }
}

/// A server with `opaque-web` too: a client like `webapp` whose access tokens are opaque, stored
/// rows that what revokes by jti (a code or a refresh token used twice) must find.
pub fn with_opaque_web() -> Opts {
    Opts {
        domain_extra: format!(
            r#"
  [[domain.client]]
  client_id = "opaque-web"
  secret_hash = "{}"
  grant_types = ["authorization_code", "refresh_token"]
  redirect_uris = ["https://app.example.com/cb"]
  scopes = ["openid", "orders.read", "offline_access"]
  access_token_format = "opaque"
"#,
            ostiary::crypto::secrets::SecretHash::sha256_string(&secret("opaque-web"))
        ),
        ..Opts::default()
    }
}

/// A code obtained through the pages, with what the token request needs.
pub struct Code {
    pub code: String,
    pub verifier: String,
    pub redirect_uri: String,
    pub client: String,
}

/// Walks authorize -> sign in (unless the browser has a session) -> consent (approving every
/// scope, when asked) -> code, for `client` asking for `scope`, with extra authorize parameters.
pub async fn code_flow(
    app: &TestApp,
    browser: &Browser,
    client: &str,
    scope: &str,
    extra: &[(&str, &str)],
) -> Code {
    let p = pkce();
    let redirect_uri = redirect_uri_of(client);
    let mut params = vec![
        ("response_type", "code"),
        ("client_id", client),
        ("redirect_uri", redirect_uri),
        ("scope", scope),
        ("state", "st-123"),
        ("code_challenge", p.challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    params.extend_from_slice(extra);
    let mut page = browser.get(&authorize_url(app, &params)).await;
    if page.status == 200 && page.body.contains("name=\"password\"") {
        page = browser.sign_in(&page, "alice", &password("alice")).await;
    }
    if page.status == 303 && page.location().is_some_and(|l| l.contains("/consent?")) {
        page = browser.get(&page.location().expect("location")).await;
    }
    if page.status == 200 && page.body.contains("name=\"decision\"") {
        let scopes: Vec<&str> = scope.split(' ').collect();
        page = browser.consent(&page, "approve", &scopes).await;
    }
    assert_eq!(
        page.status, 303,
        "expected a redirect to the client: {}",
        page.body
    );
    let q = page.redirect_params();
    let code = q
        .get("code")
        .unwrap_or_else(|| panic!("no code in {:?}", page.location()))
        .clone();
    assert_eq!(q.get("state").map(String::as_str), Some("st-123"));
    assert_eq!(q.get("iss"), Some(&app.issuer));
    Code {
        code,
        verifier: p.verifier,
        redirect_uri: redirect_uri.to_string(),
        client: client.to_string(),
    }
}

/// POSTs to the token endpoint as `client` authenticates (Basic, post or none).
pub async fn token_request(app: &TestApp, client: &str, form: &[(&str, &str)]) -> reqwest::Response {
    let s = secret(client);
    match client {
        "spa" => {
            let mut f = vec![("client_id", client)];
            f.extend_from_slice(form);
            app.post("/oauth2/v1/token")
                .form(&f)
                .send()
                .await
                .expect("request")
        }
        "legacy" => {
            let mut f = vec![("client_id", client), ("client_secret", s.as_str())];
            f.extend_from_slice(form);
            app.post("/oauth2/v1/token")
                .form(&f)
                .send()
                .await
                .expect("request")
        }
        _ => app.post_basic("/oauth2/v1/token", client, form).await,
    }
}

/// Exchanges a code; returns status and body.
pub async fn exchange(app: &TestApp, code: &Code) -> (u16, Value) {
    let resp = token_request(
        app,
        &code.client,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code.code),
            ("redirect_uri", &code.redirect_uri),
            ("code_verifier", &code.verifier),
        ],
    )
    .await;
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("json"))
}

/// Refreshes; returns status and body.
pub async fn refresh(
    app: &TestApp,
    client: &str,
    refresh_token: &str,
    extra: &[(&str, &str)],
) -> (u16, Value) {
    let mut form = vec![("grant_type", "refresh_token"), ("refresh_token", refresh_token)];
    form.extend_from_slice(extra);
    let resp = token_request(app, client, &form).await;
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("json"))
}

/// A full sign-in: code flow and exchange, asserting 200; returns the token response.
pub async fn sign_in_tokens(app: &TestApp, browser: &Browser, client: &str, scope: &str) -> Value {
    let code = code_flow(app, browser, client, scope, &[]).await;
    let (status, body) = exchange(app, &code).await;
    assert_eq!(status, 200, "{body}");
    body
}

impl Page {
    /// The values of every `<input name="NAME" value="...">` of the page, in order.
    pub fn fields(&self, name: &str) -> Vec<String> {
        let needle = format!("name=\"{name}\"");
        let mut out = Vec::new();
        let mut from = 0;
        while let Some(at) = self.body[from..].find(&needle) {
            let start = from + at;
            let tag_start = self.body[..start].rfind('<').unwrap_or(0);
            let end = self.body[start..]
                .find('>')
                .map_or(self.body.len(), |e| start + e);
            let tag = &self.body[tag_start..end];
            if let Some(v) = tag.find("value=\"") {
                let v = v + 7;
                if let Some(len) = tag[v..].find('"') {
                    out.push(unescape(&tag[v..v + len]));
                }
            }
            from = end;
        }
        out
    }

    /// A header's value as text ("" when absent).
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    }

    /// True for the sign-in page.
    pub fn is_login(&self) -> bool {
        self.status == 200 && self.body.contains("name=\"password\"")
    }

    /// True for the consent page.
    pub fn is_consent(&self) -> bool {
        self.status == 200 && self.body.contains("name=\"decision\"")
    }
}

/// Walks an authorization request with exactly these parameters as a person would: signs in as
/// alice when the sign-in page shows, follows the 303 to the consent page, and approves every
/// scope offered there. Returns the last answer (to the client, or an error page).
pub async fn walk(app: &TestApp, browser: &Browser, params: &[(&str, &str)]) -> Page {
    let mut page = browser.get(&authorize_url(app, params)).await;
    if page.is_login() {
        page = browser.sign_in(&page, "alice", &password("alice")).await;
    }
    if page.status == 303 && page.location().is_some_and(|l| l.contains("/consent?")) {
        page = browser.get(&page.location().expect("location")).await;
    }
    if page.is_consent() {
        let offered = page.fields("scope");
        let ticked: Vec<&str> = offered.iter().map(String::as_str).collect();
        page = browser.consent(&page, "approve", &ticked).await;
    }
    page
}

/// Gives `browser` a session of alice (signing in through `firstparty`, which never asks for
/// consent), so that later requests find her signed in.
pub async fn signed_in_browser(app: &TestApp) -> Browser {
    let browser = Browser::new();
    code_flow(app, &browser, "firstparty", "openid", &[]).await;
    browser
}

/// Signs `username` in, in `browser` (as another tab would: a webapp request with
/// `prompt=login`); the new session replaces the browser's.
pub async fn sign_in_again(app: &TestApp, browser: &Browser, username: &str) {
    let p = pkce();
    let url = code_request_url(app, "webapp", "openid", &p.challenge, &[("prompt", "login")]);
    let login = browser.get(&url).await;
    assert!(login.is_login(), "{}", login.status);
    let page = browser.sign_in(&login, username, &password(username)).await;
    assert_eq!(page.status, 303, "{}", page.body);
}

/// The userinfo answer (200) for an access token.
pub async fn userinfo(app: &TestApp, token: &str) -> Value {
    let resp = app
        .get("/oauth2/v1/userinfo")
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}
