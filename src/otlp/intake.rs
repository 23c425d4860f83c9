//! `LogsService/Export`: OTLP logs in. Each resource names a session
//! (started on first sight); its records are appended in the order they
//! came, as batches, with the same limits as `Append`. Records that cannot
//! be stored for a reason retrying will not fix are counted in
//! `partial_success` and the rest of the export goes on; a failure a retry
//! can cure (`edge::Failure::retryable`: the store unavailable, shutting
//! down) fails the whole export with a code an OTLP exporter retries, never
//! with one it drops (`INTERNAL`). A retried export is stored once (its
//! batches carry ids derived from their content).

use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs};
use prost::Message as _;

use crate::edge::{Code, Failure, Limits, entry, request, session};
use crate::sessions::{AppendBatch, SessionError, SessionManager};
use crate::store::NewEntry;
use crate::store::schema::StoredEntry;

use super::census;
use super::mapping::{self, Record, SessionKeys};

/// How many ended sessions one `--otlp-session-from` key may have before
/// its records are refused (each export walks them).
const MAX_KEY_GENERATIONS: u32 = 1_000;

/// OTLP logs in over a `SessionManager`; the gRPC edge serves it as
/// `LogsService` (`api::otlp`), the HTTP edge as `POST /v1/logs`; both
/// hand it the encoded export (`export_encoded`), so limits, mapping,
/// leases and batch ids are the same whichever way an export came.
#[derive(Debug, Clone)]
pub(crate) struct OtlpIntake {
    sessions: SessionManager,
    limits: Arc<Limits>,
    /// The lease given to sessions this service starts, so a session whose
    /// exporter goes quiet ends (`lease expired`) instead of staying active.
    lease: Option<Duration>,
    /// `--otlp-session-from`: the session of a record whose resource has
    /// no `session.id`.
    keys: SessionKeys,
}

impl OtlpIntake {
    pub(crate) fn new(sessions: SessionManager, limits: Limits, lease: Option<Duration>) -> Self {
        Self {
            sessions,
            limits: Arc::new(limits),
            lease,
            keys: SessionKeys::default(),
        }
    }

    /// Records whose resource has no `session.id` get their session from
    /// these attributes (`--otlp-session-from`).
    pub(crate) fn with_session_keys(mut self, keys: Vec<String>) -> Self {
        self.keys = SessionKeys::new(keys);
        self
    }

    /// One encoded `ExportLogsServiceRequest`, whichever edge it came by:
    /// counted (`check_records`), decoded, stored (`export`).
    pub(crate) async fn export_encoded(
        &self,
        export: prost::bytes::Bytes,
    ) -> Result<ExportLogsServiceResponse, Failure> {
        self.check_records(&export)?;
        let request = ExportLogsServiceRequest::decode(export).map_err(|err| {
            Failure::new(
                Code::InvalidArgument,
                format!(
                    "the message is not valid protobuf: {}",
                    request::decode_fault(&err.to_string())
                ),
            )
        })?;
        self.export(request).await
    }

    /// Refuses an export (an encoded `ExportLogsServiceRequest`) of more
    /// records than `--max-otlp-records`, or of more attributes and values
    /// than `Limits::max_otlp_values`, counted on its bytes before anything
    /// is decoded. Bytes the count cannot walk are refused too, never
    /// passed on to the decode: anything the count skips (values nested
    /// past its depth, say) is what the decode would build uncounted.
    fn check_records(&self, export: &[u8]) -> Result<(), Failure> {
        let max = census::Census {
            records: self.limits.max_otlp_records,
            values: self.limits.max_otlp_values(),
        };
        match census::take(export, max) {
            Ok(counted) => Ok(self.limits.otlp_export(counted.records, counted.values)?),
            Err(_) => Err(Failure::new(
                Code::InvalidArgument,
                format!(
                    "the export is not valid protobuf for an OTLP logs request, or nests values deeper than {} levels",
                    census::MAX_DEPTH
                ),
            )),
        }
    }

    /// Stores every resource's records; records refused for good are
    /// counted in `partial_success`, a failure a retry can cure fails the
    /// whole export.
    pub(crate) async fn export(
        &self,
        request: ExportLogsServiceRequest,
    ) -> Result<ExportLogsServiceResponse, Failure> {
        let mut rejected = Rejected::default();
        for logs in request.resource_logs {
            self.resource(logs, &mut rejected).await?;
        }
        crate::metrics::get().otlp_records(rejected.stored, rejected.records);
        if rejected.records > 0 {
            tracing::warn!(records = rejected.records, reason = %rejected.message, "OTLP records rejected");
        }
        Ok(ExportLogsServiceResponse {
            partial_success: rejected.into_partial_success(),
        })
    }

    /// Stores one resource's records; rejected records go to `rejected`,
    /// a failure worth retrying is returned. The resource names one
    /// session, unless it has no `session.id` and `--otlp-session-from`
    /// is set: then each record's attributes name its session, and each
    /// session's records are stored in the order they came.
    async fn resource(&self, logs: ResourceLogs, rejected: &mut Rejected) -> Result<(), Failure> {
        let resource = logs.resource;
        let mut scopes = Vec::with_capacity(logs.scope_logs.len());
        let mut records = Vec::new();
        for (index, scope_logs) in logs.scope_logs.into_iter().enumerate() {
            scopes.push(scope_logs.scope);
            records.extend(scope_logs.log_records.into_iter().map(|r| (index, r)));
        }
        if self.keys.is_empty() || mapping::names_session(resource.as_ref()) {
            return match mapping::session(resource.as_ref()) {
                Ok(start) => {
                    self.session_records(start, &scopes, records, rejected)
                        .await
                }
                Err(err) => {
                    rejected.add(records.len(), err.to_string());
                    Ok(())
                }
            };
        }
        let mut sessions: Vec<(crate::pb::StartSessionRequest, Vec<(usize, LogRecord)>)> =
            Vec::new();
        // Each session's place in `sessions`, which keeps first-seen order.
        let mut places: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        let mut unnamed = 0;
        for (scope, record) in records {
            let Some(start) = self
                .keys
                .session(resource.as_ref(), &record.attributes)
                .or_else(|| mapping::session(resource.as_ref()).ok())
            else {
                unnamed += 1;
                continue;
            };
            match places.get(&start.session_id) {
                Some(&place) => sessions[place].1.push((scope, record)),
                None => {
                    places.insert(start.session_id.clone(), sessions.len());
                    sessions.push((start, vec![(scope, record)]));
                }
            }
        }
        rejected.add(
            unnamed,
            "the record has no `session.id` resource attribute and none of the attributes \
             of `--otlp-session-from`"
                .to_owned(),
        );
        for (start, records) in sessions {
            match self.live_generation(start) {
                Ok(start) => {
                    self.session_records(start, &scopes, records, rejected)
                        .await?;
                }
                Err(failure) => rejected.add(records.len(), failure.message),
            }
        }
        Ok(())
    }

    /// The session that takes a keyed session's records now: the key's
    /// own id, or, once that session has ended (its lease expired while
    /// the container was quiet, say), `<id>.2`, `<id>.3`, … the first not
    /// ended. A container's lines are never refused for an ended session;
    /// its sessions follow each other under its key.
    fn live_generation(
        &self,
        mut start: crate::pb::StartSessionRequest,
    ) -> Result<crate::pb::StartSessionRequest, Failure> {
        let key = start.session_id.clone();
        for generation in 2..=MAX_KEY_GENERATIONS {
            match self.sessions.get(&start.session_id) {
                Ok(view) if !view.is_active() => {
                    start.session_id = format!("{key}.{generation}");
                }
                _ => return Ok(start),
            }
        }
        Err(Failure::new(
            Code::ResourceExhausted,
            format!("the sessions of `{key}` ended {MAX_KEY_GENERATIONS} times"),
        ))
    }

    /// Stores one session's records, in order; `scopes` are the resource's
    /// scopes, which each record names by index.
    async fn session_records(
        &self,
        start: crate::pb::StartSessionRequest,
        scopes: &[Option<InstrumentationScope>],
        records: Vec<(usize, LogRecord)>,
        rejected: &mut Rejected,
    ) -> Result<(), Failure> {
        let session_id = start.session_id.clone();
        if let Err(failure) = self.ensure_session(start).await {
            return rejected.unless_retryable(records.len(), failure);
        }
        let mut pending = Vec::new();
        for (scope, record) in records {
            let scope = scopes.get(scope).and_then(Option::as_ref);
            match mapping::record(scope, record) {
                Record::Started => {}
                Record::Entry(entry) => match entry::stored_entry(entry, &self.limits) {
                    Ok(entry) => pending.push(entry),
                    Err(err) => rejected.add(1, Failure::from(err).message),
                },
                Record::Ended { reason } => {
                    self.append(&session_id, std::mem::take(&mut pending), rejected)
                        .await?;
                    self.end(&session_id, &reason, rejected).await?;
                }
            }
        }
        self.append(&session_id, pending, rejected).await
    }

    /// Starts the session unless it exists.
    async fn ensure_session(&self, start: crate::pb::StartSessionRequest) -> Result<(), Failure> {
        request::session_id(&start.session_id)?;
        match self.sessions.get(&start.session_id) {
            Ok(_) => return Ok(()),
            Err(SessionError::NotFound { .. }) => {}
            Err(err) => return Err(err.into()),
        }
        let mut draft = session::new_session(start, &self.limits)?;
        draft.lease_ttl = self.lease.and_then(|lease| lease.try_into().ok());
        match self.sessions.start_reported(draft).await {
            Ok(view) => {
                tracing::info!(session_id = %view.record.id, app = %view.record.app_name, "session started by an OTLP export");
                Ok(())
            }
            // Another export for the same session won the race.
            Err(SessionError::AlreadyExists { .. }) => Ok(()),
            Err(err) => Err(err.into()),
        }
    }

    /// Appends `entries` in batches of at most `--max-batch-entries`.
    async fn append(
        &self,
        session_id: &str,
        entries: Vec<StoredEntry>,
        rejected: &mut Rejected,
    ) -> Result<(), Failure> {
        let max = self.limits.max_batch_entries.max(1);
        let mut entries = entries.into_iter().peekable();
        while entries.peek().is_some() {
            let chunk: Vec<StoredEntry> = entries.by_ref().take(max).collect();
            let count = chunk.len();
            let batch = AppendBatch {
                session_id: session_id.to_owned(),
                batch_id: content_batch_id(session_id, &chunk),
                entries: chunk.into_iter().map(NewEntry::Decoded).collect(),
                expected_last_seq: None,
            };
            match self.sessions.append(batch).await {
                Ok(_) => rejected.stored += count,
                Err(err) => rejected.unless_retryable(count, err.into())?,
            }
        }
        Ok(())
    }

    async fn end(
        &self,
        session_id: &str,
        reason: &str,
        rejected: &mut Rejected,
    ) -> Result<(), Failure> {
        if let Err(err) = self.limits.text("reason", reason) {
            rejected.add(1, Failure::from(err).message);
            return Ok(());
        }
        match self.sessions.end(session_id, reason).await {
            // A retried export ends an ended session: nothing to do.
            Ok(_) | Err(SessionError::Ended { .. }) => Ok(()),
            Err(err) => rejected.unless_retryable(1, err.into()),
        }
    }
}

/// Records refused for good, and why (the first reason, and how many
/// other reasons there were); and how many were stored.
#[derive(Debug, Default)]
struct Rejected {
    stored: usize,
    records: usize,
    message: String,
    other_reasons: usize,
}

impl Rejected {
    fn add(&mut self, records: usize, reason: String) {
        if records == 0 {
            return;
        }
        self.records += records;
        if self.message.is_empty() {
            self.message = reason;
        } else if self.message != reason {
            self.other_reasons += 1;
        }
    }

    /// Counts the records as rejected, unless retrying the export could
    /// store them; then the whole export fails with `failure`, whose code
    /// an exporter retries.
    fn unless_retryable(&mut self, records: usize, failure: Failure) -> Result<(), Failure> {
        if failure.retryable() {
            return Err(failure);
        }
        self.add(records, failure.message);
        Ok(())
    }

    fn into_partial_success(self) -> Option<ExportLogsPartialSuccess> {
        (self.records > 0).then(|| ExportLogsPartialSuccess {
            rejected_log_records: i64::try_from(self.records).unwrap_or(i64::MAX),
            error_message: match self.other_reasons {
                0 => self.message,
                n => format!(
                    "{} (and {n} other reasons; see the server log)",
                    self.message
                ),
            },
        })
    }
}

/// An id that is the same when an exporter retries the same records, so
/// the retry is stored once. Only when every entry has a timestamp:
/// without one, two genuinely separate exports of the same line would
/// look like a retry.
fn content_batch_id(session_id: &str, entries: &[StoredEntry]) -> Option<String> {
    if entries.iter().any(|entry| entry.timestamp.is_none()) {
        return None;
    }
    let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
    digest.update(session_id.as_bytes());
    for entry in entries {
        digest.update(&prost::Message::encode_length_delimited_to_vec(entry));
    }
    let hash = digest.finish();
    let hex: String = hash.as_ref()[..16]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    Some(format!("otlp-{hex}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(message: &str, seconds: Option<i64>) -> StoredEntry {
        StoredEntry {
            message: message.into(),
            timestamp: seconds.map(|seconds| prost_types::Timestamp { seconds, nanos: 0 }),
            ..Default::default()
        }
    }

    #[test]
    fn batch_ids_follow_the_content_and_need_timestamps() {
        let a = [entry("a", Some(1)), entry("b", Some(2))];
        let id = content_batch_id("s", &a).expect("an id");
        assert!(id.len() <= crate::edge::request::MAX_BATCH_ID_LEN);
        assert_eq!(content_batch_id("s", &a), Some(id.clone()));
        assert_ne!(content_batch_id("t", &a), Some(id.clone()));
        let reordered = [entry("b", Some(2)), entry("a", Some(1))];
        assert_ne!(content_batch_id("s", &reordered), Some(id));
        assert_eq!(content_batch_id("s", &[entry("a", None)]), None);
    }

    #[test]
    fn rejections_keep_the_first_reason_and_count_the_rest() {
        let mut rejected = Rejected::default();
        rejected.add(2, "too deep".into());
        rejected.add(1, "too deep".into());
        rejected.add(0, "ignored".into());
        rejected.add(3, "ended".into());
        let unavailable = rejected
            .unless_retryable(1, Failure::new(crate::edge::Code::Unavailable, "disk"))
            .expect_err("retryable");
        assert_eq!(unavailable.code, crate::edge::Code::Unavailable);
        rejected
            .unless_retryable(
                1,
                Failure::new(crate::edge::Code::FailedPrecondition, "ended"),
            )
            .expect("not retryable");
        let partial = rejected.into_partial_success().expect("partial success");
        assert_eq!(partial.rejected_log_records, 7);
        assert!(partial.error_message.starts_with("too deep (and 2 other"));
        assert!(Rejected::default().into_partial_success().is_none());
    }
}
