//! The OpenID Connect `claims` request parameter (Core s5.5): individual user claims asked for
//! in the ID token and at the userinfo endpoint, beyond what the scopes give.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::error::{OAuthError, OAuthResult};
use crate::store::UserRow;

/// The claim names asked for, per target. `essential`, `value` and `values` are accepted and
/// not enforced: a claim the user has is returned, one they do not have is left out (s5.5.1).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimsRequest {
    /// Claims for the ID token.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub id_token: Vec<String>,
    /// Claims for the userinfo response.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub userinfo: Vec<String>,
}

impl ClaimsRequest {
    /// Parses the parameter: a JSON object whose `id_token` and `userinfo` members are objects
    /// from claim names to `null` or an object; other members are ignored.
    pub fn parse(text: &str) -> OAuthResult<ClaimsRequest> {
        let bad = || {
            OAuthError::invalid_request(
                "the claims parameter must be a JSON object (OpenID Connect Core s5.5)",
            )
        };
        let Ok(Value::Object(top)) = serde_json::from_str::<Value>(text) else {
            return Err(bad());
        };
        let names = |member: &str| -> OAuthResult<Vec<String>> {
            match top.get(member) {
                None | Some(Value::Null) => Ok(Vec::new()),
                Some(Value::Object(m)) => {
                    if m.values().all(|v| v.is_null() || v.is_object()) {
                        Ok(m.keys().cloned().collect())
                    } else {
                        Err(bad())
                    }
                }
                Some(_) => Err(bad()),
            }
        };
        Ok(ClaimsRequest {
            id_token: names("id_token")?,
            userinfo: names("userinfo")?,
        })
    }
}

/// A user's stored claims (OpenID standard claims, groups, attributes) as a JSON object.
pub fn stored_user_claims(user: &UserRow) -> Value {
    serde_json::from_str(&user.claims).unwrap_or_else(|_| json!({}))
}

/// Claims that are about the token, not the user: never taken from the user record.
const NOT_USER_CLAIMS: &[&str] = &[
    "iss",
    "sub",
    "aud",
    "exp",
    "iat",
    "nbf",
    "jti",
    "auth_time",
    "nonce",
    "acr",
    "amr",
    "azp",
    "at_hash",
    "sid",
];

/// A user's value of an OpenID claim: the stored claims, `preferred_username` falling back to
/// the username and `updated_at` from the record. Custom attributes are not OpenID claims.
pub fn user_claim(user: &UserRow, stored: &Value, name: &str) -> Option<Value> {
    match name {
        n if NOT_USER_CLAIMS.contains(&n) => None,
        "attributes" | "password_hash" | "enabled" | "username" => None,
        "updated_at" => Some(json!(user.updated_at)),
        "preferred_username" => stored.get(name).cloned().or_else(|| Some(json!(user.username))),
        _ => stored.get(name).cloned(),
    }
}

/// Adds the named claims the user has to `out` (what is there already stays).
pub fn add_user_claims(out: &mut Map<String, Value>, user: &UserRow, stored: &Value, names: &[String]) {
    for name in names {
        if out.contains_key(name) {
            continue;
        }
        if let Some(v) = user_claim(user, stored, name) {
            out.insert(name.clone(), v);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::ClaimsRequest;

    #[test]
    fn parses_targets_and_refuses_malformed() {
        let c = ClaimsRequest::parse(
            r#"{"id_token":{"email":{"essential":true},"acr":{"values":["1"]}},"userinfo":{"phone_number":null},"x":1}"#,
        )
        .unwrap();
        assert_eq!(c.id_token, ["acr", "email"]);
        assert_eq!(c.userinfo, ["phone_number"]);
        for bad in [
            "[]",
            "not json",
            r#"{"id_token":[]}"#,
            r#"{"userinfo":{"email":1}}"#,
        ] {
            assert!(ClaimsRequest::parse(bad).is_err(), "{bad}");
        }
    }
}
