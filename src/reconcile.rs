//! Configuration is the source of truth for the clients and users it declares: at every start
//! and reload the store is brought in line (added, changed, and removed ones disabled). A user
//! kept in the store (the CLI's or the admin API's) is never taken over by a declared user of
//! the same name: that is reported as a conflict and left alone.

use std::collections::HashMap;
use std::fmt;

use crate::crypto::secrets::random_id;
use crate::domain::{Domains, config_hash};
use crate::oauth::logout::around_credential_change;
use crate::store::{DirectoryStore, MaintenanceStore, OAuthStore, StoreResult, UserRow};

/// Why a file of revision `file` must not be reconciled into a store last reconciled from
/// `stored`; None when it may (the same revision again, a higher one, or none recorded yet).
pub fn revision_refusal(file: Option<i64>, stored: Option<i64>) -> Option<String> {
    match (file, stored) {
        (_, None) => None,
        (Some(f), Some(s)) if f >= s => None,
        (Some(f), Some(s)) => Some(format!(
            "this file is revision {f}, but the store was reconciled from revision {s}: an older \
             file would put older clients and users back for every replica (give this replica \
             the newer file)"
        )),
        (None, Some(s)) => Some(format!(
            "this file has no revision, but the store was reconciled from revision {s}: set \
             `revision` to {s} or more"
        )),
    }
}

/// Claims the file's revision before anything is reconciled: an error saying why when the store
/// was reconciled from a higher one (or from one at all, for a file without). One conditional
/// upsert, so of two replicas reloading at once with different files the older one is refused.
async fn claim_revision(store: &impl DirectoryStore, revision: Option<i64>, now: i64) -> anyhow::Result<()> {
    let claimed = match revision {
        Some(r) => store.claim_config_revision(r, now).await?,
        None => store.config_revision().await?.is_none(),
    };
    if claimed {
        return Ok(());
    }
    let stored = store.config_revision().await?;
    match revision_refusal(revision, stored) {
        Some(why) => Err(anyhow::anyhow!("configuration refused: {why}")),
        None => Ok(()),
    }
}

/// What reconciliation does to one client or user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// New in the store.
    Added,
    /// Its configuration changed.
    Changed,
    /// Gone from configuration: disabled so its tokens stop working.
    Disabled,
    /// Declared in configuration, but the name belongs to a user kept in the store: left alone.
    Conflict,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Added => "add",
            Action::Changed => "change",
            Action::Disabled => "disable",
            Action::Conflict => "conflict (a store user has this name; left alone)",
        })
    }
}

/// One planned change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Domain name.
    pub domain: String,
    /// `client` or `user`.
    pub kind: &'static str,
    /// client_id or username.
    pub id: String,
    /// What happens.
    pub action: Action,
}

/// The changes reconciliation makes (or would make).
#[derive(Debug, Default)]
pub struct Plan {
    /// Each change.
    pub changes: Vec<Change>,
}

impl Plan {
    /// One line such as "2 added, 1 changed, 0 disabled".
    pub fn summary(&self) -> String {
        let count = |a: Action| self.changes.iter().filter(|c| c.action == a).count();
        let conflicts = match count(Action::Conflict) {
            0 => String::new(),
            n => format!(", {n} in conflict with store users"),
        };
        format!(
            "{} added, {} changed, {} disabled{conflicts}",
            count(Action::Added),
            count(Action::Changed),
            count(Action::Disabled)
        )
    }
}

fn user_hash(u: &crate::config::UserConfig) -> String {
    config_hash(&(u, &u.password_hash, u.enabled))
}

/// The status a declared user has in the store.
fn user_status(u: &crate::config::UserConfig) -> &'static str {
    if u.enabled { "active" } else { "disabled" }
}

/// Computes the changes without writing anything.
pub async fn plan(store: &impl DirectoryStore, domains: &Domains) -> StoreResult<Plan> {
    let mut plan = Plan::default();
    for d in &domains.list {
        let rows: HashMap<String, (String, bool)> = store
            .list_clients(&d.name)
            .await?
            .into_iter()
            .map(|r| (r.client_id, (r.config_hash, r.enabled == 1)))
            .collect();
        let mut ids: Vec<&String> = d.clients.keys().collect();
        ids.sort();
        for id in ids {
            let Some(c) = d.clients.get(id) else { continue };
            let action = match rows.get(id) {
                None => Some(Action::Added),
                Some((h, enabled)) if *h != c.config_hash || *enabled != c.enabled => Some(Action::Changed),
                _ => None,
            };
            if let Some(action) = action {
                plan.changes.push(Change {
                    domain: d.name.clone(),
                    kind: "client",
                    id: id.clone(),
                    action,
                });
            }
        }
        let mut gone: Vec<&String> = rows
            .iter()
            .filter(|(id, (_, enabled))| *enabled && !d.clients.contains_key(*id))
            .map(|(id, _)| id)
            .collect();
        gone.sort();
        for id in gone {
            plan.changes.push(Change {
                domain: d.name.clone(),
                kind: "client",
                id: id.clone(),
                action: Action::Disabled,
            });
        }
        // The users declared in configuration, then and now: a store holding millions of users
        // is not read whole.
        let mut users = store.list_config_users(&d.name).await?;
        for u in &d.config.users {
            if !users.iter().any(|r| r.username == u.username)
                && let Some(row) = store.find_user(&d.name, &u.username).await?
            {
                users.push(row);
            }
        }
        let by_name: HashMap<&str, &UserRow> = users.iter().map(|u| (u.username.as_str(), u)).collect();
        for u in &d.config.users {
            let action = match by_name.get(u.username.as_str()) {
                None => Some(Action::Added),
                Some(row) if row.source != "config" => Some(Action::Conflict),
                // A changed declaration, or one declared again after its removal disabled it.
                Some(row)
                    if row.config_hash.as_deref() != Some(user_hash(u).as_str())
                        || row.status != user_status(u) =>
                {
                    Some(Action::Changed)
                }
                _ => None,
            };
            if let Some(action) = action {
                plan.changes.push(Change {
                    domain: d.name.clone(),
                    kind: "user",
                    id: u.username.clone(),
                    action,
                });
            }
        }
        for row in &users {
            let declared = d.config.users.iter().any(|u| u.username == row.username);
            if row.source == "config" && !declared && row.status != "disabled" {
                plan.changes.push(Change {
                    domain: d.name.clone(),
                    kind: "user",
                    id: row.username.clone(),
                    action: Action::Disabled,
                });
            }
        }
    }
    Ok(plan)
}

/// Computes and applies the changes.
pub async fn apply<S: OAuthStore + MaintenanceStore>(
    store: &S,
    domains: &Domains,
    now: i64,
) -> anyhow::Result<Plan> {
    // One reconcile at a time, across replicas and reloads: the revision is claimed and the
    // store brought in line under one lease, so an older file that claimed first cannot write
    // after a newer one (it has finished before the newer one starts, or is refused).
    let holder = format!("reconcile {}", random_id());
    let started = std::time::Instant::now();
    let at = |started: std::time::Instant| now + i64::try_from(started.elapsed().as_secs()).unwrap_or(0);
    while !store
        .acquire_lease(RECONCILE_LEASE, &holder, at(started), RECONCILE_TTL)
        .await?
    {
        if started.elapsed() > RECONCILE_WAIT {
            anyhow::bail!(
                "another replica has been reconciling the store for over {} s: try again once it is done",
                RECONCILE_WAIT.as_secs()
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let taken_at = at(started);
    let work = apply_held(store, domains, now);
    let result = hold_while(store, RECONCILE_LEASE, &holder, RECONCILE_TTL, taken_at, work).await;
    // Given back at once: expired for the next one.
    if let Err(e) = store
        .acquire_lease(RECONCILE_LEASE, &holder, at(started), -1)
        .await
    {
        tracing::warn!(error.cause = %e, "the reconcile lease could not be given back: the next reconcile waits until it expires");
    }
    result
}

/// Runs `work` while renewing the lease `name` held by `holder` (taken at `taken_at` for `ttl`
/// seconds) every third of `ttl`, so that a reconcile longer than the lease is not joined by
/// another replica's. A renewal that fails is tried again each second; when the lease cannot be
/// kept (another holder has it, or it could not be renewed before it ran out) `work` is stopped
/// where it is, at the latest a second before the lease ends, and an error returned: a reconcile
/// cut short is finished by the next one, two at once could interleave their writes.
pub async fn hold_while<S: MaintenanceStore, T>(
    store: &S,
    name: &str,
    holder: &str,
    ttl: i64,
    taken_at: i64,
    work: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    use std::time::Duration;
    let started = std::time::Instant::now();
    let at = || taken_at + i64::try_from(started.elapsed().as_secs()).unwrap_or(i64::MAX / 2);
    let every = Duration::from_millis(u64::try_from(ttl.max(1)).unwrap_or(1) * 1000 / 3);
    let renew = async {
        let mut held_until = taken_at + ttl;
        let mut wait = every;
        loop {
            // Never asleep past a second before the lease's end.
            let left = u64::try_from(held_until - 1 - at()).unwrap_or(0);
            if left == 0 {
                return anyhow::anyhow!("the lease {name} could not be renewed before it ran out");
            }
            tokio::time::sleep(wait.min(Duration::from_secs(left))).await;
            let left = u64::try_from(held_until - 1 - at()).unwrap_or(0);
            let renewal = store.acquire_lease(name, holder, at(), ttl);
            match tokio::time::timeout(Duration::from_secs(left), renewal).await {
                Ok(Ok(true)) => {
                    held_until = at() + ttl;
                    wait = every;
                }
                Ok(Ok(false)) => {
                    return anyhow::anyhow!("the lease {name} was taken by another holder mid-way");
                }
                Ok(Err(e)) => {
                    tracing::warn!(error.cause = %e, lease = name, "cannot renew the lease yet; trying again");
                    wait = Duration::from_secs(1);
                }
                Err(_) => wait = Duration::from_secs(1),
            }
        }
    };
    // Work that is done is done, even if the lease went at the same moment.
    tokio::select! {
        biased;
        done = work => done,
        lost = renew => Err(lost),
    }
}

/// The lease of [`apply`].
const RECONCILE_LEASE: &str = "reconcile";
/// Seconds a reconcile holds its lease at most: past it (a replica that died mid-way) another
/// may take it. Reconciling thousands of declared users takes seconds.
const RECONCILE_TTL: i64 = 120;
/// How long a start or reload waits for another replica's reconcile: longer than the lease, so
/// that the lease of a replica that died is always outlived.
const RECONCILE_WAIT: std::time::Duration = std::time::Duration::from_secs(150);

/// Refuses `revision` before anything is done when the store was reconciled from a higher one
/// (a read: the claim under the lease in [`apply`] is what holds; this spares a refused reload
/// the work that comes before it, such as loading keys).
pub async fn precheck_revision(store: &impl DirectoryStore, revision: Option<i64>) -> anyhow::Result<()> {
    match revision_refusal(revision, store.config_revision().await?) {
        Some(why) => Err(anyhow::anyhow!("configuration refused: {why}")),
        None => Ok(()),
    }
}

async fn apply_held<S: OAuthStore>(store: &S, domains: &Domains, now: i64) -> anyhow::Result<Plan> {
    claim_revision(store, domains.revision, now).await?;
    let plan = plan(store, domains).await?;
    for ch in &plan.changes {
        let Some(d) = domains.by_name(&ch.domain) else {
            continue;
        };
        match (ch.kind, ch.action) {
            ("client", Action::Disabled) => {
                store.upsert_client(&d.name, &ch.id, "", false, now).await?;
            }
            ("client", _) => {
                if let Some(c) = d.clients.get(&ch.id) {
                    store
                        .upsert_client(&d.name, &c.id, &c.config_hash, c.enabled, now)
                        .await?;
                }
            }
            ("user", Action::Disabled) => {
                let write = store.set_user_status(&d.name, &ch.id, "disabled", now);
                let user = store.find_user(&d.name, &ch.id).await?;
                around_credential_change(store, d, user.as_ref().map(|u| u.id.as_str()), now, write).await?;
            }
            (_, Action::Conflict) => {
                tracing::warn!(domain = %ch.domain, kind = ch.kind, id = %ch.id, "declared in configuration, but a user kept in the store has this name: left alone (rename one of them)");
                continue;
            }
            _ => {
                let Some(u) = d.config.users.iter().find(|u| u.username == ch.id) else {
                    continue;
                };
                let row = UserRow {
                    id: random_id(),
                    domain: d.name.clone(),
                    username: u.username.clone(),
                    password_hash: u.password_hash.clone(),
                    status: user_status(u).into(),
                    claims: serde_json::to_string(u).unwrap_or_else(|_| "{}".into()),
                    source: "config".into(),
                    config_hash: Some(user_hash(u)),
                    created_at: now,
                    updated_at: now,
                };
                // A new password, or disabled: the sessions end and the relying parties are told.
                // A user kept in the store that took the name since the plan (the admin API, the
                // CLI) is left alone, its sessions too; the write refuses it as well, should it
                // come between this read and the write.
                let before = store.find_user(&d.name, &u.username).await?;
                let taken = before.as_ref().is_some_and(|b| b.source != "config");
                let ending = before.as_ref().filter(|b| {
                    b.password_hash != row.password_hash || (row.status != "active" && b.status == "active")
                });
                let written = !taken
                    && around_credential_change(
                        store,
                        d,
                        ending.map(|b| b.id.as_str()),
                        now,
                        store.upsert_user(&row),
                    )
                    .await?
                    .0;
                if !written {
                    tracing::warn!(domain = %ch.domain, kind = ch.kind, id = %ch.id, "declared in configuration, but a user kept in the store took this name meanwhile: left alone (rename one of them)");
                    continue;
                }
            }
        }
        tracing::info!(domain = %ch.domain, kind = ch.kind, id = %ch.id, action = %ch.action, "store reconciled");
    }
    Ok(plan)
}
