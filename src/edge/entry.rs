//! One log entry as the contract carries it: the rules of its fields,
//! checked on the decoded message (`stored_entry`) and, for the same rules
//! on its bytes in place, by `raw_entry`; and a stored entry back as the
//! contract's message. Field numbers of `LogEntry` and `StoredEntry` are
//! equal, so entries move across field by field.

use std::time::SystemTime;

use crate::pb;
use crate::store::schema::{Level, StoredEntry};

use super::error::{RequestError, invalid};
use super::limits::Limits;

/// Bytes of a trace id, when there is one.
pub(crate) const TRACE_ID_LEN: usize = 16;
/// Bytes of a span id, when there is one.
pub(crate) const SPAN_ID_LEN: usize = 8;

/// Whether `stored_entry` takes this timestamp: one `SystemTime` holds,
/// with nanos in range.
pub(crate) fn valid_timestamp(timestamp: &prost_types::Timestamp) -> bool {
    SystemTime::try_from(*timestamp).is_ok() && (0..1_000_000_000).contains(&timestamp.nanos)
}

/// One entry, validated against the limits.
pub(crate) fn stored_entry(
    entry: pb::LogEntry,
    limits: &Limits,
) -> Result<StoredEntry, RequestError> {
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

/// A level the contract knows; anything else makes `field` invalid.
pub(crate) fn level(value: i32, field: &'static str) -> Result<Level, RequestError> {
    Level::try_from(value).map_err(|_| invalid(field, format!("{value} is not a level (0 to 6)")))
}

/// A stored entry as the contract's message.
pub(crate) fn log_entry(entry: StoredEntry) -> pb::LogEntry {
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
}
