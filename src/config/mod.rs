//! Typed configuration: a TOML file, overridden key by key from the environment
//! (`OSTIARY_SERVER__LISTEN`, `OSTIARY_DOMAIN__0__ISSUER`), with unknown keys refused and every
//! semantic problem reported with its key path.
//!
//! Environment overrides are applied by hand rather than through a layered-config crate because
//! `[[domain]]` is an array of tables and the overrides must address its elements by index.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize};

mod client;
mod domain;

pub use client::*;
pub use domain::*;

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
        RawDuration::deserialize(d)?.parse(Seconds::parse, r#""30s", "10m", "1h", "7d""#)
    }
}

/// A duration as the file writes it: an integer (seconds) or text with a unit.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawDuration {
    Int(i64),
    Text(String),
}

impl RawDuration {
    /// Reads it with `parse` (an integer as its digits), or says what is wrong, with `examples`.
    fn parse<T, E: serde::de::Error>(
        self,
        parse: impl Fn(&str) -> Option<T>,
        examples: &str,
    ) -> Result<T, E> {
        match self {
            RawDuration::Int(n) if n < 0 => Err(E::custom("a duration cannot be negative")),
            RawDuration::Int(n) => parse(&n.to_string()).ok_or_else(|| E::custom("a duration too long")),
            RawDuration::Text(t) => parse(&t)
                .ok_or_else(|| E::custom(format!("invalid duration {t:?}: use e.g. {examples} or seconds"))),
        }
    }
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This file's revision, raised with every change: the store remembers the highest one it was
    /// reconciled from and refuses a lower one (or none, once one was given), so a replica with
    /// an older copy of the file cannot put older clients and users back for every replica.
    #[serde(default)]
    pub revision: Option<i64>,
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
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on. Default `127.0.0.1:8080`.
    pub listen: String,
    /// `text` (default) or `json`.
    pub log_format: LogFormat,
    /// Largest accepted request body; larger ones get 413. Default 65536.
    pub max_body_bytes: usize,
    /// A request answered after at least this long is logged at warn, with its status, time and
    /// request id (`0`: never). Default 1 s.
    pub slow_request: Millis,
    /// Time a client has to send a request's whole headers (hyper's `header_read_timeout`); a
    /// connection whose headers are not complete by then is closed, so that a client that sends
    /// half its headers cannot hold a connection open. Default 30 s.
    pub header_read_timeout: Millis,
    /// Time a client has to send a request's whole body once its headers are in; past it the
    /// request is answered 408, so that a client that trickles a body cannot hold a request (and
    /// its connection) open. Default 30 s.
    pub body_read_timeout: Millis,
    /// Password hashes verified at once, on argon2 threads of their own at a lower priority.
    /// Default: the number of cores.
    pub argon2_max_concurrent: usize,
    /// How often expired rows are removed. Default 60s.
    pub gc_interval: Seconds,
    /// Rows removed per statement by the garbage collector. Default 1000.
    pub gc_batch: i64,
    /// How long audit events are kept before the garbage collector removes them. Default 90d.
    pub audit_retention: Seconds,
    /// How often due back-channel logouts are delivered (retries wait longer). Default 5s.
    pub logout_delivery_interval: Seconds,
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
    /// Address of a plain-HTTP listener of its own for `GET /metrics` (with `/healthz` and
    /// `/readyz`), e.g. `127.0.0.1:9090`, so that the metrics are kept off the public listener:
    /// when it is set, the main and mutual-TLS listeners answer `/metrics` with 404. Default:
    /// none (`/metrics` is served on the main listener).
    pub metrics_listen: Option<String>,
    /// TLS handshakes in progress at once from one address (an IPv6 /64) on the TLS listeners;
    /// a connection past it is closed at once, so that a host opening connections and sending
    /// nothing cannot hold the listener. `0`: no limit per address (behind a TCP load balancer
    /// that hides the clients' addresses, every connection comes from its address). Default 16.
    pub tls_handshakes_per_address: usize,
    /// PEM trust anchors of `tls_client_auth` certificates. Default: none (no certificate is
    /// trusted; `self_signed_tls_client_auth` still works).
    pub client_ca_file: Option<PathBuf>,
    /// PEM certificate revocation lists (RFC 5280) of the CAs of `client_ca_file`: a certificate
    /// they list, or whose chain has a listed certificate, is not trusted. Re-read within 5 s
    /// when a file changes. Default: none (revocation is not checked).
    pub client_crl_files: Vec<PathBuf>,
    /// A header set by a trusted TLS-terminating proxy carrying the client certificate as
    /// URL-encoded PEM (nginx `$ssl_client_escaped_cert`). Trusted on the main listener only;
    /// the proxy must overwrite it on every request. Default: none (the header is ignored).
    pub client_certificate_header: Option<String>,
    /// Addresses and networks (`10.0.0.5`, `10.0.0.0/8`, `fd00::/8`) of the reverse proxies in
    /// front: `client_address_header` and `client_certificate_header` are read only from a
    /// connection whose peer is one of them. Needed by either header. Default: none.
    pub trusted_proxies: Vec<String>,
}

/// `server.trusted_proxies`, parsed: who may set the proxy headers.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<ipnet::IpNet>);

impl TrustedProxies {
    /// The networks of `entries`; Err with the index and text of the first that is neither an
    /// address nor a network.
    pub fn parse(entries: &[String]) -> Result<TrustedProxies, (usize, String)> {
        entries
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let e = e.trim();
                e.parse::<ipnet::IpNet>()
                    .ok()
                    .or_else(|| e.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
                    .ok_or_else(|| (i, e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(TrustedProxies)
    }

    /// True when `ip` (an IPv4-mapped IPv6 address counts as its IPv4 one) is a trusted proxy.
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|n| n.contains(&ip))
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8080".into(),
            log_format: LogFormat::Text,
            max_body_bytes: 64 * 1024,
            slow_request: Millis(1000),
            header_read_timeout: Millis(30_000),
            body_read_timeout: Millis(30_000),
            argon2_max_concurrent: std::thread::available_parallelism().map_or(2, |n| n.get()),
            gc_interval: Seconds(60),
            gc_batch: 1000,
            audit_retention: Seconds(90 * 86400),
            logout_delivery_interval: Seconds(5),
            client_address_header: None,
            tls_cert_file: None,
            tls_key_file: None,
            mtls_listen: None,
            metrics_listen: None,
            tls_handshakes_per_address: 16,
            client_ca_file: None,
            client_crl_files: Vec::new(),
            client_certificate_header: None,
            trusted_proxies: Vec::new(),
        }
    }
}

/// A duration in whole milliseconds, written `"250ms"`, or as [`Seconds`] are (`"2s"`, `"1m"`, an
/// integer of seconds): the thresholds under a second. Not `Serialize`: written as a bare number
/// it would read back as seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Millis(pub u64);

impl Millis {
    /// Parses `"250ms"`, `"2s"`, `"1m"`, `"0"` or `"3"` (seconds).
    pub fn parse(s: &str) -> Option<Millis> {
        let s = s.trim();
        if let Some(n) = s.strip_suffix("ms") {
            return n.trim().parse().ok().map(Millis);
        }
        let Seconds(n) = Seconds::parse(s)?;
        u64::try_from(n).ok()?.checked_mul(1000).map(Millis)
    }

    /// The duration, or None for zero (off).
    pub fn non_zero(self) -> Option<std::time::Duration> {
        (self.0 > 0).then(|| std::time::Duration::from_millis(self.0))
    }
}

impl<'de> Deserialize<'de> for Millis {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        RawDuration::deserialize(d)?.parse(Millis::parse, r#""250ms", "2s", "1m""#)
    }
}

/// `[database]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://path/to/file.db` (default `sqlite://data/ostiary.db`) or `postgres://...`.
    pub url: String,
    /// Pool size. Default 10.
    pub max_connections: u32,
    /// A connection is closed this long after it was opened (`0`: never). Default 30 minutes.
    pub max_lifetime: Seconds,
    /// A connection is closed after this long unused (`0`: never). Default 10 minutes.
    pub idle_timeout: Seconds,
    /// A statement that runs at least this long is logged at warn, with its SQL and time (`0`:
    /// never). Default 1 s.
    pub slow_statement: Millis,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: "sqlite://data/ostiary.db".into(),
            max_connections: 10,
            max_lifetime: Seconds(1800),
            idle_timeout: Seconds(600),
            slow_statement: Millis(1000),
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
#[derive(Debug, Clone, PartialEq, Deserialize)]
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

impl Config {
    /// Reads `path`, applies `OSTIARY_*__*` overrides from the process environment, and validates.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            let mut errs = ConfigErrors::default();
            errs.push(path.display().to_string(), format!("cannot read: {e}"));
            errs
        })?;
        // vars() panics at a variable that is not Unicode, whoever's it is: only ours are read,
        // and one of ours that is not is refused.
        let mut env = Vec::new();
        let mut errs = ConfigErrors::default();
        for (name, value) in std::env::vars_os() {
            let Some(name) = name.to_str().filter(|n| n.starts_with(ENV_PREFIX)) else {
                continue;
            };
            match value.into_string() {
                Ok(v) => env.push((name.to_string(), v)),
                Err(_) if name.contains("__") || is_revision_variable(name) => {
                    errs.push(name, "is not valid UTF-8")
                }
                Err(_) => {}
            }
        }
        if !errs.0.is_empty() {
            return Err(errs);
        }
        Self::from_toml_str_with_env(&text, env)
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
        if self.revision.is_some_and(|r| r < 0) {
            errs.push("revision", "cannot be negative");
        }
        if self.server.max_body_bytes < 1024 {
            errs.push("server.max_body_bytes", "must be at least 1024");
        }
        if self.server.header_read_timeout.0 == 0 {
            errs.push("server.header_read_timeout", "must be more than 0");
        }
        if self.server.body_read_timeout.0 == 0 {
            errs.push("server.body_read_timeout", "must be more than 0");
        }
        if self.server.argon2_max_concurrent == 0 {
            errs.push("server.argon2_max_concurrent", "must be at least 1");
        }
        if self.server.gc_batch < 1 {
            errs.push("server.gc_batch", "must be at least 1");
        }
        if self.server.audit_retention.0 == 0 {
            errs.push("server.audit_retention", "must be at least 1s");
        }
        if let Some(h) = &self.server.client_address_header
            && axum::http::HeaderName::try_from(h.as_str()).is_err()
        {
            errs.push("server.client_address_header", "must be an HTTP header name");
        }
        if let Err((i, e)) = TrustedProxies::parse(&self.server.trusted_proxies) {
            errs.push(
                format!("server.trusted_proxies[{i}]"),
                format!("{e:?} is not an IP address or network (e.g. 10.0.0.5 or 10.0.0.0/8)"),
            );
        }
        for (key, set) in [
            (
                "client_address_header",
                self.server.client_address_header.is_some(),
            ),
            (
                "client_certificate_header",
                self.server.client_certificate_header.is_some(),
            ),
        ] {
            if set && self.server.trusted_proxies.is_empty() {
                errs.push(
                    format!("server.{key}"),
                    "needs server.trusted_proxies: the addresses of the proxies that set it (from anyone else it would be believed)",
                );
            }
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
        // A rotation stages a key that signs publish_ahead later, and no new one is staged while
        // one waits: an interval not above it would rotate every publish_ahead instead.
        let k = &self.keys;
        if k.rotation_interval.0 != 0 && k.rotation_interval.0 <= k.publish_ahead.0 {
            errs.push(
                "keys.rotation_interval",
                format!(
                    "must be longer than keys.publish_ahead ({}s), or 0 to turn automatic rotation off",
                    k.publish_ahead.0
                ),
            );
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
                ("client_secret_attempts", d.client_secret_attempts),
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
        if let Some(m) = &s.metrics_listen {
            if m.parse::<std::net::SocketAddr>().is_err() {
                errs.push(
                    "server.metrics_listen",
                    "must be an address and port, e.g. 127.0.0.1:9090",
                );
            } else if !m.ends_with(":0") && (*m == s.listen || s.mtls_listen.as_ref() == Some(m)) {
                errs.push(
                    "server.metrics_listen",
                    "must differ from server.listen and server.mtls_listen",
                );
            }
        }
        if let Some(h) = &s.client_certificate_header
            && axum::http::HeaderName::try_from(h.as_str()).is_err()
        {
            errs.push("server.client_certificate_header", "must be an HTTP header name");
        }
        if !s.client_crl_files.is_empty() && s.client_ca_file.is_none() {
            errs.push(
                "server.client_crl_files",
                "revocation lists need the CAs they belong to: set server.client_ca_file",
            );
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

/// Applies one `OSTIARY_A__B__0__C=value` variable to the TOML table; other variables are ignored.
fn apply_env_override(table: &mut toml::Table, name: &str, raw: &str, errs: &mut ConfigErrors) {
    let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
        return;
    };
    // The top-level `revision` is the one key without a section.
    let segments: Vec<String> = if is_revision_variable(name) {
        vec!["revision".to_string()]
    } else if rest.contains("__") {
        rest.split("__").map(|s| s.to_ascii_lowercase()).collect()
    } else {
        return;
    };
    let value = parse_env_value(raw);
    if let Err(m) = set_path(table, &segments, value) {
        errs.push(name, m);
    }
}

impl KeysConfig {
    /// The value of `kek_env` in the process environment: None when unset; an error when it is
    /// not UTF-8 (taken as unset, a new key-encryption key would be made, or the stored keys
    /// reported as undecryptable).
    pub fn kek_env_value(&self) -> anyhow::Result<Option<String>> {
        match std::env::var(&self.kek_env) {
            Ok(v) => Ok(Some(v)),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => {
                anyhow::bail!("{} (keys.kek_env) is not valid UTF-8", self.kek_env)
            }
        }
    }
}

/// `OSTIARY_REVISION`: the top-level `revision`.
fn is_revision_variable(name: &str) -> bool {
    name.strip_prefix(ENV_PREFIX)
        .is_some_and(|rest| rest.eq_ignore_ascii_case("REVISION"))
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
    fn millisecond_durations_parse() {
        assert_eq!(Millis::parse("250ms"), Some(Millis(250)));
        assert_eq!(Millis::parse("2s"), Some(Millis(2000)));
        assert_eq!(Millis::parse("1m"), Some(Millis(60_000)));
        assert_eq!(Millis::parse("3"), Some(Millis(3000)));
        assert_eq!(Millis::parse("0"), Some(Millis(0)));
        assert_eq!(Millis(0).non_zero(), None);
        assert_eq!(
            Millis(250).non_zero(),
            Some(std::time::Duration::from_millis(250))
        );
        for bad in ["-5ms", "ms", "1.5s", "fast"] {
            assert_eq!(Millis::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn slow_statement_is_read_from_the_file_and_the_environment() {
        let c = Config::from_toml_str(BASE).unwrap();
        assert_eq!(c.database.slow_statement, Millis(1000));
        let c = Config::from_toml_str(&format!("[database]\nslow_statement = \"50ms\"\n{BASE}")).unwrap();
        assert_eq!(c.database.slow_statement, Millis(50));
        let c = Config::from_toml_str(&format!("[database]\nslow_statement = 0\n{BASE}")).unwrap();
        assert_eq!(c.database.slow_statement, Millis(0));
        let env = [(
            "OSTIARY_DATABASE__SLOW_STATEMENT".to_string(),
            "250ms".to_string(),
        )];
        let c = Config::from_toml_str_with_env(BASE, env).unwrap();
        assert_eq!(c.database.slow_statement, Millis(250));
        for (bad, says) in [
            ("\"fast\"", "invalid duration \"fast\""),
            ("-1", "cannot be negative"),
        ] {
            let errs =
                Config::from_toml_str(&format!("[database]\nslow_statement = {bad}\n{BASE}")).unwrap_err();
            let text = errs.to_string();
            assert!(
                text.contains("database.slow_statement") && text.contains(says),
                "{bad}: {text}"
            );
        }
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
            ("OSTIARY_DATABASE__IDLE_TIMEOUT".to_string(), "2m".to_string()),
            ("OSTIARY_KEK".to_string(), "not-a-config-key".to_string()),
        ];
        let c = Config::from_toml_str_with_env(BASE, env).unwrap();
        assert_eq!(c.server.listen, "0.0.0.0:9000");
        assert_eq!(c.domains[0].issuer, "https://id.example.com");
        assert_eq!(c.database.max_connections, 3);
        assert_eq!(c.database.idle_timeout, Seconds(120));
        assert_eq!(c.database.max_lifetime, Seconds(1800), "the default");
    }

    #[test]
    fn a_resource_server_cannot_take_the_issuer_as_its_audience() {
        for aud in ["http://127.0.0.1:8080", "http://127.0.0.1:8080/"] {
            let text = format!(
                "{BASE}\n  [[domain.resource_server]]\n  audience = \"{aud}\"\n  scopes = [{{ name = \"a.read\" }}]\n"
            );
            let errs = Config::from_toml_str(&text).unwrap_err().to_string();
            assert!(
                errs.contains("domain[0].resource_server[0].audience") && errs.contains("admin API"),
                "{aud}: {errs}"
            );
        }
        let ok = format!(
            "{BASE}\n  [[domain.resource_server]]\n  audience = \"http://127.0.0.1:8080/orders\"\n  scopes = [{{ name = \"a.read\" }}]\n"
        );
        Config::from_toml_str(&ok).unwrap();
    }

    #[test]
    fn read_timeouts_default_to_30_s_and_cannot_be_0() {
        let c = Config::from_toml_str(BASE).unwrap();
        assert_eq!(
            (c.server.header_read_timeout.0, c.server.body_read_timeout.0),
            (30_000, 30_000)
        );
        for key in ["header_read_timeout", "body_read_timeout"] {
            let errs = Config::from_toml_str(&format!("[server]\n{key} = \"0\"\n{BASE}")).unwrap_err();
            assert!(
                errs.to_string()
                    .contains(&format!("server.{key}: must be more than 0")),
                "{errs}"
            );
        }
    }

    #[test]
    fn a_revision_is_read_and_cannot_be_negative() {
        assert_eq!(Config::from_toml_str(BASE).unwrap().revision, None);
        let c = Config::from_toml_str(&format!("revision = 7\n{BASE}")).unwrap();
        assert_eq!(c.revision, Some(7));
        let errs = Config::from_toml_str(&format!("revision = -1\n{BASE}")).unwrap_err();
        assert!(
            errs.to_string().contains("revision: cannot be negative"),
            "{errs}"
        );
    }

    #[test]
    fn a_rotation_interval_not_above_publish_ahead_is_refused() {
        let with = |keys: &str| format!("[keys]\n{keys}\n{BASE}");
        let e =
            Config::from_toml_str(&with("rotation_interval = \"30d\"\npublish_ahead = \"60d\"")).unwrap_err();
        assert!(
            e.to_string()
                .contains("keys.rotation_interval: must be longer than keys.publish_ahead"),
            "{e}"
        );
        assert!(Config::from_toml_str(&with("rotation_interval = \"0\"\npublish_ahead = \"60d\"")).is_ok());
        assert!(Config::from_toml_str(&with("rotation_interval = \"2h\"\npublish_ahead = \"1h\"")).is_ok());
    }

    #[test]
    fn the_revision_can_be_set_from_the_environment() {
        let env = vec![("OSTIARY_REVISION".to_string(), "5".to_string())];
        let c = Config::from_toml_str_with_env(BASE, env).unwrap();
        assert_eq!(c.revision, Some(5));
        let env = vec![("OSTIARY_REVISION".to_string(), "-1".to_string())];
        let e = Config::from_toml_str_with_env(BASE, env).unwrap_err();
        assert!(e.to_string().contains("revision: cannot be negative"), "{e}");
    }

    #[test]
    fn unknown_env_key_is_refused() {
        let env = vec![("OSTIARY_SERVER__LISTN".to_string(), "x".to_string())];
        let e = Config::from_toml_str_with_env(BASE, env).unwrap_err();
        assert!(e.to_string().contains("listn"), "{e}");
    }

    #[test]
    fn metrics_listen_is_checked() {
        let with = |v: &str| format!("[server]\nlisten = \"127.0.0.1:8080\"\n{v}\n{BASE}");
        let e = Config::from_toml_str(&with("metrics_listen = \"localhost\"")).unwrap_err();
        assert!(
            e.to_string()
                .contains("server.metrics_listen: must be an address and port"),
            "{e}"
        );
        let e = Config::from_toml_str(&with("metrics_listen = \"127.0.0.1:8080\"")).unwrap_err();
        assert!(
            e.to_string().contains("server.metrics_listen: must differ"),
            "{e}"
        );
        let c = Config::from_toml_str(&with("metrics_listen = \"127.0.0.1:9090\"")).unwrap();
        assert_eq!(c.server.metrics_listen.as_deref(), Some("127.0.0.1:9090"));
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
            "[server]\nclient_certificate_header = \"X-Client-Cert\"\ntrusted_proxies = [\"10.0.0.0/8\"]\n{}",
            no_certificates.replace("https://mtls.example.com", "https://127.0.0.1:8080")
        );
        let e = Config::from_toml_str(&behind_a_proxy).unwrap_err().to_string();
        assert!(e.contains("has the host and path of a domain's issuer"), "{e}");
        let ok = behind_a_proxy.replace("https://127.0.0.1:8080", "https://mtls.example.com");
        Config::from_toml_str(&ok).unwrap();
    }

    #[test]
    fn proxy_headers_need_the_proxies_and_the_proxies_must_parse() {
        for key in ["client_address_header", "client_certificate_header"] {
            let text = format!("[server]\n{key} = \"X-Header\"\n{BASE}");
            let e = Config::from_toml_str(&text).unwrap_err().to_string();
            assert!(
                e.contains(&format!("server.{key}: needs server.trusted_proxies")),
                "{e}"
            );
        }
        let text = format!(
            "[server]\nclient_address_header = \"X-Forwarded-For\"\ntrusted_proxies = [\"10.0.0.5\", \"10.1.0.0/16\", \"fd00::/8\", \"proxy.example.com\"]\n{BASE}"
        );
        let e = Config::from_toml_str(&text).unwrap_err().to_string();
        assert!(
            e.contains("server.trusted_proxies[3]: \"proxy.example.com\" is not an IP address or network"),
            "{e}"
        );
        let ok = text.replace(", \"proxy.example.com\"", "");
        let c = Config::from_toml_str(&ok).unwrap();
        let proxies = TrustedProxies::parse(&c.server.trusted_proxies).unwrap();
        for (ip, trusted) in [
            ("10.0.0.5", true),
            ("10.0.0.6", false),
            ("10.1.255.1", true),
            ("::ffff:10.1.2.3", true),
            ("fd12::1", true),
            ("fe80::1", false),
            ("127.0.0.1", false),
        ] {
            assert_eq!(proxies.contains(ip.parse().unwrap()), trusted, "{ip}");
        }
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
        // A secret given in clear is at least 32 characters (it is never throttled).
        let dir = tempfile::tempdir().unwrap();
        for (secret, ok) in [
            ("short-secret", false),
            (&"x".repeat(31)[..], false),
            (&"x".repeat(32)[..], true),
        ] {
            let file = dir.path().join("secret");
            std::fs::write(&file, format!("{secret}\n")).unwrap();
            let e = client_errors(&format!("secret_file = \"{}\"", file.display()));
            assert_eq!(
                e.contains("the client secret must be at least 32 characters"),
                !ok,
                "{secret}: {e}"
            );
        }
        // The subject DN is read as authentication reads it.
        let dn = |dn: &str| {
            client_errors(&format!(
                "token_endpoint_auth_method = \"tls_client_auth\"\n  tls_client_auth_subject_dn = \"{dn}\""
            ))
        };
        let e = dn("CN=x,postalCode=12345,C=US");
        assert!(
            e.contains(
                "domain[0].client[0].tls_client_auth_subject_dn: unknown attribute type \"postalCode\""
            ),
            "{e}"
        );
        assert!(!dn("CN=x,2.5.4.17=12345,C=US").contains("tls_client_auth_subject_dn"));
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
