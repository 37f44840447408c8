//! RFC 6749 s4.4: the client credentials grant.

use async_trait::async_trait;

use super::{Grant, TokenResponse};
use crate::domain::Client;
use crate::error::{OAuthError, OAuthResult};
use crate::oauth::Ctx;
use crate::oauth::claims::custom_claims;
use crate::oauth::params::Params;
use crate::oauth::scopes::{self, resolve_api_scopes};
use crate::oauth::tokens::{ADMIN_ROLES_CLAIM, AccessTokenSpec, issue_access_token};
use crate::store::OAuthStore;

/// `grant_type=client_credentials`.
pub struct ClientCredentials;

#[async_trait]
impl<S: OAuthStore> Grant<S> for ClientCredentials {
    fn grant_type(&self) -> &'static str {
        "client_credentials"
    }

    async fn handle(&self, ctx: &Ctx<'_, S>, client: &Client, params: &Params) -> OAuthResult<TokenResponse> {
        // RFC 6749 s4.4: the client credentials grant type MUST only be used by confidential clients.
        if !client.is_confidential() {
            return Err(OAuthError::unauthorized_client(
                "client_credentials requires a confidential client",
            ));
        }
        // A token for this domain's admin API: asked with `resource` = the issuer, or with
        // neither scope nor resource by a client that has no resource-server scope.
        let resources = params.all("resource");
        let only_admin = !client.admin_roles.is_empty()
            && params.get("scope").is_none()
            && match resources {
                [] => !client.scopes.iter().any(|s| ctx.domain.scope(s).is_some()),
                [r] => *r == ctx.domain.issuer,
                _ => false,
            };
        let grant = if only_admin {
            // An administrator client without API scopes: a token for this domain's admin API.
            scopes::Grant {
                scopes: Vec::new(),
                audiences: vec![ctx.domain.issuer.clone()],
            }
        } else {
            resolve_api_scopes(ctx.domain, client, params.get("scope"), resources)?
        };
        let mut extra = custom_claims(ctx.domain, &grant.audiences, &grant.scopes, None);
        // The client's administrator roles travel in its own admin-API tokens only: never in a
        // user's, nor in one meant for a resource server (which could replay it here).
        if only_admin {
            let roles: Vec<&str> = client.admin_roles.iter().map(|r| r.as_str()).collect();
            extra.insert(ADMIN_ROLES_CLAIM.into(), serde_json::json!(roles));
        }
        let token = issue_access_token(
            ctx,
            AccessTokenSpec {
                client,
                sub: client.id.clone(),
                scopes: grant.scopes.clone(),
                audiences: grant.audiences.clone(),
                extra,
                max_lifetime: None,
            },
        )
        .await?;
        metrics::counter!("ostiary_tokens_issued_total", "grant_type" => "client_credentials").increment(1);
        // RFC 6749 s4.4.3: a refresh token SHOULD NOT be included.
        Ok(TokenResponse {
            access_token: token.value,
            token_type: "Bearer",
            expires_in: token.expires_in,
            scope: Some(grant.scope_string()).filter(|s| !s.is_empty()),
            refresh_token: None,
            id_token: None,
            user_id: None,
        })
    }
}
