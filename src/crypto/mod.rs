//! Cryptography: signing keys and JWS, the key-encryption key, secrets and password hashing.
//! Everything runs on aws-lc-rs key objects parsed once.

pub mod jws;
pub mod kek;
pub mod keys;
pub mod secrets;

/// A cryptographic failure; never carries key material.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The input (a key, token or hash) is not acceptable.
    #[error("invalid: {0}")]
    Invalid(&'static str),
    /// The crypto library or the system failed.
    #[error("crypto failure: {0}")]
    Internal(String),
}
