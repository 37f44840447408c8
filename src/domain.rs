//! The runtime model of the identity domains, built once from a validated configuration and
//! swapped whole on reload. Lookups only; protocol rules live in `oauth/`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use serde_json::Value;
use zeroize::Zeroizing;

use crate::config::{
    AdminRole, AssertionIssuerConfig, AuthMethod, ClaimSource, ClientConfig, Config, ConsentPolicy,
    DomainConfig, RefreshPolicy, SubjectMapping, TokenFormat, UnknownScopes, read_client_secret,
};
use crate::crypto::keys::SigningAlg;
use crate::crypto::secrets::{SecretHash, SharedSecret};

/// Paths of the endpoints under an issuer, defined once for the router and discovery.
pub mod paths {
    pub const OPENID_CONFIGURATION: &str = "/.well-known/openid-configuration";
    pub const OAUTH_AUTHORIZATION_SERVER: &str = "/.well-known/oauth-authorization-server";
    pub const TOKEN: &str = "/oauth2/v1/token";
    pub const INTROSPECT: &str = "/oauth2/v1/introspect";
    pub const REVOKE: &str = "/oauth2/v1/revoke";
    pub const KEYS: &str = "/oauth2/v1/keys";
    pub const AUTHORIZE: &str = "/oauth2/v1/authorize";
    pub const USERINFO: &str = "/oauth2/v1/userinfo";
    pub const LOGIN: &str = "/signin";
    pub const CONSENT: &str = "/consent";
    pub const DEVICE_AUTHORIZATION: &str = "/oauth2/v1/device";
    pub const DEVICE_PAGE: &str = "/device";
    /// OpenID Connect RP-Initiated Logout 1.0 end-session endpoint.
    pub const END_SESSION: &str = "/oauth2/v1/userlogout";
    /// The person's account page.
    pub const ACCOUNT: &str = "/account";
}

/// RFC 8705 s2.1.2: the one certificate name a tls_client_auth client is registered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSubject {
    /// `tls_client_auth_subject_dn` (RFC 4514 string).
    SubjectDn(String),
    /// `tls_client_auth_san_dns`.
    SanDns(String),
    /// `tls_client_auth_san_uri`.
    SanUri(String),
    /// `tls_client_auth_san_ip`.
    SanIp(std::net::IpAddr),
    /// `tls_client_auth_san_email`.
    SanEmail(String),
}

/// A trusted issuer of user assertions (RFC 7523 s2.1), with its keys read once.
#[derive(Debug)]
pub struct AssertionIssuer {
    /// The `iss` of its assertions.
    pub issuer: String,
    /// Its public JWKs.
    pub keys: Vec<Value>,
    /// How `sub` names a user.
    pub subject: SubjectMapping,
}

/// A registered client, ready for authentication and grants.
#[derive(Debug)]
pub struct Client {
    /// The client_id.
    pub id: String,
    /// Display name (falls back to the id).
    pub name: String,
    /// How the client authenticates.
    pub auth_method: AuthMethod,
    /// The secret's hash (confidential clients).
    pub secret: Option<SecretHash>,
    /// Grant types it may use.
    pub grant_types: HashSet<String>,
    /// Scopes it may ask for, in configuration order.
    pub scopes: Vec<String>,
    /// Access-token lifetime override.
    pub access_token_lifetime: Option<i64>,
    /// Access-token format override.
    pub access_token_format: Option<TokenFormat>,
    /// Disabled clients cannot authenticate and their tokens are inactive.
    pub enabled: bool,
    /// Hash of the client's configuration, to detect changes when reconciling.
    pub config_hash: String,
    /// Registered redirect URIs.
    pub redirect_uris: Vec<String>,
    /// Consent page policy.
    pub consent: ConsentPolicy,
    /// PKCE required.
    pub require_pkce: bool,
    /// `plain` PKCE accepted.
    pub allow_plain_pkce: bool,
    /// Handling of scopes the client may not have.
    pub unknown_scopes: UnknownScopes,
    /// ID token signature algorithm.
    pub id_token_alg: SigningAlg,
    /// When refresh tokens are issued.
    pub refresh_tokens: RefreshPolicy,
    /// Seconds within which a retried refresh gets the same new token (0: off).
    pub refresh_token_grace: i64,
    /// Inline public keys (a JWK Set), for private_key_jwt and self_signed_tls_client_auth.
    pub jwks: Option<Value>,
    /// Where the client publishes its JWK Set.
    pub jwks_uri: Option<String>,
    /// The one JWS algorithm its assertions may use, if registered.
    pub assertion_alg: Option<String>,
    /// The secret itself (client_secret_jwt only: the HMAC key).
    pub shared_secret: Option<SharedSecret>,
    /// The certificate name of a tls_client_auth client.
    pub tls_subject: Option<TlsSubject>,
    /// Registered post-logout redirect URIs (RP-Initiated Logout 1.0).
    pub post_logout_redirect_uris: Vec<String>,
    /// OpenID Back-Channel Logout 1.0 endpoint.
    pub backchannel_logout_uri: Option<String>,
    /// Whether its logout tokens must carry `sid`.
    pub backchannel_logout_session_required: bool,
    /// OpenID Front-Channel Logout 1.0 endpoint.
    pub frontchannel_logout_uri: Option<String>,
    /// Whether `iss` and `sid` are added to the front-channel URI.
    pub frontchannel_logout_session_required: bool,
    /// Administrator app roles of its client_credentials tokens.
    pub admin_roles: Vec<AdminRole>,
}

impl Client {
    /// True for clients that authenticate with a secret.
    pub fn is_confidential(&self) -> bool {
        self.auth_method != AuthMethod::None
    }
}

/// A scope of a resource server.
#[derive(Debug)]
pub struct Scope {
    /// The scope token.
    pub name: String,
    /// Consent-page text.
    pub description: String,
    /// Custom claims for tokens carrying it.
    pub claims: BTreeMap<String, ClaimSource>,
}

/// An API that accepts this domain's access tokens.
#[derive(Debug)]
pub struct ResourceServer {
    /// Its audience (`aud`) and RFC 8707 resource indicator.
    pub audience: String,
    /// Display name (the audience when none is configured).
    pub name: String,
    /// Its scopes.
    pub scopes: Vec<Scope>,
    /// Lifetime override.
    pub access_token_lifetime: Option<i64>,
    /// Format override.
    pub access_token_format: Option<TokenFormat>,
    /// Custom claims for every token meant for it.
    pub claims: BTreeMap<String, ClaimSource>,
    /// Clients that may introspect tokens meant for it.
    pub introspection_clients: HashSet<String>,
    /// The scope that asks for offline refresh tokens for it.
    pub offline_scope: Option<String>,
}

/// One identity domain.
#[derive(Debug)]
pub struct Domain {
    /// Short name.
    pub name: String,
    /// Issuer identifier, exactly as configured.
    pub issuer: String,
    /// `host[:port]` of the issuer, lowercase, default port omitted.
    pub host: String,
    /// Path prefix of the issuer ("" or "/tenant").
    pub path: String,
    /// Access-token signing algorithm.
    pub access_token_alg: SigningAlg,
    /// Default access-token lifetime in seconds.
    pub access_token_lifetime: i64,
    /// Default access-token format.
    pub access_token_format: TokenFormat,
    /// Clients by id.
    pub clients: HashMap<String, Arc<Client>>,
    /// Resource servers in configuration order.
    pub resource_servers: Vec<ResourceServer>,
    /// Scope name -> index of its resource server.
    pub scope_owner: HashMap<String, usize>,
    /// The configuration it was built from (users and later-issue keys).
    pub config: DomainConfig,
    /// Session idle timeout in seconds.
    pub session_idle_timeout: i64,
    /// Session absolute lifetime in seconds.
    pub session_max_lifetime: i64,
    /// Authorization code lifetime in seconds.
    pub code_lifetime: i64,
    /// ID token lifetime in seconds.
    pub id_token_lifetime: i64,
    /// Refresh-token idle lifetime in seconds.
    pub refresh_token_idle_lifetime: i64,
    /// Refresh-token family absolute lifetime in seconds.
    pub refresh_token_max_lifetime: i64,
    /// Device code lifetime in seconds.
    pub device_code_lifetime: i64,
    /// Slowest device polling interval in seconds.
    pub device_poll_interval: i64,
    /// Longest validity of a client or user assertion in seconds.
    pub assertion_max_lifetime: i64,
    /// Trusted issuers of user assertions.
    pub assertion_issuers: Vec<AssertionIssuer>,
    /// RFC 8705 s5: the base URL of the mutual-TLS endpoint aliases, exactly as configured.
    pub mtls_issuer: Option<String>,
    /// `host[:port]` and path prefix of `mtls_issuer`, normalised as `host` and `path` are.
    pub mtls_route: Option<(String, String)>,
    /// Client certificates reach the issuer's own endpoints (`server.client_certificate_header`:
    /// a TLS-terminating proxy passes them), so mutual TLS works there without an alias.
    pub certificates_at_issuer: bool,
}

impl Domain {
    /// Builds a domain from its validated configuration.
    pub fn from_config(d: &DomainConfig) -> Result<Domain, String> {
        let (host, path) = host_and_path(&d.issuer).map_err(|e| format!("issuer: {e}"))?;
        let mtls_route = match &d.mtls_issuer {
            Some(m) => Some(host_and_path(m).map_err(|e| format!("mtls_issuer: {e}"))?),
            None => None,
        };
        let mut clients = HashMap::new();
        for c in &d.clients {
            clients.insert(c.client_id.clone(), Arc::new(build_client(c)?));
        }
        let mut resource_servers = Vec::new();
        let mut scope_owner = HashMap::new();
        for (i, rs) in d.resource_servers.iter().enumerate() {
            for s in &rs.scopes {
                scope_owner.insert(s.name.clone(), i);
            }
            if let Some(off) = &rs.offline_scope {
                scope_owner.insert(off.clone(), i);
            }
            resource_servers.push(ResourceServer {
                audience: rs.audience.clone(),
                name: rs.name.clone().unwrap_or_else(|| rs.audience.clone()),
                scopes: rs
                    .scopes
                    .iter()
                    .map(|s| Scope {
                        name: s.name.clone(),
                        description: s.description.clone(),
                        claims: s.claims.clone(),
                    })
                    .collect(),
                access_token_lifetime: rs.access_token_lifetime.map(|s| s.0),
                access_token_format: rs.access_token_format,
                claims: rs.claims.clone(),
                introspection_clients: rs.introspection_clients.iter().cloned().collect(),
                offline_scope: rs.offline_scope.clone(),
            });
        }
        Ok(Domain {
            name: d.name.clone(),
            issuer: d.issuer.clone(),
            host,
            path,
            access_token_alg: d.access_token_signing_alg,
            access_token_lifetime: d.access_token_lifetime.0,
            access_token_format: d.access_token_format,
            clients,
            resource_servers,
            scope_owner,
            config: d.clone(),
            session_idle_timeout: d.session_idle_timeout.0,
            session_max_lifetime: d.session_max_lifetime.0,
            code_lifetime: d.code_lifetime.0,
            id_token_lifetime: d.id_token_lifetime.0,
            refresh_token_idle_lifetime: d.refresh_token_idle_lifetime.0,
            refresh_token_max_lifetime: d.refresh_token_max_lifetime.0,
            device_code_lifetime: d.device_code_lifetime.0,
            device_poll_interval: d.device_poll_interval.0,
            assertion_max_lifetime: d.assertion_max_lifetime.0,
            assertion_issuers: d
                .assertion_issuers
                .iter()
                .map(build_assertion_issuer)
                .collect::<Result<_, _>>()?,
            mtls_issuer: d.mtls_issuer.clone(),
            mtls_route,
            certificates_at_issuer: false,
        })
    }

    /// The absolute URL of an endpoint path under the mutual-TLS alias, when there is one.
    pub fn mtls_url(&self, path: &str) -> Option<String> {
        self.mtls_issuer.as_ref().map(|m| format!("{m}{path}"))
    }

    /// The absolute URL of an endpoint path under this issuer.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.issuer, path)
    }

    /// The client with this id, enabled or not.
    pub fn client(&self, id: &str) -> Option<&Arc<Client>> {
        self.clients.get(id)
    }

    /// The resource server with this audience.
    pub fn resource_server(&self, audience: &str) -> Option<&ResourceServer> {
        self.resource_servers.iter().find(|r| r.audience == audience)
    }

    /// The scope declaration of a resource-server scope.
    pub fn scope(&self, name: &str) -> Option<&Scope> {
        let rs = self.resource_servers.get(*self.scope_owner.get(name)?)?;
        rs.scopes.iter().find(|s| s.name == name)
    }

    /// Algorithms this domain keeps signing keys for: RS256 (OpenID Connect's required one), the
    /// access-token algorithm and every client's ID token algorithm.
    pub fn signing_algs(&self) -> Vec<SigningAlg> {
        let mut algs = vec![SigningAlg::RS256];
        let wanted =
            std::iter::once(self.access_token_alg).chain(self.clients.values().map(|c| c.id_token_alg));
        for alg in wanted {
            if !algs.contains(&alg) {
                algs.push(alg);
            }
        }
        algs
    }

    /// The longest lifetime of any token this domain signs: retired keys stay published this long.
    pub fn max_token_lifetime(&self) -> i64 {
        let rs = self
            .resource_servers
            .iter()
            .filter_map(|r| r.access_token_lifetime);
        let cl = self.clients.values().filter_map(|c| c.access_token_lifetime);
        rs.chain(cl)
            .fold(self.access_token_lifetime.max(self.id_token_lifetime), i64::max)
    }
}

/// `host[:port]` (lowercase, default port omitted) and path prefix ("" or "/tenant") of a URL.
fn host_and_path(url: &str) -> Result<(String, String), String> {
    let u = url::Url::parse(url).map_err(|e| e.to_string())?;
    let host_name = u.host_str().ok_or("no host")?.to_ascii_lowercase();
    let host = match u.port() {
        Some(p) => format!("{host_name}:{p}"),
        None => host_name,
    };
    Ok((host, u.path().trim_end_matches('/').to_string()))
}

fn build_assertion_issuer(a: &AssertionIssuerConfig) -> Result<AssertionIssuer, String> {
    let set = match (&a.jwks, &a.jwks_file) {
        (Some(j), _) => j.clone(),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                format!(
                    "assertion issuer {}: cannot read {}: {e}",
                    a.issuer,
                    path.display()
                )
            })?;
            serde_json::from_str(&text).map_err(|e| {
                format!(
                    "assertion issuer {}: {} is not JSON: {e}",
                    a.issuer,
                    path.display()
                )
            })?
        }
        (None, None) => Value::Null,
    };
    let keys = set
        .get("keys")
        .and_then(Value::as_array)
        .cloned()
        .ok_or_else(|| format!("assertion issuer {}: the JWK Set has no `keys` array", a.issuer))?;
    Ok(AssertionIssuer {
        issuer: a.issuer.clone(),
        keys,
        subject: a.subject,
    })
}

fn build_client(c: &ClientConfig) -> Result<Client, String> {
    let mut shared_secret = None;
    let plain = read_client_secret(c).map_err(|e| format!("client {}: {e}", c.client_id))?;
    let secret = match (&c.secret_hash, plain) {
        (Some(h), _) => Some(SecretHash::parse(h).map_err(|e| format!("client {}: {e}", c.client_id))?),
        (None, Some(v)) => {
            if c.token_endpoint_auth_method == AuthMethod::ClientSecretJwt {
                if let Some(alg) = &c.token_endpoint_auth_signing_alg
                    && v.len() < crate::crypto::jws::hmac_key_bytes(alg)
                {
                    return Err(format!(
                        "client {}: token_endpoint_auth_signing_alg {alg} needs a secret of at least {} bytes (RFC 7518 s3.2)",
                        c.client_id,
                        crate::crypto::jws::hmac_key_bytes(alg)
                    ));
                }
                shared_secret = Some(SharedSecret(Zeroizing::new(v.as_bytes().to_vec())));
            }
            Some(SecretHash::from_plain_secret(&v))
        }
        (None, None) => None,
    };
    let tls_subject = if let Some(dn) = &c.tls_client_auth_subject_dn {
        Some(TlsSubject::SubjectDn(dn.clone()))
    } else if let Some(v) = &c.tls_client_auth_san_dns {
        Some(TlsSubject::SanDns(v.clone()))
    } else if let Some(v) = &c.tls_client_auth_san_uri {
        Some(TlsSubject::SanUri(v.clone()))
    } else if let Some(v) = &c.tls_client_auth_san_ip {
        let ip = v.parse().map_err(|_| {
            format!(
                "client {}: tls_client_auth_san_ip is not an IP address",
                c.client_id
            )
        })?;
        Some(TlsSubject::SanIp(ip))
    } else {
        c.tls_client_auth_san_email.clone().map(TlsSubject::SanEmail)
    };
    Ok(Client {
        id: c.client_id.clone(),
        name: c.name.clone().unwrap_or_else(|| c.client_id.clone()),
        auth_method: c.token_endpoint_auth_method,
        secret,
        grant_types: c.grant_types.iter().cloned().collect(),
        scopes: c.scopes.clone(),
        access_token_lifetime: c.access_token_lifetime.map(|s| s.0),
        access_token_format: c.access_token_format,
        enabled: c.enabled,
        config_hash: config_hash(c),
        redirect_uris: c.redirect_uris.clone(),
        consent: c.consent,
        require_pkce: c.require_pkce,
        allow_plain_pkce: c.allow_plain_pkce,
        unknown_scopes: c.unknown_scopes,
        id_token_alg: c.id_token_signed_response_alg.unwrap_or(SigningAlg::RS256),
        refresh_tokens: c.refresh_tokens,
        refresh_token_grace: c.refresh_token_grace.0,
        jwks: c.jwks.clone(),
        jwks_uri: c.jwks_uri.clone(),
        assertion_alg: c.token_endpoint_auth_signing_alg.clone(),
        shared_secret,
        tls_subject,
        post_logout_redirect_uris: c.post_logout_redirect_uris.clone(),
        backchannel_logout_uri: c.backchannel_logout_uri.clone(),
        backchannel_logout_session_required: c.backchannel_logout_session_required,
        frontchannel_logout_uri: c.frontchannel_logout_uri.clone(),
        frontchannel_logout_session_required: c.frontchannel_logout_session_required,
        admin_roles: c.admin_roles.clone(),
    })
}

/// A stable hash of a serializable configuration item, to detect changes.
pub fn config_hash(item: &impl serde::Serialize) -> String {
    let json = serde_json::to_vec(item).unwrap_or_default();
    let digest = Sha256::digest(&json);
    digest.iter().take(12).map(|b| format!("{b:02x}")).collect()
}

/// All domains of a configuration, with routing by host and path.
#[derive(Debug)]
pub struct Domains {
    /// Domains in configuration order.
    pub list: Vec<Arc<Domain>>,
    /// The configuration's `revision`, claimed in the store before reconciling.
    pub revision: Option<i64>,
}

impl Domains {
    /// Builds every domain of a validated configuration.
    pub fn from_config(config: &Config) -> Result<Domains, String> {
        let list = config
            .domains
            .iter()
            .map(|d| {
                let mut domain = Domain::from_config(d)?;
                domain.certificates_at_issuer = config.server.client_certificate_header.is_some();
                Ok(Arc::new(domain))
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Domains {
            list,
            revision: config.revision,
        })
    }

    /// The domain named `name`.
    pub fn by_name(&self, name: &str) -> Option<&Arc<Domain>> {
        self.list.iter().find(|d| d.name == name)
    }

    /// The domain whose issuer (or mutual-TLS alias) host matches `host` and whose path is the
    /// longest prefix of `path`; returns it with the rest of the path.
    pub fn route<'p>(
        &self,
        host: &str,
        scheme_default_port: &[u16],
        path: &'p str,
    ) -> Option<(Arc<Domain>, &'p str)> {
        let host = normalize_host(host, scheme_default_port);
        let mut best: Option<(&Arc<Domain>, usize, &'p str)> = None;
        for d in &self.list {
            let bases = std::iter::once((&d.host, &d.path)).chain(d.mtls_route.as_ref().map(|(h, p)| (h, p)));
            for (base_host, base_path) in bases {
                if *base_host != host {
                    continue;
                }
                let rest = if base_path.is_empty() {
                    Some(path)
                } else {
                    path.strip_prefix(base_path.as_str())
                        .filter(|r| r.is_empty() || r.starts_with('/'))
                };
                if let Some(rest) = rest
                    && best.is_none_or(|(_, len, _)| len < base_path.len())
                {
                    best = Some((d, base_path.len(), rest));
                }
            }
        }
        best.map(|(d, _, rest)| (d.clone(), rest))
    }

    /// The domain with exactly this host and issuer path (RFC 8414 s3 inserted well-known form).
    pub fn exact(&self, host: &str, path: &str) -> Option<Arc<Domain>> {
        let host = normalize_host(host, &[80, 443]);
        let path = path.trim_end_matches('/');
        self.list
            .iter()
            .find(|d| d.host == host && d.path == path)
            .cloned()
    }
}

fn normalize_host(host: &str, default_ports: &[u16]) -> String {
    let host = host.to_ascii_lowercase();
    if let Some((h, p)) = host.rsplit_once(':')
        && let Ok(port) = p.parse::<u16>()
        && default_ports.contains(&port)
    {
        return h.to_string();
    }
    host
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn domains() -> Domains {
        let c = Config::from_toml_str(
            r#"
[[domain]]
name = "a"
issuer = "http://127.0.0.1:8080"
[[domain]]
name = "b"
issuer = "http://127.0.0.1:8080/tenant2"
"#,
        )
        .unwrap();
        Domains::from_config(&c).unwrap()
    }

    #[test]
    fn routes_by_host_and_longest_prefix() {
        let d = domains();
        let (a, rest) = d.route("127.0.0.1:8080", &[80, 443], "/oauth2/v1/token").unwrap();
        assert_eq!((a.name.as_str(), rest), ("a", "/oauth2/v1/token"));
        let (b, rest) = d
            .route("127.0.0.1:8080", &[80, 443], "/tenant2/oauth2/v1/keys")
            .unwrap();
        assert_eq!((b.name.as_str(), rest), ("b", "/oauth2/v1/keys"));
        let (a2, _) = d.route("127.0.0.1:8080", &[80, 443], "/tenant22/x").unwrap();
        assert_eq!(a2.name, "a");
        assert!(
            d.route("localhost:8080", &[80, 443], "/oauth2/v1/token")
                .is_none()
        );
        assert_eq!(d.exact("127.0.0.1:8080", "/tenant2").unwrap().name, "b");
    }

    /// RFC 7518 s3.2: a client_secret_jwt client registered for HS384 or HS512 needs a secret of
    /// at least 48 or 64 bytes; refused at load, not at every authentication.
    #[test]
    fn an_hmac_algorithm_longer_than_the_secret_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "s".repeat(50)).unwrap();
        let config = |alg: &str| {
            Config::from_toml_str(&format!(
                r#"
[[domain]]
name = "a"
issuer = "http://127.0.0.1:8080"
  [[domain.client]]
  client_id = "hmac"
  token_endpoint_auth_method = "client_secret_jwt"
  token_endpoint_auth_signing_alg = "{alg}"
  secret_file = "{}"
  grant_types = ["client_credentials"]
"#,
                file.display()
            ))
            .unwrap()
        };
        assert!(Domains::from_config(&config("HS384")).is_ok());
        let e = Domains::from_config(&config("HS512")).err().unwrap();
        assert!(e.contains("HS512 needs a secret of at least 64 bytes"), "{e}");
    }

    #[test]
    fn routes_the_mtls_alias_to_its_domain() {
        let c = Config::from_toml_str(
            r#"
[server]
mtls_listen = "127.0.0.1:8443"
tls_cert_file = "cert.pem"
tls_key_file = "key.pem"
[[domain]]
name = "a"
issuer = "http://127.0.0.1:8080"
mtls_issuer = "https://mtls.example.com"
[[domain]]
name = "b"
issuer = "http://127.0.0.1:8080/tenant2"
mtls_issuer = "https://mtls.example.com:8443/tenant2"
"#,
        )
        .unwrap();
        let d = Domains::from_config(&c).unwrap();
        let (a, rest) = d
            .route("MTLS.example.com:443", &[80, 443], "/oauth2/v1/token")
            .unwrap();
        assert_eq!((a.name.as_str(), rest), ("a", "/oauth2/v1/token"));
        let (b, rest) = d
            .route("mtls.example.com:8443", &[80, 443], "/tenant2/oauth2/v1/token")
            .unwrap();
        assert_eq!((b.name.as_str(), rest), ("b", "/oauth2/v1/token"));
        assert!(
            d.route("mtls.example.com:8443", &[80, 443], "/oauth2/v1/token")
                .is_none()
        );
        assert_eq!(
            a.mtls_url("/oauth2/v1/token").as_deref(),
            Some("https://mtls.example.com/oauth2/v1/token")
        );
    }
}
