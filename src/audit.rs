//! Audit events: sign-ins, lockouts, tokens issued and revoked, consents, administrative changes.
//! Each is stored (table `audit_events`, kept for `server.audit_retention`) and logged as a
//! structured line (message `audit event`, fields `audit.*`). Events never carry a secret, token, password or code:
//! only ids, names, scopes and counts go in `details`.

use serde_json::{Value, json};

use crate::store::admin::{AuditStore, EventRow};

/// Whether the audited action succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done.
    Success,
    /// Refused or failed.
    Failure,
}

impl Outcome {
    /// The stored value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
        }
    }
}

/// One event to record.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    /// What happened, e.g. `signin.success`, `token.issued`, `admin.user.created`.
    pub kind: &'static str,
    /// The domain it happened in.
    pub domain: String,
    /// Who acted: `user:<id>`, `client:<client_id>`, `cli` (the command line) or `anonymous`.
    pub actor: String,
    /// The client concerned, if any.
    pub client_id: Option<String>,
    /// The user concerned, if any.
    pub user_id: Option<String>,
    /// Success or failure.
    pub outcome: Outcome,
    /// The request's `X-Request-Id`, if known.
    pub request_id: Option<String>,
    /// More facts (a JSON object), never secrets.
    pub details: Value,
}

impl AuditEvent {
    /// An event of `kind` in `domain` by an anonymous actor; refine with the builder methods.
    pub fn new(kind: &'static str, domain: &str, outcome: Outcome) -> AuditEvent {
        AuditEvent {
            kind,
            domain: domain.to_string(),
            actor: "anonymous".into(),
            client_id: None,
            user_id: None,
            outcome,
            request_id: None,
            details: json!({}),
        }
    }

    /// Sets the actor to the client `id` (the administration API's callers).
    pub fn by_client(mut self, id: &str) -> Self {
        self.actor = format!("client:{id}");
        self
    }

    /// Sets the actor to the user `id`.
    pub fn by_user(mut self, id: &str) -> Self {
        self.actor = format!("user:{id}");
        self
    }

    /// Sets the client concerned.
    pub fn client(mut self, id: &str) -> Self {
        self.client_id = Some(id.to_string());
        self
    }

    /// Sets the user concerned.
    pub fn user(mut self, id: &str) -> Self {
        self.user_id = Some(id.to_string());
        self
    }

    /// Sets the request id (ignored when empty).
    pub fn request(mut self, id: &str) -> Self {
        self.request_id = Some(id.to_string()).filter(|s| !s.is_empty());
        self
    }

    /// Sets the details (a JSON object without secrets).
    pub fn details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }
}

/// Logs `event` and stores it at `now`. A store failure is logged, never returned: auditing does
/// not fail the action it records.
pub async fn record<S: AuditStore + Sync>(store: &S, now: i64, event: AuditEvent) {
    tracing::info!(
        audit.kind = event.kind,
        audit.domain = %event.domain,
        audit.actor = %event.actor,
        audit.client_id = event.client_id.as_deref().unwrap_or(""),
        audit.user_id = event.user_id.as_deref().unwrap_or(""),
        audit.outcome = event.outcome.as_str(),
        audit.request_id = event.request_id.as_deref().unwrap_or(""),
        audit.details = %event.details,
        "audit event"
    );
    let row = EventRow {
        id: 0,
        at: now,
        kind: event.kind.to_string(),
        actor: event.actor,
        domain: event.domain,
        client_id: event.client_id,
        user_id: event.user_id,
        outcome: event.outcome.as_str().to_string(),
        request_id: event.request_id,
        details: event.details.to_string(),
    };
    if let Err(e) = store.insert_event(&row).await {
        metrics::counter!("ostiary_store_errors_total").increment(1);
        tracing::warn!(error.cause = %e, audit.kind = %row.kind, "audit event could not be stored");
    }
}
