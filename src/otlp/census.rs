//! A census of an encoded OTLP logs export, taken on its bytes before it
//! is decoded: decoding materialises every log record, attribute and value
//! as a struct (an empty record or attribute is two bytes on the wire and
//! tens to hundreds in memory), so their numbers must be known, and
//! refused past the limits, first. The walk keeps no state but two
//! counters and stops as soon as one passes its limit.

use prost::DecodeError;
use prost::encoding::{DecodeContext, WireType, decode_key, decode_varint, skip_field};

/// Bytes that are not an encoded message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Malformed;

impl From<DecodeError> for Malformed {
    fn from(_: DecodeError) -> Self {
        Self
    }
}

/// What an export holds that decoding materialises one by one.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Census {
    pub(crate) records: usize,
    /// Attributes (`KeyValue`s) of resources, scopes and records, and the
    /// values (`AnyValue`s) in them and in record bodies, nested ones too.
    pub(crate) values: usize,
}

impl Census {
    fn within(&self, max: &Census) -> bool {
        self.records <= max.records && self.values <= max.values
    }
}

/// Deeper values than this refuse the export: nothing real nests so deep,
/// and the decode would build what the count did not reach.
pub(crate) const MAX_DEPTH: usize = 64;

/// The records and values of `export` (an encoded
/// `ExportLogsServiceRequest`), up to the first count past `max`. Bytes
/// that are not protobuf are an error (the decode names the fault).
pub(crate) fn take(export: &[u8], max: Census) -> Result<Census, Malformed> {
    let mut census = Census::default();
    // ExportLogsServiceRequest.resource_logs = 1
    for_each_field(export, |tag, resource_logs| match tag {
        1 => resource_logs_of(resource_logs, &mut census, &max),
        _ => Ok(true),
    })?;
    Ok(census)
}

fn resource_logs_of(bytes: &[u8], census: &mut Census, max: &Census) -> Result<bool, Malformed> {
    // ResourceLogs.resource = 1 (Resource.attributes = 1), .scope_logs = 2
    for_each_field(bytes, |tag, field| match tag {
        1 => attributes_of(field, 1, census, max),
        2 => scope_logs_of(field, census, max),
        _ => Ok(true),
    })
}

fn scope_logs_of(bytes: &[u8], census: &mut Census, max: &Census) -> Result<bool, Malformed> {
    // ScopeLogs.scope = 1 (InstrumentationScope.attributes = 3),
    // .log_records = 2
    for_each_field(bytes, |tag, field| match tag {
        1 => attributes_of(field, 3, census, max),
        2 => {
            census.records += 1;
            Ok(census.within(max) && record_of(field, census, max)?)
        }
        _ => Ok(true),
    })
}

fn record_of(bytes: &[u8], census: &mut Census, max: &Census) -> Result<bool, Malformed> {
    // LogRecord.body = 5, .attributes = 6
    for_each_field(bytes, |tag, field| match tag {
        5 => any_value(field, 0, census, max),
        6 => key_value(field, 0, census, max),
        _ => Ok(true),
    })
}

/// The attributes (field `attributes_field`) of a resource or scope.
fn attributes_of(
    bytes: &[u8],
    attributes_field: u32,
    census: &mut Census,
    max: &Census,
) -> Result<bool, Malformed> {
    for_each_field(bytes, |tag, field| {
        if tag == attributes_field {
            key_value(field, 0, census, max)
        } else {
            Ok(true)
        }
    })
}

fn key_value(
    bytes: &[u8],
    depth: usize,
    census: &mut Census,
    max: &Census,
) -> Result<bool, Malformed> {
    census.values += 1;
    if !census.within(max) {
        return Ok(false);
    }
    // KeyValue.value = 2
    for_each_field(bytes, |tag, field| match tag {
        2 => any_value(field, depth + 1, census, max),
        _ => Ok(true),
    })
}

fn any_value(
    bytes: &[u8],
    depth: usize,
    census: &mut Census,
    max: &Census,
) -> Result<bool, Malformed> {
    census.values += 1;
    if !census.within(max) {
        return Ok(false);
    }
    if depth > MAX_DEPTH {
        return Err(Malformed);
    }
    // AnyValue.array_value = 5 (ArrayValue.values = 1, AnyValues),
    // .kvlist_value = 6 (KeyValueList.values = 1, KeyValues)
    for_each_field(bytes, |tag, field| match tag {
        5 => for_each_field(field, |tag, value| match tag {
            1 => any_value(value, depth + 1, census, max),
            _ => Ok(true),
        }),
        6 => for_each_field(field, |tag, value| match tag {
            1 => key_value(value, depth + 1, census, max),
            _ => Ok(true),
        }),
        _ => Ok(true),
    })
}

/// Calls `visit` with the number and payload of each length-delimited
/// field of the message `bytes`, skipping every other field, until
/// `visit` says stop (`Ok(false)`); returns whether the walk went to the
/// end.
fn for_each_field(
    bytes: &[u8],
    mut visit: impl FnMut(u32, &[u8]) -> Result<bool, Malformed>,
) -> Result<bool, Malformed> {
    let mut rest = bytes;
    while !rest.is_empty() {
        let (tag, wire_type) = decode_key(&mut rest)?;
        if wire_type != WireType::LengthDelimited {
            skip_field(wire_type, tag, &mut rest, DecodeContext::default())?;
            continue;
        }
        let len = usize::try_from(decode_varint(&mut rest)?)
            .ok()
            .filter(|len| *len <= rest.len())
            .ok_or(Malformed)?;
        let (payload, after) = rest.split_at(len);
        rest = after;
        if !visit(tag, payload)? {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, any_value};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::resource::v1::Resource;
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

    const ROOMY: Census = Census {
        records: 1_000,
        values: 1_000,
    };

    #[test]
    fn counts_every_record_and_value_of_every_scope_and_resource() {
        // Each record: a string body (1 value) and one attribute without a
        // value (1 value).
        let bytes = export(&[&[3, 0, 2], &[], &[5]]).encode_to_vec();
        assert_eq!(
            take(&bytes, ROOMY).expect("counts"),
            Census {
                records: 10,
                values: 20
            }
        );
        assert_eq!(take(&[], ROOMY).expect("empty"), Census::default());
    }

    #[test]
    fn nested_values_and_resource_attributes_count_too() {
        let list = AnyValue {
            value: Some(any_value::Value::ArrayValue(ArrayValue {
                values: vec![AnyValue::default(); 4],
            })),
        };
        let mut request = export(&[&[1]]);
        request.resource_logs[0].resource = Some(Resource {
            attributes: vec![KeyValue {
                key: "k".into(),
                value: Some(list),
                ..KeyValue::default()
            }],
            ..Resource::default()
        });
        // The record's 2, the attribute, its list and the list's 4.
        let counted = take(&request.encode_to_vec(), ROOMY).expect("counts");
        assert_eq!(counted.values, 2 + 1 + 1 + 4);
    }

    #[test]
    fn stops_at_the_first_count_past_a_limit() {
        let bytes = export(&[&[3, 4], &[5]]).encode_to_vec();
        let records = Census {
            records: 5,
            ..ROOMY
        };
        assert_eq!(take(&bytes, records).expect("counts").records, 6);
        let values = Census { values: 5, ..ROOMY };
        assert_eq!(take(&bytes, values).expect("counts").values, 6);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let bytes = export(&[&[3]]).encode_to_vec();
        for cut in 1..bytes.len() {
            // Every prefix either counts or fails; none panics.
            let _ = take(&bytes[..cut], ROOMY);
        }
        assert!(take(&[0x0a, 0x05, 0x12], ROOMY).is_err());
        assert!(take(&[0xff; 12], ROOMY).is_err());
    }
}
