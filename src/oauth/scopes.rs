//! Which scopes and audiences a request is granted (RFC 6749 s3.3, RFC 8707).

use crate::config::{OPENID_SCOPES, UnknownScopes, is_scope_token};
use crate::domain::{Client, Domain};
use crate::error::{OAuthError, OAuthResult};

/// Granted scopes and the audiences (resource servers) they are for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Granted scope tokens, in the client's configured order.
    pub scopes: Vec<String>,
    /// Audiences of the token, in configuration order.
    pub audiences: Vec<String>,
}

impl Grant {
    /// The granted scopes as one space-separated string.
    pub fn scope_string(&self) -> String {
        self.scopes.join(" ")
    }
}

/// The scopes a grant to a person asks for: API scopes and OpenID scopes the client may have.
/// RFC 6749 s3.3: without `scope`, the client's default (its API scopes); s4.1.2.1: scopes the
/// client may not have are invalid_scope, unless the client is configured to have them dropped.
pub fn resolve_user_scopes(d: &Domain, c: &Client, requested: Option<&str>) -> OAuthResult<Vec<String>> {
    let requested: Vec<&str> = match requested {
        Some(s) => s.split(' ').filter(|s| !s.is_empty()).collect(),
        None => c
            .scopes
            .iter()
            .map(String::as_str)
            .filter(|s| d.scope_owner.contains_key(*s))
            .collect(),
    };
    let mut out: Vec<String> = Vec::new();
    for s in requested {
        if !is_scope_token(s) {
            return Err(OAuthError::invalid_scope("the scope parameter is malformed"));
        }
        let known = d.scope_owner.contains_key(s) || OPENID_SCOPES.contains(&s);
        let allowed = known && c.scopes.iter().any(|a| a == s);
        if !allowed {
            if c.unknown_scopes == UnknownScopes::Drop {
                continue;
            }
            return Err(OAuthError::invalid_scope(format!(
                "the scope {s} is not allowed for this client"
            )));
        }
        if !out.iter().any(|x| x == s) {
            out.push(s.to_string());
        }
    }
    if out.is_empty() {
        return Err(OAuthError::invalid_scope("no requested scope can be granted"));
    }
    Ok(out)
}

/// The scopes of an earlier grant (a code, a device code, a refresh-token family) that may still
/// be issued: those the client is still allowed and that still exist, since the configuration
/// may have changed since (a reload). invalid_grant when none is left.
pub fn still_granted<'a>(
    d: &Domain,
    c: &Client,
    granted: impl IntoIterator<Item = &'a str>,
) -> OAuthResult<Vec<String>> {
    let scopes: Vec<String> = granted
        .into_iter()
        .filter(|s| !s.is_empty())
        .filter(|s| d.scope_owner.contains_key(*s) || OPENID_SCOPES.contains(s))
        .filter(|s| c.scopes.iter().any(|a| a == s))
        .map(str::to_string)
        .collect();
    if scopes.is_empty() {
        return Err(OAuthError::invalid_grant(
            "none of the granted scopes is still allowed for this client",
        ));
    }
    Ok(scopes)
}

/// What the RFC 8707 `resource` parameters of a token request name: this server (the issuer:
/// its admin API and userinfo) and resource servers, by index, each once.
#[derive(Debug, Default)]
pub struct Targets {
    pub issuer: bool,
    pub servers: Vec<usize>,
}

/// The targets `resources` name; `invalid_target` for one that is not an absolute URI without a
/// fragment, or not known to this server (s2).
pub fn resource_targets(domain: &Domain, resources: &[String]) -> OAuthResult<Targets> {
    let mut targets = Targets::default();
    for r in resources {
        if *r == domain.issuer {
            targets.issuer = true;
            continue;
        }
        let valid = url::Url::parse(r).is_ok() && !r.contains('#');
        if !valid {
            return Err(OAuthError::invalid_target(format!(
                "resource {r:?} is not an absolute URI without a fragment"
            )));
        }
        let Some(i) = domain.resource_servers.iter().position(|rs| &rs.audience == r) else {
            return Err(OAuthError::invalid_target(format!(
                "resource {r:?} is not known to this server"
            )));
        };
        if !targets.servers.contains(&i) {
            targets.servers.push(i);
        }
    }
    Ok(targets)
}

/// The scopes of a user grant's access token, from the grant's `scopes` and the token request's
/// `resources` (RFC 8707 s2.2, RFC 9068 s3): without any, all of them; otherwise the API scopes
/// of the resource servers named, and the OpenID scopes only when the issuer is named too (a
/// token for userinfo). A target the grant holds no scope of is `invalid_target` (for the
/// issuer: no `openid`). Pure: a grant calls it before it uses anything up, and again on the
/// scopes it issues. Also returns whether the issuer is an audience by request.
pub fn for_resources(
    domain: &Domain,
    scopes: &[String],
    resources: &[String],
) -> OAuthResult<(Vec<String>, bool)> {
    if resources.is_empty() {
        return Ok((scopes.to_vec(), false));
    }
    let t = resource_targets(domain, resources)?;
    let owner = |s: &str| domain.scope_owner.get(s).copied();
    let kept: Vec<String> = scopes
        .iter()
        .filter(|s| owner(s).map_or(t.issuer, |i| t.servers.contains(&i)))
        .cloned()
        .collect();
    for &i in &t.servers {
        if !kept.iter().any(|s| owner(s) == Some(i)) {
            let r = domain.resource_servers.get(i).map_or("", |r| r.audience.as_str());
            return Err(OAuthError::invalid_target(format!(
                "the grant holds no scope of resource {r:?}"
            )));
        }
    }
    if t.issuer && !kept.iter().any(|s| s == "openid") {
        return Err(OAuthError::invalid_target(
            "the grant holds no openid scope: no token for this server",
        ));
    }
    Ok((kept, t.issuer))
}

/// Resolves the API scopes a client gets from `scope` and `resource` parameters.
/// RFC 6749 s3.3: without `scope`, the client's pre-defined default (all its allowed API scopes).
pub fn resolve_api_scopes(
    domain: &Domain,
    client: &Client,
    requested: Option<&str>,
    resources: &[String],
) -> OAuthResult<Grant> {
    let named = resource_targets(domain, resources)?;
    if named.issuer {
        return Err(OAuthError::invalid_target(format!(
            "resource {:?} is this server's admin API: asked for alone, by an administrator client",
            domain.issuer
        )));
    }
    let targets = named.servers;
    let in_targets = |scope: &str| {
        domain
            .scope_owner
            .get(scope)
            .is_some_and(|i| targets.is_empty() || targets.contains(i))
    };
    let scopes: Vec<String> = match requested {
        Some(req) => {
            let mut out: Vec<String> = Vec::new();
            for s in req.split(' ').filter(|s| !s.is_empty()) {
                if !is_scope_token(s) {
                    return Err(OAuthError::invalid_scope("the scope parameter is malformed"));
                }
                if !client.scopes.iter().any(|c| c == s) || !domain.scope_owner.contains_key(s) {
                    return Err(OAuthError::invalid_scope(format!(
                        "the scope {s} is not allowed for this client"
                    )));
                }
                if !in_targets(s) {
                    return Err(OAuthError::invalid_scope(format!(
                        "the scope {s} does not belong to the requested resource"
                    )));
                }
                if !out.iter().any(|o| o == s) {
                    out.push(s.to_string());
                }
            }
            out
        }
        None => client.scopes.iter().filter(|s| in_targets(s)).cloned().collect(),
    };
    let audiences: Vec<String> = if targets.is_empty() {
        let mut owners: Vec<usize> = scopes
            .iter()
            .filter_map(|s| domain.scope_owner.get(s).copied())
            .collect();
        owners.sort_unstable();
        owners.dedup();
        owners
            .into_iter()
            .filter_map(|i| domain.resource_servers.get(i))
            .map(|r| r.audience.clone())
            .collect()
    } else {
        targets
            .iter()
            .filter_map(|&i| domain.resource_servers.get(i))
            .map(|r| r.audience.clone())
            .collect()
    };
    if audiences.is_empty() {
        return Err(OAuthError::invalid_scope(
            "no scope can be granted: the client has no scopes of any resource server",
        ));
    }
    Ok(Grant { scopes, audiences })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::domain::Domain;
    use crate::error::ErrorCode;

    fn domain() -> Domain {
        let c = Config::from_toml_str(
            r#"
[[domain]]
name = "d"
issuer = "http://127.0.0.1:1"
  [[domain.resource_server]]
  audience = "https://a.example"
  scopes = [{ name = "a.read" }, { name = "a.write" }]
  [[domain.resource_server]]
  audience = "https://b.example"
  scopes = [{ name = "b.read" }]
  [[domain.client]]
  client_id = "c"
  secret_hash = "sha256:Kr7jBeKsNUCKFDv8AmbQVvcV1Kr4LSbvHxYh0NHBpVE"
  grant_types = ["client_credentials"]
  scopes = ["a.read", "b.read"]
"#,
        )
        .unwrap();
        Domain::from_config(&c.domains[0]).unwrap()
    }

    #[test]
    fn default_is_every_allowed_scope_and_their_audiences() {
        let d = domain();
        let c = d.client("c").unwrap();
        let g = resolve_api_scopes(&d, c, None, &[]).unwrap();
        assert_eq!(g.scopes, ["a.read", "b.read"]);
        assert_eq!(g.audiences, ["https://a.example", "https://b.example"]);
    }

    #[test]
    fn resource_narrows_default_and_audience() {
        let d = domain();
        let c = d.client("c").unwrap();
        let g = resolve_api_scopes(&d, c, None, &["https://b.example".into()]).unwrap();
        assert_eq!(g.scopes, ["b.read"]);
        assert_eq!(g.audiences, ["https://b.example"]);
        let e = resolve_api_scopes(&d, c, Some("a.read"), &["https://b.example".into()]).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidScope);
    }

    #[test]
    fn refusals() {
        let d = domain();
        let c = d.client("c").unwrap();
        for (scope, res, code) in [
            (Some("a.write"), vec![], ErrorCode::InvalidScope),
            (Some("nope"), vec![], ErrorCode::InvalidScope),
            (Some("a\"x"), vec![], ErrorCode::InvalidScope),
            (
                None,
                vec!["https://unknown.example".to_string()],
                ErrorCode::InvalidTarget,
            ),
            (None, vec!["not a uri".to_string()], ErrorCode::InvalidTarget),
            (
                None,
                vec!["https://a.example#frag".to_string()],
                ErrorCode::InvalidTarget,
            ),
        ] {
            let e = resolve_api_scopes(&d, c, scope, &res).unwrap_err();
            assert_eq!(e.code, code, "{scope:?} {res:?}");
        }
    }
}
