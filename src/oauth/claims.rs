//! Custom claims of access tokens: a resource server's, then its scopes' (which win).

use serde_json::{Map, Value};

use crate::config::ClaimSource;
use crate::domain::Domain;

/// Custom claims for a token meant for `audiences` carrying `scopes`. Dynamic claims come from
/// `user` (its standard claims and `attributes`); without a user they are left out.
pub fn custom_claims(
    domain: &Domain,
    audiences: &[String],
    scopes: &[String],
    user: Option<&Value>,
) -> Map<String, Value> {
    let mut out = Map::new();
    for aud in audiences {
        let Some(rs) = domain.resource_server(aud) else {
            continue;
        };
        for (name, src) in &rs.claims {
            insert(&mut out, name, src, user);
        }
    }
    for scope in scopes {
        if let Some(s) = domain.scope(scope) {
            for (name, src) in &s.claims {
                insert(&mut out, name, src, user);
            }
        }
    }
    out
}

fn insert(out: &mut Map<String, Value>, name: &str, src: &ClaimSource, user: Option<&Value>) {
    let value = match src {
        ClaimSource::Static(v) => Some(v.clone()),
        ClaimSource::UserAttribute { user_attribute } => user.and_then(|u| {
            u.get(user_attribute)
                .or_else(|| u.get("attributes").and_then(|a| a.get(user_attribute)))
                .cloned()
        }),
    };
    if let Some(v) = value {
        out.insert(name.to_string(), v);
    }
}
