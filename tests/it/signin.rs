//! Browser sign-in end to end over HTTP: authorize, sign in, consent, code, tokens, userinfo.

use crate::flow::{Browser, code_flow, exchange};
use crate::harness::{TestApp, jwt_parts, verify_with_jwks};

#[tokio::test]
async fn code_flow_gives_access_and_id_tokens_and_userinfo() {
    let app = TestApp::spawn().await;
    let browser = Browser::new();
    let code = code_flow(
        &app,
        &browser,
        "webapp",
        "openid profile email orders.read",
        &[("nonce", "n-1")],
    )
    .await;
    let (status, body) = exchange(&app, &code).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    let id_token = body["id_token"].as_str().unwrap();
    let (_, _, jwks) = app.get_json(&format!("{}/oauth2/v1/keys", app.issuer)).await;
    let claims = verify_with_jwks(id_token, &jwks, &app.issuer, "webapp").unwrap();
    assert_eq!(claims["nonce"], "n-1");
    let (_, at) = jwt_parts(body["access_token"].as_str().unwrap());
    assert_eq!(claims["sub"], at["sub"]);
    let resp = app
        .get("/oauth2/v1/userinfo")
        .bearer_auth(body["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let info: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(info["email"], "alice@example.com");
    assert_eq!(info["sub"], claims["sub"]);
}
