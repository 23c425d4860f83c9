//! Requests of the gRPC edge into the rules' queries, and the rules'
//! events back into responses: a request that passes here is well-formed
//! for the rules. What other edges share (one entry, one session, ids,
//! filters, limits) is checked in `edge`.

use prost::Message;
use prost::bytes::Bytes;

use super::codec::decode_fault;
use super::wire::{EncodedFollowResponse, WireAppendRequest};
use crate::edge::budget::split_within;
use crate::edge::entry::log_entry;
use crate::edge::entry::{level, stored_entry};
use crate::edge::error::invalid;
use crate::edge::raw_entry;
use crate::edge::request::{
    MAX_BATCH_ID_LEN, TextQuery, decode_page_token, entry_filter, optional_id, session_id,
};
use crate::edge::session::session;
use crate::edge::{Limits, RequestError};
use crate::fanout::FollowEvent;
use crate::pb;
use crate::sessions::{
    AppendBatch, FollowQuery, ListQuery, ReadQuery, SearchEvent, SearchQuery, SessionError,
    SessionView, WatchEvent, WatchQuery,
};
use crate::store::NewEntry;
use crate::store::schema::State;
use crate::store::{EntryFilter, StoreError, TimeRange, decode_entry, entry_wire_len};

/// An `Append` whose entries are still encoded: each one the edge can vouch
/// for as it is (see `raw_entry`) is stored in the bytes it came in; the
/// rest are decoded and checked field by field.
pub(crate) fn append_batch(
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

fn filter(filter: Option<pb::LogFilter>, limits: &Limits) -> Result<EntryFilter, RequestError> {
    let Some(filter) = filter else {
        return Ok(EntryFilter::default());
    };
    let text = TextQuery {
        contains: filter.contains,
        ignore_case: filter.ignore_case,
        regex: filter.regex,
    };
    entry_filter(
        level(filter.min_level, "filter.min_level")?,
        filter.logger_prefixes,
        &text,
        limits,
    )
}

pub(crate) fn read_query(
    request: pb::ReadRequest,
    limits: &Limits,
) -> Result<ReadQuery, RequestError> {
    session_id(&request.session_id)?;
    Ok(ReadQuery {
        filter: filter(request.filter, limits)?,
        session_id: request.session_id,
        after_seq: request.after_seq,
        limit: request.limit,
        tail: request.tail,
        max_bytes: limits.max_response_bytes,
    })
}

pub(crate) fn follow_query(
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
        max_bytes: limits.max_response_bytes,
    })
}

pub(crate) fn watch_query(
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
        FollowEvent::Batch(batch) => return EncodedFollowResponse::of_batch(&batch),
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
        session: view.map(|view| session(std::sync::Arc::unwrap_or_clone(view))),
    }
}

pub(crate) fn list_query(
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
        max_bytes: limits.max_response_bytes,
    })
}

pub(crate) fn search_query(
    request: pb::SearchRequest,
    limits: &Limits,
) -> Result<SearchQuery, RequestError> {
    optional_id("parent_session_id", &request.parent_session_id)?;
    limits.name("app_name", &request.app_name)?;
    limits.name("job_id", &request.job_id)?;
    let time = TimeRange {
        since_nanos: request
            .since
            .map(|at| timestamp_nanos(&at, "since"))
            .transpose()?,
        until_nanos: request
            .until
            .map(|at| timestamp_nanos(&at, "until"))
            .transpose()?,
    };
    Ok(SearchQuery {
        sessions: ListQuery {
            state: state_filter(request.state, "state")?,
            app_name: request.app_name,
            job_id: request.job_id,
            parent_session_id: request.parent_session_id,
            ..ListQuery::default()
        },
        time,
        filter: filter(request.filter, limits)?,
        limit: request.limit,
        max_bytes: limits.max_response_bytes,
    })
}

fn timestamp_nanos(at: &prost_types::Timestamp, field: &'static str) -> Result<i128, RequestError> {
    if !(0..1_000_000_000).contains(&at.nanos) {
        return Err(invalid(field, "has nanos outside 0..1e9"));
    }
    Ok(i128::from(at.seconds) * 1_000_000_000 + i128::from(at.nanos))
}

/// A search's event as the messages that carry it: hits in messages
/// within `max_bytes` each, the summary in a message of its own.
pub(super) fn search_responses(
    event: SearchEvent,
    max_bytes: usize,
) -> Result<Vec<pb::SearchResponse>, SessionError> {
    match event {
        SearchEvent::Hits {
            session_id,
            entries,
        } => {
            let hits = entries
                .iter()
                .map(|bytes| {
                    Ok(pb::SearchHit {
                        session_id: session_id.to_string(),
                        entry: Some(log_entry(decode_entry(bytes)?)),
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            let groups = split_within(hits, max_bytes, |hit| entry_wire_len(hit.encoded_len()));
            Ok(groups
                .into_iter()
                .map(|hits| pb::SearchResponse {
                    hits,
                    summary: None,
                })
                .collect())
        }
        SearchEvent::Done(summary) => Ok(vec![pb::SearchResponse {
            hits: Vec::new(),
            summary: Some(pb::SearchSummary {
                sessions_scanned: summary.sessions_scanned,
                entries_scanned: summary.entries_scanned,
                bytes_scanned: summary.bytes_scanned,
                limit_reached: summary.limit_reached,
            }),
        }]),
    }
}

/// `UNSPECIFIED` means every state.
fn state_filter(value: i32, field: &'static str) -> Result<Option<State>, RequestError> {
    match pb::SessionState::try_from(value) {
        Ok(pb::SessionState::Unspecified) => Ok(None),
        Ok(pb::SessionState::Active) => Ok(Some(State::Active)),
        Ok(pb::SessionState::Ended) => Ok(Some(State::Ended)),
        Err(_) => Err(invalid(field, format!("{value} is not a session state"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

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
