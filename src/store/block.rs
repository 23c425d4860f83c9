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
//! A sealed block (layout 4, see `seal`) is a run of such blocks packed into
//! one and compressed: `SEALED_TAG`, the packed block's length as a varint,
//! then one zstd frame of it. A reader decompresses it once and slices the
//! entries out of the result, as from any block; a sealed block whose frame
//! does not decode to exactly the length it names is corrupt.

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

/// The first byte of a sealed block. Neither a `StoredBlock` nor a
/// `StoredEntry` can start with it (its wire type, 2, on field 11, which
/// neither message has).
const SEALED_TAG: u8 = b'Z';
/// The most a sealed block may unpack to: sealing makes runs of about 64
/// KiB and seals a larger block alone only up to this, so a damaged length
/// can never make a reader allocate more.
pub(super) const MAX_SEALED_RAW_BYTES: usize = 1 << 20;
/// The zstd level sealing compresses at (see docs/performance.md, "Sealed
/// blocks", for the levels measured).
pub(super) const SEAL_LEVEL: i32 = 3;

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

/// Whether a stored value is a sealed block.
pub(super) fn is_sealed(value: &[u8]) -> bool {
    value.first() == Some(&SEALED_TAG)
}

/// Seals `packed` (blocks' bytes, concatenated: itself a block) into a
/// sealed block, or `None` when it is too large to seal.
pub(super) fn seal(packed: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
    if packed.is_empty() || packed.len() > MAX_SEALED_RAW_BYTES {
        return Ok(None);
    }
    let frame = zstd::bulk::compress(packed, SEAL_LEVEL).map_err(StoreError::Io)?;
    let mut sealed = Vec::with_capacity(1 + 4 + frame.len());
    sealed.push(SEALED_TAG);
    encode_varint(packed.len() as u64, &mut sealed);
    sealed.extend_from_slice(&frame);
    Ok(Some(sealed))
}

/// The packed block inside a sealed one.
fn unseal(value: &[u8]) -> Result<IVec, StoreError> {
    let mut rest = value.get(1..).unwrap_or_default();
    let len = decode_varint(&mut rest)
        .map_err(|err| corrupt(&format!("a sealed block's length: {err}")))?;
    let len = usize::try_from(len)
        .ok()
        .filter(|len| (1..=MAX_SEALED_RAW_BYTES).contains(len))
        .ok_or_else(|| corrupt("a sealed block names an impossible length"))?;
    let packed = zstd::bulk::decompress(rest, len)
        .map_err(|err| corrupt(&format!("a sealed block does not decompress: {err}")))?;
    if packed.len() != len || packed.first() != Some(&BLOCK_TAG) {
        return Err(corrupt("a sealed block holds something other than a block"));
    }
    Ok(IVec::from(packed))
}

/// The entries of a block, as slices of its value (of the decompressed
/// value, for a sealed block: once per call, so once per block read).
pub(crate) fn entries(value: &IVec) -> Result<Vec<IVec>, StoreError> {
    match value.first() {
        Some(&LEGACY_ENTRY_TAG) => return Ok(vec![value.clone()]),
        Some(&BLOCK_TAG) => {}
        Some(&SEALED_TAG) => return entries(&unseal(value)?),
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

    #[test]
    fn a_sealed_block_reads_as_the_blocks_it_packs() {
        let encoded: Vec<Vec<u8>> = (1..=200)
            .map(|seq| entry(seq, &format!("line {seq} of a log")))
            .collect();
        let mut packed = Vec::new();
        for bytes in &encoded {
            push(&mut packed, bytes);
        }
        let sealed = seal(&packed).expect("seals").expect("small enough");
        assert!(is_sealed(&sealed));
        assert!(sealed.len() * 4 < packed.len(), "{} bytes", sealed.len());
        let sliced = entries(&IVec::from(sealed)).expect("parses");
        assert_eq!(
            sliced
                .iter()
                .map(|bytes| bytes.to_vec())
                .collect::<Vec<_>>(),
            encoded
        );
        assert!(
            seal(&vec![BLOCK_TAG; MAX_SEALED_RAW_BYTES + 1])
                .expect("no error")
                .is_none()
        );
    }

    #[test]
    fn damaged_sealed_blocks_are_corrupt_not_panics() {
        let mut packed = Vec::new();
        push(&mut packed, &entry(1, &"hello ".repeat(100)));
        let sealed = seal(&packed).expect("seals").expect("small enough");
        for cut in 1..sealed.len() {
            let result = entries(&IVec::from(&sealed[..cut]));
            assert!(
                matches!(result, Err(StoreError::Corrupt { .. })),
                "cut at {cut}"
            );
        }
        for at in 1..sealed.len() {
            let mut flipped = sealed.clone();
            flipped[at] ^= 0x55;
            // A flip may still decode to a valid block; it must not panic.
            let _ = entries(&IVec::from(flipped));
        }
        // A length past the bound is refused before anything is allocated.
        let mut huge = vec![SEALED_TAG];
        encode_varint(u64::MAX, &mut huge);
        assert!(entries(&IVec::from(huge)).is_err());
        // A frame of something that is not a block.
        let mut other = vec![SEALED_TAG];
        encode_varint(5, &mut other);
        other.extend(zstd::bulk::compress(b"hello", 1).expect("compresses"));
        assert!(entries(&IVec::from(other)).is_err());
    }
}
