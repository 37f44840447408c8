//! `POST /oauth2/v1/token` (RFC 6749 s3.2): authenticate the client once, select the grant,
//! check the client may use it, run it.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use super::extract::{ClientForm, CurrentDomain};
use super::response::{error_response, json_no_store};
use crate::app::AppState;
use crate::audit::{AuditEvent, Outcome};
use crate::error::{ErrorCode, OAuthResult};
use crate::oauth::Peer;
use crate::oauth::grants::TokenResponse;

/// Handles a token request.
pub async fn post_token(
    State(app): State<AppState>,
    cur: CurrentDomain,
    peer: Peer,
    form: ClientForm,
) -> Response {
    match token(&app, &cur, peer, &form).await {
        Ok(resp) => json_no_store(StatusCode::OK, &resp),
        Err(e) => {
            let mut resp = error_response(&e, &cur.domain.issuer);
            // RFC 6749 s5.2 (and RFC 8628 s3.5): access_denied here is a 400 like the other
            // token errors, not the 403 of a page.
            if e.code == ErrorCode::AccessDenied {
                *resp.status_mut() = StatusCode::BAD_REQUEST;
            }
            resp
        }
    }
}

async fn token(
    app: &AppState,
    cur: &CurrentDomain,
    peer: Peer,
    form: &ClientForm,
) -> OAuthResult<TokenResponse> {
    let grant_type = form.params.require("grant_type")?;
    let keys = cur.ring.current();
    let ctx = cur.ctx(app, &keys, peer);
    let client = app
        .authenticator
        .authenticate(&ctx, &form.presented, true)
        .await?;
    let grant = app.grants.select(grant_type, &client)?;
    // RFC 8707 s2: a resource this server does not know is refused before a grant uses anything
    // up (a code, a device code, a refresh token's rotation).
    crate::oauth::scopes::resource_targets(&cur.domain, form.params.all("resource"))?;
    let resp = grant.handle(&ctx, &client, &form.params).await?;
    let mut event = AuditEvent::new("token.issued", &cur.domain.name, Outcome::Success)
        .by_client(&client.id)
        .client(&client.id)
        .request(&ctx.peer.request_id)
        .details(serde_json::json!({
            "grant_type": grant_type,
            "scope": resp.scope,
            "expires_in": resp.expires_in,
            "refresh_token": resp.refresh_token.is_some(),
            "id_token": resp.id_token.is_some(),
        }));
    if let Some(user_id) = &resp.user_id {
        event = event.user(user_id);
    }
    app.audit_queue.record(ctx.now, event).await;
    Ok(resp)
}
