//! Discovery documents and the JWKS, with snapshots of the public surface.

use serde_json::Value;

use crate::harness::TestApp;

/// Replaces the port so the document can be compared with a checked-in snapshot.
fn normalize(doc: &Value, issuer: &str) -> Value {
    let text = serde_json::to_string_pretty(doc)
        .unwrap()
        .replace(issuer, "{issuer}");
    serde_json::from_str(&text).unwrap()
}

/// The checked-in snapshot `name`; with OSTIARY_UPDATE_SNAPSHOTS=1, `actual` is written there
/// first (review the diff before committing it).
fn snapshot(name: &str, actual: &Value) -> Value {
    let path = format!("{}/tests/it/snapshots/{name}", env!("CARGO_MANIFEST_DIR"));
    if std::env::var("OSTIARY_UPDATE_SNAPSHOTS").is_ok_and(|v| v == "1") {
        std::fs::write(&path, serde_json::to_string_pretty(actual).unwrap() + "\n").unwrap();
    }
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))).unwrap()
}

#[tokio::test]
async fn openid_configuration_matches_snapshot() {
    let app = TestApp::spawn().await;
    let (status, headers, doc) = app
        .get_json(&format!("{}/.well-known/openid-configuration", app.issuer))
        .await;
    assert_eq!(status, 200);
    assert_eq!(headers["access-control-allow-origin"], "*");
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    assert_eq!(doc["issuer"], app.issuer.as_str());
    let doc = normalize(&doc, &app.issuer);
    assert_eq!(doc, snapshot("openid-configuration.json", &doc));
}

#[tokio::test]
async fn oauth_authorization_server_metadata_in_both_forms() {
    let app = TestApp::spawn().await;
    let (status, _, doc) = app
        .get_json(&format!("{}/.well-known/oauth-authorization-server", app.issuer))
        .await;
    assert_eq!(status, 200);
    let doc = normalize(&doc, &app.issuer);
    assert_eq!(doc, snapshot("oauth-authorization-server.json", &doc));
    // RFC 8414 s3.1: for an issuer with a path, the well-known segment goes before the path.
    let base = app.issuer.clone();
    let (status, _, doc2) = app
        .get_json(&format!("{base}/.well-known/oauth-authorization-server/tenant2"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(doc2["issuer"], app.issuer2.as_str());
    assert_eq!(doc2["token_endpoint"], format!("{}/oauth2/v1/token", app.issuer2));
    // And under the issuer's path, as the identity-domain convention has it.
    let (status, _, doc3) = app
        .get_json(&format!("{}/.well-known/openid-configuration", app.issuer2))
        .await;
    assert_eq!(status, 200);
    assert_eq!(doc3["issuer"], app.issuer2.as_str());
}

#[tokio::test]
async fn jwks_shape_per_domain() {
    let app = TestApp::spawn().await;
    let (status, headers, jwks) = app.get_json(&format!("{}/oauth2/v1/keys", app.issuer)).await;
    assert_eq!(status, 200);
    assert_eq!(headers["access-control-allow-origin"], "*");
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "{jwks}");
    let mut names: Vec<&str> = keys[0].as_object().unwrap().keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["alg", "e", "kid", "kty", "n", "use"]);
    assert_eq!(
        (
            keys[0]["kty"].as_str(),
            keys[0]["alg"].as_str(),
            keys[0]["use"].as_str()
        ),
        (Some("RSA"), Some("RS256"), Some("sig"))
    );
    // The ES256 domain publishes its RS256 key (OpenID's required algorithm) and its ES256 key.
    let (_, _, jwks2) = app.get_json(&format!("{}/oauth2/v1/keys", app.issuer2)).await;
    let mut algs: Vec<&str> = jwks2["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["alg"].as_str().unwrap())
        .collect();
    algs.sort_unstable();
    assert_eq!(algs, ["ES256", "RS256"]);
    let ec = jwks2["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["alg"] == "ES256")
        .unwrap();
    let mut names: Vec<&str> = ec.as_object().unwrap().keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["alg", "crv", "kid", "kty", "use", "x", "y"]);
    assert_ne!(keys[0]["kid"], ec["kid"]);
    // Domains never share keys.
    let kids2: Vec<&Value> = jwks2["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| &k["kid"])
        .collect();
    assert!(!kids2.contains(&&keys[0]["kid"]));
}

#[tokio::test]
async fn unknown_host_and_path_are_json_404() {
    let app = TestApp::spawn().await;
    let resp = app
        .http
        .get(format!("{}/.well-known/openid-configuration", app.issuer))
        .header("host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "not_found");
    let (status, _, body) = app.get_json(&format!("{}/oauth2/v1/nothing", app.issuer)).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"], "not_found");
}
