//! RFC 7009 token revocation.

use crate::domain::Client;
use crate::error::{OAuthError, OAuthResult};
use crate::oauth::Ctx;
use crate::oauth::tokens::{find_live_token, stored_key};
use crate::oauth::user_tokens;
use crate::store::OAuthStore;

/// Revokes `token` for `caller`. RFC 7009 s2.2: unknown, invalid or expired tokens are not an
/// error. s2.1: a token issued to another client is refused. Opaque tokens and refresh tokens are
/// revoked in the store; JWT access tokens by their jti until they expire. The hint only orders
/// the search, and our lookup is a single search, so any hint is accepted.
pub async fn revoke<S: OAuthStore>(ctx: &Ctx<'_, S>, caller: &Client, token: &str) -> OAuthResult<()> {
    let Some(t) = find_live_token(ctx, token).await? else {
        return revoke_rotated(ctx, caller, token).await;
    };
    if t.client_id != caller.id {
        return Err(OAuthError::unauthorized_client(
            "the token was not issued to this client",
        ));
    }
    // RFC 7009 s2.1: revoking a refresh token also invalidates the access tokens of its grant.
    if let Some(family) = &t.family_id {
        user_tokens::revoke_family(ctx, family, &t.client_id).await?;
        metrics::counter!("ostiary_tokens_revoked_total", "kind" => t.kind).increment(1);
        return Ok(());
    }
    match &t.hash {
        Some(hash) => {
            ctx.store.revoke_token(&ctx.domain.name, hash, ctx.now).await?;
        }
        None => {
            ctx.store
                .revoke_jti(&ctx.domain.name, &t.jti, &t.client_id, t.exp)
                .await?
        }
    }
    metrics::counter!("ostiary_tokens_revoked_total", "kind" => t.kind).increment(1);
    Ok(())
}

/// A refresh token already rotated is no longer live, yet within the client's
/// `refresh_token_grace` it still answers as a retry (the same successor), and after it a replay
/// revokes its family: revoking it ends its family at once, as revoking the live one would
/// (RFC 7009 s2.1: "the token cannot be used again after the revocation"). Anything else not
/// live (unknown, expired, revoked, another client's) is left as it is (s2.2).
async fn revoke_rotated<S: OAuthStore>(ctx: &Ctx<'_, S>, caller: &Client, token: &str) -> OAuthResult<()> {
    if token.split('.').count() == 3 {
        return Ok(());
    }
    let Some(row) = ctx.store.find_token(&ctx.domain.name, &stored_key(token)).await? else {
        return Ok(());
    };
    let rotated = row.kind == "refresh"
        && row.used_at.is_some()
        && row.revoked_at.is_none()
        && row.expires_at > ctx.now
        && row.client_id == caller.id;
    if let (true, Some(family)) = (rotated, &row.family_id) {
        user_tokens::revoke_family(ctx, family, &row.client_id).await?;
        metrics::counter!("ostiary_tokens_revoked_total", "kind" => "refresh").increment(1);
    }
    Ok(())
}
