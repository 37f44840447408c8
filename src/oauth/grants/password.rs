//! RFC 6749 s4.3: the resource owner password credentials grant. Legacy and discouraged (RFC 9700
//! s2.4: MUST NOT be used; OAuth 2.1 drops it): only clients that list `password` in their
//! grant_types may use it, with the sign-in page's throttling and lockout.

use async_trait::async_trait;
use zeroize::Zeroizing;

use super::{Grant, TokenResponse};
use crate::domain::Client;
use crate::error::{OAuthError, OAuthResult};
use crate::oauth::Ctx;
use crate::oauth::authorize::record_consent;
use crate::oauth::params::Params;
use crate::oauth::password::{Attempt, PasswordCheck, check_password, still_valid};
use crate::oauth::scopes::resolve_user_scopes;
use crate::oauth::user_tokens::{self, UserGrant};
use crate::store::OAuthStore;

/// `grant_type=password`.
pub struct Password;

/// The amr of a password check (RFC 8176).
const AMR_PWD: &str = r#"["pwd"]"#;

#[async_trait]
impl<S: OAuthStore> Grant<S> for Password {
    fn grant_type(&self) -> &'static str {
        "password"
    }

    async fn handle(&self, ctx: &Ctx<'_, S>, client: &Client, params: &Params) -> OAuthResult<TokenResponse> {
        // RFC 6749 s4.3.2: username and password are REQUIRED.
        let username = params.require("username")?.trim();
        let password = Zeroizing::new(params.require("password")?.to_string());
        let scopes = resolve_user_scopes(ctx.domain, client, params.get("scope"))?;
        let attempt = Attempt {
            domain: ctx.domain,
            gate: ctx.gate,
            username,
            peer: &ctx.peer,
            client_id: &client.id,
            now: ctx.now,
        };
        let checked = check_password(ctx.store, ctx.hasher, ctx.audit, &attempt, password).await?;
        // RFC 6749 s5.2 invalid_grant: the resource owner credentials are invalid.
        let user = match checked {
            PasswordCheck::Valid(u) => u,
            PasswordCheck::Locked(secs) => {
                return Err(OAuthError::invalid_grant(format!(
                    "too many failed attempts: try again in {secs} seconds"
                )));
            }
            PasswordCheck::Failed => {
                return Err(OAuthError::invalid_grant("the username or password is incorrect"));
            }
            PasswordCheck::Busy => {
                return Err(OAuthError::unavailable("too many password checks at once"));
            }
        };
        // No browser session stands behind this grant: refresh tokens only for offline scopes,
        // and they last the domain's refresh-token lifetime.
        let offline =
            client.grant_types.contains("refresh_token") && user_tokens::is_offline(ctx.domain, &scopes);
        let family_end = ctx.now + ctx.domain.refresh_token_max_lifetime;
        let grant = UserGrant {
            resources: params.all("resource"),
            client,
            user: &user,
            scopes: &scopes,
            auth_time: ctx.now,
            amr: AMR_PWD,
            sid: "",
            nonce: None,
            claims: None,
            remaining: if offline {
                family_end - ctx.now
            } else {
                i64::MAX / 4
            },
        };
        let issued = user_tokens::issue(ctx, &grant).await?;
        let family = if offline {
            let family = user_tokens::start_family(ctx, &grant, family_end).await?;
            let value = crate::crypto::secrets::random_token();
            user_tokens::store_refresh_token(ctx, &family, &value, &issued.access).await?;
            Some((family, value))
        } else {
            None
        };
        // A new password or a disabled account that landed while the password was being
        // checked: nothing issued here is answered, and the family just written is revoked (as
        // it is when the user cannot be read: a store error).
        let valid = still_valid(ctx.store, ctx.audit, &attempt, &user).await;
        if !matches!(valid, Ok(true)) {
            if let Some((f, _)) = &family {
                user_tokens::revoke_family_in(ctx.store, ctx.domain, &f.id, &client.id, ctx.now).await?;
            }
            valid?;
            return Err(OAuthError::invalid_grant("the username or password is incorrect"));
        }
        let refresh_token = match family {
            Some((_, value)) => {
                // The person gave their password to this client: that is their consent to
                // these scopes, recorded so that withdrawing it ends the refresh tokens like any
                // other (after the check above, so that an undone grant leaves none).
                record_consent(
                    ctx.store,
                    &ctx.domain.name,
                    &user.id,
                    &client.id,
                    &scopes,
                    ctx.now,
                )
                .await?;
                Some(value)
            }
            None => None,
        };
        metrics::counter!("ostiary_tokens_issued_total", "grant_type" => "password").increment(1);
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
