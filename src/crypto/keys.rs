//! Signing keys (RS256, PS256, ES256) and verifying keys, with their JWK forms.

use std::fmt;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    self, EcdsaKeyPair, KeyPair, RsaKeyPair, RsaPublicKeyComponents, UnparsedPublicKey,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::CryptoError;

/// JWS algorithms Ostiary signs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum SigningAlg {
    /// RSASSA-PKCS1-v1_5 with SHA-256 (OpenID Connect's required algorithm).
    RS256,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// ECDSA P-256 with SHA-256.
    ES256,
}

impl SigningAlg {
    /// Every supported algorithm.
    pub const ALL: [SigningAlg; 3] = [SigningAlg::RS256, SigningAlg::PS256, SigningAlg::ES256];

    /// The JWA name.
    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlg::RS256 => "RS256",
            SigningAlg::PS256 => "PS256",
            SigningAlg::ES256 => "ES256",
        }
    }

    /// Parses a JWA name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

enum Private {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
}

/// A private signing key parsed once.
pub struct SigningKey {
    kid: String,
    alg: SigningAlg,
    private: Private,
    jwk: Value,
    verifying: VerifyingKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

fn internal(e: impl fmt::Display) -> CryptoError {
    CryptoError::Internal(e.to_string())
}

impl SigningKey {
    /// Generates a key (RSA 2048 for RS256/PS256, P-256 for ES256); returns it with its PKCS#8 DER.
    pub fn generate(alg: SigningAlg, kid: String) -> Result<(SigningKey, Zeroizing<Vec<u8>>), CryptoError> {
        let der = match alg {
            SigningAlg::RS256 | SigningAlg::PS256 => {
                let kp = RsaKeyPair::generate(KeySize::Rsa2048).map_err(internal)?;
                let der = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&kp).map_err(internal)?;
                Zeroizing::new(der.as_ref().to_vec())
            }
            SigningAlg::ES256 => {
                let doc = EcdsaKeyPair::generate_pkcs8(
                    &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    &SystemRandom::new(),
                )
                .map_err(internal)?;
                Zeroizing::new(doc.as_ref().to_vec())
            }
        };
        let key = Self::from_pkcs8(alg, kid, &der)?;
        Ok((key, der))
    }

    /// Parses a PKCS#8 DER private key for `alg`.
    pub fn from_pkcs8(alg: SigningAlg, kid: String, der: &[u8]) -> Result<SigningKey, CryptoError> {
        let (private, mut jwk) = match alg {
            SigningAlg::RS256 | SigningAlg::PS256 => {
                let kp =
                    RsaKeyPair::from_pkcs8(der).map_err(|_| CryptoError::Invalid("not an RSA PKCS#8 key"))?;
                let pk = kp.public_key();
                let jwk = json!({
                    "kty": "RSA",
                    "n": B64.encode(pk.modulus().big_endian_without_leading_zero()),
                    "e": B64.encode(pk.exponent().big_endian_without_leading_zero()),
                });
                (Private::Rsa(kp), jwk)
            }
            SigningAlg::ES256 => {
                let kp = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, der)
                    .map_err(|_| CryptoError::Invalid("not a P-256 PKCS#8 key"))?;
                let point = kp.public_key().as_ref();
                // Uncompressed SEC1 point: 0x04 || x || y.
                if point.len() != 65 || point[0] != 4 {
                    return Err(CryptoError::Invalid("unexpected P-256 public key encoding"));
                }
                let jwk = json!({
                    "kty": "EC",
                    "crv": "P-256",
                    "x": B64.encode(&point[1..33]),
                    "y": B64.encode(&point[33..65]),
                });
                (Private::Ec(kp), jwk)
            }
        };
        if let Some(o) = jwk.as_object_mut() {
            o.insert("kid".into(), json!(kid));
            o.insert("alg".into(), json!(alg.as_str()));
            o.insert("use".into(), json!("sig"));
        }
        let verifying = VerifyingKey::from_jwk(&jwk)?;
        Ok(SigningKey {
            kid,
            alg,
            private,
            jwk,
            verifying,
        })
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The algorithm.
    pub fn alg(&self) -> SigningAlg {
        self.alg
    }

    /// The public JWK (`kty`, `kid`, `alg`, `use` and the key's parameters).
    pub fn public_jwk(&self) -> &Value {
        &self.jwk
    }

    /// The JWS signature of `msg` (ES256: fixed 64-byte r||s).
    pub fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let rng = SystemRandom::new();
        match (&self.private, self.alg) {
            (Private::Rsa(kp), alg) => {
                let padding: &'static dyn signature::RsaEncoding = if alg == SigningAlg::PS256 {
                    &signature::RSA_PSS_SHA256
                } else {
                    &signature::RSA_PKCS1_SHA256
                };
                let mut sig = vec![0u8; kp.public_modulus_len()];
                kp.sign(padding, &rng, msg, &mut sig).map_err(internal)?;
                Ok(sig)
            }
            (Private::Ec(kp), _) => Ok(kp.sign(&rng, msg).map_err(internal)?.as_ref().to_vec()),
        }
    }

    /// The matching verifying key.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.verifying.clone()
    }
}

#[derive(Clone)]
enum Public {
    Rsa(RsaPublicKeyComponents<Vec<u8>>),
    Ec(UnparsedPublicKey<Vec<u8>>),
}

/// A public key for verifying JWS signatures.
#[derive(Clone)]
pub struct VerifyingKey {
    kid: Option<String>,
    alg: SigningAlg,
    public: Public,
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

fn b64_field(jwk: &Value, name: &str) -> Result<Vec<u8>, CryptoError> {
    let s = jwk
        .get(name)
        .and_then(Value::as_str)
        .ok_or(CryptoError::Invalid("JWK lacks a key parameter"))?;
    B64.decode(s)
        .map_err(|_| CryptoError::Invalid("JWK parameter is not base64url"))
}

impl VerifyingKey {
    /// Builds a verifying key from a public JWK (RSA of at least 2048 bits, or EC P-256). Without
    /// `alg`, RSA keys verify RS256 and EC keys ES256.
    pub fn from_jwk(jwk: &Value) -> Result<VerifyingKey, CryptoError> {
        Self::from_jwk_as(jwk, None)
    }

    /// Builds a verifying key for `alg` from a public JWK of a client or assertion issuer: the
    /// JWK's own `alg`, when it has one, must be `alg`; its `kty` must fit `alg`; a key marked
    /// `"use": "enc"` is refused. With `alg` None, as [`VerifyingKey::from_jwk`].
    pub fn from_jwk_as(jwk: &Value, alg: Option<SigningAlg>) -> Result<VerifyingKey, CryptoError> {
        let kty = jwk
            .get("kty")
            .and_then(Value::as_str)
            .ok_or(CryptoError::Invalid("JWK lacks kty"))?;
        if jwk.get("use").and_then(Value::as_str).is_some_and(|u| u != "sig") {
            return Err(CryptoError::Invalid("JWK is not a signature key"));
        }
        let own = match jwk.get("alg").and_then(Value::as_str) {
            Some(a) => Some(SigningAlg::parse(a).ok_or(CryptoError::Invalid("unsupported JWK alg"))?),
            None => None,
        };
        let alg = match (own, alg) {
            (Some(o), Some(a)) if o != a => return Err(CryptoError::Invalid("JWK alg differs")),
            (Some(o), _) => o,
            (None, Some(a)) => a,
            (None, None) if kty == "RSA" => SigningAlg::RS256,
            (None, None) if kty == "EC" => SigningAlg::ES256,
            (None, None) => return Err(CryptoError::Invalid("unsupported JWK kty")),
        };
        let public = match (kty, alg) {
            ("RSA", SigningAlg::RS256 | SigningAlg::PS256) => {
                let n = b64_field(jwk, "n")?;
                let e = b64_field(jwk, "e")?;
                let bits = n.iter().skip_while(|b| **b == 0).count() * 8;
                if bits < 2048 {
                    return Err(CryptoError::Invalid("RSA key shorter than 2048 bits"));
                }
                Public::Rsa(RsaPublicKeyComponents { n, e })
            }
            ("EC", SigningAlg::ES256) => {
                if jwk.get("crv").and_then(Value::as_str) != Some("P-256") {
                    return Err(CryptoError::Invalid("EC JWK must use crv P-256"));
                }
                let x = b64_field(jwk, "x")?;
                let y = b64_field(jwk, "y")?;
                if x.len() != 32 || y.len() != 32 {
                    return Err(CryptoError::Invalid("EC JWK coordinates must be 32 bytes"));
                }
                let mut point = Vec::with_capacity(65);
                point.push(4);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                Public::Ec(UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point))
            }
            _ => return Err(CryptoError::Invalid("JWK kty does not match its alg")),
        };
        let kid = jwk.get("kid").and_then(Value::as_str).map(str::to_string);
        Ok(VerifyingKey { kid, alg, public })
    }

    /// The key id, if the JWK had one.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The algorithm this key verifies.
    pub fn alg(&self) -> SigningAlg {
        self.alg
    }

    /// True when `sig` is a valid signature of `msg` under this key and algorithm.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        match (&self.public, self.alg) {
            (Public::Rsa(c), SigningAlg::PS256) => {
                c.verify(&signature::RSA_PSS_2048_8192_SHA256, msg, sig).is_ok()
            }
            (Public::Rsa(c), _) => c.verify(&signature::RSA_PKCS1_2048_8192_SHA256, msg, sig).is_ok(),
            (Public::Ec(k), _) => k.verify(msg, sig).is_ok(),
        }
    }
}
