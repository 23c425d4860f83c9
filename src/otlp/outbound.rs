//! The mapping's other direction: sessions and entries as OTLP log records,
//! for forwarding to an OpenTelemetry backend. It writes what `mapping`
//! reads, so a sessionlog receiving a forwarded export stores the same
//! session and entries (seqs aside: the receiver assigns its own).

use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyKind;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost_types::value::Kind;
use prost_types::{Struct, Timestamp, Value};

use super::mapping::{
    FORMAT, JOB_ID, META_PREFIX, MODE, PARENT_SESSION_ID, PLATFORM, PROCESS_PID, SERVICE_NAME,
    SESSION_ENDED, SESSION_ID, SESSION_STARTED, severity,
};
use crate::pb;

/// A session's resource: its id, app, pid, job, parent, mode, platform and
/// metadata (`sessionlog.meta.<key>`) as attributes; empty ones left out.
pub(crate) fn resource(session: &pb::Session) -> Resource {
    let mut attributes = vec![text(SESSION_ID, &session.id)];
    for (key, value) in [
        (SERVICE_NAME, &session.app_name),
        (JOB_ID, &session.job_id),
        (PARENT_SESSION_ID, &session.parent_session_id),
        (MODE, &session.mode),
        (PLATFORM, &session.platform),
    ] {
        if !value.is_empty() {
            attributes.push(text(key, value));
        }
    }
    if session.client_pid != 0 {
        attributes.push(attribute(
            PROCESS_PID,
            AnyKind::IntValue(i64::from(session.client_pid)),
        ));
    }
    if let Some(metadata) = &session.metadata {
        for (key, value) in &metadata.fields {
            attributes.push(KeyValue {
                key: format!("{META_PREFIX}{key}"),
                value: Some(any_value(value)),
                ..Default::default()
            });
        }
    }
    Resource {
        attributes,
        ..Default::default()
    }
}

/// One session's records, grouped by logger (the scope name) in the order
/// given, since OTLP keeps records in order only within a scope.
pub(crate) fn resource_logs(
    session: &pb::Session,
    records: Vec<(String, LogRecord)>,
) -> ResourceLogs {
    let mut scopes: Vec<ScopeLogs> = Vec::new();
    for (logger, record) in records {
        match scopes.last_mut() {
            Some(scope) if scope.scope.as_ref().is_some_and(|s| s.name == logger) => {
                scope.log_records.push(record);
            }
            _ => scopes.push(ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: logger,
                    ..Default::default()
                }),
                log_records: vec![record],
                ..Default::default()
            }),
        }
    }
    ResourceLogs {
        resource: Some(resource(session)),
        scope_logs: scopes,
        ..Default::default()
    }
}

/// An entry as a record, with the logger it belongs under: severity number
/// and text from the level, the message as the body, fields as attributes
/// (the format template as `sessionlog.format`), ids kept.
pub(crate) fn log_record(entry: &pb::LogEntry) -> (String, LogRecord) {
    let (severity_number, severity_text) = severity(entry.level());
    let mut attributes: Vec<KeyValue> = entry
        .fields
        .iter()
        .flat_map(|fields| &fields.fields)
        .map(|(key, value)| KeyValue {
            key: key.clone(),
            value: Some(any_value(value)),
            ..Default::default()
        })
        .collect();
    if !entry.format.is_empty() {
        attributes.push(text(FORMAT, &entry.format));
    }
    let time = entry.timestamp.as_ref().map_or(0, unix_nanos);
    let record = LogRecord {
        time_unix_nano: time,
        observed_time_unix_nano: time,
        severity_number,
        severity_text: severity_text.to_owned(),
        body: Some(string(&entry.message)),
        attributes,
        trace_id: entry.trace_id.clone(),
        span_id: entry.span_id.clone(),
        ..Default::default()
    };
    (entry.logger.clone(), record)
}

/// The record that says a session started (at its creation time).
pub(crate) fn started_record(session: &pb::Session) -> LogRecord {
    event(SESSION_STARTED, session.created_at.as_ref(), String::new())
}

/// The record that says a session ended, its reason as the body.
pub(crate) fn ended_record(session: &pb::Session) -> LogRecord {
    event(
        SESSION_ENDED,
        session.ended_at.as_ref(),
        session.end_reason.clone(),
    )
}

fn event(name: &str, at: Option<&Timestamp>, body: String) -> LogRecord {
    let time = at.map_or(0, unix_nanos);
    LogRecord {
        time_unix_nano: time,
        observed_time_unix_nano: time,
        event_name: name.to_owned(),
        body: Some(string(&body)),
        ..Default::default()
    }
}

/// A protobuf `Value` as an OTLP value. Whole numbers within 2^53 become
/// integers (JSON numbers are doubles, so that is what they were).
fn any_value(value: &Value) -> AnyValue {
    let kind = match &value.kind {
        None | Some(Kind::NullValue(_)) => None,
        Some(Kind::BoolValue(flag)) => Some(AnyKind::BoolValue(*flag)),
        Some(Kind::NumberValue(number)) => Some(number_value(*number)),
        Some(Kind::StringValue(text)) => Some(AnyKind::StringValue(text.clone())),
        Some(Kind::ListValue(list)) => Some(AnyKind::ArrayValue(ArrayValue {
            values: list.values.iter().map(any_value).collect(),
        })),
        Some(Kind::StructValue(fields)) => Some(AnyKind::KvlistValue(key_values(fields))),
    };
    AnyValue { value: kind }
}

fn number_value(number: f64) -> AnyKind {
    const MAX_EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    if number.fract() == 0.0 && number.abs() <= MAX_EXACT {
        #[allow(clippy::cast_possible_truncation)] // whole and within 2^53
        return AnyKind::IntValue(number as i64);
    }
    AnyKind::DoubleValue(number)
}

fn key_values(fields: &Struct) -> KeyValueList {
    KeyValueList {
        values: fields
            .fields
            .iter()
            .map(|(key, value)| KeyValue {
                key: key.clone(),
                value: Some(any_value(value)),
                ..Default::default()
            })
            .collect(),
    }
}

fn string(text: &str) -> AnyValue {
    AnyValue {
        value: Some(AnyKind::StringValue(text.to_owned())),
    }
}

fn text(key: &str, value: &str) -> KeyValue {
    attribute(key, AnyKind::StringValue(value.to_owned()))
}

fn attribute(key: &str, value: AnyKind) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

/// Nanoseconds since the epoch; 0 (unknown, to OTLP) before it.
fn unix_nanos(at: &Timestamp) -> u64 {
    let seconds = u64::try_from(at.seconds).unwrap_or(0);
    let nanos = u64::try_from(at.nanos).unwrap_or(0);
    seconds.saturating_mul(1_000_000_000).saturating_add(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::mapping::{self, Record};

    fn number(value: f64) -> Value {
        Value {
            kind: Some(Kind::NumberValue(value)),
        }
    }

    fn string_value(value: &str) -> Value {
        Value {
            kind: Some(Kind::StringValue(value.into())),
        }
    }

    fn session() -> pb::Session {
        pb::Session {
            id: "build-42".into(),
            app_name: "make".into(),
            mode: "ci".into(),
            platform: "linux".into(),
            client_pid: 4242,
            parent_session_id: "nightly".into(),
            job_id: "job-7".into(),
            metadata: Some(Struct {
                fields: [
                    ("branch".to_owned(), string_value("main")),
                    ("attempt".to_owned(), number(2.0)),
                ]
                .into(),
            }),
            created_at: Some(Timestamp {
                seconds: 1_700_000_000,
                nanos: 5,
            }),
            ended_at: Some(Timestamp {
                seconds: 1_700_000_100,
                nanos: 0,
            }),
            end_reason: "exit code 0".into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_resource_reads_back_as_the_session() {
        let session = session();
        let read = mapping::session(Some(&resource(&session))).expect("has an id");
        assert_eq!(read.session_id, session.id);
        assert_eq!(read.app_name, session.app_name);
        assert_eq!(read.mode, session.mode);
        assert_eq!(read.platform, session.platform);
        assert_eq!(read.client_pid, session.client_pid);
        assert_eq!(read.parent_session_id, session.parent_session_id);
        assert_eq!(read.job_id, session.job_id);
        assert_eq!(read.metadata, session.metadata);
    }

    #[test]
    fn an_entry_reads_back_as_itself() {
        let entry = pb::LogEntry {
            seq: 9,
            timestamp: Some(Timestamp {
                seconds: 1_700_000_001,
                nanos: 123_456_789,
            }),
            level: pb::Level::Warn.into(),
            logger: "net.http".into(),
            message: "slow reply from {host}".into(),
            format: "slow reply from {host}".into(),
            fields: Some(Struct {
                fields: [
                    ("host".to_owned(), string_value("example")),
                    ("ms".to_owned(), number(1500.0)),
                    ("ratio".to_owned(), number(0.25)),
                    (
                        "tags".to_owned(),
                        Value {
                            kind: Some(Kind::ListValue(prost_types::ListValue {
                                values: vec![string_value("a"), Value::default()],
                            })),
                        },
                    ),
                ]
                .into(),
            }),
            trace_id: vec![7; 16],
            span_id: vec![3; 8],
        };
        let (logger, record) = log_record(&entry);
        assert_eq!(record.severity_text, "WARN");
        let scope = InstrumentationScope {
            name: logger,
            ..Default::default()
        };
        let Record::Entry(read) = mapping::record(Some(&scope), record) else {
            panic!("an entry record");
        };
        let mut expected = entry;
        expected.seq = 0;
        // A null in a list reads back as a null.
        if let Some(Kind::ListValue(list)) = expected
            .fields
            .as_mut()
            .and_then(|f| f.fields.get_mut("tags"))
            .and_then(|v| v.kind.as_mut())
        {
            list.values[1] = Value {
                kind: Some(Kind::NullValue(0)),
            };
        }
        assert_eq!(read, expected);
    }

    #[test]
    fn start_and_end_are_events_the_intake_understands() {
        let session = session();
        assert_eq!(
            mapping::record(None, started_record(&session)),
            Record::Started
        );
        assert_eq!(
            mapping::record(None, ended_record(&session)),
            Record::Ended {
                reason: "exit code 0".into()
            }
        );
    }

    #[test]
    fn records_are_grouped_by_logger_in_order() {
        let entries: Vec<pb::LogEntry> = ["a", "a", "b", "a"]
            .iter()
            .enumerate()
            .map(|(i, logger)| pb::LogEntry {
                logger: (*logger).into(),
                message: i.to_string(),
                ..Default::default()
            })
            .collect();
        let logs = resource_logs(&session(), entries.iter().map(log_record).collect());
        let shape: Vec<(String, Vec<String>)> = logs
            .scope_logs
            .iter()
            .map(|scope| {
                (
                    scope
                        .scope
                        .as_ref()
                        .map(|s| s.name.clone())
                        .unwrap_or_default(),
                    scope
                        .log_records
                        .iter()
                        .map(|r| match r.body.as_ref().and_then(|b| b.value.as_ref()) {
                            Some(AnyKind::StringValue(text)) => text.clone(),
                            _ => String::new(),
                        })
                        .collect(),
                )
            })
            .collect();
        assert_eq!(
            shape,
            vec![
                ("a".to_owned(), vec!["0".to_owned(), "1".to_owned()]),
                ("b".to_owned(), vec!["2".to_owned()]),
                ("a".to_owned(), vec!["3".to_owned()]),
            ]
        );
    }
}
