//! JWT assertions (RFC 7523): client authentication with private_key_jwt and client_secret_jwt
//! (s2.2), at every endpoint that authenticates clients, with inline keys and a jwks_uri; and the
//! JWT bearer grant (s2.1) with user assertions from a trusted issuer.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ostiary::clock::Clock;
use ostiary::crypto::jws;
use ostiary::crypto::keys::{SigningAlg, SigningKey};
use ostiary::store::DirectoryStore;
use serde_json::{Value, json};

use crate::harness::{Opts, TestApp, jwt_parts};
use crate::pki::toml_inline;

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const HMAC_SECRET: &str = "hmac-secret-for-client-secret-jwt-0123456789abcdef";

fn key(alg: SigningAlg, kid: &str) -> SigningKey {
    SigningKey::generate(alg, kid.to_string()).unwrap().0
}

fn jwks_toml(keys: &[&SigningKey]) -> String {
    let list: Vec<Value> = keys.iter().map(|k| k.public_jwk().clone()).collect();
    toml_inline(&json!({ "keys": list }))
}

/// Signs claims with an HMAC (client_secret_jwt).
fn hmac_jwt(alg: &str, secret: &[u8], claims: &Value) -> String {
    use aws_lc_rs::hmac;
    let algorithm = match alg {
        "HS256" => hmac::HMAC_SHA256,
        "HS384" => hmac::HMAC_SHA384,
        _ => hmac::HMAC_SHA512,
    };
    let signing_input = format!(
        "{}.{}",
        B64.encode(serde_json::to_vec(&json!({"alg": alg, "typ": "JWT"})).unwrap()),
        B64.encode(serde_json::to_vec(claims).unwrap())
    );
    let tag = hmac::sign(&hmac::Key::new(algorithm, secret), signing_input.as_bytes());
    format!("{signing_input}.{}", B64.encode(tag.as_ref()))
}

/// `claims` signed by `key` under the protected header `header` (with the key's alg and kid added).
fn sign_with_header(key: &SigningKey, header: &Value, claims: &Value) -> String {
    let mut header = header.clone();
    header["alg"] = json!(key.alg().as_str());
    header["kid"] = json!(key.kid());
    let input = format!(
        "{}.{}",
        B64.encode(serde_json::to_vec(&header).unwrap()),
        B64.encode(serde_json::to_vec(claims).unwrap())
    );
    format!("{input}.{}", B64.encode(key.sign(input.as_bytes()).unwrap()))
}

/// An unsigned JWT (`alg: none`).
fn none_jwt(claims: &Value) -> String {
    format!(
        "{}.{}.",
        B64.encode(br#"{"alg":"none","typ":"JWT"}"#),
        B64.encode(serde_json::to_vec(claims).unwrap())
    )
}

struct Setup {
    app: TestApp,
    client_key: SigningKey,
    issuer_key: SigningKey,
}

impl Setup {
    async fn new() -> Setup {
        Self::with(Opts::default(), None).await
    }

    /// The standard test server plus: `pkjwt` (private_key_jwt, inline key, client_credentials
    /// and the JWT bearer grant), `pkjwt-ps` (registered PS256 only), `secretjwt`
    /// (client_secret_jwt, secret in a file), and a trusted assertion issuer.
    async fn with(mut opts: Opts, jwks_uri: Option<&str>) -> Setup {
        let client_key = key(SigningAlg::RS256, "client-k1");
        let issuer_key = key(SigningAlg::ES256, "idp-k1");
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let secret_file = dir.path().join("client.secret");
        std::fs::write(&secret_file, format!("{HMAC_SECRET}\n")).unwrap();
        let ps_key = key(SigningAlg::PS256, "client-ps");
        let remote = match jwks_uri {
            Some(uri) => format!(
                r#"
  [[domain.client]]
  client_id = "remote"
  token_endpoint_auth_method = "private_key_jwt"
  grant_types = ["client_credentials"]
  scopes = ["orders.read"]
  jwks_uri = "{uri}"
"#
            ),
            None => String::new(),
        };
        opts.domain_extra.push_str(&format!(
            r#"
  [[domain.client]]
  client_id = "pkjwt"
  token_endpoint_auth_method = "private_key_jwt"
  grant_types = ["client_credentials", "{JWT_BEARER}"]
  scopes = ["orders.read", "orders.write", "openid", "profile"]
  jwks = {client_jwks}

  [[domain.client]]
  client_id = "pkjwt-ps"
  token_endpoint_auth_method = "private_key_jwt"
  token_endpoint_auth_signing_alg = "PS256"
  grant_types = ["client_credentials"]
  scopes = ["orders.read"]
  jwks = {ps_jwks}

  [[domain.client]]
  client_id = "secretjwt"
  token_endpoint_auth_method = "client_secret_jwt"
  secret_file = "{secret_file}"
  grant_types = ["client_credentials"]
  scopes = ["orders.read"]
{remote}
  [[domain.assertion_issuer]]
  issuer = "https://idp.example.com"
  jwks = {issuer_jwks}
"#,
            client_jwks = jwks_toml(&[&client_key]),
            ps_jwks = jwks_toml(&[&ps_key]),
            issuer_jwks = jwks_toml(&[&issuer_key]),
            secret_file = secret_file.display(),
        ));
        opts.dir = Some(dir);
        let app = TestApp::spawn_with(opts).await;
        Setup {
            app,
            client_key,
            issuer_key,
        }
    }

    fn token_endpoint(&self) -> String {
        format!("{}/oauth2/v1/token", self.app.issuer)
    }

    fn now(&self) -> i64 {
        self.app.clock.now()
    }

    /// Good client-assertion claims for `client`.
    fn client_claims(&self, client: &str) -> Value {
        json!({
            "iss": client, "sub": client, "aud": self.app.issuer,
            "exp": self.now() + 60, "iat": self.now(), "jti": ostiary::crypto::secrets::random_id(),
        })
    }

    /// A user assertion of the trusted issuer about `sub`.
    fn user_claims(&self, sub: &str) -> Value {
        json!({
            "iss": "https://idp.example.com", "sub": sub, "aud": self.token_endpoint(),
            "exp": self.now() + 120, "iat": self.now(), "jti": ostiary::crypto::secrets::random_id(),
        })
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> (u16, reqwest::header::HeaderMap, Value) {
        let resp = self.app.post(path).form(form).send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        (status, headers, resp.json().await.unwrap_or(Value::Null))
    }

    /// A POST authenticated by the client assertion `assertion`.
    async fn post_asserted(
        &self,
        path: &str,
        form: &[(&str, &str)],
        assertion: &str,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut f = form.to_vec();
        f.extend([
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", assertion),
        ]);
        self.post(path, &f).await
    }

    /// client_credentials with a client assertion.
    async fn cc(&self, assertion: &str) -> (u16, Value) {
        let (status, headers, body) = self
            .post_asserted(
                "/oauth2/v1/token",
                &[("grant_type", "client_credentials")],
                assertion,
            )
            .await;
        assert_eq!(headers["cache-control"], "no-store");
        (status, body)
    }

    /// The JWT bearer grant for `pkjwt` (authenticated by its own assertion).
    async fn bearer(&self, assertion: &str, scope: &str) -> (u16, Value) {
        let client_assertion = self.sign_client(&self.client_claims("pkjwt"));
        let form = [
            ("grant_type", JWT_BEARER),
            ("assertion", assertion),
            ("scope", scope),
        ];
        let (status, _, body) = self
            .post_asserted("/oauth2/v1/token", &form, &client_assertion)
            .await;
        (status, body)
    }

    fn sign_client(&self, claims: &Value) -> String {
        jws::sign(&self.client_key, "JWT", claims).unwrap()
    }

    fn sign_user(&self, claims: &Value) -> String {
        jws::sign(&self.issuer_key, "JWT", claims).unwrap()
    }
}

fn assert_invalid_client(status: u16, body: &Value, what: &str) {
    assert_eq!(status, 401, "{what}: {body}");
    assert_eq!(body["error"], "invalid_client", "{what}: {body}");
}

fn assert_invalid_grant(status: u16, body: &Value, what: &str) {
    assert_eq!(status, 400, "{what}: {body}");
    assert_eq!(body["error"], "invalid_grant", "{what}: {body}");
}

#[tokio::test]
async fn private_key_jwt_authenticates_at_the_token_endpoint() {
    let s = Setup::new().await;
    // aud: the issuer, or the token endpoint URL.
    for aud in [s.app.issuer.clone(), s.token_endpoint()] {
        let mut claims = s.client_claims("pkjwt");
        claims["aud"] = json!(aud);
        let (status, body) = s.cc(&s.sign_client(&claims)).await;
        assert_eq!(status, 200, "aud {aud}: {body}");
        assert_eq!(body["token_type"], "Bearer");
        let (_, at) = jwt_parts(body["access_token"].as_str().unwrap());
        assert_eq!(at["client_id"], "pkjwt");
        assert_eq!(at["sub"], "pkjwt");
    }
    // A client_id in the body must name the same client.
    let a = s.sign_client(&s.client_claims("pkjwt"));
    let (status, _, body) = s
        .post(
            "/oauth2/v1/token",
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "pkjwt"),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", &a),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let a = s.sign_client(&s.client_claims("pkjwt"));
    let (status, _, body) = s
        .post(
            "/oauth2/v1/token",
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "backend"),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", &a),
            ],
        )
        .await;
    assert_invalid_client(status, &body, "client_id differs from sub");
}

#[tokio::test]
async fn a_replayed_client_assertion_is_refused() {
    let s = Setup::new().await;
    let a = s.sign_client(&s.client_claims("pkjwt"));
    assert_eq!(s.cc(&a).await.0, 200);
    let (status, body) = s.cc(&a).await;
    assert_invalid_client(status, &body, "replay");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("already used"),
        "{body}"
    );
    // Once the assertion has expired its jti is forgotten, but the assertion is then refused as expired.
    s.app.clock.advance(120);
    let (status, body) = s.cc(&a).await;
    assert_invalid_client(status, &body, "expired replay");
}

#[tokio::test]
async fn bad_client_assertions_are_invalid_client() {
    let s = Setup::new().await;
    let now = s.now();
    let good = s.client_claims("pkjwt");
    let with = |name: &str, value: Value| {
        let mut c = good.clone();
        c[name] = value;
        c["jti"] = json!(ostiary::crypto::secrets::random_id());
        c
    };
    let without = |name: &str| {
        let mut c = good.clone();
        c["jti"] = json!(ostiary::crypto::secrets::random_id());
        c.as_object_mut().unwrap().remove(name);
        c
    };
    let other_key = key(SigningAlg::RS256, "client-k1");
    let public = s.client_key.public_jwk();
    let cases: Vec<(&str, String)> = vec![
        ("expired", s.sign_client(&with("exp", json!(now - 1)))),
        (
            "exp too far ahead",
            s.sign_client(&with("exp", json!(now + 3600))),
        ),
        ("no exp", s.sign_client(&without("exp"))),
        ("no jti", s.sign_client(&without("jti"))),
        // PostgreSQL cannot store a NUL: refused before, the same on both stores (it gave 503
        // there, to every assertion written in the same statement).
        ("a NUL in jti", {
            let mut c = good.clone();
            c["jti"] = json!("x\u{0}y");
            s.sign_client(&c)
        }),
        // RFC 7523 s3.2: whatever makes the client JWT invalid, the error is invalid_client.
        ("no sub", s.sign_client(&without("sub"))),
        ("empty sub", s.sign_client(&with("sub", json!("")))),
        ("not a JWT", "abc".to_string()),
        ("three parts, none JSON", "a.b.c".to_string()),
        (
            "wrong audience",
            s.sign_client(&with("aud", json!("https://elsewhere.example"))),
        ),
        (
            "audience array",
            s.sign_client(&with("aud", json!([s.app.issuer]))),
        ),
        (
            "iss is not the client",
            s.sign_client(&with("iss", json!("backend"))),
        ),
        ("not yet valid", s.sign_client(&with("nbf", json!(now + 600)))),
        (
            "unknown key",
            jws::sign(&other_key, "JWT", &with("jti", json!("x1"))).unwrap(),
        ),
        ("alg none", none_jwt(&with("jti", json!("x2")))),
        (
            "HS256 keyed with the public key's modulus",
            hmac_jwt(
                "HS256",
                public["n"].as_str().unwrap().as_bytes(),
                &with("jti", json!("x3")),
            ),
        ),
        (
            "HS256 keyed with the whole public JWK",
            hmac_jwt("HS256", public.to_string().as_bytes(), &with("jti", json!("x4"))),
        ),
    ];
    for (what, assertion) in cases {
        let (status, body) = s.cc(&assertion).await;
        assert_invalid_client(status, &body, what);
    }
    // Naming the client in the body does not make an assertion without `sub` valid.
    let no_sub = s.sign_client(&without("sub"));
    let (status, _, body) = s
        .post_asserted(
            "/oauth2/v1/token",
            &[("grant_type", "client_credentials"), ("client_id", "pkjwt")],
            &no_sub,
        )
        .await;
    assert_invalid_client(status, &body, "no sub, client_id in the body");
    // The registered algorithm is the only one accepted.
    let ps = key(SigningAlg::RS256, "client-ps");
    let (status, body) = s
        .cc(&jws::sign(&ps, "JWT", &s.client_claims("pkjwt-ps")).unwrap())
        .await;
    assert_invalid_client(status, &body, "RS256 for a PS256 client");
}

/// RFC 7515 s4.1.11: a JWS whose `crit` names an extension the server does not understand is
/// invalid; it understands none.
#[tokio::test]
async fn assertions_with_a_crit_header_are_refused() {
    let s = Setup::new().await;
    let crit = json!({"typ": "JWT", "crit": ["x-unknown"], "x-unknown": 1});
    // Without crit the same header is fine.
    let plain = json!({"typ": "JWT", "x-unknown": 1});
    let (status, body) = s
        .cc(&sign_with_header(
            &s.client_key,
            &plain,
            &s.client_claims("pkjwt"),
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = s
        .cc(&sign_with_header(&s.client_key, &crit, &s.client_claims("pkjwt")))
        .await;
    assert_invalid_client(status, &body, "private_key_jwt with crit");
    // client_secret_jwt: the HMAC verifies, the header does not pass.
    let claims = s.client_claims("secretjwt");
    let input = format!(
        "{}.{}",
        B64.encode(br#"{"alg":"HS256","typ":"JWT","crit":["x-unknown"],"x-unknown":1}"#),
        B64.encode(serde_json::to_vec(&claims).unwrap())
    );
    let tag = aws_lc_rs::hmac::sign(
        &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, HMAC_SECRET.as_bytes()),
        input.as_bytes(),
    );
    let (status, body) = s.cc(&format!("{input}.{}", B64.encode(tag.as_ref()))).await;
    assert_invalid_client(status, &body, "client_secret_jwt with crit");
    // The JWT bearer grant's user assertion.
    let (status, body) = s
        .bearer(
            &sign_with_header(&s.issuer_key, &crit, &s.user_claims("alice")),
            "orders.read",
        )
        .await;
    assert_invalid_grant(status, &body, "user assertion with crit");
}

#[tokio::test]
async fn malformed_client_assertion_requests_are_invalid_request() {
    let s = Setup::new().await;
    let a = s.sign_client(&s.client_claims("pkjwt"));
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("no type", vec![("client_assertion", &a)]),
        (
            "wrong type",
            vec![
                ("client_assertion_type", "urn:example:saml"),
                ("client_assertion", &a),
            ],
        ),
        (
            "assertion and secret",
            vec![
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", &a),
                ("client_secret", "x"),
                ("client_id", "pkjwt"),
            ],
        ),
    ];
    for (what, extra) in cases {
        let mut form = vec![("grant_type", "client_credentials")];
        form.extend(extra);
        let (status, _, body) = s.post("/oauth2/v1/token", &form).await;
        assert_eq!(status, 400, "{what}: {body}");
        assert_eq!(body["error"], "invalid_request", "{what}: {body}");
    }
    // A private_key_jwt client cannot fall back to a secret or to nothing.
    let (status, _, body) = s
        .post(
            "/oauth2/v1/token",
            &[("grant_type", "client_credentials"), ("client_id", "pkjwt")],
        )
        .await;
    assert_invalid_client(status, &body, "client_id only");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("private_key_jwt"),
        "{body}"
    );
    // A secret client cannot authenticate with an assertion.
    let backend_key = key(SigningAlg::RS256, "b");
    let (status, body) = s
        .cc(&jws::sign(&backend_key, "JWT", &s.client_claims("backend")).unwrap())
        .await;
    assert_invalid_client(status, &body, "assertion for a client_secret_basic client");
}

#[tokio::test]
async fn client_secret_jwt_verifies_the_hmac_with_the_secret() {
    let s = Setup::new().await;
    for alg in ["HS256", "HS384", "HS512"] {
        let (status, body) = s
            .cc(&hmac_jwt(
                alg,
                HMAC_SECRET.as_bytes(),
                &s.client_claims("secretjwt"),
            ))
            .await;
        // RFC 7518 s3.2: a key at least the size of the hash's output MUST be used; the
        // secret's 50 bytes are too few for HS512's 64.
        if alg == "HS512" {
            assert_invalid_client(status, &body, "HS512 keyed with 50 bytes");
        } else {
            assert_eq!(status, 200, "{alg}: {body}");
        }
    }
    let (status, body) = s
        .cc(&hmac_jwt("HS256", b"wrong secret", &s.client_claims("secretjwt")))
        .await;
    assert_invalid_client(status, &body, "wrong secret");
    let (status, body) = s.cc(&none_jwt(&s.client_claims("secretjwt"))).await;
    assert_invalid_client(status, &body, "alg none");
    let rsa = key(SigningAlg::RS256, "x");
    let (status, body) = s
        .cc(&jws::sign(&rsa, "JWT", &s.client_claims("secretjwt")).unwrap())
        .await;
    assert_invalid_client(status, &body, "RS256 for a client_secret_jwt client");
    // The secret itself is refused as a client_secret.
    let (status, _, body) = s
        .post(
            "/oauth2/v1/token",
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "secretjwt"),
                ("client_secret", HMAC_SECRET),
            ],
        )
        .await;
    assert_invalid_client(status, &body, "client_secret_post for a client_secret_jwt client");
}

#[tokio::test]
async fn assertions_authenticate_at_introspection_and_revocation() {
    let s = Setup::new().await;
    let (status, body) = s.cc(&s.sign_client(&s.client_claims("pkjwt"))).await;
    assert_eq!(status, 200);
    let token = body["access_token"].as_str().unwrap().to_string();
    let a = s.sign_client(&s.client_claims("pkjwt"));
    let (status, headers, body) = s
        .post_asserted("/oauth2/v1/introspect", &[("token", &token)], &a)
        .await;
    assert_eq!((status, &body["active"]), (200, &json!(true)), "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    // The same assertion again: a replay, at any endpoint.
    let (status, _, body) = s
        .post_asserted("/oauth2/v1/revoke", &[("token", &token)], &a)
        .await;
    assert_invalid_client(status, &body, "replay at revocation");
    let a = s.sign_client(&s.client_claims("pkjwt"));
    let (status, _, _) = s
        .post_asserted("/oauth2/v1/revoke", &[("token", &token)], &a)
        .await;
    assert_eq!(status, 200);
    let a = s.sign_client(&s.client_claims("pkjwt"));
    let (_, _, body) = s
        .post_asserted("/oauth2/v1/introspect", &[("token", &token)], &a)
        .await;
    assert_eq!(body, json!({"active": false}));
}

/// A JWK Set server the test controls: it answers `keys` (503 while they are null) and counts
/// the GETs it receives.
pub(crate) async fn serve_jwks(keys: Arc<Mutex<Value>>) -> (String, Arc<Mutex<u32>>) {
    serve_jwks_after(keys, Duration::ZERO).await
}

/// [`serve_jwks`], answering each GET only after `delay` (so that requests overlap).
async fn serve_jwks_after(keys: Arc<Mutex<Value>>, delay: Duration) -> (String, Arc<Mutex<u32>>) {
    use axum::response::IntoResponse;
    let hits = Arc::new(Mutex::new(0u32));
    let h = hits.clone();
    let router = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || {
            let keys = keys.clone();
            let h = h.clone();
            async move {
                *h.lock().unwrap() += 1;
                tokio::time::sleep(delay).await;
                let keys = keys.lock().unwrap().clone();
                if keys.is_null() {
                    axum::http::StatusCode::SERVICE_UNAVAILABLE.into_response()
                } else {
                    axum::Json(keys).into_response()
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (format!("http://{addr}/jwks"), hits)
}

/// Options letting clients' jwks_uri be on loopback (the test's JWK Set server).
fn private_jwks_uri() -> Opts {
    Opts {
        domain_keys: "allow_private_jwks_uri = true".into(),
        ..Opts::default()
    }
}

#[tokio::test]
async fn jwks_uri_keys_are_fetched_cached_and_refetched_for_a_new_key() {
    let k1 = key(SigningAlg::ES256, "r1");
    let published = Arc::new(Mutex::new(json!({"keys": [k1.public_jwk()]})));
    let (uri, hits) = serve_jwks(published.clone()).await;
    let s = Setup::with(private_jwks_uri(), Some(&uri)).await;
    for _ in 0..2 {
        let (status, body) = s
            .cc(&jws::sign(&k1, "JWT", &s.client_claims("remote")).unwrap())
            .await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(*hits.lock().unwrap(), 1, "the second use came from the cache");
    // The client rotates to a new key: an unknown kid makes the server fetch again.
    let k2 = key(SigningAlg::ES256, "r2");
    *published.lock().unwrap() = json!({"keys": [k2.public_jwk()]});
    let (status, body) = s
        .cc(&jws::sign(&k2, "JWT", &s.client_claims("remote")).unwrap())
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(*hits.lock().unwrap(), 2);
    // A key the client never published fails, and does not make the server fetch on every request.
    let k3 = key(SigningAlg::ES256, "r3");
    for _ in 0..3 {
        let (status, body) = s
            .cc(&jws::sign(&k3, "JWT", &s.client_claims("remote")).unwrap())
            .await;
        assert_invalid_client(status, &body, "unpublished key");
    }
    assert_eq!(*hits.lock().unwrap(), 2, "refetches are rate-limited");
}

/// While a client's jwks_uri fails, requests naming the client (which anyone can send) do not
/// each make the server fetch it: one fetch at a time, shared by the requests waiting for it,
/// and none again for 30 s after a failure, refresh for an unknown key included.
#[tokio::test]
async fn a_failing_jwks_uri_is_fetched_once_per_30_s_however_many_requests_name_it() {
    let k1 = key(SigningAlg::ES256, "r1");
    let published = Arc::new(Mutex::new(Value::Null));
    let (uri, hits) = serve_jwks_after(published.clone(), Duration::from_millis(300)).await;
    let s = Setup::with(private_jwks_uri(), Some(&uri)).await;
    let assertion = || jws::sign(&k1, "JWT", &s.client_claims("remote")).unwrap();
    let assertions: Vec<String> = (0..8).map(|_| assertion()).collect();
    let raced = futures_util::future::join_all(assertions.iter().map(|a| s.cc(a))).await;
    for (status, body) in &raced {
        assert_invalid_client(*status, body, "jwks_uri failing");
    }
    assert_eq!(
        *hits.lock().unwrap(),
        1,
        "eight requests on a cold cache, one fetch"
    );
    for _ in 0..3 {
        let (status, body) = s.cc(&assertion()).await;
        assert_invalid_client(status, &body, "jwks_uri failed recently");
    }
    assert_eq!(*hits.lock().unwrap(), 1, "no fetch within 30 s of a failure");
    s.app.clock.advance(31);
    let (status, body) = s.cc(&assertion()).await;
    assert_invalid_client(status, &body, "jwks_uri still failing");
    assert_eq!(*hits.lock().unwrap(), 2, "tried again after 30 s");
    // It recovers: after 30 s more the keys are fetched and used.
    *published.lock().unwrap() = json!({"keys": [k1.public_jwk()]});
    s.app.clock.advance(31);
    let (status, body) = s.cc(&assertion()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(*hits.lock().unwrap(), 3);
    // Eight assertions by a key the client does not publish, with the cache expired: one fetch
    // for the expiry, shared, and one refresh for the unknown key, shared.
    s.app.clock.advance(301);
    let stranger = key(SigningAlg::ES256, "r9");
    let assertions: Vec<String> = (0..8)
        .map(|_| jws::sign(&stranger, "JWT", &s.client_claims("remote")).unwrap())
        .collect();
    let raced = futures_util::future::join_all(assertions.iter().map(|a| s.cc(a))).await;
    for (status, body) in &raced {
        assert_invalid_client(*status, body, "unpublished key");
    }
    assert_eq!(*hits.lock().unwrap(), 5, "one fetch and one refresh");
}

/// When fetching a client's jwks_uri fails after its keys expired, the last good keys still
/// serve, for up to an hour past their 5 minutes.
#[tokio::test]
async fn the_last_good_jwks_uri_keys_serve_while_a_refresh_fails() {
    let k1 = key(SigningAlg::ES256, "r1");
    let published = Arc::new(Mutex::new(json!({"keys": [k1.public_jwk()]})));
    let (uri, hits) = serve_jwks(published.clone()).await;
    let s = Setup::with(private_jwks_uri(), Some(&uri)).await;
    let use_k1 = || async {
        s.cc(&jws::sign(&k1, "JWT", &s.client_claims("remote")).unwrap())
            .await
    };
    let (status, body) = use_k1().await;
    assert_eq!(status, 200, "{body}");
    let fetched = s.now();
    *published.lock().unwrap() = Value::Null;
    s.app.clock.advance(301);
    let (status, body) = use_k1().await;
    assert_eq!(status, 200, "stale keys serve: {body}");
    assert_eq!(*hits.lock().unwrap(), 2, "the refresh was tried");
    let (status, body) = use_k1().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(*hits.lock().unwrap(), 2, "no fetch within 30 s of a failure");
    s.app.clock.advance(31);
    let (status, body) = use_k1().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(*hits.lock().unwrap(), 3, "tried again after 30 s");
    // An hour past their 5 minutes, the old keys no longer serve.
    s.app.clock.set(fetched + 300 + 3600);
    let (status, body) = use_k1().await;
    assert_invalid_client(status, &body, "keys too old");
    assert_eq!(*hits.lock().unwrap(), 4);
    *published.lock().unwrap() = json!({"keys": [k1.public_jwk()]});
    s.app.clock.advance(31);
    let (status, body) = use_k1().await;
    assert_eq!(status, 200, "fetched again: {body}");
    assert_eq!(*hits.lock().unwrap(), 5);
}

/// A proxy named by HTTP_PROXY or HTTPS_PROXY would resolve the jwks_uri's host itself,
/// bypassing the address check and the pinning: the fetch never goes through one.
#[tokio::test]
async fn jwks_uri_fetches_ignore_the_proxy_environment() {
    use crate::harness::{argon_hash, config_text, fresh_database};
    use crate::process::{free_port, spawn_serve, stops_on_sigterm, wait_until};
    let k1 = key(SigningAlg::ES256, "r1");
    let (uri, hits) = serve_jwks(Arc::new(Mutex::new(json!({"keys": [k1.public_jwk()]})))).await;
    // The proxy: counts connections and answers 502.
    let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_url = format!("http://{}", proxy.local_addr().unwrap());
    let proxied = Arc::new(Mutex::new(0u32));
    let p = proxied.clone();
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        while let Ok((mut conn, _)) = proxy.accept().await {
            *p.lock().unwrap() += 1;
            let _ = conn
                .write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .await;
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let db = fresh_database(dir.path()).await;
    let opts = Opts {
        domain_extra: format!(
            r#"
  [[domain.client]]
  client_id = "remote"
  token_endpoint_auth_method = "private_key_jwt"
  grant_types = ["client_credentials"]
  scopes = ["orders.read"]
  jwks_uri = "{uri}"
"#
        ),
        ..private_jwks_uri()
    };
    let config = dir.path().join("ostiary.toml");
    std::fs::write(&config, config_text(port, &db, dir.path(), &opts, &argon_hash())).unwrap();
    let env = [
        ("HTTP_PROXY", proxy_url.as_str()),
        ("http_proxy", proxy_url.as_str()),
        ("HTTPS_PROXY", proxy_url.as_str()),
        ("https_proxy", proxy_url.as_str()),
        ("ALL_PROXY", proxy_url.as_str()),
        ("NO_PROXY", ""),
        ("no_proxy", ""),
    ];
    let mut child = spawn_serve(&config, port, std::process::Stdio::null(), &env);
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let token = |jti: String| {
        let claims = json!({
            "iss": "remote", "sub": "remote", "aud": base,
            "exp": ostiary::clock::system_now() + 60, "jti": jti,
        });
        let a = jws::sign(&k1, "JWT", &claims).unwrap();
        let http = &http;
        let url = format!("{base}/oauth2/v1/token");
        async move {
            http.post(url)
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("client_assertion_type", ASSERTION_TYPE),
                    ("client_assertion", a.as_str()),
                ])
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }
    };
    wait_until("the server to answer", || async {
        token(ostiary::crypto::secrets::random_id()).await != 0
    })
    .await;
    let status = token(ostiary::crypto::secrets::random_id()).await;
    stops_on_sigterm(&mut child).await;
    assert_eq!(*proxied.lock().unwrap(), 0, "the proxy was asked");
    assert_eq!(status, 200);
    assert!(*hits.lock().unwrap() >= 1);
}

#[tokio::test]
async fn jwks_uri_on_a_loopback_address_is_refused_unless_allowed() {
    let k1 = key(SigningAlg::ES256, "r1");
    let (uri, hits) = serve_jwks(Arc::new(Mutex::new(json!({"keys": [k1.public_jwk()]})))).await;
    let s = Setup::with(Opts::default(), Some(&uri)).await;
    let (status, body) = s
        .cc(&jws::sign(&k1, "JWT", &s.client_claims("remote")).unwrap())
        .await;
    assert_invalid_client(status, &body, "loopback jwks_uri");
    assert_eq!(*hits.lock().unwrap(), 0, "nothing was fetched");
}

#[tokio::test]
async fn jwt_bearer_grant_issues_an_access_token_for_the_asserted_user() {
    let s = Setup::new().await;
    let (status, body) = s
        .bearer(&s.sign_user(&s.user_claims("alice")), "orders.read openid")
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "orders.read openid");
    assert!(body.get("refresh_token").is_none(), "{body}");
    assert!(body.get("id_token").is_none(), "{body}");
    let alice = s
        .app
        .handle()
        .state()
        .store
        .find_user("default", "alice")
        .await
        .unwrap()
        .unwrap();
    let (_, claims) = jwt_parts(body["access_token"].as_str().unwrap());
    assert_eq!(claims["sub"], json!(alice.id));
    assert_eq!(claims["client_id"], "pkjwt");
    // The token works at userinfo: it is alice's.
    let resp = s
        .app
        .get("/oauth2/v1/userinfo")
        .bearer_auth(body["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let info: Value = resp.json().await.unwrap();
    assert_eq!(info["sub"], json!(alice.id));
    // aud may be the issuer too, and an array.
    let mut c = s.user_claims("alice");
    c["aud"] = json!(["https://other.example", s.app.issuer]);
    let (status, body) = s.bearer(&s.sign_user(&c), "orders.read").await;
    assert_eq!(status, 200, "{body}");
}

/// One rule for `aud` (RFC 7523 s3 item 3): client assertions and user assertions alike may
/// name the issuer, the token endpoint or its mutual-TLS alias (RFC 8705 s5).
#[tokio::test]
async fn both_kinds_of_assertion_may_name_the_mtls_alias_token_endpoint() {
    let opts = Opts {
        server_extra: "client_certificate_header = \"X-Client-Cert\"\ntrusted_proxies = [\"127.0.0.1\"]"
            .into(),
        domain_keys: "mtls_issuer = \"https://mtls.example.com\"".into(),
        ..Opts::default()
    };
    let s = Setup::with(opts, None).await;
    let alias = "https://mtls.example.com/oauth2/v1/token";
    let mut user = s.user_claims("alice");
    user["aud"] = json!(alias);
    let (status, body) = s.bearer(&s.sign_user(&user), "orders.read").await;
    assert_eq!(status, 200, "user assertion for the alias: {body}");
    let mut client = s.client_claims("pkjwt");
    client["aud"] = json!(alias);
    let (status, body) = s.cc(&s.sign_client(&client)).await;
    assert_eq!(status, 200, "client assertion for the alias: {body}");
    // Another host's token endpoint is still no audience of this server.
    let mut user = s.user_claims("alice");
    user["aud"] = json!("https://elsewhere.example/oauth2/v1/token");
    let (status, body) = s.bearer(&s.sign_user(&user), "orders.read").await;
    assert_invalid_grant(status, &body, "another host's token endpoint");
}

/// RFC 7519 s2: a NumericDate "can represent non-integer values": exp, iat and nbf with a
/// fraction are read in whole seconds, rounded down; strings are still refused.
#[tokio::test]
async fn assertion_times_may_have_fractions_of_a_second() {
    let s = Setup::new().await;
    let now = s.now() as f64;
    let fractional = |mut c: Value| {
        c["exp"] = json!(now + 60.25);
        c["iat"] = json!(now - 0.5);
        c["nbf"] = json!(now - 1.75);
        c
    };
    let (status, body) = s.cc(&s.sign_client(&fractional(s.client_claims("pkjwt")))).await;
    assert_eq!(status, 200, "client assertion: {body}");
    let (status, body) = s
        .bearer(&s.sign_user(&fractional(s.user_claims("alice"))), "orders.read")
        .await;
    assert_eq!(status, 200, "user assertion: {body}");
    let mut c = s.client_claims("pkjwt");
    c["exp"] = json!((s.now() + 60).to_string());
    let (status, body) = s.cc(&s.sign_client(&c)).await;
    assert_invalid_client(status, &body, "exp as a string");
    let mut c = s.user_claims("alice");
    c["iat"] = json!(s.now().to_string());
    let (status, body) = s.bearer(&s.sign_user(&c), "orders.read").await;
    assert_invalid_grant(status, &body, "iat as a string");
}

#[tokio::test]
async fn bad_user_assertions_are_invalid_grant() {
    let s = Setup::new().await;
    let now = s.now();
    let with = |name: &str, value: Value| {
        let mut c = s.user_claims("alice");
        c[name] = value;
        c
    };
    let stranger = key(SigningAlg::ES256, "idp-k1");
    let public = s.issuer_key.public_jwk();
    let replayed = s.sign_user(&s.user_claims("alice"));
    assert_eq!(s.bearer(&replayed, "orders.read").await.0, 200);
    let cases: Vec<(&str, String)> = vec![
        ("replayed", replayed),
        ("expired", s.sign_user(&with("exp", json!(now - 1)))),
        (
            "exp too far ahead",
            s.sign_user(&with("exp", json!(now + 86_400))),
        ),
        (
            "wrong audience",
            s.sign_user(&with("aud", json!("https://elsewhere.example"))),
        ),
        (
            "untrusted issuer",
            s.sign_user(&with("iss", json!("https://evil.example"))),
        ),
        ("no jti", {
            let mut c = s.user_claims("alice");
            c.as_object_mut().unwrap().remove("jti");
            s.sign_user(&c)
        }),
        (
            "unknown key",
            jws::sign(&stranger, "JWT", &s.user_claims("alice")).unwrap(),
        ),
        ("alg none", none_jwt(&s.user_claims("alice"))),
        (
            "HS256 keyed with the public key",
            hmac_jwt("HS256", public.to_string().as_bytes(), &s.user_claims("alice")),
        ),
        ("unknown user", s.sign_user(&s.user_claims("mallory"))),
        ("a NUL in sub", s.sign_user(&with("sub", json!("alice\u{0}")))),
        ("a NUL in jti", s.sign_user(&with("jti", json!("j\u{0}1")))),
        ("disabled user", s.sign_user(&s.user_claims("bob"))),
        ("not a JWT", "abc".to_string()),
    ];
    for (what, assertion) in cases {
        let (status, body) = s.bearer(&assertion, "orders.read").await;
        assert_invalid_grant(status, &body, what);
    }
    // Scopes the client may not have are invalid_scope.
    let (status, body) = s
        .bearer(&s.sign_user(&s.user_claims("alice")), "billing.read")
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_scope")),
        "{body}"
    );
    // A client without the grant.
    let resp = s
        .app
        .post_basic(
            "/oauth2/v1/token",
            "backend",
            &[
                ("grant_type", JWT_BEARER),
                ("assertion", &s.sign_user(&s.user_claims("alice"))),
            ],
        )
        .await;
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unauthorized_client")),
        "{body}"
    );
}

#[tokio::test]
async fn assertion_issuer_keys_from_a_file_and_subjects_by_user_id() {
    let issuer_key = key(SigningAlg::RS256, "file-k");
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let path = dir.path().join("idp-jwks.json");
    std::fs::write(&path, json!({"keys": [issuer_key.public_jwk()]}).to_string()).unwrap();
    let opts = Opts {
        dir: Some(dir),
        domain_extra: format!(
            r#"
  [[domain.client]]
  client_id = "federated"
  secret_hash = "{hash}"
  grant_types = ["{JWT_BEARER}"]
  scopes = ["orders.read"]

  [[domain.assertion_issuer]]
  issuer = "https://files.example"
  jwks_file = "{path}"
  subject = "user_id"
"#,
            hash = ostiary::crypto::secrets::SecretHash::sha256_string("federated-secret"),
            path = path.display(),
        ),
        ..Opts::default()
    };
    let app = TestApp::spawn_with(opts).await;
    let alice = app
        .handle()
        .state()
        .store
        .find_user("default", "alice")
        .await
        .unwrap()
        .unwrap();
    let now = app.clock.now();
    let claims = |sub: &str| json!({"iss": "https://files.example", "sub": sub, "aud": app.issuer, "exp": now + 60, "jti": ostiary::crypto::secrets::random_id()});
    let grant = |assertion: String| {
        let app = &app;
        async move {
            let resp = app
                .post("/oauth2/v1/token")
                .basic_auth("federated", Some("federated-secret"))
                .form(&[("grant_type", JWT_BEARER), ("assertion", assertion.as_str())])
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = grant(jws::sign(&issuer_key, "JWT", &claims(&alice.id)).unwrap()).await;
    assert_eq!(status, 200, "{body}");
    let (_, at) = jwt_parts(body["access_token"].as_str().unwrap());
    assert_eq!(at["sub"], json!(alice.id));
    assert_eq!(body["scope"], "orders.read", "the client's default scopes");
    // With subject = user_id, a username is not a subject.
    let (status, body) = grant(jws::sign(&issuer_key, "JWT", &claims("alice")).unwrap()).await;
    assert_invalid_grant(status, &body, "username where a user id is expected");
}

#[tokio::test]
async fn a_client_assertion_raced_in_parallel_is_accepted_once() {
    let s = Setup::new().await;
    let a = s.sign_client(&s.client_claims("pkjwt"));
    let results = futures_util::future::join_all((0..8).map(|_| s.cc(&a))).await;
    let ok = results.iter().filter(|(status, _)| *status == 200).count();
    assert_eq!(ok, 1, "{results:?}");
    for (status, body) in results.iter().filter(|(status, _)| *status != 200) {
        assert_invalid_client(*status, body, "raced replay");
    }
}
