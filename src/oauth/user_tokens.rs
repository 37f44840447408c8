//! What the grants of a signed-in person (authorization_code, refresh_token) issue: the access
//! token, the ID token and refresh tokens in families.

use serde_json::{Map, Value, json};

use crate::config::{ConsentPolicy, RefreshPolicy};
use crate::crypto::secrets::random_id;
use crate::domain::{Client, Domain};
use crate::error::{OAuthError, OAuthResult};
use crate::oauth::authorize::consent_covers;
use crate::oauth::claims::custom_claims;
use crate::oauth::claims_request::{ClaimsRequest, add_user_claims, stored_user_claims};
use crate::oauth::id_token::{self, IdTokenSpec};
use crate::oauth::tokens::{AccessTokenSpec, IssuedToken, issue_access_token, stored_key};
use crate::oauth::{Ctx, mtls, scopes};
use crate::store::refresh::FamilyRow;
use crate::store::{OAuthStore, TokenRow, UserRow};

/// A grant to a signed-in person, as the token endpoint sees it.
pub struct UserGrant<'a> {
    pub client: &'a Client,
    pub user: &'a UserRow,
    /// Scopes of this access token (a refresh may narrow the family's).
    pub scopes: &'a [String],
    pub auth_time: i64,
    /// JSON array of authentication methods.
    pub amr: &'a str,
    pub sid: &'a str,
    /// Only on the code exchange (OpenID Connect Core s12.2: not repeated on refresh).
    pub nonce: Option<&'a str>,
    /// The OpenID claims request of the authorization, if any.
    pub claims: Option<&'a ClaimsRequest>,
    /// Seconds the grant has left (its session, or its offline family): the access token never
    /// outlives it.
    pub remaining: i64,
    /// The token request's RFC 8707 `resource` parameters: the access token is for those
    /// resource servers only (none: every one the scopes reach).
    pub resources: &'a [String],
}

/// What a user grant issues.
pub struct UserTokens {
    pub access: IssuedToken,
    pub id_token: Option<String>,
    /// The access token's scopes (the grant's, less the API scopes of resource servers not
    /// asked for): the `scope` of the token response.
    pub scopes: Vec<String>,
}

/// The access-token claim listing the user claims asked for at userinfo.
pub const USERINFO_CLAIMS: &str = "userinfo_claims";

/// The claims request stored with a code or family.
pub fn stored_claims(json: Option<&str>) -> Option<ClaimsRequest> {
    json.and_then(|j| serde_json::from_str(j).ok())
}

/// True when the scopes ask for refresh tokens that outlive the session: `offline_access`
/// (OpenID Connect Core s11) or a resource server's offline scope.
pub fn is_offline(domain: &Domain, scopes: &[String]) -> bool {
    scopes.iter().any(|s| {
        s == "offline_access"
            || domain
                .resource_servers
                .iter()
                .any(|rs| rs.offline_scope.as_deref() == Some(s.as_str()))
    })
}

/// Whether a code exchange starts a refresh-token family for this client and these scopes.
pub fn wants_refresh(domain: &Domain, client: &Client, scopes: &[String]) -> bool {
    client.grant_types.contains("refresh_token")
        && (is_offline(domain, scopes) || client.refresh_tokens == RefreshPolicy::Always)
}

/// Issues the access token (and the ID token for `openid`) of a user grant.
pub async fn issue<S: OAuthStore>(ctx: &Ctx<'_, S>, g: &UserGrant<'_>) -> OAuthResult<UserTokens> {
    let stored = stored_user_claims(g.user);
    // RFC 8707 s2.2, RFC 9068 s3: with `resource`, the token is for those resource servers alone.
    let (token_scopes, to_issuer) = scopes::for_resources(ctx.domain, g.scopes, g.resources)?;
    let api: Vec<String> = token_scopes
        .iter()
        .filter(|s| ctx.domain.scope(s).is_some())
        .cloned()
        .collect();
    let mut audiences: Vec<String> = ctx
        .domain
        .resource_servers
        .iter()
        .filter(|rs| rs.scopes.iter().any(|x| api.contains(&x.name)))
        .map(|rs| rs.audience.clone())
        .collect();
    if audiences.is_empty() || to_issuer {
        // Only OpenID scopes, or asked for: the token is for this server's userinfo endpoint.
        audiences.push(ctx.domain.issuer.clone());
    }
    let mut extra = custom_claims(ctx.domain, &audiences, &api, Some(&stored));
    extra.insert("auth_time".into(), json!(g.auth_time));
    // OpenID Connect Core s5.5: claims asked for at userinfo travel with the token.
    if let Some(c) = g.claims.filter(|c| !c.userinfo.is_empty()) {
        extra.insert(USERINFO_CLAIMS.into(), json!(c.userinfo));
    }
    let access = issue_access_token(
        ctx,
        AccessTokenSpec {
            client: g.client,
            sub: g.user.id.clone(),
            scopes: token_scopes.clone(),
            audiences,
            extra,
            max_lifetime: Some(g.remaining),
        },
    )
    .await?;
    let id_token = if g.scopes.iter().any(|s| s == "openid") {
        let mut extra = Map::new();
        // Identity domains' get_groups scope: the groups in the ID token.
        if g.scopes.iter().any(|s| s == "get_groups")
            && let Some(groups) = stored.get("groups")
        {
            extra.insert("groups".into(), groups.clone());
        }
        // OpenID Connect Core s5.5: claims asked for in the ID token.
        if let Some(c) = g.claims {
            add_user_claims(&mut extra, g.user, &stored, &c.id_token);
        }
        Some(id_token::sign(
            ctx,
            IdTokenSpec {
                client: g.client,
                sub: &g.user.id,
                nonce: g.nonce,
                auth_time: g.auth_time,
                amr: serde_json::from_str(g.amr).unwrap_or_else(|_| json!(["pwd"])),
                sid: g.sid,
                access_token: Some(&access.value),
                extra,
            },
        )?)
    } else {
        None
    };
    Ok(UserTokens {
        access,
        id_token,
        scopes: token_scopes,
    })
}

/// Starts a refresh-token family for a code just redeemed. Offline families last the domain's
/// refresh_token_max_lifetime; the others end with their session (and never after it).
pub async fn start_family<S: OAuthStore>(
    ctx: &Ctx<'_, S>,
    g: &UserGrant<'_>,
    session_expires_at: i64,
) -> OAuthResult<FamilyRow> {
    let offline = is_offline(ctx.domain, g.scopes);
    let mut max = ctx.now + ctx.domain.refresh_token_max_lifetime;
    // A client with administrator roles keeps refresh tokens a week at most.
    if !g.client.admin_roles.is_empty() {
        max = max.min(ctx.now + crate::oauth::tokens::ADMIN_REFRESH_TOKEN_MAX);
    }
    let f = FamilyRow {
        id: random_id(),
        domain: ctx.domain.name.clone(),
        client_id: g.client.id.clone(),
        user_id: g.user.id.clone(),
        scope: g.scopes.join(" "),
        sid: g.sid.to_string(),
        offline: i64::from(offline),
        auth_time: g.auth_time,
        amr: g.amr.to_string(),
        claims: g.claims.and_then(|c| serde_json::to_string(c).ok()),
        created_at: ctx.now,
        expires_at: if offline { max } else { max.min(session_expires_at) },
        revoked_at: None,
    };
    ctx.store.insert_family(&f).await?;
    Ok(f)
}

/// Stores the first refresh token of `family` and records the access token issued with it
/// (revoked with the family). `value`: the token (random). Idle expiry restarts; the family's
/// absolute expiry is never passed.
pub async fn store_refresh_token<S: OAuthStore>(
    ctx: &Ctx<'_, S>,
    family: &FamilyRow,
    value: &str,
    access: &IssuedToken,
) -> OAuthResult<()> {
    record_family_jti(ctx, family, access).await?;
    ctx.store.insert_token(&refresh_row(ctx, family, value)).await?;
    Ok(())
}

/// On rotation: records the access token issued in `family`, then stores the successor `value`
/// (derived from its predecessor) while the family is unrevoked. False when nothing new was
/// stored: the family was revoked meanwhile, or this is a retry whose successor exists.
pub async fn store_successor<S: OAuthStore>(
    ctx: &Ctx<'_, S>,
    family: &FamilyRow,
    value: &str,
    access: &IssuedToken,
) -> OAuthResult<bool> {
    record_family_jti(ctx, family, access).await?;
    Ok(ctx
        .store
        .insert_successor(&refresh_row(ctx, family, value))
        .await?)
}

async fn record_family_jti<S: OAuthStore>(
    ctx: &Ctx<'_, S>,
    family: &FamilyRow,
    access: &IssuedToken,
) -> OAuthResult<()> {
    ctx.store
        .add_family_jti(
            &ctx.domain.name,
            &family.id,
            &access.jti,
            ctx.now + access.expires_in,
        )
        .await?;
    Ok(())
}

fn refresh_row<S>(ctx: &Ctx<'_, S>, family: &FamilyRow, value: &str) -> TokenRow {
    // RFC 8705 s4: a public client's refresh token issued over mutual TLS is bound to the
    // client certificate.
    let mut bound = Map::new();
    let public = ctx
        .domain
        .client(&family.client_id)
        .is_some_and(|c| !c.is_confidential());
    if public && let Some(certificate) = &ctx.peer.certificate {
        bound.insert(mtls::CNF.into(), mtls::confirmation(certificate));
    }
    // Like an opaque access token's, its jti is its key (see `issue_access_token`).
    let hash = stored_key(value);
    TokenRow {
        jti: hash.clone(),
        hash,
        domain: ctx.domain.name.clone(),
        kind: "refresh".into(),
        client_id: family.client_id.clone(),
        sub: family.user_id.clone(),
        scope: family.scope.clone(),
        aud: "[]".into(),
        claims: Value::Object(bound).to_string(),
        issued_at: ctx.now,
        expires_at: (ctx.now + ctx.domain.refresh_token_idle_lifetime).min(family.expires_at),
        revoked_at: None,
        family_id: Some(family.id.clone()),
        used_at: None,
    }
}

/// The successor of a rotated refresh token: derived, so that a retry within the client's grace
/// window gets the same one without the server storing any token.
pub fn successor<S>(ctx: &Ctx<'_, S>, previous: &str) -> String {
    ctx.kek.derive_token("refresh-rotation", previous)
}

/// Revokes a family and the access tokens issued in it (JWTs by jti, for as long as any of
/// them can live).
pub async fn revoke_family<S: OAuthStore>(
    ctx: &Ctx<'_, S>,
    family_id: &str,
    client_id: &str,
) -> OAuthResult<()> {
    revoke_family_in(ctx.store, ctx.domain, family_id, client_id, ctx.now).await
}

/// RFC 6749 s4.1.2: on the reuse of a code (authorization or device code), revokes the tokens
/// issued from it: the access token (`access`: its jti and expiry; a JWT by its jti, an opaque
/// token by its row) and the refresh-token family it started.
pub async fn revoke_issued<S: OAuthStore>(
    ctx: &Ctx<'_, S>,
    client_id: &str,
    access: Option<(&str, i64)>,
    family_id: Option<&str>,
) -> OAuthResult<()> {
    if let Some((jti, expires_at)) = access {
        ctx.store
            .revoke_jti(&ctx.domain.name, jti, client_id, expires_at)
            .await?;
        ctx.store
            .revoke_tokens_by_jti(&ctx.domain.name, jti, ctx.now)
            .await?;
    }
    if let Some(family) = family_id {
        revoke_family(ctx, family, client_id).await?;
    }
    Ok(())
}

/// What a code's redemption issued dies with the sign-in that approved it, and with the consent
/// behind it (for a client that asks for consent): asked last, once all of it is recorded (the
/// access token on the code, the family and its refresh token). A sign-out that ended session
/// `sid`, or a withdrawal that deleted the consent, before this read is seen here, and then what
/// was issued is revoked and the redemption refused; one after finds the records and revokes
/// them itself (each reads them after its own write).
pub async fn refuse_if_withdrawn<S: OAuthStore>(
    ctx: &Ctx<'_, S>,
    client: &Client,
    g: &UserGrant<'_>,
    access: (&str, i64),
    family_id: Option<&str>,
) -> OAuthResult<()> {
    let standing = ctx
        .store
        .grant_standing(&ctx.domain.name, g.sid, &g.user.id, &client.id)
        .await?;
    let withdrawn = client.consent == ConsentPolicy::Required
        && !consent_covers(standing.consent.as_deref(), g.scopes.iter().map(String::as_str));
    if !standing.session_ended && !withdrawn {
        return Ok(());
    }
    revoke_issued(ctx, &client.id, Some(access), family_id).await?;
    Err(if standing.session_ended {
        OAuthError::invalid_grant("the sign-in that approved this grant has ended")
            .with_cause("the session ended during the redemption: what it issued is revoked")
    } else {
        OAuthError::invalid_grant("the consent that approved this grant has been withdrawn")
            .with_cause("the consent was withdrawn during the redemption: what it issued is revoked")
    })
}

/// [`revoke_family`] outside a request's context (sign-out, the account page).
pub async fn revoke_family_in<S: OAuthStore>(
    store: &S,
    domain: &Domain,
    family_id: &str,
    client_id: &str,
    now: i64,
) -> OAuthResult<()> {
    // The access tokens issued so far first, then the family, then those issued meanwhile: a
    // failure before the family is marked revoked leaves it to be found and revoked again (the
    // callers look for families not revoked yet), with nothing of it left alive; marked first,
    // a failure left its access tokens valid and the retry skipped it.
    let until = now + domain.max_token_lifetime();
    let revoke = |jti: String| async move {
        store.revoke_jti(&domain.name, &jti, client_id, until).await?;
        store.revoke_tokens_by_jti(&domain.name, &jti, now).await
    };
    let before = store.family_jtis(&domain.name, family_id).await?;
    for jti in &before {
        revoke(jti.clone()).await?;
    }
    for jti in store.revoke_family(&domain.name, family_id, now).await? {
        if !before.contains(&jti) {
            revoke(jti).await?;
        }
    }
    Ok(())
}

/// The error of every refresh token that cannot be used, whatever the reason (logged as cause).
pub fn invalid_refresh() -> OAuthError {
    OAuthError::invalid_grant("the refresh token is invalid, expired or revoked")
}
