//! pb ⇄ domain conversions, and input validation: a request that passes
//! here is well-formed for the rules. Field numbers of `LogEntry` and
//! `StoredEntry` are equal, so entries move across field by field.

use std::time::SystemTime;

use prost::Message;
use prost::bytes::Bytes;

use super::codec::decode_fault;
use super::raw_entry;
use super::wire::{EncodedFollowResponse, WireAppendRequest};
use crate::edge::Limits;
use crate::edge::request::{decode_page_token, entry_filter, invalid, optional_id};
use crate::follow::FollowEvent;
use crate::pb;
use crate::sessions::{
    AppendBatch, FollowQuery, ListQuery, ReadQuery, SessionView, WatchEvent, WatchQuery,
};
use crate::store::schema::{Level, State, StoredEntry, StoredSession};
use crate::store::{EntryFilter, NewEntry};

/// The longest `batch_id`, in bytes.
pub const MAX_BATCH_ID_LEN: usize = 128;
pub(super) const TRACE_ID_LEN: usize = 16;
pub(super) const SPAN_ID_LEN: usize = 8;

pub use crate::edge::RequestError;
pub use crate::edge::request::{encode_page_token, session_id};

pub fn new_session(
    request: pb::StartSessionRequest,
    limits: &Limits,
) -> Result<StoredSession, RequestError> {
    optional_id("session_id", &request.session_id)?;
    optional_id("parent_session_id", &request.parent_session_id)?;
    limits.name("app_name", &request.app_name)?;
    limits.name("mode", &request.mode)?;
    limits.name("platform", &request.platform)?;
    limits.name("job_id", &request.job_id)?;
    limits.structure("metadata", request.metadata.as_ref())?;
    if let Some(ttl) = &request.lease_ttl
        && std::time::Duration::try_from(*ttl).is_err()
    {
        return Err(invalid(
            "lease_ttl",
            "must be a non-negative, normalized duration",
        ));
    }
    Ok(StoredSession {
        id: request.session_id,
        app_name: request.app_name,
        mode: request.mode,
        platform: request.platform,
        client_pid: request.client_pid,
        parent_session_id: request.parent_session_id,
        job_id: request.job_id,
        metadata: request.metadata,
        lease_ttl: request.lease_ttl,
        ..StoredSession::default()
    })
}

/// An `Append` whose entries are still encoded: each one the edge can vouch
/// for as it is (see `raw_entry`) is stored in the bytes it came in; the
/// rest are decoded and checked field by field.
pub fn append_batch(
    request: WireAppendRequest,
    limits: &Limits,
) -> Result<AppendBatch, RequestError> {
    session_id(&request.session_id)?;
    if request.entries.is_empty() {
        return Err(invalid(
            "entries",
            "is empty; a batch needs at least one entry",
        ));
    }
    limits.batch_entries(request.entries.len())?;
    if request.batch_id.len() > MAX_BATCH_ID_LEN {
        return Err(RequestError::OverLimit {
            field: "batch_id",
            reason: format!(
                "{} bytes, at most {MAX_BATCH_ID_LEN}",
                request.batch_id.len()
            ),
        });
    }
    let entries = request
        .entries
        .into_iter()
        .map(|bytes| new_entry(bytes, limits))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(AppendBatch {
        session_id: request.session_id,
        entries,
        expected_last_seq: request.expected_last_seq,
        batch_id: Some(request.batch_id).filter(|id| !id.is_empty()),
    })
}

fn new_entry(bytes: Bytes, limits: &Limits) -> Result<NewEntry, RequestError> {
    if let Some(vouched) = raw_entry::vouch(&bytes, limits) {
        return Ok(NewEntry::Encoded {
            bytes,
            has_timestamp: vouched.has_timestamp,
        });
    }
    let entry = pb::LogEntry::decode(bytes).map_err(|err| {
        invalid(
            "entries",
            format!(
                "holds an entry that is not valid protobuf: {}",
                decode_fault(&err.to_string())
            ),
        )
    })?;
    stored_entry(entry, limits).map(NewEntry::Decoded)
}

/// Whether `stored_entry` takes this timestamp: one `SystemTime` holds,
/// with nanos in range.
pub(super) fn valid_timestamp(timestamp: &prost_types::Timestamp) -> bool {
    SystemTime::try_from(*timestamp).is_ok() && (0..1_000_000_000).contains(&timestamp.nanos)
}

/// One entry, validated against the limits.
pub fn stored_entry(entry: pb::LogEntry, limits: &Limits) -> Result<StoredEntry, RequestError> {
    limits.entry_bytes(prost::Message::encoded_len(&entry))?;
    limits.name("entries.logger", &entry.logger)?;
    limits.text("entries.format", &entry.format)?;
    limits.structure("entries.fields", entry.fields.as_ref())?;
    let level = level(entry.level, "entries.level")?;
    if let Some(timestamp) = &entry.timestamp
        && !valid_timestamp(timestamp)
    {
        return Err(invalid("entries.timestamp", "is not a valid timestamp"));
    }
    if !matches!(entry.trace_id.len(), 0 | TRACE_ID_LEN) {
        return Err(invalid(
            "entries.trace_id",
            format!("must be empty or {TRACE_ID_LEN} bytes"),
        ));
    }
    if !matches!(entry.span_id.len(), 0 | SPAN_ID_LEN) {
        return Err(invalid(
            "entries.span_id",
            format!("must be empty or {SPAN_ID_LEN} bytes"),
        ));
    }
    Ok(StoredEntry {
        seq: 0,
        timestamp: entry.timestamp,
        level: level.into(),
        logger: entry.logger,
        message: entry.message,
        format: entry.format,
        fields: entry.fields,
        trace_id: entry.trace_id,
        span_id: entry.span_id,
    })
}

fn level(value: i32, field: &'static str) -> Result<Level, RequestError> {
    Level::try_from(value).map_err(|_| invalid(field, format!("{value} is not a level (0 to 6)")))
}

pub fn filter(filter: Option<pb::LogFilter>, limits: &Limits) -> Result<EntryFilter, RequestError> {
    let Some(filter) = filter else {
        return Ok(EntryFilter::default());
    };
    entry_filter(
        level(filter.min_level, "filter.min_level")?,
        filter.logger_prefixes,
        filter.contains,
        limits,
    )
}

pub fn read_query(request: pb::ReadRequest, limits: &Limits) -> Result<ReadQuery, RequestError> {
    session_id(&request.session_id)?;
    Ok(ReadQuery {
        filter: filter(request.filter, limits)?,
        session_id: request.session_id,
        after_seq: request.after_seq,
        limit: request.limit,
        tail: request.tail,
    })
}

pub fn follow_query(
    request: pb::FollowRequest,
    limits: &Limits,
) -> Result<FollowQuery, RequestError> {
    session_id(&request.session_id)?;
    Ok(FollowQuery {
        filter: filter(request.filter, limits)?,
        session_id: request.session_id,
        after_seq: request.after_seq,
        tail: request.tail,
        max_batch: request.max_batch,
    })
}

pub fn watch_query(
    request: pb::WatchSessionsRequest,
    limits: &Limits,
) -> Result<WatchQuery, RequestError> {
    limits.name("app_name", &request.app_name)?;
    limits.name("job_id", &request.job_id)?;
    Ok(WatchQuery {
        include_existing: request.include_existing,
        state: state_filter(request.state, "state")?,
        app_name: request.app_name,
        job_id: request.job_id,
    })
}

pub(super) fn follow_response(event: FollowEvent<SessionView>) -> EncodedFollowResponse {
    use pb::follow_response::Event;
    let event = match event {
        FollowEvent::Batch { entries, cursor } => {
            return EncodedFollowResponse::batch(&entries, cursor);
        }
        FollowEvent::CaughtUp { cursor } => Event::CaughtUp(pb::CaughtUp { cursor }),
        FollowEvent::Ended(view) => Event::Ended(session(view)),
    };
    pb::FollowResponse { event: Some(event) }.into()
}

pub(super) fn session_event(event: WatchEvent) -> pb::SessionEvent {
    use pb::session_event::Kind;
    let (kind, view) = match event {
        WatchEvent::Started(view) => (Kind::Started, Some(view)),
        WatchEvent::Updated(view) => (Kind::Updated, Some(view)),
        WatchEvent::Ended(view) => (Kind::Ended, Some(view)),
        WatchEvent::Deleted(view) => (Kind::Deleted, Some(view)),
        WatchEvent::CaughtUp => (Kind::CaughtUp, None),
    };
    pb::SessionEvent {
        kind: kind.into(),
        session: view.map(session),
    }
}

pub fn list_query(
    request: pb::ListSessionsRequest,
    limits: &Limits,
) -> Result<ListQuery, RequestError> {
    optional_id("parent_session_id", &request.parent_session_id)?;
    limits.name("app_name", &request.app_name)?;
    limits.name("job_id", &request.job_id)?;
    Ok(ListQuery {
        state: state_filter(request.state, "state")?,
        app_name: request.app_name,
        job_id: request.job_id,
        parent_session_id: request.parent_session_id,
        page_size: request.page_size,
        after_id: decode_page_token(&request.page_token)?,
    })
}

/// `UNSPECIFIED` means every state.
pub(super) fn state_filter(value: i32, field: &'static str) -> Result<Option<State>, RequestError> {
    match pb::SessionState::try_from(value) {
        Ok(pb::SessionState::Unspecified) => Ok(None),
        Ok(pb::SessionState::Active) => Ok(Some(State::Active)),
        Ok(pb::SessionState::Ended) => Ok(Some(State::Ended)),
        Err(_) => Err(invalid(field, format!("{value} is not a session state"))),
    }
}

pub fn session(view: SessionView) -> pb::Session {
    let SessionView {
        record, counters, ..
    } = view;
    pb::Session {
        state: record.state,
        id: record.id,
        app_name: record.app_name,
        mode: record.mode,
        platform: record.platform,
        client_pid: record.client_pid,
        parent_session_id: record.parent_session_id,
        job_id: record.job_id,
        metadata: record.metadata,
        created_at: record.created_at,
        updated_at: record.updated_at,
        ended_at: record.ended_at,
        end_reason: record.end_reason,
        last_seq: counters.last_seq,
        entry_count: counters.entry_count,
        size_bytes: counters.size_bytes,
        lease_ttl: record.lease_ttl,
    }
}

pub fn log_entry(entry: StoredEntry) -> pb::LogEntry {
    pb::LogEntry {
        seq: entry.seq,
        timestamp: entry.timestamp,
        level: entry.level,
        logger: entry.logger,
        message: entry.message,
        format: entry.format,
        fields: entry.fields,
        trace_id: entry.trace_id,
        span_id: entry.span_id,
    }
}

pub(super) fn session_state(state: State) -> pb::SessionState {
    match state {
        State::Unspecified => pb::SessionState::Unspecified,
        State::Active => pb::SessionState::Active,
        State::Ended => pb::SessionState::Ended,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn stored_entries_decode_as_log_entries() {
        let stored = StoredEntry {
            seq: 9,
            timestamp: Some(SystemTime::UNIX_EPOCH.into()),
            level: Level::Warn.into(),
            logger: "net".into(),
            message: "slow".into(),
            format: "slow {ms}".into(),
            fields: Some(prost_types::Struct::default()),
            trace_id: vec![1; TRACE_ID_LEN],
            span_id: vec![2; SPAN_ID_LEN],
        };
        let wire = pb::LogEntry::decode(stored.encode_to_vec().as_slice()).expect("same schema");
        assert_eq!(wire, log_entry(stored));
    }

    #[test]
    fn malformed_entries_are_refused() {
        let batch = |entry: pb::LogEntry| {
            let request = pb::AppendRequest {
                session_id: "s".into(),
                entries: vec![entry],
                ..pb::AppendRequest::default()
            };
            WireAppendRequest::decode(request.encode_to_vec().as_slice()).expect("decodes")
        };
        let bad_level = pb::LogEntry {
            level: 42,
            ..pb::LogEntry::default()
        };
        let bad_trace = pb::LogEntry {
            trace_id: vec![0; 3],
            ..pb::LogEntry::default()
        };
        let limits = Limits::default();
        assert!(append_batch(batch(bad_level), &limits).is_err());
        assert!(append_batch(batch(bad_trace), &limits).is_err());
        assert!(append_batch(batch(pb::LogEntry::default()), &limits).is_ok());
        let mut not_protobuf = batch(pb::LogEntry::default());
        not_protobuf.entries = vec![vec![0x0a, 0x05, b'x'].into()];
        let err = append_batch(not_protobuf, &limits).expect_err("refused");
        assert!(err.to_string().contains("not valid protobuf"), "{err}");
    }

    #[test]
    fn vouched_entries_keep_their_bytes_and_the_rest_are_decoded() {
        let limits = Limits::default();
        let plain = pb::LogEntry {
            message: "kept".into(),
            ..pb::LogEntry::default()
        };
        let with_seq = pb::LogEntry {
            seq: 9,
            message: "decoded".into(),
            ..pb::LogEntry::default()
        };
        let request = pb::AppendRequest {
            session_id: "s".into(),
            entries: vec![plain.clone(), with_seq],
            ..pb::AppendRequest::default()
        };
        let wire = WireAppendRequest::decode(request.encode_to_vec().as_slice()).expect("decodes");
        let batch = append_batch(wire, &limits).expect("valid");
        assert_eq!(
            batch.entries[0],
            NewEntry::Encoded {
                bytes: plain.encode_to_vec().into(),
                has_timestamp: false
            }
        );
        let NewEntry::Decoded(decoded) = &batch.entries[1] else {
            panic!("an entry with a seq is decoded: {:?}", batch.entries[1]);
        };
        assert_eq!(decoded.message, "decoded");
    }
}
