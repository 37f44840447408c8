//! RFC 7636 Proof Key for Code Exchange.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use sha2::{Digest, Sha256};

use crate::crypto::secrets::ct_eq;

/// RFC 7636 s4.1/s4.2: 43 to 128 characters of [A-Z] / [a-z] / [0-9] / "-" / "." / "_" / "~".
pub fn is_valid_verifier_or_challenge(s: &str) -> bool {
    (43..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// RFC 7636 s4.2: an S256 challenge is BASE64URL(SHA256(verifier)) without padding, so exactly
/// 43 characters of the base64url alphabet; a plain challenge is a verifier.
pub fn is_valid_challenge(method: &str, challenge: &str) -> bool {
    match method {
        "S256" => {
            challenge.len() == 43
                && challenge
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
        }
        "plain" => is_valid_verifier_or_challenge(challenge),
        _ => false,
    }
}

/// RFC 7636 s4.6: S256 compares BASE64URL(SHA256(verifier)) with the challenge; plain compares
/// them directly. Constant time.
pub fn verify(method: &str, challenge: &str, verifier: &str) -> bool {
    if !is_valid_verifier_or_challenge(verifier) {
        return false;
    }
    match method {
        "S256" => ct_eq(
            B64.encode(Sha256::digest(verifier.as_bytes())).as_bytes(),
            challenge.as_bytes(),
        ),
        "plain" => ct_eq(verifier.as_bytes(), challenge.as_bytes()),
        _ => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn rfc7636_appendix_b_vector() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(verify("S256", challenge, verifier));
        assert!(!verify(
            "S256",
            challenge,
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXl"
        ));
        assert!(!verify("plain", challenge, verifier));
        assert!(verify("plain", verifier, verifier));
        assert!(!verify("S256", challenge, "short"));
        assert!(!verify("other", challenge, verifier));
    }

    #[test]
    fn challenge_form_follows_the_method() {
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(is_valid_challenge("S256", challenge));
        assert!(!is_valid_challenge("S256", &format!("{challenge}A")));
        assert!(!is_valid_challenge("S256", &challenge[..42]));
        assert!(!is_valid_challenge(
            "S256",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw.cM"
        ));
        assert!(!is_valid_challenge(
            "S256",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw=cM"
        ));
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk.~";
        assert!(is_valid_challenge("plain", verifier));
        assert!(!is_valid_challenge("plain", "short"));
        assert!(!is_valid_challenge("other", challenge));
    }
}
