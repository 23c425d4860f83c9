//! The one mapping between OTLP logs and sessionlog (the contract's table).
//! Intake reads it one way; forwarding will write it the other. Pure
//! functions over generated types: no I/O, no validation beyond shape (the
//! edge's limits run on the result).

use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyKind;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost_types::value::Kind;
use prost_types::{ListValue, Struct, Timestamp, Value};

use crate::pb;

pub(crate) const SESSION_ID: &str = "session.id";
pub(crate) const SERVICE_INSTANCE_ID: &str = "service.instance.id";
pub(crate) const SERVICE_NAME: &str = "service.name";
pub(crate) const PROCESS_PID: &str = "process.pid";
pub(crate) const JOB_ID: &str = "sessionlog.job_id";
pub(crate) const PARENT_SESSION_ID: &str = "sessionlog.parent_session_id";
pub(crate) const MODE: &str = "sessionlog.mode";
pub(crate) const PLATFORM: &str = "sessionlog.platform";
pub(crate) const META_PREFIX: &str = "sessionlog.meta.";
pub(crate) const FORMAT: &str = "sessionlog.format";
pub(crate) const SESSION_STARTED: &str = "sessionlog.session.started";
pub(crate) const SESSION_ENDED: &str = "sessionlog.session.ended";

/// Integers beyond this lose precision as a JSON number, so they stay text.
const MAX_EXACT_INTEGER: i64 = 1 << 53;

/// A resource that names no session.
#[derive(Debug, thiserror::Error)]
#[error("the resource has neither a `{SESSION_ID}` nor a `{SERVICE_INSTANCE_ID}` attribute")]
pub(crate) struct NoSessionId;

/// What one log record means.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Record {
    Entry(pb::LogEntry),
    /// The session start marker; the session is started on first sight anyway.
    Started,
    /// The end marker: end the session with this reason.
    Ended {
        reason: String,
    },
}

/// The session a resource's records belong to, as a start request.
pub(crate) fn session(resource: Option<&Resource>) -> Result<pb::StartSessionRequest, NoSessionId> {
    let attributes = resource_attributes(resource);
    let session_id = [SESSION_ID, SERVICE_INSTANCE_ID]
        .into_iter()
        .map(|key| attribute(attributes, key).map(text_of).unwrap_or_default())
        .find(|id| !id.is_empty())
        .ok_or(NoSessionId)?;
    Ok(pb::StartSessionRequest {
        session_id,
        ..describe(attributes)
    })
}

/// Whether the resource has a `session.id` of its own, which always wins
/// over `--otlp-session-from`.
pub(crate) fn names_session(resource: Option<&Resource>) -> bool {
    attribute(resource_attributes(resource), SESSION_ID)
        .is_some_and(|value| !text_of(value).is_empty())
}

fn resource_attributes(resource: Option<&Resource>) -> &[KeyValue] {
    resource.map(|r| r.attributes.as_slice()).unwrap_or(&[])
}

/// Everything a start request takes from resource attributes but the id.
fn describe(attributes: &[KeyValue]) -> pb::StartSessionRequest {
    let text = |key: &str| attribute(attributes, key).map(text_of).unwrap_or_default();
    let client_pid = match attribute(attributes, PROCESS_PID).and_then(|v| v.value.as_ref()) {
        Some(AnyKind::IntValue(pid)) => u32::try_from(*pid).unwrap_or(0),
        Some(AnyKind::StringValue(pid)) => pid.parse().unwrap_or(0),
        _ => 0,
    };
    let metadata: Struct = Struct {
        fields: attributes
            .iter()
            .filter_map(|kv| {
                let key = kv.key.strip_prefix(META_PREFIX)?;
                Some((key.to_owned(), value(kv.value.as_ref())))
            })
            .collect(),
    };
    pb::StartSessionRequest {
        session_id: String::new(),
        app_name: text(SERVICE_NAME),
        mode: text(MODE),
        platform: text(PLATFORM),
        client_pid,
        parent_session_id: text(PARENT_SESSION_ID),
        job_id: text(JOB_ID),
        metadata: (!metadata.fields.is_empty()).then_some(metadata),
        lease_ttl: None,
    }
}

/// `--otlp-session-from`: the attributes whose values make the session of
/// a record whose resource has no `session.id` (a Collector tailing files
/// sends none): `k8s.pod.uid,k8s.container.name` gives one session per pod
/// container, `log.file.path` one per file. Each is looked up on the
/// resource, then on the record.
#[derive(Debug, Clone, Default)]
pub(crate) struct SessionKeys(std::sync::Arc<[String]>);

/// The attribute that names the app when `service.name` is absent.
pub(crate) const CONTAINER_NAME: &str = "k8s.container.name";

/// The longest readable part of a session id made from attribute values
/// that do not fit the id alphabet; a hash of the whole follows it.
const MAX_READABLE_KEY_LEN: usize = 96;

impl SessionKeys {
    pub(crate) fn new(keys: Vec<String>) -> Self {
        Self(
            keys.into_iter()
                .filter(|key| !key.is_empty())
                .collect::<Vec<_>>()
                .into(),
        )
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The session of a record, from the keys' values; `None` when the
    /// record and its resource carry none of them. The id is the values
    /// joined by `:` when that is a valid session id; otherwise (a file
    /// path has `/`) the same with every other character made `_`, cut to
    /// a readable length, and a hash of the values after it, so two
    /// values never share a session. The values are kept in the
    /// session's metadata under the keys' names.
    pub(crate) fn session(
        &self,
        resource: Option<&Resource>,
        record: &[KeyValue],
    ) -> Option<pb::StartSessionRequest> {
        let resource = resource_attributes(resource);
        let lookup = |key: &str| attribute(resource, key).or_else(|| attribute(record, key));
        let values: Vec<(&str, String)> = self
            .0
            .iter()
            .filter_map(|key| {
                let text = text_of(lookup(key)?);
                (!text.is_empty()).then_some((key.as_str(), text))
            })
            .collect();
        if values.is_empty() {
            return None;
        }
        let joined = values
            .iter()
            .map(|(_, value)| value.as_str())
            .collect::<Vec<_>>()
            .join(":");
        let mut start = describe(resource);
        if start.app_name.is_empty() {
            start.app_name = lookup(CONTAINER_NAME).map(text_of).unwrap_or_default();
        }
        let metadata = start.metadata.get_or_insert_with(Struct::default);
        for (key, text) in &values {
            metadata.fields.insert(
                (*key).to_owned(),
                Value {
                    kind: Some(Kind::StringValue(text.clone())),
                },
            );
        }
        start.session_id = key_session_id(&joined);
        Some(start)
    }
}

/// `joined` if it is a valid session id, else its readable part and a hash.
fn key_session_id(joined: &str) -> String {
    if crate::sessions::ids::is_valid_id(joined) {
        return joined.to_owned();
    }
    let readable: String = joined
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let readable = readable.trim_matches('_');
    let readable = &readable[..readable.len().min(MAX_READABLE_KEY_LEN)];
    let digest = ring::digest::digest(&ring::digest::SHA256, joined.as_bytes());
    let hash: String = digest.as_ref()[..8]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    if readable.is_empty() {
        hash
    } else {
        format!("{readable}-{hash}")
    }
}

/// One record of a scope.
pub(crate) fn record(scope: Option<&InstrumentationScope>, record: LogRecord) -> Record {
    match record.event_name.as_str() {
        SESSION_STARTED => return Record::Started,
        SESSION_ENDED => {
            return Record::Ended {
                reason: record.body.as_ref().map(text_of).unwrap_or_default(),
            };
        }
        _ => {}
    }
    let nanos = if record.time_unix_nano != 0 {
        record.time_unix_nano
    } else {
        record.observed_time_unix_nano
    };
    let mut format = String::new();
    let mut fields = Struct::default();
    for kv in record.attributes {
        if kv.key == FORMAT {
            format = kv.value.as_ref().map(text_of).unwrap_or_default();
        } else {
            fields.fields.insert(kv.key, value(kv.value.as_ref()));
        }
    }
    Record::Entry(pb::LogEntry {
        seq: 0,
        timestamp: (nanos != 0).then(|| timestamp(nanos)),
        level: level(record.severity_number).into(),
        logger: scope.map(|s| s.name.clone()).unwrap_or_default(),
        message: record.body.as_ref().map(text_of).unwrap_or_default(),
        format,
        fields: (!fields.fields.is_empty()).then_some(fields),
        trace_id: record.trace_id,
        span_id: record.span_id,
    })
}

/// Severity number ranges to levels: 1–4 TRACE, 5–8 DEBUG, 9–12 INFO,
/// 13–16 WARN, 17–20 ERROR, 21–24 CRITICAL, anything else UNSPECIFIED.
pub(crate) fn level(severity_number: i32) -> pb::Level {
    match severity_number {
        1..=4 => pb::Level::Trace,
        5..=8 => pb::Level::Debug,
        9..=12 => pb::Level::Info,
        13..=16 => pb::Level::Warn,
        17..=20 => pb::Level::Error,
        21..=24 => pb::Level::Critical,
        _ => pb::Level::Unspecified,
    }
}

/// A level's severity number and text (the first number of its range).
pub(crate) fn severity(level: pb::Level) -> (i32, &'static str) {
    match level {
        pb::Level::Unspecified => (0, ""),
        pb::Level::Trace => (1, "TRACE"),
        pb::Level::Debug => (5, "DEBUG"),
        pb::Level::Info => (9, "INFO"),
        pb::Level::Warn => (13, "WARN"),
        pb::Level::Error => (17, "ERROR"),
        pb::Level::Critical => (21, "FATAL"),
    }
}

fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a AnyValue> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
}

fn timestamp(nanos: u64) -> Timestamp {
    const NANOS_PER_SECOND: u64 = 1_000_000_000;
    Timestamp {
        // u64 nanoseconds reach year 2554; seconds always fit an i64.
        seconds: i64::try_from(nanos / NANOS_PER_SECOND).unwrap_or(i64::MAX),
        nanos: i32::try_from(nanos % NANOS_PER_SECOND).unwrap_or(0),
    }
}

/// A body or attribute as text: strings as they are, anything else as JSON.
fn text_of(value: &AnyValue) -> String {
    match &value.value {
        Some(AnyKind::StringValue(text)) => text.clone(),
        _ => any_json(Some(value)).to_string(),
    }
}

/// An OTLP value as a protobuf `Value`. Bytes become base64 text; integers
/// beyond 2^53 become decimal text so no digit is lost.
fn value(value: Option<&AnyValue>) -> Value {
    let kind = match value.and_then(|v| v.value.as_ref()) {
        None | Some(AnyKind::StringValueStrindex(_)) => Kind::NullValue(0),
        Some(AnyKind::StringValue(text)) => Kind::StringValue(text.clone()),
        Some(AnyKind::BoolValue(flag)) => Kind::BoolValue(*flag),
        Some(AnyKind::IntValue(int)) if int.unsigned_abs() <= MAX_EXACT_INTEGER.unsigned_abs() => {
            #[allow(clippy::cast_precision_loss)] // exact below 2^53
            Kind::NumberValue(*int as f64)
        }
        Some(AnyKind::IntValue(int)) => Kind::StringValue(int.to_string()),
        Some(AnyKind::DoubleValue(number)) => Kind::NumberValue(*number),
        Some(AnyKind::BytesValue(bytes)) => {
            use base64::Engine as _;
            Kind::StringValue(base64::engine::general_purpose::STANDARD.encode(bytes))
        }
        Some(AnyKind::ArrayValue(array)) => Kind::ListValue(ListValue {
            values: array.values.iter().map(|v| self::value(Some(v))).collect(),
        }),
        Some(AnyKind::KvlistValue(list)) => Kind::StructValue(Struct {
            fields: list
                .values
                .iter()
                .map(|kv| (kv.key.clone(), self::value(kv.value.as_ref())))
                .collect(),
        }),
    };
    Value { kind: Some(kind) }
}

/// An OTLP value as JSON, for bodies and attributes that are not strings:
/// from the OTLP value itself, so an integer stays one (`7`, every digit of
/// an `int64`) and a double stays a double (`7.0`); the protobuf `Value`
/// that fields hold has only doubles. Bytes become base64 text.
fn any_json(value: Option<&AnyValue>) -> serde_json::Value {
    match value.and_then(|v| v.value.as_ref()) {
        None | Some(AnyKind::StringValueStrindex(_)) => serde_json::Value::Null,
        Some(AnyKind::StringValue(text)) => text.clone().into(),
        Some(AnyKind::BoolValue(flag)) => (*flag).into(),
        Some(AnyKind::IntValue(int)) => (*int).into(),
        Some(AnyKind::DoubleValue(number)) => serde_json::Number::from_f64(*number)
            .map_or(serde_json::Value::Null, serde_json::Value::Number),
        Some(AnyKind::BytesValue(bytes)) => {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .encode(bytes)
                .into()
        }
        Some(AnyKind::ArrayValue(array)) => array
            .values
            .iter()
            .map(|value| any_json(Some(value)))
            .collect(),
        Some(AnyKind::KvlistValue(list)) => list
            .values
            .iter()
            .map(|kv| (kv.key.clone(), any_json(kv.value.as_ref())))
            .collect::<serde_json::Map<_, _>>()
            .into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: AnyKind) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        }
    }

    fn text(value: &str) -> AnyKind {
        AnyKind::StringValue(value.into())
    }

    #[test]
    fn severity_ranges_map_to_levels_and_back() {
        let expected = [
            (0, pb::Level::Unspecified),
            (1, pb::Level::Trace),
            (4, pb::Level::Trace),
            (5, pb::Level::Debug),
            (9, pb::Level::Info),
            (12, pb::Level::Info),
            (13, pb::Level::Warn),
            (17, pb::Level::Error),
            (21, pb::Level::Critical),
            (24, pb::Level::Critical),
            (25, pb::Level::Unspecified),
            (-3, pb::Level::Unspecified),
        ];
        for (number, level) in expected {
            assert_eq!(super::level(number), level, "severity {number}");
        }
        for level in [
            pb::Level::Trace,
            pb::Level::Debug,
            pb::Level::Info,
            pb::Level::Warn,
            pb::Level::Error,
            pb::Level::Critical,
        ] {
            assert_eq!(super::level(severity(level).0), level);
        }
        assert_eq!(severity(pb::Level::Critical).1, "FATAL");
    }

    #[test]
    fn a_resource_names_its_session_and_describes_it() {
        let resource = Resource {
            attributes: vec![
                kv(SERVICE_INSTANCE_ID, text("instance-1")),
                kv(SESSION_ID, text("build-42")),
                kv(SERVICE_NAME, text("builder")),
                kv(PROCESS_PID, AnyKind::IntValue(4242)),
                kv(JOB_ID, text("job-7")),
                kv(PARENT_SESSION_ID, text("parent-1")),
                kv(MODE, text("ci")),
                kv(PLATFORM, text("linux")),
                kv("sessionlog.meta.branch", text("main")),
                kv("host.name", text("ignored")),
            ],
            ..Default::default()
        };
        let start = session(Some(&resource)).expect("a session");
        assert_eq!(start.session_id, "build-42");
        assert_eq!(start.app_name, "builder");
        assert_eq!(start.client_pid, 4242);
        assert_eq!(start.job_id, "job-7");
        assert_eq!(start.parent_session_id, "parent-1");
        assert_eq!(
            (start.mode.as_str(), start.platform.as_str()),
            ("ci", "linux")
        );
        let metadata = start.metadata.expect("metadata");
        assert_eq!(metadata.fields.len(), 1);
        assert_eq!(
            metadata.fields["branch"].kind,
            Some(Kind::StringValue("main".into()))
        );
    }

    #[test]
    fn the_instance_id_stands_in_for_a_missing_session_id() {
        let resource = Resource {
            attributes: vec![kv(SERVICE_INSTANCE_ID, text("instance-1"))],
            ..Default::default()
        };
        assert_eq!(
            session(Some(&resource)).expect("a session").session_id,
            "instance-1"
        );
        assert!(session(Some(&Resource::default())).is_err());
        assert!(session(None).is_err());
    }

    #[test]
    fn a_record_becomes_an_entry() {
        let scope = InstrumentationScope {
            name: "app.db".into(),
            ..Default::default()
        };
        let entry = record(
            Some(&scope),
            LogRecord {
                time_unix_nano: 1_700_000_000_123_456_789,
                severity_number: 13,
                body: Some(AnyValue {
                    value: Some(text("slow query")),
                }),
                attributes: vec![
                    kv(FORMAT, text("slow query {ms}")),
                    kv("ms", AnyKind::IntValue(950)),
                    kv("big", AnyKind::IntValue(i64::MAX)),
                    kv("raw", AnyKind::BytesValue(vec![0xff, 0x00])),
                ],
                trace_id: vec![7; 16],
                span_id: vec![9; 8],
                ..Default::default()
            },
        );
        let Record::Entry(entry) = entry else {
            panic!("an entry, got {entry:?}")
        };
        assert_eq!(entry.level, pb::Level::Warn as i32);
        assert_eq!(entry.logger, "app.db");
        assert_eq!(entry.message, "slow query");
        assert_eq!(entry.format, "slow query {ms}");
        let timestamp = entry.timestamp.expect("timestamp");
        assert_eq!(
            (timestamp.seconds, timestamp.nanos),
            (1_700_000_000, 123_456_789)
        );
        let fields = entry.fields.expect("fields").fields;
        assert_eq!(fields.len(), 3);
        assert_eq!(fields["ms"].kind, Some(Kind::NumberValue(950.0)));
        assert_eq!(
            fields["big"].kind,
            Some(Kind::StringValue(i64::MAX.to_string()))
        );
        assert_eq!(fields["raw"].kind, Some(Kind::StringValue("/wA=".into())));
        assert_eq!((entry.trace_id.len(), entry.span_id.len()), (16, 8));
    }

    #[test]
    fn other_bodies_are_json_and_the_observed_time_stands_in() {
        let body = AnyValue {
            value: Some(AnyKind::KvlistValue(
                opentelemetry_proto::tonic::common::v1::KeyValueList {
                    values: vec![kv("ok", AnyKind::BoolValue(true))],
                },
            )),
        };
        let Record::Entry(entry) = record(
            None,
            LogRecord {
                observed_time_unix_nano: 5_000_000_000,
                body: Some(body),
                ..Default::default()
            },
        ) else {
            panic!("an entry")
        };
        assert_eq!(entry.message, r#"{"ok":true}"#);
        assert_eq!(entry.timestamp.map(|t| t.seconds), Some(5));
        assert_eq!(entry.level, pb::Level::Unspecified as i32);
    }

    #[test]
    fn numbers_in_json_bodies_keep_their_kind() {
        let body = AnyValue {
            value: Some(AnyKind::KvlistValue(
                opentelemetry_proto::tonic::common::v1::KeyValueList {
                    values: vec![
                        kv("count", AnyKind::IntValue(7)),
                        kv("big", AnyKind::IntValue(i64::MAX)),
                        kv("ratio", AnyKind::DoubleValue(0.5)),
                        kv("whole", AnyKind::DoubleValue(7.0)),
                        kv("raw", AnyKind::BytesValue(vec![0xff, 0])),
                    ],
                },
            )),
        };
        assert_eq!(
            text_of(&body),
            r#"{"big":9223372036854775807,"count":7,"ratio":0.5,"raw":"/wA=","whole":7.0}"#
        );
    }

    #[test]
    fn session_keys_make_a_session_per_value_when_the_resource_names_none() {
        let keys = SessionKeys::new(vec!["k8s.pod.uid".into(), "k8s.container.name".into()]);
        let resource = Resource {
            attributes: vec![kv("k8s.pod.uid", text("0f1e-22"))],
            ..Default::default()
        };
        let record = [kv("k8s.container.name", text("web"))];
        let start = keys.session(Some(&resource), &record).expect("a session");
        assert_eq!(start.session_id, "0f1e-22:web");
        assert_eq!(start.app_name, "web");
        let metadata = start.metadata.expect("metadata").fields;
        assert_eq!(
            metadata["k8s.pod.uid"].kind,
            Some(Kind::StringValue("0f1e-22".into()))
        );
        assert!(keys.session(None, &[]).is_none());
        assert!(!names_session(Some(&resource)));
    }

    #[test]
    fn key_values_outside_the_id_alphabet_get_a_hash() {
        let keys = SessionKeys::new(vec!["log.file.path".into()]);
        let id = |path: &str| {
            keys.session(None, &[kv("log.file.path", text(path))])
                .expect("a session")
                .session_id
        };
        let a = id("/var/log/a/b.log");
        assert!(a.starts_with("var_log_a_b.log-"), "{a}");
        assert_ne!(a, id("/var/log/a_b.log"));
        assert!(crate::sessions::ids::is_valid_id(&a));
        let long = id(&"/x".repeat(200));
        assert!(crate::sessions::ids::is_valid_id(&long), "{long}");
        assert!(crate::sessions::ids::is_valid_id(&id("//")));
    }

    #[test]
    fn session_events_are_markers() {
        let end = LogRecord {
            event_name: SESSION_ENDED.into(),
            body: Some(AnyValue {
                value: Some(text("exit code 0")),
            }),
            ..Default::default()
        };
        assert_eq!(
            record(None, end),
            Record::Ended {
                reason: "exit code 0".into()
            }
        );
        let start = LogRecord {
            event_name: SESSION_STARTED.into(),
            ..Default::default()
        };
        assert_eq!(record(None, start), Record::Started);
    }
}
