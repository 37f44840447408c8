//! Several replicas of one issuer on one PostgreSQL database, as behind a load balancer without
//! sticky sessions (PostgreSQL only): a flow hops replicas at every step, a revocation, a
//! sign-out, a disabled user and a key rotation on one replica hold on the others at once, and
//! the background jobs (back-channel delivery, garbage collection, key rotation) run once.

use std::sync::Arc;

use ostiary::crypto::secrets::SecretHash;
use reqwest::cookie::CookieStore;
use serde_json::{Value, json};
use sqlx::Connection;

use crate::flow::{self, Browser, Code, Page, exchange, form_action, pkce, read, refresh};
use crate::harness::{Opts, TestApp, count_rows, jwt_parts, on_postgres, password, secret, verify_with_jwks};
use crate::logout::{Listener, check_logout_token};

async fn kids(app: &TestApp) -> serde_json::Value {
    app.get("/oauth2/v1/keys")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn kid_list(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_string())
        .collect()
}

/// `n` replicas of the first one's issuer, sharing its database and key-encryption key.
async fn replicas(n: usize, opts: Opts) -> Vec<TestApp> {
    let a = TestApp::spawn_with(opts.clone()).await;
    let port: u16 = a.issuer.rsplit(':').next().unwrap().parse().unwrap();
    let mut all = vec![];
    for _ in 1..n {
        all.push(
            TestApp::spawn_with(Opts {
                database_url: Some(a.database_url.clone()),
                dir: Some(a.dir.clone()),
                issuer_port: Some(port),
                ..opts.clone()
            })
            .await,
        );
    }
    all.insert(0, a);
    all
}

/// `url` (under the shared issuer) sent to replica `r` instead, as a load balancer would.
fn on(r: &TestApp, url: &str) -> String {
    url.replacen(&r.issuer, &r.base, 1)
}

fn host(r: &TestApp) -> String {
    r.issuer.trim_start_matches("http://").to_string()
}

/// GET `url` through replica `r`.
async fn get_via(b: &Browser, r: &TestApp, url: &str) -> Page {
    read(
        b.http
            .get(on(r, url))
            .header("host", host(r))
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// POST a form to `url` through replica `r`.
async fn post_via(b: &Browser, r: &TestApp, url: &str, form: &[(&str, &str)]) -> Page {
    read(
        b.http
            .post(on(r, url))
            .header("host", host(r))
            .form(form)
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// A browser whose cookie jar the test can read.
fn browser_with_jar() -> (Browser, Arc<reqwest::cookie::Jar>) {
    let jar = Arc::new(reqwest::cookie::Jar::default());
    let http = reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .user_agent(flow::USER_AGENT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    (Browser { http }, jar)
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or_else(|| panic!("no {k} in {v}"))
}

/// The administrator clients of these tests.
fn admin_clients() -> String {
    let mut out = String::new();
    for (id, role) in [
        ("useradmin", "User Administrator"),
        ("secadmin", "Security Administrator"),
    ] {
        out.push_str(&format!(
            r#"
  [[domain.client]]
  client_id = "{id}"
  secret_hash = "{}"
  grant_types = ["client_credentials"]
  access_token_lifetime = "1d"
  admin_roles = ["{role}"]
"#,
            SecretHash::sha256_string(&secret(id))
        ));
    }
    out
}

async fn admin(r: &TestApp, method: &str, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = r
        .http
        .request(method.parse().unwrap(), format!("{}/admin/v1{path}", r.base))
        .header("host", host(r))
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn userinfo_status(r: &TestApp, access_token: &str) -> u16 {
    r.get("/oauth2/v1/userinfo")
        .bearer_auth(access_token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn two_replicas_on_one_postgres_agree() {
    if !on_postgres() {
        eprintln!("note: the replicas test runs on PostgreSQL only");
        return;
    }
    let r = replicas(2, Opts::default()).await;
    let (a, b) = (&r[0], &r[1]);
    assert_ne!(a.base, b.base);
    // The same published keys, exactly one per algorithm.
    let (ja, jb) = (kids(a).await, kids(b).await);
    assert_eq!(ja, jb);
    assert_eq!(ja["keys"].as_array().unwrap().len(), 1);
    // Tokens issued by A are active on B; a revocation on B is effective on A at once.
    for client in ["backend", "opaque"] {
        let token = a.access_token(client).await;
        assert_eq!(b.introspect(client, &token).await["active"], true, "{client}");
        let resp = b
            .post_basic("/oauth2/v1/revoke", client, &[("token", &token)])
            .await;
        assert_eq!(resp.status(), 200);
        assert_eq!(a.introspect(client, &token).await["active"], false, "{client}");
    }
    // Tokens issued by B verify with A's JWKS.
    let token = b.access_token("backend").await;
    verify_with_jwks(&token, &ja, &a.issuer, "https://api.example.com/orders").unwrap();
}

#[tokio::test]
async fn a_browser_flow_may_hop_replicas_at_every_step() {
    if !on_postgres() {
        eprintln!("note: the replicas test runs on PostgreSQL only");
        return;
    }
    let r = replicas(3, Opts::default()).await;
    let (a, b, c) = (&r[0], &r[1], &r[2]);
    let browser = Browser::new();
    let p = pkce();
    let scope = "openid profile offline_access";
    let url = flow::authorize_url(
        a,
        &[
            ("response_type", "code"),
            ("client_id", "webapp"),
            ("redirect_uri", "https://app.example.com/cb"),
            ("scope", scope),
            ("state", "st-hop"),
            ("code_challenge", &p.challenge),
            ("code_challenge_method", "S256"),
        ],
    );
    // Authorize on A: the sign-in page.
    let login = get_via(&browser, a, &url).await;
    assert!(login.is_login(), "{} {}", login.status, login.body);
    // Sign in on B.
    let request = login.field("request").unwrap();
    let csrf = login.field("csrf").unwrap();
    let signed = post_via(
        &browser,
        b,
        &form_action(&login),
        &[
            ("request", &request),
            ("csrf", &csrf),
            ("username", "alice"),
            ("password", &password("alice")),
        ],
    )
    .await;
    assert_eq!(signed.status, 303, "{}", signed.body);
    let consent_url = signed.location().unwrap();
    assert!(consent_url.contains("/consent?"), "{consent_url}");
    // The consent page on C, the decision on A.
    let consent = get_via(&browser, c, &consent_url).await;
    assert!(consent.is_consent(), "{} {}", consent.status, consent.body);
    let request = consent.field("request").unwrap();
    let csrf = consent.field("csrf").unwrap();
    let session = consent.field("session").unwrap();
    let mut form = vec![
        ("request", request.as_str()),
        ("csrf", csrf.as_str()),
        ("session", session.as_str()),
        ("decision", "approve"),
    ];
    form.extend(scope.split(' ').map(|s| ("scope", s)));
    let done = post_via(&browser, a, &form_action(&consent), &form).await;
    assert_eq!(done.status, 303, "{}", done.body);
    let q = done.redirect_params();
    assert_eq!(q.get("state").map(String::as_str), Some("st-hop"));
    assert_eq!(q.get("iss"), Some(&a.issuer));

    // The code exchanged on B.
    let code = Code {
        code: q["code"].clone(),
        verifier: p.verifier,
        redirect_uri: "https://app.example.com/cb".into(),
        client: "webapp".into(),
    };
    let (status, tokens) = exchange(b, &code).await;
    assert_eq!(status, 200, "{tokens}");
    let (_, id_claims) = jwt_parts(s(&tokens, "id_token"));

    // Userinfo on A.
    let resp = a
        .get("/oauth2/v1/userinfo")
        .bearer_auth(s(&tokens, "access_token"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let info: Value = resp.json().await.unwrap();
    assert_eq!(info["sub"], id_claims["sub"]);

    // Refresh on B, then on A with the rotated token; the spent one is refused on C.
    let (status, first) = refresh(b, "webapp", s(&tokens, "refresh_token"), &[]).await;
    assert_eq!(status, 200, "{first}");
    let (status, second) = refresh(a, "webapp", s(&first, "refresh_token"), &[]).await;
    assert_eq!(status, 200, "{second}");
    assert_ne!(s(&first, "refresh_token"), s(&second, "refresh_token"));

    // Introspection on C of the newest tokens.
    let at = c.introspect("webapp", s(&second, "access_token")).await;
    assert_eq!(
        (at["active"].as_bool(), at["sub"].clone()),
        (Some(true), id_claims["sub"].clone()),
        "{at}"
    );
    let rt = c.introspect("webapp", s(&second, "refresh_token")).await;
    assert_eq!(rt["active"], true, "{rt}");
    let spent = c.introspect("webapp", s(&first, "refresh_token")).await;
    assert_eq!(spent["active"], false, "{spent}");

    // A code is used once, whichever replica sees it again; the replay on C revokes what it
    // granted, on every replica.
    let (status, again) = exchange(c, &code).await;
    assert_eq!((status, s(&again, "error")), (400, "invalid_grant"), "{again}");
    let (status, body) = refresh(b, "webapp", s(&second, "refresh_token"), &[]).await;
    assert_eq!((status, s(&body, "error")), (400, "invalid_grant"), "{body}");
}

/// A silent authorization request (prompt=none) through replica `r` with exactly this Cookie
/// header: the client's answer.
async fn silent_via(r: &TestApp, cookies: &str) -> Page {
    let p = pkce();
    let url = flow::authorize_url(
        r,
        &[
            ("response_type", "code"),
            ("client_id", "firstparty"),
            ("redirect_uri", "https://first.example.com/cb"),
            ("scope", "openid"),
            ("prompt", "none"),
            ("code_challenge", &p.challenge),
            ("code_challenge_method", "S256"),
        ],
    );
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    read(
        http.get(on(r, &url))
            .header("host", host(r))
            .header("cookie", cookies)
            .send()
            .await
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn revocation_sign_out_and_disabling_on_one_replica_hold_on_the_other_at_once() {
    if !on_postgres() {
        eprintln!("note: the replicas test runs on PostgreSQL only");
        return;
    }
    let r = replicas(
        2,
        Opts {
            domain_extra: admin_clients(),
            ..Opts::default()
        },
    )
    .await;
    let (a, b) = (&r[0], &r[1]);

    // A refresh token revoked on A is refused on B.
    let (browser, jar) = browser_with_jar();
    let t = flow::sign_in_tokens(a, &browser, "webapp", "openid offline_access").await;
    let resp = a
        .post_basic(
            "/oauth2/v1/revoke",
            "webapp",
            &[
                ("token", s(&t, "refresh_token")),
                ("token_type_hint", "refresh_token"),
            ],
        )
        .await;
    assert_eq!(resp.status(), 200);
    let (status, body) = refresh(b, "webapp", s(&t, "refresh_token"), &[]).await;
    assert_eq!((status, s(&body, "error")), (400, "invalid_grant"), "{body}");

    // Signing out on A ends the session on B: a silent authorization with the very same cookie
    // gets login_required there, and the session's refresh and access tokens are refused on B.
    let t = flow::sign_in_tokens(a, &browser, "firstparty", "openid").await;
    let cookies = jar
        .cookies(&url::Url::parse(&a.issuer).unwrap())
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let page = silent_via(b, &cookies).await;
    assert!(
        page.redirect_params().contains_key("code"),
        "B sees the session: {page:?}"
    );
    let (status, body) = refresh(b, "firstparty", s(&t, "refresh_token"), &[]).await;
    assert_eq!(status, 200, "{body}");
    let rt = s(&body, "refresh_token").to_string();
    let mut logout = url::Url::parse(&format!("{}/oauth2/v1/userlogout", a.issuer)).unwrap();
    logout
        .query_pairs_mut()
        .append_pair("id_token_hint", s(&t, "id_token"));
    let page = get_via(&browser, a, logout.as_str()).await;
    assert_eq!(page.status, 200, "signed out on A: {}", page.body);
    let page = silent_via(b, &cookies).await;
    assert_eq!(
        page.redirect_params().get("error").map(String::as_str),
        Some("login_required"),
        "{page:?}"
    );
    let (status, body) = refresh(b, "firstparty", &rt, &[]).await;
    assert_eq!((status, s(&body, "error")), (400, "invalid_grant"), "{body}");
    assert_eq!(userinfo_status(b, s(&t, "access_token")).await, 401);

    // A user disabled through the admin API on A: B refuses the user's refresh, userinfo and
    // introspection.
    let admin_token = a.access_token("useradmin").await;
    let (status, user) = admin(
        a,
        "POST",
        "/Users",
        &admin_token,
        Some(json!({"username": "zed", "password": "zed-pass-123"})),
    )
    .await;
    assert_eq!(status, 201, "{user}");
    let zed = Browser::new();
    let p = pkce();
    let url = flow::code_request_url(a, "webapp", "openid offline_access", &p.challenge, &[]);
    let login = zed.get(&url).await;
    assert!(login.is_login());
    let mut page = zed.sign_in(&login, "zed", "zed-pass-123").await;
    if page.status == 303 && page.location().is_some_and(|l| l.contains("/consent?")) {
        page = zed.get(&page.location().unwrap()).await;
    }
    let page = zed.consent(&page, "approve", &["openid", "offline_access"]).await;
    let code = Code {
        code: page.redirect_params()["code"].clone(),
        verifier: p.verifier,
        redirect_uri: "https://app.example.com/cb".into(),
        client: "webapp".into(),
    };
    let (status, zt) = exchange(a, &code).await;
    assert_eq!(status, 200, "{zt}");
    assert_eq!(userinfo_status(b, s(&zt, "access_token")).await, 200);
    let (status, patched) = admin(
        a,
        "PATCH",
        &format!("/Users/{}", s(&user, "id")),
        &admin_token,
        Some(json!({"status": "disabled"})),
    )
    .await;
    assert_eq!(
        (status, patched["status"].as_str()),
        (200, Some("disabled")),
        "{patched}"
    );
    assert_eq!(userinfo_status(b, s(&zt, "access_token")).await, 401);
    assert_eq!(
        b.introspect("webapp", s(&zt, "access_token")).await["active"],
        false
    );
    let (status, body) = refresh(b, "webapp", s(&zt, "refresh_token"), &[]).await;
    assert_eq!((status, s(&body, "error")), (400, "invalid_grant"), "{body}");
    assert_eq!(
        b.introspect("webapp", s(&zt, "refresh_token")).await["active"],
        false
    );
}

#[tokio::test]
async fn a_key_rotated_on_one_replica_verifies_on_the_other_at_once() {
    if !on_postgres() {
        eprintln!("note: the replicas test runs on PostgreSQL only");
        return;
    }
    // Replicas re-read keys only hourly: what B knows of A's rotation comes from the re-read an
    // unknown kid triggers.
    let r = replicas(
        2,
        Opts {
            keys_extra: "publish_ahead = \"1m\"\nrefresh_interval = \"1h\"".into(),
            domain_extra: admin_clients(),
            ..Opts::default()
        },
    )
    .await;
    let (a, b) = (&r[0], &r[1]);
    let old = kid_list(&kids(a).await);
    assert_eq!(old.len(), 1);
    let sec = a.access_token("secadmin").await;

    let (status, rotated) = admin(a, "POST", "/Keys/rotate", &sec, None).await;
    assert_eq!(status, 200, "{rotated}");
    let new_kid = rotated["created"][0].as_str().unwrap().to_string();
    // A publishes it at once; B, until something names it, still publishes only the old key.
    // That is by design: the key signs only publish_ahead later, and replicas re-read keys every
    // refresh_interval, which must be shorter.
    assert!(kid_list(&kids(a).await).contains(&new_kid));
    assert_eq!(kid_list(&kids(b).await), old);

    // Past publish_ahead on A's clock, A signs with the new key; B verifies its tokens at once,
    // and publishes the key from then on.
    a.clock.advance(61);
    let token = a.access_token("backend").await;
    assert_eq!(jwt_parts(&token).0["kid"], new_kid.as_str());
    assert_eq!(b.introspect("backend", &token).await["active"], true);
    let jb = kids(b).await;
    assert!(kid_list(&jb).contains(&new_kid), "{jb}");
    verify_with_jwks(&token, &jb, &b.issuer, "https://api.example.com/orders").unwrap();

    // A second rotation, then a user's token signed with it: userinfo on B takes it at once.
    tokio::time::sleep(ostiary::keyring::MIN_REREAD).await;
    let (status, rotated) = admin(a, "POST", "/Keys/rotate", &sec, None).await;
    assert_eq!(status, 200, "{rotated}");
    let newer = rotated["created"][0].as_str().unwrap().to_string();
    a.clock.advance(61);
    let t = flow::sign_in_tokens(a, &Browser::new(), "firstparty", "openid").await;
    assert_eq!(jwt_parts(s(&t, "access_token")).0["kid"], newer.as_str());
    assert_eq!(userinfo_status(b, s(&t, "access_token")).await, 200);
    // Once its own clock passes the activation, B signs with the newest key too.
    b.clock.advance(122);
    let from_b = b.access_token("backend").await;
    assert_eq!(jwt_parts(&from_b).0["kid"], newer.as_str());
    assert_eq!(a.introspect("backend", &from_b).await["active"], true);

    // A made-up kid is refused, whichever replica sees it.
    let forged = forge_kid(&token, "no-such-kid");
    assert_eq!(b.introspect("backend", &forged).await["active"], false);
}

/// `token` with its header's kid replaced (the signature no longer matters: the kid is unknown).
fn forge_kid(token: &str, kid: &str) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let (mut header, _) = jwt_parts(token);
    header["kid"] = json!(kid);
    let rest = token.split_once('.').unwrap().1;
    format!("{}.{rest}", b64.encode(header.to_string()))
}

/// The (attempts, delivered) of the only back-channel delivery, once it is not claimed.
async fn settled_delivery(r: &TestApp) -> (i64, bool) {
    for _ in 0..100 {
        let mut conn = sqlx::AnyConnection::connect(&r.database_url).await.unwrap();
        let row: (i64, i64, i64) = sqlx::query_as(
            "SELECT attempts, claimed_until, CASE WHEN delivered_at IS NULL THEN 0 ELSE 1 END \
             FROM logout_deliveries",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        if row.1 == 0 {
            return (row.0, row.2 == 1);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the delivery stays claimed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backchannel_logout_is_delivered_once_however_many_replicas_run_the_outbox() {
    if !on_postgres() {
        eprintln!("note: the replicas test runs on PostgreSQL only");
        return;
    }
    // The first attempt fails, so the delivery waits in the outbox for its retry.
    let mut listener = Listener::start(&[500]).await;
    let r = replicas(
        3,
        Opts {
            domain_extra: crate::logout::clients(&listener.uri),
            server_extra: "logout_delivery_interval = \"1h\"".into(),
            ..Opts::default()
        },
    )
    .await;
    let browser = Browser::new();
    let t = crate::logout::tokens(&r[0], &browser, "rp", "openid").await;
    let mut logout = url::Url::parse(&format!("{}/oauth2/v1/userlogout", r[0].issuer)).unwrap();
    logout
        .query_pairs_mut()
        .append_pair("id_token_hint", s(&t, "id_token"));
    let page = browser.get(logout.as_str()).await;
    assert_eq!(page.status, 200, "{}", page.body);
    listener.next().await;
    assert_eq!(settled_delivery(&r[0]).await, (1, false));

    // Not due before its backoff, on any replica (this also warms every replica's pool, so the
    // runs below really overlap).
    for app in &r {
        assert_eq!(ostiary::app::deliver_logouts(app.handle().state()).await, 0);
    }
    for app in &r {
        app.clock.advance(31);
    }
    // Every replica sees the due delivery; of their simultaneous claims exactly one wins.
    use ostiary::clock::Clock;
    use ostiary::store::logout::LogoutStore;
    let mut due = vec![];
    for app in &r {
        let now = app.clock.now();
        let rows = app.handle().state().store.due_logouts(now, 10).await.unwrap();
        assert_eq!(rows.len(), 1);
        due.push((rows[0].id.clone(), now));
    }
    let claim = |i: usize| {
        let (id, now) = due[i].clone();
        let state = r[i].handle().state().clone();
        async move { state.store.claim_logout(&id, now, now + 60).await.unwrap() }
    };
    let (x, y, z) = tokio::join!(claim(0), claim(1), claim(2));
    assert_eq!(
        [x, y, z].iter().filter(|w| **w).count(),
        1,
        "one claim wins: {x} {y} {z}"
    );
    // The claim lapses unused (as if its replica crashed): the delivery is due again.
    for app in &r {
        app.clock.advance(61);
    }

    // Every replica runs the outbox at the same moment.
    let (x, y, z) = tokio::join!(
        ostiary::app::deliver_logouts(r[0].handle().state()),
        ostiary::app::deliver_logouts(r[1].handle().state()),
        ostiary::app::deliver_logouts(r[2].handle().state()),
    );
    assert_eq!(x + y + z, 1, "delivered by exactly one replica: {x} {y} {z}");
    let token = listener.next().await;
    let claims = check_logout_token(&r[0], &token, "rp").await;
    assert_eq!(claims["sid"], jwt_parts(s(&t, "id_token")).1["sid"]);
    assert!(listener.quiet(500).await, "a second delivery arrived");
    assert_eq!(
        settled_delivery(&r[0]).await,
        (3, true),
        "attempts: failed, lapsed claim, delivered"
    );
}

/// The holder of the job lease `name`.
async fn lease_holder(r: &TestApp, name: &str) -> String {
    let mut conn = sqlx::AnyConnection::connect(&r.database_url).await.unwrap();
    let (holder,): (String,) = sqlx::query_as("SELECT holder FROM job_leases WHERE name = $1")
        .bind(name)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    holder
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_collection_and_key_rotation_run_on_one_replica_at_a_time() {
    if !on_postgres() {
        eprintln!("note: the replicas test runs on PostgreSQL only");
        return;
    }
    // No background runs during the test: the test runs the jobs itself, on every replica.
    let r = replicas(
        3,
        Opts {
            keys_extra: "publish_ahead = \"1h\"\nrotation_interval = \"2h\"\nrefresh_interval = \"1h\""
                .into(),
            server_extra: "gc_interval = \"1h\"".into(),
            ..Opts::default()
        },
    )
    .await;
    let instances: Vec<String> = r.iter().map(|x| x.handle().state().instance.clone()).collect();
    for _ in 0..5 {
        r[1].access_token("opaque").await;
    }
    let tokens = count_rows(&r[0].database_url, "tokens").await;
    assert!(tokens >= 5);
    let keys = count_rows(&r[0].database_url, "signing_keys").await;
    // The tokens expire (30 minutes) and the key is due for rotation (after 1 hour).
    for app in &r {
        app.clock.advance(3 * 3600);
    }

    for round in 0..2 {
        let (x, y, z) = tokio::join!(
            ostiary::app::collect_garbage(r[0].handle().state(), 1000, 86400),
            ostiary::app::collect_garbage(r[1].handle().state(), 1000, 86400),
            ostiary::app::collect_garbage(r[2].handle().state(), 1000, 86400),
        );
        let ran: Vec<usize> = [x, y, z]
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_some())
            .map(|(i, _)| i)
            .collect();
        assert_eq!(
            ran.len(),
            1,
            "round {round}: one replica collects: {x:?} {y:?} {z:?}"
        );
        assert_eq!(lease_holder(&r[0], "gc").await, instances[ran[0]]);
        let removed = [x, y, z][ran[0]].unwrap();
        if round == 0 {
            assert!(removed >= 5, "{removed}");
        } else {
            assert_eq!(removed, 0);
        }
    }
    assert_eq!(count_rows(&r[0].database_url, "tokens").await, 0);

    for round in 0..2 {
        let (x, y, z) = tokio::join!(
            ostiary::app::rotate_keys(r[0].handle().state()),
            ostiary::app::rotate_keys(r[1].handle().state()),
            ostiary::app::rotate_keys(r[2].handle().state()),
        );
        let ran: Vec<usize> = [&x, &y, &z]
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_some())
            .map(|(i, _)| i)
            .collect();
        assert_eq!(
            ran.len(),
            1,
            "round {round}: one replica rotates: {x:?} {y:?} {z:?}"
        );
        assert_eq!(lease_holder(&r[0], "rotate").await, instances[ran[0]]);
        let staged = [&x, &y, &z][ran[0]].clone().unwrap();
        // Every algorithm of both domains gets exactly one successor, once.
        assert_eq!(
            staged.len() as i64,
            if round == 0 { keys } else { 0 },
            "{staged:?}"
        );
    }
    assert_eq!(count_rows(&r[0].database_url, "signing_keys").await, 2 * keys);
}

/// OpenID Connect Core s3.1.2.1: an ID token is a valid `id_token_hint` while its session lives,
/// expired or not. Its key, retired by a rotation, leaves the JWKS once the tokens it signed
/// have expired, but is kept for hints until the longest session has ended too: a replica
/// started after the garbage collector ran (so its keys are those the store kept) still takes
/// the hint.
#[tokio::test]
async fn a_hint_signed_by_a_retired_key_names_the_user_while_sessions_last() {
    let opts = Opts {
        keys_extra: "publish_ahead = \"10s\"".into(),
        ..Opts::default()
    };
    let a = TestApp::spawn_with(opts.clone()).await;
    let browser = Browser::new();
    let tokens = flow::sign_in_tokens(&a, &browser, "webapp", "openid").await;
    let id_token = s(&tokens, "id_token").to_string();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ostiary"))
        .args(["keys", "rotate", "--config"])
        .arg(a.write_config())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let jwks_url = format!("{}/oauth2/v1/keys", a.issuer);
    for _ in 0..50 {
        if a.get_json(&jwks_url).await.2["keys"].as_array().unwrap().len() == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // Past the longest token lifetime (1 h) and the margin, since the new key activated (plus
    // two minutes for the real clock that dated the CLI's key): the old key is no longer
    // published; the session (12 h, idle 2 h) lives on.
    let later = 10 + 3600 + 300 + 120;
    a.clock.advance(later);
    assert!(
        ostiary::app::collect_garbage(a.handle().state(), 1000, 86400)
            .await
            .is_some()
    );
    let (_, _, jwks) = a.get_json(&jwks_url).await;
    let (header, _) = jwt_parts(&id_token);
    assert!(
        !jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kid"] == header["kid"]),
        "the ID token's key is no longer published: {jwks}"
    );
    let port: u16 = a.issuer.rsplit(':').next().unwrap().parse().unwrap();
    let b = TestApp::spawn_with(Opts {
        database_url: Some(a.database_url.clone()),
        dir: Some(a.dir.clone()),
        issuer_port: Some(port),
        ..opts
    })
    .await;
    b.clock.advance(later);
    let p = pkce();
    let url = flow::code_request_url(
        &a,
        "webapp",
        "openid",
        &p.challenge,
        &[("prompt", "none"), ("id_token_hint", &id_token)],
    );
    let page = get_via(&browser, &b, &url).await;
    assert_eq!(page.status, 303, "{}", page.body);
    let q = page.redirect_params();
    assert!(q.contains_key("code"), "{q:?}");
}
