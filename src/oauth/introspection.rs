//! RFC 7662 token introspection.

use serde_json::{Map, Value, json};

use crate::domain::Client;
use crate::error::OAuthResult;
use crate::oauth::Ctx;
use crate::oauth::tokens::{aud_value, find_live_token};
use crate::store::OAuthStore;

/// The introspection response for `token` as seen by `caller`.
/// RFC 7662 s2.2: inactive (`{"active":false}`) for unknown, expired, revoked or foreign tokens and
/// for tokens the caller may not see (neither issued to it nor meant for an API it acts for);
/// also inactive when the token's client is disabled or gone, or its user disabled.
pub async fn introspect<S: OAuthStore>(ctx: &Ctx<'_, S>, caller: &Client, token: &str) -> OAuthResult<Value> {
    let inactive = json!({ "active": false });
    let Some(t) = find_live_token(ctx, token).await? else {
        return Ok(inactive);
    };
    if t.user_disabled || !ctx.domain.client(&t.client_id).is_some_and(|c| c.enabled) {
        return Ok(inactive);
    }
    let meant_for_caller = t.audiences.iter().any(|a| {
        ctx.domain
            .resource_server(a)
            .is_some_and(|rs| rs.introspection_clients.contains(&caller.id))
    });
    if t.client_id != caller.id && !meant_for_caller {
        return Ok(inactive);
    }
    let mut out = Map::new();
    out.insert("active".into(), json!(true));
    if !t.scope.is_empty() {
        out.insert("scope".into(), json!(t.scope));
    }
    out.insert("client_id".into(), json!(t.client_id));
    out.insert(
        "token_type".into(),
        json!(if t.kind == "refresh" {
            "refresh_token"
        } else {
            "Bearer"
        }),
    );
    out.insert("exp".into(), json!(t.exp));
    out.insert("iat".into(), json!(t.iat));
    out.insert("sub".into(), json!(t.sub));
    if !t.audiences.is_empty() {
        out.insert("aud".into(), aud_value(&t.audiences));
    }
    out.insert("iss".into(), json!(ctx.domain.issuer));
    out.insert("jti".into(), json!(t.jti));
    for (k, v) in t.extra {
        out.entry(k).or_insert(v);
    }
    Ok(Value::Object(out))
}
