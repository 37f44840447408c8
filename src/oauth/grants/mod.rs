//! Grants of the token endpoint: one file per `grant_type`, all behind one trait, all reached
//! through the same front door (client authenticated once, grant looked up, client's permission
//! to use it checked, then `Grant::handle`).

pub mod authorization_code;
pub mod client_credentials;
pub mod device_code;
pub mod jwt_bearer;
pub mod password;
pub mod refresh_token;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;

use crate::domain::Client;
use crate::error::{OAuthError, OAuthResult};
use crate::oauth::Ctx;
use crate::oauth::params::Params;
use crate::store::OAuthStore;

/// RFC 6749 s5.1 successful token response.
#[derive(Debug, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    /// The user the tokens are for (none for client_credentials); for the audit event, not sent.
    #[serde(skip)]
    pub user_id: Option<String>,
}

/// One grant type.
#[async_trait]
pub trait Grant<S: OAuthStore>: Send + Sync {
    /// The `grant_type` value it answers.
    fn grant_type(&self) -> &'static str;
    /// Handles a token request of an authenticated client allowed to use this grant.
    async fn handle(&self, ctx: &Ctx<'_, S>, client: &Client, params: &Params) -> OAuthResult<TokenResponse>;
}

/// The grants this server implements, by `grant_type`.
pub struct Grants<S> {
    by_type: HashMap<&'static str, Arc<dyn Grant<S>>>,
}

impl<S: OAuthStore + 'static> Grants<S> {
    /// Every grant of this build.
    pub fn all() -> Self {
        let list: Vec<Arc<dyn Grant<S>>> = vec![
            Arc::new(authorization_code::AuthorizationCode),
            Arc::new(client_credentials::ClientCredentials),
            Arc::new(device_code::DeviceCode),
            Arc::new(refresh_token::RefreshToken),
            Arc::new(password::Password),
            Arc::new(jwt_bearer::JwtBearer),
        ];
        Grants {
            by_type: list.into_iter().map(|g| (g.grant_type(), g)).collect(),
        }
    }

    /// Supported grant types, sorted (for discovery).
    pub fn types(&self) -> Vec<&'static str> {
        let mut t: Vec<_> = self.by_type.keys().copied().collect();
        t.sort_unstable();
        t
    }

    /// Finds the grant and checks that the client may use it.
    pub fn select(&self, grant_type: &str, client: &Client) -> OAuthResult<Arc<dyn Grant<S>>> {
        let grant = self.by_type.get(grant_type).ok_or_else(|| {
            OAuthError::unsupported_grant_type(format!("grant_type {grant_type:?} is not supported"))
        })?;
        // RFC 6749 s5.2 unauthorized_client: not authorized to use this grant type.
        if !client.grant_types.contains(grant_type) {
            return Err(OAuthError::unauthorized_client(format!(
                "this client may not use the grant type {grant_type}"
            )));
        }
        Ok(grant.clone())
    }
}
