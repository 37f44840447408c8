//! The command line: serve, check-config, hash-secret, migrate, keys, user, seed.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use zeroize::Zeroizing;

use crate::app;
use crate::audit::{self, AuditEvent, Outcome};
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, LogFormat};
use crate::crypto::kek::Kek;
use crate::crypto::secrets::{SecretHash, argon2_hash, random_id, random_token};
use crate::domain::{Domain, Domains};
use crate::keyring;
use crate::oauth::logout::around_credential_change;
use crate::reconcile;
use crate::store::admin::AdminStore;
use crate::store::{ClientRow, DirectoryStore, KeyStore, SqlStore, StoreResult, UserRow};

/// Ostiary: an OAuth 2.0 and OpenID Connect authorization server.
#[derive(Debug, Parser)]
#[command(name = "ostiary", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the server.
    Serve(ConfigArg),
    /// Validates a configuration and shows what serving it would change in the store.
    CheckConfig(ConfigArg),
    /// Reads a secret on stdin and prints its argon2id hash (for password_hash or secret_hash).
    HashSecret {
        /// Instead, generate a new 256-bit client secret and print it with its hash.
        #[arg(long)]
        generate: bool,
    },
    /// Applies database migrations.
    Migrate(ConfigArg),
    /// Lists or rotates signing keys.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Manages users kept in the store (users declared in configuration are managed there).
    User {
        #[command(subcommand)]
        action: UserAction,
    },
    /// Fills the store with load-test data: per user a session, a consent, a refresh-token family
    /// with its tokens; no seeded token can be presented (only hashes without plaintext).
    Seed(SeedArgs),
}

#[derive(Debug, clap::Args)]
struct SeedArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The domain (may be left out when there is only one).
    #[arg(long)]
    domain: Option<String>,
    /// How many users to seed.
    #[arg(long)]
    count: i64,
    /// The client the rows belong to (default: each batch the next client that may use the
    /// authorization_code grant).
    #[arg(long)]
    client: Option<String>,
    /// Percentage of users whose rows are already expired, for the garbage collector.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(i64).range(0..=100))]
    expired_percent: i64,
}

#[derive(Debug, clap::Args)]
struct UserTarget {
    #[command(flatten)]
    config: ConfigArg,
    /// The domain (may be left out when there is only one).
    #[arg(long)]
    domain: Option<String>,
    /// The username.
    username: String,
}

#[derive(Debug, Subcommand)]
enum UserAction {
    /// Adds a user; the password is read on stdin.
    Add {
        #[command(flatten)]
        target: UserTarget,
        /// The `email` claim.
        #[arg(long)]
        email: Option<String>,
        /// The `name` claim.
        #[arg(long)]
        name: Option<String>,
    },
    /// Replaces a user's password with one read on stdin.
    SetPassword {
        #[command(flatten)]
        target: UserTarget,
    },
    /// Disables a user: they can no longer sign in.
    Disable {
        #[command(flatten)]
        target: UserTarget,
    },
    /// Lists a domain's users.
    List {
        #[command(flatten)]
        config: ConfigArg,
        /// The domain (may be left out when there is only one).
        #[arg(long)]
        domain: Option<String>,
    },
}

#[derive(Debug, clap::Args)]
struct ConfigArg {
    /// Configuration file.
    #[arg(long, env = "OSTIARY_CONFIG")]
    config: PathBuf,
}

#[derive(Debug, Subcommand)]
enum KeysAction {
    /// Lists each domain's keys and their state.
    List {
        #[command(flatten)]
        config: ConfigArg,
        /// Only this domain.
        #[arg(long)]
        domain: Option<String>,
    },
    /// Stages a new key per algorithm: published now, signing after keys.publish_ahead.
    Rotate {
        #[command(flatten)]
        config: ConfigArg,
        /// Only this domain.
        #[arg(long)]
        domain: Option<String>,
    },
}

/// Runs the command line; returns the process exit code.
pub async fn run(cli: Cli) -> i32 {
    let result = match cli.command {
        Command::Serve(c) => serve(&c.config).await,
        Command::CheckConfig(c) => return check_config(&c.config).await,
        Command::HashSecret { generate } => hash_secret(generate),
        Command::Migrate(c) => migrate(&c.config).await,
        Command::Keys { action } => keys(action).await,
        Command::User { action } => user(action).await,
        Command::Seed(args) => seed(args).await,
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    }
}

fn load_config(path: &Path) -> anyhow::Result<Config> {
    Config::load(path).map_err(|errs| anyhow::anyhow!("invalid configuration {}:\n{errs}", path.display()))
}

/// Sets up logging: `RUST_LOG` filters (default info), `server.log_format` picks text or JSON.
pub fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: a log file or a journal gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

async fn serve(path: &Path) -> anyhow::Result<()> {
    let config = load_config(path)?;
    init_tracing(config.server.log_format);
    // Before the port opens: from then on a SIGHUP or SIGTERM is handled here, never by the
    // signal's default action, which ends the process (a reload sent while the server starts).
    let signals = install_signals();
    let listener = tokio::net::TcpListener::bind(&config.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.server.listen))?;
    let handle = app::start(config, listener, Arc::new(SystemClock)).await?;
    wait_for_signals(signals, &handle, path).await;
    tracing::info!("shutting down");
    handle.shutdown().await;
    Ok(())
}

/// SIGTERM's and SIGHUP's streams; None when they could not be installed (then only Ctrl-C
/// stops the server).
#[cfg(unix)]
type Signals = Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>;

#[cfg(unix)]
fn install_signals() -> Signals {
    use tokio::signal::unix::{SignalKind, signal};
    match (signal(SignalKind::terminate()), signal(SignalKind::hangup())) {
        (Ok(term), Ok(hup)) => Some((term, hup)),
        _ => None,
    }
}

#[cfg(unix)]
async fn wait_for_signals(signals: Signals, handle: &app::ServerHandle, path: &Path) {
    let Some((mut term, mut hup)) = signals else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    // A SIGTERM that arrives while a reload runs is kept by its stream and ends the process once
    // the reload is done: stopping partway would leave the store half reconciled.
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return,
            _ = term.recv() => return,
            _ = hup.recv() => match Config::load(path) {
                Ok(config) => {
                    if let Err(e) = handle.reload(config).await {
                        tracing::error!(error.cause = %e, "reload failed: the previous domains stay in force (store changes already made, if any, are logged above as store reconciled)");
                    }
                }
                Err(errs) => {
                    for e in &errs.0 {
                        tracing::error!(config.path = %e.path, "{}", e.message);
                    }
                    tracing::error!("reload refused: the configuration is invalid; the previous one stays in force");
                }
            },
        }
    }
}

#[cfg(not(unix))]
type Signals = ();

#[cfg(not(unix))]
fn install_signals() -> Signals {}

#[cfg(not(unix))]
async fn wait_for_signals(_: Signals, _: &app::ServerHandle, _: &Path) {
    let _ = tokio::signal::ctrl_c().await;
}

/// A store with nothing in it, for planning against a database that does not exist yet.
struct EmptyStore;

impl DirectoryStore for EmptyStore {
    async fn list_clients(&self, _: &str) -> StoreResult<Vec<ClientRow>> {
        Ok(Vec::new())
    }
    async fn upsert_client(&self, _: &str, _: &str, _: &str, _: bool, _: i64) -> StoreResult<()> {
        Ok(())
    }
    async fn list_config_users(&self, _: &str) -> StoreResult<Vec<UserRow>> {
        Ok(Vec::new())
    }
    async fn upsert_user(&self, _: &UserRow) -> StoreResult<bool> {
        Ok(true)
    }
    async fn insert_user(&self, _: &UserRow) -> StoreResult<()> {
        Ok(())
    }
    async fn find_user(&self, _: &str, _: &str) -> StoreResult<Option<UserRow>> {
        Ok(None)
    }
    async fn set_user_password(&self, _: &str, _: &str, _: &str, _: i64) -> StoreResult<bool> {
        Ok(false)
    }
    async fn set_user_status(&self, _: &str, _: &str, _: &str, _: i64) -> StoreResult<()> {
        Ok(())
    }
    async fn config_revision(&self) -> StoreResult<Option<i64>> {
        Ok(None)
    }
    async fn claim_config_revision(&self, _: i64, _: i64) -> StoreResult<bool> {
        Ok(true)
    }
}

/// The key-encryption key serving would use (from `keys.kek_env` or `keys.kek_file`, none
/// created) opens the keys stored for `domains`; with none given, no key may be stored (serving
/// would create a new key-encryption key, which opens none).
async fn kek_opens_the_keys(config: &Config, store: &SqlStore, domains: &Domains) -> anyhow::Result<()> {
    let env_value = config.keys.kek_env_value()?;
    match Kek::load(env_value.as_deref(), &config.keys.kek_file)? {
        Some(kek) => app::check_keys(store, &kek, domains).await,
        None => {
            for d in &domains.list {
                if !store.list_keys(&d.name).await?.is_empty() {
                    bail!(
                        "domain {} has signing keys in the store, and no key-encryption key is given ({} or {}) to open them",
                        d.name,
                        config.keys.kek_env,
                        config.keys.kek_file.display()
                    );
                }
            }
            Ok(())
        }
    }
}

async fn check_config(path: &Path) -> i32 {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(errs) => {
            eprintln!("{}: {} problem(s)", path.display(), errs.0.len());
            for e in &errs.0 {
                eprintln!("{e}");
            }
            return 1;
        }
    };
    let domains = match Domains::from_config(&config) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    // The files serving reads at start: the server's certificate and key, the client CAs and
    // their revocation lists.
    if let Err(e) = app::load_certificates(&config, Arc::new(SystemClock)) {
        eprintln!("{e:#}");
        return 1;
    }
    println!("{}: valid", path.display());
    for d in &config.domains {
        println!("domain {} at {}", d.name, d.issuer);
        for rs in &d.resource_servers {
            let scopes: Vec<&str> = rs.scopes.iter().map(|s| s.name.as_str()).collect();
            println!(
                "  resource server {} (scopes: {})",
                rs.audience,
                scopes.join(", ")
            );
        }
        for c in &d.clients {
            println!(
                "  client {} ({}; grants: {}; scopes: {}){}",
                c.client_id,
                c.token_endpoint_auth_method.as_str(),
                c.grant_types.join(", "),
                c.scopes.join(", "),
                if c.enabled { "" } else { " disabled" }
            );
        }
        for u in &d.users {
            println!("  user {}", u.username);
        }
    }
    let url = &config.database.url;
    let plan = match config.database.sqlite_path() {
        Some(file) if !file.exists() => {
            println!("store {url} does not exist yet; serving creates it");
            reconcile::plan(&EmptyStore, &domains).await
        }
        _ => {
            let ro_url = if config.database.is_sqlite() && !url.contains('?') {
                format!("{url}?mode=ro")
            } else {
                url.clone()
            };
            match SqlStore::connect(&ro_url, 1).await {
                Ok(store) if store.is_migrated().await => {
                    match store.config_revision().await {
                        Ok(stored) => {
                            if let Some(why) = reconcile::revision_refusal(domains.revision, stored) {
                                eprintln!("serving would refuse this file: {why}");
                                return 1;
                            }
                        }
                        // A store not yet migrated to version 11 has no revision recorded.
                        Err(e) => println!(
                            "store revision cannot be read ({e}): none recorded if the store is older than version 11"
                        ),
                    }
                    if let Err(why) = kek_opens_the_keys(&config, &store, &domains).await {
                        eprintln!("serving would refuse to start: {why:#}");
                        return 1;
                    }
                    reconcile::plan(&store, &domains).await
                }
                Ok(_) => reconcile::plan(&EmptyStore, &domains).await,
                Err(e) => {
                    println!("store {url} cannot be read ({e}); planned changes unknown");
                    return 0;
                }
            }
        }
    };
    match plan {
        Ok(plan) if plan.changes.is_empty() => println!("store: no changes"),
        Ok(plan) => {
            println!("store changes when served ({}):", plan.summary());
            for c in &plan.changes {
                println!("  {} {} {}/{}", c.action, c.kind, c.domain, c.id);
            }
        }
        Err(e) => println!("store {url} cannot be read ({e}); planned changes unknown"),
    }
    0
}

fn read_secret_stdin() -> anyhow::Result<Zeroizing<String>> {
    let mut input = Zeroizing::new(String::new());
    std::io::stdin()
        .read_to_string(&mut input)
        .context("cannot read stdin")?;
    let secret = Zeroizing::new(input.trim_end_matches(['\r', '\n']).to_string());
    if secret.is_empty() {
        bail!("no secret on stdin");
    }
    Ok(secret)
}

/// A user's password read on stdin, within the admin API's length limits.
fn user_password_stdin() -> anyhow::Result<Zeroizing<String>> {
    let password = read_secret_stdin()?;
    if let Some(why) = crate::admin::password_refusal(&password) {
        bail!("{why}");
    }
    Ok(password)
}

fn one_domain(domains: &Domains, name: Option<&str>) -> anyhow::Result<String> {
    match (name, domains.list.as_slice()) {
        (Some(n), _) => Ok(domains
            .by_name(n)
            .with_context(|| format!("no domain named {n:?}"))?
            .name
            .clone()),
        (None, [only]) => Ok(only.name.clone()),
        (None, _) => bail!("several domains are configured: name one with --domain"),
    }
}

async fn user(action: UserAction) -> anyhow::Result<()> {
    let (config_arg, domain_arg) = match &action {
        UserAction::Add { target, .. }
        | UserAction::SetPassword { target }
        | UserAction::Disable { target } => (&target.config, target.domain.as_deref()),
        UserAction::List { config, domain } => (config, domain.as_deref()),
    };
    let config = load_config(&config_arg.config)?;
    let domains = Domains::from_config(&config).map_err(anyhow::Error::msg)?;
    let domain = one_domain(&domains, domain_arg)?;
    let store = app::open_store(&config).await?;
    let now = SystemClock.now();
    let d = domains
        .by_name(&domain)
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("no domain {domain}"))?;
    let result = run_user(&store, &d, action, now).await;
    store.close().await;
    result
}

/// An audit event of an administrative change made with the CLI (actor `cli`).
fn cli_event(kind: &'static str, domain: &str) -> AuditEvent {
    let mut e = AuditEvent::new(kind, domain, Outcome::Success);
    e.actor = "cli".into();
    e
}

async fn run_user(store: &SqlStore, d: &Domain, action: UserAction, now: i64) -> anyhow::Result<()> {
    let domain = d.name.as_str();
    let declared = |u: &UserRow| u.source == "config";
    match action {
        UserAction::Add { target, email, name } => {
            let username = target.username.trim().to_string();
            if username.is_empty() || username.chars().any(char::is_control) {
                bail!("the username must be non-empty printable text");
            }
            let password = user_password_stdin()?;
            let mut claims = serde_json::Map::new();
            if let Some(e) = email {
                claims.insert("email".into(), e.into());
            }
            if let Some(n) = name {
                claims.insert("name".into(), n.into());
            }
            let row = UserRow {
                id: random_id(),
                domain: domain.to_string(),
                username: username.clone(),
                password_hash: Some(argon2_hash(&password)?),
                status: "active".into(),
                claims: serde_json::Value::Object(claims).to_string(),
                source: "store".into(),
                config_hash: None,
                created_at: now,
                updated_at: now,
            };
            match store.insert_user(&row).await {
                Ok(()) => {
                    let event = cli_event("admin.user.created", domain)
                        .user(&row.id)
                        .details(serde_json::json!({ "username": username }));
                    audit::record(store, now, event).await;
                    println!("user {username} added to domain {domain}");
                }
                Err(crate::store::StoreError::Conflict(_)) => {
                    bail!("user {username} already exists in domain {domain}")
                }
                Err(e) => return Err(e.into()),
            }
        }
        UserAction::SetPassword { target } => {
            let user = store.find_user(domain, &target.username).await?;
            match user {
                None => bail!("no user {} in domain {domain}", target.username),
                Some(u) if declared(&u) => bail!(
                    "user {} is declared in configuration: set password_hash there",
                    u.username
                ),
                Some(u) => {
                    let password = user_password_stdin()?;
                    let hash = argon2_hash(&password)?;
                    // As the admin API does: the sessions end as signing out everywhere, and the
                    // relying parties are told (a running server delivers the queued logouts).
                    let write = store.set_user_password(domain, &u.id, &hash, now);
                    around_credential_change(store, d, Some(&u.id), now, write).await?;
                    audit::record(
                        store,
                        now,
                        cli_event("admin.user.password_reset", domain).user(&u.id),
                    )
                    .await;
                    println!("password of {} changed", u.username);
                }
            }
        }
        UserAction::Disable { target } => match store.find_user(domain, &target.username).await? {
            None => bail!("no user {} in domain {domain}", target.username),
            Some(u) if declared(&u) => bail!(
                "user {} is declared in configuration: set enabled = false there",
                u.username
            ),
            Some(u) => {
                let write = store.set_user_status(domain, &u.username, "disabled", now);
                let ending = (u.status == "active").then_some(u.id.as_str());
                around_credential_change(store, d, ending, now, write).await?;
                let event = cli_event("admin.user.updated", domain)
                    .user(&u.id)
                    .details(serde_json::json!({ "changed": ["status"], "status": "disabled" }));
                audit::record(store, now, event).await;
                println!("user {} disabled", u.username);
            }
        },
        UserAction::List { .. } => {
            // A page at a time: a store may hold millions of users.
            const PAGE: i64 = 1000;
            let mut offset = 0;
            loop {
                let (users, _) = store.list_users(domain, PAGE, offset).await?;
                for u in &users {
                    println!(
                        "{}\t{}\t{}",
                        u.username,
                        u.status,
                        if declared(u) { "configuration" } else { "store" }
                    );
                }
                if (users.len() as i64) < PAGE {
                    break;
                }
                offset += PAGE;
            }
        }
    }
    Ok(())
}

/// Users per batch: one transaction, one statement per table of this many rows.
const SEED_BATCH: i64 = 50_000;

async fn seed(args: SeedArgs) -> anyhow::Result<()> {
    if args.count < 1 {
        bail!("--count must be at least 1");
    }
    let config = load_config(&args.config.config)?;
    let domains = Domains::from_config(&config).map_err(anyhow::Error::msg)?;
    let name = one_domain(&domains, args.domain.as_deref())?;
    let d = domains
        .by_name(&name)
        .with_context(|| format!("no domain named {name:?}"))?;
    let mut clients: Vec<&Arc<crate::domain::Client>> = match &args.client {
        Some(id) => vec![
            d.client(id)
                .with_context(|| format!("no client {id:?} in domain {name}"))?,
        ],
        None => d
            .clients
            .values()
            .filter(|c| c.grant_types.contains("authorization_code"))
            .collect(),
    };
    clients.sort_by(|a, b| a.id.cmp(&b.id));
    if clients.is_empty() {
        bail!("domain {name} has no client with the authorization_code grant: name one with --client");
    }
    let store = app::open_store(&config).await?;
    let started = std::time::Instant::now();
    let now = SystemClock.now();
    let salt: String = random_token().chars().take(32).collect();
    let dead_every = match args.expired_percent {
        0 => 0,
        p => (100 / p).max(1),
    };
    let mut rows = 0;
    let mut first = 1;
    let mut batch_no = 0;
    let result = async {
        while first <= args.count {
            let client = clients[batch_no % clients.len()];
            let batch = crate::store::seed::SeedBatch {
                first,
                last: (first + SEED_BATCH - 1).min(args.count),
                now,
                salt: salt.clone(),
                domain: name.clone(),
                client_id: client.id.clone(),
                scope: client.scopes.join(" "),
                dead_every,
                session_max: d.session_max_lifetime,
                session_idle: d.session_idle_timeout,
                refresh_max: d.refresh_token_max_lifetime,
                refresh_idle: d.refresh_token_idle_lifetime,
            };
            rows += store.seed_batch(&batch).await?;
            eprintln!(
                "seeded users {}..={} ({} rows so far, {:.1}s)",
                batch.first,
                batch.last,
                rows,
                started.elapsed().as_secs_f64()
            );
            first = batch.last + 1;
            batch_no += 1;
        }
        store.analyze().await?;
        anyhow::Ok(())
    }
    .await;
    store.close().await;
    result?;
    println!(
        "seeded {} users ({rows} rows) in domain {name} in {:.1}s",
        args.count,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn hash_secret(generate: bool) -> anyhow::Result<()> {
    if generate {
        let secret = random_token();
        println!("secret: {secret}");
        println!("secret_hash: {}", SecretHash::sha256_string(&secret));
        return Ok(());
    }
    let mut input = Zeroizing::new(String::new());
    std::io::stdin()
        .read_to_string(&mut input)
        .context("cannot read stdin")?;
    let secret = input.trim_end_matches(['\r', '\n']);
    if secret.is_empty() {
        bail!("no secret on stdin");
    }
    println!("{}", argon2_hash(secret)?);
    Ok(())
}

async fn migrate(path: &Path) -> anyhow::Result<()> {
    let config = load_config(path)?;
    let store = app::open_store(&config).await?;
    store.close().await;
    println!("{}: migrated", config.database.url);
    Ok(())
}

fn selected<'a>(
    domains: &'a Domains,
    only: Option<&str>,
) -> anyhow::Result<Vec<&'a Arc<crate::domain::Domain>>> {
    match only {
        Some(name) => match domains.by_name(name) {
            Some(d) => Ok(vec![d]),
            None => bail!("no domain named {name:?}"),
        },
        None => Ok(domains.list.iter().collect()),
    }
}

async fn keys(action: KeysAction) -> anyhow::Result<()> {
    let (config_arg, only, rotate) = match &action {
        KeysAction::List { config, domain } => (config, domain.as_deref(), false),
        KeysAction::Rotate { config, domain } => (config, domain.as_deref(), true),
    };
    let config = load_config(&config_arg.config)?;
    let domains = Domains::from_config(&config).map_err(anyhow::Error::msg)?;
    let targets = selected(&domains, only)?;
    let store = app::open_store(&config).await?;
    let now = SystemClock.now();
    if rotate {
        let env_value = config.keys.kek_env_value()?;
        let Some(kek) = Kek::load(env_value.as_deref(), &config.keys.kek_file)? else {
            bail!(
                "no key-encryption key: set {} or create {} (the server creates it at first start)",
                config.keys.kek_env,
                config.keys.kek_file.display()
            );
        };
        // A key-encryption key that cannot open the stored keys would seal a key no replica
        // can open, and every restart and reload would then fail: nothing is written.
        for d in &targets {
            keyring::check_kek(&store, &kek, &d.name).await.with_context(|| {
                format!(
                    "domain {}: this key-encryption key ({} or {}) does not open the stored keys; no key was rotated",
                    d.name,
                    config.keys.kek_env,
                    config.keys.kek_file.display()
                )
            })?;
        }
        for d in &targets {
            let rotation = keyring::rotate(
                &store,
                &kek,
                &d.name,
                &d.signing_algs(),
                now,
                config.keys.publish_ahead.0,
            )
            .await;
            for (kid, at) in &rotation.already_staged {
                println!(
                    "domain {}: key {kid} is already staged, signing from {}: no new key for its algorithm",
                    d.name,
                    when(*at, now)
                );
            }
            let mut event = cli_event("admin.keys.rotated", &d.name).details(rotation.audit_details());
            if let Some(e) = rotation.failed {
                event.outcome = audit::Outcome::Failure;
                audit::record(&store, now, event).await;
                for kid in &rotation.created {
                    println!("domain {}: new key {kid} published now", d.name);
                }
                return Err(e.into());
            }
            audit::record(&store, now, event).await;
            for kid in rotation.created {
                println!(
                    "domain {}: new key {kid} published now, signing from {}",
                    d.name,
                    when(now + config.keys.publish_ahead.0, now)
                );
            }
        }
    } else {
        for d in &targets {
            println!("domain {}", d.name);
            let rows = store.list_keys(&d.name).await?;
            for r in &rows {
                let newer = rows
                    .iter()
                    .filter(|o| o.alg == r.alg && o.generation > r.generation);
                let successor_active = newer.clone().any(|o| o.activates_at <= now);
                let state = if r.activates_at > now {
                    "next"
                } else if successor_active {
                    "retired"
                } else {
                    "active"
                };
                println!(
                    "  {} {} generation {} {state} (signs from {})",
                    r.kid,
                    r.alg,
                    r.generation,
                    when(r.activates_at, now)
                );
            }
        }
    }
    store.close().await;
    Ok(())
}

fn when(at: i64, now: i64) -> String {
    let d = at - now;
    let abs = d.unsigned_abs();
    let human = if abs >= 86400 {
        format!("{}d{}h", abs / 86400, (abs % 86400) / 3600)
    } else if abs >= 3600 {
        format!("{}h{}m", abs / 3600, (abs % 3600) / 60)
    } else {
        format!("{}m{}s", abs / 60, abs % 60)
    };
    let rel = if d > 0 {
        format!("in {human}")
    } else {
        format!("{human} ago")
    };
    format!("{at} = {rel}")
}
