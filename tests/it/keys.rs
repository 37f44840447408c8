//! Staged key rotation through the CLI while the server runs.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::harness::{Opts, TestApp, jwt_parts, verify_with_jwks};

fn kids(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn rotation_publishes_before_signing_and_old_tokens_still_verify() {
    let app = TestApp::spawn_with(Opts {
        keys_extra: "publish_ahead = \"1h\"".into(),
        ..Opts::default()
    })
    .await;
    let jwks_url = format!("{}/oauth2/v1/keys", app.issuer);
    let (_, _, before) = app.get_json(&jwks_url).await;
    let old_kid = kids(&before)[0].clone();
    let old_token = app.access_token("backend").await;

    let config = app.write_config();
    let out = Command::new(env!("CARGO_BIN_EXE_ostiary"))
        .args(["keys", "rotate", "--config"])
        .arg(&config)
        .args(["--domain", "default"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let new_kid = stdout.split_whitespace().nth(4).unwrap().to_string();
    assert!(stdout.contains("published now"), "{stdout}");

    // Published (after the server's 1s refresh) before it signs.
    let mut published = Vec::new();
    for _ in 0..50 {
        let (_, _, jwks) = app.get_json(&jwks_url).await;
        published = kids(&jwks);
        if published.contains(&new_kid) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        published.contains(&new_kid) && published.contains(&old_kid),
        "{published:?}"
    );
    let still_old = app.access_token("backend").await;
    assert_eq!(jwt_parts(&still_old).0["kid"], old_kid.as_str());

    // After publish_ahead, new tokens carry the new kid; the old key stays published. The CLI
    // dated the key by the real clock, which may be ahead of the test clock by the seconds this
    // test took so far on a loaded machine: a two-minute margin.
    app.clock.advance(3600 + 120);
    let fresh = app.access_token("backend").await;
    assert_eq!(jwt_parts(&fresh).0["kid"], new_kid.as_str());
    let (_, _, jwks) = app.get_json(&jwks_url).await;
    assert!(kids(&jwks).contains(&old_kid));
    // The old token was issued with a 30m lifetime; move back within it to check it still verifies.
    app.clock.advance(-(3600 + 120));
    verify_with_jwks(&old_token, &jwks, &app.issuer, "https://api.example.com/orders").unwrap();
    assert_eq!(app.introspect("backend", &old_token).await["active"], true);

    let out = Command::new(env!("CARGO_BIN_EXE_ostiary"))
        .args(["keys", "list", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        listing.contains(&old_kid) && listing.contains(&new_kid),
        "{listing}"
    );
    assert!(listing.contains("generation 2 next"), "{listing}");
}

#[tokio::test]
async fn retired_keys_leave_the_jwks_after_their_tokens_expired() {
    let app = TestApp::spawn_with(Opts {
        keys_extra: "publish_ahead = \"10s\"".into(),
        ..Opts::default()
    })
    .await;
    let jwks_url = format!("{}/oauth2/v1/keys", app.issuer);
    let (_, _, before) = app.get_json(&jwks_url).await;
    let old_kid = kids(&before)[0].clone();
    let config = app.write_config();
    let out = Command::new(env!("CARGO_BIN_EXE_ostiary"))
        .args(["keys", "rotate", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(out.status.success());
    for _ in 0..50 {
        let (_, _, jwks) = app.get_json(&jwks_url).await;
        if kids(&jwks).len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Longest token lifetime in the default domain is 1h; plus a 5-minute margin; plus two
    // minutes for the real clock that dated the CLI's key running ahead of the test clock.
    app.clock.advance(10 + 3600 + 300 + 120);
    let (_, _, jwks) = app.get_json(&jwks_url).await;
    assert_eq!(kids(&jwks).len(), 1, "{jwks}");
    assert!(!kids(&jwks).contains(&old_kid));
}

#[tokio::test]
async fn automatic_rotation_stages_exactly_one_key() {
    let app = TestApp::spawn_with(Opts {
        keys_extra: "publish_ahead = \"1h\"\nrotation_interval = \"2h\"".into(),
        ..Opts::default()
    })
    .await;
    let jwks_url = format!("{}/oauth2/v1/keys", app.issuer);
    let (_, _, before) = app.get_json(&jwks_url).await;
    assert_eq!(kids(&before).len(), 1);
    // Due once the current key has signed for interval - publish_ahead.
    app.clock.advance(3601);
    let mut now = Vec::new();
    for _ in 0..50 {
        let (_, _, jwks) = app.get_json(&jwks_url).await;
        now = kids(&jwks);
        if now.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(now.len(), 2, "{now:?}");
    // Further checks do not stage more keys, and the old key still signs until publish_ahead passed.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (_, _, jwks) = app.get_json(&jwks_url).await;
    assert_eq!(kids(&jwks).len(), 2);
    let token = app.access_token("backend").await;
    assert_eq!(jwt_parts(&token).0["kid"], kids(&before)[0].as_str());
}
