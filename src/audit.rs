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
    let row = logged_row(now, event);
    if let Err(e) = store.insert_event(&row).await {
        metrics::counter!("ostiary_store_errors_total").increment(1);
        tracing::warn!(error.cause = %e, audit.kind = %row.kind, "audit event could not be stored");
    }
}

/// Logs `event` and returns its row.
fn logged_row(now: i64, event: AuditEvent) -> EventRow {
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
    EventRow {
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
    }
}

enum Queued {
    Event(EventRow),
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// Events waiting at most this many in the queue; beyond, recording waits (backpressure).
const QUEUE: usize = 4096;
/// Events stored by one turn of the writer.
const BATCH: usize = 512;
/// How long a turn of the writer waits for more events after the first one (unless that one is
/// a flush, or the batch is full): under load a turn then stores hundreds of events in 32-row
/// inserts instead of a few events in small ones, and the writer wakes once a turn instead of
/// once an event. A flush waits at most this much longer.
const LINGER: std::time::Duration = std::time::Duration::from_millis(5);

/// Audit events of hot paths (tokens issued), stored by one background task in batches instead
/// of one insert per request: the request does not wait for the store. The events queued when
/// the store is asked for events ([`AuditQueue::flush`]) or the server stops are stored first.
/// As with [`record`], a store failure is logged and the events lost.
#[derive(Clone, Debug)]
pub struct AuditQueue {
    tx: tokio::sync::mpsc::Sender<Queued>,
}

impl std::fmt::Debug for Queued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Queued")
    }
}

impl AuditQueue {
    /// Starts the writer task on `store`; it ends when every clone of the queue is dropped,
    /// after storing what was queued.
    pub fn start<S: AuditStore + Send + Sync + 'static>(store: S) -> AuditQueue {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Queued>(QUEUE);
        tokio::spawn(async move {
            let mut items = Vec::with_capacity(BATCH);
            while rx.recv_many(&mut items, BATCH).await > 0 {
                // One wake-up for the events of the next moment, not one for each.
                if items.len() < BATCH && !items.iter().any(|i| matches!(i, Queued::Flush(_))) {
                    tokio::time::sleep(LINGER).await;
                    while items.len() < BATCH
                        && let Ok(item) = rx.try_recv()
                    {
                        items.push(item);
                    }
                }
                let mut rows = Vec::with_capacity(items.len());
                let mut flushes = Vec::new();
                for item in items.drain(..) {
                    match item {
                        Queued::Event(row) => rows.push(row),
                        Queued::Flush(done) => flushes.push(done),
                    }
                }
                if !rows.is_empty()
                    && let Err(e) = store.insert_events(&rows).await
                {
                    metrics::counter!("ostiary_store_errors_total").increment(1);
                    tracing::warn!(error.cause = %e, audit.events = rows.len(), "audit events could not be stored");
                }
                for done in flushes {
                    let _ = done.send(());
                }
            }
        });
        AuditQueue { tx }
    }

    /// Logs `event` and queues it for storing at `now`.
    pub async fn record(&self, now: i64, event: AuditEvent) {
        let row = logged_row(now, event);
        if self.tx.send(Queued::Event(row)).await.is_err() {
            tracing::warn!("audit event could not be queued: the audit writer has stopped");
        }
    }

    /// Returns once every event queued before this call is stored (or failed to be).
    pub async fn flush(&self) {
        let (done, stored) = tokio::sync::oneshot::channel();
        if self.tx.send(Queued::Flush(done)).await.is_ok() {
            let _ = stored.await;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::store::StoreResult;
    use crate::store::admin::{EventFilter, Page};
    use std::sync::{Arc, Mutex};

    /// Keeps every batch of events it is asked to store.
    #[derive(Clone, Default)]
    struct Batches(Arc<Mutex<Vec<Vec<EventRow>>>>);

    impl AuditStore for Batches {
        async fn insert_event(&self, e: &EventRow) -> StoreResult<()> {
            self.insert_events(std::slice::from_ref(e)).await
        }
        async fn insert_events(&self, events: &[EventRow]) -> StoreResult<()> {
            self.0.lock().unwrap().push(events.to_vec());
            Ok(())
        }
        async fn list_events(&self, _: &str, _: &EventFilter, _: i64, _: i64) -> StoreResult<Page<EventRow>> {
            Ok((Vec::new(), 0))
        }
    }

    fn event(n: usize) -> AuditEvent {
        AuditEvent::new("token.issued", "d", Outcome::Success).request(&n.to_string())
    }

    // Paused time: the clock moves only when every task waits, so the timing is exact.
    #[tokio::test(start_paused = true)]
    async fn events_of_the_same_moment_are_stored_in_one_batch_in_order() {
        let store = Batches::default();
        let queue = AuditQueue::start(store.clone());
        // 20 events, each after the writer has had the chance to run: within one linger they
        // make one batch, where a writer without it would store them one by one.
        for n in 0..20 {
            queue.record(1, event(n)).await;
            tokio::task::yield_now().await;
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(LINGER * 2).await;
        queue.record(1, event(20)).await;
        queue.flush().await;
        let batches = store.0.lock().unwrap().clone();
        let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![20, 1]);
        let ids: Vec<String> = batches
            .iter()
            .flatten()
            .filter_map(|e| e.request_id.clone())
            .collect();
        assert_eq!(ids, (0..=20).map(|n| n.to_string()).collect::<Vec<_>>());
    }

    #[tokio::test(start_paused = true)]
    async fn a_flush_is_answered_without_waiting_for_more_events() {
        let store = Batches::default();
        let queue = AuditQueue::start(store.clone());
        let start = tokio::time::Instant::now();
        queue.flush().await;
        assert!(start.elapsed() < LINGER, "a flush alone was kept waiting");
        queue.record(1, event(0)).await;
        queue.flush().await;
        assert!(
            start.elapsed() < LINGER,
            "a flush behind an event was kept waiting"
        );
        assert_eq!(store.0.lock().unwrap().iter().map(Vec::len).sum::<usize>(), 1);
    }
}
