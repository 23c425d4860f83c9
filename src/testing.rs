//! Internals exposed to the integration tests, the examples and the fuzz
//! targets (the `testing` feature, which the crate's own dev-dependency
//! turns on); not a stable API. The check functions run bytes or text a
//! client or the disk controls through the code the server runs on them,
//! with the default limits, and say whether it was accepted. Refusing is
//! always allowed; a panic is a bug.

use std::time::{Duration, SystemTime};

use prost::Message;

use crate::api::convert;
use crate::api::wire::WireAppendRequest;
use crate::edge::Limits;
use crate::edge::entry::stored_entry;
use crate::edge::raw_entry;
use crate::edge::session::new_session;
use crate::http::query;
use crate::pb;
use crate::store::decode_entry;

pub use crate::sessions::{AppendBatch, END_LOGGER, PruneReason, SessionError, SessionManager};
pub use crate::store::schema::{LogCounters, State, StoredEntry, StoredSession};
pub use crate::store::{NewEntry, Store};

/// The Prometheus text `/metrics` would serve now (with no session counts).
pub fn metrics_text() -> String {
    crate::metrics::get().render(&Default::default())
}

/// An `Append` request's bytes, decoded and checked as the gRPC edge does.
pub fn append_request(bytes: &[u8]) -> bool {
    WireAppendRequest::decode(bytes)
        .is_ok_and(|request| convert::append_batch(request, &Limits::default()).is_ok())
}

/// A `StartSession` request's bytes, decoded and checked.
pub fn start_session_request(bytes: &[u8]) -> bool {
    pb::StartSessionRequest::decode(bytes)
        .is_ok_and(|request| new_session(request, &Limits::default()).is_ok())
}

/// A `Read` request's bytes, decoded and checked.
pub fn read_request(bytes: &[u8]) -> bool {
    pb::ReadRequest::decode(bytes)
        .is_ok_and(|request| convert::read_query(request, &Limits::default()).is_ok())
}

/// A `Follow` request's bytes, decoded and checked.
pub fn follow_request(bytes: &[u8]) -> bool {
    pb::FollowRequest::decode(bytes)
        .is_ok_and(|request| convert::follow_query(request, &Limits::default()).is_ok())
}

/// A `ListSessions` request's bytes, decoded and checked.
pub fn list_request(bytes: &[u8]) -> bool {
    pb::ListSessionsRequest::decode(bytes)
        .is_ok_and(|request| convert::list_query(request, &Limits::default()).is_ok())
}

/// A `WatchSessions` request's bytes, decoded and checked.
pub fn watch_request(bytes: &[u8]) -> bool {
    pb::WatchSessionsRequest::decode(bytes)
        .is_ok_and(|request| convert::watch_query(request, &Limits::default()).is_ok())
}

/// Whether the in-place check vouches for `bytes` as one `LogEntry`.
///
/// # Panics
///
/// When it vouches for bytes it must not: bytes that do not decode as a
/// `LogEntry`, that `stored_entry` refuses, or that the store, keeping them
/// as they are, would read back as another entry than the one it stores
/// from their decoded fields.
pub fn vouch_entry(bytes: &[u8]) -> bool {
    let limits = Limits::default();
    let Some(vouched) = raw_entry::vouch(bytes, &limits) else {
        return false;
    };
    let entry = pb::LogEntry::decode(bytes)
        .unwrap_or_else(|err| panic!("vouched for bytes that do not decode: {err}"));
    let decoded = stored_entry(entry, &limits)
        .unwrap_or_else(|err| panic!("vouched for an entry `stored_entry` refuses: {err}"));
    let kept = NewEntry::Encoded {
        bytes: bytes.to_vec().into(),
        has_timestamp: vouched.has_timestamp,
    };
    let (seq, now) = (
        7,
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
    );
    let read_back = |new: NewEntry| {
        decode_entry(&new.encode(seq, now))
            .unwrap_or_else(|err| panic!("a vouched-for entry is stored as {err}"))
            // Compared encoded: a NaN number in `fields` is not equal to itself.
            .encode_to_vec()
    };
    assert_eq!(
        read_back(kept),
        read_back(NewEntry::Decoded(decoded)),
        "a vouched-for entry kept as it came reads back as another entry"
    );
    true
}

/// A value of a session's log tree as the store reads it back: a block
/// (or a layout-1 entry) sliced into entries, each decoded. Whether every
/// entry decoded.
pub fn decode_stored_value(bytes: &[u8]) -> bool {
    crate::store::block::entries(&bytes.into())
        .is_ok_and(|entries| entries.iter().all(|entry| decode_entry(entry).is_ok()))
}

/// One stored entry's bytes, decoded as the store decodes them.
pub fn decode_stored_entry(bytes: &[u8]) -> bool {
    decode_entry(bytes).is_ok()
}

/// The HTTP edge's query parsers, each on the same request. The text
/// before the first `?` of `path_and_query` stands for the `{id}` path
/// parameter (as the router hands it over, percent-decoded), the rest for
/// the raw query; `last_event_id` is the follow route's `Last-Event-ID`
/// header. Returns the routes that accepted it, of `get` (a session, which
/// takes no parameters), `list`, `read`, `follow`, `watch`, `search` and
/// `export`.
pub fn http_query(path_and_query: &str, last_event_id: Option<&str>) -> Vec<&'static str> {
    let limits = Limits::default();
    let (id, raw) = match path_and_query.split_once('?') {
        Some((id, raw)) => (id, Some(raw)),
        None => (path_and_query, None),
    };
    [
        ("get", query::Params::parse(raw, &[]).is_ok()),
        ("list", query::list_query(raw, &limits).is_ok()),
        ("read", query::read_query(id, raw, &limits).is_ok()),
        (
            "follow",
            query::follow_query(id, raw, last_event_id, &limits).is_ok(),
        ),
        ("watch", query::watch_query(raw, &limits).is_ok()),
        ("search", query::search_query(raw, &limits).is_ok()),
        ("export", query::export_format(raw).is_ok()),
    ]
    .into_iter()
    .filter_map(|(route, accepted)| accepted.then_some(route))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> pb::LogEntry {
        pb::LogEntry {
            timestamp: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 5,
            }),
            level: pb::Level::Warn.into(),
            logger: "build".to_owned(),
            message: "slow test".to_owned(),
            trace_id: vec![1; 16],
            ..pb::LogEntry::default()
        }
    }

    #[test]
    fn a_valid_entry_is_vouched_for_and_a_request_holding_it_accepted() {
        assert!(vouch_entry(&entry().encode_to_vec()));
        let request = pb::AppendRequest {
            session_id: "s1".to_owned(),
            entries: vec![entry()],
            ..pb::AppendRequest::default()
        };
        assert!(append_request(&request.encode_to_vec()));
        let with_seq = pb::LogEntry { seq: 3, ..entry() };
        assert!(!vouch_entry(&with_seq.encode_to_vec()));
    }

    #[test]
    fn http_queries_are_accepted_by_the_routes_that_take_them() {
        assert_eq!(
            http_query("s1", None),
            ["get", "list", "read", "follow", "watch", "search", "export"]
        );
        assert_eq!(
            http_query("s1?after=3&level=warn", None),
            ["read", "follow"]
        );
        assert_eq!(
            http_query("s1?state=ended", None),
            ["list", "watch", "search"]
        );
        assert_eq!(http_query("s1?format=ndjson", None), ["export"]);
        assert_eq!(http_query("s1?after=x", Some("4")), Vec::<&str>::new());
        assert_eq!(http_query("s1?tail=2", Some("4")), ["read", "follow"]);
    }

    #[test]
    fn stored_values_decode_as_the_store_reads_them() {
        let mut stored = entry();
        stored.seq = 1;
        let bytes = stored.encode_to_vec();
        assert!(decode_stored_entry(&bytes));
        assert!(decode_stored_value(&bytes));
        assert!(!decode_stored_value(&[0xff]));
    }
}
