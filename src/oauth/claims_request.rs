//! The OpenID Connect `claims` request parameter (Core s5.5): individual user claims asked for
//! in the ID token and at the userinfo endpoint, beyond what the scopes give.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::error::{OAuthError, OAuthResult};
use crate::store::UserRow;

/// The claim names asked for, per target. For user claims `essential`, `value` and `values` are
/// accepted and not enforced: a claim the user has is returned, one they do not have is left out
/// (s5.5.1). Two requests about the sign-in itself are enforced: a `sub` with a `value` and an
/// essential `acr` with `value` or `values`, both for the ID token.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimsRequest {
    /// Claims for the ID token.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub id_token: Vec<String>,
    /// Claims for the userinfo response.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub userinfo: Vec<String>,
    /// s3.1.2.2: the `value` of a `sub` asked for in the ID token, the only user a positive
    /// answer may be for. Checked at the authorization endpoint, not kept with the code.
    #[serde(skip)]
    pub sub: Option<String>,
    /// s5.5.1.1: the `acr` values one of which the ID token must carry, when `acr` is asked for
    /// as essential with `value` or `values`. Checked at the authorization endpoint.
    #[serde(skip)]
    pub essential_acr: Option<Vec<String>>,
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
        let id_token = top.get("id_token").and_then(Value::as_object);
        let request = |name: &str| id_token.and_then(|m| m.get(name)).and_then(Value::as_object);
        let sub = match request("sub").and_then(|r| r.get("value")) {
            None | Some(Value::Null) => None,
            Some(Value::String(v)) => Some(v.clone()),
            Some(_) => return Err(bad()),
        };
        let essential_acr = match request("acr") {
            Some(r) if r.get("essential") == Some(&Value::Bool(true)) => {
                let mut values = Vec::new();
                match r.get("value") {
                    None | Some(Value::Null) => {}
                    Some(Value::String(v)) => values.push(v.clone()),
                    Some(_) => return Err(bad()),
                }
                match r.get("values") {
                    None | Some(Value::Null) => {}
                    Some(Value::Array(a)) => {
                        for v in a {
                            values.push(v.as_str().ok_or_else(bad)?.to_string());
                        }
                    }
                    Some(_) => return Err(bad()),
                }
                (!values.is_empty()).then_some(values)
            }
            _ => None,
        };
        Ok(ClaimsRequest {
            id_token: names("id_token")?,
            userinfo: names("userinfo")?,
            sub,
            essential_acr,
        })
    }
}

/// A user's stored claims (OpenID standard claims, groups, attributes) as a JSON object.
pub fn stored_user_claims(user: &UserRow) -> Value {
    serde_json::from_str(&user.claims).unwrap_or_else(|_| json!({}))
}

/// A user's value of an OpenID claim: the stored claims, `preferred_username` falling back to
/// the username and `updated_at` from the record. Custom attributes are not OpenID claims.
pub fn user_claim(user: &UserRow, stored: &Value, name: &str) -> Option<Value> {
    // Any other name asked for (a claim about the token, `iss`, `cnf`..., or whatever a record
    // written by an older version may hold) is never taken from the record.
    match name {
        n if !crate::config::is_user_claim(n) => None,
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

    /// A record answers only for user claims: whatever else it may hold (a record stored
    /// unchecked by an older version) is never given, whatever a client asks for.
    #[test]
    fn a_record_answers_only_for_user_claims() {
        let user = crate::store::UserRow {
            id: "id".into(),
            domain: "d".into(),
            username: "u".into(),
            password_hash: None,
            status: "active".into(),
            claims: String::new(),
            source: "store".into(),
            config_hash: None,
            created_at: 1,
            updated_at: 7,
        };
        let stored = serde_json::json!({"cnf": {"jkt": "x"}, "client_id": "c", "email": "u@example.com", "department": "x"});
        for name in [
            "cnf",
            "client_id",
            "department",
            "sub",
            "iss",
            "attributes",
            "username",
        ] {
            assert_eq!(super::user_claim(&user, &stored, name), None, "{name}");
        }
        assert_eq!(
            super::user_claim(&user, &stored, "email"),
            Some(serde_json::json!("u@example.com"))
        );
        assert_eq!(
            super::user_claim(&user, &stored, "updated_at"),
            Some(serde_json::json!(7))
        );
        assert_eq!(
            super::user_claim(&user, &stored, "preferred_username"),
            Some(serde_json::json!("u"))
        );
    }

    #[test]
    fn parses_targets_and_refuses_malformed() {
        let c = ClaimsRequest::parse(
            r#"{"id_token":{"email":{"essential":true},"acr":{"values":["1"]}},"userinfo":{"phone_number":null},"x":1}"#,
        )
        .unwrap();
        assert_eq!(c.id_token, ["acr", "email"]);
        assert_eq!(c.userinfo, ["phone_number"]);
        // A voluntary acr is no requirement.
        assert_eq!((c.sub, c.essential_acr), (None, None));
        let c = ClaimsRequest::parse(
            r#"{"id_token":{"sub":{"value":"u1"},"acr":{"essential":true,"value":"a","values":["b","c"]}}}"#,
        )
        .unwrap();
        assert_eq!(c.sub.as_deref(), Some("u1"));
        assert_eq!(c.essential_acr, Some(vec!["a".into(), "b".into(), "c".into()]));
        // Essential without values asks for no particular one; userinfo's sub names no user.
        let c = ClaimsRequest::parse(
            r#"{"id_token":{"acr":{"essential":true}},"userinfo":{"sub":{"value":"u1"}}}"#,
        )
        .unwrap();
        assert_eq!((c.sub, c.essential_acr), (None, None));
        for bad in [
            "[]",
            "not json",
            r#"{"id_token":[]}"#,
            r#"{"userinfo":{"email":1}}"#,
            r#"{"id_token":{"sub":{"value":1}}}"#,
            r#"{"id_token":{"acr":{"essential":true,"values":"1"}}}"#,
            r#"{"id_token":{"acr":{"essential":true,"values":[1]}}}"#,
        ] {
            assert!(ClaimsRequest::parse(bad).is_err(), "{bad}");
        }
    }
}
