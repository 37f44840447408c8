//! `POST /oauth2/v1/device` (RFC 8628 s3.1): the device authorization endpoint. The client is
//! authenticated as at the token endpoint (public clients included).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use super::extract::{ClientForm, CurrentDomain};
use super::response::{error_response, json_no_store};
use crate::app::AppState;
use crate::error::OAuthResult;
use crate::oauth::Peer;
use crate::oauth::device::{self, DeviceAuthorizationResponse};

/// Handles a device authorization request: the codes, or an RFC 6749 s5.2 error.
pub async fn post_device_authorization(
    State(app): State<AppState>,
    cur: CurrentDomain,
    peer: Peer,
    form: ClientForm,
) -> Response {
    match device_authorization(&app, &cur, peer, &form).await {
        // RFC 8628 s3.2: a JSON body, not cached (it holds the device code).
        Ok(resp) => json_no_store(StatusCode::OK, &resp),
        Err(e) => error_response(&e, &cur.domain.issuer),
    }
}

async fn device_authorization(
    app: &AppState,
    cur: &CurrentDomain,
    peer: Peer,
    form: &ClientForm,
) -> OAuthResult<DeviceAuthorizationResponse> {
    let keys = cur.ring.current();
    let ctx = cur.ctx(app, &keys, peer);
    // RFC 8628 s3.1: client authentication as at the token endpoint; public clients send client_id.
    let client = app
        .authenticator
        .authenticate(&ctx, &form.presented, true)
        .await?;
    device::authorize(&ctx, &client, &form.params).await
}
