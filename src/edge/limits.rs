//! Request limits, checked at every edge before any work is done. Over a
//! limit is a `RequestError::OverLimit` with a message naming the limit and
//! its flag (gRPC: `RESOURCE_EXHAUSTED`; HTTP: 429).

use prost_types::value::Kind;
use prost_types::{Struct, Value};

use super::error::{RequestError, invalid};

/// Attributes and values an OTLP export may hold per record it may hold
/// (`--max-otlp-records`), on average: an export decodes each into a
/// struct of tens of bytes, however few bytes it took on the wire.
pub(crate) const OTLP_VALUES_PER_RECORD: usize = 100;

/// Every limit, with its default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// The largest decoded gRPC message (`--max-message-size`).
    pub max_message_bytes: usize,
    /// Entries in one `Append` (`--max-batch-entries`).
    pub max_batch_entries: usize,
    /// One entry, encoded (`--max-entry-size`).
    pub max_entry_bytes: usize,
    /// Names: app, mode, platform, job id, logger, filter prefixes (`--max-name-length`).
    pub max_name_bytes: usize,
    /// Texts: format, end reason, filter text (`--max-text-length`).
    pub max_text_bytes: usize,
    /// Nesting of `fields` and `metadata` (`--max-struct-depth`).
    pub max_struct_depth: usize,
    /// Values in one `fields` or `metadata`, nested ones included (`--max-struct-values`).
    pub max_struct_values: usize,
    /// Logger prefixes in one filter.
    pub max_filter_prefixes: usize,
    /// Open `Follow` streams on one session (`--max-follows-per-session`).
    pub max_follows_per_session: usize,
    /// Open `Follow` and `WatchSessions` streams in all (`--max-streams`).
    pub max_streams: usize,
    /// Bytes of entries or sessions in one response, at least one item
    /// (`--max-response-size`).
    pub max_response_bytes: usize,
    /// Log records in one OTLP export (`--max-otlp-records`).
    pub max_otlp_records: usize,
    /// A session's metadata, encoded (`--max-metadata-size`).
    pub max_metadata_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_bytes: 16 << 20,
            max_batch_entries: 10_000,
            max_entry_bytes: 1 << 20,
            max_name_bytes: 256,
            max_text_bytes: 64 << 10,
            // prost refuses past ~33 levels of Struct nesting at decode.
            max_struct_depth: 16,
            max_struct_values: 1_000,
            max_filter_prefixes: 64,
            max_follows_per_session: 4_096,
            max_streams: 16_384,
            // Half of a default gRPC client's 4 MiB receive limit: room for
            // the one entry a page always carries, whatever the budget.
            max_response_bytes: 2 << 20,
            max_otlp_records: 10_000,
            max_metadata_bytes: 64 << 10,
        }
    }
}

fn over(field: &'static str, reason: String) -> RequestError {
    RequestError::OverLimit { field, reason }
}

/// Where in `root` the first `Value` with no kind is, as `key.list[2].key`;
/// walked only to word an error, after `Limits::structure` bounded the
/// nesting.
fn kindless_path(root: &Struct) -> Option<String> {
    let mut pending: Vec<(&Value, String)> = root
        .fields
        .iter()
        .rev()
        .map(|(key, value)| (value, key.clone()))
        .collect();
    while let Some((value, path)) = pending.pop() {
        match &value.kind {
            None => return Some(path),
            Some(Kind::StructValue(inner)) => pending.extend(
                inner
                    .fields
                    .iter()
                    .rev()
                    .map(|(key, value)| (value, format!("{path}.{key}"))),
            ),
            Some(Kind::ListValue(list)) => pending.extend(
                list.values
                    .iter()
                    .enumerate()
                    .rev()
                    .map(|(index, value)| (value, format!("{path}[{index}]"))),
            ),
            Some(_) => {}
        }
    }
    None
}

impl Limits {
    pub(crate) fn name(&self, field: &'static str, value: &str) -> Result<(), RequestError> {
        self.length(field, value, self.max_name_bytes, "--max-name-length")
    }

    pub fn text(&self, field: &'static str, value: &str) -> Result<(), RequestError> {
        self.length(field, value, self.max_text_bytes, "--max-text-length")
    }

    fn length(
        &self,
        field: &'static str,
        value: &str,
        max: usize,
        flag: &str,
    ) -> Result<(), RequestError> {
        if value.len() > max {
            return Err(over(
                field,
                format!("{} bytes, at most {max} ({flag})", value.len()),
            ));
        }
        Ok(())
    }

    pub(crate) fn batch_entries(&self, count: usize) -> Result<(), RequestError> {
        if count > self.max_batch_entries {
            return Err(over(
                "entries",
                format!(
                    "{count} entries, at most {} per batch (--max-batch-entries)",
                    self.max_batch_entries
                ),
            ));
        }
        Ok(())
    }

    /// Attributes and values in one OTLP export: on average
    /// `OTLP_VALUES_PER_RECORD` per record of `--max-otlp-records`, which
    /// keeps what an export decodes to within a small multiple of its size.
    pub(crate) fn max_otlp_values(&self) -> usize {
        self.max_otlp_records.saturating_mul(OTLP_VALUES_PER_RECORD)
    }

    /// An OTLP export's records and values; past a limit it is refused
    /// whole, with a code an exporter does not retry.
    pub(crate) fn otlp_export(&self, records: usize, values: usize) -> Result<(), RequestError> {
        if records > self.max_otlp_records {
            return Err(over(
                "resource_logs",
                format!(
                    "more than {} log records in one export (--max-otlp-records); send smaller batches",
                    self.max_otlp_records
                ),
            ));
        }
        if values > self.max_otlp_values() {
            return Err(over(
                "resource_logs",
                format!(
                    "more than {} attributes and values in one export ({OTLP_VALUES_PER_RECORD} per record of --max-otlp-records); send smaller batches",
                    self.max_otlp_values()
                ),
            ));
        }
        Ok(())
    }

    pub(crate) fn entry_bytes(&self, encoded: usize) -> Result<(), RequestError> {
        if encoded > self.max_entry_bytes {
            return Err(over(
                "entries",
                format!(
                    "an entry of {encoded} bytes, at most {} (--max-entry-size)",
                    self.max_entry_bytes
                ),
            ));
        }
        Ok(())
    }

    pub(crate) fn prefixes(&self, prefixes: &[String]) -> Result<(), RequestError> {
        if prefixes.len() > self.max_filter_prefixes {
            return Err(over(
                "filter.logger_prefixes",
                format!(
                    "{} prefixes, at most {}",
                    prefixes.len(),
                    self.max_filter_prefixes
                ),
            ));
        }
        prefixes
            .iter()
            .try_for_each(|prefix| self.name("filter.logger_prefixes", prefix))
    }

    /// Checks a session's metadata: its depth and values (`structure`) and
    /// its encoded size. For an update, on the metadata after the merge.
    pub(crate) fn metadata(&self, value: Option<&Struct>) -> Result<(), RequestError> {
        self.structure("metadata", value)?;
        let encoded = value.map_or(0, prost::Message::encoded_len);
        if encoded > self.max_metadata_bytes {
            return Err(over(
                "metadata",
                format!(
                    "{encoded} bytes encoded, at most {} (--max-metadata-size)",
                    self.max_metadata_bytes
                ),
            ));
        }
        Ok(())
    }

    /// Checks the depth and size of a `Struct`, without recursion (prost
    /// already bounds nesting at decode; this keeps the walk flat anyway).
    pub(crate) fn structure(
        &self,
        field: &'static str,
        value: Option<&Struct>,
    ) -> Result<(), RequestError> {
        let Some(root) = value else { return Ok(()) };
        let mut pending: Vec<(&Value, usize)> =
            root.fields.values().map(|value| (value, 1)).collect();
        let mut values = 0usize;
        while let Some((value, depth)) = pending.pop() {
            values += 1;
            if values > self.max_struct_values {
                return Err(over(
                    field,
                    format!(
                        "more than {} values (--max-struct-values)",
                        self.max_struct_values
                    ),
                ));
            }
            if depth > self.max_struct_depth {
                return Err(over(
                    field,
                    format!(
                        "nested deeper than {} levels (--max-struct-depth)",
                        self.max_struct_depth
                    ),
                ));
            }
            match &value.kind {
                Some(Kind::StructValue(inner)) => {
                    pending.extend(inner.fields.values().map(|v| (v, depth + 1)))
                }
                Some(Kind::ListValue(list)) => {
                    pending.extend(list.values.iter().map(|v| (v, depth + 1)))
                }
                Some(_) => {}
                // What protobufjs sends for a misspelt oneof; stored, it
                // made responses some clients cannot parse.
                None => {
                    return Err(invalid(
                        field,
                        format!(
                            "holds a google.protobuf.Value with no kind set, at `{}`; \
                             set one (null_value for a null)",
                            kindless_path(root).unwrap_or_default()
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn null() -> Value {
        Value {
            kind: Some(Kind::NullValue(0)),
        }
    }

    #[test]
    fn a_value_with_no_kind_is_invalid_wherever_it_is_and_named_by_its_path() {
        let limits = Limits::default();
        let list = |values: Vec<Value>| Value {
            kind: Some(Kind::ListValue(prost_types::ListValue { values })),
        };
        let object = |fields: Vec<(&str, Value)>| Struct {
            fields: fields
                .into_iter()
                .map(|(key, value)| (key.to_owned(), value))
                .collect(),
        };
        let nested = |fields| Value {
            kind: Some(Kind::StructValue(object(fields))),
        };
        let cases = [
            (object(vec![("a", null()), ("b", Value::default())]), "`b`"),
            (
                object(vec![(
                    "user",
                    nested(vec![("tags", list(vec![null(), null(), Value::default()]))]),
                )]),
                "`user.tags[2]`",
            ),
            (
                object(vec![(
                    "l",
                    list(vec![nested(vec![("x", Value::default())])]),
                )]),
                "`l[0].x`",
            ),
        ];
        for (fields, path) in cases {
            let err = limits
                .structure("entries.fields", Some(&fields))
                .expect_err("no kind");
            assert!(
                matches!(
                    err,
                    RequestError::Invalid {
                        field: "entries.fields",
                        ..
                    }
                ),
                "{err}"
            );
            assert!(err.to_string().contains(path), "{err}");
            let err = limits.metadata(Some(&fields)).expect_err("no kind");
            assert!(
                matches!(
                    err,
                    RequestError::Invalid {
                        field: "metadata",
                        ..
                    }
                ),
                "{err}"
            );
        }
        let fine = object(vec![("a", null()), ("b", list(vec![null()]))]);
        assert!(limits.structure("entries.fields", Some(&fine)).is_ok());
    }

    fn nested(depth: usize) -> Struct {
        let mut inner = Struct::default();
        for _ in 0..depth {
            let mut outer = Struct::default();
            outer.fields.insert(
                "n".into(),
                Value {
                    kind: Some(Kind::StructValue(inner)),
                },
            );
            inner = outer;
        }
        inner
    }

    #[test]
    fn structs_within_depth_pass_and_deeper_ones_name_the_limit() {
        let limits = Limits::default();
        assert!(limits.structure("fields", Some(&nested(16))).is_ok());
        let err = limits
            .structure("fields", Some(&nested(17)))
            .expect_err("too deep");
        assert!(err.to_string().contains("--max-struct-depth"), "{err}");
    }

    #[test]
    fn metadata_over_its_encoded_size_names_the_limit() {
        let limits = Limits {
            max_metadata_bytes: 100,
            ..Limits::default()
        };
        let mut metadata = Struct::default();
        metadata.fields.insert(
            "k".into(),
            Value {
                kind: Some(Kind::StringValue("v".repeat(80))),
            },
        );
        assert!(limits.metadata(Some(&metadata)).is_ok());
        assert!(limits.metadata(None).is_ok());
        metadata.fields.insert("l".into(), null());
        metadata.fields.insert(
            "m".into(),
            Value {
                kind: Some(Kind::StringValue("w".repeat(20))),
            },
        );
        let err = limits.metadata(Some(&metadata)).expect_err("too big");
        assert!(err.to_string().contains("--max-metadata-size"), "{err}");
    }

    #[test]
    fn structs_with_too_many_values_name_the_limit() {
        let limits = Limits {
            max_struct_values: 3,
            ..Limits::default()
        };
        let mut wide = Struct::default();
        for key in ["a", "b", "c", "d"] {
            wide.fields.insert(key.into(), null());
        }
        let err = limits
            .structure("metadata", Some(&wide))
            .expect_err("too wide");
        assert!(err.to_string().contains("--max-struct-values"), "{err}");
    }
}
