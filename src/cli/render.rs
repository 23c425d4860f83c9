//! How the CLI prints sessions and entries: readable text by default, one
//! JSON object per line with `--json`.

use std::time::{Duration, SystemTime};

use prost_types::value::Kind;
use serde_json::{Map, Value, json};

use crate::pb;

/// Level names as typed on the command line.
pub(super) fn level_name(level: i32) -> &'static str {
    match pb::Level::try_from(level) {
        Ok(pb::Level::Trace) => "trace",
        Ok(pb::Level::Debug) => "debug",
        Ok(pb::Level::Info) => "info",
        Ok(pb::Level::Warn) => "warn",
        Ok(pb::Level::Error) => "error",
        Ok(pb::Level::Critical) => "critical",
        Ok(pb::Level::Unspecified) | Err(_) => "unspecified",
    }
}

pub(super) fn state_name(state: i32) -> &'static str {
    match pb::SessionState::try_from(state) {
        Ok(pb::SessionState::Active) => "active",
        Ok(pb::SessionState::Ended) => "ended",
        Ok(pb::SessionState::Unspecified) | Err(_) => "unspecified",
    }
}

fn time_text(timestamp: Option<&prost_types::Timestamp>) -> String {
    timestamp
        .and_then(|timestamp| SystemTime::try_from(*timestamp).ok())
        .map(|time| humantime::format_rfc3339_millis(time).to_string())
        .unwrap_or_default()
}

fn duration_text(duration: Option<&prost_types::Duration>) -> String {
    duration
        .and_then(|duration| Duration::try_from(*duration).ok())
        .filter(|duration| !duration.is_zero())
        .map(|duration| humantime::format_duration(duration).to_string())
        .unwrap_or_default()
}

/// A protobuf `Struct` as a JSON object.
pub(super) fn struct_json(value: Option<&prost_types::Struct>) -> Value {
    let fields = value.map(|value| &value.fields);
    Value::Object(
        fields
            .into_iter()
            .flatten()
            .map(|(key, value)| (key.clone(), value_json(value)))
            .collect::<Map<_, _>>(),
    )
}

fn value_json(value: &prost_types::Value) -> Value {
    match &value.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(flag)) => Value::Bool(*flag),
        Some(Kind::NumberValue(number)) => number_json(*number),
        Some(Kind::StringValue(text)) => Value::String(text.clone()),
        Some(Kind::StructValue(inner)) => struct_json(Some(inner)),
        Some(Kind::ListValue(list)) => Value::Array(list.values.iter().map(value_json).collect()),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

pub(super) fn session_json(session: &pb::Session) -> Value {
    json!({
        "id": session.id,
        "app_name": session.app_name,
        "mode": session.mode,
        "platform": session.platform,
        "client_pid": session.client_pid,
        "parent_session_id": session.parent_session_id,
        "job_id": session.job_id,
        "metadata": struct_json(session.metadata.as_ref()),
        "created_at": time_text(session.created_at.as_ref()),
        "updated_at": time_text(session.updated_at.as_ref()),
        "ended_at": time_text(session.ended_at.as_ref()),
        "state": state_name(session.state),
        "end_reason": session.end_reason,
        "last_seq": session.last_seq,
        "entry_count": session.entry_count,
        "size_bytes": session.size_bytes,
        "lease_ttl": duration_text(session.lease_ttl.as_ref()),
    })
}

pub(super) fn entry_json(entry: &pb::LogEntry) -> Value {
    json!({
        "seq": entry.seq,
        "timestamp": time_text(entry.timestamp.as_ref()),
        "level": level_name(entry.level),
        "logger": entry.logger,
        "message": entry.message,
        "format": entry.format,
        "fields": struct_json(entry.fields.as_ref()),
        "trace_id": hex(&entry.trace_id),
        "span_id": hex(&entry.span_id),
    })
}

/// `key: value` lines, one field per line.
pub(super) fn session_text(session: &pb::Session) -> String {
    let mut lines = Vec::new();
    if let Value::Object(fields) = session_json(session) {
        for (key, value) in fields {
            let shown = match value {
                Value::String(text) => text,
                other => other.to_string(),
            };
            lines.push(format!("{key:<18} {shown}"));
        }
    }
    lines.join("\n")
}

/// One row of `ls`.
pub(super) fn session_row(session: &pb::Session) -> String {
    format!(
        "{:<28} {:<7} {:<16} {:<16} {:>9}  {}",
        session.id,
        state_name(session.state),
        session.app_name,
        session.job_id,
        session.entry_count,
        time_text(session.created_at.as_ref()),
    )
}

pub(super) const SESSION_HEADER: &str =
    "ID                           STATE   APP              JOB                ENTRIES  CREATED";

/// `seq time LEVEL logger: message`, plus fields when there are any.
pub(super) fn entry_text(entry: &pb::LogEntry) -> String {
    let mut line = format!(
        "{:>6} {} {:<8} {}: {}",
        entry.seq,
        time_text(entry.timestamp.as_ref()),
        level_name(entry.level).to_uppercase(),
        entry.logger,
        entry.message
    );
    if entry
        .fields
        .as_ref()
        .is_some_and(|fields| !fields.fields.is_empty())
    {
        line.push(' ');
        line.push_str(&struct_json(entry.fields.as_ref()).to_string());
    }
    line
}

/// Whole numbers print without a fraction (`2`, not `2.0`): protobuf
/// numbers are doubles, but most were integers when they were logged.
fn number_json(number: f64) -> serde_json::Value {
    const MAX_EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    if number.fract() == 0.0 && number.abs() <= MAX_EXACT {
        #[allow(clippy::cast_possible_truncation)] // whole and within 2^53
        return json!(number as i64);
    }
    json!(number)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structs_render_as_json_objects() {
        let mut inner = prost_types::Struct::default();
        inner.fields.insert(
            "n".into(),
            prost_types::Value {
                kind: Some(Kind::NumberValue(2.0)),
            },
        );
        let mut outer = prost_types::Struct::default();
        outer.fields.insert(
            "inner".into(),
            prost_types::Value {
                kind: Some(Kind::StructValue(inner)),
            },
        );
        assert_eq!(struct_json(Some(&outer)), json!({"inner": {"n": 2}}));
        assert_eq!(number_json(0.5), json!(0.5));
        assert_eq!(number_json(-3.0).to_string(), "-3");
    }

    #[test]
    fn entries_render_with_level_and_logger() {
        let entry = pb::LogEntry {
            seq: 3,
            level: pb::Level::Warn.into(),
            logger: "net".into(),
            message: "slow".into(),
            ..Default::default()
        };
        assert!(entry_text(&entry).contains("WARN"));
        assert!(entry_text(&entry).ends_with("net: slow"));
        assert_eq!(entry_json(&entry)["level"], "warn");
    }
}
