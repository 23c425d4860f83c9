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
//! Layout 4 adds two things:
//!
//! - The last block an append writes starts with the log's `LogCounters`
//!   as of its last entry (`StoredBlock.counters`, encoded first so it is
//!   read without walking the entries). So the log's last block holds the
//!   log's counters, and an append that fits in one block is one sled key:
//!   sled stores a single key atomically without the batch machinery that
//!   writes its log buffer out twice.
//! - A sealed block (see `seal`) is a run of such blocks' entries packed
//!   into one block and compressed: `SEALED_TAG`, the packed block's length
//!   as a varint, then one zstd frame of it, after the counters of the
//!   run's last block when it carried them. A reader decompresses it once
//!   and slices the entries out of the result, as from any block; a sealed
//!   block whose frame does not decode to exactly the length it names is
//!   corrupt.

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

/// Whether a stored value is a sealed block (with or without counters).
pub(super) fn is_sealed(value: &[u8]) -> bool {
    without_counters(value).is_ok_and(|rest| rest.first() == Some(&SEALED_TAG))
}

/// A value past the counters it starts with, if any.
fn without_counters(value: &[u8]) -> Result<&[u8], StoreError> {
    match value.split_first() {
        Some((&COUNTERS_TAG, after_tag)) => Ok(field(after_tag, "counters")?.1),
        _ => Ok(value),
    }
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

/// The length a sealed block names and its zstd frame.
fn sealed_parts(value: &[u8]) -> Result<(usize, &[u8]), StoreError> {
    let mut rest = value.get(1..).unwrap_or_default();
    let len = decode_varint(&mut rest)
        .map_err(|err| corrupt(&format!("a sealed block's length: {err}")))?;
    let len = usize::try_from(len)
        .ok()
        .filter(|len| (1..=MAX_SEALED_RAW_BYTES).contains(len))
        .ok_or_else(|| corrupt("a sealed block names an impossible length"))?;
    Ok((len, rest))
}

/// Checks what a sealed block unpacked to.
fn check_unsealed(packed: &[u8], len: usize) -> Result<(), StoreError> {
    if packed.len() != len || packed.first() != Some(&BLOCK_TAG) {
        return Err(corrupt("a sealed block holds something other than a block"));
    }
    Ok(())
}

/// The packed block inside a sealed one.
fn unseal(value: &[u8]) -> Result<IVec, StoreError> {
    let (len, frame) = sealed_parts(value)?;
    let packed = zstd::bulk::decompress(frame, len)
        .map_err(|err| corrupt(&format!("a sealed block does not decompress: {err}")))?;
    check_unsealed(&packed, len)?;
    Ok(IVec::from(packed))
}

thread_local! {
    /// A decompression context per thread, for scans that unseal block
    /// after block (making one costs about as much as a small block).
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// `plain` for a scan that reads many blocks: a sealed block is unpacked
/// into `buffer`, which the caller reuses from block to block, with this
/// thread's decompression context; anything else is borrowed as it is.
pub(crate) fn plain_in<'a>(
    value: &'a [u8],
    buffer: &'a mut Vec<u8>,
) -> Result<&'a [u8], StoreError> {
    let sealed = match value.split_first() {
        Some((&SEALED_TAG, _)) => value,
        Some((&COUNTERS_TAG, after_tag)) => {
            let rest = field(after_tag, "counters")?.1;
            if rest.first() != Some(&SEALED_TAG) {
                return Ok(rest);
            }
            rest
        }
        _ => return Ok(value),
    };
    let (len, frame) = sealed_parts(sealed)?;
    buffer.clear();
    buffer.reserve(len);
    DECOMPRESSOR.with(|slot| {
        let mut slot = slot.borrow_mut();
        if slot.is_none() {
            *slot = Some(zstd::bulk::Decompressor::new().map_err(StoreError::Io)?);
        }
        let decompressor = slot.as_mut().expect("set just above");
        decompressor
            .decompress_to_buffer(frame, buffer)
            .map(drop)
            .map_err(|err| corrupt(&format!("a sealed block does not decompress: {err}")))
    })?;
    check_unsealed(buffer, len)?;
    Ok(buffer.as_slice())
}

/// The entries of a plain block (see `plain_in`), as slices of it.
pub(crate) fn entry_slices(plain: &[u8]) -> Result<Vec<&[u8]>, StoreError> {
    let mut rest = match plain.first() {
        Some(&LEGACY_ENTRY_TAG) => return Ok(vec![plain]),
        Some(&BLOCK_TAG) => plain,
        _ => return Err(corrupt("a log value is neither a block nor an entry")),
    };
    let mut entries = Vec::new();
    while let Some((&tag, after_tag)) = rest.split_first() {
        if tag != BLOCK_TAG {
            return Err(corrupt("a block holds something other than entries"));
        }
        let (entry, after) = field(after_tag, "entry")?;
        entries.push(entry);
        rest = after;
    }
    Ok(entries)
}

/// The entries of a block, as slices of its value (of the decompressed
/// value, for a sealed block: once per call, so once per block read).
pub(crate) fn entries(value: &IVec) -> Result<Vec<IVec>, StoreError> {
    let mut rest: &[u8] = match value.split_first() {
        Some((&LEGACY_ENTRY_TAG, _)) => return Ok(vec![value.clone()]),
        Some((&BLOCK_TAG, _)) => value,
        Some((&SEALED_TAG, _)) => return entries(&unseal(value)?),
        Some((&COUNTERS_TAG, after_tag)) => {
            let rest = field(after_tag, "counters")?.1;
            if rest.first() == Some(&SEALED_TAG) {
                return entries(&unseal(rest)?);
            }
            rest
        }
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
    fn a_sealed_block_may_carry_the_counters() {
        let encoded: Vec<Vec<u8>> = (1..=50).map(|seq| entry(seq, "a line")).collect();
        let mut packed = Vec::new();
        for bytes in &encoded {
            push(&mut packed, bytes);
        }
        let sealed = seal(&packed).expect("seals").expect("small enough");
        let mut carried = with_counters(&[0x08, 50], sealed.len());
        carried.extend_from_slice(&sealed);
        assert!(is_sealed(&carried));
        assert_eq!(counters(&carried).expect("parses"), Some(&[0x08, 50][..]));
        let sliced = entries(&IVec::from(carried)).expect("parses");
        assert_eq!(sliced.len(), 50);
        assert_eq!(sliced[49].as_ref(), encoded[49].as_slice());
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
