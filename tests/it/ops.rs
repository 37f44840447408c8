//! Health, readiness, metrics, request ids, security headers, shutdown and reload.

use ostiary::config::Config;

use crate::harness::{Opts, TestApp, argon_hash, config_text};

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
    let text = app
        .http
        .get(format!("{}/metrics", app.issuer))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("ostiary_http_requests_total{route=\"/oauth2/v1/token\",status=\"200\""),
        "{text}"
    );
    assert!(
        text.contains("ostiary_tokens_issued_total{grant_type=\"client_credentials\"}"),
        "{text}"
    );
    assert!(text.contains("ostiary_http_request_duration_seconds"), "{text}");
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
    app.handle()
        .reload(Config::from_toml_str(&text).unwrap())
        .await
        .unwrap();
    let resp = app
        .post_basic(
            "/oauth2/v1/token",
            "other",
            &[("grant_type", "client_credentials")],
        )
        .await;
    assert_eq!(resp.status(), 401);
    // Its token is now inactive (seen by the orders API client, which may introspect it).
    assert_eq!(app.introspect("orders-api", &token).await["active"], false);
}

#[tokio::test]
async fn reload_with_enabled_false_disables_the_client() {
    let app = TestApp::spawn().await;
    let token = app.access_token("opaque").await;
    let text = app.config_text.replace(
        "client_id = \"opaque\"",
        "client_id = \"opaque\"\n  enabled = false",
    );
    app.handle()
        .reload(Config::from_toml_str(&text).unwrap())
        .await
        .unwrap();
    let resp = app
        .post_basic(
            "/oauth2/v1/token",
            "opaque",
            &[("grant_type", "client_credentials")],
        )
        .await;
    assert_eq!(resp.status(), 401);
    assert_eq!(app.introspect("orders-api", &token).await["active"], false);
}
