//! Key layout inside a session's log tree. Entries sit under their seq as a
//! big-endian u64 (so byte order is seq order); seqs never exceed `MAX_SEQ`,
//! whose top bit is clear, so entry keys sort below every metadata key, which
//! all begin with 0xff.

/// The largest seq a session can hold (2^63 - 1): entry keys stay below 0x80.
pub(crate) const MAX_SEQ: u64 = 0x7fff_ffff_ffff_ffff;

const META: u8 = 0xff;
/// The log's `LogCounters` as layouts up to 3 kept them, rewritten by every
/// batch; read only while the log's last block carries no counters.
pub(super) const COUNTERS_KEY: [u8; 2] = [META, b'c'];
/// How far sealing has gone (see `seal::SealMark`), written with each seal.
pub(super) const SEAL_KEY: [u8; 2] = [META, b's'];
const BATCH_ID: u8 = b'b';
const BATCH_ORDER: u8 = b'o';

/// The key of the entry with this seq.
pub(super) fn entry_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

/// The seq of an entry key, or `None` when the key is not an entry key.
pub(super) fn entry_seq(key: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = key.try_into().ok()?;
    let seq = u64::from_be_bytes(bytes);
    (seq <= MAX_SEQ).then_some(seq)
}

/// Where a batch id's stored seqs are kept, for retries.
pub(super) fn batch_key(batch_id: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(2 + batch_id.len());
    key.extend_from_slice(&[META, BATCH_ID]);
    key.extend_from_slice(batch_id);
    key
}

/// Orders batch ids by their first seq, so the oldest can be evicted.
pub(super) fn batch_order_key(first_seq: u64) -> [u8; 10] {
    let mut key = [0u8; 10];
    key[0] = META;
    key[1] = BATCH_ORDER;
    key[2..].copy_from_slice(&first_seq.to_be_bytes());
    key
}

/// The range holding every batch order key, oldest first.
pub(super) fn batch_order_range() -> std::ops::Range<[u8; 2]> {
    [META, BATCH_ORDER]..[META, BATCH_ORDER + 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_keys_sort_in_seq_order() {
        let seqs = [1u64, 2, 255, 256, 65_535, 1 << 40, MAX_SEQ];
        for pair in seqs.windows(2) {
            assert!(entry_key(pair[0]) < entry_key(pair[1]));
        }
    }

    #[test]
    fn entry_keys_sort_below_metadata_keys() {
        let top = entry_key(MAX_SEQ);
        assert!(top.as_slice() < COUNTERS_KEY.as_slice());
        assert!(top.as_slice() < SEAL_KEY.as_slice());
        assert!(top.as_slice() < batch_key(b"").as_slice());
        assert!(top.as_slice() < batch_order_key(0).as_slice());
    }

    #[test]
    fn entry_seq_round_trips_and_rejects_metadata() {
        assert_eq!(entry_seq(&entry_key(42)), Some(42));
        assert_eq!(entry_seq(&COUNTERS_KEY), None);
        assert_eq!(entry_seq(&batch_order_key(7)[..8]), None);
    }

    #[test]
    fn batch_order_range_holds_order_keys_only() {
        let range = batch_order_range();
        let inside = batch_order_key(u64::MAX);
        assert!(range.start.as_slice() <= inside.as_slice());
        assert!(inside.as_slice() < range.end.as_slice());
        assert!(
            !(range.start.as_slice() <= batch_key(b"x").as_slice()
                && batch_key(b"x").as_slice() < range.end.as_slice())
        );
    }
}
