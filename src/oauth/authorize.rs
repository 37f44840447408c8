//! The authorization request (RFC 6749 s4.1.1, OpenID Connect Core s3.1.2.1) as a named list of
//! checks, and what happens next: sign in, consent, or a code.

use serde::{Deserialize, Serialize};

use crate::audit::{self, AuditEvent, Outcome};
use crate::config::ConsentPolicy;
use crate::domain::{Client, Domain};
use crate::error::{ErrorCode, OAuthError, OAuthResult};
use crate::oauth::id_token::ACR_PASSWORD;
use crate::oauth::params::Params;
use crate::oauth::scopes::resolve_user_scopes;
use crate::oauth::{pkce, redirect_uri};
use crate::store::admin::AuditStore;
use crate::store::signin::SignInStore;
use crate::store::{StoreError, StoreResult};

/// A validated authorization request, kept while the person signs in and consents.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct AuthorizationRequest {
    pub client_id: String,
    /// The redirect URI to answer at (the registered one that matched).
    pub redirect_uri: String,
    /// Whether the request named it (then the token request must repeat it).
    pub redirect_uri_given: bool,
    /// `query` or `form_post`.
    pub response_mode: String,
    pub state: Option<String>,
    pub scopes: Vec<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub prompt: Vec<String>,
    pub max_age: Option<i64>,
    pub login_hint: Option<String>,
    /// The OpenID claims request (Core s5.5).
    #[serde(default)]
    pub claims: Option<crate::oauth::claims_request::ClaimsRequest>,
    /// The ID token the client passed as `id_token_hint`; verified before any page, never stored
    /// (its `sub` is kept as `subject`).
    #[serde(skip)]
    pub id_token_hint: Option<String>,
    /// OpenID Connect Core s3.1.2.2: the user the client named, by the `sub` of its
    /// `id_token_hint` or a `sub` value in its claims request. A code is issued for this user
    /// only; the session of someone else counts as none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Set on a device authorization (RFC 8628 s3.3) awaiting the person's confirmation: the
    /// hash of its device code. Such a request goes on at the device page after sign-in, never
    /// to a redirect URI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// With `device`: the user code the person typed, as `XXXX-XXXX`, sealed with the
    /// key-encryption key and bound to `device` (only hashes of codes are stored in the clear).
    /// The confirmation shows it, to be compared with the code on the device (RFC 8628 s3.3.1,
    /// s5.4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_user_code: Option<String>,
    /// Set when the account page sends the person to sign in: after sign-in they go back to it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub account: bool,
}

impl AuthorizationRequest {
    /// True for OpenID Connect requests (scope `openid`).
    pub fn is_openid(&self) -> bool {
        self.scopes.iter().any(|s| s == "openid")
    }

    /// True when `prompt` holds `value`.
    pub fn prompts(&self, value: &str) -> bool {
        self.prompt.iter().any(|p| p == value)
    }
}

/// Where an authorization error goes.
#[derive(Debug)]
pub enum AuthorizeError {
    /// Client or redirect URI not established: shown to the person, never redirected
    /// (RFC 6749 s4.1.2.1).
    Page(OAuthError),
    /// Sent back to the client with `state` and `iss`.
    Redirect(Box<AuthorizationRequest>, OAuthError),
}

/// The parameters of an authorization request: the first value of each, and the name of the
/// first parameter sent more than once (refused once the client and redirect URI are known).
#[derive(Debug, Default)]
pub struct RequestParams {
    params: Params,
    repeated: Option<String>,
}

impl RequestParams {
    /// The value of a parameter (its first value when it was repeated).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.params.get(name)
    }

    /// True when `name` was sent more than once.
    fn is_repeated(&self, name: &str) -> bool {
        self.repeated.as_deref() == Some(name)
    }
}

/// Parses the query (GET) or form body (POST) of an authorization request. RFC 6749 s3.1:
/// parameters sent without a value are treated as omitted. A repeated parameter is remembered,
/// not refused here: RFC 6749 s4.1.2.1 answers it with `invalid_request` at the redirect URI
/// once client and redirect URI are established.
pub fn parse_request(raw: &[u8]) -> OAuthResult<RequestParams> {
    let mut first = form_urlencoded::Serializer::new(String::new());
    let mut seen: Vec<String> = Vec::new();
    let mut repeated = None;
    for (k, v) in form_urlencoded::parse(raw) {
        // Checked here: encoded again below, the pairs would no longer show what they were.
        crate::oauth::params::refuse_bad_pair(&k, &v, raw)?;
        if v.is_empty() {
            continue;
        }
        if seen.iter().any(|s| s.as_str() == k.as_ref()) {
            // client_id and redirect_uri decide where errors go: a repeated one wins the report.
            let decisive = matches!(k.as_ref(), "client_id" | "redirect_uri");
            if repeated.is_none() || decisive {
                repeated = Some(k.into_owned());
            }
            continue;
        }
        first.append_pair(&k, &v);
        seen.push(k.into_owned());
    }
    let params = Params::parse(first.finish().as_bytes(), &[])?;
    Ok(RequestParams { params, repeated })
}

type Check = fn(&Domain, &Client, &RequestParams, &mut AuthorizationRequest) -> OAuthResult<()>;

/// The checks run once client and redirect URI hold, in order; their errors are redirected.
/// `response_mode` goes first so that the errors after it are answered the way the client asked.
pub const CHECKS: &[(&str, Check)] = &[
    ("response_mode", check_response_mode),
    ("repeated_parameter", check_repeated_parameter),
    ("request_object", check_request_object),
    ("response_type", check_response_type),
    ("client_grant", check_client_grant),
    ("scope", check_scope),
    ("pkce", check_pkce),
    ("prompt", check_prompt),
    ("max_age", check_max_age),
    ("openid_parameters", check_openid_parameters),
];

/// Validates an authorization request.
pub fn validate(
    domain: &Domain,
    params: Result<RequestParams, OAuthError>,
) -> Result<AuthorizationRequest, AuthorizeError> {
    let params = params.map_err(AuthorizeError::Page)?;
    // RFC 6749 s4.1.2.1: without a single client_id and redirect_uri there is nowhere safe to
    // redirect to: the person is told on a page.
    for name in ["client_id", "redirect_uri"] {
        if params.is_repeated(name) {
            return Err(AuthorizeError::Page(OAuthError::invalid_request(format!(
                "the parameter {name} is included more than once"
            ))));
        }
    }
    // RFC 6749 s4.1.2.1: a missing or unknown client is shown on a page, never redirected.
    let client_id = params.get("client_id").ok_or_else(|| {
        AuthorizeError::Page(OAuthError::invalid_request("the client_id parameter is missing"))
    })?;
    let client = domain.client(client_id).filter(|c| c.enabled).ok_or_else(|| {
        AuthorizeError::Page(OAuthError::invalid_request(
            "the client is not registered in this domain",
        ))
    })?;
    // RFC 6749 s3.1.2.3 and RFC 9700 s4.1.3: exact match of a registered redirect URI.
    let (redirect_uri, given) = match params.get("redirect_uri") {
        Some(r) => match redirect_uri::matching(&client.redirect_uris, r) {
            Some(_) => (r.to_string(), true),
            None => {
                return Err(AuthorizeError::Page(OAuthError::invalid_request(
                    "the redirect_uri is not registered for this client",
                )));
            }
        },
        // OpenID Connect Core s3.1.2.1: redirect_uri is required; OAuth allows leaving it out
        // when exactly one is registered.
        None if client.redirect_uris.len() == 1
            && !params
                .get("scope")
                .is_some_and(|s| s.split(' ').any(|x| x == "openid")) =>
        {
            (client.redirect_uris[0].clone(), false)
        }
        None => {
            return Err(AuthorizeError::Page(OAuthError::invalid_request(
                "the redirect_uri parameter is missing",
            )));
        }
    };
    let mut req = AuthorizationRequest {
        client_id: client.id.clone(),
        redirect_uri,
        redirect_uri_given: given,
        response_mode: "query".into(),
        state: params.get("state").map(str::to_string),
        ..AuthorizationRequest::default()
    };
    for (_name, check) in CHECKS {
        if let Err(e) = check(domain, client, &params, &mut req) {
            return Err(AuthorizeError::Redirect(Box::new(req), e));
        }
    }
    Ok(req)
}

fn check_repeated_parameter(
    _: &Domain,
    _: &Client,
    p: &RequestParams,
    _: &mut AuthorizationRequest,
) -> OAuthResult<()> {
    // RFC 6749 s4.1.2.1: a request that includes a parameter more than once is invalid_request.
    match &p.repeated {
        Some(name) => Err(OAuthError::invalid_request(format!(
            "the parameter {name} is included more than once"
        ))),
        None => Ok(()),
    }
}

fn check_request_object(
    _: &Domain,
    _: &Client,
    p: &RequestParams,
    _: &mut AuthorizationRequest,
) -> OAuthResult<()> {
    // OpenID Connect Core s6.1: request objects are not supported: request_not_supported.
    if p.get("request").is_some() {
        return Err(OAuthError::new(
            ErrorCode::RequestNotSupported,
            "request objects are not supported",
        ));
    }
    // OpenID Connect Core s6.2: nor request_uri: request_uri_not_supported.
    if p.get("request_uri").is_some() {
        return Err(OAuthError::new(
            ErrorCode::RequestUriNotSupported,
            "request_uri is not supported",
        ));
    }
    Ok(())
}

fn check_response_type(
    _: &Domain,
    _: &Client,
    p: &RequestParams,
    _: &mut AuthorizationRequest,
) -> OAuthResult<()> {
    // RFC 6749 s4.1.1: response_type is required; s4.1.2.1: others are unsupported_response_type.
    match p.get("response_type") {
        Some("code") => Ok(()),
        Some(_) => Err(OAuthError::new(
            ErrorCode::UnsupportedResponseType,
            "only response_type=code is supported",
        )),
        None => Err(OAuthError::invalid_request(
            "the response_type parameter is missing",
        )),
    }
}

fn check_client_grant(
    _: &Domain,
    c: &Client,
    _: &RequestParams,
    _: &mut AuthorizationRequest,
) -> OAuthResult<()> {
    // RFC 6749 s4.1.2.1: unauthorized_client goes back to the client like the other errors once
    // the client and redirect URI are known.
    if c.grant_types.contains("authorization_code") {
        Ok(())
    } else {
        Err(OAuthError::unauthorized_client(
            "this client may not use the authorization code flow",
        ))
    }
}

fn check_response_mode(
    _: &Domain,
    _: &Client,
    p: &RequestParams,
    r: &mut AuthorizationRequest,
) -> OAuthResult<()> {
    // OAuth 2.0 Multiple Response Type Encoding Practices s2.1 and Form Post Response Mode s2:
    // query (the default for code) or form_post; any other mode is refused.
    match p.get("response_mode") {
        None | Some("query") => Ok(()),
        Some("form_post") => {
            r.response_mode = "form_post".into();
            Ok(())
        }
        Some(_) => Err(OAuthError::invalid_request(
            "response_mode must be query or form_post",
        )),
    }
}

fn check_scope(d: &Domain, c: &Client, p: &RequestParams, r: &mut AuthorizationRequest) -> OAuthResult<()> {
    r.scopes = resolve_user_scopes(d, c, p.get("scope"))?;
    Ok(())
}

fn check_pkce(_: &Domain, c: &Client, p: &RequestParams, r: &mut AuthorizationRequest) -> OAuthResult<()> {
    match (p.get("code_challenge"), p.get("code_challenge_method")) {
        (Some(challenge), method) => {
            // RFC 7636 s4.3: the method defaults to plain; RFC 9700 s2.1.1: plain only for the
            // clients configured to allow it.
            let method = method.unwrap_or("plain");
            let ok = method == "S256" || (method == "plain" && c.allow_plain_pkce);
            if !ok {
                return Err(OAuthError::invalid_request("code_challenge_method must be S256"));
            }
            // RFC 7636 s4.2: the challenge's form follows from its method.
            if !pkce::is_valid_challenge(method, challenge) {
                return Err(OAuthError::invalid_request("the code_challenge is malformed"));
            }
            r.code_challenge = Some(challenge.to_string());
            r.code_challenge_method = Some(method.to_string());
            Ok(())
        }
        (None, Some(_)) => Err(OAuthError::invalid_request(
            "code_challenge_method without code_challenge",
        )),
        // RFC 9700 s2.1.1: PKCE for public clients always, and for every client by default.
        (None, None) if c.require_pkce || !c.is_confidential() => Err(OAuthError::invalid_request(
            "code_challenge is required (PKCE with S256)",
        )),
        (None, None) => Ok(()),
    }
}

/// The `prompt` values understood (OpenID Connect Core s3.1.2.1), as discovery lists them.
pub const PROMPT_VALUES: &[&str] = &["none", "login", "consent", "select_account"];

fn check_prompt(_: &Domain, _: &Client, p: &RequestParams, r: &mut AuthorizationRequest) -> OAuthResult<()> {
    if let Some(prompt) = p.get("prompt") {
        r.prompt = prompt
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        // OpenID Connect Prompt Create 1.0 s4.1: a value this server does not support (not in
        // prompt_values_supported) is invalid_request.
        if let Some(other) = r.prompt.iter().find(|v| !PROMPT_VALUES.contains(&v.as_str())) {
            return Err(OAuthError::invalid_request(format!(
                "prompt={other} is not supported (prompt_values_supported: {})",
                PROMPT_VALUES.join(", ")
            )));
        }
        // OpenID Connect Core s3.1.2.1: none must stand alone.
        if r.prompts("none") && r.prompt.len() > 1 {
            return Err(OAuthError::invalid_request(
                "prompt=none cannot be combined with other values",
            ));
        }
    }
    Ok(())
}

fn check_max_age(_: &Domain, _: &Client, p: &RequestParams, r: &mut AuthorizationRequest) -> OAuthResult<()> {
    if let Some(m) = p.get("max_age") {
        // OpenID Connect Core s3.1.2.1: max_age is a number of seconds (PAPE: zero or more).
        let v: i64 = m
            .parse()
            .ok()
            .filter(|v| *v >= 0)
            .ok_or_else(|| OAuthError::invalid_request("max_age must be a non-negative integer"))?;
        // OpenID Connect Core s3.1.2.1 (errata): max_age=0 is equivalent to prompt=login. Kept
        // as prompt=login alone, so that the sign-in that satisfies it is not asked for again
        // when the clock has moved on a second in between.
        if v == 0 {
            if !r.prompts("login") {
                r.prompt.push("login".into());
            }
        } else {
            r.max_age = Some(v);
        }
    }
    Ok(())
}

fn check_openid_parameters(
    _: &Domain,
    _: &Client,
    p: &RequestParams,
    r: &mut AuthorizationRequest,
) -> OAuthResult<()> {
    r.nonce = p.get("nonce").map(str::to_string);
    r.login_hint = p.get("login_hint").map(str::to_string);
    // OpenID Connect Core s5.5: individual claims for the ID token and userinfo.
    if let Some(c) = p.get("claims") {
        let claims = crate::oauth::claims_request::ClaimsRequest::parse(c)?;
        // s5.5.1.1: an essential acr this server cannot reach fails the authentication. Every
        // sign-in here is a password (acr "1"); no other factor can be asked for.
        if let Some(acr) = &claims.essential_acr
            && !acr.iter().any(|a| a == ACR_PASSWORD)
        {
            return Err(OAuthError::new(
                ErrorCode::UnmetAuthenticationRequirements,
                "the essential acr asked for cannot be met: this server signs in with acr 1 only",
            ));
        }
        r.subject = claims.sub.clone();
        r.claims = Some(claims);
    }
    r.id_token_hint = p.get("id_token_hint").map(str::to_string);
    // ui_locales, display and acr_values are accepted and not acted on.
    Ok(())
}

/// What the person must do next.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Show the sign-in page.
    SignIn,
    /// Show the consent page for these scopes.
    Consent,
    /// Issue the code now.
    Issue,
}

/// Decides the next step from the session's `auth_time` (None without a session) and the scopes
/// the person consented to before. Errors are redirected.
pub fn next_step(
    client: &Client,
    req: &AuthorizationRequest,
    auth_time: Option<i64>,
    consented: Option<&str>,
    now: i64,
) -> OAuthResult<Next> {
    let fresh_enough = |t: i64| req.max_age.is_none_or(|m| now - t <= m);
    // OpenID Connect Core s3.1.2.1: login and select_account ask for the sign-in page (a session
    // holds one account; signing in again is how another is chosen).
    let signed_in =
        auth_time.is_some_and(fresh_enough) && !req.prompts("login") && !req.prompts("select_account");
    if !signed_in {
        if req.prompts("none") {
            return Err(OAuthError::new(
                ErrorCode::LoginRequired,
                "the person is not signed in",
            ));
        }
        return Ok(Next::SignIn);
    }
    if client.consent == ConsentPolicy::Skip {
        return Ok(Next::Issue);
    }
    let covered = consent_covers(consented, req.scopes.iter().map(String::as_str));
    if covered && !req.prompts("consent") {
        return Ok(Next::Issue);
    }
    if req.prompts("none") {
        return Err(OAuthError::new(
            ErrorCode::ConsentRequired,
            "the person has not consented",
        ));
    }
    Ok(Next::Consent)
}

/// Whether a session that signed in at `auth_time` meets what the request asked of the sign-in,
/// for a request stored at `requested_at` and continued on a later page (consent): a sign-in since
/// the request was stored meets everything (the sign-in page asked for it); an older one must
/// have been within `max_age` when the request was stored (what `next_step` decided then, so a
/// consent page left open a while does not send the person back), and `prompt=login` or
/// `select_account` always ask for a new one (OpenID Connect Core s3.1.2.1). A session that does
/// not meet them goes through the sign-in page.
pub fn signed_in_as_asked(req: &AuthorizationRequest, auth_time: i64, requested_at: i64) -> bool {
    auth_time >= requested_at
        || (!req.prompts("login")
            && !req.prompts("select_account")
            && req.max_age.is_none_or(|m| requested_at - auth_time <= m))
}

/// Whether the consent `consented` (its scopes, space-separated; `None`: no consent) covers
/// every one of `scopes`.
pub fn consent_covers<'a>(consented: Option<&str>, scopes: impl IntoIterator<Item = &'a str>) -> bool {
    let granted: Vec<&str> = consented.map(|s| s.split(' ').collect()).unwrap_or_default();
    scopes
        .into_iter()
        .filter(|s| !s.is_empty())
        .all(|s| granted.contains(&s))
}

/// Records that the person consented to `scopes` for the client. The stored consent grows with
/// each approval; it shrinks only when withdrawn. Read, widened, then written only if unchanged
/// since the read (and read again otherwise): two approvals at once (two tabs) both land, and one
/// racing a withdrawal never brings back what was withdrawn.
pub async fn record_consent<S: SignInStore + AuditStore + Sync>(
    store: &S,
    domain: &str,
    user_id: &str,
    client_id: &str,
    scopes: &[String],
    now: i64,
) -> StoreResult<()> {
    let mut attempts = 0;
    let all = loop {
        let previous = store.find_consent(domain, user_id, client_id).await?;
        let mut all: Vec<&str> = previous
            .as_deref()
            .unwrap_or_default()
            .split(' ')
            .filter(|s| !s.is_empty())
            .collect();
        for s in scopes {
            if !all.contains(&s.as_str()) {
                all.push(s);
            }
        }
        let all = all.join(" ");
        if store
            .write_consent(domain, user_id, client_id, previous.as_deref(), &all, now)
            .await?
        {
            break all;
        }
        attempts += 1;
        if attempts == CONSENT_WRITE_ATTEMPTS {
            // Answered as a store that is busy: temporarily unavailable, try again.
            return Err(StoreError::Unavailable(
                "the consent kept changing while it was being recorded".into(),
            ));
        }
    };
    let event = AuditEvent::new("consent.given", domain, Outcome::Success)
        .by_user(user_id)
        .user(user_id)
        .client(client_id)
        .details(serde_json::json!({"scope": all}));
    audit::record(store, now, event).await;
    Ok(())
}

/// How often [`record_consent`] reads and writes again when other writes keep coming first.
const CONSENT_WRITE_ATTEMPTS: u32 = 8;

/// The redirect URI with the response parameters added to its query.
pub fn redirect_with(redirect_uri: &str, params: &[(&str, &str)]) -> String {
    match url::Url::parse(redirect_uri) {
        Ok(mut u) => {
            {
                let mut q = u.query_pairs_mut();
                for (k, v) in params {
                    q.append_pair(k, v);
                }
            }
            u.to_string()
        }
        Err(_) => redirect_uri.to_string(),
    }
}

/// The response parameters of an error (RFC 6749 s4.1.2.1, RFC 9207 `iss`).
pub fn error_params<'a>(
    err: &'a OAuthError,
    state: Option<&'a str>,
    issuer: &'a str,
) -> Vec<(&'a str, &'a str)> {
    let mut v = vec![
        ("error", err.code.as_str()),
        ("error_description", err.description.as_ref()),
    ];
    if let Some(s) = state {
        v.push(("state", s));
    }
    v.push(("iss", issuer));
    v
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn repeated_parameters_are_remembered_not_refused() {
        let p = parse_request(b"client_id=a&scope=x&scope=y&state=&state=s").unwrap();
        assert_eq!(p.get("client_id"), Some("a"));
        assert_eq!(p.get("scope"), Some("x"));
        // An empty value counts as omitted (RFC 6749 s3.1).
        assert_eq!(p.get("state"), Some("s"));
        assert_eq!(p.repeated.as_deref(), Some("scope"));
        // client_id and redirect_uri are reported first: they decide where the error goes.
        let p = parse_request(b"scope=x&scope=y&redirect_uri=a&redirect_uri=b").unwrap();
        assert!(p.is_repeated("redirect_uri"));
        let p = parse_request(b"client_id=a&redirect_uri=b&state=s").unwrap();
        assert_eq!(p.repeated, None);
        // Encoded names and values are decoded once.
        let p = parse_request(b"redirect_uri=https%3A%2F%2Fa%2F%252e%252e%2Fcb").unwrap();
        assert_eq!(p.get("redirect_uri"), Some("https://a/%2e%2e/cb"));
    }
}
