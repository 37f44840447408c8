//! RFC 7009 revocation.

use serde_json::Value;

use crate::harness::{TestApp, secret};

#[tokio::test]
async fn revoking_opaque_and_jwt_tokens_makes_them_inactive() {
    let app = TestApp::spawn().await;
    for (client, hint) in [
        ("opaque", "access_token"),
        ("backend", "refresh_token"),
        ("backend", ""),
    ] {
        let token = app.access_token(client).await;
        assert_eq!(app.introspect(client, &token).await["active"], true);
        let mut form = vec![("token", token.as_str())];
        if !hint.is_empty() {
            form.push(("token_type_hint", hint));
        }
        let resp = app.post_basic("/oauth2/v1/revoke", client, &form).await;
        assert_eq!(resp.status(), 200, "{client} {hint}");
        assert!(resp.text().await.unwrap().is_empty());
        assert_eq!(
            app.introspect(client, &token).await["active"],
            false,
            "{client} {hint}"
        );
        // Revoking again is still 200.
        let resp = app.post_basic("/oauth2/v1/revoke", client, &form).await;
        assert_eq!(resp.status(), 200);
    }
}

#[tokio::test]
async fn unknown_tokens_are_200_and_other_clients_tokens_are_refused() {
    let app = TestApp::spawn().await;
    let resp = app
        .post_basic("/oauth2/v1/revoke", "backend", &[("token", "never-issued")])
        .await;
    assert_eq!(resp.status(), 200);
    let token = app.access_token("backend").await;
    let resp = app
        .post_basic("/oauth2/v1/revoke", "other", &[("token", &token)])
        .await;
    assert_eq!(resp.status(), 400);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"],
        "unauthorized_client"
    );
    assert_eq!(
        app.introspect("backend", &token).await["active"],
        true,
        "still active"
    );
    let resp = app.post_basic("/oauth2/v1/revoke", "backend", &[]).await;
    assert_eq!(resp.status(), 400);
    let resp = app
        .http
        .post(format!("{}/oauth2/v1/revoke", app.issuer))
        .basic_auth("backend", Some("wrong"))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn a_revoked_jwt_stays_revoked_on_another_domain_path_and_only_there() {
    let app = TestApp::spawn().await;
    let token = app.access_token("backend").await;
    // Revocation at the other domain does not touch this domain's token (and is 200: unknown there).
    let resp = app
        .http
        .post(format!("{}/oauth2/v1/revoke", app.issuer2))
        .basic_auth("backend", Some(format!("t2-{}", secret("backend"))))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(app.introspect("backend", &token).await["active"], true);
}
