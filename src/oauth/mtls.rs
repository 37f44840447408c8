//! Mutual-TLS client authentication and certificate-bound access tokens (RFC 8705).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use sha2::{Digest, Sha256};

use crate::domain::Client;
use crate::error::{OAuthError, OAuthResult};

/// A client certificate presented on the connection (or by the trusted proxy).
#[derive(Debug, Clone)]
pub struct ClientCertificate {
    /// The end-entity certificate, DER.
    pub der: Vec<u8>,
    /// True when it chains to one of the configured client CAs (tls_client_auth).
    pub trusted: bool,
}

impl ClientCertificate {
    /// RFC 8705 s3.1: base64url SHA-256 of the DER certificate (`x5t#S256`).
    pub fn thumbprint(&self) -> String {
        B64.encode(Sha256::digest(&self.der))
    }
}

/// Authenticates a tls_client_auth or self_signed_tls_client_auth client by its certificate.
/// `keys`: the client's JWKs (self_signed_tls_client_auth).
pub fn authenticate(
    client: &Client,
    certificate: Option<&ClientCertificate>,
    keys: &[serde_json::Value],
) -> OAuthResult<()> {
    let _ = (client, certificate, keys);
    Err(OAuthError::invalid_client(
        "mutual-TLS client authentication is not available",
    ))
}
