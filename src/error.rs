//! One error type for every protocol failure: the RFC error code, a safe public description, and a
//! private cause that is logged once (with the request id) and never sent.

use std::borrow::Cow;
use std::fmt;

use crate::store::StoreError;

/// The error codes of RFC 6749 s5.2, RFC 6750 s3.1, RFC 7009 s2.2.1, RFC 8707 s2, RFC 8628 s3.5,
/// OpenID Connect Core s3.1.2.6 and OpenID Connect Core Error Code unmet_authentication_requirements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    InvalidScope,
    InvalidTarget,
    UnsupportedTokenType,
    InvalidToken,
    InsufficientScope,
    AccessDenied,
    UnsupportedResponseType,
    LoginRequired,
    ConsentRequired,
    UnmetAuthenticationRequirements,
    RequestNotSupported,
    RequestUriNotSupported,
    AuthorizationPending,
    SlowDown,
    ExpiredToken,
    NotFound,
    Forbidden,
    Conflict,
    MethodNotAllowed,
    PayloadTooLarge,
    RequestTimeout,
    ServerError,
    TemporarilyUnavailable,
}

impl ErrorCode {
    /// The wire value of the code.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidClient => "invalid_client",
            ErrorCode::InvalidGrant => "invalid_grant",
            ErrorCode::UnauthorizedClient => "unauthorized_client",
            ErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            ErrorCode::InvalidScope => "invalid_scope",
            ErrorCode::InvalidTarget => "invalid_target",
            ErrorCode::UnsupportedTokenType => "unsupported_token_type",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::InsufficientScope => "insufficient_scope",
            ErrorCode::AccessDenied => "access_denied",
            ErrorCode::UnsupportedResponseType => "unsupported_response_type",
            ErrorCode::LoginRequired => "login_required",
            ErrorCode::ConsentRequired => "consent_required",
            ErrorCode::UnmetAuthenticationRequirements => "unmet_authentication_requirements",
            ErrorCode::RequestNotSupported => "request_not_supported",
            ErrorCode::RequestUriNotSupported => "request_uri_not_supported",
            ErrorCode::AuthorizationPending => "authorization_pending",
            ErrorCode::SlowDown => "slow_down",
            ErrorCode::ExpiredToken => "expired_token",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::Conflict => "conflict",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::RequestTimeout => "request_timeout",
            ErrorCode::ServerError => "server_error",
            ErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
        }
    }

    /// The HTTP status the code is answered with.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::InvalidClient | ErrorCode::InvalidToken => 401,
            ErrorCode::InsufficientScope | ErrorCode::AccessDenied | ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::Conflict => 409,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::RequestTimeout => 408,
            ErrorCode::ServerError => 500,
            ErrorCode::TemporarilyUnavailable => 503,
            _ => 400,
        }
    }
}

/// A protocol error: code, public description, and a private cause for the log.
#[derive(Debug, Clone)]
pub struct OAuthError {
    /// The RFC error code.
    pub code: ErrorCode,
    /// Text safe to show the client: no secrets, SQL or traces.
    pub description: Cow<'static, str>,
    /// The private cause; logged once, never sent.
    pub cause: Option<String>,
}

/// Result alias for protocol operations.
pub type OAuthResult<T> = Result<T, OAuthError>;

impl OAuthError {
    /// An error with a code and a public description.
    /// The description is kept to the characters RFC 6749 s5.2 allows in `error_description`
    /// (printable ASCII but `"` and `\`): a client's value quoted in it cannot break that rule.
    pub fn new(code: ErrorCode, description: impl Into<Cow<'static, str>>) -> Self {
        OAuthError {
            code,
            description: description_text(description.into()),
            cause: None,
        }
    }

    /// Attaches the private cause (logged, never sent).
    pub fn with_cause(mut self, cause: impl fmt::Display) -> Self {
        self.cause = Some(cause.to_string());
        self
    }

    /// RFC 6749 s5.2 `invalid_request`.
    pub fn invalid_request(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidRequest, d)
    }
    /// RFC 6749 s5.2 `invalid_client`.
    pub fn invalid_client(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidClient, d)
    }
    /// RFC 6749 s5.2 `invalid_grant`.
    pub fn invalid_grant(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidGrant, d)
    }
    /// RFC 6749 s5.2 `unauthorized_client`.
    pub fn unauthorized_client(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::UnauthorizedClient, d)
    }
    /// RFC 6749 s5.2 `unsupported_grant_type`.
    pub fn unsupported_grant_type(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::UnsupportedGrantType, d)
    }
    /// RFC 6749 s5.2 `invalid_scope`.
    pub fn invalid_scope(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidScope, d)
    }
    /// RFC 8707 s2 `invalid_target`.
    pub fn invalid_target(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidTarget, d)
    }
    /// RFC 6750 s3.1 `invalid_token`.
    pub fn invalid_token(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidToken, d)
    }
    /// A server fault; the cause is logged and the client sees a generic text.
    pub fn server_error(cause: impl fmt::Display) -> Self {
        Self::new(
            ErrorCode::ServerError,
            "the server could not complete the request",
        )
        .with_cause(cause)
    }
    /// The store is unreachable; the client may retry.
    pub fn unavailable(cause: impl fmt::Display) -> Self {
        Self::new(
            ErrorCode::TemporarilyUnavailable,
            "the service is temporarily unavailable, try again later",
        )
        .with_cause(cause)
    }
}

/// RFC 6749 s5.2 and s4.1.2.1: `error_description` holds only %x20-21 / %x23-5B / %x5D-7E. A
/// double quote becomes a single one, a backslash a slash, anything else outside the set `?`.
fn description_text(d: Cow<'static, str>) -> Cow<'static, str> {
    let allowed = |c: char| matches!(c, '\x20'..='\x21' | '\x23'..='\x5b' | '\x5d'..='\x7e');
    if d.chars().all(allowed) {
        return d;
    }
    Cow::Owned(
        d.chars()
            .map(|c| match c {
                '"' => '\'',
                '\\' => '/',
                c if allowed(c) => c,
                _ => '?',
            })
            .collect(),
    )
}

impl fmt::Display for OAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.description)
    }
}

impl std::error::Error for OAuthError {}

impl From<StoreError> for OAuthError {
    fn from(e: StoreError) -> Self {
        if let StoreError::Unstorable(_) = e {
            return OAuthError::invalid_request("the request holds a value that cannot be stored")
                .with_cause(e);
        }
        metrics::counter!("ostiary_store_errors_total").increment(1);
        match e {
            StoreError::Unavailable(_) => OAuthError::unavailable(e),
            _ => OAuthError::server_error(e),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_hold_only_the_characters_rfc_6749_allows() {
        let plain = OAuthError::invalid_request("the parameter scope is missing");
        assert!(matches!(plain.description, Cow::Borrowed(_)));
        let value = "a\\b\u{0}é\n";
        let quoted = OAuthError::unsupported_grant_type(format!("grant_type \"{value}\" is not supported"));
        assert_eq!(quoted.description, "grant_type 'a/b???' is not supported");
        let allowed = |c: char| matches!(c, '\x20'..='\x21' | '\x23'..='\x5b' | '\x5d'..='\x7e');
        assert!(quoted.description.chars().all(allowed));
    }
}
