//! `[[domain.client]]`: a client's registration (authentication method, keys, grants, scopes,
//! redirect URIs) and its validation.

use std::collections::HashSet;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::*;
use crate::crypto::keys::SigningAlg;
use crate::crypto::secrets::SecretHash;

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
    /// Administrator app roles: its client_credentials tokens may call the administration API
    /// (`{issuer}/admin/v1/`) within these roles. Default: none.
    #[serde(default)]
    pub admin_roles: Vec<AdminRole>,
}

/// An administrator app role of a client (what its tokens may do at `{issuer}/admin/v1/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
pub enum AdminRole {
    /// Every administration resource.
    #[serde(rename = "Identity Domain Administrator")]
    IdentityDomainAdministrator,
    /// Users and Sessions.
    #[serde(rename = "User Administrator")]
    UserAdministrator,
    /// OAuthConsents.
    #[serde(rename = "Consent Administrator")]
    ConsentAdministrator,
    /// Keys and Events.
    #[serde(rename = "Security Administrator")]
    SecurityAdministrator,
    /// Clients (read only).
    #[serde(rename = "Application Administrator")]
    ApplicationAdministrator,
}

impl AdminRole {
    /// Every role.
    pub const ALL: [AdminRole; 5] = [
        AdminRole::IdentityDomainAdministrator,
        AdminRole::UserAdministrator,
        AdminRole::ConsentAdministrator,
        AdminRole::SecurityAdministrator,
        AdminRole::ApplicationAdministrator,
    ];

    /// The role's name, as configured and carried in tokens.
    pub fn as_str(self) -> &'static str {
        match self {
            AdminRole::IdentityDomainAdministrator => "Identity Domain Administrator",
            AdminRole::UserAdministrator => "User Administrator",
            AdminRole::ConsentAdministrator => "Consent Administrator",
            AdminRole::SecurityAdministrator => "Security Administrator",
            AdminRole::ApplicationAdministrator => "Application Administrator",
        }
    }

    /// The role named `name`.
    pub fn from_name(name: &str) -> Option<AdminRole> {
        Self::ALL.into_iter().find(|r| r.as_str() == name)
    }
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

pub(super) fn default_auth_method() -> AuthMethod {
    AuthMethod::ClientSecretBasic
}

pub(super) fn validate_client(c: &ClientConfig, cp: &str, scopes: &HashSet<&str>, errs: &mut ConfigErrors) {
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
    // Administrator tokens come from client_credentials, which only confidential clients use.
    if !c.admin_roles.is_empty()
        && (!confidential || !c.grant_types.iter().any(|g| g == "client_credentials"))
    {
        errs.push(
            format!("{cp}.admin_roles"),
            "administrator roles need a confidential client with the client_credentials grant",
        );
    }
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
pub(super) fn validate_client_keys(c: &ClientConfig, cp: &str, errs: &mut ConfigErrors) {
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
    // RFC 8705 s2.1.2: the subject DN is an RFC 4514 string; read it as authentication will, so
    // that one it cannot read is refused here instead of failing every authentication.
    if let Some(dn) = &c.tls_client_auth_subject_dn
        && let Err(why) = crate::oauth::mtls::check_subject_dn(dn)
    {
        errs.push(format!("{cp}.tls_client_auth_subject_dn"), why);
    }
}

/// The fewest characters of a secret given in clear (`secret_env`, `secret_file`).
pub const MIN_CLEAR_SECRET: usize = 32;

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
    // Stored as one SHA-256 and never throttled, it must not be guessable; client_secret_jwt
    // keys HMACs with it, and RFC 7518 s3.2 asks for a key of at least the hash's size.
    if value.chars().count() < MIN_CLEAR_SECRET {
        return Err(format!(
            "the client secret must be at least {MIN_CLEAR_SECRET} characters (generate one with `ostiary hash-secret --generate`)"
        ));
    }
    Ok(Some(zeroize::Zeroizing::new(value)))
}
