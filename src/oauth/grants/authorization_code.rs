//! RFC 6749 s4.1.3: the authorization code grant, with PKCE (RFC 7636) and ID tokens.

use async_trait::async_trait;

use super::{Grant, TokenResponse};
use crate::crypto::secrets::{random_token, sha256_b64};
use crate::domain::Client;
use crate::error::{OAuthError, OAuthResult};
use crate::oauth::Ctx;
use crate::oauth::params::Params;
use crate::oauth::pkce;
use crate::oauth::scopes::still_granted;
use crate::oauth::user_tokens::{self, UserGrant};
use crate::store::OAuthStore;
use crate::store::signin::CodeRow;

/// `grant_type=authorization_code`.
pub struct AuthorizationCode;

fn invalid() -> OAuthError {
    OAuthError::invalid_grant("the code is invalid, expired or already used")
}

#[async_trait]
impl<S: OAuthStore> Grant<S> for AuthorizationCode {
    fn grant_type(&self) -> &'static str {
        "authorization_code"
    }

    async fn handle(&self, ctx: &Ctx<'_, S>, client: &Client, params: &Params) -> OAuthResult<TokenResponse> {
        let code = params.require("code")?;
        let hash = sha256_b64(code);
        let domain = &ctx.domain.name;
        // The code and its user in one read; the user's status is checked once the code is used up.
        let (row, user) = ctx
            .store
            .find_code_with_user(domain, &hash)
            .await?
            .ok_or_else(invalid)?;
        if row.client_id != client.id {
            return Err(invalid().with_cause("code issued to another client"));
        }
        if row.used_at.is_some() {
            return Err(reused(ctx, &hash).await?);
        }
        if row.expires_at <= ctx.now {
            return Err(invalid().with_cause("code expired"));
        }
        // The tokens never outlive the sign-in that approved them (as for device codes).
        if row.session_expires_at <= ctx.now {
            return Err(invalid().with_cause("the sign-in that approved this code has ended"));
        }
        // RFC 6749 s4.1.3: redirect_uri must be identical when the request included it.
        let given = params.get("redirect_uri");
        if (row.redirect_uri_given == 1 || given.is_some()) && given != Some(row.redirect_uri.as_str()) {
            return Err(OAuthError::invalid_grant(
                "redirect_uri does not match the authorization request",
            ));
        }
        // RFC 7636 s4.6; RFC 9700 s2.1.1: a verifier for a code issued without a challenge is refused.
        match (
            &row.code_challenge,
            &row.code_challenge_method,
            params.get("code_verifier"),
        ) {
            (Some(ch), Some(m), Some(v)) if pkce::verify(m, ch, v) => {}
            (Some(_), _, _) => {
                return Err(OAuthError::invalid_grant(
                    "the code_verifier does not match the code_challenge",
                ));
            }
            (None, _, Some(_)) => {
                return Err(OAuthError::invalid_grant(
                    "code_verifier sent for a code issued without a code_challenge",
                ));
            }
            (None, _, None) => {}
        }
        // What the client is still allowed of the grant, and (RFC 8707) the resources asked for
        // among it: refused before the code is used up.
        let scopes = still_granted(ctx.domain, client, row.scope.split(' '))?;
        crate::oauth::scopes::for_resources(ctx.domain, &scopes, params.all("resource"))?;
        // Single use: one atomic conditional update; a concurrent redemption gets nothing.
        let row = match ctx.store.redeem_code(domain, &hash, ctx.now).await? {
            Some(r) => r,
            // Another request redeemed it in the meantime: a reuse like any other.
            None => return Err(reused(ctx, &hash).await?),
        };
        let user = user
            .filter(|u| u.status == "active")
            .ok_or_else(|| OAuthError::invalid_grant("the user is no longer active"))?;
        let claims = user_tokens::stored_claims(row.claims.as_deref());
        let grant = UserGrant {
            resources: params.all("resource"),
            client,
            user: &user,
            scopes: &scopes,
            auth_time: row.auth_time,
            amr: &row.amr,
            sid: &row.sid,
            nonce: row.nonce.as_deref(),
            claims: claims.as_ref(),
            remaining: row.session_expires_at - ctx.now,
        };
        let issued = user_tokens::issue(ctx, &grant).await?;
        let family = if user_tokens::wants_refresh(ctx.domain, client, &scopes) {
            Some(user_tokens::start_family(ctx, &grant, row.session_expires_at).await?)
        } else {
            None
        };
        // A reuse that arrived while we issued found nothing recorded to revoke: then what we
        // issued is revoked here (and the single success still answers, with dead tokens). The
        // same update that records what we issued tells whether the code is marked reused.
        let reused_meanwhile = ctx
            .store
            .set_code_access(
                &hash,
                &issued.access.jti,
                ctx.now + issued.access.expires_in,
                family.as_ref().map(|f| f.id.as_str()),
            )
            .await?;
        if reused_meanwhile && let Some(now_row) = ctx.store.find_code(domain, &hash).await? {
            revoke_issued(ctx, &now_row).await?;
            tracing::warn!(client_id = %client.id, "code reused during its redemption: the tokens issued from it are revoked");
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
        metrics::counter!("ostiary_tokens_issued_total", "grant_type" => "authorization_code").increment(1);
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

/// RFC 6749 s4.1.2: a code presented again is refused and the tokens issued from it are
/// revoked. The code is marked first, so that a redemption still issuing sees the mark and
/// revokes what it issues (the two orders of a race are both covered).
async fn reused<S: OAuthStore>(ctx: &Ctx<'_, S>, hash: &str) -> OAuthResult<OAuthError> {
    ctx.store
        .mark_code_reused(&ctx.domain.name, hash, ctx.now)
        .await?;
    if let Some(row) = ctx.store.find_code(&ctx.domain.name, hash).await? {
        revoke_issued(ctx, &row).await?;
    }
    Ok(invalid().with_cause("code reused: the tokens issued from it are revoked"))
}

/// RFC 6749 s4.1.2: on code reuse, revoke the tokens already issued from it.
async fn revoke_issued<S: OAuthStore>(ctx: &Ctx<'_, S>, row: &CodeRow) -> OAuthResult<()> {
    let access = row.access_jti.as_deref().zip(row.access_expires_at);
    user_tokens::revoke_issued(ctx, &row.client_id, access, row.family_id.as_deref()).await
}
