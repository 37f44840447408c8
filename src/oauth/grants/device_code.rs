//! RFC 8628 s3.4-3.5: the device access token request: the device polls with its device code
//! until the person has approved or denied it on the verification page.

use async_trait::async_trait;

use super::{Grant, TokenResponse};
use crate::config::DEVICE_CODE_GRANT;
use crate::crypto::secrets::{random_token, sha256_b64};
use crate::domain::Client;
use crate::error::{ErrorCode, OAuthError, OAuthResult};
use crate::oauth::Ctx;
use crate::oauth::params::Params;
use crate::oauth::user_tokens::{self, UserGrant};
use crate::store::OAuthStore;
use crate::store::device::{DeviceCodeRow, Poll, status};

/// `grant_type=urn:ietf:params:oauth:grant-type:device_code`.
pub struct DeviceCode;

fn invalid() -> OAuthError {
    OAuthError::invalid_grant("the device code is invalid or already used")
}

fn expired() -> OAuthError {
    OAuthError::new(
        ErrorCode::ExpiredToken,
        "the device code has expired; start a new device authorization",
    )
}

#[async_trait]
impl<S: OAuthStore> Grant<S> for DeviceCode {
    fn grant_type(&self) -> &'static str {
        DEVICE_CODE_GRANT
    }

    async fn handle(&self, ctx: &Ctx<'_, S>, client: &Client, params: &Params) -> OAuthResult<TokenResponse> {
        let hash = sha256_b64(params.require("device_code")?);
        let domain = &ctx.domain.name;
        let row = ctx
            .store
            .find_device_code(domain, &hash)
            .await?
            .ok_or_else(invalid)?;
        // RFC 8628 s3.4 with RFC 6749 s5.2: a device code issued to another client is invalid_grant.
        if row.client_id != client.id {
            return Err(invalid().with_cause("device code issued to another client"));
        }
        if row.used_at.is_some() {
            return Err(reused(ctx, &hash).await?);
        }
        // RFC 8628 s3.5 expired_token: the device code has expired.
        if row.expires_at <= ctx.now {
            return Err(expired());
        }
        match row.status.as_str() {
            // RFC 8628 s3.5 access_denied: the person denied the request.
            status::DENIED => {
                return Err(OAuthError::new(
                    ErrorCode::AccessDenied,
                    "the person denied the authorization request",
                ));
            }
            // RFC 8628 s3.5 authorization_pending, and slow_down (the interval grows by 5 s)
            // when polled sooner than the interval.
            status::PENDING => {
                return Err(match ctx.store.poll_device_code(domain, &hash, ctx.now).await? {
                    Poll::OnTime => OAuthError::new(
                        ErrorCode::AuthorizationPending,
                        "the person has not yet approved the request",
                    ),
                    Poll::TooFast => OAuthError::new(
                        ErrorCode::SlowDown,
                        "polling too often: wait 5 seconds more between requests",
                    ),
                    Poll::Unknown => invalid(),
                });
            }
            _ => {}
        }
        // What the client is still allowed of the grant, and (RFC 8707) the resources asked for
        // among it: refused before the device code is used up.
        let scopes = crate::oauth::scopes::still_granted(ctx.domain, client, row.scope.split(' '))?;
        crate::oauth::scopes::for_resources(ctx.domain, &scopes, params.all("resource"))?;
        // Single use: one atomic conditional update; a concurrent redemption gets nothing.
        let Some(row) = ctx.store.redeem_device_code(domain, &hash, ctx.now).await? else {
            // Redeemed by a concurrent request: a reuse like any other.
            return match ctx.store.find_device_code(domain, &hash).await? {
                Some(now_row) if now_row.used_at.is_some() => Err(reused(ctx, &hash).await?),
                // RFC 8628 s3.5: expired (its time ran out, or a sign-out ended it) meanwhile.
                Some(now_row) if now_row.expires_at <= ctx.now => Err(expired()),
                _ => Err(invalid().with_cause("device code changed meanwhile")),
            };
        };
        let (Some(user_id), Some(sid), Some(auth_time), Some(amr), Some(session_expires_at)) = (
            row.user_id.as_deref(),
            row.sid.as_deref(),
            row.auth_time,
            row.amr.as_deref(),
            row.session_expires_at,
        ) else {
            return Err(OAuthError::server_error(
                "approved device code without its approval",
            ));
        };
        // The tokens never outlive the sign-in that approved them.
        if session_expires_at <= ctx.now {
            return Err(OAuthError::invalid_grant(
                "the sign-in that approved this device has ended",
            ));
        }
        let user = ctx
            .store
            .find_user_by_id(domain, user_id)
            .await?
            .filter(|u| u.status == "active")
            .ok_or_else(|| OAuthError::invalid_grant("the user is no longer active"))?;
        // OpenID Connect Core s2: no nonce (there was no authorization request to carry one).
        let grant = UserGrant {
            resources: params.all("resource"),
            client,
            user: &user,
            scopes: &scopes,
            auth_time,
            amr,
            sid,
            nonce: None,
            claims: None,
            remaining: session_expires_at - ctx.now,
        };
        let issued = user_tokens::issue(ctx, &grant).await?;
        let family = if user_tokens::wants_refresh(ctx.domain, client, &scopes) {
            Some(user_tokens::start_family(ctx, &grant, session_expires_at).await?)
        } else {
            None
        };
        // As for authorization codes: a replay that arrived while we issued found nothing to
        // revoke; the update that records what we issued tells, and then we revoke it here.
        let reused_meanwhile = ctx
            .store
            .set_device_code_access(
                domain,
                &hash,
                &issued.access.jti,
                ctx.now + issued.access.expires_in,
                family.as_ref().map(|f| f.id.as_str()),
            )
            .await?;
        if reused_meanwhile && let Some(now_row) = ctx.store.find_device_code(domain, &hash).await? {
            revoke_issued(ctx, &now_row).await?;
            tracing::warn!(client_id = %client.id, "device code reused during its redemption: the tokens issued from it are revoked");
        }
        let refresh_token = match &family {
            Some(f) => {
                let value = random_token();
                user_tokens::store_refresh_token(ctx, f, &value, &issued.access).await?;
                Some(value)
            }
            None => None,
        };
        user_tokens::refuse_if_withdrawn(
            ctx,
            client,
            &grant,
            (&issued.access.jti, ctx.now + issued.access.expires_in),
            family.as_ref().map(|f| f.id.as_str()),
        )
        .await?;
        tracing::info!(domain = %domain, client_id = %client.id, user.id = %user.id, "device authorization redeemed");
        metrics::counter!("ostiary_tokens_issued_total", "grant_type" => DEVICE_CODE_GRANT).increment(1);
        Ok(TokenResponse {
            access_token: issued.access.value,
            token_type: "Bearer",
            expires_in: issued.access.expires_in,
            scope: Some(issued.scopes.join(" ")),
            refresh_token,
            id_token: issued.id_token,
            user_id: Some(user.id.clone()),
        })
    }
}

/// RFC 6749 s4.1.2 applied to device codes: a device code presented again after its redemption
/// is refused and the tokens issued from it are revoked. The code is marked first, so that a
/// redemption still issuing sees the mark and revokes what it issues.
async fn reused<S: OAuthStore>(ctx: &Ctx<'_, S>, hash: &str) -> OAuthResult<OAuthError> {
    ctx.store
        .mark_device_code_reused(&ctx.domain.name, hash, ctx.now)
        .await?;
    if let Some(row) = ctx.store.find_device_code(&ctx.domain.name, hash).await? {
        revoke_issued(ctx, &row).await?;
    }
    Ok(invalid().with_cause("device code reused: the tokens issued from it are revoked"))
}

/// Revokes what a device code's redemption issued.
async fn revoke_issued<S: OAuthStore>(ctx: &Ctx<'_, S>, row: &DeviceCodeRow) -> OAuthResult<()> {
    let access = row.access_jti.as_deref().zip(row.access_expires_at);
    user_tokens::revoke_issued(ctx, &row.client_id, access, row.family_id.as_deref()).await
}
