//! A test PKI for mutual TLS (RFC 8705): a CA made with rcgen, the server's certificate for
//! 127.0.0.1 and localhost, client certificates (CA-signed and self-signed) written into the
//! test's temp dir, the mutual-TLS clients of the default domain, and HTTPS clients.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason,
    RevokedCertParams, SanType, SerialNumber, date_time_ymd,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::harness::Opts;

/// The host of the default domain's mutual-TLS alias (`mtls_issuer`).
pub const MTLS_HOST: &str = "mtls.localhost";
/// The registered subject DN of `mtls-dn`, written differently from the certificate's
/// `CN=client-one,O=Example Corp,C=US` (attribute types in other case, spaces after commas).
pub const REGISTERED_DN: &str = "cn=client-one, o=Example Corp, C=US";

/// A certificate and its key, as files a client would hold.
pub struct Cert {
    pub pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
    pub key: KeyPair,
}

impl Cert {
    /// RFC 8705 s3.1 `x5t#S256`, computed independently of the server.
    pub fn thumbprint(&self) -> String {
        URL_SAFE_NO_PAD.encode(Sha256::digest(&self.der))
    }

    /// The public key as an EC P-256 JWK (RFC 7518 s6.2.1).
    pub fn jwk(&self) -> Value {
        let raw = self.key.public_key_raw();
        assert_eq!((raw.len(), raw[0]), (65, 4), "an uncompressed P-256 point");
        json!({
            "kty": "EC",
            "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(&raw[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&raw[33..65]),
        })
    }

    /// The certificate as nginx's `$ssl_client_escaped_cert` passes it.
    pub fn escaped(&self) -> String {
        percent_encoding::utf8_percent_encode(&self.pem, percent_encoding::NON_ALPHANUMERIC).to_string()
    }

    pub fn identity(&self) -> reqwest::Identity {
        reqwest::Identity::from_pem(format!("{}{}", self.pem, self.key_pem).as_bytes()).unwrap()
    }
}

/// A test PKI in a temp dir: a CA, the server's certificate for 127.0.0.1 and localhost, and
/// client certificates.
pub struct Pki {
    pub dir: Arc<tempfile::TempDir>,
    pub ca_pem: String,
    /// CA-signed, subject `CN=client-one,O=Example Corp,C=US`.
    pub client_one: Cert,
    /// CA-signed, subject `CN=client-two,O=Example Corp,C=US`, SAN dNSName client.example.com.
    pub client_two: Cert,
    /// Self-signed with client-one's subject: not from the CA.
    pub self_signed: Cert,
    /// Another self-signed certificate.
    pub other_self_signed: Cert,
}

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CountryName, "US");
    dn.push(DnType::OrganizationName, "Example Corp");
    dn.push(DnType::CommonName, cn);
    dn
}

fn client_params(cn: &str, sans: Vec<SanType>) -> CertificateParams {
    let mut p = CertificateParams::default();
    // Serial numbers the revocation lists can name: client-one 1, client-two 2.
    p.serial_number = Some(SerialNumber::from(match cn {
        "client-one" => 1u64,
        "client-two" => 2,
        _ => 3,
    }));
    p.distinguished_name = dn(cn);
    p.subject_alt_names = sans;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    p
}

fn cert(cert: &rcgen::Certificate, key: KeyPair) -> Cert {
    Cert {
        pem: cert.pem(),
        key_pem: key.serialize_pem(),
        der: cert.der().to_vec(),
        key,
    }
}

impl Pki {
    pub fn new() -> Pki {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let mut ca_params = CertificateParams::default();
        ca_params.distinguished_name = dn("Ostiary Test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();

        let mut server = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        server
            .subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        server.distinguished_name = dn("localhost");
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_key = KeyPair::generate().unwrap();
        let server_cert = server.signed_by(&server_key, &ca).unwrap();

        let signed = |cn: &str, sans: Vec<SanType>| {
            let key = KeyPair::generate().unwrap();
            let c = client_params(cn, sans).signed_by(&key, &ca).unwrap();
            cert(&c, key)
        };
        let self_signed = |cn: &str| {
            let key = KeyPair::generate().unwrap();
            let c = client_params(cn, vec![]).self_signed(&key).unwrap();
            cert(&c, key)
        };
        let pki = Pki {
            ca_pem: ca.pem(),
            client_one: signed("client-one", vec![]),
            client_two: signed(
                "client-two",
                vec![SanType::DnsName("client.example.com".try_into().unwrap())],
            ),
            self_signed: self_signed("client-one"),
            other_self_signed: self_signed("client-three"),
            dir,
        };
        std::fs::write(pki.path("ca.pem"), &pki.ca_pem).unwrap();
        // The CA's revocation lists: one that revokes client-one (serial 1), one that revokes
        // nothing.
        let crl = |revoked: Vec<u64>| {
            CertificateRevocationListParams {
                this_update: date_time_ymd(2020, 1, 1),
                next_update: date_time_ymd(2100, 1, 1),
                crl_number: SerialNumber::from(revoked.len() as u64 + 1),
                issuing_distribution_point: None,
                revoked_certs: revoked
                    .into_iter()
                    .map(|serial| RevokedCertParams {
                        serial_number: SerialNumber::from(serial),
                        revocation_time: date_time_ymd(2021, 1, 1),
                        reason_code: Some(RevocationReason::KeyCompromise),
                        invalidity_date: None,
                    })
                    .collect(),
                key_identifier_method: KeyIdMethod::Sha256,
            }
            .signed_by(&ca)
            .unwrap()
            .pem()
            .unwrap()
        };
        std::fs::write(pki.path("crl-revokes-client-one.pem"), crl(vec![1])).unwrap();
        std::fs::write(pki.path("crl-empty.pem"), crl(vec![])).unwrap();
        std::fs::write(pki.path("server.pem"), server_cert.pem()).unwrap();
        std::fs::write(pki.path("server.key"), server_key.serialize_pem()).unwrap();
        pki
    }

    pub fn path(&self, file: &str) -> String {
        self.dir.path().join(file).display().to_string()
    }

    /// `[server]` keys: TLS on the main listener and a mutual-TLS listener on 127.0.0.1:0.
    pub fn tls_server(&self) -> String {
        format!(
            r#"
tls_cert_file = "{}"
tls_key_file = "{}"
mtls_listen = "127.0.0.1:0"
client_ca_file = "{}"
"#,
            self.path("server.pem"),
            self.path("server.key"),
            self.path("ca.pem"),
        )
    }

    /// `[server]` keys of a plain listener behind a TLS-terminating proxy.
    pub fn proxy_server(&self) -> String {
        format!(
            r#"
client_certificate_header = "X-Client-Cert"
trusted_proxies = ["127.0.0.1"]
client_ca_file = "{}"
"#,
            self.path("ca.pem")
        )
    }

    /// The mutual-TLS clients of the default domain.
    pub fn clients(&self) -> String {
        let jwks = json!({ "keys": [self.self_signed.jwk()] });
        let x5c = json!({ "keys": [{ "kty": "EC", "x5c": [STANDARD.encode(&self.other_self_signed.der)] }] });
        format!(
            r#"
  [[domain.client]]
  client_id = "mtls-dn"
  token_endpoint_auth_method = "tls_client_auth"
  tls_client_auth_subject_dn = "{REGISTERED_DN}"
  grant_types = ["client_credentials"]
  scopes = ["orders.read"]

  [[domain.client]]
  client_id = "mtls-dns"
  token_endpoint_auth_method = "tls_client_auth"
  tls_client_auth_san_dns = "CLIENT.example.com"
  grant_types = ["client_credentials"]
  scopes = ["orders.read"]
  access_token_format = "opaque"

  [[domain.client]]
  client_id = "mtls-self"
  token_endpoint_auth_method = "self_signed_tls_client_auth"
  jwks = {jwks}
  grant_types = ["client_credentials"]
  scopes = ["orders.read"]

  [[domain.client]]
  client_id = "mtls-x5c"
  token_endpoint_auth_method = "self_signed_tls_client_auth"
  jwks = {x5c}
  grant_types = ["client_credentials"]
  scopes = ["orders.read"]
"#,
            jwks = toml_inline(&jwks),
            x5c = toml_inline(&x5c),
        )
    }

    /// Options of a test app with these `[server]` keys, the mTLS clients and the alias.
    pub fn opts(&self, server: String) -> Opts {
        Opts {
            server_extra: server,
            dir: Some(self.dir.clone()),
            domain_keys: format!("mtls_issuer = \"https://{MTLS_HOST}\""),
            domain_extra: self.clients(),
            ..Opts::default()
        }
    }

    /// An HTTPS client that trusts the test CA, presenting `identity` when asked.
    pub fn client(&self, identity: Option<&Cert>) -> reqwest::Client {
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).unwrap());
        if let Some(c) = identity {
            b = b.identity(c.identity());
        }
        b.build().unwrap()
    }
}

/// A JSON value written as a TOML inline value.
pub fn toml_inline(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let items: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("\"{k}\" = {}", toml_inline(v)))
                .collect();
            format!("{{ {} }}", items.join(", "))
        }
        Value::Array(a) => format!("[{}]", a.iter().map(toml_inline).collect::<Vec<_>>().join(", ")),
        other => other.to_string(),
    }
}
