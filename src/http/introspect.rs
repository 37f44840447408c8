//! `POST /oauth2/v1/introspect` (RFC 7662).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use super::extract::{ClientForm, CurrentDomain};
use super::response::{error_response, json_no_store};
use crate::app::AppState;
use crate::oauth::Peer;
use crate::oauth::introspection::introspect;

/// Handles an introspection request from an authenticated (confidential) client.
pub async fn post_introspect(
    State(app): State<AppState>,
    cur: CurrentDomain,
    peer: Peer,
    form: ClientForm,
) -> Response {
    let result = async {
        // RFC 7662 s2.1: the endpoint requires authorization; public clients cannot give it.
        let keys = cur.keys_for(&app, form.params.get("token")).await;
        let ctx = cur.ctx(&app, &keys, peer);
        let caller = app
            .authenticator
            .authenticate(&ctx, &form.presented, false)
            .await?;
        let token = form.params.require("token")?;
        introspect(&ctx, &caller, token).await
    }
    .await;
    match result {
        Ok(body) => json_no_store(StatusCode::OK, &body),
        Err(e) => error_response(&e, &cur.domain.issuer),
    }
}
