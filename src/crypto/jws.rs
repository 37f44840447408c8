//! Compact JWS (RFC 7515) for JWTs: signing with our keys, verification with a given key.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Map, Value, json};

use super::CryptoError;
use super::keys::{SigningAlg, SigningKey, VerifyingKey};

/// The protected header fields we read.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Header {
    /// Algorithm.
    pub alg: String,
    /// Key id.
    #[serde(default)]
    pub kid: Option<String>,
    /// Media type of the token (`at+jwt`, `JWT`, ...).
    #[serde(default)]
    pub typ: Option<String>,
}

/// Signs `claims` as a compact JWS with the header `{"alg","typ","kid"}`.
pub fn sign(key: &SigningKey, typ: &str, claims: &impl serde::Serialize) -> Result<String, CryptoError> {
    let header = json!({ "alg": key.alg().as_str(), "typ": typ, "kid": key.kid() });
    let header = serde_json::to_vec(&header).map_err(|e| CryptoError::Internal(e.to_string()))?;
    let payload = serde_json::to_vec(claims).map_err(|e| CryptoError::Internal(e.to_string()))?;
    let mut out = String::with_capacity((header.len() + payload.len()) * 4 / 3 + 400);
    B64.encode_string(&header, &mut out);
    out.push('.');
    B64.encode_string(&payload, &mut out);
    let sig = key.sign(out.as_bytes())?;
    out.push('.');
    B64.encode_string(&sig, &mut out);
    Ok(out)
}

fn split(token: &str) -> Result<(&str, &str, &str), CryptoError> {
    let mut parts = token.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(p), Some(s), None) if !h.is_empty() && !p.is_empty() => Ok((h, p, s)),
        _ => Err(CryptoError::Invalid("not a compact JWS")),
    }
}

/// Reads the protected header without verifying anything.
pub fn peek_header(token: &str) -> Result<Header, CryptoError> {
    let (h, _, _) = split(token)?;
    let raw = B64
        .decode(h)
        .map_err(|_| CryptoError::Invalid("JWS header is not base64url"))?;
    serde_json::from_slice(&raw).map_err(|_| CryptoError::Invalid("JWS header is not a JSON object"))
}

/// The protected header of a JWS about to be verified.
fn header_to_verify(token: &str) -> Result<Header, CryptoError> {
    let (h, _, _) = split(token)?;
    let raw = B64
        .decode(h)
        .map_err(|_| CryptoError::Invalid("JWS header is not base64url"))?;
    let fields: Map<String, Value> =
        serde_json::from_slice(&raw).map_err(|_| CryptoError::Invalid("JWS header is not a JSON object"))?;
    // RFC 7515 s4.1.11: a JWS whose crit lists an extension not understood is invalid; we
    // understand none.
    if fields.contains_key("crit") {
        return Err(CryptoError::Invalid(
            "JWS header has crit: no extension is understood",
        ));
    }
    serde_json::from_value(Value::Object(fields))
        .map_err(|_| CryptoError::Invalid("JWS header is not a JSON object"))
}

/// Verifies the signature with `key` and returns the claims. The header's `alg` must be the
/// key's algorithm, so `none`, HS256 and any algorithm substitution are refused. Time, issuer
/// and audience are the caller's to check.
pub fn verify(token: &str, key: &VerifyingKey) -> Result<Map<String, Value>, CryptoError> {
    let (h, p, s) = split(token)?;
    let header = header_to_verify(token)?;
    if header.alg != key.alg().as_str() {
        return Err(CryptoError::Invalid("JWS alg does not match the key"));
    }
    let sig = B64
        .decode(s)
        .map_err(|_| CryptoError::Invalid("JWS signature is not base64url"))?;
    let signed_len = h.len() + 1 + p.len();
    let signed = token
        .get(..signed_len)
        .ok_or(CryptoError::Invalid("not a compact JWS"))?;
    if !key.verify(signed.as_bytes(), &sig) {
        return Err(CryptoError::Invalid("JWS signature does not verify"));
    }
    payload(p)
}

/// The claims of `jwt` when one of the public JWKs `keys` (the one named `kid`, when the header
/// names one) verifies it with `alg`; keys of another type, algorithm or use never do.
pub fn verify_with_jwks(
    jwt: &str,
    keys: &[Value],
    alg: SigningAlg,
    kid: Option<&str>,
) -> Option<Map<String, Value>> {
    keys.iter()
        .filter(|k| kid.is_none() || k.get("kid").and_then(Value::as_str) == kid)
        .filter_map(|k| VerifyingKey::from_jwk_as(k, Some(alg)).ok())
        .find_map(|k| verify(jwt, &k).ok())
}

/// HMAC algorithms of client_secret_jwt (OpenID Connect Core s9).
pub const HMAC_ALGS: [&str; 3] = ["HS256", "HS384", "HS512"];

/// RFC 7518 s3.2: the fewest bytes of an HMAC key for `alg`, the size of its hash's output (a
/// key of that size or larger MUST be used).
pub fn hmac_key_bytes(alg: &str) -> usize {
    match alg {
        "HS384" => 48,
        "HS512" => 64,
        _ => 32,
    }
}

/// Verifies an HMAC JWS (`alg` one of [`HMAC_ALGS`], and the header's) keyed by `secret`, and
/// returns the claims; a secret shorter than the algorithm's hash verifies nothing.
pub fn verify_hmac(token: &str, alg: &str, secret: &[u8]) -> Result<Map<String, Value>, CryptoError> {
    use aws_lc_rs::hmac;
    let (h, p, s) = split(token)?;
    let header = header_to_verify(token)?;
    if header.alg != alg {
        return Err(CryptoError::Invalid("JWS alg is not the expected one"));
    }
    let algorithm = match alg {
        "HS256" => hmac::HMAC_SHA256,
        "HS384" => hmac::HMAC_SHA384,
        "HS512" => hmac::HMAC_SHA512,
        _ => return Err(CryptoError::Invalid("not an HMAC algorithm")),
    };
    if secret.len() < hmac_key_bytes(alg) {
        return Err(CryptoError::Invalid(
            "the secret is shorter than the algorithm's hash (RFC 7518 s3.2)",
        ));
    }
    let sig = B64
        .decode(s)
        .map_err(|_| CryptoError::Invalid("JWS signature is not base64url"))?;
    let signed = token
        .get(..h.len() + 1 + p.len())
        .ok_or(CryptoError::Invalid("not a compact JWS"))?;
    // Constant-time comparison inside hmac::verify.
    hmac::verify(&hmac::Key::new(algorithm, secret), signed.as_bytes(), &sig)
        .map_err(|_| CryptoError::Invalid("JWS signature does not verify"))?;
    payload(p)
}

fn payload(p: &str) -> Result<Map<String, Value>, CryptoError> {
    let payload = B64
        .decode(p)
        .map_err(|_| CryptoError::Invalid("JWS payload is not base64url"))?;
    match serde_json::from_slice(&payload) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(CryptoError::Invalid("JWS payload is not a JSON object")),
    }
}

/// Reads the claims without verifying anything (to learn which client or issuer to check
/// against; never trusted before verification).
pub fn peek_claims(token: &str) -> Result<Map<String, Value>, CryptoError> {
    let (_, p, _) = split(token)?;
    payload(p)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn claims() -> Value {
        json!({ "iss": "https://issuer.example", "sub": "s", "aud": "a", "exp": 4_000_000_000i64, "iat": 1 })
    }

    #[test]
    fn round_trip_every_alg_and_jwk() {
        for alg in SigningAlg::ALL {
            let (key, der) = SigningKey::generate(alg, format!("k-{}", alg.as_str())).unwrap();
            let token = sign(&key, "at+jwt", &claims()).unwrap();
            let h = peek_header(&token).unwrap();
            assert_eq!(
                (h.alg.as_str(), h.kid.as_deref(), h.typ.as_deref()),
                (alg.as_str(), Some(key.kid()), Some("at+jwt"))
            );
            let from_jwk = VerifyingKey::from_jwk(key.public_jwk()).unwrap();
            assert_eq!(verify(&token, &from_jwk).unwrap()["sub"], "s");
            // Reparsed from PKCS#8, the same key verifies.
            let again = SigningKey::from_pkcs8(alg, key.kid().into(), &der).unwrap();
            assert_eq!(again.public_jwk(), key.public_jwk());
            assert!(verify(&sign(&again, "JWT", &claims()).unwrap(), &from_jwk).is_ok());
        }
    }

    #[test]
    fn jsonwebtoken_accepts_our_tokens() {
        use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
        for (alg, jalg) in [
            (SigningAlg::RS256, Algorithm::RS256),
            (SigningAlg::PS256, Algorithm::PS256),
            (SigningAlg::ES256, Algorithm::ES256),
        ] {
            let (key, _) = SigningKey::generate(alg, "k".into()).unwrap();
            let token = sign(&key, "at+jwt", &claims()).unwrap();
            let jwk = key.public_jwk();
            let dk = match alg {
                SigningAlg::ES256 => {
                    DecodingKey::from_ec_components(jwk["x"].as_str().unwrap(), jwk["y"].as_str().unwrap())
                        .unwrap()
                }
                _ => DecodingKey::from_rsa_components(jwk["n"].as_str().unwrap(), jwk["e"].as_str().unwrap())
                    .unwrap(),
            };
            let mut v = Validation::new(jalg);
            v.set_audience(&["a"]);
            let data = decode::<Value>(&token, &dk, &v).unwrap();
            assert_eq!(data.claims["iss"], "https://issuer.example");
        }
    }

    #[test]
    fn refuses_tampering_none_hs256_and_alg_swap() {
        let (key, _) = SigningKey::generate(SigningAlg::RS256, "k".into()).unwrap();
        let vk = key.verifying_key();
        let token = sign(&key, "at+jwt", &claims()).unwrap();
        let (h, p, s) = split(&token).unwrap();
        let other = B64.encode(serde_json::to_vec(&json!({"sub": "evil"})).unwrap());
        assert!(verify(&format!("{h}.{other}.{s}"), &vk).is_err());
        let none = B64.encode(br#"{"alg":"none","kid":"k"}"#);
        assert!(verify(&format!("{none}.{p}."), &vk).is_err());
        let hs = B64.encode(br#"{"alg":"HS256","kid":"k"}"#);
        assert!(verify(&format!("{hs}.{p}.{s}"), &vk).is_err());
        let ps = B64.encode(br#"{"alg":"PS256","kid":"k"}"#);
        assert!(verify(&format!("{ps}.{p}.{s}"), &vk).is_err());
        assert!(verify("a.b", &vk).is_err());
        assert!(verify("a.b.c.d", &vk).is_err());
    }

    /// `header` (a JSON object) and `claims` signed with `key`.
    fn sign_with_header(key: &SigningKey, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            B64.encode(serde_json::to_vec(header).unwrap()),
            B64.encode(serde_json::to_vec(claims).unwrap())
        );
        format!("{input}.{}", B64.encode(key.sign(input.as_bytes()).unwrap()))
    }

    #[test]
    fn crit_is_refused_by_every_verification() {
        let (key, _) = SigningKey::generate(SigningAlg::ES256, "k".into()).unwrap();
        let vk = key.verifying_key();
        let plain = json!({"alg": "ES256", "kid": "k"});
        assert!(verify(&sign_with_header(&key, &plain, &claims()), &vk).is_ok());
        for crit in [json!(["x-unknown"]), json!([]), json!(null)] {
            let header = json!({"alg": "ES256", "kid": "k", "crit": crit, "x-unknown": 1});
            let token = sign_with_header(&key, &header, &claims());
            assert!(verify(&token, &vk).is_err(), "{crit}");
            assert!(
                verify_with_jwks(&token, &[key.public_jwk().clone()], SigningAlg::ES256, Some("k")).is_none(),
                "{crit}"
            );
        }
        use aws_lc_rs::hmac;
        let input = format!(
            "{}.{}",
            B64.encode(br#"{"alg":"HS256","crit":["x-unknown"],"x-unknown":1}"#),
            B64.encode(serde_json::to_vec(&claims()).unwrap())
        );
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, b"secret"), input.as_bytes());
        let token = format!("{input}.{}", B64.encode(tag.as_ref()));
        let e = verify_hmac(&token, "HS256", b"secret").unwrap_err();
        assert!(e.to_string().contains("crit"), "{e}");
    }

    #[test]
    fn short_rsa_and_wrong_curve_jwks_refused() {
        let short = json!({"kty":"RSA","n": B64.encode([1u8; 128]),"e":"AQAB"});
        assert!(VerifyingKey::from_jwk(&short).is_err());
        let curve = json!({"kty":"EC","crv":"P-384","x": B64.encode([1u8; 32]),"y": B64.encode([1u8; 32])});
        assert!(VerifyingKey::from_jwk(&curve).is_err());
        let mismatch = json!({"kty":"EC","alg":"RS256","crv":"P-256","x": B64.encode([1u8; 32]),"y": B64.encode([1u8; 32])});
        assert!(VerifyingKey::from_jwk(&mismatch).is_err());
    }
}
