//! `POST /oauth2/v1/revoke` (RFC 7009).

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::extract::{ClientForm, CurrentDomain};
use super::response::error_response;
use crate::app::AppState;
use crate::audit::{self, AuditEvent, Outcome};
use crate::oauth::Peer;
use crate::oauth::revocation::revoke;

/// Handles a revocation request; 200 with an empty body when done or when the token is unknown.
pub async fn post_revoke(
    State(app): State<AppState>,
    cur: CurrentDomain,
    peer: Peer,
    form: ClientForm,
) -> Response {
    let result = async {
        // RFC 7009 s2.1: public clients may revoke their own tokens.
        let keys = cur.keys_for(&app, form.params.get("token")).await;
        let ctx = cur.ctx(&app, &keys, peer);
        let caller = app
            .authenticator
            .authenticate(&ctx, &form.presented, true)
            .await?;
        let token = form.params.require("token")?;
        revoke(&ctx, &caller, token).await?;
        let event = AuditEvent::new("token.revoked", &cur.domain.name, Outcome::Success)
            .by_client(&caller.id)
            .client(&caller.id)
            .request(&ctx.peer.request_id)
            .details(serde_json::json!({"token_type_hint": form.params.get("token_type_hint")}));
        audit::record(&app.store, ctx.now, event).await;
        Ok(())
    }
    .await;
    match result {
        Ok(()) => {
            let mut resp = StatusCode::OK.into_response();
            resp.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            resp
        }
        Err(e) => error_response(&e, &cur.domain.issuer),
    }
}
