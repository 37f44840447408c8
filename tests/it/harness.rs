//! Starts the real server on 127.0.0.1:0 against a fresh database (SQLite by default; a fresh
//! PostgreSQL database per app when OSTIARY_TEST_DATABASE_URL is set) and talks to it over HTTP.

use std::sync::Arc;

use ostiary::app::{ServerHandle, start};
use ostiary::clock::{TestClock, system_now};
use ostiary::config::Config;
use ostiary::crypto::secrets::{SecretHash, argon2_hash, random_id};
use serde_json::Value;
use sqlx::{Connection, Executor};

/// The test secret of a client.
pub fn secret(client_id: &str) -> String {
    format!("{client_id}-secret-abcdefghijklmnopqrstuvwxyz012345")
}

/// True when the suite runs on PostgreSQL.
pub fn on_postgres() -> bool {
    std::env::var("OSTIARY_TEST_DATABASE_URL").is_ok_and(|u| u.starts_with("postgres"))
}

/// A fresh database URL for one app (a temp SQLite file, or a new PostgreSQL database).
pub async fn fresh_database(dir: &std::path::Path) -> String {
    match std::env::var("OSTIARY_TEST_DATABASE_URL") {
        Ok(url) if url.starts_with("postgres") => {
            sqlx::any::install_default_drivers();
            let name = format!("t_{}", random_id().to_lowercase().replace(['-', '_'], ""));
            let mut conn = sqlx::AnyConnection::connect(&url)
                .await
                .expect("connect to test PostgreSQL");
            conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .await
                .expect("create database");
            let mut u = url::Url::parse(&url).expect("database url");
            u.set_path(&format!("/{name}"));
            u.to_string()
        }
        _ => format!("sqlite://{}/ostiary.db", dir.display()),
    }
}

/// Variations of the standard test configuration.
#[derive(Clone, Default)]
pub struct Opts {
    /// TOML appended to the `[keys]` section.
    pub keys_extra: String,
    /// TOML appended to the `[server]` section.
    pub server_extra: String,
    /// TOML appended to the `[database]` section.
    pub database_extra: String,
    /// Clients to leave out of the default domain.
    pub without_clients: Vec<&'static str>,
    /// Database URL to share with another app.
    pub database_url: Option<String>,
    /// Temp dir to share with another app (same KEK file).
    pub dir: Option<Arc<tempfile::TempDir>>,
    /// TOML appended to the default domain (after its users).
    pub domain_extra: String,
    /// TOML inserted into the default domain right after its issuer: domain keys such as
    /// `session_max_lifetime = "10m"` (which `domain_extra`, after the sub-tables, cannot set).
    pub domain_keys: String,
    /// Serve another app's issuer (a replica behind a load balancer): requests carry its Host.
    pub issuer_port: Option<u16>,
}

/// A running test server.
pub struct TestApp {
    /// Where this server listens (`http://127.0.0.1:PORT`).
    pub base: String,
    /// The default domain's issuer (`http://127.0.0.1:PORT`).
    pub issuer: String,
    /// The path-prefixed second domain's issuer.
    pub issuer2: String,
    /// The server's clock.
    pub clock: Arc<TestClock>,
    /// Working directory (SQLite file, KEK file, config file).
    pub dir: Arc<tempfile::TempDir>,
    /// The database URL.
    pub database_url: String,
    /// The configuration text it runs.
    pub config_text: String,
    /// HTTP client.
    pub http: reqwest::Client,
    handle: Option<ServerHandle>,
}

/// The standard test configuration for a server on `port`.
pub fn config_text(port: u16, database_url: &str, dir: &std::path::Path, opts: &Opts, argon: &str) -> String {
    let sha = |id: &str| SecretHash::sha256_string(&secret(id));
    let clients = [
        (
            "backend",
            format!(
                r#"
  [[domain.client]]
  client_id = "backend"
  name = "Backend"
  secret_hash = "{}"
  grant_types = ["client_credentials"]
  scopes = ["orders.read", "orders.write", "billing.read"]
"#,
                sha("backend")
            ),
        ),
        (
            "poster",
            format!(
                r#"
  [[domain.client]]
  client_id = "poster"
  secret_hash = "{}"
  token_endpoint_auth_method = "client_secret_post"
  grant_types = ["client_credentials"]
  scopes = ["orders.read"]
  access_token_lifetime = "10m"
"#,
                sha("poster")
            ),
        ),
        (
            "opaque",
            format!(
                r#"
  [[domain.client]]
  client_id = "opaque"
  secret_hash = "{}"
  grant_types = ["client_credentials"]
  scopes = ["orders.read"]
  access_token_format = "opaque"
"#,
                sha("opaque")
            ),
        ),
        (
            "argon",
            format!(
                r#"
  [[domain.client]]
  client_id = "argon"
  secret_hash = "{argon}"
  grant_types = ["client_credentials"]
  scopes = ["orders.read"]
"#
            ),
        ),
        (
            "public",
            r#"
  [[domain.client]]
  client_id = "public"
  token_endpoint_auth_method = "none"
  redirect_uris = ["http://127.0.0.1/cb"]
"#
            .to_string(),
        ),
        (
            "webapp",
            format!(
                r#"
  [[domain.client]]
  client_id = "webapp"
  name = "Web <App> & Co"
  secret_hash = "{}"
  grant_types = ["authorization_code", "refresh_token"]
  redirect_uris = ["https://app.example.com/cb", "https://app.example.com/cb2"]
  scopes = ["openid", "profile", "email", "address", "phone", "groups", "get_groups", "offline_access", "orders.read", "orders.write", "orders.offline"]
"#,
                sha("webapp")
            ),
        ),
        (
            "spa",
            r#"
  [[domain.client]]
  client_id = "spa"
  name = "Single-page app"
  token_endpoint_auth_method = "none"
  grant_types = ["authorization_code", "refresh_token"]
  redirect_uris = ["http://127.0.0.1/callback"]
  scopes = ["openid", "profile", "offline_access", "orders.read"]
  refresh_token_grace = "30s"
"#
            .to_string(),
        ),
        (
            "firstparty",
            format!(
                r#"
  [[domain.client]]
  client_id = "firstparty"
  name = "First party"
  secret_hash = "{}"
  consent = "skip"
  refresh_tokens = "always"
  grant_types = ["authorization_code", "refresh_token"]
  redirect_uris = ["https://first.example.com/cb"]
  scopes = ["openid", "profile", "email", "orders.read", "offline_access"]
"#,
                sha("firstparty")
            ),
        ),
        (
            "legacy",
            format!(
                r#"
  [[domain.client]]
  client_id = "legacy"
  name = "Legacy"
  secret_hash = "{}"
  token_endpoint_auth_method = "client_secret_post"
  require_pkce = false
  allow_plain_pkce = true
  unknown_scopes = "drop"
  grant_types = ["authorization_code"]
  redirect_uris = ["https://legacy.example.com/cb"]
  scopes = ["openid", "profile", "orders.read"]
"#,
                sha("legacy")
            ),
        ),
        (
            "orders-api",
            format!(
                r#"
  [[domain.client]]
  client_id = "orders-api"
  secret_hash = "{}"
  token_endpoint_auth_method = "client_secret_post"
"#,
                sha("orders-api")
            ),
        ),
        (
            "nogrant",
            format!(
                r#"
  [[domain.client]]
  client_id = "nogrant"
  secret_hash = "{}"
  scopes = ["orders.read"]
"#,
                sha("nogrant")
            ),
        ),
        (
            "other",
            format!(
                r#"
  [[domain.client]]
  client_id = "other"
  secret_hash = "{}"
  grant_types = ["client_credentials"]
  scopes = ["orders.read"]
"#,
                sha("other")
            ),
        ),
    ];
    let clients: String = clients
        .iter()
        .filter(|(id, _)| !opts.without_clients.contains(id))
        .map(|(_, t)| t.as_str())
        .collect();
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
max_body_bytes = 4096
{server_extra}

[database]
url = "{database_url}"
max_connections = 5
{database_extra}

[keys]
kek_file = "{dir}/ostiary.kek"
{refresh}
{keys_extra}

[[domain]]
name = "default"
issuer = "http://127.0.0.1:{port}"
{domain_keys}

  [[domain.resource_server]]
  audience = "https://api.example.com/orders"
  scopes = [
    {{ name = "orders.read", description = "Read orders" }},
    {{ name = "orders.write", description = "Write orders", claims = {{ role = "writer" }} }},
  ]
  access_token_lifetime = "30m"
  claims = {{ tenant = "acme", role = "reader", dept = {{ user_attribute = "department" }} }}
  introspection_clients = ["orders-api"]
  offline_scope = "orders.offline"

  [[domain.resource_server]]
  audience = "https://api.example.com/billing"
  scopes = [{{ name = "billing.read", description = "Read invoices" }}]
{clients}
  [[domain.user]]
  username = "alice"
  password_hash = "{alice}"
  name = "Alice Example"
  given_name = "Alice"
  family_name = "Example"
  email = "alice@example.com"
  email_verified = true
  phone_number = "+1 555 0100"
  address = {{ street_address = "1 Main St", locality = "Springfield", country = "US" }}
  locale = "en-US"
  groups = ["staff", "admins"]
  attributes = {{ department = "sales" }}

  [[domain.user]]
  username = "bob"
  password_hash = "{bob}"
  enabled = false

  [[domain.user]]
  username = "carol"
  password_hash = "{carol}"
  email = "carol@example.com"
{domain_extra}
[[domain]]
name = "tenant2"
issuer = "http://127.0.0.1:{port}/tenant2"
access_token_signing_alg = "ES256"

  [[domain.resource_server]]
  audience = "https://api.example.com/orders"
  scopes = [{{ name = "orders.read", description = "Read orders" }}]

  [[domain.client]]
  client_id = "backend"
  secret_hash = "{t2}"
  grant_types = ["client_credentials"]
  scopes = ["orders.read"]
"#,
        dir = dir.display(),
        keys_extra = opts.keys_extra,
        // `keys_extra` may set its own refresh_interval.
        refresh = if opts.keys_extra.contains("refresh_interval") {
            ""
        } else {
            "refresh_interval = \"1s\""
        },
        server_extra = opts.server_extra,
        database_extra = opts.database_extra,
        t2 = SecretHash::sha256_string(&format!("t2-{}", secret("backend"))),
        alice = password_hash("alice"),
        bob = password_hash("bob"),
        carol = password_hash("carol"),
        domain_extra = opts.domain_extra,
        domain_keys = opts.domain_keys,
    )
}

/// The TOML of a client of the admin API with one role (its secret: [`secret`]).
pub fn admin_client(client_id: &str, role: &str) -> String {
    format!(
        r#"
  [[domain.client]]
  client_id = "{client_id}"
  secret_hash = "{}"
  grant_types = ["client_credentials"]
  admin_roles = ["{role}"]
"#,
        ostiary::crypto::secrets::SecretHash::sha256_string(&secret(client_id))
    )
}

/// The test password of a user: `{username}-password`.
pub fn password(username: &str) -> String {
    format!("{username}-password")
}

/// The argon2id hash of a test user's password (computed once per process and user).
pub fn password_hash(username: &str) -> String {
    static H: std::sync::OnceLock<std::sync::Mutex<std::collections::HashMap<String, String>>> =
        std::sync::OnceLock::new();
    let map = H.get_or_init(Default::default);
    let mut m = map.lock().expect("lock");
    m.entry(username.to_string())
        .or_insert_with(|| argon2_hash(&password(username)).expect("argon2"))
        .clone()
}

/// The argon2id hash used by the `argon` client (computed once per process).
pub fn argon_hash() -> String {
    static H: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    H.get_or_init(|| argon2_hash(&secret("argon")).expect("argon2"))
        .clone()
}

impl TestApp {
    /// Starts a server with the standard configuration.
    pub async fn spawn() -> TestApp {
        Self::spawn_with(Opts::default()).await
    }

    /// Starts a server with variations.
    pub async fn spawn_with(opts: Opts) -> TestApp {
        let dir = match &opts.dir {
            Some(d) => d.clone(),
            None => Arc::new(tempfile::tempdir().expect("tempdir")),
        };
        let database_url = match &opts.database_url {
            Some(u) => u.clone(),
            None => fresh_database(dir.path()).await,
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let real_port = listener.local_addr().expect("addr").port();
        let port = opts.issuer_port.unwrap_or(real_port);
        let config_text = config_text(port, &database_url, dir.path(), &opts, &argon_hash());
        let config =
            Config::from_toml_str(&config_text).unwrap_or_else(|e| panic!("test config invalid:\n{e}"));
        let clock = TestClock::new(system_now());
        let handle = start(config, listener, clock.clone())
            .await
            .expect("server starts");
        TestApp {
            base: format!("http://127.0.0.1:{real_port}"),
            issuer: format!("http://127.0.0.1:{port}"),
            issuer2: format!("http://127.0.0.1:{port}/tenant2"),
            clock,
            dir,
            database_url,
            config_text,
            http: reqwest::Client::new(),
            handle: Some(handle),
        }
    }

    /// The running server.
    pub fn handle(&self) -> &ServerHandle {
        self.handle.as_ref().expect("running")
    }

    /// Stops the server gracefully.
    pub async fn stop(mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown().await;
        }
    }

    /// Writes the configuration to a file (for the CLI) and returns its path.
    pub fn write_config(&self) -> std::path::PathBuf {
        let path = self.dir.path().join("config.toml");
        std::fs::write(&path, &self.config_text).expect("write config");
        path
    }

    /// A POST to this server for a path under the default domain, with the issuer's Host.
    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        let host = self.issuer.trim_start_matches("http://").to_string();
        self.http
            .post(format!("{}{path}", self.base))
            .header("host", host)
    }

    /// A GET to this server for a path under the default domain, with the issuer's Host.
    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        let host = self.issuer.trim_start_matches("http://").to_string();
        self.http.get(format!("{}{path}", self.base)).header("host", host)
    }

    /// POSTs a form to `{issuer}{path}` with HTTP Basic credentials of `client`.
    pub async fn post_basic(&self, path: &str, client: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.post(path)
            .basic_auth(client, Some(secret(client)))
            .form(form)
            .send()
            .await
            .expect("request")
    }

    /// POSTs a form (credentials, if any, in the form).
    pub async fn post_form(&self, url: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.http.post(url).form(form).send().await.expect("request")
    }

    /// A client_credentials token for `client` (Basic) with optional extra parameters; panics unless 200.
    pub async fn token(&self, client: &str, extra: &[(&str, &str)]) -> Value {
        let mut form = vec![("grant_type", "client_credentials")];
        form.extend_from_slice(extra);
        let resp = self.post_basic("/oauth2/v1/token", client, &form).await;
        let status = resp.status();
        let body: Value = resp.json().await.expect("json");
        assert_eq!(status, 200, "token for {client}: {body}");
        body
    }

    /// The access token string of a fresh client_credentials token.
    pub async fn access_token(&self, client: &str) -> String {
        self.token(client, &[]).await["access_token"]
            .as_str()
            .expect("access_token")
            .to_string()
    }

    /// Introspects `token` as `caller` (client_secret_post for orders-api, Basic otherwise).
    pub async fn introspect(&self, caller: &str, token: &str) -> Value {
        let resp = if caller == "orders-api" || caller == "poster" {
            let s = secret(caller);
            self.post("/oauth2/v1/introspect")
                .form(&[
                    ("client_id", caller),
                    ("client_secret", s.as_str()),
                    ("token", token),
                ])
                .send()
                .await
                .expect("request")
        } else {
            self.post_basic("/oauth2/v1/introspect", caller, &[("token", token)])
                .await
        };
        assert_eq!(resp.status(), 200);
        resp.json().await.expect("json")
    }

    /// GETs a JSON document.
    pub async fn get_json(&self, url: &str) -> (reqwest::StatusCode, reqwest::header::HeaderMap, Value) {
        let resp = self.http.get(url).send().await.expect("request");
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.json().await.unwrap_or(Value::Null);
        (status, headers, body)
    }
}

/// Decodes a JWT's header and claims without verifying (for assertions).
pub fn jwt_parts(token: &str) -> (Value, Value) {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut it = token.split('.');
    let h = b64.decode(it.next().expect("header")).expect("b64");
    let c = b64.decode(it.next().expect("claims")).expect("b64");
    (
        serde_json::from_slice(&h).expect("json"),
        serde_json::from_slice(&c).expect("json"),
    )
}

/// Verifies a JWT against a JWKS document with the `jsonwebtoken` crate; returns the claims.
pub fn verify_with_jwks(token: &str, jwks: &Value, issuer: &str, audience: &str) -> Result<Value, String> {
    use jsonwebtoken::jwk::JwkSet;
    use jsonwebtoken::{DecodingKey, Validation, decode, decode_header};
    let header = decode_header(token).map_err(|e| e.to_string())?;
    let set: JwkSet = serde_json::from_value(jwks.clone()).map_err(|e| e.to_string())?;
    let kid = header.kid.ok_or("no kid")?;
    let jwk = set.find(&kid).ok_or("kid not in JWKS")?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    let mut v = Validation::new(header.alg);
    v.set_issuer(&[issuer]);
    v.set_audience(&[audience]);
    decode::<Value>(token, &key, &v)
        .map(|d| d.claims)
        .map_err(|e| e.to_string())
}

/// The text of `columns` (an SQL expression list) in every row of `table`, one line a row.
pub async fn rows_text(database_url: &str, table: &str, columns: &str) -> String {
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(database_url).await.expect("connect");
    let rows: Vec<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {} FROM {table}",
        columns.replace(", ", " || ' ' || ")
    )))
    .fetch_all(&mut conn)
    .await
    .expect("rows");
    rows.into_iter().map(|r| r.0).collect::<Vec<_>>().join("\n")
}

/// Counts rows of a table straight from the app's database.
pub async fn count_rows(database_url: &str, table: &str) -> i64 {
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(database_url).await.expect("connect");
    let row: (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
        .fetch_one(&mut conn)
        .await
        .expect("count");
    row.0
}

/// Access tokens redeemed from the codes of `table` (`auth_codes`, `device_codes`) and not revoked,
/// and refresh-token families not revoked, counted straight in the app's database.
pub async fn unrevoked_grants(database_url: &str, table: &str) -> (i64, i64) {
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(database_url).await.expect("connect");
    let sql = format!(
        "SELECT (SELECT COUNT(*) FROM {table} c WHERE c.access_jti IS NOT NULL \
         AND NOT EXISTS (SELECT 1 FROM revoked_jtis r WHERE r.jti = c.access_jti)), \
         (SELECT COUNT(*) FROM refresh_families WHERE revoked_at IS NULL)"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .fetch_one(&mut conn)
        .await
        .expect("count")
}

/// Deletes every consent straight in the app's database, as a withdrawal's first step does and
/// nothing more (its families, codes and logouts untouched); returns how many.
pub async fn delete_consents(database_url: &str) -> u64 {
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(database_url).await.expect("connect");
    sqlx::query("DELETE FROM consents")
        .execute(&mut conn)
        .await
        .expect("delete the consents")
        .rows_affected()
}

/// Marks every live session ended straight in the app's database, as a sign-out's first step
/// does and nothing more (its families, codes and logouts untouched); returns how many.
pub async fn mark_sessions_ended(database_url: &str) -> u64 {
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(database_url).await.expect("connect");
    sqlx::query("UPDATE sessions SET ended_at = 1 WHERE ended_at IS NULL")
        .execute(&mut conn)
        .await
        .expect("end the sessions")
        .rows_affected()
}

/// What a fault injected with [`add_fault`] does to each row its statement touches.
pub enum Fault {
    /// The statement fails, as on a lost connection or a full disk.
    Abort,
    /// The row is skipped silently, as when another writer changed it first (the statement
    /// succeeds, having written nothing).
    Ignore,
    /// This statement runs as well, in the same transaction (`NEW` is the row written): what a
    /// concurrent request could have written at that moment.
    Run(String),
}

/// Injects a fault straight into the app's database: a trigger `name` that fires `when`
/// ("BEFORE UPDATE OF status ON users": SQLite and PostgreSQL spell it alike) for each row. It
/// lets a test fail or interleave one chosen statement of a request, on both stores, with the
/// server's own code untouched. [`drop_fault`] removes it.
pub async fn add_fault(database_url: &str, name: &str, when: &str, fault: Fault) {
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(database_url).await.expect("connect");
    let statements = if database_url.starts_with("postgres") {
        let body = match fault {
            Fault::Abort => "RAISE EXCEPTION 'injected fault';".to_string(),
            Fault::Ignore => "RETURN NULL;".to_string(),
            Fault::Run(sql) => format!("{sql}; RETURN NEW;"),
        };
        vec![
            format!("CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN {body} END $f$"),
            format!("CREATE TRIGGER {name} {when} FOR EACH ROW EXECUTE FUNCTION {name}()"),
        ]
    } else {
        let body = match fault {
            Fault::Abort => "SELECT RAISE(ABORT, 'injected fault')".to_string(),
            Fault::Ignore => "SELECT RAISE(IGNORE)".to_string(),
            Fault::Run(sql) => sql.to_string(),
        };
        vec![format!(
            "CREATE TRIGGER {name} {when} FOR EACH ROW BEGIN {body}; END"
        )]
    };
    for s in statements {
        sqlx::query(sqlx::AssertSqlSafe(s.clone()))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{s}: {e}"));
    }
}

/// Removes a fault [`add_fault`] injected on `table`.
pub async fn drop_fault(database_url: &str, name: &str, table: &str) {
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(database_url).await.expect("connect");
    let mut statements = vec![format!("DROP TRIGGER {name}")];
    if database_url.starts_with("postgres") {
        statements = vec![
            format!("DROP TRIGGER {name} ON {table}"),
            format!("DROP FUNCTION {name}()"),
        ];
    }
    for s in statements {
        sqlx::query(sqlx::AssertSqlSafe(s.clone()))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{s}: {e}"));
    }
}

/// The user's sessions not ended, counted straight in the app's database.
pub async fn live_sessions(database_url: &str, user_id: &str) -> i64 {
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(database_url).await.expect("connect");
    let (n,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM sessions WHERE user_id = $1 AND ended_at IS NULL")
            .bind(user_id)
            .fetch_one(&mut conn)
            .await
            .expect("count");
    n
}

/// Sends `req` with the Authorization header twice (`Bearer token`, then another) and asserts
/// the answer RFC 6750 s3.1 gives a malformed request: 400 with `WWW-Authenticate: Bearer ...
/// error="invalid_request"`, whichever of the two is good.
pub async fn assert_two_bearers_refused(req: reqwest::RequestBuilder, token: &str) {
    let resp = req
        .header("authorization", format!("Bearer {token}"))
        .header("authorization", "Bearer other")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 400);
    let challenge = resp.headers()["www-authenticate"].to_str().unwrap_or("");
    assert!(challenge.contains("error=\"invalid_request\""), "{challenge}");
}
