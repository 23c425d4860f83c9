//! The fields a filter looks at (level, logger, message, timestamp), read
//! from a stored entry's encoded bytes in place: a scan that keeps few of
//! the entries it examines decodes none of the others.

use prost::encoding::{WireType, decode_key, decode_varint};

use super::StoreError;

/// Borrowed fields of one encoded `StoredEntry`. Absent fields read as
/// their defaults, as prost decodes them; a field given twice reads as
/// its last value.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct EntryView<'a> {
    pub(crate) level: i32,
    pub(crate) logger: &'a [u8],
    pub(crate) message: &'a [u8],
    /// Nanoseconds since the Unix epoch; `None` without a timestamp.
    pub(crate) timestamp_nanos: Option<i128>,
}

impl<'a> EntryView<'a> {
    /// Reads the fields of `bytes`, an encoded `StoredEntry`.
    pub(crate) fn parse(bytes: &'a [u8]) -> Result<Self, StoreError> {
        let mut view = Self::default();
        let mut rest = bytes;
        while !rest.is_empty() {
            let (tag, wire_type) = decode_key(&mut rest).map_err(fault)?;
            match (tag, wire_type) {
                (2, WireType::LengthDelimited) => {
                    view.timestamp_nanos = Some(timestamp_nanos(delimited(&mut rest)?)?);
                }
                (3, WireType::Varint) => {
                    // An enum is an int32: the low 32 bits, as prost reads it.
                    let raw = decode_varint(&mut rest).map_err(fault)?;
                    view.level = (raw as u32).cast_signed();
                }
                (4, WireType::LengthDelimited) => view.logger = delimited(&mut rest)?,
                (5, WireType::LengthDelimited) => view.message = delimited(&mut rest)?,
                (_, wire_type) => skip(wire_type, &mut rest)?,
            }
        }
        Ok(view)
    }
}

/// Only the message of an encoded `StoredEntry` (its last, as `parse`
/// reads it): every other field is stepped over, not read.
pub(crate) fn message_of(bytes: &[u8]) -> Result<&[u8], StoreError> {
    let mut message: &[u8] = &[];
    let mut rest = bytes;
    while !rest.is_empty() {
        let (tag, wire_type) = decode_key(&mut rest).map_err(fault)?;
        match (tag, wire_type) {
            (5, WireType::LengthDelimited) => message = delimited(&mut rest)?,
            (_, wire_type) => skip(wire_type, &mut rest)?,
        }
    }
    Ok(message)
}

/// A `google.protobuf.Timestamp`'s bytes as nanoseconds since the epoch.
fn timestamp_nanos(mut bytes: &[u8]) -> Result<i128, StoreError> {
    let (mut seconds, mut nanos) = (0i64, 0i32);
    while !bytes.is_empty() {
        let (tag, wire_type) = decode_key(&mut bytes).map_err(fault)?;
        match (tag, wire_type) {
            (1, WireType::Varint) => {
                seconds = decode_varint(&mut bytes).map_err(fault)?.cast_signed();
            }
            (2, WireType::Varint) => {
                nanos = (decode_varint(&mut bytes).map_err(fault)? as u32).cast_signed();
            }
            (_, wire_type) => skip(wire_type, &mut bytes)?,
        }
    }
    Ok(i128::from(seconds) * 1_000_000_000 + i128::from(nanos))
}

/// A length-delimited field's bytes; `rest` moves past them.
fn delimited<'a>(rest: &mut &'a [u8]) -> Result<&'a [u8], StoreError> {
    let len = decode_varint(rest).map_err(fault)?;
    let len = usize::try_from(len)
        .ok()
        .filter(|len| *len <= rest.len())
        .ok_or_else(|| corrupt("a field runs past the entry's end"))?;
    let (field, after) = rest.split_at(len);
    *rest = after;
    Ok(field)
}

fn skip(wire_type: WireType, rest: &mut &[u8]) -> Result<(), StoreError> {
    let len = match wire_type {
        WireType::Varint => return decode_varint(rest).map(drop).map_err(fault),
        WireType::LengthDelimited => return delimited(rest).map(drop),
        WireType::SixtyFourBit => 8,
        WireType::ThirtyTwoBit => 4,
        WireType::StartGroup | WireType::EndGroup => {
            return Err(corrupt("an entry holds a group"));
        }
    };
    if rest.len() < len {
        return Err(corrupt("a field runs past the entry's end"));
    }
    *rest = &rest[len..];
    Ok(())
}

fn fault(err: prost::DecodeError) -> StoreError {
    corrupt(&err.to_string())
}

fn corrupt(detail: &str) -> StoreError {
    StoreError::Corrupt {
        detail: format!("a stored log entry does not decode: {detail}"),
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::store::schema::StoredEntry;

    #[test]
    fn reads_the_fields_prost_decodes() {
        let entry = StoredEntry {
            seq: 9,
            timestamp: Some(prost_types::Timestamp {
                seconds: -2,
                nanos: 5,
            }),
            level: 4,
            logger: "net.http".into(),
            message: "slow ü".into(),
            format: "text".into(),
            trace_id: vec![1; 16],
            ..StoredEntry::default()
        };
        let bytes = entry.encode_to_vec();
        let view = EntryView::parse(&bytes).expect("parses");
        assert_eq!(view.level, 4);
        assert_eq!(view.logger, b"net.http");
        assert_eq!(view.message, "slow ü".as_bytes());
        assert_eq!(view.timestamp_nanos, Some(-2_000_000_000 + 5));
        assert_eq!(message_of(&bytes).expect("parses"), "slow ü".as_bytes());
        let bare = StoredEntry::default().encode_to_vec();
        let view = EntryView::parse(&bare).expect("parses");
        assert_eq!((view.level, view.timestamp_nanos), (0, None));
        for cut in 1..bytes.len() {
            // Cut anywhere: an error or fewer fields, never a panic.
            let _ = EntryView::parse(&bytes[..cut]);
        }
        assert!(EntryView::parse(&[0x2a, 0x05, b'a']).is_err());
    }
}
