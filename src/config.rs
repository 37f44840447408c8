//! Typed configuration: a TOML file, overridden key by key from the environment
//! (`OSTIARY_SERVER__LISTEN`, `OSTIARY_DOMAIN__0__ISSUER`), with unknown keys refused and every
//! semantic problem reported with its key path.
//!
//! Environment overrides are applied by hand rather than through a layered-config crate because
//! `[[domain]]` is an array of tables and the overrides must address its elements by index.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize};

use crate::crypto::keys::SigningAlg;
use crate::crypto::secrets::SecretHash;

/// Prefix of environment variables that override configuration keys.
pub const ENV_PREFIX: &str = "OSTIARY_";

/// One configuration problem, with the key path it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted key path, e.g. `domain[0].client[1].redirect_uris[0]`.
    pub path: String,
    /// What is wrong, for a person.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every problem found in a configuration; Display lists one per line.
#[derive(Debug, Clone, Default)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl ConfigErrors {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigError {
            path: path.into(),
            message: message.into(),
        });
    }
}

/// A duration in whole seconds, written `"30s"`, `"10m"`, `"1h"`, `"7d"` or as an integer of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Default)]
pub struct Seconds(pub i64);

impl Seconds {
    /// Parses `"90s"`, `"15m"`, `"1h"`, `"7d"`, `"0"` or `"3600"`.
    pub fn parse(s: &str) -> Option<Seconds> {
        let s = s.trim();
        let (num, mult) = match s.char_indices().last()? {
            (i, 's') => (&s[..i], 1),
            (i, 'm') => (&s[..i], 60),
            (i, 'h') => (&s[..i], 3600),
            (i, 'd') => (&s[..i], 86400),
            _ => (s, 1),
        };
        let n: i64 = num.trim().parse().ok()?;
        if n < 0 {
            return None;
        }
        n.checked_mul(mult).map(Seconds)
    }
}

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(i64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) if n >= 0 => Ok(Seconds(n)),
            Raw::Int(_) => Err(serde::de::Error::custom("a duration cannot be negative")),
            Raw::Text(t) => Seconds::parse(&t).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "invalid duration {t:?}: use e.g. \"30s\", \"10m\", \"1h\", \"7d\" or seconds"
                ))
            }),
        }
    }
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listener, logging and limits.
    #[serde(default)]
    pub server: ServerConfig,
    /// Where the store lives.
    #[serde(default)]
    pub database: DatabaseConfig,
    /// Signing-key protection and rotation.
    #[serde(default)]
    pub keys: KeysConfig,
    /// The identity domains served.
    #[serde(default, rename = "domain")]
    pub domains: Vec<DomainConfig>,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `[server]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on. Default `127.0.0.1:8080`.
    pub listen: String,
    /// `text` (default) or `json`.
    pub log_format: LogFormat,
    /// Largest accepted request body; larger ones get 413. Default 65536.
    pub max_body_bytes: usize,
    /// Password hashes verified at once, off the async threads. Default 2.
    pub argon2_max_concurrent: usize,
    /// How often expired rows are removed. Default 60s.
    pub gc_interval: Seconds,
    /// Rows removed per statement by the garbage collector. Default 1000.
    pub gc_batch: i64,
    /// A header set by a trusted reverse proxy whose last address is the client's (for
    /// sign-in throttling per address), e.g. `X-Forwarded-For`. Default: none, the peer address.
    pub client_address_header: Option<String>,
    /// PEM certificate chain of the server; with `tls_key_file`, the main listener speaks TLS
    /// (and the mTLS listener uses it). Default: none, plain HTTP.
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `tls_cert_file`.
    pub tls_key_file: Option<PathBuf>,
    /// Address of a second, TLS listener that asks for client certificates (RFC 8705), e.g.
    /// `0.0.0.0:8443`; needs `tls_cert_file` and `tls_key_file`. Default: none.
    pub mtls_listen: Option<String>,
    /// PEM trust anchors of `tls_client_auth` certificates. Default: none (no certificate is
    /// trusted; `self_signed_tls_client_auth` still works).
    pub client_ca_file: Option<PathBuf>,
    /// A header set by a trusted TLS-terminating proxy carrying the client certificate as
    /// URL-encoded PEM (nginx `$ssl_client_escaped_cert`). Trusted on the main listener only;
    /// the proxy must overwrite it on every request. Default: none (the header is ignored).
    pub client_certificate_header: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8080".into(),
            log_format: LogFormat::Text,
            max_body_bytes: 64 * 1024,
            argon2_max_concurrent: 2,
            gc_interval: Seconds(60),
            gc_batch: 1000,
            client_address_header: None,
            tls_cert_file: None,
            tls_key_file: None,
            mtls_listen: None,
            client_ca_file: None,
            client_certificate_header: None,
        }
    }
}

/// `[database]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://path/to/file.db` (default `sqlite://data/ostiary.db`) or `postgres://...`.
    pub url: String,
    /// Pool size. Default 10.
    pub max_connections: u32,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: "sqlite://data/ostiary.db".into(),
            max_connections: 10,
        }
    }
}

impl DatabaseConfig {
    /// True when the store is an SQLite file.
    pub fn is_sqlite(&self) -> bool {
        self.url.starts_with("sqlite:")
    }

    /// The SQLite file path, when the store is SQLite.
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        let rest = self.url.strip_prefix("sqlite:")?;
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        let rest = rest.split('?').next().unwrap_or(rest);
        Some(PathBuf::from(rest))
    }
}

/// `[keys]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeysConfig {
    /// File holding the key-encryption key; created (with a warning) when missing.
    pub kek_file: PathBuf,
    /// Environment variable holding the key-encryption key; wins over the file.
    pub kek_env: String,
    /// How long a new key is published before it signs. Default 24h.
    pub publish_ahead: Seconds,
    /// Automatic rotation period; 0 disables. Default 90d.
    pub rotation_interval: Seconds,
    /// How often a replica re-reads keys from the store. Default 60s.
    pub refresh_interval: Seconds,
}

impl Default for KeysConfig {
    fn default() -> Self {
        KeysConfig {
            kek_file: PathBuf::from("data/ostiary.kek"),
            kek_env: "OSTIARY_KEK".into(),
            publish_ahead: Seconds(86400),
            rotation_interval: Seconds(90 * 86400),
            refresh_interval: Seconds(60),
        }
    }
}

/// Access token format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenFormat {
    /// RFC 9068 JWT.
    #[default]
    Jwt,
    /// Random reference token, stored hashed.
    Opaque,
}

/// `[[domain]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainConfig {
    /// Short name, unique; used by the CLI's `--domain`.
    pub name: String,
    /// Issuer identifier URL; requests are routed by its host and path.
    pub issuer: String,
    /// Algorithm of access-token signatures. Default RS256.
    #[serde(default = "default_alg")]
    pub access_token_signing_alg: SigningAlg,
    /// Default access-token lifetime. Default 1h.
    #[serde(default = "default_at_lifetime")]
    pub access_token_lifetime: Seconds,
    /// Default access-token format. Default jwt.
    #[serde(default)]
    pub access_token_format: TokenFormat,
    /// APIs that accept this domain's tokens.
    #[serde(default, rename = "resource_server")]
    pub resource_servers: Vec<ResourceServerConfig>,
    /// Registered clients.
    #[serde(default, rename = "client")]
    pub clients: Vec<ClientConfig>,
    /// Static users.
    #[serde(default, rename = "user")]
    pub users: Vec<UserConfig>,
    /// A session ends after this long without use. Default 2h.
    #[serde(default = "default_session_idle")]
    pub session_idle_timeout: Seconds,
    /// A session ends this long after sign-in, used or not. Default 12h.
    #[serde(default = "default_session_max")]
    pub session_max_lifetime: Seconds,
    /// Authorization code lifetime. Default 60s.
    #[serde(default = "default_code_lifetime")]
    pub code_lifetime: Seconds,
    /// ID token lifetime. Default 1h.
    #[serde(default = "default_at_lifetime")]
    pub id_token_lifetime: Seconds,
    /// A refresh token unused this long expires (rotation starts a new idle period). Default 14d.
    #[serde(default = "default_refresh_idle")]
    pub refresh_token_idle_lifetime: Seconds,
    /// A refresh-token family (the grant) ends this long after the sign-in that started it,
    /// whatever the rotations. Default 90d.
    #[serde(default = "default_refresh_max")]
    pub refresh_token_max_lifetime: Seconds,
    /// Failed sign-ins for one username before it is locked out for a while. Default 5.
    #[serde(default = "default_lockout_threshold")]
    pub lockout_threshold: i64,
    /// Failed sign-ins from one client address before it is locked out for a while. Default 20.
    #[serde(default = "default_address_lockout_threshold")]
    pub address_lockout_threshold: i64,
    /// The first lockout; each further failure doubles it. Default 30s.
    #[serde(default = "default_lockout_duration")]
    pub lockout_duration: Seconds,
    /// The longest lockout. Default 15m.
    #[serde(default = "default_lockout_max")]
    pub lockout_max: Seconds,
    /// RFC 8628 s3.2 `expires_in` of device codes. Default 10m.
    #[serde(default = "default_device_code_lifetime")]
    pub device_code_lifetime: Seconds,
    /// RFC 8628 s3.2 `interval`: the slowest a device may poll. Default 5s.
    #[serde(default = "default_device_poll_interval")]
    pub device_poll_interval: Seconds,
    /// Wrong user codes one browser session may type before a pause. Default 5.
    #[serde(default = "default_lockout_threshold")]
    pub user_code_attempts: i64,
    /// Wrong user codes one client address may type before a pause. Default 20.
    #[serde(default = "default_address_lockout_threshold")]
    pub address_user_code_attempts: i64,
    /// The longest a client or user assertion may be valid (its `exp` at most this far ahead).
    /// Default 5m.
    #[serde(default = "default_assertion_max_lifetime")]
    pub assertion_max_lifetime: Seconds,
    /// Let clients' `jwks_uri` point at loopback or private addresses (for tests and labs only).
    /// Default false.
    #[serde(default)]
    pub allow_private_jwks_uri: bool,
    /// Trusted issuers of user assertions for the JWT bearer grant (RFC 7523 s2.1).
    #[serde(default, rename = "assertion_issuer")]
    pub assertion_issuers: Vec<AssertionIssuerConfig>,
    /// RFC 8705 s5: the https base URL under which this domain's endpoints are reached with
    /// mutual TLS (the mTLS listener, or a proxy passing the certificate), e.g.
    /// `https://mtls.example.com:8443`; listed as `mtls_endpoint_aliases`. Default: none.
    #[serde(default)]
    pub mtls_issuer: Option<String>,
}

/// How the `sub` of a user assertion names the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectMapping {
    /// `sub` is the username (default).
    #[default]
    Username,
    /// `sub` is the user's id (the `sub` of this domain's own tokens).
    UserId,
}

/// `[[domain.assertion_issuer]]`: an issuer whose signed assertions about users the JWT bearer
/// grant accepts.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AssertionIssuerConfig {
    /// The `iss` of its assertions.
    pub issuer: String,
    /// Its public keys: a JWK Set inline.
    #[serde(default)]
    pub jwks: Option<serde_json::Value>,
    /// Its public keys: a JWK Set file, read at start and on reload.
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// How `sub` maps to a user. Default username.
    #[serde(default)]
    pub subject: SubjectMapping,
}

fn default_device_code_lifetime() -> Seconds {
    Seconds(600)
}
fn default_device_poll_interval() -> Seconds {
    Seconds(5)
}
fn default_assertion_max_lifetime() -> Seconds {
    Seconds(300)
}

fn default_refresh_idle() -> Seconds {
    Seconds(14 * 86400)
}
fn default_refresh_max() -> Seconds {
    Seconds(90 * 86400)
}
fn default_lockout_threshold() -> i64 {
    5
}
fn default_address_lockout_threshold() -> i64 {
    20
}
fn default_lockout_duration() -> Seconds {
    Seconds(30)
}
fn default_lockout_max() -> Seconds {
    Seconds(900)
}

fn default_session_idle() -> Seconds {
    Seconds(7200)
}
fn default_session_max() -> Seconds {
    Seconds(12 * 3600)
}
fn default_code_lifetime() -> Seconds {
    Seconds(60)
}

/// Whether a client's users see the consent page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConsentPolicy {
    /// Ask, and remember the answer (default).
    #[default]
    Required,
    /// First-party client: never ask.
    Skip,
}

/// What to do with requested scopes a client may not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UnknownScopes {
    /// Answer invalid_scope (default).
    #[default]
    Refuse,
    /// Leave them out of the grant.
    Drop,
}

fn default_alg() -> SigningAlg {
    SigningAlg::RS256
}
fn default_at_lifetime() -> Seconds {
    Seconds(3600)
}
fn default_true() -> bool {
    true
}

/// A custom claim's value: fixed, or taken from a user attribute.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ClaimSource {
    /// `{ user_attribute = "department" }`.
    UserAttribute {
        /// The user's attribute (or standard claim) to copy.
        user_attribute: String,
    },
    /// Any fixed value.
    Static(serde_json::Value),
}

/// A scope a resource server accepts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeConfig {
    /// The scope token.
    pub name: String,
    /// Shown on the consent page.
    #[serde(default)]
    pub description: String,
    /// Claims added to tokens carrying this scope; they win over the resource server's.
    #[serde(default)]
    pub claims: BTreeMap<String, ClaimSource>,
}

/// `[[domain.resource_server]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceServerConfig {
    /// The `aud` of its tokens and the RFC 8707 `resource` value that selects it.
    pub audience: String,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// Scopes it accepts.
    #[serde(default)]
    pub scopes: Vec<ScopeConfig>,
    /// Overrides the domain's access-token lifetime.
    #[serde(default)]
    pub access_token_lifetime: Option<Seconds>,
    /// Overrides the domain's access-token format.
    #[serde(default)]
    pub access_token_format: Option<TokenFormat>,
    /// A scope that asks for refresh tokens for this API.
    #[serde(default)]
    pub offline_scope: Option<String>,
    /// Claims added to every token meant for it.
    #[serde(default)]
    pub claims: BTreeMap<String, ClaimSource>,
    /// Clients (acting for this API) that may introspect tokens meant for it.
    #[serde(default)]
    pub introspection_clients: Vec<String>,
}

/// Client authentication methods at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// RFC 6749 s2.3.1 HTTP Basic.
    ClientSecretBasic,
    /// RFC 6749 s2.3.1 form body.
    ClientSecretPost,
    /// Public client.
    None,
    /// RFC 7523 s2.2 / OpenID Connect Core s9: a JWT signed with a key of the client's `jwks`
    /// or `jwks_uri`.
    PrivateKeyJwt,
    /// OpenID Connect Core s9: a JWT with an HMAC keyed by the client secret (needs `secret_env`:
    /// the server must know the secret itself).
    ClientSecretJwt,
    /// RFC 8705 s2.1: a certificate from a trusted CA whose subject DN or SAN is registered.
    TlsClientAuth,
    /// RFC 8705 s2.2: a self-signed certificate whose key is in the client's JWK Set.
    SelfSignedTlsClientAuth,
}

impl AuthMethod {
    /// The registered name.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::ClientSecretBasic => "client_secret_basic",
            AuthMethod::ClientSecretPost => "client_secret_post",
            AuthMethod::None => "none",
            AuthMethod::PrivateKeyJwt => "private_key_jwt",
            AuthMethod::ClientSecretJwt => "client_secret_jwt",
            AuthMethod::TlsClientAuth => "tls_client_auth",
            AuthMethod::SelfSignedTlsClientAuth => "self_signed_tls_client_auth",
        }
    }

    /// Every method, in the order discovery lists them.
    pub const ALL: [AuthMethod; 7] = [
        AuthMethod::ClientSecretBasic,
        AuthMethod::ClientSecretPost,
        AuthMethod::ClientSecretJwt,
        AuthMethod::PrivateKeyJwt,
        AuthMethod::TlsClientAuth,
        AuthMethod::SelfSignedTlsClientAuth,
        AuthMethod::None,
    ];

    /// True for the methods that prove possession of a client secret.
    pub fn uses_secret(self) -> bool {
        matches!(
            self,
            AuthMethod::ClientSecretBasic | AuthMethod::ClientSecretPost | AuthMethod::ClientSecretJwt
        )
    }
}

/// The device authorization grant type (RFC 8628 s3.4).
pub const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// The JWT bearer grant type (RFC 7523 s2.1).
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// Grant types this build implements.
pub const SUPPORTED_GRANT_TYPES: &[&str] = &[
    "authorization_code",
    "client_credentials",
    "refresh_token",
    "password",
    DEVICE_CODE_GRANT,
    JWT_BEARER_GRANT,
];

/// `[[domain.client]]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// Unique within the domain.
    pub client_id: String,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// `sha256:...` from `ostiary hash-secret --generate`, or an argon2id PHC string.
    #[serde(default)]
    pub secret_hash: Option<String>,
    /// Name of an environment variable holding the secret.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// A file holding the secret (one line; a mounted secret, say).
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// Refused: plaintext secrets never go in configuration.
    #[serde(default, skip_serializing)]
    pub client_secret: Option<toml::Value>,
    /// Default client_secret_basic.
    #[serde(default = "default_auth_method")]
    pub token_endpoint_auth_method: AuthMethod,
    /// Grant types the client may use.
    #[serde(default)]
    pub grant_types: Vec<String>,
    /// Scopes the client may ask for.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Registered redirect URIs.
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// Registered post-logout redirect URIs.
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    /// Overrides resource server and domain lifetimes.
    #[serde(default)]
    pub access_token_lifetime: Option<Seconds>,
    /// Overrides resource server and domain formats.
    #[serde(default)]
    pub access_token_format: Option<TokenFormat>,
    /// A disabled client cannot authenticate and its tokens are inactive.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// The client's public keys (a JWK Set).
    #[serde(default)]
    pub jwks: Option<serde_json::Value>,
    /// Where the client publishes its JWK Set.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// The JWS algorithm of its client assertions (private_key_jwt: RS256, PS256 or ES256;
    /// client_secret_jwt: HS256, HS384 or HS512). Unset: any of the method's algorithms.
    #[serde(default)]
    pub token_endpoint_auth_signing_alg: Option<String>,
    /// RFC 8705 s2.1.2: the certificate subject DN (RFC 4514) of a tls_client_auth client.
    #[serde(default)]
    pub tls_client_auth_subject_dn: Option<String>,
    /// RFC 8705 s2.1.2: a dNSName SAN of a tls_client_auth client.
    #[serde(default)]
    pub tls_client_auth_san_dns: Option<String>,
    /// RFC 8705 s2.1.2: a uniformResourceIdentifier SAN of a tls_client_auth client.
    #[serde(default)]
    pub tls_client_auth_san_uri: Option<String>,
    /// RFC 8705 s2.1.2: an iPAddress SAN of a tls_client_auth client.
    #[serde(default)]
    pub tls_client_auth_san_ip: Option<String>,
    /// RFC 8705 s2.1.2: an rfc822Name SAN of a tls_client_auth client.
    #[serde(default)]
    pub tls_client_auth_san_email: Option<String>,
    /// ID token signature algorithm.
    #[serde(default)]
    pub id_token_signed_response_alg: Option<SigningAlg>,
    /// OpenID Back-Channel Logout endpoint.
    #[serde(default)]
    pub backchannel_logout_uri: Option<String>,
    /// Whether the logout token must carry `sid`.
    #[serde(default)]
    pub backchannel_logout_session_required: bool,
    /// OpenID Front-Channel Logout endpoint.
    #[serde(default)]
    pub frontchannel_logout_uri: Option<String>,
    /// Whether `iss` and `sid` are sent to the front-channel URI.
    #[serde(default)]
    pub frontchannel_logout_session_required: bool,
    /// `required` (default) or `skip` for first-party clients.
    #[serde(default)]
    pub consent: ConsentPolicy,
    /// PKCE (S256) required; only confidential clients may turn it off. Default true.
    #[serde(default = "default_true")]
    pub require_pkce: bool,
    /// Accept the `plain` PKCE method. Default false.
    #[serde(default)]
    pub allow_plain_pkce: bool,
    /// `refuse` (default) or `drop` requested scopes the client may not have.
    #[serde(default)]
    pub unknown_scopes: UnknownScopes,
    /// When refresh tokens are issued: `offline` (default: when `offline_access` or a resource
    /// server's offline scope is granted) or `always` (session-bound ones otherwise).
    #[serde(default)]
    pub refresh_tokens: RefreshPolicy,
    /// Within this window a retried refresh returns the same new refresh token instead of
    /// revoking the family (at most 60s; 0, the default, turns it off).
    #[serde(default)]
    pub refresh_token_grace: Seconds,
}

/// When a client gets refresh tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RefreshPolicy {
    /// Only when an offline scope is granted.
    #[default]
    Offline,
    /// On every code exchange (tokens that are not offline die with the session).
    Always,
}

fn default_auth_method() -> AuthMethod {
    AuthMethod::ClientSecretBasic
}

/// A postal address claim (OIDC Core s5.1.1).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AddressConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub formatted: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub street_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locality: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postal_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
}

/// `[[domain.user]]`: a static user with the OpenID standard claims.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// Login name, unique within the domain.
    pub username: String,
    /// argon2id PHC string from `ostiary hash-secret`.
    #[serde(default, skip_serializing)]
    pub password_hash: Option<String>,
    /// A disabled user cannot sign in.
    #[serde(default = "default_true", skip_serializing)]
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub middle_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nickname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub picture: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub website: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gender: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub birthdate: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zoneinfo: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_number_verified: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<AddressConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Custom attributes, usable as dynamic claims.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, serde_json::Value>,
}

/// Claim names a custom claim may not take: JWT registered claims and OpenID Connect claims.
pub const RESERVED_CLAIMS: &[&str] = &[
    "iss",
    "sub",
    "aud",
    "exp",
    "nbf",
    "iat",
    "jti",
    "client_id",
    "scope",
    "cnf",
    "act",
    "may_act",
    "azp",
    "nonce",
    "auth_time",
    "acr",
    "amr",
    "sid",
    "at_hash",
    "c_hash",
    "s_hash",
    "typ",
    "events",
    "name",
    "given_name",
    "family_name",
    "middle_name",
    "nickname",
    "preferred_username",
    "profile",
    "picture",
    "website",
    "email",
    "email_verified",
    "gender",
    "birthdate",
    "zoneinfo",
    "locale",
    "phone_number",
    "phone_number_verified",
    "address",
    "updated_at",
    "groups",
    "token_type",
];

/// Scope names defined by OpenID Connect; a resource server may not declare them.
/// Scopes every domain knows without declaring them: OpenID Connect Core s5.4 and s11, and
/// `groups` (groups in userinfo) and `get_groups` (groups in the ID token) as identity domains do.
pub const OPENID_SCOPES: &[&str] = &[
    "openid",
    "profile",
    "email",
    "address",
    "phone",
    "offline_access",
    "groups",
    "get_groups",
];

impl Config {
    /// Reads `path`, applies `OSTIARY_*__*` overrides from the process environment, and validates.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            let mut errs = ConfigErrors::default();
            errs.push(path.display().to_string(), format!("cannot read: {e}"));
            errs
        })?;
        Self::from_toml_str_with_env(&text, std::env::vars())
    }

    /// Parses TOML text (no environment overrides) and validates it.
    pub fn from_toml_str(toml_text: &str) -> Result<Config, ConfigErrors> {
        Self::from_toml_str_with_env(toml_text, std::iter::empty())
    }

    /// Parses TOML text, applies the given `OSTIARY_*__*` variables as overrides, and validates.
    pub fn from_toml_str_with_env(
        toml_text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigErrors> {
        let mut errs = ConfigErrors::default();
        let mut table: toml::Table = match toml_text.parse() {
            Ok(t) => t,
            Err(e) => {
                errs.push("(file)", format!("not valid TOML: {}", e.message()));
                return Err(errs);
            }
        };
        for (name, value) in env {
            apply_env_override(&mut table, &name, &value, &mut errs);
        }
        if !errs.0.is_empty() {
            return Err(errs);
        }
        let config: Config = match serde_path_to_error::deserialize(toml::Value::Table(table)) {
            Ok(c) => c,
            Err(e) => {
                let path = e.path().to_string();
                errs.push(path, e.into_inner().to_string());
                return Err(errs);
            }
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks every rule that serde cannot, collecting all problems.
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let mut errs = ConfigErrors::default();
        if self.server.listen.parse::<std::net::SocketAddr>().is_err() {
            errs.push(
                "server.listen",
                "must be an address and port, e.g. 127.0.0.1:8080",
            );
        }
        if self.server.max_body_bytes < 1024 {
            errs.push("server.max_body_bytes", "must be at least 1024");
        }
        if self.server.argon2_max_concurrent == 0 {
            errs.push("server.argon2_max_concurrent", "must be at least 1");
        }
        if self.server.gc_batch < 1 {
            errs.push("server.gc_batch", "must be at least 1");
        }
        if let Some(h) = &self.server.client_address_header
            && axum::http::HeaderName::try_from(h.as_str()).is_err()
        {
            errs.push("server.client_address_header", "must be an HTTP header name");
        }
        self.validate_tls(&mut errs);
        if !(self.database.url.starts_with("sqlite:")
            || self.database.url.starts_with("postgres://")
            || self.database.url.starts_with("postgresql://"))
        {
            errs.push("database.url", "must start with sqlite:// or postgres://");
        }
        if self.database.max_connections == 0 {
            errs.push("database.max_connections", "must be at least 1");
        }
        if self.keys.refresh_interval.0 == 0 {
            errs.push("keys.refresh_interval", "must be at least 1s");
        }
        if self.domains.is_empty() {
            errs.push("domain", "at least one [[domain]] is required");
        }
        let mut names = HashSet::new();
        let mut issuers = HashSet::new();
        for (di, d) in self.domains.iter().enumerate() {
            let p = format!("domain[{di}]");
            if d.name.is_empty()
                || !d
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                errs.push(format!("{p}.name"), "must be non-empty letters, digits, - or _");
            }
            if !names.insert(d.name.as_str()) {
                errs.push(format!("{p}.name"), format!("duplicate domain name {:?}", d.name));
            }
            match check_url(&d.issuer, UrlRule::Issuer) {
                Ok(()) => {
                    if !issuers.insert(d.issuer.to_ascii_lowercase()) {
                        errs.push(format!("{p}.issuer"), "another domain has the same issuer");
                    }
                }
                Err(m) => errs.push(format!("{p}.issuer"), m),
            }
            for (key, v) in [
                ("access_token_lifetime", d.access_token_lifetime),
                ("session_idle_timeout", d.session_idle_timeout),
                ("session_max_lifetime", d.session_max_lifetime),
                ("code_lifetime", d.code_lifetime),
                ("id_token_lifetime", d.id_token_lifetime),
                ("refresh_token_idle_lifetime", d.refresh_token_idle_lifetime),
                ("refresh_token_max_lifetime", d.refresh_token_max_lifetime),
                ("lockout_duration", d.lockout_duration),
                ("lockout_max", d.lockout_max),
                ("device_code_lifetime", d.device_code_lifetime),
                ("device_poll_interval", d.device_poll_interval),
                ("assertion_max_lifetime", d.assertion_max_lifetime),
            ] {
                if v.0 == 0 {
                    errs.push(format!("{p}.{key}"), "must be at least 1s");
                }
            }
            for (key, v) in [
                ("lockout_threshold", d.lockout_threshold),
                ("address_lockout_threshold", d.address_lockout_threshold),
                ("user_code_attempts", d.user_code_attempts),
                ("address_user_code_attempts", d.address_user_code_attempts),
            ] {
                if v < 1 {
                    errs.push(format!("{p}.{key}"), "must be at least 1");
                }
            }
            validate_domain(d, &p, &mut errs);
            validate_assertion_issuers(d, &p, &mut errs);
        }
        if errs.0.is_empty() { Ok(()) } else { Err(errs) }
    }
}

impl Config {
    /// The TLS keys of `[server]` and what the domains' mutual-TLS settings need from them.
    fn validate_tls(&self, errs: &mut ConfigErrors) {
        let s = &self.server;
        let tls = s.tls_cert_file.is_some() && s.tls_key_file.is_some();
        if s.tls_cert_file.is_some() != s.tls_key_file.is_some() {
            errs.push(
                "server.tls_key_file",
                "give both tls_cert_file and tls_key_file, or neither",
            );
        }
        if let Some(m) = &s.mtls_listen {
            if m.parse::<std::net::SocketAddr>().is_err() {
                errs.push(
                    "server.mtls_listen",
                    "must be an address and port, e.g. 0.0.0.0:8443",
                );
            } else if *m == s.listen && !m.ends_with(":0") {
                errs.push("server.mtls_listen", "must differ from server.listen");
            }
            if !tls {
                errs.push(
                    "server.mtls_listen",
                    "needs the server's certificate: set tls_cert_file and tls_key_file",
                );
            }
        }
        if let Some(h) = &s.client_certificate_header
            && axum::http::HeaderName::try_from(h.as_str()).is_err()
        {
            errs.push("server.client_certificate_header", "must be an HTTP header name");
        }
        let certificates = s.mtls_listen.is_some() || s.client_certificate_header.is_some();
        // Requests are routed by host and path: an alias must not be another domain's base.
        let mut bases: HashSet<(String, String)> =
            self.domains.iter().filter_map(|d| route_key(&d.issuer)).collect();
        for (di, d) in self.domains.iter().enumerate() {
            let p = format!("domain[{di}]");
            if let Some(m) = &d.mtls_issuer {
                match check_url(m, UrlRule::Issuer) {
                    // RFC 8705 s5: the aliases are reached with mutual TLS, so over https.
                    Ok(()) if !m.starts_with("https://") => {
                        errs.push(format!("{p}.mtls_issuer"), "must be an https URL");
                    }
                    Ok(()) => {
                        if route_key(m).is_some_and(|k| !bases.insert(k)) {
                            errs.push(
                                format!("{p}.mtls_issuer"),
                                "has the host and path of a domain's issuer or mtls_issuer",
                            );
                        }
                    }
                    Err(msg) => errs.push(format!("{p}.mtls_issuer"), msg),
                }
                if !certificates {
                    errs.push(
                        format!("{p}.mtls_issuer"),
                        "needs client certificates: set server.mtls_listen or server.client_certificate_header",
                    );
                }
            }
            for (ci, c) in d.clients.iter().enumerate() {
                let method = c.token_endpoint_auth_method;
                let cp = format!("{p}.client[{ci}].token_endpoint_auth_method");
                if matches!(
                    method,
                    AuthMethod::TlsClientAuth | AuthMethod::SelfSignedTlsClientAuth
                ) && !certificates
                {
                    errs.push(
                        cp.clone(),
                        format!(
                            "{} needs client certificates: set server.mtls_listen or server.client_certificate_header",
                            method.as_str()
                        ),
                    );
                }
                if method == AuthMethod::TlsClientAuth && s.client_ca_file.is_none() {
                    errs.push(
                        cp,
                        "tls_client_auth needs the CAs that issue client certificates: set server.client_ca_file",
                    );
                }
            }
        }
    }
}

/// The host (lowercase, with an explicit port) and path by which requests reach a base URL.
fn route_key(url: &str) -> Option<(String, String)> {
    let u = url::Url::parse(url).ok()?;
    let host = u.host_str()?.to_ascii_lowercase();
    let host = match u.port() {
        Some(p) => format!("{host}:{p}"),
        None => host,
    };
    Some((host, u.path().trim_end_matches('/').to_string()))
}

fn validate_domain(d: &DomainConfig, p: &str, errs: &mut ConfigErrors) {
    let client_ids: HashSet<&str> = d.clients.iter().map(|c| c.client_id.as_str()).collect();
    let mut audiences = HashSet::new();
    let mut scope_names: HashSet<&str> = HashSet::new();
    for (ri, rs) in d.resource_servers.iter().enumerate() {
        let rp = format!("{p}.resource_server[{ri}]");
        if let Err(m) = check_url(&rs.audience, UrlRule::Resource) {
            errs.push(format!("{rp}.audience"), m);
        }
        if !audiences.insert(rs.audience.as_str()) {
            errs.push(
                format!("{rp}.audience"),
                "another resource server has the same audience",
            );
        }
        if rs.access_token_lifetime == Some(Seconds(0)) {
            errs.push(format!("{rp}.access_token_lifetime"), "must be at least 1s");
        }
        check_claims(&rs.claims, &format!("{rp}.claims"), errs);
        for (si, s) in rs.scopes.iter().enumerate() {
            let sp = format!("{rp}.scopes[{si}]");
            if !is_scope_token(&s.name) {
                errs.push(format!("{sp}.name"), "not a valid scope token (RFC 6749 s3.3)");
            }
            if OPENID_SCOPES.contains(&s.name.as_str()) {
                errs.push(
                    format!("{sp}.name"),
                    "is an OpenID Connect scope and cannot be declared",
                );
            }
            if !scope_names.insert(s.name.as_str()) {
                errs.push(
                    format!("{sp}.name"),
                    format!("scope {:?} is declared twice in this domain", s.name),
                );
            }
            check_claims(&s.claims, &format!("{sp}.claims"), errs);
        }
        if let Some(off) = &rs.offline_scope {
            if !is_scope_token(off) {
                errs.push(format!("{rp}.offline_scope"), "not a valid scope token");
            } else if !scope_names.insert(off.as_str()) {
                errs.push(format!("{rp}.offline_scope"), "is already declared as a scope");
            }
        }
        for (ci, c) in rs.introspection_clients.iter().enumerate() {
            if !client_ids.contains(c.as_str()) {
                errs.push(
                    format!("{rp}.introspection_clients[{ci}]"),
                    format!("no client {c:?} in this domain"),
                );
            }
        }
    }
    let mut seen_clients = HashSet::new();
    for (ci, c) in d.clients.iter().enumerate() {
        let cp = format!("{p}.client[{ci}]");
        validate_client(c, &cp, &scope_names, errs);
        if !seen_clients.insert(c.client_id.as_str()) {
            errs.push(
                format!("{cp}.client_id"),
                format!("duplicate client_id {:?}", c.client_id),
            );
        }
    }
    let mut seen_users = HashSet::new();
    for (ui, u) in d.users.iter().enumerate() {
        let up = format!("{p}.user[{ui}]");
        if u.username.trim().is_empty() {
            errs.push(format!("{up}.username"), "must not be empty");
        }
        if !seen_users.insert(u.username.to_lowercase()) {
            errs.push(
                format!("{up}.username"),
                format!("duplicate username {:?}", u.username),
            );
        }
        if let Some(h) = &u.password_hash
            && !h.starts_with("$argon2id$")
        {
            errs.push(
                format!("{up}.password_hash"),
                "must be an argon2id hash from `ostiary hash-secret`",
            );
        }
    }
}

fn validate_client(c: &ClientConfig, cp: &str, scopes: &HashSet<&str>, errs: &mut ConfigErrors) {
    if c.client_id.is_empty() || c.client_id.chars().any(|ch| ch.is_control()) {
        errs.push(format!("{cp}.client_id"), "must be non-empty printable text");
    }
    if c.client_secret.is_some() {
        errs.push(
            format!("{cp}.client_secret"),
            "plaintext secrets are not allowed: use secret_hash (from `ostiary hash-secret`) or secret_env",
        );
    }
    let method = c.token_endpoint_auth_method;
    let confidential = method != AuthMethod::None;
    let uses_secret = method.uses_secret();
    let sources = [
        c.secret_hash.is_some(),
        c.secret_env.is_some(),
        c.secret_file.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if sources > 1 {
        errs.push(
            format!("{cp}.secret_env"),
            "give only one of secret_hash, secret_env and secret_file",
        );
    } else if sources == 1 && !confidential {
        errs.push(
            format!("{cp}.token_endpoint_auth_method"),
            "a public client (none) must not have a secret",
        );
    } else if sources == 1 && !uses_secret {
        errs.push(
            format!("{cp}.token_endpoint_auth_method"),
            format!("a {} client must not have a secret", method.as_str()),
        );
    } else if sources == 0 && uses_secret {
        errs.push(
            format!("{cp}.secret_hash"),
            format!(
                "required for token_endpoint_auth_method {:?} (or set secret_env or secret_file)",
                method.as_str()
            ),
        );
    } else if method == AuthMethod::ClientSecretJwt && c.secret_hash.is_some() {
        errs.push(
            format!("{cp}.secret_hash"),
            "client_secret_jwt needs the secret itself to check HMACs: use secret_env or secret_file",
        );
    } else if let Some(h) = &c.secret_hash {
        if let Err(m) = SecretHash::parse(h) {
            errs.push(format!("{cp}.secret_hash"), m);
        }
    } else if let Err(m) = read_client_secret(c) {
        errs.push(format!("{cp}.secret_env"), m);
    }
    for (gi, g) in c.grant_types.iter().enumerate() {
        if !SUPPORTED_GRANT_TYPES.contains(&g.as_str()) {
            errs.push(
                format!("{cp}.grant_types[{gi}]"),
                format!(
                    "unsupported grant type {g:?} (supported: {})",
                    SUPPORTED_GRANT_TYPES.join(", ")
                ),
            );
        } else if g == "client_credentials" && !confidential {
            errs.push(
                format!("{cp}.grant_types[{gi}]"),
                "client_credentials needs a confidential client (RFC 6749 s4.4)",
            );
        }
    }
    for (si, s) in c.scopes.iter().enumerate() {
        if !scopes.contains(s.as_str()) && !OPENID_SCOPES.contains(&s.as_str()) {
            errs.push(
                format!("{cp}.scopes[{si}]"),
                format!("scope {s:?} is not declared by any resource server of this domain"),
            );
        }
    }
    for (field, list) in [
        ("redirect_uris", &c.redirect_uris),
        ("post_logout_redirect_uris", &c.post_logout_redirect_uris),
    ] {
        for (i, u) in list.iter().enumerate() {
            if let Err(m) = check_url(u, UrlRule::Redirect) {
                errs.push(format!("{cp}.{field}[{i}]"), m);
            }
        }
    }
    for (field, v) in [
        ("jwks_uri", &c.jwks_uri),
        ("backchannel_logout_uri", &c.backchannel_logout_uri),
        ("frontchannel_logout_uri", &c.frontchannel_logout_uri),
    ] {
        if let Some(u) = v
            && let Err(m) = check_url(u, UrlRule::Web)
        {
            errs.push(format!("{cp}.{field}"), m);
        }
    }
    if let Some(j) = &c.jwks
        && !j.get("keys").is_some_and(|k| k.is_array())
    {
        errs.push(
            format!("{cp}.jwks"),
            "must be a JWK Set: a table with a `keys` array",
        );
    }
    if c.access_token_lifetime == Some(Seconds(0)) {
        errs.push(format!("{cp}.access_token_lifetime"), "must be at least 1s");
    }
    validate_client_keys(c, cp, errs);
    if c.grant_types.iter().any(|g| g == "authorization_code") && c.redirect_uris.is_empty() {
        errs.push(
            format!("{cp}.redirect_uris"),
            "authorization_code needs at least one redirect URI",
        );
    }
    if c.refresh_token_grace.0 < 0 || c.refresh_token_grace.0 > 60 {
        errs.push(format!("{cp}.refresh_token_grace"), "must be between 0s and 60s");
    }
    if !c.require_pkce && !confidential {
        errs.push(
            format!("{cp}.require_pkce"),
            "public clients must use PKCE (RFC 9700 s2.1.1)",
        );
    }
}

/// The keys and certificate bindings each authentication method needs.
fn validate_client_keys(c: &ClientConfig, cp: &str, errs: &mut ConfigErrors) {
    let method = c.token_endpoint_auth_method;
    let has_keys = c.jwks.is_some() || c.jwks_uri.is_some();
    if c.jwks.is_some() && c.jwks_uri.is_some() {
        // OpenID Connect Dynamic Client Registration s2: jwks and jwks_uri MUST NOT both be used.
        errs.push(format!("{cp}.jwks_uri"), "give either jwks or jwks_uri, not both");
    }
    if matches!(
        method,
        AuthMethod::PrivateKeyJwt | AuthMethod::SelfSignedTlsClientAuth
    ) && !has_keys
    {
        errs.push(
            format!("{cp}.jwks"),
            format!(
                "{} needs the client's public keys: jwks or jwks_uri",
                method.as_str()
            ),
        );
    }
    if let Some(alg) = &c.token_endpoint_auth_signing_alg {
        let allowed: &[&str] = match method {
            AuthMethod::PrivateKeyJwt => &["RS256", "PS256", "ES256"],
            AuthMethod::ClientSecretJwt => &["HS256", "HS384", "HS512"],
            _ => &[],
        };
        if allowed.is_empty() {
            errs.push(
                format!("{cp}.token_endpoint_auth_signing_alg"),
                "only for private_key_jwt and client_secret_jwt clients",
            );
        } else if !allowed.contains(&alg.as_str()) {
            errs.push(
                format!("{cp}.token_endpoint_auth_signing_alg"),
                format!("must be one of {}", allowed.join(", ")),
            );
        }
    }
    let bindings = [
        &c.tls_client_auth_subject_dn,
        &c.tls_client_auth_san_dns,
        &c.tls_client_auth_san_uri,
        &c.tls_client_auth_san_ip,
        &c.tls_client_auth_san_email,
    ];
    let n = bindings.iter().filter(|b| b.is_some()).count();
    if method == AuthMethod::TlsClientAuth && n != 1 {
        // RFC 8705 s2.1.2: a client using tls_client_auth MUST use exactly one of these.
        errs.push(
            format!("{cp}.tls_client_auth_subject_dn"),
            "tls_client_auth needs exactly one of tls_client_auth_subject_dn, _san_dns, _san_uri, _san_ip, _san_email",
        );
    } else if method != AuthMethod::TlsClientAuth && n > 0 {
        errs.push(
            format!("{cp}.tls_client_auth_subject_dn"),
            "certificate bindings are only for tls_client_auth clients",
        );
    }
    if let Some(ip) = &c.tls_client_auth_san_ip
        && ip.parse::<std::net::IpAddr>().is_err()
    {
        errs.push(format!("{cp}.tls_client_auth_san_ip"), "must be an IP address");
    }
}

fn validate_assertion_issuers(d: &DomainConfig, p: &str, errs: &mut ConfigErrors) {
    let mut seen = HashSet::new();
    for (i, a) in d.assertion_issuers.iter().enumerate() {
        let ap = format!("{p}.assertion_issuer[{i}]");
        if a.issuer.trim().is_empty() {
            errs.push(format!("{ap}.issuer"), "must not be empty");
        }
        if !seen.insert(a.issuer.as_str()) {
            errs.push(
                format!("{ap}.issuer"),
                format!("issuer {:?} is declared twice", a.issuer),
            );
        }
        match (&a.jwks, &a.jwks_file) {
            (Some(_), Some(_)) => errs.push(
                format!("{ap}.jwks_file"),
                "give either jwks or jwks_file, not both",
            ),
            (None, None) => errs.push(
                format!("{ap}.jwks"),
                "the issuer's public keys are required: jwks or jwks_file",
            ),
            (Some(j), None) if !j.get("keys").is_some_and(|k| k.is_array()) => errs.push(
                format!("{ap}.jwks"),
                "must be a JWK Set: a table with a `keys` array",
            ),
            _ => {}
        }
    }
}

/// The secret of a client given by `secret_env` or `secret_file` (None for `secret_hash` or
/// none); an unset variable, an unreadable file or an empty secret is an error.
pub fn read_client_secret(c: &ClientConfig) -> Result<Option<zeroize::Zeroizing<String>>, String> {
    let value = match (&c.secret_env, &c.secret_file) {
        (Some(var), _) => std::env::var(var).map_err(|_| format!("environment variable {var} is not set"))?,
        (None, Some(path)) => std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the secret file {}: {e}", path.display()))?
            .trim_end_matches(['\r', '\n'])
            .to_string(),
        (None, None) => return Ok(None),
    };
    if value.is_empty() {
        return Err("the client secret is empty".into());
    }
    Ok(Some(zeroize::Zeroizing::new(value)))
}

fn check_claims(claims: &BTreeMap<String, ClaimSource>, path: &str, errs: &mut ConfigErrors) {
    for name in claims.keys() {
        if RESERVED_CLAIMS.contains(&name.as_str()) {
            errs.push(
                format!("{path}.{name}"),
                "is a reserved JWT or OpenID Connect claim name",
            );
        }
    }
}

/// RFC 6749 s3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ).
pub fn is_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum UrlRule {
    Issuer,
    Resource,
    Redirect,
    Web,
}

/// True for 127.0.0.0/8, ::1 and localhost.
pub fn is_loopback_host(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    }
}

fn check_url(s: &str, rule: UrlRule) -> Result<(), String> {
    let u = url::Url::parse(s).map_err(|e| format!("must be an absolute URL ({e})"))?;
    if u.fragment().is_some() || s.contains('#') {
        return Err("must not contain a fragment".into());
    }
    let scheme = u.scheme();
    let web = scheme == "http" || scheme == "https";
    match rule {
        // RFC 8252 s7.1: native apps may use private-use URI schemes.
        UrlRule::Redirect if !web => return Ok(()),
        UrlRule::Resource if !web => return Ok(()),
        _ if !web => return Err("must be an http(s) URL".into()),
        _ => {}
    }
    let host = u.host().ok_or("must have a host")?;
    if scheme == "http" && !is_loopback_host(&host) {
        return Err("must use https (http is allowed only for loopback hosts)".into());
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err("must not contain user information".into());
    }
    if rule == UrlRule::Issuer {
        if u.query().is_some() {
            return Err("must not contain a query (RFC 8414 s2)".into());
        }
        if s.ends_with('/') {
            return Err("must not end with a slash".into());
        }
    }
    Ok(())
}

/// Applies one `OSTIARY_A__B__0__C=value` variable to the TOML table; other variables are ignored.
fn apply_env_override(table: &mut toml::Table, name: &str, raw: &str, errs: &mut ConfigErrors) {
    let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
        return;
    };
    if !rest.contains("__") {
        return;
    }
    let segments: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
    let value = parse_env_value(raw);
    if let Err(m) = set_path(table, &segments, value) {
        errs.push(name, m);
    }
}

fn parse_env_value(raw: &str) -> toml::Value {
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

fn set_path(table: &mut toml::Table, segments: &[String], value: toml::Value) -> Result<(), String> {
    let Some((first, rest)) = segments.split_first() else {
        return Err("empty key".into());
    };
    if first.is_empty() {
        return Err("empty key segment".into());
    }
    if rest.is_empty() {
        table.insert(first.clone(), value);
        return Ok(());
    }
    let entry = table
        .entry(first.clone())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    set_in_value(entry, rest, value)
}

fn set_in_value(node: &mut toml::Value, segments: &[String], value: toml::Value) -> Result<(), String> {
    match node {
        toml::Value::Table(t) => set_path(t, segments, value),
        toml::Value::Array(items) => {
            let Some((idx, rest)) = segments.split_first() else {
                return Err("empty key".into());
            };
            let i: usize = idx
                .parse()
                .map_err(|_| format!("{idx:?} must be an array index"))?;
            let len = items.len();
            let item = items
                .get_mut(i)
                .ok_or_else(|| format!("index {i} is out of range (the file has {len})"))?;
            if rest.is_empty() {
                *item = value;
                Ok(())
            } else {
                set_in_value(item, rest, value)
            }
        }
        _ => Err("cannot set a key inside a value that is not a table".into()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[[domain]]
name = "default"
issuer = "http://127.0.0.1:8080"
"#;

    #[test]
    fn durations_parse() {
        assert_eq!(Seconds::parse("90s"), Some(Seconds(90)));
        assert_eq!(Seconds::parse("2h"), Some(Seconds(7200)));
        assert_eq!(Seconds::parse("7d"), Some(Seconds(7 * 86400)));
        assert_eq!(Seconds::parse("15"), Some(Seconds(15)));
        assert_eq!(Seconds::parse("-1s"), None);
        assert_eq!(Seconds::parse("abc"), None);
    }

    #[test]
    fn env_overrides_reach_arrays_and_sections() {
        let env = vec![
            ("OSTIARY_SERVER__LISTEN".to_string(), "0.0.0.0:9000".to_string()),
            (
                "OSTIARY_DOMAIN__0__ISSUER".to_string(),
                "https://id.example.com".to_string(),
            ),
            ("OSTIARY_DATABASE__MAX_CONNECTIONS".to_string(), "3".to_string()),
            ("OSTIARY_KEK".to_string(), "not-a-config-key".to_string()),
        ];
        let c = Config::from_toml_str_with_env(BASE, env).unwrap();
        assert_eq!(c.server.listen, "0.0.0.0:9000");
        assert_eq!(c.domains[0].issuer, "https://id.example.com");
        assert_eq!(c.database.max_connections, 3);
    }

    #[test]
    fn unknown_env_key_is_refused() {
        let env = vec![("OSTIARY_SERVER__LISTN".to_string(), "x".to_string())];
        let e = Config::from_toml_str_with_env(BASE, env).unwrap_err();
        assert!(e.to_string().contains("listn"), "{e}");
    }

    #[test]
    fn mtls_keys_are_checked() {
        let bad = r#"
[server]
mtls_listen = "127.0.0.1:8443"
tls_cert_file = "cert.pem"
[[domain]]
name = "default"
issuer = "http://127.0.0.1:8080"
mtls_issuer = "http://127.0.0.1:8443"
  [[domain.client]]
  client_id = "c"
  token_endpoint_auth_method = "tls_client_auth"
  tls_client_auth_san_dns = "c.example.com"
"#;
        let e = Config::from_toml_str(bad).unwrap_err().to_string();
        for want in [
            "server.tls_key_file: give both",
            "server.mtls_listen: needs the server's certificate",
            "domain[0].mtls_issuer: must be an https URL",
            "domain[0].client[0].token_endpoint_auth_method: tls_client_auth needs the CAs",
        ] {
            assert!(e.contains(want), "{want:?} missing from:\n{e}");
        }
        let no_certificates = r#"
[[domain]]
name = "default"
issuer = "http://127.0.0.1:8080"
mtls_issuer = "https://mtls.example.com"
  [[domain.client]]
  client_id = "c"
  token_endpoint_auth_method = "self_signed_tls_client_auth"
  jwks = { keys = [] }
"#;
        let e = Config::from_toml_str(no_certificates).unwrap_err().to_string();
        assert!(
            e.contains("domain[0].mtls_issuer: needs client certificates"),
            "{e}"
        );
        assert!(
            e.contains("self_signed_tls_client_auth needs client certificates"),
            "{e}"
        );
        let behind_a_proxy = format!(
            "[server]\nclient_certificate_header = \"X-Client-Cert\"\n{}",
            no_certificates.replace("https://mtls.example.com", "https://127.0.0.1:8080")
        );
        let e = Config::from_toml_str(&behind_a_proxy).unwrap_err().to_string();
        assert!(e.contains("has the host and path of a domain's issuer"), "{e}");
        let ok = behind_a_proxy.replace("https://127.0.0.1:8080", "https://mtls.example.com");
        Config::from_toml_str(&ok).unwrap();
    }

    #[test]
    fn out_of_range_index_is_refused() {
        let env = vec![("OSTIARY_DOMAIN__3__ISSUER".to_string(), "x".to_string())];
        let e = Config::from_toml_str_with_env(BASE, env).unwrap_err();
        assert!(e.to_string().contains("out of range"), "{e}");
    }

    fn client_errors(client_toml: &str) -> String {
        let text = format!("{BASE}\n  [[domain.client]]\n  client_id = \"c\"\n{client_toml}\n");
        match Config::from_toml_str(&text) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn assertion_and_certificate_methods_need_their_keys() {
        let jwks = r#"jwks = { keys = [] }"#;
        let cases = [
            (
                "token_endpoint_auth_method = \"private_key_jwt\"",
                "needs the client's public keys",
            ),
            (
                "token_endpoint_auth_method = \"self_signed_tls_client_auth\"",
                "needs the client's public keys",
            ),
            (
                "token_endpoint_auth_method = \"client_secret_jwt\"\n  secret_hash = \"sha256:AAAA\"",
                "needs the secret itself",
            ),
            ("token_endpoint_auth_method = \"client_secret_jwt\"", "required"),
            ("token_endpoint_auth_method = \"tls_client_auth\"", "exactly one"),
            (
                "token_endpoint_auth_method = \"tls_client_auth\"\n  tls_client_auth_san_dns = \"a\"\n  tls_client_auth_san_uri = \"b\"",
                "exactly one",
            ),
            (
                "tls_client_auth_san_dns = \"a\"\n  secret_hash = \"sha256:AAAA\"",
                "only for tls_client_auth",
            ),
            (
                "token_endpoint_auth_method = \"private_key_jwt\"\n  jwks = { keys = [] }\n  jwks_uri = \"https://c.example/jwks\"",
                "not both",
            ),
            (
                "token_endpoint_auth_method = \"private_key_jwt\"\n  jwks = { keys = [] }\n  token_endpoint_auth_signing_alg = \"HS256\"",
                "must be one of RS256, PS256, ES256",
            ),
            (
                "token_endpoint_auth_method = \"private_key_jwt\"\n  jwks = { keys = [] }\n  secret_hash = \"sha256:AAAA\"",
                "must not have a secret",
            ),
            (
                "secret_env = \"OSTIARY_SURELY_UNSET_VARIABLE\"\n  secret_file = \"/nonexistent\"",
                "only one of",
            ),
            (
                "secret_file = \"/nonexistent/secret\"",
                "cannot read the secret file",
            ),
        ];
        for (toml, want) in cases {
            let e = client_errors(toml);
            assert!(e.contains(want), "{toml}: expected {want:?} in {e:?}");
        }
        // (The certificate methods also need the server's mTLS keys: see the mTLS tests.)
        let ok = format!("token_endpoint_auth_method = \"private_key_jwt\"\n  {jwks}");
        assert_eq!(client_errors(&ok), "", "{ok}");
    }

    #[test]
    fn assertion_issuers_need_keys_once() {
        let check = |extra: &str| {
            let text =
                format!("{BASE}\n  [[domain.assertion_issuer]]\n  issuer = \"https://idp\"\n{extra}\n");
            Config::from_toml_str(&text)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(check("").contains("public keys are required"));
        assert!(check("  jwks = { keys = [] }\n  jwks_file = \"x\"").contains("not both"));
        assert!(check("  jwks = { nokeys = 1 }").contains("`keys` array"));
        assert_eq!(check("  jwks = { keys = [] }"), "");
        assert!(check("  jwks = { keys = [] }\n  subject = \"email\"").contains("subject"));
    }
}
