//! Blocks: how a run of entries is packed into one sled value. Packing
//! turns sled's per-key cost (index node, page, log record) into a cost per
//! block, which is where the time of an append went with a key per entry.
//!
//! A block is an encoded `StoredBlock`: every entry's encoded `StoredEntry`,
//! length-delimited, so a reader slices entries out of the value it got
//! from sled without copying or decoding them. A value written by layout 1
//! (one `StoredEntry` per key) starts with a different tag and reads as a
//! block of one, so stores written before blocks need no migration.
//!
//! From layout 4 the last block an append writes starts with the log's
//! `LogCounters` as of its last entry (`StoredBlock.counters`, encoded
//! first so it is read without walking the entries). So the log's last
//! block holds the log's counters, and an append that fits in one block is
//! one sled key: sled stores a single key atomically without the batch
//! machinery that writes its log buffer out twice.

use prost::encoding::{WireType, decode_varint, encode_key, encode_varint, encoded_len_varint};
use sled::IVec;

use super::StoreError;

/// Where a block is closed and the next one starts. sled splits a leaf
/// past 16 keys and writes a page bigger than a quarter segment (128 KiB)
/// as a separate blob file, which is slower and, on a full disk, makes
/// sled's flush wait forever instead of failing. So seventeen blocks must
/// fit in that quarter: 7 KiB (about 35 entries of 200 bytes) does, and
/// still turns a thousand-entry batch into a few dozen keys. An entry
/// larger than this gets a block of its own.
pub(super) const TARGET_BLOCK_BYTES: usize = 7 * 1024;

/// The most a block's counters field takes: four varints of at most ten
/// bytes with their tags, and the field's own tag and length. The last
/// block of an append may pass the target by this much.
#[cfg(test)]
pub(super) const COUNTERS_MAX_BYTES: usize = 4 * 11 + 2;

/// The first byte of a block: field 1 of `StoredBlock`, length-delimited.
const BLOCK_TAG: u8 = (1 << 3) | WireType::LengthDelimited as u8;
/// The first byte of a block that carries the log's counters: field 2 of
/// `StoredBlock`, length-delimited.
const COUNTERS_TAG: u8 = (2 << 3) | WireType::LengthDelimited as u8;
/// The first byte of a layout-1 value: field 1 (`seq`) of `StoredEntry`, a
/// varint. Every stored entry has a seq of at least 1, so it is present.
const LEGACY_ENTRY_TAG: u8 = (1 << 3) | WireType::Varint as u8;

/// Appends one encoded entry to a block being built.
pub(super) fn push(block: &mut Vec<u8>, entry: &[u8]) {
    encode_key(1, WireType::LengthDelimited, block);
    encode_varint(entry.len() as u64, block);
    block.extend_from_slice(entry);
}

/// The bytes `push` adds for an entry of `len` bytes.
pub(super) fn pushed_len(len: usize) -> usize {
    1 + encoded_len_varint(len as u64) + len
}

/// Starts a block that carries `counters` (the encoded `LogCounters` of the
/// log once the block's append is applied); entries are pushed after.
pub(super) fn with_counters(counters: &[u8], capacity: usize) -> Vec<u8> {
    let mut block = Vec::with_capacity(pushed_len(counters.len()) + capacity);
    encode_key(2, WireType::LengthDelimited, &mut block);
    encode_varint(counters.len() as u64, &mut block);
    block.extend_from_slice(counters);
    block
}

/// The encoded `LogCounters` a block starts with, if it carries them.
pub(super) fn counters(value: &[u8]) -> Result<Option<&[u8]>, StoreError> {
    match value.split_first() {
        Some((&COUNTERS_TAG, after_tag)) => {
            let (counters, _) = field(after_tag, "counters")?;
            Ok(Some(counters))
        }
        _ => Ok(None),
    }
}

/// Splits a length-delimited field's bytes (after its tag) from what
/// follows it.
fn field<'a>(after_tag: &'a [u8], what: &str) -> Result<(&'a [u8], &'a [u8]), StoreError> {
    let mut after_len = after_tag;
    let len = decode_varint(&mut after_len)
        .map_err(|err| corrupt(&format!("a block's {what} length: {err}")))?;
    let len = usize::try_from(len)
        .ok()
        .filter(|len| *len <= after_len.len())
        .ok_or_else(|| corrupt(&format!("a block's {what} runs past its end")))?;
    Ok(after_len.split_at(len))
}

/// The entries of a block, as slices of its value.
pub(crate) fn entries(value: &IVec) -> Result<Vec<IVec>, StoreError> {
    let mut rest: &[u8] = match value.split_first() {
        Some((&LEGACY_ENTRY_TAG, _)) => return Ok(vec![value.clone()]),
        Some((&BLOCK_TAG, _)) => value,
        Some((&COUNTERS_TAG, after_tag)) => field(after_tag, "counters")?.1,
        _ => return Err(corrupt("a log value is neither a block nor an entry")),
    };
    let mut entries = Vec::new();
    while let Some((&tag, after_tag)) = rest.split_first() {
        if tag != BLOCK_TAG {
            return Err(corrupt("a block holds something other than entries"));
        }
        let (entry, after) = field(after_tag, "entry")?;
        // `entry` and then `after` run to the end of the value.
        let offset = value.len() - after.len() - entry.len();
        entries.push(value.subslice(offset, entry.len()));
        rest = after;
    }
    Ok(entries)
}

fn corrupt(detail: &str) -> StoreError {
    StoreError::Corrupt {
        detail: detail.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::store::schema::{StoredBlock, StoredEntry};

    fn entry(seq: u64, message: &str) -> Vec<u8> {
        StoredEntry {
            seq,
            message: message.to_owned(),
            ..StoredEntry::default()
        }
        .encode_to_vec()
    }

    #[test]
    fn a_block_is_an_encoded_stored_block() {
        let encoded = [entry(1, "a"), entry(2, &"b".repeat(300)), entry(3, "")];
        let mut block = Vec::new();
        for bytes in &encoded {
            push(&mut block, bytes);
        }
        assert_eq!(
            block.len(),
            encoded
                .iter()
                .map(|bytes| pushed_len(bytes.len()))
                .sum::<usize>()
        );
        let decoded = StoredBlock::decode(block.as_slice()).expect("decodes");
        assert_eq!(decoded.entries, encoded);
        let sliced = entries(&IVec::from(block)).expect("parses");
        assert_eq!(
            sliced
                .iter()
                .map(|bytes| bytes.to_vec())
                .collect::<Vec<_>>(),
            encoded
        );
    }

    #[test]
    fn a_layout_one_value_reads_as_a_block_of_one() {
        let legacy = entry(7, "old");
        let sliced = entries(&IVec::from(legacy.clone())).expect("parses");
        assert_eq!(sliced.len(), 1);
        assert_eq!(sliced[0].as_ref(), legacy.as_slice());
    }

    #[test]
    fn a_block_may_start_with_the_counters() {
        let counters = crate::store::schema::LogCounters {
            last_seq: 300,
            entry_count: 300,
            size_bytes: 1 << 40,
            batch_ids: 7,
        };
        let encoded = [entry(299, "a"), entry(300, "b")];
        let mut block = with_counters(&counters.encode_to_vec(), 0);
        for bytes in &encoded {
            push(&mut block, bytes);
        }
        let decoded = StoredBlock::decode(block.as_slice()).expect("decodes");
        assert_eq!(decoded.entries, encoded);
        assert_eq!(decoded.counters, Some(counters));
        let value = IVec::from(block);
        let sliced = entries(&value).expect("parses");
        assert_eq!(sliced.len(), 2);
        assert_eq!(sliced[1].as_ref(), encoded[1].as_slice());
        let carried = super::counters(&value).expect("parses").expect("carried");
        assert_eq!(carried, counters.encode_to_vec().as_slice());
        let max = crate::store::schema::LogCounters {
            last_seq: u64::MAX,
            entry_count: u64::MAX,
            size_bytes: u64::MAX,
            batch_ids: u64::MAX,
        };
        assert_eq!(
            with_counters(&max.encode_to_vec(), 0).len(),
            COUNTERS_MAX_BYTES
        );
        // A plain block carries none.
        let mut plain = Vec::new();
        push(&mut plain, &encoded[0]);
        assert_eq!(super::counters(&plain).expect("parses"), None);
    }

    #[test]
    fn damaged_blocks_are_corrupt_not_panics() {
        let mut block = Vec::new();
        push(&mut block, &entry(1, "hello"));
        for cut in 1..block.len() {
            let result = entries(&IVec::from(&block[..cut]));
            assert!(result.is_err(), "a block cut at {cut} must not parse");
        }
        assert!(entries(&IVec::from(&[0x1au8, 0][..])).is_err());
        let mut counted = with_counters(&[0x08, 1], 0);
        push(&mut counted, &entry(1, "hello"));
        for cut in 1..counted.len() {
            let value = IVec::from(&counted[..cut]);
            let parsed = entries(&value).map(|entries| entries.len());
            assert!(
                matches!(parsed, Err(_) | Ok(0)),
                "a block with counters cut at {cut} must not yield its entry"
            );
            let _ = super::counters(&value);
        }
        assert!(entries(&IVec::from(&[][..])).is_err());
    }
}
