//! One target's forwarder: gathers what the target has not acknowledged
//! (per session its start event, its entries in seq order, its end event),
//! exports up to `max_records` at a time, and moves the cursors only once
//! the target answered. A session's entries go in seq order and never
//! overtake each other: the next export of a session starts where the last
//! acknowledged one ended. Sessions take turns: each pass starts after the
//! session the previous export ended with, so one session with a steady
//! backlog fills at most its turn and every other session with something
//! to send gets an export within as many passes as there are sessions.
//!
//! An ended session's last entry is the server's own `Session ended: …`
//! entry; it travels as the end event, which makes the receiver end the
//! session (and write its own such entry), rather than as an entry too.

use std::collections::HashMap;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs};
use tokio_util::sync::CancellationToken;

use super::retry::{self, Refusal, Then};
use super::target::Target;
use crate::edge::{entry, session};
use crate::otlp::outbound;
use crate::sessions::{MAX_READ_LIMIT, ReadQuery, SessionError, SessionManager, SessionProgress};
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

/// One session's part of an export.
struct Turn {
    logs: ResourceLogs,
    records: usize,
    /// Where the session's cursor moves once the export is acknowledged.
    cursor: ForwardCursor,
    /// When the first entry among the records was written.
    oldest: Option<std::time::SystemTime>,
}

pub(super) struct Forwarder {
    target: Target,
    sessions: SessionManager,
    store: Store,
    max_records: usize,
    linger: Duration,
    cursors: HashMap<String, ForwardCursor>,
    /// The last session the previous export took records from; the next
    /// pass starts after it.
    last_turn: Option<String>,
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
            last_turn: None,
            pending: 0,
            oldest_pending: None,
            handed,
        })
    }

    /// `otlp/grpc` or `otlp/http`, for the log.
    pub(super) fn protocol(&self) -> &'static str {
        self.target.protocol()
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

    /// The next export, or `None` when the target has everything. Walks
    /// the sessions in id order, starting after the last one's turn and
    /// wrapping around, until the export is full.
    async fn gather(&mut self) -> Result<Option<Export>, SessionError> {
        let mut resource_logs: Vec<ResourceLogs> = Vec::new();
        let mut cursors = Vec::new();
        let mut records_total = 0;
        let sessions = self.sessions.progress();
        self.forget_deleted(&sessions).await;
        let first = self.last_turn.as_deref().map_or(0, |last| {
            sessions.partition_point(|session| session.id.as_str() <= last)
        });
        let (before, after) = sessions.split_at(first);
        let mut oldest: Option<std::time::SystemTime> = None;
        for progress in after.iter().chain(before) {
            if records_total >= self.max_records {
                break;
            }
            let cursor = self.cursors.get(&progress.id).copied().unwrap_or_default();
            if !has_news(progress, &cursor) {
                continue;
            }
            let room = self.max_records - records_total;
            let Some(turn) = self.turn(&progress.id, cursor, room).await? else {
                continue;
            };
            if let Some(at) = turn.oldest {
                oldest = Some(oldest.map_or(at, |known| known.min(at)));
            }
            records_total += turn.records;
            resource_logs.push(turn.logs);
            cursors.push((progress.id.clone(), turn.cursor));
        }
        if let Some((id, _)) = cursors.last() {
            self.last_turn = Some(id.clone());
        }
        self.oldest_pending = oldest;
        self.report_lag(&sessions);
        Ok((!resource_logs.is_empty()).then_some(Export {
            request: ExportLogsServiceRequest { resource_logs },
            cursors,
            records: records_total,
        }))
    }

    /// What session `id` sends after `cursor` in this export, at most
    /// `room` records; `None` when it has nothing (or was deleted
    /// meanwhile).
    async fn turn(
        &self,
        id: &str,
        cursor: ForwardCursor,
        room: usize,
    ) -> Result<Option<Turn>, SessionError> {
        // The record is copied only here, for a session with news.
        let view = match self.sessions.get(id) {
            Ok(view) => view,
            Err(SessionError::NotFound { .. } | SessionError::Deleted { .. }) => return Ok(None),
            Err(err) => return Err(err),
        };
        let ended = !view.is_active();
        let through = forwardable_through(view.counters.last_seq, ended);
        let session = session::session(view);
        let mut next = cursor;
        let mut records: Vec<(String, LogRecord)> = Vec::new();
        let mut oldest = None;
        if !next.started {
            records.push((String::new(), outbound::started_record(&session)));
            next.started = true;
        }
        if next.forwarded_seq < through {
            let room = room.saturating_sub(records.len());
            let page = match self
                .sessions
                .read(ReadQuery {
                    session_id: id.to_owned(),
                    after_seq: next.forwarded_seq,
                    limit: u32::try_from(room.clamp(1, MAX_READ_LIMIT)).unwrap_or(1),
                    ..ReadQuery::default()
                })
                .await
            {
                Ok(page) => page,
                // Deleted since the list was taken: nothing to send. Or
                // found damaged by this read: skipped from now on (see
                // `SessionManager::progress`), with its error line logged.
                Err(
                    SessionError::NotFound { .. }
                    | SessionError::Deleted { .. }
                    | SessionError::Damaged { .. },
                ) => {
                    return Ok(None);
                }
                Err(err) => return Err(err),
            };
            oldest = page
                .entries
                .first()
                .and_then(|entry| entry.timestamp)
                .and_then(|at| std::time::SystemTime::try_from(at).ok());
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
            return Ok(None);
        }
        Ok(Some(Turn {
            records: records.len(),
            logs: outbound::resource_logs(&session, records),
            cursor: next,
            oldest,
        }))
    }

    /// Sets the lag gauges: the entries the target has yet to acknowledge,
    /// and the age of the oldest of them (zero when there are none).
    fn report_lag(&mut self, sessions: &[SessionProgress]) {
        self.pending = sessions
            .iter()
            .map(|session| {
                let cursor = self.cursors.get(&session.id).copied().unwrap_or_default();
                forwardable_through(session.last_seq, !session.active)
                    .saturating_sub(cursor.forwarded_seq)
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
            let call = tokio::time::timeout(
                EXPORT_TIMEOUT,
                self.target.export(export.request.clone(), attempt),
            );
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
                Err(Refusal {
                    reason: format!("the target did not answer within {EXPORT_TIMEOUT:?}"),
                    then: Then::RetryAfter(retry::backoff(attempt)),
                })
            });
            if stopping && sent.is_err() {
                return false;
            }
            match sent {
                Ok(response) => {
                    self.acknowledged(&export, response);
                    break;
                }
                Err(Refusal {
                    reason,
                    then: Then::Resend,
                }) => self.target.stop_compressing(&reason),
                Err(Refusal {
                    reason,
                    then: Then::RetryAfter(delay),
                }) => {
                    crate::metrics::get().forward_failed(&self.target.url);
                    // Stuck on this export: what waits keeps growing.
                    let sessions = self.sessions.progress();
                    self.report_lag(&sessions);
                    if attempt.is_multiple_of(10) {
                        tracing::warn!(
                            target = %self.target.url,
                            error = %reason,
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
                Err(Refusal {
                    reason,
                    then: Then::Drop,
                }) => {
                    tracing::error!(
                        target = %self.target.url,
                        error = %reason,
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

    /// Counts what the target took and what it rejected (`partial_success`:
    /// rejected records are not sent again).
    fn acknowledged(&self, export: &Export, response: ExportLogsServiceResponse) {
        let rejected = response.partial_success.as_ref().map_or(0, |partial| {
            u64::try_from(partial.rejected_log_records).unwrap_or(0)
        });
        let metrics = crate::metrics::get();
        metrics.forwarded(
            &self.target.url,
            "exported",
            (export.records as u64).saturating_sub(rejected),
        );
        metrics.forwarded(&self.target.url, "rejected", rejected);
        if let Some(partial) = response.partial_success
            && partial.rejected_log_records > 0
        {
            tracing::warn!(
                target = %self.target.url,
                rejected = partial.rejected_log_records,
                reason = %partial.error_message,
                "the target rejected some forwarded records; they are not sent again"
            );
        }
    }

    /// Drops the cursors of sessions no longer in the store (pruned or
    /// deleted), so the `forward` tree does not grow without bound.
    async fn forget_deleted(&mut self, sessions: &[SessionProgress]) {
        let present: std::collections::HashSet<&str> =
            sessions.iter().map(|session| session.id.as_str()).collect();
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

/// The last seq that travels as an entry: an ended session's last entry is
/// its end entry, which travels as the end event instead.
fn forwardable_through(last_seq: u64, ended: bool) -> u64 {
    if ended {
        last_seq.saturating_sub(1)
    } else {
        last_seq
    }
}

/// Whether a session has anything the target lacks, from its counters
/// alone (no record copied): its start, entries, or its end.
fn has_news(session: &SessionProgress, cursor: &ForwardCursor) -> bool {
    !cursor.ended
        && (!cursor.started
            || !session.active
            || cursor.forwarded_seq < forwardable_through(session.last_seq, false))
}
