//! OpenID Connect Core s5.3 userinfo: the claims of the token's user, by granted scope.

use serde_json::{Map, Value, json};

use crate::config::SCOPE_CLAIMS;
use crate::error::{ErrorCode, OAuthError, OAuthResult};
use crate::oauth::claims_request::{add_user_claims, stored_user_claims};
use crate::oauth::tokens::find_live_token;
use crate::oauth::user_tokens::USERINFO_CLAIMS;
use crate::oauth::{Ctx, mtls};
use crate::store::OAuthStore;

/// The userinfo response for a bearer token.
pub async fn userinfo<S: OAuthStore>(ctx: &Ctx<'_, S>, token: &str) -> OAuthResult<Value> {
    let invalid = || OAuthError::invalid_token("the access token is invalid or expired");
    let t = find_live_token(ctx, token).await?.ok_or_else(invalid)?;
    if t.kind != "access" || t.user_disabled || !ctx.domain.client(&t.client_id).is_some_and(|c| c.enabled) {
        return Err(invalid());
    }
    // RFC 8705 s3: a certificate-bound token is accepted only with the certificate it is bound to.
    if !mtls::binding_holds(&t.extra, ctx.peer.certificate.as_deref()) {
        return Err(OAuthError::invalid_token(
            "the access token is bound to a client certificate that was not presented",
        ));
    }
    let scopes: Vec<&str> = t.scope.split(' ').collect();
    if !scopes.contains(&"openid") {
        return Err(OAuthError::new(
            ErrorCode::InsufficientScope,
            "the token lacks the openid scope",
        ));
    }
    let user = ctx
        .store
        .find_user_by_id(&ctx.domain.name, &t.sub)
        .await?
        .filter(|u| u.status == "active")
        .ok_or_else(invalid)?;
    let stored = stored_user_claims(&user);
    let mut out = Map::new();
    out.insert("sub".into(), json!(user.id));
    // OpenID Connect Core s5.4: the claims of each granted scope; s5.5: plus those asked for.
    let mut names: Vec<String> = SCOPE_CLAIMS
        .iter()
        .filter(|(scope, _)| scopes.contains(scope))
        .flat_map(|(_, names)| names.iter().map(|n| n.to_string()))
        .collect();
    if let Some(Value::Array(asked)) = t.extra.get(USERINFO_CLAIMS) {
        names.extend(asked.iter().filter_map(Value::as_str).map(str::to_string));
    }
    add_user_claims(&mut out, &user, &stored, &names);
    Ok(Value::Object(out))
}
