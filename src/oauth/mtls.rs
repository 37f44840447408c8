//! Mutual-TLS client authentication and certificate-bound access tokens (RFC 8705).

use std::net::IpAddr;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD as B64};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;
use x509_parser::x509::X509Name;

use crate::config::AuthMethod;
use crate::domain::{Client, TlsSubject};
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

/// RFC 8705 s3.1: the confirmation member of a certificate-bound token.
pub const CNF: &str = "cnf";
/// RFC 8705 s3.1: the certificate thumbprint inside `cnf`.
pub const X5T_S256: &str = "x5t#S256";

/// The `cnf` claim binding a token to `certificate` (RFC 8705 s3.1).
pub fn confirmation(certificate: &ClientCertificate) -> Value {
    json!({ X5T_S256: certificate.thumbprint() })
}

/// The thumbprint a token's claims bind it to, if any.
pub fn bound_thumbprint(claims: &Map<String, Value>) -> Option<&str> {
    claims.get(CNF)?.get(X5T_S256)?.as_str()
}

/// True unless the claims bind the token to a certificate other than `certificate` (or to one
/// while none was presented). RFC 8705 s3: the protected resource MUST check the binding.
pub fn binding_holds(claims: &Map<String, Value>, certificate: Option<&ClientCertificate>) -> bool {
    match bound_thumbprint(claims) {
        None => true,
        Some(expected) => certificate.is_some_and(|c| c.thumbprint() == expected),
    }
}

/// Authenticates a tls_client_auth or self_signed_tls_client_auth client by its certificate.
/// `keys`: the client's JWKs (self_signed_tls_client_auth).
pub fn authenticate(
    client: &Client,
    certificate: Option<&ClientCertificate>,
    keys: &[Value],
) -> OAuthResult<()> {
    let failed = |why: &str| {
        OAuthError::invalid_client("client authentication failed")
            .with_cause(format!("client {:?}: {why}", client.id))
    };
    // RFC 8705 s2: the client authenticates with the certificate of the TLS connection.
    let Some(certificate) = certificate else {
        return Err(OAuthError::invalid_client("a client certificate is required")
            .with_cause(format!("client {:?}: no client certificate", client.id)));
    };
    let (_, parsed) = X509Certificate::from_der(&certificate.der)
        .map_err(|_| failed("the client certificate cannot be parsed"))?;
    match client.auth_method {
        AuthMethod::TlsClientAuth => {
            // RFC 8705 s2.1: the certificate chains to a trust anchor the server is configured with.
            if !certificate.trusted {
                return Err(failed("the certificate does not chain to a configured client CA"));
            }
            let subject = client
                .tls_subject
                .as_ref()
                .ok_or_else(|| failed("no certificate subject is registered"))?;
            // RFC 8705 s2.1.2: the subject DN or SAN matches the registered one.
            if !subject_matches(&parsed, subject) {
                return Err(failed(
                    "the certificate's subject does not match the registration",
                ));
            }
            Ok(())
        }
        AuthMethod::SelfSignedTlsClientAuth => {
            // RFC 8705 s2.2: the certificate is one the client registered in its JWK Set.
            if keys.iter().any(|k| jwk_matches(k, certificate, &parsed)) {
                Ok(())
            } else {
                Err(failed("the certificate is not in the client's JWK Set"))
            }
        }
        other => Err(failed(&format!("{} is not a mutual-TLS method", other.as_str()))),
    }
}

/// RFC 8705 s2.1.2: the registered subject DN, or one SAN of the registered type.
fn subject_matches(cert: &X509Certificate<'_>, subject: &TlsSubject) -> bool {
    if let TlsSubject::SubjectDn(dn) = subject {
        return parse_dn(dn).is_ok_and(|want| certificate_dn(cert.subject()) == want);
    }
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return false;
    };
    san.value.general_names.iter().any(|name| match (subject, name) {
        (TlsSubject::SanDns(want), GeneralName::DNSName(got)) => want.eq_ignore_ascii_case(got),
        (TlsSubject::SanUri(want), GeneralName::URI(got)) => want == got,
        (TlsSubject::SanEmail(want), GeneralName::RFC822Name(got)) => want == got,
        (TlsSubject::SanIp(want), GeneralName::IPAddress(got)) => ip_of(got) == Some(*want),
        _ => false,
    })
}

fn ip_of(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

/// A distinguished name in RFC 4514 order (last RDN of the certificate first): each RDN a sorted
/// list of (attribute type OID, value).
type Dn = Vec<Vec<(String, String)>>;

/// Attribute type names of RFC 4514 s3 and RFC 4519, and a few common others, with their OIDs.
const ATTRIBUTE_TYPES: &[(&str, &str)] = &[
    ("CN", "2.5.4.3"),
    ("SN", "2.5.4.4"),
    ("SERIALNUMBER", "2.5.4.5"),
    ("C", "2.5.4.6"),
    ("L", "2.5.4.7"),
    ("ST", "2.5.4.8"),
    ("STREET", "2.5.4.9"),
    ("O", "2.5.4.10"),
    ("OU", "2.5.4.11"),
    ("TITLE", "2.5.4.12"),
    ("GIVENNAME", "2.5.4.42"),
    ("ORGANIZATIONIDENTIFIER", "2.5.4.97"),
    ("DC", "0.9.2342.19200300.100.1.25"),
    ("UID", "0.9.2342.19200300.100.1.1"),
    ("EMAILADDRESS", "1.2.840.113549.1.9.1"),
    ("E", "1.2.840.113549.1.9.1"),
];

/// The OID of an attribute type written by name (any case), as `OID.n.n` or as `n.n`.
fn attribute_oid(name: &str) -> Option<String> {
    let upper = name.trim().to_ascii_uppercase();
    let numeric = upper.strip_prefix("OID.").unwrap_or(&upper);
    if !numeric.is_empty()
        && numeric
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    {
        return Some(numeric.to_string());
    }
    ATTRIBUTE_TYPES
        .iter()
        .find(|(n, _)| *n == upper)
        .map(|(_, oid)| (*oid).to_string())
}

/// The subject of a certificate as a [`Dn`]. Values that are not strings are written `#hex`.
fn certificate_dn(name: &X509Name<'_>) -> Dn {
    let mut out: Dn = name
        .iter()
        .map(|rdn| {
            let mut atvs: Vec<(String, String)> = rdn
                .iter()
                .map(|atv| {
                    let value = match atv.as_str() {
                        Ok(s) => s.to_string(),
                        Err(_) => format!("#{}", hex(atv.attr_value().data)),
                    };
                    (atv.attr_type().to_id_string(), value)
                })
                .collect();
            atvs.sort();
            atvs
        })
        .collect();
    // RFC 4514 s2.1: the string form starts with the last RDN of the sequence.
    out.reverse();
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks a registered `tls_client_auth_subject_dn` as authentication will read it; the error
/// names what cannot be read (an attribute type outside the built-in names, a bad escape...).
pub fn check_subject_dn(text: &str) -> Result<(), String> {
    parse_dn(text).map(|_| ())
}

/// Parses an RFC 4514 string (`CN=client,O=Example\, Inc.,C=US`) into a [`Dn`]: attribute types
/// by name (any case) or OID, values unescaped, leading and trailing spaces dropped.
fn parse_dn(text: &str) -> Result<Dn, String> {
    let bad_escape =
        || "a backslash is not followed by a character or by two hex digits (an escape)".to_string();
    let mut rdns: Dn = Vec::new();
    let mut rdn: Vec<(String, String)> = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        // attributeType "="
        let mut name = String::new();
        let mut equals = false;
        for c in chars.by_ref() {
            if c == '=' {
                equals = true;
                break;
            }
            name.push(c);
        }
        let name = name.trim();
        if name.is_empty() {
            return Err("an attribute type is missing (an empty name, or a comma too many)".into());
        }
        if !equals {
            return Err(format!("attribute type {name:?} has no \"=\" and value"));
        }
        let oid = attribute_oid(name).ok_or_else(|| {
            format!(
                "unknown attribute type {name:?}: write its OID instead (such as 2.5.4.17 for postalCode) \
                 or use one of {}",
                ATTRIBUTE_TYPES
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
        // attributeValue, up to an unescaped ',' or '+', or the end.
        let mut value = String::new();
        // Trailing spaces are dropped unless escaped: remember the length of the kept part.
        let mut kept = 0;
        let mut end = None;
        while let Some(c) = chars.next() {
            match c {
                ',' | '+' => {
                    end = Some(c);
                    break;
                }
                '\\' => {
                    let next = chars.next().ok_or_else(bad_escape)?;
                    if next.is_ascii_hexdigit() {
                        // \HH: one byte of UTF-8; gather the bytes of a whole character.
                        let second = chars.next().ok_or_else(bad_escape)?;
                        let mut bytes = vec![
                            u8::from_str_radix(&format!("{next}{second}"), 16).map_err(|_| bad_escape())?,
                        ];
                        while std::str::from_utf8(&bytes).is_err() && bytes.len() < 4 {
                            if chars.next() != Some('\\') {
                                return Err(format!("the escapes of {name:?} are not UTF-8"));
                            }
                            let h: String = [
                                chars.next().ok_or_else(bad_escape)?,
                                chars.next().ok_or_else(bad_escape)?,
                            ]
                            .iter()
                            .collect();
                            bytes.push(u8::from_str_radix(&h, 16).map_err(|_| bad_escape())?);
                        }
                        value.push_str(
                            std::str::from_utf8(&bytes)
                                .map_err(|_| format!("the escapes of {name:?} are not UTF-8"))?,
                        );
                    } else {
                        value.push(next);
                    }
                    kept = value.len();
                }
                ' ' if value.is_empty() => {}
                c => {
                    value.push(c);
                    if c != ' ' {
                        kept = value.len();
                    }
                }
            }
        }
        value.truncate(kept);
        if value.starts_with('#') {
            value = value.to_ascii_lowercase();
        }
        rdn.push((oid, value));
        match end {
            Some('+') => continue,
            Some(_) => {
                rdn.sort();
                rdns.push(std::mem::take(&mut rdn));
            }
            None => {
                rdn.sort();
                rdns.push(rdn);
                return Ok(rdns);
            }
        }
    }
}

/// RFC 8705 s2.2: a registered JWK matches the certificate: its `x5c` holds this very
/// certificate, or its `x5t#S256` is its thumbprint, or (without either) its public key is the
/// certificate's.
fn jwk_matches(jwk: &Value, certificate: &ClientCertificate, parsed: &X509Certificate<'_>) -> bool {
    if let Some(chain) = jwk.get("x5c").and_then(Value::as_array) {
        // RFC 7517 s4.7: standard base64 DER, the key's own certificate first.
        return chain
            .first()
            .and_then(Value::as_str)
            .and_then(|c| STANDARD.decode(c).ok())
            .is_some_and(|der| der == certificate.der);
    }
    if let Some(t) = jwk.get("x5t#S256").and_then(Value::as_str) {
        return t == certificate.thumbprint();
    }
    public_key_matches(jwk, parsed)
}

/// The OIDs of the curves a JWK may name (RFC 7518 s6.2.1.1) and of Ed25519 (RFC 8037).
const CURVES: &[(&str, &str)] = &[
    ("P-256", "1.2.840.10045.3.1.7"),
    ("P-384", "1.3.132.0.34"),
    ("P-521", "1.3.132.0.35"),
];
const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_EC: &str = "1.2.840.10045.2.1";
const OID_ED25519: &str = "1.3.101.112";

fn public_key_matches(jwk: &Value, cert: &X509Certificate<'_>) -> bool {
    let field = |name: &str| {
        jwk.get(name)
            .and_then(Value::as_str)
            .and_then(|v| B64.decode(v).ok())
    };
    let spki = cert.public_key();
    let alg = spki.algorithm.algorithm.to_id_string();
    let key = spki.subject_public_key.data.as_ref();
    match jwk.get("kty").and_then(Value::as_str) {
        Some("RSA") if alg == OID_RSA => {
            let Ok(x509_parser::public_key::PublicKey::RSA(rsa)) = spki.parsed() else {
                return false;
            };
            let strip = |b: &[u8]| b.iter().skip_while(|x| **x == 0).copied().collect::<Vec<u8>>();
            match (field("n"), field("e")) {
                (Some(n), Some(e)) => strip(&n) == strip(rsa.modulus) && strip(&e) == strip(rsa.exponent),
                _ => false,
            }
        }
        Some("EC") if alg == OID_EC => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string());
            let crv = jwk.get("crv").and_then(Value::as_str);
            let same_curve = CURVES
                .iter()
                .any(|(name, oid)| crv == Some(*name) && curve.as_deref() == Some(*oid));
            match (field("x"), field("y")) {
                (Some(x), Some(y)) if same_curve => {
                    let mut point = vec![4u8];
                    point.extend_from_slice(&x);
                    point.extend_from_slice(&y);
                    point == key
                }
                _ => false,
            }
        }
        Some("OKP") if alg == OID_ED25519 => {
            jwk.get("crv").and_then(Value::as_str) == Some("Ed25519") && field("x").is_some_and(|x| x == key)
        }
        _ => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn dn_strings_normalise() {
        let a = parse_dn("CN=client one,O=Example\\, Inc.,C=US").unwrap();
        let b = parse_dn("cn = client one , o=Example\\2C Inc., 2.5.4.6=US").unwrap();
        assert_eq!(a, b);
        assert_eq!(a[0], vec![("2.5.4.3".to_string(), "client one".to_string())]);
        assert_eq!(a[1][0].1, "Example, Inc.");
        let multi = parse_dn("OU=b+CN=a,C=US").unwrap();
        assert_eq!(multi, parse_dn("CN=a+OU=b,C=US").unwrap());
        assert_ne!(parse_dn("CN=a,C=US").unwrap(), parse_dn("C=US,CN=a").unwrap());
        assert_ne!(parse_dn("CN=a").unwrap(), parse_dn("CN=A").unwrap());
        assert_eq!(parse_dn("CN=caf\\C3\\A9").unwrap()[0][0].1, "café");
        assert_eq!(parse_dn("CN=trailing\\ ").unwrap()[0][0].1, "trailing ");
        assert_eq!(parse_dn("CN=").unwrap()[0][0].1, "");
    }

    #[test]
    fn dn_strings_that_cannot_be_read_say_why() {
        for (dn, want) in [
            ("NOSUCHTYPE=x", "unknown attribute type \"NOSUCHTYPE\""),
            (
                "CN=x,postalCode=12345,C=US",
                "unknown attribute type \"postalCode\"",
            ),
            ("CN=a,", "attribute type is missing"),
            ("", "attribute type is missing"),
            ("CN=a,O", "\"O\" has no \"=\""),
            ("CN=a\\", "escape"),
            ("CN=a\\4", "escape"),
            ("CN=a\\zz\\4g", "escape"),
            ("CN=caf\\C3", "not UTF-8"),
        ] {
            let e = check_subject_dn(dn).unwrap_err();
            assert!(e.contains(want), "{dn:?}: {e}");
        }
        check_subject_dn("CN=x,2.5.4.17=12345,OID.2.5.4.6=US").unwrap();
    }

    #[test]
    fn binding_needs_the_same_certificate() {
        let cert = ClientCertificate {
            der: vec![1, 2, 3],
            trusted: false,
        };
        let other = ClientCertificate {
            der: vec![4],
            trusted: true,
        };
        let mut claims = Map::new();
        assert!(binding_holds(&claims, None));
        claims.insert(CNF.into(), confirmation(&cert));
        assert_eq!(bound_thumbprint(&claims), Some(cert.thumbprint().as_str()));
        assert!(binding_holds(&claims, Some(&cert)));
        assert!(!binding_holds(&claims, Some(&other)));
        assert!(!binding_holds(&claims, None));
    }
}
