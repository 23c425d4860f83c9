//! One target's forwarder: gathers what the target has not acknowledged
//! (sessions in id order; per session its start event, its entries in seq
//! order, its end event), exports up to `max_records` at a time, and moves
//! the cursors only once the target answered. A session's entries go in
//! seq order and never overtake each other: the next export of a session
//! starts where the last acknowledged one ended.
//!
//! An ended session's last entry is the server's own `Session ended: …`
//! entry; it travels as the end event, which makes the receiver end the
//! session (and write its own such entry), rather than as an entry too.

use std::collections::HashMap;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs};
use tokio_util::sync::CancellationToken;

use super::retry;
use super::target::Target;
use crate::edge::{entry, session};
use crate::otlp::outbound;
use crate::sessions::{MAX_READ_LIMIT, ReadQuery, SessionError, SessionManager};
use crate::store::schema::ForwardCursor;
use crate::store::{Store, StoreError, blocking};

/// How long one export may take before it counts as failed (and is retried).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a stopping forwarder waits for the answer to an export in flight.
const STOP_WAIT: Duration = Duration::from_secs(2);

/// One export and the cursors it moves when acknowledged.
struct Export {
    request: ExportLogsServiceRequest,
    cursors: Vec<(String, ForwardCursor)>,
    records: usize,
}

pub(super) struct Forwarder {
    target: Target,
    sessions: SessionManager,
    store: Store,
    max_records: usize,
    linger: Duration,
    cursors: HashMap<String, ForwardCursor>,
    /// Entries stored but not acknowledged, as of the last count.
    pending: u64,
    /// When the oldest entry not yet acknowledged was written.
    oldest_pending: Option<std::time::SystemTime>,
    handed: std::sync::Arc<super::Handed>,
}

impl Forwarder {
    pub(super) fn new(
        target: Target,
        sessions: SessionManager,
        store: Store,
        max_records: usize,
        linger: Duration,
        handed: std::sync::Arc<super::Handed>,
    ) -> anyhow::Result<Self> {
        let cursors = store.forward_cursors(&target.id)?;
        for (session_id, cursor) in &cursors {
            if cursor.ended {
                handed.add(session_id);
            }
        }
        Ok(Self {
            target,
            sessions,
            store,
            max_records,
            linger,
            cursors,
            pending: 0,
            oldest_pending: None,
            handed,
        })
    }

    pub(super) async fn run(mut self, stop: CancellationToken) {
        let mut changes = self.sessions.changes();
        loop {
            changes.borrow_and_update();
            match self.gather().await {
                Ok(Some(export)) => {
                    if !self.deliver(export, &stop).await {
                        return;
                    }
                    // More may be waiting: gather again before sleeping.
                    continue;
                }
                Ok(None) => {}
                Err(err) => {
                    tracing::error!(target = %self.target.url, error = %err, "cannot read what to forward");
                }
            }
            tokio::select! {
                changed = changes.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                () = stop.cancelled() => return,
            }
            // Let a burst of appends gather into one export.
            tokio::select! {
                () = tokio::time::sleep(self.linger) => {}
                () = stop.cancelled() => return,
            }
        }
    }

    /// The next export, or `None` when the target has everything.
    async fn gather(&mut self) -> Result<Option<Export>, SessionError> {
        let mut resource_logs: Vec<ResourceLogs> = Vec::new();
        let mut cursors = Vec::new();
        let mut records_total = 0;
        let views = self.sessions.views();
        self.forget_deleted(&views).await;
        let mut oldest: Option<std::time::SystemTime> = None;
        for view in &views {
            if records_total >= self.max_records {
                break;
            }
            let id = view.record.id.clone();
            let cursor = self.cursors.get(&id).copied().unwrap_or_default();
            if cursor.ended {
                continue;
            }
            let ended = !view.is_active();
            let last_seq = view.counters.last_seq;
            let through = if ended {
                last_seq.saturating_sub(1)
            } else {
                last_seq
            };
            let session = session::session(view.clone());
            let mut next = cursor;
            let mut records: Vec<(String, LogRecord)> = Vec::new();
            if !next.started {
                records.push((String::new(), outbound::started_record(&session)));
                next.started = true;
            }
            if next.forwarded_seq < through {
                let room = self.max_records - records_total - records.len();
                let page = match self
                    .sessions
                    .read(ReadQuery {
                        session_id: id.clone(),
                        after_seq: next.forwarded_seq,
                        limit: u32::try_from(room.clamp(1, MAX_READ_LIMIT)).unwrap_or(1),
                        ..ReadQuery::default()
                    })
                    .await
                {
                    Ok(page) => page,
                    // Deleted since the list was taken: nothing to send.
                    Err(SessionError::NotFound { .. } | SessionError::Deleted { .. }) => continue,
                    Err(err) => return Err(err),
                };
                if let Some(at) = page
                    .entries
                    .first()
                    .and_then(|entry| entry.timestamp)
                    .and_then(|at| std::time::SystemTime::try_from(at).ok())
                {
                    oldest = Some(oldest.map_or(at, |known| known.min(at)));
                }
                for entry in page.entries {
                    if entry.seq > through {
                        break;
                    }
                    next.forwarded_seq = entry.seq;
                    records.push(outbound::log_record(&entry::log_entry(entry)));
                }
            }
            if ended && next.forwarded_seq >= through {
                records.push((String::new(), outbound::ended_record(&session)));
                next.ended = true;
            }
            if records.is_empty() {
                continue;
            }
            records_total += records.len();
            resource_logs.push(outbound::resource_logs(&session, records));
            cursors.push((id, next));
        }
        self.oldest_pending = oldest;
        self.report_lag(&views);
        Ok((!resource_logs.is_empty()).then_some(Export {
            request: ExportLogsServiceRequest { resource_logs },
            cursors,
            records: records_total,
        }))
    }

    /// Sets the lag gauges: the entries the target has yet to acknowledge,
    /// and the age of the oldest of them (zero when there are none).
    fn report_lag(&mut self, views: &[crate::sessions::SessionView]) {
        self.pending = views
            .iter()
            .map(|view| {
                let cursor = self
                    .cursors
                    .get(&view.record.id)
                    .copied()
                    .unwrap_or_default();
                let through = if view.is_active() {
                    view.counters.last_seq
                } else {
                    view.counters.last_seq.saturating_sub(1)
                };
                through.saturating_sub(cursor.forwarded_seq)
            })
            .sum();
        let age = match self.oldest_pending {
            Some(at) if self.pending > 0 => at.elapsed().unwrap_or_default(),
            _ => Duration::ZERO,
        };
        crate::metrics::get().forward_lag(&self.target.url, self.pending, age);
    }

    /// Sends until the target acknowledges or refuses for good, then moves
    /// the cursors. Returns false when stopped first.
    async fn deliver(&mut self, export: Export, stop: &CancellationToken) -> bool {
        let mut attempt = 0u32;
        let mut stopping = false;
        loop {
            let mut client = self.target.client.clone();
            let call = tokio::time::timeout(EXPORT_TIMEOUT, client.export(export.request.clone()));
            tokio::pin!(call);
            let answered = tokio::select! {
                answered = &mut call => answered,
                () = stop.cancelled() => {
                    // The target may have this export already: a moment for
                    // its answer lets the cursors move, so a clean stop
                    // does not send it again after the restart.
                    stopping = true;
                    match tokio::time::timeout(STOP_WAIT, &mut call).await {
                        Ok(answered) => answered,
                        Err(_) => return false,
                    }
                }
            };
            let sent = answered.unwrap_or_else(|_| {
                Err(tonic::Status::deadline_exceeded(format!(
                    "the target did not answer within {EXPORT_TIMEOUT:?}"
                )))
            });
            if stopping && sent.is_err() {
                return false;
            }
            match sent {
                Ok(response) => {
                    let rejected = response
                        .get_ref()
                        .partial_success
                        .as_ref()
                        .map_or(0, |partial| {
                            u64::try_from(partial.rejected_log_records).unwrap_or(0)
                        });
                    let metrics = crate::metrics::get();
                    metrics.forwarded(
                        &self.target.url,
                        "exported",
                        (export.records as u64).saturating_sub(rejected),
                    );
                    metrics.forwarded(&self.target.url, "rejected", rejected);
                    if let Some(partial) = response.into_inner().partial_success
                        && partial.rejected_log_records > 0
                    {
                        tracing::warn!(
                            target = %self.target.url,
                            rejected = partial.rejected_log_records,
                            reason = %partial.error_message,
                            "the target rejected some forwarded records; they are not sent again"
                        );
                    }
                    break;
                }
                Err(status) => match retry::delay(&status, attempt) {
                    Some(delay) => {
                        crate::metrics::get().forward_failed(&self.target.url);
                        // Stuck on this export: what waits keeps growing.
                        let views = self.sessions.views();
                        self.report_lag(&views);
                        if attempt.is_multiple_of(10) {
                            tracing::warn!(
                                target = %self.target.url,
                                code = ?status.code(),
                                error = %status.message(),
                                retry_in = ?delay,
                                "forwarding failed; retrying"
                            );
                        }
                        attempt = attempt.saturating_add(1);
                        tokio::select! {
                            () = tokio::time::sleep(delay) => {}
                            () = stop.cancelled() => return false,
                        }
                    }
                    None => {
                        tracing::error!(
                            target = %self.target.url,
                            code = ?status.code(),
                            error = %status.message(),
                            records = export.records,
                            "the target refused an export; its records are dropped, not retried"
                        );
                        crate::metrics::get().forwarded(
                            &self.target.url,
                            "dropped",
                            export.records as u64,
                        );
                        break;
                    }
                },
            }
        }
        let (store, target_id, cursors) = (
            self.store.clone(),
            self.target.id.clone(),
            export.cursors.clone(),
        );
        let saved: Result<(), StoreError> = blocking(move || {
            store.save_forward_cursors(
                &target_id,
                cursors.iter().map(|(id, cursor)| (id.as_str(), cursor)),
            )
        })
        .await;
        if let Err(err) = saved {
            // The target has the records; without the cursor they go again
            // after a restart, which at-least-once allows.
            tracing::error!(target = %self.target.url, error = %err, "cannot store forwarding cursors");
        }
        for (session_id, cursor) in &export.cursors {
            if cursor.ended {
                self.handed.add(session_id);
            }
        }
        self.cursors.extend(export.cursors);
        !stopping
    }

    /// Drops the cursors of sessions no longer in the store (pruned or
    /// deleted), so the `forward` tree does not grow without bound.
    async fn forget_deleted(&mut self, views: &[crate::sessions::SessionView]) {
        let present: std::collections::HashSet<&str> =
            views.iter().map(|view| view.record.id.as_str()).collect();
        let gone: Vec<String> = self
            .cursors
            .keys()
            .filter(|id| !present.contains(id.as_str()))
            .cloned()
            .collect();
        if gone.is_empty() {
            return;
        }
        let (store, target_id, removed) =
            (self.store.clone(), self.target.id.clone(), gone.clone());
        let removing: Result<(), StoreError> =
            blocking(move || store.remove_forward_cursors(&target_id, &removed)).await;
        if let Err(err) = removing {
            tracing::warn!(target = %self.target.url, error = %err, "cannot remove forwarding cursors");
            return;
        }
        for id in gone {
            self.cursors.remove(&id);
            self.handed.forget(&id);
        }
    }
}
