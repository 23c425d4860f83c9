//! Renderings of the contract's values that the CLI (`--json`, text) and
//! the HTTP API share: level and state names as typed on the command line,
//! times as RFC 3339, `Struct`s as JSON objects, bytes as hex. Numbers
//! follow the contract's enums, so no layer's types are needed.

use std::time::{Duration, SystemTime};

use prost_types::value::Kind;
use serde_json::{Map, Value, json};

use crate::pb;

/// Level names as typed on the command line.
pub(crate) fn level_name(level: i32) -> &'static str {
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

/// `active`, `ended`, or `unspecified`.
pub(crate) fn state_name(state: i32) -> &'static str {
    match pb::SessionState::try_from(state) {
        Ok(pb::SessionState::Active) => "active",
        Ok(pb::SessionState::Ended) => "ended",
        Ok(pb::SessionState::Unspecified) | Err(_) => "unspecified",
    }
}

/// RFC 3339 with milliseconds; empty when unset or out of range.
pub(crate) fn time_text(timestamp: Option<&prost_types::Timestamp>) -> String {
    timestamp
        .and_then(|timestamp| SystemTime::try_from(*timestamp).ok())
        .map(|time| humantime::format_rfc3339_millis(time).to_string())
        .unwrap_or_default()
}

/// A point in time given as RFC 3339 in UTC (`2026-01-02T03:04:05Z`, the
/// `Z` and fractions optional) or as a duration before `now` (`90s`,
/// `1h 30m`); the error says which forms are taken.
pub(crate) fn time_from_text(text: &str, now: SystemTime) -> Result<SystemTime, String> {
    let text = text.trim();
    if let Ok(at) = humantime::parse_rfc3339_weak(text) {
        return Ok(at);
    }
    humantime::parse_duration(text)
        .ok()
        .and_then(|ago| now.checked_sub(ago))
        .ok_or_else(|| {
            format!("must be an RFC 3339 time or a duration ago such as `1h`, not `{text}`")
        })
}

/// Like `90s` or `1h 30m`; empty when unset or zero.
pub(crate) fn duration_text(duration: Option<&prost_types::Duration>) -> String {
    duration
        .and_then(|duration| Duration::try_from(*duration).ok())
        .filter(|duration| !duration.is_zero())
        .map(|duration| humantime::format_duration(duration).to_string())
        .unwrap_or_default()
}

/// A protobuf `Struct` as a JSON object.
pub(crate) fn struct_json(value: Option<&prost_types::Struct>) -> Value {
    let fields = value.map(|value| &value.fields);
    Value::Object(
        fields
            .into_iter()
            .flatten()
            .map(|(key, value)| (key.clone(), value_json(value)))
            .collect::<Map<_, _>>(),
    )
}

pub(crate) fn value_json(value: &prost_types::Value) -> Value {
    match &value.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(flag)) => Value::Bool(*flag),
        Some(Kind::NumberValue(number)) => number_json(*number),
        Some(Kind::StringValue(text)) => Value::String(text.clone()),
        Some(Kind::StructValue(inner)) => struct_json(Some(inner)),
        Some(Kind::ListValue(list)) => Value::Array(list.values.iter().map(value_json).collect()),
    }
}

/// A gRPC code's name as the gRPC spec spells it (`UNAUTHENTICATED`): what
/// a person looks up, where tonic's `Display` gives a sentence and `Debug`
/// the Rust variant.
pub(crate) fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// A status as `CODE: message` (`NOT_FOUND: session ...`).
pub(crate) fn status_text(status: &tonic::Status) -> String {
    format!("{}: {}", code_name(status.code()), status.message())
}

/// Lowercase hex, two digits a byte.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Whole numbers print without a fraction (`2`, not `2.0`): protobuf
/// numbers are doubles, but most were integers when they were logged.
pub(crate) fn number_json(number: f64) -> serde_json::Value {
    const MAX_EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    if number.fract() == 0.0 && number.abs() <= MAX_EXACT {
        #[allow(clippy::cast_possible_truncation)] // whole and within 2^53
        return json!(number as i64);
    }
    json!(number)
}

/// The level a command-line name (`warn`, any case) stands for.
pub(crate) fn level_from_name(name: &str) -> Option<pb::Level> {
    let level = match name.to_ascii_lowercase().as_str() {
        "trace" => pb::Level::Trace,
        "debug" => pb::Level::Debug,
        "info" => pb::Level::Info,
        "warn" | "warning" => pb::Level::Warn,
        "error" => pb::Level::Error,
        "critical" => pb::Level::Critical,
        _ => return None,
    };
    Some(level)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_read_as_code_names() {
        let status = tonic::Status::unauthenticated("a token is required");
        assert_eq!(status_text(&status), "UNAUTHENTICATED: a token is required");
        assert_eq!(
            code_name(tonic::Code::DeadlineExceeded),
            "DEADLINE_EXCEEDED"
        );
    }

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
    fn level_names_round_trip() {
        for level in [pb::Level::Trace, pb::Level::Warn, pb::Level::Critical] {
            let name = level_name(level.into());
            assert_eq!(level_from_name(name), Some(level));
            assert_eq!(level_from_name(&name.to_uppercase()), Some(level));
        }
        assert_eq!(level_from_name("loud"), None);
    }
}
