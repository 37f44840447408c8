//! RFC 7523 s2.1: the JWT bearer grant. A client presents an assertion about a user, signed by an
//! issuer the domain trusts; it gets an access token for that user (no refresh token, no ID
//! token: RFC 7523 s2.1 grants access, not a sign-in).

use async_trait::async_trait;
use serde_json::Value;

use super::{Grant, TokenResponse};
use crate::config::{JWT_BEARER_GRANT, SubjectMapping};
use crate::crypto::jws;
use crate::crypto::keys::SigningAlg;
use crate::domain::Client;
use crate::error::{OAuthError, OAuthResult};
use crate::oauth::Ctx;
use crate::oauth::assertion::{self, Expect};
use crate::oauth::params::Params;
use crate::oauth::scopes::resolve_user_scopes;
use crate::oauth::user_tokens::{self, UserGrant};
use crate::store::OAuthStore;

/// `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`.
pub struct JwtBearer;

/// The amr of a grant on an issuer's assertion.
const AMR_ASSERTION: &str = r#"["jwt"]"#;

fn invalid(public: &'static str) -> OAuthError {
    OAuthError::invalid_grant(public)
}

#[async_trait]
impl<S: OAuthStore> Grant<S> for JwtBearer {
    fn grant_type(&self) -> &'static str {
        JWT_BEARER_GRANT
    }

    async fn handle(&self, ctx: &Ctx<'_, S>, client: &Client, params: &Params) -> OAuthResult<TokenResponse> {
        // RFC 7523 s2.1: the assertion parameter holds a single JWT.
        let jwt = params.require("assertion")?;
        let header = jws::peek_header(jwt).map_err(|_| invalid("the assertion is not a JWT"))?;
        let unverified = jws::peek_claims(jwt).map_err(|_| invalid("the assertion is not a JWT"))?;
        let iss = unverified.get("iss").and_then(Value::as_str).unwrap_or_default();
        let issuer = ctx
            .domain
            .assertion_issuers
            .iter()
            .find(|i| i.issuer == iss)
            .ok_or_else(|| {
                invalid("the assertion's issuer is not trusted").with_cause(format!("iss {iss:?}"))
            })?;
        // RFC 7523 s3 item 9: the JWT MUST be digitally signed; only the issuer's declared keys,
        // with an asymmetric algorithm (never `none`, never an HMAC keyed with a public key).
        let alg = SigningAlg::parse(&header.alg).ok_or_else(|| {
            invalid("the assertion's algorithm is not accepted").with_cause(header.alg.clone())
        })?;
        let claims = jws::verify_with_jwks(jwt, &issuer.keys, alg, header.kid.as_deref())
            .ok_or_else(|| invalid("the assertion's signature does not verify with the issuer's keys"))?;
        // RFC 7523 s3 item 3: aud identifies this server, as for client assertions.
        let audiences = assertion::audiences(ctx.domain);
        let accepted = assertion::check(
            &claims,
            &Expect {
                issuer: &issuer.issuer,
                subject: None,
                audiences: &audiences,
                single_audience: false,
                max_lifetime: ctx.domain.assertion_max_lifetime,
                now: ctx.now,
            },
        )
        .map_err(|why| invalid(why).with_cause(format!("assertion of {iss:?}")))?;
        // Scopes and resources first: a request refused for them leaves the assertion unused.
        let scopes = resolve_user_scopes(ctx.domain, client, params.get("scope"))?;
        crate::oauth::scopes::for_resources(ctx.domain, &scopes, params.all("resource"))?;
        assertion::refuse_replay(ctx, &format!("issuer:{}", issuer.issuer), &accepted, invalid).await?;
        let user = match issuer.subject {
            SubjectMapping::Username => ctx.store.find_user(&ctx.domain.name, &accepted.sub).await?,
            SubjectMapping::UserId => ctx.store.find_user_by_id(&ctx.domain.name, &accepted.sub).await?,
        }
        .filter(|u| u.status == "active")
        .ok_or_else(|| invalid("the assertion's subject is not an active user of this domain"))?;
        let grant = UserGrant {
            resources: params.all("resource"),
            client,
            user: &user,
            scopes: &scopes,
            auth_time: ctx.now,
            amr: AMR_ASSERTION,
            sid: "",
            nonce: None,
            claims: None,
            remaining: accepted.exp.max(ctx.now + 1) - ctx.now + ctx.domain.access_token_lifetime,
        };
        let issued = user_tokens::issue(ctx, &grant).await?;
        metrics::counter!("ostiary_tokens_issued_total", "grant_type" => "jwt_bearer").increment(1);
        Ok(TokenResponse {
            access_token: issued.access.value,
            token_type: "Bearer",
            expires_in: issued.access.expires_in,
            scope: Some(issued.scopes.join(" ")),
            refresh_token: None,
            id_token: None,
            user_id: Some(user.id.clone()),
        })
    }
}
