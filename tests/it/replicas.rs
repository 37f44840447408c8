//! Two replicas of one issuer on one PostgreSQL database agree (PostgreSQL only).

use crate::harness::{Opts, TestApp, on_postgres};

async fn kids(app: &TestApp) -> serde_json::Value {
    app.get("/oauth2/v1/keys")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn two_replicas_on_one_postgres_agree() {
    if !on_postgres() {
        eprintln!("note: the replicas test runs on PostgreSQL only");
        return;
    }
    let a = TestApp::spawn().await;
    let a_port: u16 = a.issuer.rsplit(':').next().unwrap().parse().unwrap();
    let b = TestApp::spawn_with(Opts {
        database_url: Some(a.database_url.clone()),
        dir: Some(a.dir.clone()),
        issuer_port: Some(a_port),
        ..Opts::default()
    })
    .await;
    assert_ne!(a.base, b.base);
    // The same published keys, exactly one per algorithm.
    let (ja, jb) = (kids(&a).await, kids(&b).await);
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
    crate::harness::verify_with_jwks(&token, &ja, &a.issuer, "https://api.example.com/orders").unwrap();
}
