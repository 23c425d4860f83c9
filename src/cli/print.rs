//! How the CLI prints sessions and entries: readable text by default, one
//! JSON object per line with `--json`. Text passes through
//! `terminal::safe`, so what a client stored cannot drive the reader's
//! terminal; JSON escapes control characters itself.

use serde_json::{Value, json};

use super::terminal::{Escapes, safe};

use crate::display::{duration_text, hex, level_name, state_name, struct_json, time_text};
use crate::pb;

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
            lines.push(format!("{key:<18} {}", safe(&shown, Escapes::None)));
        }
    }
    lines.join("\n")
}

/// One row of `ls`.
pub(super) fn session_row(session: &pb::Session) -> String {
    let row = format!(
        "{:<28} {:<7} {:<16} {:<16} {:>9}  {}",
        session.id,
        state_name(session.state),
        session.app_name,
        session.job_id,
        session.entry_count,
        time_text(session.created_at.as_ref()),
    );
    safe(&row, Escapes::None).into_owned()
}

pub(super) const SESSION_HEADER: &str =
    "ID                           STATE   APP              JOB                ENTRIES  CREATED";

/// `seq time LEVEL logger: message`, plus fields when there are any, with
/// only the `escapes` the caller allows.
pub(super) fn entry_text(entry: &pb::LogEntry, escapes: Escapes) -> String {
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
    safe(&line, escapes).into_owned()
}

/// A search hit: `entry_json` with the session's id first.
pub(super) fn hit_json(session_id: &str, entry: &pb::LogEntry) -> Value {
    let mut object = serde_json::Map::new();
    object.insert("session_id".to_owned(), Value::from(session_id));
    if let Value::Object(fields) = entry_json(entry) {
        object.extend(fields);
    }
    Value::Object(object)
}

/// A search hit: `SESSION SEQ TIME LEVEL LOGGER: MESSAGE`, every control
/// character escaped.
pub(super) fn hit_text(session_id: &str, entry: &pb::LogEntry) -> String {
    let line = format!(
        "{session_id} {} {} {} {}: {}",
        entry.seq,
        time_text(entry.timestamp.as_ref()),
        level_name(entry.level).to_uppercase(),
        entry.logger,
        entry.message
    );
    safe(&line, Escapes::None).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_render_with_level_and_logger() {
        let entry = pb::LogEntry {
            seq: 3,
            level: pb::Level::Warn.into(),
            logger: "net".into(),
            message: "slow".into(),
            ..Default::default()
        };
        assert!(entry_text(&entry, Escapes::None).contains("WARN"));
        assert!(entry_text(&entry, Escapes::None).ends_with("net: slow"));
        assert_eq!(entry_json(&entry)["level"], "warn");
    }

    #[test]
    fn stored_text_cannot_forge_lines_or_drive_the_terminal() {
        let entry = pb::LogEntry {
            seq: 1,
            logger: "x\x1b]0;owned\x07".into(),
            message: "ok\n     2 2026-01-01T00:00:00.000Z INFO     forged: line".into(),
            ..Default::default()
        };
        let line = entry_text(&entry, Escapes::Colours);
        assert!(!line.chars().any(|c| c.is_control()), "{line:?}");
        assert!(line.contains("\\n     2"), "{line:?}");
        let session = pb::Session {
            id: "s".into(),
            app_name: "\x1b[2Japp".into(),
            end_reason: "done\nstate   ended".into(),
            ..Default::default()
        };
        for text in [session_text(&session), session_row(&session)] {
            assert!(!text.contains('\x1b'), "{text:?}");
        }
        assert_eq!(session_text(&session).lines().count(), 17);
    }
}
