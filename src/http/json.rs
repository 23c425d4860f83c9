//! The HTTP API's JSON: the contract's field names, rendered as the CLI's
//! `--json` renders them (levels and states as command-line names, times
//! as RFC 3339, `Struct`s as objects, ids as hex), built from the rules'
//! own types. Absent times are `null`.

use prost::Message as _;
use serde::Serialize;
use serde_json::Value;

use crate::display::{duration_text, hex, level_name, state_name, struct_json, time_text};
use crate::edge::{Code, Failure};
use crate::sessions::{SessionView, WatchEvent};
use crate::store::schema::{State, StoredEntry};

pub(super) const CONTENT_TYPE: &str = "application/json";

/// How many bytes `value` takes as JSON, without keeping the text. What
/// cannot be rendered weighs nothing (it is not sent either).
pub(super) fn json_len(value: &impl Serialize) -> usize {
    let mut counter = ByteCounter(0);
    match serde_json::to_writer(&mut counter, value) {
        Ok(()) => counter.0,
        Err(_) => 0,
    }
}

/// Counts what is written to it.
#[derive(Debug)]
struct ByteCounter(usize);

impl std::io::Write for ByteCounter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0 = self.0.saturating_add(bytes.len());
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What an item adds to a JSON array: itself and a comma.
pub(super) fn json_item_len(value: &impl Serialize) -> usize {
    json_len(value).saturating_add(1)
}

/// A `Session`.
#[derive(Debug, Serialize)]
pub(super) struct SessionJson {
    pub(super) id: String,
    app_name: String,
    mode: String,
    platform: String,
    client_pid: u32,
    parent_session_id: String,
    job_id: String,
    metadata: Value,
    created_at: Option<String>,
    updated_at: Option<String>,
    ended_at: Option<String>,
    state: &'static str,
    end_reason: String,
    last_seq: u64,
    entry_count: u64,
    size_bytes: u64,
    lease_ttl: Option<String>,
}

fn non_empty(text: String) -> Option<String> {
    Some(text).filter(|text| !text.is_empty())
}

impl From<SessionView> for SessionJson {
    fn from(view: SessionView) -> Self {
        let SessionView {
            record, counters, ..
        } = view;
        Self {
            metadata: struct_json(record.metadata.as_ref()),
            created_at: non_empty(time_text(record.created_at.as_ref())),
            updated_at: non_empty(time_text(record.updated_at.as_ref())),
            ended_at: non_empty(time_text(record.ended_at.as_ref())),
            lease_ttl: non_empty(duration_text(record.lease_ttl.as_ref())),
            state: state_name(record.state),
            id: record.id,
            app_name: record.app_name,
            mode: record.mode,
            platform: record.platform,
            client_pid: record.client_pid,
            parent_session_id: record.parent_session_id,
            job_id: record.job_id,
            end_reason: record.end_reason,
            last_seq: counters.last_seq,
            entry_count: counters.entry_count,
            size_bytes: counters.size_bytes,
        }
    }
}

/// A `LogEntry`.
#[derive(Debug, Serialize)]
pub(super) struct EntryJson {
    pub(super) seq: u64,
    timestamp: Option<String>,
    level: &'static str,
    logger: String,
    message: String,
    format: String,
    fields: Value,
    trace_id: String,
    span_id: String,
}

impl From<StoredEntry> for EntryJson {
    fn from(entry: StoredEntry) -> Self {
        Self {
            seq: entry.seq,
            timestamp: non_empty(time_text(entry.timestamp.as_ref())),
            level: level_name(entry.level),
            fields: struct_json(entry.fields.as_ref()),
            trace_id: hex(&entry.trace_id),
            span_id: hex(&entry.span_id),
            logger: entry.logger,
            message: entry.message,
            format: entry.format,
        }
    }
}

/// Entries as the store holds them (encoded), decoded for JSON. A record
/// that does not decode is corrupt data, reported as such.
pub(super) fn decode_entry(bytes: &[u8]) -> Result<EntryJson, Failure> {
    StoredEntry::decode(bytes)
        .map(EntryJson::from)
        .map_err(|err| {
            tracing::error!(error = %err, "a stored entry does not decode");
            Failure::new(Code::Internal, "stored data is corrupt; see the server log")
        })
}

/// `ListSessionsResponse`.
#[derive(Debug, Serialize)]
pub(super) struct ListJson {
    pub(super) sessions: Vec<SessionJson>,
    pub(super) next_page_token: String,
}

/// `ReadResponse`.
#[derive(Debug, Serialize)]
pub(super) struct EntriesJson {
    pub(super) entries: Vec<EntryJson>,
    pub(super) next_cursor: u64,
    pub(super) last_seq: u64,
    pub(super) state: &'static str,
}

/// `LogBatch`, the data of a follow stream's unnamed events, from its
/// entries already rendered (`{"entries": [...], "cursor": N}`): a batch
/// is cut into events by the JSON size of its entries, which is known
/// only once they are rendered.
pub(super) fn batch_json(entries: &[String], cursor: u64) -> String {
    format!(r#"{{"entries":[{}],"cursor":{cursor}}}"#, entries.join(","))
}

/// `CaughtUp`.
#[derive(Debug, Serialize)]
pub(super) struct CaughtUpJson {
    pub(super) cursor: u64,
}

/// A `SessionEvent`; `session` is absent on `caught_up`.
#[derive(Debug, Serialize)]
pub(super) struct SessionEventJson {
    pub(super) kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) session: Option<SessionJson>,
}

impl From<WatchEvent> for SessionEventJson {
    fn from(event: WatchEvent) -> Self {
        let (kind, view) = match event {
            WatchEvent::Started(view) => ("started", Some(view)),
            WatchEvent::Updated(view) => ("updated", Some(view)),
            WatchEvent::Ended(view) => ("ended", Some(view)),
            WatchEvent::Deleted(view) => ("deleted", Some(view)),
            WatchEvent::CaughtUp => ("caught_up", None),
        };
        Self {
            kind,
            session: view.map(|view| SessionJson::from(std::sync::Arc::unwrap_or_clone(view))),
        }
    }
}

/// The name of a session state, as in `SessionJson::state`.
pub(super) fn state(state: State) -> &'static str {
    state_name(state.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::schema::Level;

    #[test]
    fn entries_use_the_contract_field_names() {
        let entry = StoredEntry {
            seq: 7,
            level: Level::Warn.into(),
            logger: "net".into(),
            message: "slow".into(),
            span_id: vec![0xab; 8],
            ..StoredEntry::default()
        };
        let json = serde_json::to_value(EntryJson::from(entry)).expect("serializes");
        assert_eq!(json["seq"], 7);
        assert_eq!(json["level"], "warn");
        assert_eq!(json["span_id"], "abababababababab");
        assert_eq!(json["timestamp"], Value::Null);
        assert_eq!(json["fields"], serde_json::json!({}));
    }

    #[test]
    fn batches_render_as_log_batches() {
        let entries: Vec<String> = (1..=2)
            .map(|seq| {
                let entry = EntryJson::from(StoredEntry {
                    seq,
                    ..StoredEntry::default()
                });
                serde_json::to_string(&entry).expect("serializes")
            })
            .collect();
        let batch: Value = serde_json::from_str(&batch_json(&entries, 9)).expect("JSON");
        assert_eq!(batch["cursor"], 9);
        assert_eq!(batch["entries"][1]["seq"], 2);
        let empty: Value = serde_json::from_str(&batch_json(&[], 3)).expect("JSON");
        assert_eq!(empty["entries"], serde_json::json!([]));
    }

    #[test]
    fn json_len_is_the_length_of_the_text() {
        let entry = EntryJson::from(StoredEntry {
            message: "\u{1}\u{1}é".into(),
            ..StoredEntry::default()
        });
        let text = serde_json::to_string(&entry).expect("serializes");
        assert_eq!(json_len(&entry), text.len());
        assert!(text.contains("\\u0001\\u0001"), "{text}");
    }

    #[test]
    fn undecodable_entries_are_internal_failures() {
        let failure = decode_entry(&[0xff_u8, 0xff, 0xff]).expect_err("garbage");
        assert_eq!(failure.code, Code::Internal);
    }
}
