//! Discovery documents: OpenID Connect Discovery 1.0 s3 and RFC 8414 s2. They list exactly what
//! this build implements.

use serde_json::{Value, json};

use crate::config::{AuthMethod, DEVICE_CODE_GRANT, OPENID_SCOPES};
use crate::domain::{Domain, paths};
use crate::oauth::id_token::ACR_PASSWORD;

/// Which document is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// `/.well-known/openid-configuration`.
    OpenId,
    /// `/.well-known/oauth-authorization-server`.
    OAuth,
}

/// The metadata document of a domain.
pub fn document(domain: &Domain, grant_types: &[&str], flavor: Flavor) -> Value {
    let mut scopes: Vec<&str> = domain
        .resource_servers
        .iter()
        .flat_map(|rs| {
            rs.scopes
                .iter()
                .map(|s| s.name.as_str())
                .chain(rs.offline_scope.as_deref())
        })
        .chain(OPENID_SCOPES.iter().copied())
        .collect();
    scopes.sort_unstable();
    let mut pkce = vec!["S256"];
    if domain.clients.values().any(|c| c.allow_plain_pkce) {
        pkce.push("plain");
    }
    let algs: Vec<&str> = domain.signing_algs().iter().map(|a| a.as_str()).collect();
    // Authentication methods: mutual TLS ones only where a certificate can reach us.
    let methods = [
        "client_secret_basic",
        "client_secret_post",
        "client_secret_jwt",
        "private_key_jwt",
    ];
    let with_none: Vec<&str> = methods.iter().copied().chain(["none"]).collect();
    let assertion_algs = ["RS256", "PS256", "ES256", "HS256", "HS384", "HS512"];
    let mut doc = json!({
        "issuer": domain.issuer,
        "authorization_endpoint": domain.url(paths::AUTHORIZE),
        "token_endpoint": domain.url(paths::TOKEN),
        "jwks_uri": domain.url(paths::KEYS),
        "introspection_endpoint": domain.url(paths::INTROSPECT),
        "revocation_endpoint": domain.url(paths::REVOKE),
        // RFC 8628 s4: where devices start the device authorization grant.
        "device_authorization_endpoint": domain.url(paths::DEVICE_AUTHORIZATION),
        "grant_types_supported": grant_types,
        "token_endpoint_auth_methods_supported": with_none,
        "token_endpoint_auth_signing_alg_values_supported": assertion_algs,
        "introspection_endpoint_auth_methods_supported": methods,
        "introspection_endpoint_auth_signing_alg_values_supported": assertion_algs,
        "revocation_endpoint_auth_methods_supported": with_none,
        "revocation_endpoint_auth_signing_alg_values_supported": assertion_algs,
        "scopes_supported": scopes,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query", "form_post"],
        "code_challenge_methods_supported": pkce,
        // RFC 9207: every authorization response carries iss.
        "authorization_response_iss_parameter_supported": true,
    });
    if flavor == Flavor::OpenId
        && let Some(obj) = doc.as_object_mut()
    {
        obj.insert("userinfo_endpoint".into(), json!(domain.url(paths::USERINFO)));
        obj.insert("subject_types_supported".into(), json!(["public"]));
        obj.insert("acr_values_supported".into(), json!([ACR_PASSWORD]));
        obj.insert("id_token_signing_alg_values_supported".into(), json!(algs));
        obj.insert(
            "prompt_values_supported".into(),
            json!(crate::oauth::authorize::PROMPT_VALUES),
        );
        // RP-Initiated Logout 1.0 s2.1, Front-Channel Logout 1.0 s3, Back-Channel Logout 1.0
        // s2.1: sign-out, with sid in the iframe URIs and in the logout tokens.
        obj.insert(
            "end_session_endpoint".into(),
            json!(domain.url(paths::END_SESSION)),
        );
        obj.insert("frontchannel_logout_supported".into(), json!(true));
        obj.insert("frontchannel_logout_session_supported".into(), json!(true));
        obj.insert("backchannel_logout_supported".into(), json!(true));
        obj.insert("backchannel_logout_session_supported".into(), json!(true));
        obj.insert("claims_parameter_supported".into(), json!(true));
        obj.insert("request_parameter_supported".into(), json!(false));
        obj.insert("request_uri_parameter_supported".into(), json!(false));
        let mut claims: Vec<&str> = vec![
            "sub",
            "iss",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "nonce",
            "at_hash",
            "acr",
            "amr",
            "sid",
        ];
        for (_, names) in crate::config::SCOPE_CLAIMS {
            claims.extend_from_slice(names);
        }
        obj.insert("claims_supported".into(), json!(claims));
    }
    add_mtls(&mut doc, domain, grant_types, flavor);
    doc
}

/// RFC 8705 s3.3 and s5: certificate-bound tokens and the mutual-TLS client authentication
/// methods, for a domain whose clients can present certificates (at an `mtls_issuer`, or at the
/// issuer itself through a proxy's header), and the endpoint aliases of an `mtls_issuer`.
fn add_mtls(doc: &mut Value, domain: &Domain, grant_types: &[&str], flavor: Flavor) {
    let Some(obj) = doc.as_object_mut() else {
        return;
    };
    if domain.mtls_issuer.is_none() && !domain.certificates_at_issuer {
        return;
    }
    for list in [
        "token_endpoint_auth_methods_supported",
        "introspection_endpoint_auth_methods_supported",
        "revocation_endpoint_auth_methods_supported",
    ] {
        if let Some(Value::Array(methods)) = obj.get_mut(list) {
            for m in [AuthMethod::TlsClientAuth, AuthMethod::SelfSignedTlsClientAuth] {
                let m = json!(m.as_str());
                if !methods.contains(&m) {
                    methods.push(m);
                }
            }
        }
    }
    let mut aliases = serde_json::Map::new();
    let mut endpoints = vec![
        ("token_endpoint", paths::TOKEN),
        ("introspection_endpoint", paths::INTROSPECT),
        ("revocation_endpoint", paths::REVOKE),
    ];
    if flavor == Flavor::OpenId {
        endpoints.push(("userinfo_endpoint", paths::USERINFO));
    }
    if grant_types.contains(&DEVICE_CODE_GRANT) {
        endpoints.push(("device_authorization_endpoint", paths::DEVICE_AUTHORIZATION));
    }
    for (name, path) in endpoints {
        if let Some(url) = domain.mtls_url(path) {
            aliases.insert(name.into(), json!(url));
        }
    }
    if !aliases.is_empty() {
        obj.insert("mtls_endpoint_aliases".into(), Value::Object(aliases));
    }
    obj.insert("tls_client_certificate_bound_access_tokens".into(), json!(true));
}
