//! Discovery documents: OpenID Connect Discovery 1.0 s3 and RFC 8414 s2. They list exactly what
//! this build implements.

use serde_json::{Value, json};

use crate::domain::{Domain, paths};

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
        .flat_map(|rs| rs.scopes.iter().map(|s| s.name.as_str()))
        .collect();
    scopes.sort_unstable();
    let secret_methods = ["client_secret_basic", "client_secret_post"];
    let mut doc = json!({
        "issuer": domain.issuer,
        "token_endpoint": domain.url(paths::TOKEN),
        "jwks_uri": domain.url(paths::KEYS),
        "introspection_endpoint": domain.url(paths::INTROSPECT),
        "revocation_endpoint": domain.url(paths::REVOKE),
        "grant_types_supported": grant_types,
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "introspection_endpoint_auth_methods_supported": secret_methods,
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "scopes_supported": scopes,
        // No authorization endpoint yet: no response type is supported.
        "response_types_supported": [],
    });
    if flavor == Flavor::OpenId
        && let Some(obj) = doc.as_object_mut()
    {
        obj.insert("subject_types_supported".into(), json!(["public"]));
        obj.insert("id_token_signing_alg_values_supported".into(), json!(["RS256"]));
    }
    doc
}
