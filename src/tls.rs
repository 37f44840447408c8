//! TLS termination with rustls (aws-lc-rs provider): the server configurations of the main and
//! mutual-TLS listeners, a listener that completes handshakes off its accept loop, and the
//! decision whether a client certificate chains to a configured client CA (RFC 8705 s2.1) and is
//! not revoked by the configured CRLs.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::{Context, anyhow};
use axum::serve::Listener;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms, aws_lc_rs};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::clock::Clock;
use crate::oauth::mtls::ClientCertificate;

/// How long a client has to complete its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most handshakes in progress at once; a connection past it is closed at once (not left
/// waiting behind them).
const MAX_HANDSHAKES: usize = 1024;

/// The crypto provider of every TLS configuration: aws-lc-rs, already the server's crypto.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(aws_lc_rs::default_provider())
}

/// Decides whether client certificates chain to the configured client CAs.
pub struct ClientCertTrust {
    /// Replaced whole when the revocation lists change.
    verifier: RwLock<Option<Arc<dyn ClientCertVerifier>>>,
    /// Counts the verifiers replaced: a connection's certificate judged under an earlier one is
    /// judged again.
    generation: AtomicU64,
    /// The anchors and the CRL files the verifier was built from, when there are anchors.
    source: Option<TrustSource>,
    clock: Arc<dyn Clock>,
}

/// What a verifier is built from: the anchors of `client_ca_file` (read once) and the CRL files
/// (read again when one changes), with each file's modification time at the last read.
struct TrustSource {
    ca_file: PathBuf,
    roots: Arc<RootCertStore>,
    crl_files: Vec<PathBuf>,
    read_at: Mutex<Vec<Option<SystemTime>>>,
}

impl fmt::Debug for ClientCertTrust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCertTrust")
            .field("has_anchors", &self.source.is_some())
            .field(
                "crl_files",
                &self.source.as_ref().map_or(0, |s| s.crl_files.len()),
            )
            .finish()
    }
}

impl ClientCertTrust {
    /// The trust anchors of `ca_file` (PEM), or none: then no certificate is trusted; with the
    /// revocation lists of `crl_files` (PEM), if any.
    pub fn load(
        ca_file: Option<&Path>,
        crl_files: &[PathBuf],
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<ClientCertTrust> {
        let Some(path) = ca_file else {
            return Ok(ClientCertTrust {
                verifier: RwLock::new(None),
                generation: AtomicU64::new(0),
                source: None,
                clock,
            });
        };
        let mut roots = RootCertStore::empty();
        for cert in read_certificates(path)? {
            roots
                .add(cert)
                .with_context(|| format!("{}: a certificate is not a usable trust anchor", path.display()))?;
        }
        let source = TrustSource {
            ca_file: path.to_path_buf(),
            roots: Arc::new(roots),
            crl_files: crl_files.to_vec(),
            read_at: Mutex::new(modified(crl_files)),
        };
        let verifier = source.verifier()?;
        Ok(ClientCertTrust {
            verifier: RwLock::new(Some(verifier)),
            generation: AtomicU64::new(0),
            source: Some(source),
            clock,
        })
    }

    /// Reads the revocation lists again when a file changed since the last read (its
    /// modification time): true when the new lists are in force. A file that cannot be read or
    /// parsed is an error, and the lists in force stay (it is read again at its next change).
    pub fn reload_revocations(&self) -> anyhow::Result<bool> {
        let Some(source) = &self.source else {
            return Ok(false);
        };
        if source.crl_files.is_empty() {
            return Ok(false);
        }
        let now = modified(&source.crl_files);
        {
            let mut read_at = source
                .read_at
                .lock()
                .map_err(|_| anyhow!("the revocation lists' lock is poisoned"))?;
            if *read_at == now {
                return Ok(false);
            }
            *read_at = now;
        }
        let verifier = source.verifier()?;
        let mut current = self
            .verifier
            .write()
            .map_err(|_| anyhow!("the client certificate verifier's lock is poisoned"))?;
        *current = Some(verifier);
        self.generation.fetch_add(1, Ordering::Release);
        Ok(true)
    }

    /// The client certificate of a chain (end entity first), trusted when the chain leads to
    /// a configured CA and the certificate is valid now for client authentication.
    pub fn certificate(&self, chain: &[CertificateDer<'_>]) -> Option<ClientCertificate> {
        let (end_entity, intermediates) = chain.split_first()?;
        let now = UnixTime::since_unix_epoch(Duration::from_secs(
            u64::try_from(self.clock.now()).unwrap_or_default(),
        ));
        let verifier = self.verifier.read().ok().and_then(|v| v.clone());
        let trusted = verifier.is_some_and(|v| v.verify_client_cert(end_entity, intermediates, now).is_ok());
        Some(ClientCertificate {
            der: end_entity.to_vec(),
            trusted,
        })
    }

    /// The certificate a trusted proxy passed in a header: URL-encoded PEM, as nginx's
    /// `$ssl_client_escaped_cert` (an empty value means none).
    pub fn from_header(&self, value: &str) -> Option<ClientCertificate> {
        let value = value.trim();
        if value.is_empty() {
            return None;
        }
        let pem = percent_encoding::percent_decode_str(value).decode_utf8().ok()?;
        let cert = CertificateDer::from_pem_slice(pem.as_bytes()).ok()?;
        self.certificate(&[cert])
    }
}

/// How long a connection's client certificate is taken as judged: past it (or once the
/// revocation lists were read again) the next request on the connection judges it again, so a
/// certificate revoked or expired while a keep-alive connection lasts stops being trusted.
const REJUDGE_SECS: i64 = 30;

/// The client certificate chain of a TLS connection, judged at the handshake and again by the
/// requests on the connection when the lists changed or [`REJUDGE_SECS`] passed.
pub struct PeerCertificate {
    chain: Vec<CertificateDer<'static>>,
    trust: Arc<ClientCertTrust>,
    judged: Mutex<Judged>,
}

/// The last judgement of a [`PeerCertificate`]: under which verifier, when, and its result.
struct Judged {
    generation: u64,
    at: i64,
    certificate: Arc<ClientCertificate>,
}

impl fmt::Debug for PeerCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerCertificate")
            .field("chain", &self.chain.len())
            .finish()
    }
}

impl PeerCertificate {
    /// The chain `chain` (end entity first) judged now by `trust`; None without a certificate.
    pub fn judge(trust: &Arc<ClientCertTrust>, chain: &[CertificateDer<'_>]) -> Option<PeerCertificate> {
        let generation = trust.generation.load(Ordering::Acquire);
        let certificate = Arc::new(trust.certificate(chain)?);
        Some(PeerCertificate {
            chain: chain.iter().map(|c| c.clone().into_owned()).collect(),
            trust: trust.clone(),
            judged: Mutex::new(Judged {
                generation,
                at: trust.clock.now(),
                certificate,
            }),
        })
    }

    /// The certificate as trusted now: the last judgement, or a new one when the revocation
    /// lists were read again since, or it is [`REJUDGE_SECS`] old.
    pub fn current(&self) -> Arc<ClientCertificate> {
        let now = self.trust.clock.now();
        let generation = self.trust.generation.load(Ordering::Acquire);
        let mut judged = self
            .judged
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let stale = judged.generation != generation || now - judged.at >= REJUDGE_SECS || now < judged.at;
        if stale && let Some(c) = self.trust.certificate(&self.chain) {
            *judged = Judged {
                generation,
                at: now,
                certificate: Arc::new(c),
            };
        }
        judged.certificate.clone()
    }
}

impl TrustSource {
    /// A verifier of the anchors with the revocation lists as the files hold them now. A
    /// certificate whose issuer has no list is not checked (the lists need not cover every CA);
    /// every certificate of a chain is checked against its issuer's list.
    fn verifier(&self) -> anyhow::Result<Arc<dyn ClientCertVerifier>> {
        let mut crls = Vec::new();
        for path in &self.crl_files {
            crls.extend(read_crls(path)?);
        }
        let mut builder = WebPkiClientVerifier::builder_with_provider(self.roots.clone(), provider());
        if !crls.is_empty() {
            builder = builder.with_crls(crls).allow_unknown_revocation_status();
        }
        builder.build().with_context(|| {
            format!(
                "{} with {}: not a usable client CA and revocation lists",
                self.ca_file.display(),
                self.crl_files
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
    }
}

/// The modification time of each file (none when it cannot be read).
fn modified(files: &[PathBuf]) -> Vec<Option<SystemTime>> {
    files
        .iter()
        .map(|f| std::fs::metadata(f).and_then(|m| m.modified()).ok())
        .collect()
}

/// The revocation lists of a PEM file (`-----BEGIN X509 CRL-----`), at least one.
fn read_crls(path: &Path) -> anyhow::Result<Vec<CertificateRevocationListDer<'static>>> {
    let crls = CertificateRevocationListDer::pem_file_iter(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{}: not PEM revocation lists", path.display()))?;
    if crls.is_empty() {
        return Err(anyhow!("{}: no revocation list found", path.display()));
    }
    Ok(crls)
}

fn read_certificates(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{}: not PEM certificates", path.display()))?;
    if certs.is_empty() {
        return Err(anyhow!("{}: no certificate found", path.display()));
    }
    Ok(certs)
}

/// The TLS configuration of a listener with the server's certificate chain and key; with
/// `client_certificates`, it asks clients for a certificate (RFC 8705) without requiring one.
pub fn server_config(
    cert_file: &Path,
    key_file: &Path,
    client_certificates: bool,
) -> anyhow::Result<Arc<ServerConfig>> {
    let chain = read_certificates(cert_file)?;
    let key = PrivateKeyDer::from_pem_file(key_file)
        .with_context(|| format!("{}: no PEM private key", key_file.display()))?;
    let provider = provider();
    let verifier: Arc<dyn ClientCertVerifier> = if client_certificates {
        Arc::new(AnyClientCertificate {
            algorithms: provider.signature_verification_algorithms,
        })
    } else {
        WebPkiClientVerifier::no_client_auth()
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .with_context(|| format!("{} does not fit {}", key_file.display(), cert_file.display()))?;
    // The HTTP server speaks HTTP/1.1.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Asks for a client certificate and accepts any, self-signed ones included: whether it is
/// trusted is decided after the handshake, per client (RFC 8705 s2.1 and s2.2). The handshake
/// signature is still verified, so the client has proven it holds the certificate's key.
#[derive(Debug)]
struct AnyClientCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientCertificate {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Who is at the other end of a TLS connection.
#[derive(Debug, Clone)]
pub struct TlsPeer {
    /// The remote address.
    pub addr: SocketAddr,
    /// The client certificate, when the listener asks for one and the client sent one.
    pub certificate: Option<Arc<PeerCertificate>>,
    /// True on the mutual-TLS listener.
    pub mtls: bool,
}

/// A TCP listener whose connections are handed out after their TLS handshake, which runs in its
/// own task (bounded in time and number) so that a slow client never holds up the others.
pub struct TlsListener {
    local: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, TlsPeer)>,
    acceptor: JoinHandle<()>,
}

impl TlsListener {
    /// Serves TLS with `config` on `tcp`. `trust`: on the mutual-TLS listener, how client
    /// certificates are judged (none: the listener does not look at them).
    pub fn new(
        tcp: TcpListener,
        config: Arc<ServerConfig>,
        trust: Option<Arc<ClientCertTrust>>,
        per_address: usize,
    ) -> std::io::Result<TlsListener> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let acceptor = tokio::spawn(accept_loop(
            tcp,
            TlsAcceptor::from(config),
            trust,
            per_address,
            tx,
        ));
        Ok(TlsListener {
            local,
            ready,
            acceptor,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

/// Accepts connections and runs their handshakes, at most [`MAX_HANDSHAKES`] at once and
/// `per_address` from one address (0: no limit per address).
async fn accept_loop(
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    trust: Option<Arc<ClientCertTrust>>,
    per_address: usize,
    tx: mpsc::Sender<(TlsStream<TcpStream>, TlsPeer)>,
) {
    let slots = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    let peers: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    loop {
        let (stream, addr) = tokio::select! {
            _ = tx.closed() => return,
            accepted = tcp.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error.cause = %e, "a TLS connection could not be accepted");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Accepted whatever the handshakes in progress, so that connections never wait behind
        // stalled ones: one past a limit is closed at once.
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(peer = %addr, "too many TLS handshakes in progress: connection closed");
            continue;
        };
        let Some(peer_slot) = PeerSlot::take(&peers, addr.ip(), per_address) else {
            tracing::debug!(peer = %addr, "too many TLS handshakes in progress from this address: connection closed");
            continue;
        };
        let acceptor = acceptor.clone();
        let trust = trust.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            let _slots = (slot, peer_slot);
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(peer = %addr, error.cause = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(peer = %addr, "TLS handshake timed out");
                    return;
                }
            };
            let certificate = trust.as_ref().and_then(|t| {
                let chain = tls.get_ref().1.peer_certificates()?;
                PeerCertificate::judge(t, chain).map(Arc::new)
            });
            let peer = TlsPeer {
                addr,
                certificate,
                mtls: trust.is_some(),
            };
            let _ = tx.send((tls, peer)).await;
        });
    }
}

/// One handshake in progress from an address, counted in the accept loop's table while it
/// lives.
struct PeerSlot {
    peers: Arc<Mutex<HashMap<String, usize>>>,
    key: String,
}

impl PeerSlot {
    /// A slot for `ip` (its /64 for IPv6), unless it has `limit` already (0: no limit).
    fn take(
        peers: &Arc<Mutex<HashMap<String, usize>>>,
        ip: std::net::IpAddr,
        limit: usize,
    ) -> Option<PeerSlot> {
        let key = crate::oauth::throttle::budget_holder(&ip.to_string());
        let mut table = peers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = table.entry(key.clone()).or_insert(0);
        if limit > 0 && *n >= limit {
            return None;
        }
        *n += 1;
        Some(PeerSlot {
            peers: peers.clone(),
            key,
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut table = self
            .peers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = table.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                table.remove(&self.key);
            }
        }
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = TlsPeer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accept loop only ends when this listener goes away.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(TlsPeer {
            addr: self.local,
            certificate: None,
            mtls: false,
        })
    }
}
