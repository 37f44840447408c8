//! The composition root: the only place that names concrete types. Builds the state, runs
//! migrations, reconciles configuration into the store, loads keys, serves, and runs the
//! background jobs (key refresh, rotation, garbage collection).

use futures_util::StreamExt;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use arc_swap::ArcSwap;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::config::{Config, KeysConfig, Seconds};
use crate::crypto::kek::{Kek, KekSource};
use crate::crypto::secrets::{PasswordHasher, random_id};
use crate::domain::Domains;
use crate::keyring::{self, KeyRing};
use crate::oauth::client_auth::ClientAuthenticator;
use crate::oauth::grants::Grants;
use crate::oauth::logout::{logout_token, next_attempt};
use crate::reconcile;
use crate::store::logout::{DeliveryRow, LogoutStore};
use crate::store::pool::Limits;
use crate::store::{MaintenanceStore, SqlStore};
use crate::tls::{self, ClientCertTrust, TlsListener};

/// Shared state of a running server.
pub struct App {
    /// The store.
    pub store: SqlStore,
    /// The key-encryption key.
    pub kek: Kek,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// The identity domains, swapped whole on reload.
    pub domains: ArcSwap<Domains>,
    /// Key rings by domain name.
    pub rings: ArcSwap<HashMap<String, Arc<KeyRing>>>,
    /// Client authentication.
    pub authenticator: ClientAuthenticator,
    /// Grants of the token endpoint.
    pub grants: Grants<SqlStore>,
    /// Prometheus output.
    pub metrics: PrometheusHandle,
    /// Largest accepted body.
    pub max_body_bytes: usize,
    /// The time a client has to send a request's body (`server.body_read_timeout`).
    pub body_read_timeout: Duration,
    /// Requests answered after this long are logged at warn (`server.slow_request`).
    pub slow_request: Option<Duration>,
    /// Key settings.
    pub keys: KeysConfig,
    /// This process's name in job leases.
    pub instance: String,
    /// The proxy header naming the client address, if any.
    pub client_address_header: Option<axum::http::HeaderName>,
    /// The trusted proxy's header carrying the client certificate, if any.
    pub client_certificate_header: Option<axum::http::HeaderName>,
    /// The peers whose proxy headers are read (`server.trusted_proxies`).
    pub trusted_proxies: crate::config::TrustedProxies,
    /// Whether client certificates chain to the configured client CAs.
    pub client_trust: Arc<ClientCertTrust>,
    /// The HTTP client of back-channel logout deliveries (timeouts, no redirects).
    pub logout_http: reqwest::Client,
    /// JWT access tokens whose signature this process has verified (never their revocation).
    pub verified_jwts: crate::oauth::verified_jwts::VerifiedJwts,
    /// Audit events of the token endpoint, stored in batches off the request path.
    pub audit_queue: crate::audit::AuditQueue,
    /// Password and user-code checks in flight, per throttling bucket.
    pub gate: crate::oauth::throttle::Gate,
}

/// The state handed to handlers.
#[derive(Clone)]
pub struct AppState(pub Arc<App>);

impl Deref for AppState {
    type Target = App;
    fn deref(&self) -> &App {
        &self.0
    }
}

/// The bounds of the latency histogram's buckets, in seconds: from 1 ms (a token from a warm
/// cache) to 30 s (a request of the slowest kind timing out).
const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The process-wide Prometheus recorder (metrics macros report to one global recorder). Installed
/// once; servers started later in the same process (tests) share it.
fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            // Latencies go into fixed buckets (a Prometheus histogram), which several replicas'
            // scrapes add up into one; a summary's quantiles cannot be combined. The builder
            // refuses only an empty list of buckets, which LATENCY_BUCKETS is not.
            let recorder = PrometheusBuilder::new()
                .set_buckets(&LATENCY_BUCKETS)
                .unwrap_or_else(|_| PrometheusBuilder::new())
                .build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("another metrics recorder is installed: /metrics will stay empty");
            }
            handle
        })
        .clone()
}

/// Opens the store named by the configuration and applies migrations.
pub async fn open_store(config: &Config) -> anyhow::Result<SqlStore> {
    let limit = |s: Seconds| (s.0 > 0).then(|| Duration::from_secs(s.0.unsigned_abs()));
    let limits = Limits {
        max_lifetime: limit(config.database.max_lifetime),
        idle_timeout: limit(config.database.idle_timeout),
        slow_statement: config.database.slow_statement.non_zero(),
    };
    let store = SqlStore::connect_with(&config.database.url, config.database.max_connections, limits)
        .await
        .with_context(|| "cannot open the database")?;
    store.migrate().await.context("cannot migrate the database")?;
    Ok(store)
}

/// Loads (or creates, with a warning) the key-encryption key.
pub fn load_kek(config: &Config) -> anyhow::Result<Kek> {
    let env_value = config.keys.kek_env_value()?;
    let (kek, source) =
        Kek::load_or_create(env_value.as_deref(), &config.keys.kek_env, &config.keys.kek_file)
            .context("cannot load the key-encryption key")?;
    if let KekSource::Generated(path) = &source {
        tracing::warn!(
            kek.file = %path.display(),
            "GENERATED A NEW KEY-ENCRYPTION KEY: the signing keys in the store are encrypted with it. \
             Back it up, keep it secret, and give every replica the same one (set {} or keys.kek_file). \
             Losing it makes the stored signing keys unusable.",
            config.keys.kek_env
        );
    }
    Ok(kek)
}

/// A running server.
pub struct ServerHandle {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// The address of the mutual-TLS listener, when `server.mtls_listen` is set.
    pub mtls_addr: Option<SocketAddr>,
    /// The address of the metrics listener, when `server.metrics_listen` is set.
    pub metrics_addr: Option<SocketAddr>,
    state: AppState,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    /// The `[server]`, `[database]` and `[keys]` the process started with: a reload applies the
    /// domains only, and checks them against these.
    started_with: StartSettings,
}

/// The sections of the configuration fixed at start.
struct StartSettings {
    server: crate::config::ServerConfig,
    database: crate::config::DatabaseConfig,
    keys: KeysConfig,
}

impl StartSettings {
    fn of(config: &Config) -> StartSettings {
        StartSettings {
            server: config.server.clone(),
            database: config.database.clone(),
            keys: config.keys.clone(),
        }
    }

    /// Puts these sections back into `config`; returns the names of those that differed.
    fn restore(&self, config: &mut Config) -> Vec<&'static str> {
        let mut changed = Vec::new();
        if config.server != self.server {
            changed.push("server");
        }
        if config.database != self.database {
            changed.push("database");
        }
        if config.keys != self.keys {
            changed.push("keys");
        }
        config.server = self.server.clone();
        config.database = self.database.clone();
        config.keys = self.keys.clone();
        changed
    }
}

impl ServerHandle {
    /// The shared state (for tests and the CLI).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Stops accepting requests, lets in-flight ones finish, stops background jobs.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        self.state.audit_queue.flush().await;
        self.state.store.close().await;
    }

    /// Applies a new configuration (what SIGHUP does): loads the domains' keys, reconciles the
    /// store and swaps the domains. The keys come first, so that a key that cannot be loaded
    /// refuses the reload before any client or user is changed. `[server]`, `[database]` and
    /// `[keys]` stay as the process started: a change there is logged at warn (it takes effect
    /// at the next start), and the domains are validated against the running sections.
    pub async fn reload(&self, mut config: Config) -> anyhow::Result<()> {
        for section in self.started_with.restore(&mut config) {
            tracing::warn!(
                config.section = section,
                "[{section}] differs from the one the server started with: it takes effect at the next start, a reload applies the domains only"
            );
        }
        config.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
        let domains = Domains::from_config(&config).map_err(anyhow::Error::msg)?;
        reconcile::precheck_revision(&self.state.store, domains.revision).await?;
        let now = self.state.clock.now();
        let rings = load_rings(&self.state, &domains, now).await?;
        let report = reconcile::apply(&self.state.store, &domains, now).await?;
        self.state.rings.store(Arc::new(rings));
        self.state.domains.store(Arc::new(domains));
        // Users disabled or given a new password were signed out: their relying parties are told
        // now, at the addresses of the new configuration.
        deliver_logouts_soon(&self.state);
        tracing::info!(changes = %report.summary(), "configuration reloaded");
        Ok(())
    }
}

/// Checks that `kek` opens every stored key of `domains` ([`keyring::check_kek`]).
pub async fn check_keys(store: &SqlStore, kek: &Kek, domains: &Domains) -> anyhow::Result<()> {
    for d in &domains.list {
        keyring::check_kek(store, kek, &d.name)
            .await
            .with_context(|| format!("domain {}: the stored signing keys", d.name))?;
    }
    Ok(())
}

async fn load_rings(
    state: &App,
    domains: &Domains,
    now: i64,
) -> anyhow::Result<HashMap<String, Arc<KeyRing>>> {
    let existing = state.rings.load();
    let mut rings = HashMap::new();
    // The key-encryption key was checked against the stored keys at start (check_keys), before
    // anything was generated with it; a reload keeps it.
    for d in &domains.list {
        let created = keyring::ensure_keys(&state.store, &state.kek, &d.name, &d.signing_algs(), now).await?;
        for kid in created {
            tracing::info!(domain = %d.name, key.kid = %kid, "signing key generated");
        }
        let ring = existing
            .get(&d.name)
            .cloned()
            .unwrap_or_else(|| Arc::new(KeyRing::new(&d.name)));
        ring.refresh(&state.store, &state.kek).await?;
        rings.insert(d.name.clone(), ring);
    }
    Ok(rings)
}

/// Starts the server on `listener`: store, migrations, reconciliation, keys, routes, jobs.
pub async fn start(
    config: Config,
    listener: tokio::net::TcpListener,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<ServerHandle> {
    let started_with = StartSettings::of(&config);
    let k = &config.keys;
    if k.publish_ahead.0 < k.refresh_interval.0 + 300 {
        tracing::warn!(
            keys.publish_ahead = k.publish_ahead.0,
            keys.refresh_interval = k.refresh_interval.0,
            "keys.publish_ahead is shorter than keys.refresh_interval plus the 5 minutes resource servers cache the JWKS: \
             after a rotation, tokens signed by the new key may be refused by replicas and resource servers that do not have it yet"
        );
    }
    // Certificates, keys and the mTLS listener first: a bad file or a busy port stops the start
    // before the store is touched.
    let (client_trust, tls) = load_certificates(&config, clock.clone())?;
    let client_trust = Arc::new(client_trust);
    let mtls_listener = bind_extra(&config.server.mtls_listen, "server.mtls_listen").await?;
    let metrics_listener = bind_extra(&config.server.metrics_listen, "server.metrics_listen").await?;
    let store = open_store(&config).await?;
    let kek = load_kek(&config)?;
    let domains = Domains::from_config(&config).map_err(anyhow::Error::msg)?;
    // A key-encryption key that cannot open the stored keys stops the start before the file is
    // applied to the (perhaps shared) store, as a reload does.
    check_keys(&store, &kek, &domains).await?;
    let now = clock.now();
    let report = reconcile::apply(&store, &domains, now).await?;
    tracing::info!(changes = %report.summary(), "configuration reconciled with the store");
    let hasher = PasswordHasher::new(config.server.argon2_max_concurrent);
    let audit_queue = crate::audit::AuditQueue::start(store.clone());
    let app = App {
        audit_queue,
        store,
        kek,
        clock,
        domains: ArcSwap::from_pointee(Domains {
            list: Vec::new(),
            revision: None,
        }),
        rings: ArcSwap::from_pointee(HashMap::new()),
        authenticator: ClientAuthenticator::new(hasher),
        grants: Grants::all(),
        metrics: metrics_handle(),
        max_body_bytes: config.server.max_body_bytes,
        body_read_timeout: Duration::from_millis(config.server.body_read_timeout.0.max(1)),
        slow_request: config.server.slow_request.non_zero(),
        keys: config.keys.clone(),
        instance: random_id(),
        client_address_header: config
            .server
            .client_address_header
            .as_deref()
            .and_then(|h| axum::http::HeaderName::try_from(h).ok()),
        client_certificate_header: config
            .server
            .client_certificate_header
            .as_deref()
            .and_then(|h| axum::http::HeaderName::try_from(h).ok()),
        // Validated with the configuration: an entry that does not parse never gets here.
        trusted_proxies: crate::config::TrustedProxies::parse(&config.server.trusted_proxies)
            .unwrap_or_default(),
        client_trust,
        logout_http: reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(LOGOUT_TIMEOUT_SECS))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("cannot build the back-channel logout HTTP client")?,
        verified_jwts: Default::default(),
        gate: Default::default(),
    };
    let rings = load_rings(&app, &domains, now).await?;
    app.rings.store(Arc::new(rings));
    app.domains.store(Arc::new(domains));
    let state = AppState(Arc::new(app));

    let addr = listener.local_addr()?;
    let (stop, stop_rx) = watch::channel(false);
    let router = crate::http::router(state.clone(), metrics_listener.is_none());
    let headers_within = Duration::from_millis(config.server.header_read_timeout.0.max(1));
    let per_address = config.server.tls_handshakes_per_address;
    let server = match &tls.main {
        Some(c) => serve(
            TlsListener::new(listener, c.clone(), None, per_address)?,
            router.clone(),
            stop_rx.clone(),
            headers_within,
        ),
        None => serve(listener, router.clone(), stop_rx.clone(), headers_within),
    };
    let mut tasks = vec![server];
    let mut mtls_addr = None;
    if let (Some(tcp), Some(c)) = (mtls_listener, &tls.mtls) {
        let a = tcp.local_addr()?;
        let l = TlsListener::new(tcp, c.clone(), Some(state.client_trust.clone()), per_address)?;
        tasks.push(serve(l, router, stop_rx.clone(), headers_within));
        tracing::info!(listen = %a, "mutual-TLS listener is serving");
        mtls_addr = Some(a);
    }
    let mut metrics_addr = None;
    if let Some(l) = metrics_listener {
        let a = l.local_addr()?;
        let router = crate::http::metrics_router(state.clone());
        tasks.push(serve(l, router, stop_rx.clone(), headers_within));
        tracing::info!(listen = %a, "metrics listener is serving");
        metrics_addr = Some(a);
    }
    tasks.extend([
        spawn_job(
            state.clone(),
            stop_rx.clone(),
            Duration::from_secs(secs(state.keys.refresh_interval.0)),
            refresh_keys,
        ),
        spawn_job(
            state.clone(),
            stop_rx.clone(),
            Duration::from_secs(secs(config.server.gc_interval.0)),
            {
                let batch = config.server.gc_batch;
                let retention = config.server.audit_retention.0;
                move |s| async move {
                    collect_garbage(&s, batch, retention).await;
                }
            },
        ),
        spawn_job(
            state.clone(),
            stop_rx.clone(),
            Duration::from_secs(secs(state.keys.refresh_interval.0)),
            |s| async move {
                rotate_keys(&s).await;
            },
        ),
        // The recorder keeps every latency sample until it is drained: without this, memory
        // grew with the request count (about 5 MB a minute at 15,000 requests/s in the soak).
        spawn_job(
            state.clone(),
            stop_rx.clone(),
            Duration::from_secs(5),
            |s| async move {
                metrics_handle().run_upkeep();
                // Connections past database.max_lifetime or idle_timeout, while they sit idle.
                s.store.close_expired_connections().await;
                // Revocation lists of client certificates, when a file changed.
                match s.client_trust.reload_revocations() {
                    Ok(true) => tracing::info!("client certificate revocation lists read again"),
                    Ok(false) => {}
                    Err(e) => tracing::error!(
                        error.cause = format!("{e:#}"),
                        "cannot read server.client_crl_files: the lists read before stay in force"
                    ),
                }
            },
        ),
        spawn_job(
            state.clone(),
            stop_rx,
            Duration::from_secs(secs(config.server.logout_delivery_interval.0)),
            |s| async move {
                deliver_logouts(&s).await;
            },
        ),
    ]);
    tracing::info!(listen = %addr, tls = tls.main.is_some(), "ostiary is serving");
    Ok(ServerHandle {
        addr,
        mtls_addr,
        metrics_addr,
        state,
        stop,
        tasks,
        started_with,
    })
}

/// The listener of an optional address setting (`key` names it in the error).
async fn bind_extra(addr: &Option<String>, key: &str) -> anyhow::Result<Option<tokio::net::TcpListener>> {
    match addr {
        Some(a) => Ok(Some(
            tokio::net::TcpListener::bind(a)
                .await
                .with_context(|| format!("cannot listen on {a} ({key})"))?,
        )),
        None => Ok(None),
    }
}

/// The trust anchors and revocation lists of client certificates, and the listeners' TLS
/// configurations: every certificate, key and list file the configuration names, read and
/// checked (by the start, and by `ostiary check-config`).
pub fn load_certificates(
    config: &Config,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<(ClientCertTrust, TlsConfigs)> {
    let trust = ClientCertTrust::load(
        config.server.client_ca_file.as_deref(),
        &config.server.client_crl_files,
        clock,
    )
    .context("cannot load server.client_ca_file and client_crl_files")?;
    Ok((trust, tls_configs(config)?))
}

/// The TLS configurations of the listeners: the main one's (when it speaks TLS) and the
/// mutual-TLS one's (when configured).
pub struct TlsConfigs {
    main: Option<Arc<rustls::ServerConfig>>,
    mtls: Option<Arc<rustls::ServerConfig>>,
}

fn tls_configs(config: &Config) -> anyhow::Result<TlsConfigs> {
    let s = &config.server;
    let (Some(cert), Some(key)) = (&s.tls_cert_file, &s.tls_key_file) else {
        return Ok(TlsConfigs {
            main: None,
            mtls: None,
        });
    };
    let main = tls::server_config(cert, key, false).context("cannot set up TLS")?;
    let mtls = match &s.mtls_listen {
        Some(_) => Some(tls::server_config(cert, key, true).context("cannot set up mutual TLS")?),
        None => None,
    };
    Ok(TlsConfigs {
        main: Some(main),
        mtls,
    })
}

/// Serves `listener` (plain TCP, or TLS with the peer's certificate) until `stop`, then lets
/// in-flight requests finish. Each request carries `ConnectInfo` of the listener's address type
/// (`SocketAddr`, or `TlsPeer`). This is axum::serve's loop plus a deadline on request headers
/// (`server.header_read_timeout`): axum 0.8's serve gives hyper no timer, so a client that sent
/// half its headers held its connection, and a file descriptor, for as long as it liked.
fn serve<L>(
    mut listener: L,
    router: axum::Router,
    mut stop: watch::Receiver<bool>,
    headers_within: Duration,
) -> JoinHandle<()>
where
    L: axum::serve::Listener,
    L::Addr: Clone + Send + Sync + 'static,
{
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;
    use tower::ServiceExt as _;

    tokio::spawn(async move {
        // HTTP/1.1 only, as axum::serve without axum's http2 feature.
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(headers_within);
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        loop {
            let (io, peer) = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = stop.wait_for(|s| *s) => break,
            };
            let service =
                router
                    .clone()
                    .map_request(move |mut req: axum::http::Request<hyper::body::Incoming>| {
                        req.extensions_mut()
                            .insert(axum::extract::ConnectInfo(peer.clone()));
                        req.map(axum::body::Body::new)
                    });
            let conn = builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(service));
            let conn = graceful.watch(conn);
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::trace!(error.cause = %e, "connection ended with an error");
                }
            });
        }
        graceful.shutdown().await;
    })
}

fn secs(n: i64) -> u64 {
    u64::try_from(n.max(1)).unwrap_or(1)
}

fn spawn_job<F, Fut>(
    state: AppState,
    mut stop: watch::Receiver<bool>,
    every: Duration,
    job: F,
) -> JoinHandle<()>
where
    F: Fn(AppState) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => job(state.clone()).await,
                _ = async { let _ = stop.wait_for(|s| *s).await; } => break,
            }
        }
    })
}

/// Re-reads every domain's keys, so keys rotated by another replica or the CLI are published.
async fn refresh_keys(state: AppState) {
    let rings = state.rings.load_full();
    for (name, ring) in rings.iter() {
        if let Err(e) = ring.refresh(&state.store, &state.kek).await {
            tracing::warn!(domain = %name, error.cause = %e, "signing keys could not be refreshed");
        }
    }
}

/// Adds a collection round's rows to `removed`; whether more may be due (not after a failure,
/// logged as `failed`).
fn counted(
    round: crate::store::StoreResult<crate::store::Collected>,
    removed: &mut u64,
    failed: &str,
) -> bool {
    match round {
        Ok(c) => {
            *removed += c.rows;
            c.more
        }
        Err(e) => {
            tracing::warn!(error.cause = %e, "{failed}");
            false
        }
    }
}

/// The longest a garbage-collection run keeps deleting (rounds of `server.gc_batch` rows of each
/// kind, for as long as a kind had a whole batch due); the `gc` lease lasts 120 s.
const GC_BUDGET: Duration = Duration::from_secs(30);

/// Removes expired rows in bounded batches; one replica at a time: returns None when another
/// replica holds the `gc` lease, else how many rows (and retired keys) this run removed.
pub async fn collect_garbage(state: &AppState, batch: i64, audit_retention: i64) -> Option<u64> {
    let now = state.clock.now();
    match state.store.acquire_lease("gc", &state.instance, now, 120).await {
        Ok(true) => {}
        Ok(false) => return None,
        Err(e) => {
            tracing::warn!(error.cause = %e, "garbage collection lease unavailable");
            return None;
        }
    }
    let mut removed = 0;
    // Round after round while a kind had a whole batch due, within GC_BUDGET (well inside the
    // lease): a store written faster than one batch a run would otherwise grow without end.
    let started = std::time::Instant::now();
    let audit_before = now - audit_retention;
    let (mut expired, mut finished) = (true, true);
    while expired || finished {
        if expired {
            let round = state.store.delete_expired(now, batch, audit_before).await;
            expired = counted(round, &mut removed, "garbage collection failed");
        }
        if finished {
            let round = state.store.delete_finished_logouts(now, batch).await;
            finished = counted(round, &mut removed, "sign-out garbage collection failed");
        }
        if started.elapsed() >= GC_BUDGET {
            break;
        }
    }
    if removed > 0 {
        tracing::debug!(rows = removed, "expired rows removed");
    }
    let domains = state.domains.load_full();
    for d in &domains.list {
        // A retired key leaves the JWKS once its tokens have expired, but is kept (in the
        // ring, for verifying) until the longest session has ended too: an ID token stays a
        // valid id_token_hint, expired or not, while the session it came from lives.
        let keep = d.max_token_lifetime().max(d.session_max_lifetime);
        match keyring::prune(&state.store, &d.name, now, keep).await {
            Ok(n) => removed += u64::try_from(n).unwrap_or(0),
            Err(e) => tracing::warn!(domain = %d.name, error.cause = %e, "retired keys could not be pruned"),
        }
    }
    Some(removed)
}

/// Stages new keys when the rotation interval is due; one replica at a time (checked at the
/// key-refresh cadence; the lease outlives a few refresh intervals). Returns None when another
/// replica holds the `rotate` lease, else the kids this run staged.
pub async fn rotate_keys(state: &AppState) -> Option<Vec<String>> {
    let now = state.clock.now();
    if !matches!(
        state
            .store
            .acquire_lease("rotate", &state.instance, now, 3000)
            .await,
        Ok(true)
    ) {
        return None;
    }
    let mut staged = Vec::new();
    let domains = state.domains.load_full();
    for d in &domains.list {
        let r = keyring::rotate_if_due(
            &state.store,
            &state.kek,
            &d.name,
            &d.signing_algs(),
            now,
            state.keys.rotation_interval.0,
            state.keys.publish_ahead.0,
        )
        .await;
        match r {
            Ok(rotation) => {
                for kid in rotation.created {
                    tracing::info!(domain = %d.name, key.kid = %kid, "signing key rotation staged");
                    staged.push(kid);
                }
                if let Some(e) = rotation.failed {
                    tracing::warn!(domain = %d.name, error.cause = %e, "key rotation failed part-way");
                }
            }
            Err(e) => tracing::warn!(domain = %d.name, error.cause = %e, "key rotation failed"),
        }
    }
    Some(staged)
}

/// Seconds a back-channel logout POST may take.
const LOGOUT_TIMEOUT_SECS: u64 = 10;
/// Deliveries attempted per run of the outbox.
const LOGOUT_BATCH: i64 = 50;

/// Back-Channel Logout 1.0 s2.5: delivers the due logouts of the outbox once. Each is claimed by
/// an atomic conditional update first, so replicas may run this together. A failure is retried
/// with exponential backoff until the attempts are spent, then given up and logged. Returns how
/// many were delivered.
pub async fn deliver_logouts(state: &AppState) -> usize {
    let now = state.clock.now();
    let due = match state.store.due_logouts(now, LOGOUT_BATCH).await {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error.cause = %e, "back-channel logouts could not be read");
            return 0;
        }
    };
    // One line per client: its deliveries one after another, the rest of them left for the next
    // run at its first failure (an endpoint that does not answer costs one timeout a run, not
    // one a delivery); the clients side by side, so that one of them cannot hold up the others.
    let mut lines: Vec<Vec<DeliveryRow>> = Vec::new();
    let mut index: HashMap<(String, String), usize> = HashMap::new();
    for row in due {
        let key = (row.domain.clone(), row.client_id.clone());
        let at = *index.entry(key).or_insert_with(|| {
            lines.push(Vec::new());
            lines.len() - 1
        });
        lines[at].push(row);
    }
    futures_util::stream::iter(lines)
        .map(|line| async move {
            let mut delivered = 0;
            for row in line {
                match deliver_claimed(state, row).await {
                    Some(true) => delivered += 1,
                    Some(false) => break,
                    None => {}
                }
            }
            delivered
        })
        .buffer_unordered(LOGOUT_CONCURRENCY)
        .fold(0, |sum, n| std::future::ready(sum + n))
        .await
}

/// Clients whose deliveries one run of the outbox sends at once.
const LOGOUT_CONCURRENCY: usize = 8;

/// Claims one due delivery and attempts it: whether it was delivered, or `None` when it was not
/// attempted (another replica claimed it, or the claim could not be written).
async fn deliver_claimed(state: &AppState, row: DeliveryRow) -> Option<bool> {
    // The claim outlasts the request's timeout, so a crashed attempt is retried later.
    // Timed from now, not from the start of the run: the rows before took their time.
    let claimed_at = state.clock.now();
    let claim_until = claimed_at + i64::try_from(LOGOUT_TIMEOUT_SECS).unwrap_or(10) + 50;
    match state.store.claim_logout(&row.id, claimed_at, claim_until).await {
        Ok(true) => {}
        Ok(false) => return None,
        Err(e) => {
            tracing::warn!(error.cause = %e, "back-channel logout could not be claimed");
            return None;
        }
    }
    let attempts = row.attempts + 1;
    let result = deliver_one(state, &row).await;
    let now = state.clock.now();
    let stored = match &result {
        Ok(()) => {
            tracing::info!(domain = %row.domain, client_id = %row.client_id, attempts, "back-channel logout delivered");
            state.store.logout_delivered(&row.id, now).await
        }
        Err(why) => {
            let retry = next_attempt(attempts, now);
            match retry {
                Some(at) => {
                    tracing::info!(domain = %row.domain, client_id = %row.client_id, attempts, retry_in = at - now, error.cause = %why, "back-channel logout failed; will retry")
                }
                None => {
                    tracing::warn!(domain = %row.domain, client_id = %row.client_id, attempts, error.cause = %why, "back-channel logout failed; giving up")
                }
            }
            state.store.logout_failed(&row.id, now, retry, why).await
        }
    };
    if let Err(e) = stored {
        tracing::warn!(error.cause = %e, "back-channel logout outcome could not be stored");
    }
    Some(result.is_ok())
}

/// Runs the outbox now, without waiting for it (after a sign-out queued deliveries).
pub fn deliver_logouts_soon(state: &AppState) {
    let state = state.clone();
    tokio::spawn(async move {
        deliver_logouts(&state).await;
    });
}

/// POSTs one logout token (signed now) to the client's current back-channel endpoint.
async fn deliver_one(state: &AppState, row: &DeliveryRow) -> Result<(), String> {
    let domains = state.domains.load_full();
    let domain = domains
        .list
        .iter()
        .find(|d| d.name == row.domain)
        .ok_or("the domain is no longer configured")?;
    let client = domain
        .client(&row.client_id)
        .ok_or("the client is no longer registered")?;
    let uri = client
        .backchannel_logout_uri
        .as_deref()
        .ok_or("the client no longer has a backchannel_logout_uri")?;
    let ring = state
        .rings
        .load()
        .get(&domain.name)
        .cloned()
        .ok_or("the domain's keys are not loaded")?;
    let keys = ring.current();
    let token = logout_token(
        domain,
        &keys,
        client,
        &row.sub,
        row.sid.as_deref(),
        state.clock.now(),
    )
    .map_err(|e| e.description.to_string())?;
    // Back-Channel Logout 1.0 s2.5: a form POST of logout_token; 200 (or 204) is success.
    let resp = state
        .logout_http
        .post(uri)
        .form(&[("logout_token", token.as_str())])
        .send()
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(format!("the client answered {}", resp.status()))
    }
}
