//! RFC 6749 s6: the refresh token grant, with rotation in families and reuse detection
//! (RFC 9700 s4.14.2), and a new ID token for `openid` grants (OpenID Connect Core s12.2).

use async_trait::async_trait;

use super::{Grant, TokenResponse};
use crate::config::{ConsentPolicy, is_scope_token};
use crate::domain::Client;
use crate::error::{OAuthError, OAuthResult};
use crate::oauth::authorize::consent_covers;
use crate::oauth::params::Params;
use crate::oauth::tokens::stored_key;
use crate::oauth::user_tokens::{self, UserGrant, invalid_refresh};
use crate::oauth::{Ctx, mtls};
use crate::store::refresh::FamilyRow;
use crate::store::{OAuthStore, TokenRow, UserRow};

/// `grant_type=refresh_token`.
pub struct RefreshToken;

#[async_trait]
impl<S: OAuthStore> Grant<S> for RefreshToken {
    fn grant_type(&self) -> &'static str {
        "refresh_token"
    }

    async fn handle(&self, ctx: &Ctx<'_, S>, client: &Client, params: &Params) -> OAuthResult<TokenResponse> {
        let presented = params.require("refresh_token")?;
        let hash = stored_key(presented);
        let domain = &ctx.domain.name;
        // The common case (no narrowing asked for) in one conditional update that uses the token
        // up; anything it does not take goes the careful way below.
        let taken = if params.get("scope").is_none() && params.all("resource").is_empty() {
            ctx.store.take_refresh(domain, &hash, &client.id, ctx.now).await?
        } else {
            None
        };
        let (row, family, user, scopes) = match taken {
            Some(row) => {
                let family_id = row.family_id.clone().ok_or_else(invalid_refresh)?;
                let (family, user) = ctx
                    .store
                    .find_family_with_user(domain, &family_id)
                    .await?
                    .ok_or_else(invalid_refresh)?;
                if family.revoked_at.is_some() {
                    return Err(invalid_refresh().with_cause("refresh token revoked"));
                }
                let scopes: Vec<String> = family.scope.split(' ').map(str::to_string).collect();
                (row, family, user, scopes)
            }
            None => checked_rotation(ctx, client, params, presented, &hash).await?,
        };
        // Checked after the rotation so that a token refused here is used up all the same.
        check_family(ctx, client, &row, &family).await?;
        // What the client is still allowed of the family's grant: a scope removed from it (or
        // from the domain) since is no longer issued, even when asked for again.
        let granted = crate::oauth::scopes::still_granted(ctx.domain, client, family.scope.split(' '))?;
        let mut scopes = scopes;
        scopes.retain(|s| granted.contains(s));
        if scopes.is_empty() {
            return Err(OAuthError::invalid_grant(
                "none of the asked scopes is still allowed for this client",
            ));
        }
        let user = user
            .filter(|u| u.status == "active")
            .ok_or_else(|| invalid_refresh().with_cause("the user is not active"))?;
        // An offline family stays offline while the client still has its offline scope (a
        // reload may have removed it); otherwise it lives with its session, as any other.
        let still_offline = family.offline == 1 && user_tokens::is_offline(ctx.domain, &granted);
        let remaining = if still_offline {
            family.expires_at - ctx.now
        } else {
            session_remaining(ctx, &family).await?
        };
        let claims = user_tokens::stored_claims(family.claims.as_deref());
        let grant = UserGrant {
            resources: params.all("resource"),
            client,
            user: &user,
            scopes: &scopes,
            auth_time: family.auth_time,
            amr: &family.amr,
            sid: &family.sid,
            nonce: None,
            claims: claims.as_ref(),
            remaining,
        };
        let issued = user_tokens::issue(ctx, &grant).await?;
        let next = user_tokens::successor(ctx, presented);
        // A reuse detected concurrently may have revoked the family while we issued: then what
        // we issued dies with it, and the family never forks.
        if !user_tokens::store_successor(ctx, &family, &next, &issued.access).await? {
            let still = ctx.store.find_family(domain, &family.id).await?;
            if still.is_none_or(|f| f.revoked_at.is_some()) {
                user_tokens::revoke_family(ctx, &family.id, &client.id).await?;
                return Err(invalid_refresh().with_cause("family revoked during the refresh"));
            }
        }
        metrics::counter!("ostiary_tokens_issued_total", "grant_type" => "refresh_token").increment(1);
        Ok(TokenResponse {
            access_token: issued.access.value,
            token_type: "Bearer",
            expires_in: issued.access.expires_in,
            scope: Some(issued.scopes.join(" ")),
            refresh_token: Some(next),
            id_token: issued.id_token,
            user_id: Some(user.id.clone()),
        })
    }
}

/// The refresh token checked before it is used up (client, certificate binding, family, asked
/// scope), then rotated by one conditional update; a token already rotated is a retry or a
/// replay. Returns the token, its family, the family's user and the scopes to issue.
async fn checked_rotation<S: OAuthStore>(
    ctx: &Ctx<'_, S>,
    client: &Client,
    params: &Params,
    presented: &str,
    hash: &str,
) -> OAuthResult<(TokenRow, FamilyRow, Option<UserRow>, Vec<String>)> {
    let domain = &ctx.domain.name;
    let row = ctx
        .store
        .find_token(domain, hash)
        .await?
        .filter(|t| t.kind == "refresh")
        .ok_or_else(invalid_refresh)?;
    // RFC 6749 s6: the refresh token was issued to the authenticated client.
    if row.client_id != client.id {
        return Err(invalid_refresh().with_cause("refresh token of another client"));
    }
    // RFC 8705 s4: a refresh token bound to a client certificate is used only with it.
    let bound: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&row.claims).unwrap_or_default();
    if !mtls::binding_holds(&bound, ctx.peer.certificate.as_deref()) {
        return Err(invalid_refresh().with_cause("refresh token bound to another client certificate"));
    }
    let family_id = row.family_id.clone().ok_or_else(invalid_refresh)?;
    let (family, user) = ctx
        .store
        .find_family_with_user(domain, &family_id)
        .await?
        .ok_or_else(invalid_refresh)?;
    if family.revoked_at.is_some() || row.revoked_at.is_some() {
        return Err(invalid_refresh().with_cause("refresh token revoked"));
    }
    // A token already rotated is a retry or a replay whatever else the request asks: judged
    // first, so that a replay with a refused scope revokes its family all the same.
    if row.used_at.is_some() {
        reused(ctx, client, &row, presented).await?;
    }
    // A malformed or widened scope is refused before the token is used up. The scopes the
    // client no longer has (a reload removed them since the grant) are left out, as at every
    // grant, and a request left with none is refused before the token is used up too: used up
    // first, the token would be gone with nothing issued, and the client's retry a replay.
    let granted: Vec<String> = family.scope.split(' ').map(str::to_string).collect();
    let mut scopes = narrowed(&granted, params.get("scope"))?;
    let allowed = crate::oauth::scopes::still_granted(ctx.domain, client, family.scope.split(' '))?;
    scopes.retain(|s| allowed.contains(s));
    if scopes.is_empty() {
        return Err(OAuthError::invalid_scope(
            "none of the asked scopes is still allowed for this client",
        ));
    }
    // RFC 8707: the resources asked for among them, refused before the token is used up too.
    crate::oauth::scopes::for_resources(ctx.domain, &scopes, params.all("resource"))?;
    // Single use: one conditional update; lost, the token was rotated meanwhile.
    if row.used_at.is_none() && !ctx.store.rotate_refresh(domain, hash, ctx.now).await? {
        reused(ctx, client, &row, presented).await?;
    }
    Ok((row, family, user, scopes))
}

/// A token presented after its rotation: within the grace window and while its successor is
/// unused, a retry (Ok: the same successor is handed out again); otherwise a replay, and the
/// whole family is revoked (RFC 9700 s4.14.2).
async fn reused<S: OAuthStore>(
    ctx: &Ctx<'_, S>,
    client: &Client,
    row: &TokenRow,
    presented: &str,
) -> OAuthResult<()> {
    let family_id = row.family_id.as_deref().unwrap_or_default();
    // Another request may have rotated it between our read and our update.
    let used_at = match row.used_at {
        Some(t) => t,
        None => ctx
            .store
            .find_token(&ctx.domain.name, &row.hash)
            .await?
            .and_then(|r| r.used_at)
            .unwrap_or(ctx.now),
    };
    if client.refresh_token_grace > 0 && ctx.now - used_at <= client.refresh_token_grace {
        let next_hash = stored_key(&user_tokens::successor(ctx, presented));
        let next = ctx.store.find_token(&ctx.domain.name, &next_hash).await?;
        // The successor not yet stored (a concurrent rotation still writing it) or unused.
        if next.is_none_or(|n| n.used_at.is_none() && n.revoked_at.is_none()) {
            tracing::info!(client_id = %client.id, "refresh retried within the grace window: same new refresh token");
            return Ok(());
        }
    }
    user_tokens::revoke_family(ctx, family_id, &row.client_id).await?;
    tracing::warn!(client_id = %row.client_id, family = %family_id, "rotated refresh token reused: its family is revoked");
    Err(invalid_refresh().with_cause("rotated refresh token reused; family revoked"))
}

/// The family may still be used: unexpired, its user's consent standing, and, unless offline,
/// its session alive.
async fn check_family<S: OAuthStore>(
    ctx: &Ctx<'_, S>,
    client: &Client,
    row: &TokenRow,
    family: &FamilyRow,
) -> OAuthResult<()> {
    if row.expires_at <= ctx.now || family.expires_at <= ctx.now {
        return Err(invalid_refresh().with_cause("refresh token expired"));
    }
    if client.consent == ConsentPolicy::Required {
        let consent = ctx
            .store
            .find_consent(&ctx.domain.name, &family.user_id, &client.id)
            .await?;
        if !consent_covers(consent.as_deref(), family.scope.split(' ')) {
            return Err(invalid_refresh().with_cause("consent revoked"));
        }
    }
    Ok(())
}

/// Seconds left in the session a non-offline family belongs to; refused when it has ended.
async fn session_remaining<S: OAuthStore>(ctx: &Ctx<'_, S>, family: &FamilyRow) -> OAuthResult<i64> {
    let session = ctx
        .store
        .find_session_by_sid(&ctx.domain.name, &family.sid, ctx.now)
        .await?
        .ok_or_else(|| invalid_refresh().with_cause("the session of this refresh token has ended"))?;
    Ok(session.expires_at.min(family.expires_at) - ctx.now)
}

/// RFC 6749 s6: the requested scope must not include any scope not originally granted; when
/// omitted, it is the original.
fn narrowed(granted: &[String], requested: Option<&str>) -> OAuthResult<Vec<String>> {
    let Some(requested) = requested else {
        return Ok(granted.to_vec());
    };
    let mut out: Vec<String> = Vec::new();
    for s in requested.split(' ').filter(|s| !s.is_empty()) {
        if !is_scope_token(s) {
            return Err(OAuthError::invalid_scope("the scope parameter is malformed"));
        }
        if !granted.iter().any(|g| g == s) {
            return Err(OAuthError::invalid_scope(format!(
                "the scope {s} was not granted: a refresh may narrow the scope, never widen it"
            )));
        }
        if !out.iter().any(|o| o == s) {
            out.push(s.to_string());
        }
    }
    if out.is_empty() {
        return Err(OAuthError::invalid_scope("the scope parameter is empty"));
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::narrowed;

    #[test]
    fn narrowing_never_widens() {
        let g: Vec<String> = ["openid", "orders.read", "offline_access"]
            .map(String::from)
            .to_vec();
        assert_eq!(narrowed(&g, None).unwrap(), g);
        assert_eq!(narrowed(&g, Some("orders.read")).unwrap(), ["orders.read"]);
        assert!(narrowed(&g, Some("orders.read orders.write")).is_err());
        assert!(narrowed(&g, Some("   ")).is_err());
    }
}
