//! Checks an encoded `LogEntry` where it lies, so an append can store the
//! bytes it received instead of decoding them into structs (a `fields`
//! value is a tree of maps) and encoding them again. The check vouches only
//! for entries it can see `entry::stored_entry` would accept as they are:
//! each known field at most once, no `seq`, no unknown field, valid UTF-8,
//! within every limit. Anything else it leaves to that function, whose
//! answer, or error, is the one that counts; so this never refuses.

use std::ops::RangeInclusive;

use prost::encoding::decode_varint;

use super::limits::Limits;
use crate::store::schema::Level;

use super::entry::{SPAN_ID_LEN, TRACE_ID_LEN, valid_timestamp};

/// What the check saw of an entry it vouches for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Vouched {
    pub(crate) has_timestamp: bool,
}

const VARINT: u64 = 0;
const FIXED64: u64 = 1;
const LEN: u64 = 2;

/// `Some` when `bytes` is an entry `stored_entry` accepts unchanged.
pub(crate) fn vouch(bytes: &[u8], limits: &Limits) -> Option<Vouched> {
    limits.entry_bytes(bytes.len()).ok()?;
    let mut seen = 0u16;
    let mut has_timestamp = false;
    let mut rest = bytes;
    while !rest.is_empty() {
        let (field, wire_type) = key(&mut rest)?;
        // Field 1 is `seq`, which the store puts in front; 2..=9 are the
        // rest of `LogEntry`.
        first_sight(&mut seen, field, 2..=9)?;
        if field == 3 {
            if wire_type != VARINT {
                return None;
            }
            let level = i32::try_from(decode_varint(&mut rest).ok()?).ok()?;
            Level::try_from(level).ok()?;
            continue;
        }
        if wire_type != LEN {
            return None;
        }
        let value = length_delimited(&mut rest)?;
        match field {
            2 => {
                valid_timestamp(&timestamp(value)?).then_some(())?;
                has_timestamp = true;
            }
            4 => limits.name("entries.logger", utf8(value)?).ok()?,
            5 => {
                utf8(value)?;
            }
            6 => limits.text("entries.format", utf8(value)?).ok()?,
            7 => structure(value, limits)?,
            8 => matches!(value.len(), 0 | TRACE_ID_LEN).then_some(())?,
            9 => matches!(value.len(), 0 | SPAN_ID_LEN).then_some(())?,
            _ => return None,
        }
    }
    Some(Vouched { has_timestamp })
}

/// A `google.protobuf.Timestamp` read in place: `seconds` and `nanos`, each
/// at most once, nothing else (prost would keep other fields' bytes, and
/// nested groups there would spend its recursion budget).
fn timestamp(mut bytes: &[u8]) -> Option<prost_types::Timestamp> {
    let mut timestamp = prost_types::Timestamp::default();
    let mut seen = 0;
    while !bytes.is_empty() {
        let (field, wire_type) = key(&mut bytes)?;
        first_sight(&mut seen, field, 1..=2)?;
        if wire_type != VARINT {
            return None;
        }
        let value = decode_varint(&mut bytes).ok()?;
        // As prost reads them: int64 and int32 from the varint's bits.
        if field == 1 {
            timestamp.seconds = value as i64;
        } else {
            timestamp.nanos = i32::try_from(value).ok()?;
        }
    }
    Some(timestamp)
}

/// The deepest `fields` nesting this check vouches for, whatever
/// `--max-struct-depth` says: prost decodes a `Struct` only about 33 levels
/// deep inside a `LogEntry`, and a client reading it inside a response one
/// or two levels fewer.
const DECODABLE_STRUCT_DEPTH: usize = 24;

#[derive(Debug, Clone, Copy)]
enum Container {
    /// A `Struct`: `map<string, Value> fields = 1`.
    Struct,
    /// A `ListValue`: `repeated Value values = 1`.
    List,
}

/// A `google.protobuf.Struct` within `--max-struct-depth` and
/// `--max-struct-values`, counted as `Limits::structure` counts them (a key
/// given twice counts twice here, which only errs on the side of `None`).
/// Walks with a stack of its own, so nesting cannot exhaust ours.
fn structure(bytes: &[u8], limits: &Limits) -> Option<()> {
    let mut values = 0usize;
    let mut pending = vec![(bytes, Container::Struct, 1usize)];
    while let Some((mut rest, container, depth)) = pending.pop() {
        while !rest.is_empty() {
            if key(&mut rest)? != (1, LEN) {
                return None;
            }
            let item = length_delimited(&mut rest)?;
            let value = match container {
                Container::Struct => map_entry_value(item)?,
                Container::List => item,
            };
            values += 1;
            if values > limits.max_struct_values
                || depth > limits.max_struct_depth.min(DECODABLE_STRUCT_DEPTH)
            {
                return None;
            }
            if let Some((inner, container)) = value_kind(value)? {
                pending.push((inner, container, depth + 1));
            }
        }
    }
    Some(())
}

/// The `Value` of a map entry (empty when absent); its key must be UTF-8.
fn map_entry_value(mut entry: &[u8]) -> Option<&[u8]> {
    let mut value: &[u8] = &[];
    let mut seen = 0;
    while !entry.is_empty() {
        let (field, wire_type) = key(&mut entry)?;
        first_sight(&mut seen, field, 1..=2)?;
        if wire_type != LEN {
            return None;
        }
        let bytes = length_delimited(&mut entry)?;
        if field == 1 {
            utf8(bytes)?;
        } else {
            value = bytes;
        }
    }
    Some(value)
}

/// Checks one `Value` (exactly one of its fields set); returns the container
/// it holds, if it is a struct or a list.
fn value_kind(mut value: &[u8]) -> Option<Option<(&[u8], Container)>> {
    // No kind set: refused, with the path to it, by `Limits::structure`.
    if value.is_empty() {
        return None;
    }
    let (field, wire_type) = key(&mut value)?;
    let kind = match (field, wire_type) {
        // `null_value` is an enum (an int32): past i32::MAX prost reads a
        // negative number, which it would store in ten bytes, not these.
        (1, VARINT) => {
            i32::try_from(decode_varint(&mut value).ok()?).ok()?;
            None
        }
        (4, VARINT) => {
            decode_varint(&mut value).ok()?;
            None
        }
        (2, FIXED64) => {
            value = value.get(8..)?;
            None
        }
        (3, LEN) => {
            utf8(length_delimited(&mut value)?)?;
            None
        }
        (5, LEN) => Some((length_delimited(&mut value)?, Container::Struct)),
        (6, LEN) => Some((length_delimited(&mut value)?, Container::List)),
        _ => return None,
    };
    value.is_empty().then_some(kind)
}

/// Marks `field` seen; `None` when it is not one of `fields` or was seen
/// before (a repeat would need prost's merge rules). Fields are below 16.
fn first_sight(seen: &mut u16, field: u32, fields: RangeInclusive<u32>) -> Option<()> {
    if !fields.contains(&field) || *seen & (1 << field) != 0 {
        return None;
    }
    *seen |= 1 << field;
    Some(())
}

fn key(rest: &mut &[u8]) -> Option<(u32, u64)> {
    let key = decode_varint(rest).ok()?;
    Some((u32::try_from(key >> 3).ok()?, key & 7))
}

fn length_delimited<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = usize::try_from(decode_varint(rest).ok()?).ok()?;
    let value = rest.get(..len)?;
    *rest = &rest[len..];
    Some(value)
}

fn utf8(bytes: &[u8]) -> Option<&str> {
    std::str::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use prost::Message;
    use prost_types::value::Kind;
    use prost_types::{ListValue, Struct, Value};

    use super::*;
    use crate::edge::entry::stored_entry;
    use crate::pb;

    fn limits() -> Limits {
        Limits {
            max_struct_depth: 4,
            max_struct_values: 12,
            max_name_bytes: 8,
            max_text_bytes: 16,
            ..Limits::default()
        }
    }

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Kind::NullValue(0)),
            any::<f64>().prop_map(Kind::NumberValue),
            "\\PC{0,6}".prop_map(Kind::StringValue),
            any::<bool>().prop_map(Kind::BoolValue),
        ]
        .prop_map(|kind| Value { kind: Some(kind) });
        // Now and then a `Value` with no kind, which is refused.
        let leaf = prop_oneof![12 => leaf, 1 => Just(Value { kind: None })];
        leaf.prop_recursive(6, 40, 4, |inner| {
            prop_oneof![
                prop::collection::btree_map("\\PC{0,3}", inner.clone(), 0..4)
                    .prop_map(|fields| Kind::StructValue(Struct { fields })),
                prop::collection::vec(inner, 0..4)
                    .prop_map(|values| Kind::ListValue(ListValue { values })),
            ]
            .prop_map(|kind| Value { kind: Some(kind) })
        })
    }

    /// Mostly entries `stored_entry` accepts, each part sometimes invalid
    /// or over a limit.
    fn entry() -> impl Strategy<Value = pb::LogEntry> {
        let timestamp = prop_oneof![
            4 => (-3i64..3, 0i32..1_000_000_000).prop_map(|(s, n)| (s * 1_000_000_000, n)),
            1 => (any::<i64>(), any::<i32>()),
        ]
        .prop_map(|(seconds, nanos)| prost_types::Timestamp { seconds, nanos });
        let level = prop_oneof![8 => 0i32..7, 1 => Just(-1), 1 => Just(9)];
        let name = prop_oneof![4 => "[a-z.]{0,8}", 1 => "\\PC{0,12}"];
        let text = prop_oneof![4 => "\\PC{0,6}", 1 => "\\PC{10,20}"];
        let fields = prop::option::of(prop::collection::btree_map("\\PC{0,3}", value(), 0..4));
        let id = |valid: usize| prop_oneof![4 => Just(0), 4 => Just(valid), 1 => Just(3)];
        (
            (prop::option::of(timestamp), level, name, "\\PC{0,8}", text),
            (fields, id(16), id(8)),
        )
            .prop_map(
                |((timestamp, level, logger, message, format), (fields, trace, span))| {
                    pb::LogEntry {
                        seq: 0,
                        timestamp,
                        level,
                        logger,
                        message,
                        format,
                        fields: fields.map(|fields| Struct { fields }),
                        trace_id: vec![1; trace],
                        span_id: vec![2; span],
                    }
                },
            )
    }

    proptest! {
        /// Encoded as prost encodes it, an entry is vouched for exactly
        /// when `stored_entry` accepts it, and it stores the same entry.
        #[test]
        fn vouches_exactly_for_what_stored_entry_accepts(entry in entry()) {
            let bytes = entry.encode_to_vec();
            let vouched = vouch(&bytes, &limits());
            let accepted = stored_entry(entry.clone(), &limits());
            prop_assert_eq!(vouched.is_some(), accepted.is_ok(), "{:?}", accepted);
            if let (Some(vouched), Ok(stored)) = (vouched, accepted) {
                prop_assert_eq!(vouched.has_timestamp, entry.timestamp.is_some());
                let as_stored = crate::store::schema::StoredEntry::decode(bytes.as_slice())
                    .expect("decodes");
                prop_assert_eq!(as_stored, stored);
            }
        }

        /// Whatever the bytes, a vouched-for entry decodes, and
        /// `stored_entry` accepts it.
        #[test]
        fn never_vouches_for_what_stored_entry_refuses(
            entry in entry(),
            cut in any::<prop::sample::Index>(),
            flip in any::<prop::sample::Index>(),
            byte in any::<u8>(),
            extra in prop::collection::vec(any::<u8>(), 0..6),
        ) {
            let mut bytes = entry.encode_to_vec();
            if !bytes.is_empty() {
                let at = flip.index(bytes.len());
                bytes[at] = byte;
                bytes.truncate(cut.index(bytes.len()) + 1);
            }
            bytes.extend_from_slice(&extra);
            if vouch(&bytes, &limits()).is_some() {
                let decoded = pb::LogEntry::decode(bytes.as_slice());
                prop_assert!(decoded.is_ok(), "{:?}", decoded);
                let decoded = decoded.expect("checked");
                prop_assert!(stored_entry(decoded, &limits()).is_ok());
            }
        }
    }

    #[test]
    fn a_seq_a_repeat_or_an_unknown_field_is_left_to_the_decoder() {
        let plain = pb::LogEntry {
            message: "m".to_owned(),
            ..pb::LogEntry::default()
        };
        assert!(vouch(&plain.encode_to_vec(), &limits()).is_some());
        let with_seq = pb::LogEntry {
            seq: 3,
            ..plain.clone()
        };
        assert!(vouch(&with_seq.encode_to_vec(), &limits()).is_none());
        let mut twice = plain.encode_to_vec();
        twice.extend(plain.encode_to_vec());
        assert!(vouch(&twice, &limits()).is_none());
        let mut unknown = plain.encode_to_vec();
        unknown.extend([(20 << 3) as u8, 1]);
        assert!(vouch(&unknown, &limits()).is_none());
    }

    #[test]
    fn a_timestamp_with_anything_but_seconds_and_nanos_is_left_to_the_decoder() {
        let with_timestamp = |timestamp: &[u8]| {
            let mut bytes = Vec::new();
            prost::encoding::bytes::encode(2, &timestamp.to_vec(), &mut bytes);
            bytes
        };
        let valid = prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 5,
        }
        .encode_to_vec();
        assert!(vouch(&with_timestamp(&valid), &limits()).is_some());
        // 100 nested groups in the timestamp: stored as sent, they would
        // spend prost's whole recursion budget when the entry is read.
        let mut groups = vec![0x1b; 100];
        groups.extend([0x1c; 100]);
        assert!(vouch(&with_timestamp(&groups), &limits()).is_none());
        let mut twice = valid.clone();
        twice.extend(&valid);
        assert!(vouch(&with_timestamp(&twice), &limits()).is_none());
    }

    #[test]
    fn a_null_value_past_i32_is_left_to_the_decoder() {
        // fields = {"k": Value { null_value: 0xffff_ffff }}
        let value = [0x08, 0xff, 0xff, 0xff, 0xff, 0x0f];
        let mut entry_field = Vec::new();
        prost::encoding::string::encode(1, &"k".to_owned(), &mut entry_field);
        prost::encoding::bytes::encode(2, &value.to_vec(), &mut entry_field);
        let mut fields = Vec::new();
        prost::encoding::bytes::encode(1, &entry_field, &mut fields);
        let mut bytes = Vec::new();
        prost::encoding::bytes::encode(7, &fields, &mut bytes);
        assert!(vouch(&bytes, &limits()).is_none());
    }

    #[test]
    fn nesting_past_what_prost_decodes_is_left_to_the_decoder() {
        let deep = Limits {
            max_struct_depth: 64,
            ..Limits::default()
        };
        let mut value = Value {
            kind: Some(Kind::NumberValue(1.0)),
        };
        for _ in 0..DECODABLE_STRUCT_DEPTH {
            value = Value {
                kind: Some(Kind::StructValue(Struct {
                    fields: [("k".to_owned(), value)].into(),
                })),
            };
        }
        let entry = |value: Value| pb::LogEntry {
            fields: Some(Struct {
                fields: [("k".to_owned(), value)].into(),
            }),
            ..pb::LogEntry::default()
        };
        let too_deep = entry(value.clone()).encode_to_vec();
        assert!(vouch(&too_deep, &deep).is_none());
        let Some(Kind::StructValue(inner)) = value.kind else {
            unreachable!("built as a struct")
        };
        let shallower = entry(inner.fields["k"].clone()).encode_to_vec();
        assert!(vouch(&shallower, &deep).is_some());
    }

    #[test]
    fn deep_nesting_stops_at_the_depth_limit() {
        let mut bytes = Vec::new();
        // `fields` holding {"k": value}, encoded by hand: prost's encoder
        // recurses once per level.
        let mut inner = Vec::new();
        for _ in 0..10_000 {
            let mut outer = Vec::new();
            prost::encoding::encode_key(6, prost::encoding::WireType::LengthDelimited, &mut outer);
            // ListValue { values: [inner Value] }
            let mut list = Vec::new();
            prost::encoding::bytes::encode(1, &inner, &mut list);
            prost::encoding::encode_varint(list.len() as u64, &mut outer);
            outer.extend(list);
            inner = outer;
        }
        let mut entry_field = Vec::new();
        prost::encoding::string::encode(1, &"k".to_owned(), &mut entry_field);
        prost::encoding::bytes::encode(2, &inner, &mut entry_field);
        let mut fields = Vec::new();
        prost::encoding::bytes::encode(1, &entry_field, &mut fields);
        prost::encoding::bytes::encode(7, &fields, &mut bytes);
        assert!(vouch(&bytes, &limits()).is_none());
    }
}
