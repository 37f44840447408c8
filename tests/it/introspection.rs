//! RFC 7662 introspection.

use serde_json::Value;

use ostiary::crypto::secrets::{random_token, sha256_b64};
use sqlx::Connection;

use crate::harness::{TestApp, rows_text, secret};

#[tokio::test]
async fn active_jwt_and_opaque_tokens_carry_the_rfc7662_members() {
    let app = TestApp::spawn().await;
    for client in ["backend", "opaque"] {
        let token = app.access_token(client).await;
        let resp = app
            .post_basic("/oauth2/v1/introspect", client, &[("token", &token)])
            .await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["cache-control"], "no-store");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["active"], true, "{client}: {body}");
        for m in [
            "scope",
            "client_id",
            "token_type",
            "exp",
            "iat",
            "sub",
            "aud",
            "iss",
            "jti",
        ] {
            assert!(body.get(m).is_some(), "{client}: member {m} missing in {body}");
        }
        assert_eq!(body["client_id"], client);
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["iss"], app.issuer.as_str());
    }
}

/// An opaque access token begins with its issue time; the store keys it by that prefix and the
/// hash of the whole token, never the token itself. One stored as earlier versions did, by its
/// hash alone, is still introspected and revoked.
#[tokio::test]
async fn opaque_tokens_are_keyed_by_issue_time_and_hash_and_older_ones_still_work() {
    let app = TestApp::spawn().await;
    let token = app.access_token("opaque").await;
    let body = app.introspect("opaque", &token).await;
    assert_eq!(token.len(), 51, "{token}");
    assert_eq!(
        token[..8],
        format!("{:08x}", body["iat"].as_i64().unwrap()),
        "{body}"
    );
    let key = format!("{}{}", &token[..8], sha256_b64(&token));
    assert_eq!(body["jti"], key.as_str(), "{body}");
    let stored = rows_text(&app.database_url, "tokens", "hash, jti").await;
    assert_eq!(stored, format!("{key} {key}"));
    assert!(!stored.contains(&token[8..16]), "{stored}");

    // The same row as an earlier version stored it: a 43-character token, keyed by its hash.
    let old = random_token();
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&app.database_url).await.unwrap();
    sqlx::query("UPDATE tokens SET hash = $1 WHERE hash = $2")
        .bind(sha256_b64(&old))
        .bind(&key)
        .execute(&mut conn)
        .await
        .unwrap();
    let body = app.introspect("opaque", &old).await;
    assert_eq!(body["active"], true, "{body}");
    assert_eq!(body["client_id"], "opaque");
    assert_eq!(app.introspect("opaque", &token).await["active"], false);
    let resp = app
        .post_basic("/oauth2/v1/revoke", "opaque", &[("token", &old)])
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(app.introspect("opaque", &old).await["active"], false);
}

#[tokio::test]
async fn inactive_for_garbage_expired_and_foreign_tokens() {
    let app = TestApp::spawn().await;
    let inactive = serde_json::json!({ "active": false });
    for garbage in ["nope", "a.b.c", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."] {
        assert_eq!(app.introspect("backend", garbage).await, inactive, "{garbage}");
    }
    // A token of the other domain is inactive here.
    let t2 = app
        .http
        .post(format!("{}/oauth2/v1/token", app.issuer2))
        .basic_auth("backend", Some(format!("t2-{}", secret("backend"))))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let foreign = t2["access_token"].as_str().unwrap();
    assert_eq!(app.introspect("backend", foreign).await, inactive);
    // Expiry, for both formats: move the server's clock past exp.
    let jwt = app.access_token("backend").await;
    let opaque = app.access_token("opaque").await;
    assert_eq!(app.introspect("backend", &jwt).await["active"], true);
    assert_eq!(app.introspect("opaque", &opaque).await["active"], true);
    app.clock.advance(1801);
    assert_eq!(app.introspect("backend", &jwt).await, inactive);
    assert_eq!(app.introspect("opaque", &opaque).await, inactive);
}

#[tokio::test]
async fn a_client_sees_its_own_tokens_and_those_meant_for_its_api() {
    let app = TestApp::spawn().await;
    let token = app.access_token("backend").await;
    // Another client, not acting for the token's audience: inactive.
    assert_eq!(
        app.introspect("other", &token).await,
        serde_json::json!({ "active": false })
    );
    // The orders API's client is listed in introspection_clients for the orders audience.
    assert_eq!(app.introspect("orders-api", &token).await["active"], true);
    // But not for a token meant only for billing.
    let billing = app
        .token("backend", &[("resource", "https://api.example.com/billing")])
        .await;
    let billing = billing["access_token"].as_str().unwrap();
    assert_eq!(app.introspect("orders-api", billing).await["active"], false);
}

#[tokio::test]
async fn public_clients_and_missing_token_are_refused() {
    let app = TestApp::spawn().await;
    let url = format!("{}/oauth2/v1/introspect", app.issuer);
    let resp = app
        .post_form(&url, &[("client_id", "public"), ("token", "x")])
        .await;
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.json::<Value>().await.unwrap()["error"], "invalid_client");
    let resp = app.post_basic("/oauth2/v1/introspect", "backend", &[]).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.json::<Value>().await.unwrap()["error"], "invalid_request");
    let resp = app.post_form(&url, &[("token", "x")]).await;
    assert_eq!(resp.status(), 401);
}
