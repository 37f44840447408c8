//! Health, readiness, metrics, request ids, security headers, shutdown and reload.

use ostiary::config::Config;
use sqlx::Connection;

use crate::harness::{Opts, TestApp, argon_hash, config_text, count_rows};

#[tokio::test]
async fn health_readiness_and_metrics() {
    let app = TestApp::spawn().await;
    let resp = app
        .http
        .get(format!("{}/healthz", app.issuer))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = app
        .http
        .get(format!("{}/readyz", app.issuer))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    app.access_token("backend").await;
    let text = metrics_text(&app).await;
    assert!(
        text.contains("ostiary_http_requests_total{route=\"/oauth2/v1/token\",status=\"200\""),
        "{text}"
    );
    assert!(
        text.contains("ostiary_tokens_issued_total{grant_type=\"client_credentials\"}"),
        "{text}"
    );
    // Latencies are a histogram (buckets several replicas' scrapes add up), not a summary.
    assert!(
        text.contains(
            "ostiary_http_request_duration_seconds_bucket{route=\"/oauth2/v1/token\",le=\"0.005\"}"
        ),
        "{text}"
    );
    assert!(
        text.contains("ostiary_http_request_duration_seconds_bucket{route=\"/oauth2/v1/token\",le=\"+Inf\"}"),
        "{text}"
    );
    assert!(!text.contains("quantile="), "{text}");
}

/// `server.metrics_listen`: /metrics (with the health checks) moves to a listener of its own, and
/// the public listener answers it 404 as any unknown path.
#[tokio::test]
async fn metrics_can_have_a_listener_of_their_own() {
    let app = TestApp::spawn_with(Opts {
        server_extra: "metrics_listen = \"127.0.0.1:0\"".into(),
        ..Default::default()
    })
    .await;
    app.access_token("backend").await;
    let public = app
        .http
        .get(format!("{}/metrics", app.issuer))
        .send()
        .await
        .unwrap();
    assert_eq!(public.status(), 404);
    assert!(!public.text().await.unwrap().contains("ostiary_"));
    let own = format!(
        "http://{}",
        app.handle().metrics_addr.expect("the metrics listener runs")
    );
    let resp = app.http.get(format!("{own}/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("x-request-id"));
    let text = resp.text().await.unwrap();
    assert!(
        text.contains("ostiary_http_requests_total{route=\"/oauth2/v1/token\",status=\"200\""),
        "{text}"
    );
    assert!(text.contains("ostiary_store_connections "), "{text}");
    for path in ["/healthz", "/readyz"] {
        let resp = app.http.get(format!("{own}{path}")).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let resp = app
            .http
            .get(format!("{}{path}", app.issuer))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path} on the public listener");
    }
    // Nothing of the domains is served there.
    let resp = app
        .http
        .get(format!("{own}/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
}

async fn metrics_text(app: &TestApp) -> String {
    let resp = app
        .http
        .get(format!("{}/metrics", app.issuer))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap()
}

/// The `ostiary_store_connections` line of /metrics.
async fn store_connections(app: &TestApp) -> u64 {
    let text = metrics_text(app).await;
    let line = text
        .lines()
        .find(|l| l.starts_with("ostiary_store_connections "))
        .unwrap_or_else(|| panic!("no ostiary_store_connections in {text}"));
    line["ostiary_store_connections ".len()..].parse().unwrap()
}

#[tokio::test]
async fn idle_store_connections_are_closed_after_database_idle_timeout() {
    // Key refreshes (every second in these tests) and back-channel deliveries (every 5 s) would
    // keep connections in use.
    let app = TestApp::spawn_with(Opts {
        database_extra: "idle_timeout = \"1s\"".into(),
        server_extra: "logout_delivery_interval = \"1h\"".into(),
        keys_extra: "refresh_interval = \"1h\"".into(),
        ..Opts::default()
    })
    .await;
    assert!(store_connections(&app).await >= 1, "the start used the store");
    // Closed by the 5-second upkeep once a second idle: within about 6 s.
    let mut open = u64::MAX;
    for _ in 0..40 {
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        open = store_connections(&app).await;
        if open == 0 {
            break;
        }
    }
    assert_eq!(open, 0, "idle connections are closed without traffic");
    let ready = app
        .http
        .get(format!("{}/readyz", app.issuer))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200, "readiness asks the store");
    assert!(
        store_connections(&app).await >= 1,
        "and opened a connection for it"
    );
}

#[tokio::test]
async fn request_ids_and_security_headers_on_every_response() {
    let app = TestApp::spawn().await;
    for url in [
        format!("{}/.well-known/openid-configuration", app.issuer),
        format!("{}/oauth2/v1/nothing", app.issuer),
        format!("{}/healthz", app.issuer),
    ] {
        let resp = app.http.get(&url).send().await.unwrap();
        let h = resp.headers();
        assert!(h.get("x-request-id").is_some_and(|v| !v.is_empty()), "{url}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{url}");
        assert_eq!(h["x-frame-options"], "DENY", "{url}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{url}");
        assert_eq!(
            h["content-security-policy"], "default-src 'none'; frame-ancestors 'none'",
            "{url}"
        );
    }
    let resp = app
        .http
        .get(format!("{}/healthz", app.issuer))
        .header("x-request-id", "caller-chosen-id")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "caller-chosen-id");
}

#[tokio::test]
async fn graceful_shutdown_stops_the_listener() {
    let app = TestApp::spawn().await;
    let url = format!("{}/healthz", app.issuer);
    assert_eq!(app.http.get(&url).send().await.unwrap().status(), 200);
    let http = app.http.clone();
    tokio::time::timeout(std::time::Duration::from_secs(10), app.stop())
        .await
        .expect("shutdown finishes");
    assert!(
        http.get(&url).send().await.is_err(),
        "nothing listens after shutdown"
    );
}

/// An unknown path, an unknown host or a wrong method: a browser (Accept names HTML) gets an
/// HTML page, anything else the JSON error; the 405 names the allowed methods either way.
#[tokio::test]
async fn errors_outside_the_routes_are_pages_for_browsers_and_json_otherwise() {
    let app = TestApp::spawn().await;
    let html = "text/html,application/xhtml+xml,*/*;q=0.8";
    let cases = [
        ("GET", format!("{}/no/such/page", app.issuer), None, 404),
        (
            "GET",
            format!("{}/no/such/page", app.base),
            Some("unknown.example"),
            404,
        ),
        ("PUT", format!("{}/oauth2/v1/authorize", app.issuer), None, 405),
    ];
    for (method, url, host, status) in cases {
        for accept in [html, "application/json"] {
            let mut req = app
                .http
                .request(method.parse().unwrap(), &url)
                .header("accept", accept);
            if let Some(h) = host {
                req = req.header("host", h);
            }
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status(), status, "{method} {url} {accept}");
            if status == 405 {
                assert!(resp.headers().contains_key("allow"), "{method} {url} {accept}");
            }
            let content_type = resp.headers()["content-type"].to_str().unwrap().to_string();
            let body = resp.text().await.unwrap();
            if accept == html {
                assert!(content_type.starts_with("text/html"), "{url}: {content_type}");
                assert!(body.contains("<html") || body.contains("<!DOCTYPE"), "{body}");
            } else {
                assert!(
                    content_type.starts_with("application/json"),
                    "{url}: {content_type}"
                );
                assert!(body.contains("\"error\""), "{body}");
            }
        }
    }
}

/// RFC 9112 s3.2.2: a request whose target is an absolute URL is routed by that URL's host, and
/// its Host header is ignored.
#[tokio::test]
async fn an_absolute_request_target_is_routed_by_its_own_host() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::spawn().await;
    let addr = app.issuer.trim_start_matches("http://").to_string();
    let ask = |target: String, host: &'static str| {
        let addr = addr.clone();
        async move {
            let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
            let request = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
            conn.write_all(request.as_bytes()).await.unwrap();
            let mut answer = String::new();
            conn.read_to_string(&mut answer).await.unwrap();
            answer
        }
    };
    let discovery = "/.well-known/openid-configuration";
    let answer = ask(format!("{}{discovery}", app.issuer), "unknown.example").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.contains(&format!("\"issuer\":\"{}\"", app.issuer)),
        "{answer}"
    );
    let answer = ask(format!("http://unknown.example{discovery}"), "127.0.0.1").await;
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
}

#[tokio::test]
async fn a_client_that_sends_half_its_headers_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::spawn_with(Opts {
        server_extra: "header_read_timeout = \"1s\"".into(),
        ..Opts::default()
    })
    .await;
    let addr = app.issuer.trim_start_matches("http://").to_string();
    let mut half = tokio::net::TcpStream::connect(&addr).await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    let sent = std::time::Instant::now();
    let mut buf = [0u8; 512];
    // The server ends the connection once the deadline has passed (with a 408, or without a
    // word); before, it waited for the rest of the headers for ever.
    let n = tokio::time::timeout(std::time::Duration::from_secs(15), half.read(&mut buf))
        .await
        .expect("the server cut the connection off")
        .unwrap_or(0);
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(n == 0 || answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(sent.elapsed() >= std::time::Duration::from_millis(900));
    // Whole requests are answered as before, with the peer's address known to the server.
    let resp = app
        .http
        .get(format!("{}/healthz", app.issuer))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

/// A client that sends its headers and then trickles its body (or stops) is answered 408 once
/// `body_read_timeout` has passed, at the token endpoint (JSON) and on a page (HTML); before, the
/// request waited for the rest of the body for as long as the client kept the connection.
#[tokio::test]
async fn a_client_that_trickles_its_body_is_answered_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::spawn_with(Opts {
        server_extra: "body_read_timeout = \"1s\"".into(),
        ..Opts::default()
    })
    .await;
    let addr = app.issuer.trim_start_matches("http://").to_string();
    for (path, kind) in [("/oauth2/v1/token", "application/json"), ("/signin", "text/html")] {
        let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ngrant_type="
        );
        slow.write_all(head.as_bytes()).await.unwrap();
        let sent = std::time::Instant::now();
        let mut buf = vec![0u8; 8192];
        let mut n = 0;
        // One byte every 300 ms: the body never completes in time.
        let answer = loop {
            tokio::select! {
                read = slow.read(&mut buf[n..]) => {
                    n += read.unwrap();
                    let text = String::from_utf8_lossy(&buf[..n]).to_string();
                    if text.contains("\r\n\r\n") { break text; }
                }
                _ = tokio::time::sleep(std::time::Duration::from_millis(300)) => {
                    let _ = slow.write_all(b"x").await;
                    assert!(sent.elapsed() < std::time::Duration::from_secs(10), "no answer");
                }
            }
        };
        assert!(answer.starts_with("HTTP/1.1 408"), "{path}: {answer}");
        assert!(
            answer.to_lowercase().contains(&format!("content-type: {kind}")),
            "{answer}"
        );
        assert!(sent.elapsed() >= std::time::Duration::from_millis(900));
    }
}

/// Reloads `app` with the configuration `text`, which must be accepted.
async fn reload(app: &TestApp, text: &str) {
    app.handle()
        .reload(Config::from_toml_str(text).unwrap())
        .await
        .unwrap()
}

/// Why a server started with the configuration `text` did not start (it must not).
async fn start_refused(text: &str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let started = ostiary::app::start(
        Config::from_toml_str(text).unwrap(),
        listener,
        std::sync::Arc::new(ostiary::clock::SystemClock),
    )
    .await;
    format!("{:#}", started.err().expect("the server must not start"))
}

/// The status of a client_credentials grant for `client`.
async fn cc_status(app: &TestApp, client: &str) -> u16 {
    app.post_basic(
        "/oauth2/v1/token",
        client,
        &[("grant_type", "client_credentials")],
    )
    .await
    .status()
    .as_u16()
}

#[tokio::test]
async fn reload_disables_removed_clients_and_their_tokens() {
    let app = TestApp::spawn().await;
    let token = app.access_token("other").await;
    assert_eq!(app.introspect("other", &token).await["active"], true);
    // The same configuration without the client `other`, as an operator would edit it.
    let port: u16 = app.issuer.rsplit(':').next().unwrap().parse().unwrap();
    let opts = Opts {
        without_clients: vec!["other"],
        ..Opts::default()
    };
    let text = config_text(port, &app.database_url, app.dir.path(), &opts, &argon_hash());
    reload(&app, &text).await;
    assert_eq!(cc_status(&app, "other").await, 401);
    // Its token is now inactive (seen by the orders API client, which may introspect it).
    assert_eq!(app.introspect("orders-api", &token).await["active"], false);
}

/// A key-encryption key that does not open the stored keys (another replica's, a stale file)
/// writes nothing: `keys rotate` seals no key the others could not open (every restart and
/// reload would fail after it), a replica started with it does not apply its file to the shared
/// store, and check-config says so.
#[tokio::test]
async fn a_wrong_key_encryption_key_writes_nothing() {
    let app = TestApp::spawn().await;
    let port: u16 = app.issuer.rsplit(':').next().unwrap().parse().unwrap();
    let opts = Opts {
        without_clients: vec!["other"],
        ..Opts::default()
    };
    let wrong_kek = app.dir.path().join("wrong.kek");
    std::fs::write(&wrong_kek, "A".repeat(43)).unwrap();
    let text = config_text(port, &app.database_url, app.dir.path(), &opts, &argon_hash()).replace(
        &format!("kek_file = \"{}/ostiary.kek\"", app.dir.path().display()),
        &format!("kek_file = \"{}\"", wrong_kek.display()),
    );
    assert!(text.contains("wrong.kek"));
    let path = app.dir.path().join("wrong-kek.toml");
    std::fs::write(&path, &text).unwrap();
    let keys = count_rows(&app.database_url, "signing_keys").await;

    let (code, _, stderr) = crate::cli::ostiary(&["keys", "rotate"], &path, None);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("does not open the stored keys; no key was rotated"),
        "{stderr}"
    );
    assert_eq!(count_rows(&app.database_url, "signing_keys").await, keys);

    let err = start_refused(&text).await;
    assert!(err.contains("cannot decrypt the private key"), "{err}");
    let (enabled,): (i64,) = sqlx::query_as("SELECT enabled FROM clients WHERE client_id = 'other'")
        .fetch_one(&mut sqlx::AnyConnection::connect(&app.database_url).await.unwrap())
        .await
        .unwrap();
    assert_eq!(enabled, 1, "the file was not applied to the store");

    let (code, _, stderr) = crate::cli::ostiary(&["check-config"], &path, None);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("serving would refuse to start") && stderr.contains("cannot decrypt"),
        "{stderr}"
    );
    // The right key still rotates.
    let (code, out, stderr) = crate::cli::ostiary(&["keys", "rotate"], &app.write_config(), None);
    assert_eq!(code, 0, "{stderr}");
    assert!(out.contains("published now"), "{out}");
}

/// A reload whose keys cannot be loaded (here a new domain whose stored key is not sealed
/// under this server's key-encryption key) is refused before the store is reconciled: the
/// client it would remove keeps working.
#[tokio::test]
async fn a_reload_refused_for_its_keys_changes_nothing() {
    let app = TestApp::spawn().await;
    sqlx::any::install_default_drivers();
    let mut db = sqlx::AnyConnection::connect(&app.database_url).await.unwrap();
    sqlx::query(
        "INSERT INTO signing_keys (kid, domain, alg, generation, private_sealed, public_jwk, created_at, activates_at) \
         VALUES ('k-third', 'third', 'RS256', 1, 'not-sealed', '{}', 0, 0)",
    )
    .execute(&mut db)
    .await
    .unwrap();
    let port: u16 = app.issuer.rsplit(':').next().unwrap().parse().unwrap();
    let opts = Opts {
        without_clients: vec!["other"],
        ..Opts::default()
    };
    let text = config_text(port, &app.database_url, app.dir.path(), &opts, &argon_hash())
        + &format!("\n[[domain]]\nname = \"third\"\nissuer = \"http://127.0.0.1:{port}/third\"\n");
    let err = app
        .handle()
        .reload(Config::from_toml_str(&text).unwrap())
        .await
        .unwrap_err();
    assert!(!err.to_string().is_empty());
    let status = cc_status(&app, "other").await;
    assert_eq!(
        status, 200,
        "the client the refused reload would remove still works"
    );
    let (enabled,): (i64,) = sqlx::query_as("SELECT enabled FROM clients WHERE client_id = 'other'")
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(enabled, 1);
}

/// `revision`: the store remembers the highest one it was reconciled from. A reload or a start
/// with a lower one, or with none once one was recorded, is refused before anything changes, and
/// `check-config` says so; the same revision again is accepted (a restart, another replica).
#[tokio::test]
async fn a_file_older_than_the_stores_revision_is_refused_everywhere() {
    let app = TestApp::spawn().await;
    let port: u16 = app.issuer.rsplit(':').next().unwrap().parse().unwrap();
    let full = app.config_text.clone();
    let without_other = config_text(
        port,
        &app.database_url,
        app.dir.path(),
        &Opts {
            without_clients: vec!["other"],
            ..Opts::default()
        },
        &argon_hash(),
    );
    let revised = |r: i64, text: &str| format!("revision = {r}\n{text}");
    // Revision 2 removes `other`.
    reload(&app, &revised(2, &without_other)).await;
    assert_eq!(cc_status(&app, "other").await, 401);
    // An older file, and one without a revision, would bring it back: refused, nothing changes.
    for (text, says) in [
        (
            revised(1, &full),
            "this file is revision 1, but the store was reconciled from revision 2",
        ),
        (
            full.clone(),
            "this file has no revision, but the store was reconciled from revision 2",
        ),
    ] {
        let err = app
            .handle()
            .reload(Config::from_toml_str(&text).unwrap())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains(says), "{err}");
        assert_eq!(cc_status(&app, "other").await, 401, "{says}");
        // A replica started with that file does not start, and check-config refuses it.
        let err = start_refused(&text).await;
        assert!(err.contains(says), "{err}");
        let path = app.dir.path().join("older.toml");
        std::fs::write(&path, &text).unwrap();
        let (code, _, stderr) = crate::cli::ostiary(&["check-config"], &path, None);
        assert_eq!(code, 1, "{stderr}");
        assert!(
            stderr.contains("serving would refuse this file") && stderr.contains(says),
            "{stderr}"
        );
    }
    assert_eq!(cc_status(&app, "other").await, 401);
    // The same revision again is accepted (here with `other` back: a revision is the operator's
    // promise, not a checksum), and so is a higher one.
    reload(&app, &revised(2, &full)).await;
    assert_eq!(cc_status(&app, "other").await, 200);
    reload(&app, &revised(3, &without_other)).await;
    assert_eq!(cc_status(&app, "other").await, 401);
    let (stored,): (i64,) = sqlx::query_as("SELECT revision FROM config_revision")
        .fetch_one(&mut sqlx::AnyConnection::connect(&app.database_url).await.unwrap())
        .await
        .unwrap();
    assert_eq!(stored, 3);
    app.stop().await;
}

/// Two replicas reloading different revisions at once: the store ends with the newer file's
/// content every time (the older one either finishes first or is refused), never with the newer
/// revision recorded over the older one's content.
#[tokio::test]
async fn replicas_reloading_two_revisions_at_once_end_with_the_newer_file() {
    let a = TestApp::spawn().await;
    let port: u16 = a.issuer.rsplit(':').next().unwrap().parse().unwrap();
    let b = TestApp::spawn_with(Opts {
        database_url: Some(a.database_url.clone()),
        dir: Some(a.dir.clone()),
        issuer_port: Some(port),
        ..Opts::default()
    })
    .await;
    let without_other = config_text(
        port,
        &a.database_url,
        a.dir.path(),
        &Opts {
            without_clients: vec!["other"],
            ..Opts::default()
        },
        &argon_hash(),
    );
    let mut db = sqlx::AnyConnection::connect(&a.database_url).await.unwrap();
    for round in 0..12_i64 {
        let (older, newer) = (2 * round + 1, 2 * round + 2);
        let older_text = format!("revision = {older}\n{}", a.config_text);
        let newer_text = format!("revision = {newer}\n{without_other}");
        // Which replica gets which file alternates, and so does who is asked first.
        let (x, y) = if round % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let (_, newer_result) = tokio::join!(
            x.handle().reload(Config::from_toml_str(&older_text).unwrap()),
            y.handle().reload(Config::from_toml_str(&newer_text).unwrap()),
        );
        newer_result.unwrap();
        let (revision,): (i64,) = sqlx::query_as("SELECT revision FROM config_revision")
            .fetch_one(&mut db)
            .await
            .unwrap();
        let (enabled,): (i64,) = sqlx::query_as("SELECT enabled FROM clients WHERE client_id = 'other'")
            .fetch_one(&mut db)
            .await
            .unwrap();
        assert_eq!((revision, enabled), (newer, 0), "round {round}");
    }
    b.stop().await;
    a.stop().await;
}

/// The reconcile lease of a replica that died mid-reconcile is outlived: a reload waits until it
/// lapses (here in 2 s), then reconciles.
#[tokio::test]
async fn a_reload_waits_out_the_reconcile_lease_of_a_replica_that_died() {
    use ostiary::clock::Clock;
    let app = TestApp::spawn().await;
    let mut db = sqlx::AnyConnection::connect(&app.database_url).await.unwrap();
    let taken = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE job_leases SET holder = 'a replica that died', expires_at = {} WHERE name = 'reconcile'",
        app.clock.now() + 1
    )))
    .execute(&mut db)
    .await
    .unwrap();
    assert_eq!(taken.rows_affected(), 1, "the start's lease row");
    let started = std::time::Instant::now();
    reload(&app, &format!("revision = 5\n{}", app.config_text)).await;
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(1),
        "the reload waited for the lease: {:?}",
        started.elapsed()
    );
    let (revision,): (i64,) = sqlx::query_as("SELECT revision FROM config_revision")
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(revision, 5);
    app.stop().await;
}

/// The declaration of the user carol in the harness's configuration (to remove, or to copy
/// under another name).
fn carol_block(app: &TestApp) -> String {
    app.config_text
        .split("  [[domain.user]]\n  username = \"carol\"")
        .nth(1)
        .and_then(|rest| rest.split("\n\n").next())
        .map(|b| format!("  [[domain.user]]\n  username = \"carol\"{b}\n"))
        .expect("carol is declared")
}

/// Users across reloads: one removed from the file is disabled, and declared again, unchanged,
/// is active again; a declared user whose name belongs to a user kept in the store (the CLI's,
/// the admin API's) does not take that user over: the store user is left as it was.
#[tokio::test]
async fn reload_restores_a_declared_user_and_never_takes_over_a_store_user() {
    use ostiary::store::{DirectoryStore, UserRow};
    let app = TestApp::spawn().await;
    let store = &app.handle().state().store;
    let carol_block = carol_block(&app);
    let status = |name: &'static str| async move {
        let u = store.find_user("default", name).await.unwrap().unwrap();
        (u.status, u.source, u.password_hash)
    };
    let app = &app;
    reload(app, &app.config_text.replace(&carol_block, "")).await;
    assert_eq!(status("carol").await.0, "disabled");
    reload(app, &app.config_text).await;
    assert_eq!(status("carol").await.0, "active", "declared again: active again");

    let dave = UserRow {
        id: "u-dave".into(),
        domain: "default".into(),
        username: "dave".into(),
        password_hash: Some("store-hash".into()),
        status: "active".into(),
        claims: "{}".into(),
        source: "store".into(),
        config_hash: None,
        created_at: 0,
        updated_at: 0,
    };
    store.insert_user(&dave).await.unwrap();
    let declared = carol_block.replace("carol", "dave");
    let domains = ostiary::domain::Domains::from_config(
        &Config::from_toml_str(
            &app.config_text
                .replace(&carol_block, &format!("{carol_block}{declared}")),
        )
        .unwrap(),
    )
    .unwrap();
    let plan = ostiary::reconcile::plan(store, &domains).await.unwrap();
    assert_eq!(plan.changes.len(), 1, "{:?}", plan.changes);
    assert_eq!(plan.changes[0].action, ostiary::reconcile::Action::Conflict);
    assert!(plan.summary().contains("1 in conflict"), "{}", plan.summary());
    reload(
        app,
        &app.config_text
            .replace(&carol_block, &format!("{carol_block}{declared}")),
    )
    .await;
    assert_eq!(
        status("dave").await,
        (
            "active".to_string(),
            "store".to_string(),
            Some("store-hash".to_string())
        )
    );
}

/// A user kept in the store that takes a declared name while a reload applies its plan (the admin
/// API creating it at that moment, injected as a trigger on a write the reconcile makes before the
/// user's) is not taken over: it keeps its id, password and source, and the reload goes on. On
/// SQLite the user is also created inside the user's own write, which the write itself refuses
/// (PostgreSQL refuses a row its own statement's trigger inserted, which no other client can do).
#[tokio::test]
async fn a_store_user_created_mid_reconcile_is_not_taken_over() {
    use crate::harness::{Fault, add_fault, drop_fault};
    use ostiary::store::DirectoryStore;
    let app = TestApp::spawn().await;
    let store = &app.handle().state().store;
    let carol_block = carol_block(&app);
    let newcomer = format!(
        "\n  [[domain.client]]\n  client_id = \"newcomer\"\n  secret_hash = \"{}\"\n  grant_types = [\"client_credentials\"]\n",
        ostiary::crypto::secrets::SecretHash::sha256_string(&crate::harness::secret("newcomer"))
    );
    const CREATE: &str = "INSERT INTO users (id, domain, username, password_hash, status, claims, source, config_hash, created_at, updated_at) \
         SELECT 'u-' || NEW.domain || '-store', NEW.domain, 'USERNAME', 'store-hash', 'active', '{}', 'store', NULL, 0, 0";
    let mut cases = vec![(
        "dave",
        "BEFORE INSERT ON clients",
        "WHERE NEW.client_id = 'newcomer'",
        "clients",
    )];
    if !app.database_url.starts_with("postgres") {
        cases.push((
            "erin",
            "BEFORE INSERT ON users",
            "WHERE NEW.source = 'config' AND NEW.username = 'erin'",
            "users",
        ));
    }
    for (name, when, only, table) in cases {
        let sql = format!(
            "{} {only}",
            CREATE
                .replace("USERNAME", name)
                .replace("-store", &format!("-{name}"))
        );
        add_fault(&app.database_url, "created_now", when, Fault::Run(sql)).await;
        let declared = carol_block.replace("carol", name);
        let extra = if name == "dave" { newcomer.as_str() } else { "" };
        let text = app
            .config_text
            .replace(&carol_block, &format!("{carol_block}{declared}{extra}"));
        reload(&app, &text).await;
        drop_fault(&app.database_url, "created_now", table).await;
        let user = store.find_user("default", name).await.unwrap().unwrap();
        assert_eq!(
            (
                user.id.as_str(),
                user.source.as_str(),
                user.password_hash.as_deref()
            ),
            (format!("u-default-{name}").as_str(), "store", Some("store-hash")),
            "{name}"
        );
        // The next reload sees the conflict, as when the store user came first.
        let domains = ostiary::domain::Domains::from_config(&Config::from_toml_str(&text).unwrap()).unwrap();
        let plan = ostiary::reconcile::plan(store, &domains).await.unwrap();
        assert_eq!(plan.changes.len(), 1, "{name}: {:?}", plan.changes);
        assert_eq!(plan.changes[0].action, ostiary::reconcile::Action::Conflict);
    }
}

/// A reconcile longer than its lease keeps it (renewed every third of its length), so another
/// replica cannot start one beside it; one whose lease is taken from it stops with an error.
#[tokio::test]
async fn a_long_reconcile_keeps_its_lease_and_stops_when_it_loses_it() {
    use ostiary::clock::Clock;
    use ostiary::reconcile::hold_while;
    use ostiary::store::{MaintenanceStore, SqlStore};
    use std::time::Duration;
    let app = TestApp::spawn().await;
    let store = SqlStore::connect(&app.database_url, 2).await.unwrap();
    let now = app.clock.now();
    assert!(store.acquire_lease("test-lease", "a", now, 3).await.unwrap());
    let work = async {
        tokio::time::sleep(Duration::from_millis(4500)).await;
        Ok("done")
    };
    let other = async {
        tokio::time::sleep(Duration::from_millis(3500)).await;
        // Past the lease's first end (now + 3): taken unless it was renewed.
        store.acquire_lease("test-lease", "b", now + 4, 3).await.unwrap()
    };
    let (done, taken) = tokio::join!(hold_while(&store, "test-lease", "a", 3, now, work), other);
    assert_eq!(done.unwrap(), "done");
    assert!(
        !taken,
        "the lease was renewed: another holder cannot take it after its first end"
    );
    // Taken from it (as after a stall longer than the lease): the work stops, with an error.
    let work = async {
        tokio::time::sleep(Duration::from_secs(30)).await;
        Ok(())
    };
    let steal = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            store
                .acquire_lease("test-lease", "b", now + 100, 3)
                .await
                .unwrap()
        );
    };
    let started = std::time::Instant::now();
    let (held, ()) = tokio::join!(hold_while(&store, "test-lease", "a", 3, now + 100, work), steal);
    let err = held.unwrap_err().to_string();
    assert!(err.contains("taken by another holder"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// `[server]` stays as the process started: a reload that changes it applies the domains only,
/// and checks them against the running server (an mTLS alias needs client certificates, which
/// the running server does not read, so that reload is refused).
#[tokio::test]
async fn a_reload_keeps_the_start_server_settings_and_checks_the_domains_against_them() {
    let app = TestApp::spawn().await;
    let port: u16 = app.issuer.rsplit(':').next().unwrap().parse().unwrap();
    let text = |opts: Opts| config_text(port, &app.database_url, app.dir.path(), &opts, &argon_hash());
    let err = app
        .handle()
        .reload(
            Config::from_toml_str(&text(Opts {
                server_extra:
                    "client_certificate_header = \"x-client-cert\"\ntrusted_proxies = [\"127.0.0.1\"]".into(),
                domain_keys: "mtls_issuer = \"https://mtls.example.com\"".into(),
                ..Opts::default()
            }))
            .unwrap(),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("mtls_issuer"), "{err}");
    let (_, _, discovery) = app
        .get_json(&format!("{}/.well-known/openid-configuration", app.issuer))
        .await;
    assert!(discovery.get("mtls_endpoint_aliases").is_none(), "{discovery}");
    // A smaller body limit in the file (4096 at start): the reload succeeds, and the limit stays.
    reload(
        &app,
        &text(Opts::default()).replace("max_body_bytes = 4096", "max_body_bytes = 1024"),
    )
    .await;
    let padding = "x".repeat(2000);
    let resp = app
        .post_basic(
            "/oauth2/v1/token",
            "other",
            &[("grant_type", "client_credentials"), ("padding", &padding)],
        )
        .await;
    assert_eq!(resp.status(), 200);
}

/// A scope removed from a client by a reload is not issued again from an earlier grant: neither
/// at a refresh nor from a code approved before the reload.
#[tokio::test]
async fn a_scope_removed_by_a_reload_is_not_issued_from_earlier_grants() {
    let app = TestApp::spawn().await;
    let browser = crate::flow::Browser::new();
    let tokens =
        crate::flow::sign_in_tokens(&app, &browser, "webapp", "openid orders.read offline_access").await;
    assert_eq!(tokens["scope"], "openid orders.read offline_access");
    let pending = crate::flow::code_flow(&app, &browser, "webapp", "openid orders.read", &[]).await;
    let without = app.config_text.replace(
        r#""offline_access", "orders.read", "orders.write""#,
        r#""offline_access", "orders.write""#,
    );
    assert_ne!(without, app.config_text);
    reload(&app, &without).await;
    let refresh_token = tokens["refresh_token"].as_str().unwrap();
    // Asked for alone by name, or through its resource server: invalid_scope / invalid_target,
    // with the refresh token left as it was (used up, the client's next refresh would be a
    // replay and revoke the family).
    for (extra, error) in [
        (("scope", "orders.read"), "invalid_scope"),
        (("resource", "https://api.example.com/orders"), "invalid_target"),
    ] {
        let (status, body) = crate::flow::refresh(&app, "webapp", refresh_token, &[extra]).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some(error)),
            "{extra:?}: {body}"
        );
    }
    let (status, body) = crate::flow::refresh(&app, "webapp", refresh_token, &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "openid offline_access");
    let (_, claims) = crate::harness::jwt_parts(body["access_token"].as_str().unwrap());
    assert_eq!(
        claims["aud"],
        app.issuer.as_str(),
        "no longer for the orders API: {claims}"
    );
    // Asked for beside scopes it still has, it is left out, as at any grant.
    let next = body["refresh_token"].as_str().unwrap().to_string();
    let (status, body) =
        crate::flow::refresh(&app, "webapp", &next, &[("scope", "openid orders.read")]).await;
    assert_eq!((status, body["scope"].as_str()), (200, Some("openid")), "{body}");
    let (status, body) = crate::flow::exchange(&app, &pending).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "openid");
}

/// A redirect URI removed by a reload while a person was signing in: no code is issued, and the
/// browser is not sent to that URI (an error page instead).
#[tokio::test]
async fn a_redirect_uri_removed_while_signing_in_gets_no_code() {
    use crate::flow::{Browser, authorize_url, pkce};
    let app = TestApp::spawn().await;
    let browser = Browser::new();
    let p = pkce();
    let url = authorize_url(
        &app,
        &[
            ("response_type", "code"),
            ("client_id", "webapp"),
            ("redirect_uri", "https://app.example.com/cb2"),
            ("scope", "openid"),
            ("code_challenge", &p.challenge),
            ("code_challenge_method", "S256"),
        ],
    );
    let login = browser.get(&url).await;
    assert!(login.is_login(), "{}", login.body);
    let without = app.config_text.replace(
        r#"redirect_uris = ["https://app.example.com/cb", "https://app.example.com/cb2"]"#,
        r#"redirect_uris = ["https://app.example.com/cb"]"#,
    );
    assert_ne!(without, app.config_text);
    let app = &app;
    reload(app, &without).await;
    let page = browser
        .sign_in(&login, "alice", &crate::harness::password("alice"))
        .await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(page.location().is_none());
    assert!(page.body.contains("no longer registered"), "{}", page.body);
    // The same while the consent page is open: neither its approval nor its denial is sent
    // there, and no consent is recorded.
    for decision in ["approve", "deny"] {
        reload(app, &app.config_text).await;
        let consent = browser.get(&url).await;
        assert!(consent.is_consent(), "{}", consent.body);
        reload(app, &without).await;
        let page = browser.consent(&consent, decision, &[]).await;
        assert_eq!(page.status, 400, "{decision}: {}", page.body);
        assert!(page.location().is_none(), "{decision}");
        assert!(page.body.contains("no longer registered"), "{}", page.body);
    }
    assert_eq!(count_rows(&app.database_url, "consents").await, 0);
}

/// An offline refresh-token family whose offline scope a reload removed from the client lives
/// with its session from then on, as any other: once the session has ended, it is refused.
#[tokio::test]
async fn an_offline_family_whose_offline_scope_is_removed_dies_with_its_session() {
    let app = TestApp::spawn().await;
    let tokens = crate::flow::sign_in_tokens(
        &app,
        &crate::flow::Browser::new(),
        "webapp",
        "openid offline_access",
    )
    .await;
    let rt = tokens["refresh_token"].as_str().unwrap().to_string();
    assert_eq!(crate::harness::mark_sessions_ended(&app.database_url).await, 1);
    // Offline: the session's end does not matter.
    let (status, body) = crate::flow::refresh(&app, "webapp", &rt, &[]).await;
    assert_eq!(status, 200, "{body}");
    let rt = body["refresh_token"].as_str().unwrap().to_string();
    let without = app.config_text.replace(
        r#""get_groups", "offline_access", "orders.read""#,
        r#""get_groups", "orders.read""#,
    );
    assert_ne!(without, app.config_text);
    reload(&app, &without).await;
    let (status, body) = crate::flow::refresh(&app, "webapp", &rt, &[]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
}

#[tokio::test]
async fn reload_with_enabled_false_disables_the_client() {
    let app = TestApp::spawn().await;
    let token = app.access_token("opaque").await;
    let text = app.config_text.replace(
        "client_id = \"opaque\"",
        "client_id = \"opaque\"\n  enabled = false",
    );
    reload(&app, &text).await;
    assert_eq!(cc_status(&app, "opaque").await, 401);
    assert_eq!(app.introspect("orders-api", &token).await["active"], false);
}

#[tokio::test]
async fn store_failure_is_503_not_200() {
    let app = TestApp::spawn().await;
    let opaque = app.access_token("opaque").await;
    let jwt = app.access_token("backend").await;
    app.handle().state().store.close().await;
    // RFC 7009 s2.2.1: 503 tells the client the token may still be valid and to retry.
    for (client, token) in [("opaque", &opaque), ("backend", &jwt)] {
        let resp = app
            .post_basic("/oauth2/v1/revoke", client, &[("token", token)])
            .await;
        assert_eq!(resp.status(), 503, "{client}");
        assert!(resp.headers().contains_key("retry-after"));
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "temporarily_unavailable");
        let text = body.to_string().to_lowercase();
        assert!(
            !text.contains("pool") && !text.contains("sql"),
            "no internals: {body}"
        );
    }
    let resp = app
        .post_basic("/oauth2/v1/introspect", "opaque", &[("token", &opaque)])
        .await;
    assert_eq!(resp.status(), 503);
    let resp = app.get("/readyz").send().await.unwrap();
    assert_eq!(resp.status(), 503);
    let resp = app.get("/healthz").send().await.unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn expired_rows_are_collected() {
    let app = TestApp::spawn_with(Opts {
        server_extra: "gc_interval = \"1s\"".into(),
        ..Opts::default()
    })
    .await;
    app.access_token("opaque").await;
    app.access_token("opaque").await;
    let jwt = app.access_token("backend").await;
    app.post_basic("/oauth2/v1/revoke", "backend", &[("token", &jwt)])
        .await;
    assert_eq!(count_rows(&app.database_url, "tokens").await, 2);
    assert_eq!(count_rows(&app.database_url, "revoked_jtis").await, 1);
    // The tokens go at their expiry; the revoked JWT's record 5 minutes after it, so that a
    // replica whose clock runs behind does not take that JWT as live meanwhile.
    app.clock.advance(1801);
    assert_eq!(rows_left(&app, (0, 1)).await, (0, 1));
    // Still there after a further run (not caught between a run's two deletes).
    ostiary::app::collect_garbage(app.handle().state(), 1000, 86400)
        .await
        .expect("this replica holds the collector's lease");
    assert_eq!(count_rows(&app.database_url, "revoked_jtis").await, 1);
    app.clock.advance(300);
    assert_eq!(rows_left(&app, (0, 0)).await, (0, 0));
}

/// A run removes every expired row due, round after round of `gc_batch` rows each, not one
/// batch a run (a store written faster than that grew without end).
#[tokio::test]
async fn a_garbage_collection_run_removes_more_than_one_batch() {
    let app = TestApp::spawn_with(Opts {
        server_extra: "gc_interval = \"1h\"".into(),
        ..Opts::default()
    })
    .await;
    for _ in 0..7 {
        app.access_token("opaque").await;
    }
    assert_eq!(count_rows(&app.database_url, "tokens").await, 7);
    app.clock.advance(1801);
    // And five back-channel deliveries finished two days ago.
    let mut db = sqlx::AnyConnection::connect(&app.database_url).await.unwrap();
    let day_before = ostiary::clock::Clock::now(app.clock.as_ref()) - 2 * 86400;
    for i in 0..5 {
        sqlx::query(
            "INSERT INTO logout_deliveries (id, domain, client_id, sub, sid, attempts, next_attempt_at, \
             claimed_until, created_at, delivered_at, failed_at, last_error) \
             VALUES ($1, 'default', 'webapp', 'u', NULL, 1, $2, 0, $2, $2, NULL, NULL)",
        )
        .bind(format!("d{i}"))
        .bind(day_before)
        .execute(&mut db)
        .await
        .unwrap();
    }
    let removed = ostiary::app::collect_garbage(app.handle().state(), 2, 86400).await;
    assert_eq!(removed, Some(12));
    assert_eq!(count_rows(&app.database_url, "tokens").await, 0);
    assert_eq!(count_rows(&app.database_url, "logout_deliveries").await, 0);
}

/// The rows of tokens and revoked_jtis once they are `want`, or after 5 s of garbage collection.
async fn rows_left(app: &TestApp, want: (i64, i64)) -> (i64, i64) {
    let mut left = (-1, -1);
    for _ in 0..50 {
        left = (
            count_rows(&app.database_url, "tokens").await,
            count_rows(&app.database_url, "revoked_jtis").await,
        );
        if left == want {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    left
}
