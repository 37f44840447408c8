//! Mutual TLS (RFC 8705): the main listener over TLS, the mutual-TLS listener, tls_client_auth
//! and self_signed_tls_client_auth, certificate-bound tokens at introspection, userinfo and
//! refresh, the trusted proxy's certificate header, and discovery.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::flow::{Browser, code_flow};
use crate::harness::{Opts, TestApp, jwt_parts, secret, verify_with_jwks};
use crate::pki::{Cert, MTLS_HOST, Pki, REGISTERED_DN};

/// A request to the mutual-TLS listener, addressed to the alias host.
fn at_mtls(
    app: &TestApp,
    http: &reqwest::Client,
    method: reqwest::Method,
    path: &str,
) -> reqwest::RequestBuilder {
    let addr = app.handle().mtls_addr.expect("the mutual-TLS listener runs");
    http.request(method, format!("https://127.0.0.1:{}{path}", addr.port()))
        .header("host", MTLS_HOST)
}

/// A request to the main listener over TLS, addressed to the issuer.
fn at_main_tls(app: &TestApp, http: &reqwest::Client, path: &str) -> reqwest::RequestBuilder {
    http.post(format!("https://127.0.0.1:{}{path}", app.handle().addr.port()))
}

/// A client_credentials request of `client_id` authenticating by certificate only.
fn cc(client_id: &str) -> [(&str, &str); 2] {
    [("grant_type", "client_credentials"), ("client_id", client_id)]
}

async fn read(resp: reqwest::Response) -> (u16, reqwest::header::HeaderMap, Value) {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.json().await.unwrap_or(Value::Null))
}

/// Asserts a 401 invalid_client answer (no Basic challenge: no Basic credentials were sent).
fn assert_invalid_client((status, headers, body): &(u16, reqwest::header::HeaderMap, Value), why: &str) {
    assert_eq!(*status, 401, "{why}: {body}");
    assert_eq!(body["error"], "invalid_client", "{why}: {body}");
    assert_eq!(headers["cache-control"], "no-store", "{why}");
    // RFC 9110 s15.5.2: a 401 names a scheme the endpoint accepts.
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic realm="),
        "{why}"
    );
}

#[tokio::test]
async fn main_listener_speaks_tls() {
    let pki = Pki::new();
    let app = TestApp::spawn_with(pki.opts(pki.tls_server())).await;
    let s = secret("poster");
    let resp = at_main_tls(&app, &pki.client(None), "/oauth2/v1/token")
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "poster"),
            ("client_secret", &s),
        ])
        .send()
        .await
        .unwrap();
    let (status, headers, body) = read(resp).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(body["token_type"], "Bearer");
    let (_, claims) = jwt_parts(body["access_token"].as_str().unwrap());
    assert_eq!(claims["client_id"], "poster");
    assert!(
        claims.get("cnf").is_none(),
        "no client certificate, no binding: {claims}"
    );
    // Plain HTTP to the TLS listener gets no HTTP answer.
    let plain = app
        .http
        .post(format!("{}/oauth2/v1/token", app.base))
        .timeout(std::time::Duration::from_secs(5))
        .send()
        .await;
    assert!(plain.is_err(), "{plain:?}");
    app.stop().await;
}

#[tokio::test]
async fn tls_client_auth_by_subject_dn_binds_the_token_to_the_certificate() {
    let pki = Pki::new();
    let app = TestApp::spawn_with(pki.opts(pki.tls_server())).await;
    let http = pki.client(Some(&pki.client_one));
    let resp = at_mtls(&app, &http, reqwest::Method::POST, "/oauth2/v1/token")
        .form(&cc("mtls-dn"))
        .send()
        .await
        .unwrap();
    let (status, headers, body) = read(resp).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "orders.read");
    let token = body["access_token"].as_str().unwrap();
    // RFC 8705 s3.1: cnf carries the SHA-256 thumbprint of the certificate's DER.
    let jwks: Value = pki
        .client(None)
        .get(format!(
            "https://127.0.0.1:{}/oauth2/v1/keys",
            app.handle().addr.port()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let claims = verify_with_jwks(token, &jwks, &app.issuer, "https://api.example.com/orders").unwrap();
    assert_eq!(claims["client_id"], "mtls-dn");
    assert_eq!(claims["iss"], app.issuer.as_str(), "the alias keeps the issuer");
    assert_eq!(claims["cnf"], json!({ "x5t#S256": pki.client_one.thumbprint() }));
    // Introspection by the resource server's client returns the binding.
    let s = secret("orders-api");
    let resp = at_main_tls(&app, &pki.client(None), "/oauth2/v1/introspect")
        .form(&[
            ("client_id", "orders-api"),
            ("client_secret", s.as_str()),
            ("token", token),
        ])
        .send()
        .await
        .unwrap();
    let (status, _, intro) = read(resp).await;
    assert_eq!(status, 200);
    assert_eq!(intro["active"], true);
    assert_eq!(intro["cnf"]["x5t#S256"], pki.client_one.thumbprint().as_str());
    app.stop().await;
}

#[tokio::test]
async fn tls_client_auth_by_san_dns_binds_opaque_tokens_and_introspects_over_mtls() {
    let pki = Pki::new();
    let app = TestApp::spawn_with(pki.opts(pki.tls_server())).await;
    let http = pki.client(Some(&pki.client_two));
    let resp = at_mtls(&app, &http, reqwest::Method::POST, "/oauth2/v1/token")
        .form(&cc("mtls-dns"))
        .send()
        .await
        .unwrap();
    let (status, _, body) = read(resp).await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(token.split('.').count(), 1, "opaque: {token}");
    // The client introspects its own token, authenticating with its certificate again.
    let resp = at_mtls(&app, &http, reqwest::Method::POST, "/oauth2/v1/introspect")
        .form(&[("client_id", "mtls-dns"), ("token", token)])
        .send()
        .await
        .unwrap();
    let (status, headers, intro) = read(resp).await;
    assert_eq!(status, 200, "{intro}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(intro["active"], true);
    assert_eq!(intro["client_id"], "mtls-dns");
    assert_eq!(intro["cnf"], json!({ "x5t#S256": pki.client_two.thumbprint() }));
    // The same client with another CA-signed certificate, without the registered SAN, fails.
    let resp = at_mtls(
        &app,
        &pki.client(Some(&pki.client_one)),
        reqwest::Method::POST,
        "/oauth2/v1/token",
    )
    .form(&cc("mtls-dns"))
    .send()
    .await
    .unwrap();
    assert_invalid_client(&read(resp).await, "a certificate without the SAN");
}

#[tokio::test]
async fn wrong_untrusted_or_missing_certificates_are_invalid_client() {
    let pki = Pki::new();
    let app = TestApp::spawn_with(pki.opts(pki.tls_server())).await;
    let token = |http: reqwest::Client| {
        let req = at_mtls(&app, &http, reqwest::Method::POST, "/oauth2/v1/token").form(&cc("mtls-dn"));
        async move { read(req.send().await.unwrap()).await }
    };
    // From the CA, but another subject DN.
    let r = token(pki.client(Some(&pki.client_two))).await;
    assert_invalid_client(&r, "another DN");
    assert_eq!(r.2["error_description"], "client authentication failed");
    // The registered DN, but self-signed: not trusted for tls_client_auth.
    assert_invalid_client(&token(pki.client(Some(&pki.self_signed))).await, "self-signed");
    // No certificate at all.
    let r = token(pki.client(None)).await;
    assert_invalid_client(&r, "no certificate");
    assert_eq!(r.2["error_description"], "a client certificate is required");
    // The main listener never asks for one.
    let resp = at_main_tls(&app, &pki.client(Some(&pki.client_one)), "/oauth2/v1/token")
        .form(&cc("mtls-dn"))
        .send()
        .await
        .unwrap();
    assert_invalid_client(&read(resp).await, "main listener");
    // The right certificate still works on the same server.
    let (status, _, body) = token(pki.client(Some(&pki.client_one))).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn self_signed_tls_client_auth_matches_the_clients_jwks() {
    let pki = Pki::new();
    let app = TestApp::spawn_with(pki.opts(pki.tls_server())).await;
    let token = |cert: &Cert, client_id: &'static str| {
        let req = at_mtls(
            &app,
            &pki.client(Some(cert)),
            reqwest::Method::POST,
            "/oauth2/v1/token",
        )
        .form(&cc(client_id));
        async move { read(req.send().await.unwrap()).await }
    };
    // Its public key is in the client's jwks.
    let (status, _, body) = token(&pki.self_signed, "mtls-self").await;
    assert_eq!(status, 200, "{body}");
    let (_, claims) = jwt_parts(body["access_token"].as_str().unwrap());
    assert_eq!(claims["cnf"]["x5t#S256"], pki.self_signed.thumbprint().as_str());
    // The certificate itself is the x5c of the client's JWK.
    let (status, _, body) = token(&pki.other_self_signed, "mtls-x5c").await;
    assert_eq!(status, 200, "{body}");
    // Another self-signed certificate, or even a CA-signed one, is not in the JWK Set.
    assert_invalid_client(&token(&pki.other_self_signed, "mtls-self").await, "other key");
    assert_invalid_client(
        &token(&pki.client_one, "mtls-self").await,
        "CA-signed, not registered",
    );
    assert_invalid_client(
        &token(&pki.self_signed, "mtls-x5c").await,
        "same x5c key type, other cert",
    );
}

#[tokio::test]
async fn discovery_lists_the_mtls_aliases_and_bound_tokens() {
    let pki = Pki::new();
    let app = TestApp::spawn_with(pki.opts(pki.tls_server())).await;
    // Discovery through the alias host on the mutual-TLS listener: the same document.
    let resp = at_mtls(
        &app,
        &pki.client(None),
        reqwest::Method::GET,
        "/.well-known/openid-configuration",
    )
    .send()
    .await
    .unwrap();
    let (status, headers, doc) = read(resp).await;
    assert_eq!(status, 200);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    assert_eq!(doc["issuer"], app.issuer.as_str());
    assert_eq!(doc["tls_client_certificate_bound_access_tokens"], true);
    let alias = format!("https://{MTLS_HOST}");
    assert_eq!(
        doc["mtls_endpoint_aliases"],
        json!({
            "token_endpoint": format!("{alias}/oauth2/v1/token"),
            "introspection_endpoint": format!("{alias}/oauth2/v1/introspect"),
            "revocation_endpoint": format!("{alias}/oauth2/v1/revoke"),
            "userinfo_endpoint": format!("{alias}/oauth2/v1/userinfo"),
            "device_authorization_endpoint": format!("{alias}/oauth2/v1/device"),
        })
    );
    assert_eq!(doc["token_endpoint"], format!("{}/oauth2/v1/token", app.issuer));
    for m in ["tls_client_auth", "self_signed_tls_client_auth"] {
        for list in [
            "token_endpoint_auth_methods_supported",
            "introspection_endpoint_auth_methods_supported",
            "revocation_endpoint_auth_methods_supported",
        ] {
            assert!(
                doc[list].as_array().unwrap().contains(&json!(m)),
                "{list} lacks {m}: {doc}"
            );
        }
    }
    // RFC 8414: the OAuth flavour lists the aliases too, without userinfo.
    let resp = at_mtls(
        &app,
        &pki.client(None),
        reqwest::Method::GET,
        "/.well-known/oauth-authorization-server",
    )
    .send()
    .await
    .unwrap();
    let (status, _, doc) = read(resp).await;
    assert_eq!(status, 200);
    assert_eq!(doc["tls_client_certificate_bound_access_tokens"], true);
    assert!(doc["mtls_endpoint_aliases"].get("userinfo_endpoint").is_none());
    assert!(doc["mtls_endpoint_aliases"].get("token_endpoint").is_some());
    // A host that is neither the issuer's nor the alias is not served.
    let resp = pki
        .client(None)
        .get(format!(
            "https://127.0.0.1:{}/.well-known/openid-configuration",
            app.handle().mtls_addr.unwrap().port()
        ))
        .header("host", "elsewhere.localhost")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    // The second domain has no alias and lists nothing of it.
    let resp = pki
        .client(None)
        .get(format!(
            "https://127.0.0.1:{}/tenant2/.well-known/openid-configuration",
            app.handle().addr.port()
        ))
        .send()
        .await
        .unwrap();
    let (status, _, doc) = read(resp).await;
    assert_eq!(status, 200);
    assert_eq!(doc["issuer"], app.issuer2.as_str());
    assert!(doc.get("mtls_endpoint_aliases").is_none(), "{doc}");
    assert!(
        doc.get("tls_client_certificate_bound_access_tokens").is_none(),
        "{doc}"
    );
}

#[tokio::test]
async fn a_public_clients_tokens_over_mtls_are_bound_at_userinfo_and_refresh() {
    let pki = Pki::new();
    // Two replicas of one issuer on one database: A serves the pages over plain HTTP, B the
    // token and userinfo endpoints over mutual TLS.
    let a = TestApp::spawn_with(pki.opts(pki.proxy_server())).await;
    let a_port: u16 = a.issuer.rsplit(':').next().unwrap().parse().unwrap();
    let b = TestApp::spawn_with(Opts {
        database_url: Some(a.database_url.clone()),
        issuer_port: Some(a_port),
        ..pki.opts(pki.tls_server())
    })
    .await;
    let browser = Browser::new();
    let code = code_flow(&a, &browser, "spa", "openid profile offline_access", &[]).await;
    let holder = pki.client(Some(&pki.other_self_signed));
    let resp = at_mtls(&b, &holder, reqwest::Method::POST, "/oauth2/v1/token")
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", "spa"),
            ("code", &code.code),
            ("redirect_uri", &code.redirect_uri),
            ("code_verifier", &code.verifier),
        ])
        .send()
        .await
        .unwrap();
    let (status, _, body) = read(resp).await;
    assert_eq!(status, 200, "{body}");
    let access = body["access_token"].as_str().unwrap().to_string();
    let refresh = body["refresh_token"].as_str().unwrap().to_string();
    let bound = json!({ "x5t#S256": pki.other_self_signed.thumbprint() });
    assert_eq!(jwt_parts(&access).1["cnf"], bound);

    let userinfo = |http: &reqwest::Client, app: &TestApp| {
        at_mtls(app, http, reqwest::Method::GET, "/oauth2/v1/userinfo").bearer_auth(&access)
    };
    // With the certificate the token is bound to: the claims.
    let (status, _, claims) = read(userinfo(&holder, &b).send().await.unwrap()).await;
    assert_eq!(status, 200, "{claims}");
    assert_eq!(claims["name"], "Alice Example");
    // RFC 8705 s3: without it, or with another one, the token is refused.
    for (why, http) in [
        ("no certificate", pki.client(None)),
        ("another certificate", pki.client(Some(&pki.self_signed))),
    ] {
        let (status, headers, body) = read(userinfo(&http, &b).send().await.unwrap()).await;
        assert_eq!(status, 401, "{why}: {body}");
        assert_eq!(body["error"], "invalid_token", "{why}");
        let challenge = headers["www-authenticate"].to_str().unwrap();
        assert!(challenge.starts_with("Bearer "), "{why}: {challenge}");
        assert!(
            challenge.contains("error=\"invalid_token\""),
            "{why}: {challenge}"
        );
    }
    // Over plain HTTP, without the proxy's header, too.
    let resp = a
        .get("/oauth2/v1/userinfo")
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    // RFC 8705 s4: the public client's refresh token is bound as well; a refused attempt does
    // not use it up.
    let refresh_with = |http: &reqwest::Client| {
        at_mtls(&b, http, reqwest::Method::POST, "/oauth2/v1/token").form(&[
            ("grant_type", "refresh_token"),
            ("client_id", "spa"),
            ("refresh_token", refresh.as_str()),
        ])
    };
    let (status, _, body) = read(
        refresh_with(&pki.client(Some(&pki.self_signed)))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    let (status, _, body) = read(refresh_with(&pki.client(None)).send().await.unwrap()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    let (status, _, body) = read(refresh_with(&holder).send().await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(jwt_parts(body["access_token"].as_str().unwrap()).1["cnf"], bound);
    b.stop().await;
    a.stop().await;
}

/// RFC 8705 s3: the admin API, as userinfo does, takes a certificate-bound token only over a
/// connection that presents the certificate it is bound to; 401 invalid_token otherwise.
#[tokio::test]
async fn the_admin_api_takes_a_certificate_bound_token_only_with_its_certificate() {
    let pki = Pki::new();
    let mut opts = pki.opts(pki.tls_server());
    opts.domain_extra.push_str(&format!(
        r#"
  [[domain.client]]
  client_id = "mtls-admin"
  token_endpoint_auth_method = "tls_client_auth"
  tls_client_auth_subject_dn = "{REGISTERED_DN}"
  grant_types = ["client_credentials"]
  admin_roles = ["User Administrator"]
"#
    ));
    let app = TestApp::spawn_with(opts).await;
    let holder = pki.client(Some(&pki.client_one));
    let resp = at_mtls(&app, &holder, reqwest::Method::POST, "/oauth2/v1/token")
        .form(&cc("mtls-admin"))
        .send()
        .await
        .unwrap();
    let (status, _, body) = read(resp).await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap().to_string();
    let (_, claims) = jwt_parts(&token);
    assert_eq!(claims["cnf"]["x5t#S256"], pki.client_one.thumbprint().as_str());
    assert_eq!(claims["admin_roles"], json!(["User Administrator"]));
    let users = |http: &reqwest::Client| {
        at_mtls(&app, http, reqwest::Method::GET, "/admin/v1/Users").bearer_auth(&token)
    };
    let (status, _, body) = read(users(&holder).send().await.unwrap()).await;
    assert_eq!(status, 200, "with its certificate: {body}");
    for (why, resp) in [
        ("no certificate", users(&pki.client(None)).send().await.unwrap()),
        (
            "another certificate",
            users(&pki.client(Some(&pki.self_signed))).send().await.unwrap(),
        ),
        (
            "the main listener, no certificate",
            pki.client(None)
                .get(format!(
                    "https://127.0.0.1:{}/admin/v1/Users",
                    app.handle().addr.port()
                ))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap(),
        ),
    ] {
        let (status, headers, body) = read(resp).await;
        assert_eq!(status, 401, "{why}: {body}");
        assert_eq!(body["error"], "invalid_token", "{why}: {body}");
        assert!(
            headers["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("error=\"invalid_token\""),
            "{why}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn the_proxys_certificate_header_is_trusted_when_configured() {
    let pki = Pki::new();
    let app = TestApp::spawn_with(pki.opts(pki.proxy_server())).await;
    let token = |client_id: &'static str, header: Option<String>| {
        let mut req = app.post("/oauth2/v1/token").form(&cc(client_id));
        if let Some(h) = header {
            req = req.header("X-Client-Cert", h);
        }
        async move { read(req.send().await.unwrap()).await }
    };
    let (status, headers, body) = token("mtls-dn", Some(pki.client_one.escaped())).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    let (_, claims) = jwt_parts(body["access_token"].as_str().unwrap());
    assert_eq!(claims["cnf"]["x5t#S256"], pki.client_one.thumbprint().as_str());
    // Trust is still decided against client_ca_file: a self-signed one is not trusted...
    assert_invalid_client(
        &token("mtls-dn", Some(pki.self_signed.escaped())).await,
        "self-signed",
    );
    // ...but it serves self_signed_tls_client_auth.
    let (status, _, body) = token("mtls-self", Some(pki.self_signed.escaped())).await;
    assert_eq!(status, 200, "{body}");
    // No header, an empty one (nginx without a certificate), or garbage: no certificate.
    assert_invalid_client(&token("mtls-dn", None).await, "no header");
    assert_invalid_client(&token("mtls-dn", Some(String::new())).await, "empty header");
    assert_invalid_client(
        &token("mtls-dn", Some("not%20a%20certificate".into())).await,
        "garbage",
    );
    // The second domain has no mutual-TLS alias, but certificates reach its own endpoints
    // through the proxy: its metadata says so (RFC 8705 s3.3), without aliases.
    let (_, _, doc) = app
        .get_json(&format!("{}/.well-known/openid-configuration", app.issuer2))
        .await;
    assert_eq!(doc["tls_client_certificate_bound_access_tokens"], true, "{doc}");
    assert!(doc.get("mtls_endpoint_aliases").is_none(), "{doc}");
    for list in [
        "token_endpoint_auth_methods_supported",
        "introspection_endpoint_auth_methods_supported",
        "revocation_endpoint_auth_methods_supported",
    ] {
        for m in ["tls_client_auth", "self_signed_tls_client_auth"] {
            assert!(
                doc[list].as_array().unwrap().iter().any(|v| v == m),
                "{list} {m}: {doc}"
            );
        }
    }
    app.stop().await;
    // From a peer that is not a trusted proxy, the header is ignored: a certificate is public,
    // and anyone reaching the listener directly could name any client's.
    let server = pki.proxy_server().replace(
        r#"trusted_proxies = ["127.0.0.1"]"#,
        r#"trusted_proxies = ["10.0.0.1"]"#,
    );
    let app = TestApp::spawn_with(pki.opts(server)).await;
    let resp = app
        .post("/oauth2/v1/token")
        .header("X-Client-Cert", pki.client_one.escaped())
        .form(&cc("mtls-dn"))
        .send()
        .await
        .unwrap();
    assert_invalid_client(&read(resp).await, "the header from an untrusted peer");
    app.stop().await;
}

#[tokio::test]
async fn the_certificate_header_is_ignored_unless_configured_and_on_the_mtls_listener() {
    let pki = Pki::new();
    // Not configured: the header means nothing.
    let app = TestApp::spawn_with(pki.opts(pki.tls_server())).await;
    let resp = at_main_tls(&app, &pki.client(None), "/oauth2/v1/token")
        .header("X-Client-Cert", pki.client_one.escaped())
        .form(&cc("mtls-dn"))
        .send()
        .await
        .unwrap();
    assert_invalid_client(&read(resp).await, "header not configured");
    app.stop().await;
    // Configured: trusted on the main listener, never on the mutual-TLS one, whose connection
    // alone names the certificate.
    let server = format!(
        "{}client_certificate_header = \"X-Client-Cert\"\ntrusted_proxies = [\"127.0.0.1\"]\n",
        pki.tls_server()
    );
    let app = TestApp::spawn_with(pki.opts(server)).await;
    let resp = at_mtls(&app, &pki.client(None), reqwest::Method::POST, "/oauth2/v1/token")
        .header("X-Client-Cert", pki.client_one.escaped())
        .form(&cc("mtls-dn"))
        .send()
        .await
        .unwrap();
    assert_invalid_client(&read(resp).await, "header on the mTLS listener");
    let resp = at_mtls(
        &app,
        &pki.client(Some(&pki.self_signed)),
        reqwest::Method::POST,
        "/oauth2/v1/token",
    )
    .header("X-Client-Cert", pki.client_one.escaped())
    .form(&cc("mtls-dn"))
    .send()
    .await
    .unwrap();
    assert_invalid_client(&read(resp).await, "the header does not replace the connection's");
    let resp = at_main_tls(&app, &pki.client(None), "/oauth2/v1/token")
        .header("X-Client-Cert", pki.client_one.escaped())
        .form(&cc("mtls-dn"))
        .send()
        .await
        .unwrap();
    let (status, _, body) = read(resp).await;
    assert_eq!(status, 200, "{body}");
    app.stop().await;
}

#[tokio::test]
async fn a_client_assertion_may_name_the_mtls_alias_token_endpoint() {
    use ostiary::clock::Clock;
    use ostiary::crypto::keys::{SigningAlg, SigningKey};
    let pki = Pki::new();
    let (key, _) = SigningKey::generate(SigningAlg::ES256, "alias-k".into()).unwrap();
    let mut opts = pki.opts(pki.tls_server());
    opts.domain_extra.push_str(&format!(
        r#"
  [[domain.client]]
  client_id = "signer"
  token_endpoint_auth_method = "private_key_jwt"
  jwks = {}
  grant_types = ["client_credentials"]
  scopes = ["orders.read"]
"#,
        crate::pki::toml_inline(&json!({ "keys": [key.public_jwk()] }))
    ));
    let app = TestApp::spawn_with(opts).await;
    let http = pki.client(None);
    let now = app.clock.now();
    let assertion = |aud: &str| {
        let claims = json!({
            "iss": "signer", "sub": "signer", "aud": aud, "exp": now + 60,
            "jti": ostiary::crypto::secrets::random_id(),
        });
        ostiary::crypto::jws::sign(&key, "JWT", &claims).unwrap()
    };
    let post = |a: String| {
        at_mtls(&app, &http, reqwest::Method::POST, "/oauth2/v1/token")
            .form(&[
                ("grant_type", "client_credentials"),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", a.as_str()),
            ])
            .send()
    };
    let alias = format!("https://{MTLS_HOST}/oauth2/v1/token");
    let (status, _, body) = read(post(assertion(&alias)).await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    // No certificate was presented: the token is not bound.
    let (_, claims) = jwt_parts(body["access_token"].as_str().unwrap());
    assert!(claims.get("cnf").is_none(), "{claims}");
    // Another host's token endpoint is not an audience of this server.
    let (status, _, body) = read(
        post(assertion("https://elsewhere.example/oauth2/v1/token"))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "{body}"
    );
}

/// `server.client_crl_files`: a certificate the CA's revocation list names is not trusted, the
/// CA's other certificates still are, and a new list in the file is in force within the upkeep
/// interval (5 s) without a restart; a broken file leaves the list in force.
#[tokio::test]
async fn revoked_client_certificates_are_not_trusted_and_the_lists_are_read_again() {
    let pki = Pki::new();
    let crl = pki.path("crl.pem");
    std::fs::copy(pki.path("crl-revokes-client-one.pem"), &crl).unwrap();
    let server = format!("{}client_crl_files = [\"{crl}\"]\n", pki.proxy_server());
    let app = TestApp::spawn_with(pki.opts(server)).await;
    let token = |client_id: &'static str, cert: &Cert| {
        let req = app
            .post("/oauth2/v1/token")
            .form(&cc(client_id))
            .header("X-Client-Cert", cert.escaped());
        async move { read(req.send().await.unwrap()).await }
    };
    assert_invalid_client(&token("mtls-dn", &pki.client_one).await, "client-one is revoked");
    let (status, _, body) = token("mtls-dns", &pki.client_two).await;
    assert_eq!(status, 200, "client-two is not revoked: {body}");
    // self_signed_tls_client_auth does not go through the CA: no list applies.
    let (status, _, body) = token("mtls-self", &pki.self_signed).await;
    assert_eq!(status, 200, "{body}");

    // A broken file: the list in force stays.
    std::fs::write(&crl, "-----BEGIN X509 CRL-----\nbroken\n-----END X509 CRL-----\n").unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(6)).await;
    assert_invalid_client(
        &token("mtls-dn", &pki.client_one).await,
        "still revoked after a broken list",
    );
    // The CA's next list revokes nothing: client-one is trusted again, without a restart.
    std::fs::copy(pki.path("crl-empty.pem"), &crl).unwrap();
    let mut status = 0;
    for _ in 0..40 {
        (status, _, _) = token("mtls-dn", &pki.client_one).await;
        if status == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert_eq!(status, 200, "the new list was not read within 10 s");
}

#[tokio::test]
async fn revocation_lists_need_the_ca_and_must_parse() {
    let pki = Pki::new();
    // Without client_ca_file: a configuration error naming the key.
    let config = crate::harness::config_text(
        0,
        "sqlite::memory:",
        pki.dir.path(),
        &Opts {
            server_extra: format!("client_crl_files = [\"{}\"]\n", pki.path("crl-empty.pem")),
            ..Opts::default()
        },
        "x",
    );
    let err = ostiary::config::Config::from_toml_str(&config)
        .unwrap_err()
        .to_string();
    assert!(err.contains("server.client_crl_files"), "{err}");
    // A file that holds no list: the start fails, naming it.
    let not_a_crl = pki.path("ca.pem");
    let err = ostiary::tls::ClientCertTrust::load(
        Some(std::path::Path::new(&pki.path("ca.pem"))),
        &[std::path::PathBuf::from(&not_a_crl)],
        std::sync::Arc::new(ostiary::clock::SystemClock),
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("no revocation list found"), "{err:#}");
}

/// RFC 8705 s2.2: with a jwks_uri the client rotates its self-signed certificate by publishing
/// the new one's key: a certificate its cached keys do not hold has them fetched again, once,
/// instead of failing until the cache expires.
#[tokio::test]
async fn a_self_signed_certificate_rotated_at_the_jwks_uri_is_found() {
    let pki = Pki::new();
    let keys = Arc::new(Mutex::new(json!({ "keys": [pki.self_signed.jwk()] })));
    let (uri, hits) = crate::assertions::serve_jwks(keys.clone()).await;
    let mut opts = pki.opts(pki.proxy_server());
    opts.domain_keys.push_str("\nallow_private_jwks_uri = true\n");
    opts.domain_extra.push_str(&format!(
        r#"
  [[domain.client]]
  client_id = "mtls-rotating"
  token_endpoint_auth_method = "self_signed_tls_client_auth"
  jwks_uri = "{uri}"
  grant_types = ["client_credentials"]
  scopes = ["orders.read"]
"#
    ));
    let app = TestApp::spawn_with(opts).await;
    let token = |cert: &Cert| {
        let req = app
            .post("/oauth2/v1/token")
            .form(&cc("mtls-rotating"))
            .header("X-Client-Cert", cert.escaped());
        async move { read(req.send().await.unwrap()).await }
    };
    let (status, _, body) = token(&pki.self_signed).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(*hits.lock().unwrap(), 1);
    // The client publishes its next certificate's key and uses it at once.
    *keys.lock().unwrap() = json!({ "keys": [pki.other_self_signed.jwk()] });
    let (status, _, body) = token(&pki.other_self_signed).await;
    assert_eq!(status, 200, "{body}");
    let (_, claims) = jwt_parts(body["access_token"].as_str().unwrap());
    assert_eq!(
        claims["cnf"]["x5t#S256"],
        pki.other_self_signed.thumbprint().as_str()
    );
    assert_eq!(*hits.lock().unwrap(), 2, "fetched again once");
    // The retired certificate is refused now.
    assert_invalid_client(&token(&pki.self_signed).await, "retired certificate");
}

/// Trust is decided per request, not once per connection: a certificate the CA revokes while
/// a keep-alive connection of its client lasts is refused on that same connection once the new
/// list is read (before, the handshake's judgement held for as long as the connection lived).
#[tokio::test]
async fn a_certificate_revoked_during_a_keep_alive_connection_is_refused_on_it() {
    let pki = Pki::new();
    let crl = pki.path("crl.pem");
    std::fs::copy(pki.path("crl-empty.pem"), &crl).unwrap();
    let server = format!("{}client_crl_files = [\"{crl}\"]\n", pki.tls_server());
    let app = TestApp::spawn_with(pki.opts(server)).await;
    // One client, one pooled connection, as a backend keeps it.
    let http = pki.client(Some(&pki.client_one));
    let token = || async {
        let resp = at_mtls(&app, &http, reqwest::Method::POST, "/oauth2/v1/token")
            .form(&cc("mtls-dn"))
            .send()
            .await
            .unwrap();
        read(resp).await
    };
    let (status, _, body) = token().await;
    assert_eq!(status, 200, "{body}");
    std::fs::copy(pki.path("crl-revokes-client-one.pem"), &crl).unwrap();
    let mut last = (0, Value::Null);
    for _ in 0..40 {
        let (status, _, body) = token().await;
        last = (status, body);
        if status == 401 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert_eq!(
        last.0, 401,
        "still trusted 10 s after the list revoked it: {}",
        last.1
    );
    assert_eq!(last.1["error"], "invalid_client");
}

/// Connections that never start their TLS handshake do not hold up the others: one host gets
/// at most 16 handshakes in progress (the others are closed at once), and the listener goes on
/// accepting. Before, 256 such connections from anywhere stopped it accepting for up to 10 s.
#[tokio::test]
async fn stalled_handshakes_from_one_host_do_not_block_the_listener() {
    let pki = Pki::new();
    let app = TestApp::spawn_with(pki.opts(pki.tls_server())).await;
    let addr = app.handle().mtls_addr.expect("the mutual-TLS listener runs");
    let mut stalled = Vec::new();
    for _ in 0..300 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        stalled.push(socket.connect(addr).await.unwrap());
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let http = pki.client(Some(&pki.client_one));
    let sent = at_mtls(&app, &http, reqwest::Method::POST, "/oauth2/v1/token")
        .form(&cc("mtls-dn"))
        .timeout(std::time::Duration::from_secs(3))
        .send()
        .await;
    let (status, _, body) = read(sent.expect("answered within 3 s beside 300 stalled connections")).await;
    assert_eq!(status, 200, "{body}");
    drop(stalled);
}
