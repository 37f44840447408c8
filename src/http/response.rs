//! Turning protocol results into HTTP responses; errors are logged here, once.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;

use crate::error::{ErrorCode, OAuthError};

/// A JSON body that must not be cached (RFC 6749 s5.1), serialized straight from `body`.
pub fn json_no_store<T: Serialize + ?Sized>(status: StatusCode, body: &T) -> Response {
    no_store((status, axum::Json(body)).into_response())
}

/// `resp` with `Cache-Control: no-store` and `Pragma: no-cache` (RFC 6749 s5.1).
pub fn no_store(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

/// The RFC 6749 s5.2 error response; logs the private cause once. `realm` names the issuer in
/// the `WWW-Authenticate: Basic` challenge of every 401 `invalid_client`: RFC 6749 s5.2 asks for
/// it when the client used Basic, and RFC 9110 s15.5.2 for every 401.
pub fn error_response(err: &OAuthError, realm: &str) -> Response {
    let status = StatusCode::from_u16(err.code.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let cause = err.cause.as_deref().unwrap_or("");
    if status.is_server_error() {
        tracing::error!(
            error.code = err.code.as_str(),
            error.cause = cause,
            "request failed"
        );
    } else {
        tracing::info!(error.code = err.code.as_str(), error.description = %err.description, error.cause = cause, "request refused");
    }
    if status.is_server_error() {
        metrics::counter!("ostiary_errors_total", "code" => err.code.as_str()).increment(1);
    }
    let body = json!({ "error": err.code.as_str(), "error_description": err.description });
    let mut resp = json_no_store(status, &body);
    if err.code == ErrorCode::InvalidClient {
        let challenge = format!("Basic realm=\"{}\"", realm.replace('"', ""));
        if let Ok(v) = HeaderValue::from_str(&challenge) {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
    }
    if err.code == ErrorCode::TemporarilyUnavailable {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    }
    resp
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        error_response(&self, "ostiary")
    }
}

/// A request body read whole, at most `app.max_body_bytes`: 413 beyond, 400 when it cannot be
/// read (a malformed chunked encoding, say), never the one for the other; 408 when it has not
/// all come within `app.body_read_timeout`.
pub async fn read_body(
    body: axum::body::Body,
    app: &crate::app::App,
) -> Result<axum::body::Bytes, OAuthError> {
    let read = axum::body::to_bytes(body, app.max_body_bytes);
    let Ok(read) = tokio::time::timeout(app.body_read_timeout, read).await else {
        return Err(OAuthError::new(
            ErrorCode::RequestTimeout,
            "the request body did not arrive in time",
        ));
    };
    read.map_err(|e| {
        let too_large =
            std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if too_large {
            OAuthError::new(ErrorCode::PayloadTooLarge, "the request body is too large")
        } else {
            OAuthError::invalid_request("the request body could not be read").with_cause(e)
        }
    })
}
