//! `[[domain]]`: an identity domain's settings, resource servers, scopes, users and trusted
//! assertion issuers, and their validation.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::*;
use crate::crypto::keys::SigningAlg;

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
    /// Wrong client secrets one client address may send for one client before a pause
    /// (`lockout_duration`, doubling up to `lockout_max`; counted per replica). Default 10.
    #[serde(default = "default_client_secret_attempts")]
    pub client_secret_attempts: i64,
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

pub(super) fn default_device_code_lifetime() -> Seconds {
    Seconds(600)
}
pub(super) fn default_device_poll_interval() -> Seconds {
    Seconds(5)
}
pub(super) fn default_assertion_max_lifetime() -> Seconds {
    Seconds(300)
}

pub(super) fn default_refresh_idle() -> Seconds {
    Seconds(14 * 86400)
}
pub(super) fn default_refresh_max() -> Seconds {
    Seconds(90 * 86400)
}
pub(super) fn default_lockout_threshold() -> i64 {
    5
}
pub(super) fn default_address_lockout_threshold() -> i64 {
    20
}
pub(super) fn default_client_secret_attempts() -> i64 {
    10
}
pub(super) fn default_lockout_duration() -> Seconds {
    Seconds(30)
}
pub(super) fn default_lockout_max() -> Seconds {
    Seconds(900)
}

pub(super) fn default_session_idle() -> Seconds {
    Seconds(7200)
}
pub(super) fn default_session_max() -> Seconds {
    Seconds(12 * 3600)
}
pub(super) fn default_code_lifetime() -> Seconds {
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

pub(super) fn default_alg() -> SigningAlg {
    SigningAlg::RS256
}
pub(super) fn default_at_lifetime() -> Seconds {
    Seconds(3600)
}
pub(super) fn default_true() -> bool {
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

/// OpenID Connect Core s5.4: the claims each scope gives (and `groups`, identity domains'
/// scope). Together they are the claims a user has: what a user's record answers for in tokens
/// and userinfo, and names a custom claim may not take.
pub const SCOPE_CLAIMS: &[(&str, &[&str])] = &[
    (
        "profile",
        &[
            "name",
            "family_name",
            "given_name",
            "middle_name",
            "nickname",
            "preferred_username",
            "profile",
            "picture",
            "website",
            "gender",
            "birthdate",
            "zoneinfo",
            "locale",
            "updated_at",
        ],
    ),
    ("email", &["email", "email_verified"]),
    ("address", &["address"]),
    ("phone", &["phone_number", "phone_number_verified"]),
    ("groups", &["groups"]),
];

/// Whether `name` is a claim a user has (one of [`SCOPE_CLAIMS`]).
pub fn is_user_claim(name: &str) -> bool {
    SCOPE_CLAIMS.iter().any(|(_, names)| names.contains(&name))
}

/// Claims about a token (JWT registered claims and those of OAuth and OpenID Connect), which a
/// custom claim may not take either.
const TOKEN_CLAIMS: &[&str] = &[
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
    "token_type",
];

/// Whether a custom claim may not take this name: a claim about the token or a user's claim.
pub fn is_reserved_claim(name: &str) -> bool {
    TOKEN_CLAIMS.contains(&name) || is_user_claim(name)
}

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

pub(super) fn validate_domain(d: &DomainConfig, p: &str, errs: &mut ConfigErrors) {
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
        // The issuer is the admin API's audience (`resource={issuer}` asks for an admin token).
        if rs.audience.trim_end_matches('/') == d.issuer.trim_end_matches('/') {
            errs.push(
                format!("{rp}.audience"),
                "is the issuer, which is the admin API's audience",
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

pub(super) fn validate_assertion_issuers(d: &DomainConfig, p: &str, errs: &mut ConfigErrors) {
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

pub(super) fn check_claims(claims: &BTreeMap<String, ClaimSource>, path: &str, errs: &mut ConfigErrors) {
    for name in claims.keys() {
        if is_reserved_claim(name) {
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
pub(super) enum UrlRule {
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

pub(super) fn check_url(s: &str, rule: UrlRule) -> Result<(), String> {
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
