//! Blocks: how a run of entries is packed into one sled value. Packing
//! turns sled's per-key cost (index node, page, log record) into a cost per
//! block, which is where the time of an append went with a key per entry.
//!
//! A block is an encoded `StoredBlock`: every entry's encoded `StoredEntry`,
//! length-delimited, so a reader slices entries out of the value it got
//! from sled without copying or decoding them. A value written by layout 1
//! (one `StoredEntry` per key) starts with a different tag and reads as a
//! block of one, so stores written before blocks need no migration.

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

/// The first byte of a block: field 1 of `StoredBlock`, length-delimited.
const BLOCK_TAG: u8 = (1 << 3) | WireType::LengthDelimited as u8;
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

/// The entries of a block, as slices of its value.
pub(crate) fn entries(value: &IVec) -> Result<Vec<IVec>, StoreError> {
    match value.first() {
        Some(&LEGACY_ENTRY_TAG) => return Ok(vec![value.clone()]),
        Some(&BLOCK_TAG) => {}
        _ => return Err(corrupt("a log value is neither a block nor an entry")),
    }
    let mut entries = Vec::new();
    let mut rest: &[u8] = value;
    while let Some((&tag, after_tag)) = rest.split_first() {
        if tag != BLOCK_TAG {
            return Err(corrupt("a block holds something other than entries"));
        }
        let mut after_len = after_tag;
        let len = decode_varint(&mut after_len)
            .map_err(|err| corrupt(&format!("a block's entry length: {err}")))?;
        let len = usize::try_from(len)
            .ok()
            .filter(|len| *len <= after_len.len())
            .ok_or_else(|| corrupt("a block's entry runs past its end"))?;
        let offset = value.len() - after_len.len();
        entries.push(value.subslice(offset, len));
        rest = &after_len[len..];
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
    fn damaged_blocks_are_corrupt_not_panics() {
        let mut block = Vec::new();
        push(&mut block, &entry(1, "hello"));
        for cut in 1..block.len() {
            let result = entries(&IVec::from(&block[..cut]));
            assert!(result.is_err(), "a block cut at {cut} must not parse");
        }
        assert!(entries(&IVec::from(&[0x12u8, 0][..])).is_err());
        assert!(entries(&IVec::from(&[][..])).is_err());
    }
}
