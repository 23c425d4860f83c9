//! A count of the log records in an encoded OTLP logs export, taken on its
//! bytes before it is decoded: decoding materialises every record (an
//! empty one is two bytes on the wire and a few hundred in memory), so the
//! count must be known, and refused past `--max-otlp-records`, first. The
//! walk keeps no state but a counter, and stops as soon as the count passes
//! the limit.

use prost::DecodeError;

/// Bytes that are not an encoded message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Malformed;

impl From<DecodeError> for Malformed {
    fn from(_: DecodeError) -> Self {
        Self
    }
}
use prost::encoding::{DecodeContext, WireType, decode_key, decode_varint, skip_field};

/// `ExportLogsServiceRequest.resource_logs`, `ResourceLogs.scope_logs` and
/// `ScopeLogs.log_records`.
const RESOURCE_LOGS_FIELD: u32 = 1;
const SCOPE_LOGS_FIELD: u32 = 2;
const LOG_RECORDS_FIELD: u32 = 2;

/// The number of log records in `export` (an encoded
/// `ExportLogsServiceRequest`), or the first count past `max`. Bytes that
/// are not protobuf are an error (the decode names the fault).
pub(crate) fn count_records(export: &[u8], max: usize) -> Result<usize, Malformed> {
    let mut records = 0usize;
    for_each_message(export, RESOURCE_LOGS_FIELD, |resource_logs| {
        for_each_message(resource_logs, SCOPE_LOGS_FIELD, |scope_logs| {
            for_each_message(scope_logs, LOG_RECORDS_FIELD, |_| {
                records += 1;
                Ok(records <= max)
            })
        })
    })?;
    Ok(records)
}

/// Calls `visit` with the payload of each length-delimited field `field` of
/// the message `bytes`, skipping every other field, until `visit` says
/// stop (`Ok(false)`); returns whether the walk went to the end.
fn for_each_message(
    bytes: &[u8],
    field: u32,
    mut visit: impl FnMut(&[u8]) -> Result<bool, Malformed>,
) -> Result<bool, Malformed> {
    let mut rest = bytes;
    while !rest.is_empty() {
        let (tag, wire_type) = decode_key(&mut rest)?;
        if tag != field || wire_type != WireType::LengthDelimited {
            skip_field(wire_type, tag, &mut rest, DecodeContext::default())?;
            continue;
        }
        let len = usize::try_from(decode_varint(&mut rest)?)
            .ok()
            .filter(|len| *len <= rest.len())
            .ok_or(Malformed)?;
        let (payload, after) = rest.split_at(len);
        rest = after;
        if !visit(payload)? {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use prost::Message;

    use super::*;

    fn export(records_per_scope: &[&[usize]]) -> ExportLogsServiceRequest {
        let record = LogRecord {
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue("hello".into())),
            }),
            attributes: vec![KeyValue {
                key: "k".into(),
                ..KeyValue::default()
            }],
            ..LogRecord::default()
        };
        ExportLogsServiceRequest {
            resource_logs: records_per_scope
                .iter()
                .map(|scopes| ResourceLogs {
                    scope_logs: scopes
                        .iter()
                        .map(|count| ScopeLogs {
                            log_records: vec![record.clone(); *count],
                            ..ScopeLogs::default()
                        })
                        .collect(),
                    schema_url: "https://example.invalid/schema".into(),
                    ..ResourceLogs::default()
                })
                .collect(),
        }
    }

    #[test]
    fn counts_every_record_of_every_scope_and_resource() {
        let bytes = export(&[&[3, 0, 2], &[], &[5]]).encode_to_vec();
        assert_eq!(count_records(&bytes, 100).expect("counts"), 10);
        assert_eq!(count_records(&[], 100).expect("empty"), 0);
    }

    #[test]
    fn stops_at_the_first_record_past_the_limit() {
        let bytes = export(&[&[3, 4], &[5]]).encode_to_vec();
        assert_eq!(count_records(&bytes, 5).expect("counts"), 6);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let bytes = export(&[&[3]]).encode_to_vec();
        for cut in 1..bytes.len() {
            // Every prefix either counts or fails; none panics.
            let _ = count_records(&bytes[..cut], 100);
        }
        assert!(count_records(&[0x0a, 0x05, 0x12], 100).is_err());
        assert!(count_records(&[0xff; 12], 100).is_err());
    }
}
