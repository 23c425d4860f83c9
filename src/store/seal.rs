//! Sealing: a log's blocks, written small and uncompressed by appends, are
//! packed again into runs of about `SEAL_RUN_BYTES` of entries and
//! compressed (`block::seal`), so the store holds log text at the ratio of
//! real compression rather than of 7 KiB pieces.
//!
//! One step seals one run: a `sled::Batch` on the log's tree inserts the
//! sealed block under the run's first key, removes the run's other keys and
//! moves the log's seal mark past the run. A crash keeps the old blocks or
//! the sealed one, never both or neither. Once it lands, the leaves it
//! wrote are written whole again (`PreparedSeal::keys`), so the unsealed
//! blocks stop counting as live; a crash before that loses nothing, and
//! leaves them live until sled next writes that leaf whole. The counters
//! the run's last block carries stay at the head of the sealed block, so
//! the log's last block still holds the log's counters; batch ids are not
//! touched. A step only reads blocks at or below a seq the caller knows is
//! applied, which appends never rewrite, so it needs no append lock; only
//! sealing rewrites them, and one thread per store seals (see
//! `sessions::seal`). Readers stay right while a step lands: see `log::Scan`.
//!
//! Invariants: the seal mark is always at a block boundary, every block
//! past it is unsealed, and a sealed block is at most `MAX_SEALED_BYTES`,
//! so sled's leaves (split by key count, not size) stay under the size it
//! writes as a separate blob.

use sled::IVec;

use super::StoreError;
use super::block;
use super::keys::{self, SEAL_KEY};
use super::log::{LogTree, block_entries};

/// About how many bytes of entries a sealed block holds: at the ratios
/// measured on log text (docs/performance.md, "Sealed blocks") that
/// compresses to a few KiB, under `MAX_SEALED_BYTES`.
pub(crate) const SEAL_RUN_BYTES: usize = 64 * 1024;
/// The most a sealed block may take: the same bound as an append's block,
/// for the same reason (seventeen of them fit a quarter segment).
pub(crate) const MAX_SEALED_BYTES: usize = block::TARGET_BLOCK_BYTES;
/// How many times a step shrinks a run that compressed too large before
/// leaving its first block unsealed.
const SHRINK_TRIES: usize = 4;

/// How far a log is sealed: every block with seqs up to `through_seq` was
/// sealed or left as it is for good (it did not compress, or is too large),
/// and `through_bytes` is what those entries weigh in the log's
/// `size_bytes`. Stored as two big-endian u64s under `SEAL_KEY`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SealMark {
    pub through_seq: u64,
    pub through_bytes: u64,
}

impl SealMark {
    fn encode(self) -> [u8; 16] {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.through_seq.to_be_bytes());
        bytes[8..].copy_from_slice(&self.through_bytes.to_be_bytes());
        bytes
    }

    fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        let bytes: [u8; 16] = bytes.try_into().map_err(|_| StoreError::Corrupt {
            detail: "a log's seal mark is not 16 bytes".to_owned(),
        })?;
        let (seq, weight) = bytes.split_at(8);
        Ok(Self {
            through_seq: u64::from_be_bytes(seq.try_into().unwrap_or_default()),
            through_bytes: u64::from_be_bytes(weight.try_into().unwrap_or_default()),
        })
    }
}

/// What a seal step may seal (see `Store::seal_step`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealTarget {
    /// Seal blocks whose entries are all at or below this applied seq.
    pub through_seq: u64,
    /// The log's `size_bytes` at `through_seq`.
    pub size_bytes: u64,
    /// Seal only if at least this many of those bytes are unsealed.
    pub min_unsealed: u64,
}

/// What `Store::seal_step` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealOutcome {
    /// One step landed.
    Step(SealStep),
    /// Nothing to do now; the log is sealed this far.
    Done(SealMark),
    /// The session is being deleted.
    Gone,
}

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealStep {
    pub mark: SealMark,
    /// Blocks replaced by one sealed block (0 when the step only moved the
    /// mark past blocks left as they are).
    pub blocks_sealed: usize,
    /// The bytes of the values removed and of the one written.
    pub bytes_before: usize,
    pub bytes_after: usize,
}

/// A seal step built and not applied yet (see `LogTree::prepare_seal`).
pub(super) struct PreparedSeal {
    pub batch: sled::Batch,
    pub step: SealStep,
    /// The keys `batch` writes or removes. Once it lands, the leaves that
    /// hold them are written whole again (`LogTree::consolidate`): sled
    /// keeps a leaf's older version live until ten links pile on it, and a
    /// small log's one leaf would keep its unsealed blocks on disk.
    pub keys: Vec<IVec>,
}

/// A block read for sealing.
struct Found {
    key: IVec,
    value_len: usize,
    entries: Vec<(u64, IVec)>,
    sealed: bool,
    /// The log's counters this block carries (the last block of an append
    /// does), kept by a sealed block that ends with it: if it is the log's
    /// last block, they are the log's counters.
    counters: Option<Vec<u8>>,
}

impl Found {
    fn last_seq(&self) -> u64 {
        self.entries.last().map_or(0, |(seq, _)| *seq)
    }

    fn raw_len(&self) -> usize {
        self.entries
            .iter()
            .map(|(_, bytes)| block::pushed_len(bytes.len()))
            .sum()
    }

    fn weight(&self) -> u64 {
        self.entries
            .iter()
            .map(|(_, bytes)| u64::try_from(bytes.len()).unwrap_or(u64::MAX))
            .sum()
    }
}

impl LogTree {
    /// How far this log is sealed.
    pub fn seal_mark(&self) -> Result<SealMark, StoreError> {
        match self.tree().get(SEAL_KEY)? {
            Some(bytes) => SealMark::decode(&bytes),
            None => Ok(SealMark::default()),
        }
    }

    /// Builds the next seal step after `mark` (this log's) over blocks whose entries are all at or
    /// below `through_seq` (which must be applied), or `None` when there
    /// is nothing left to seal there. The caller applies the batch.
    pub(super) fn prepare_seal(
        &self,
        mark: SealMark,
        through_seq: u64,
    ) -> Result<Option<PreparedSeal>, StoreError> {
        let Some(start) = mark.through_seq.checked_add(1) else {
            return Ok(None);
        };
        if start > through_seq.min(keys::MAX_SEQ) {
            return Ok(None);
        }
        let mut run: Vec<Found> = Vec::new();
        let mut raw = 0usize;
        let blocks = self
            .tree()
            .range(keys::entry_key(start)..=keys::entry_key(through_seq.min(keys::MAX_SEQ)));
        for item in blocks {
            let (key, value) = item?;
            let found = Found {
                entries: block_entries(&key, &value)?,
                value_len: value.len(),
                sealed: block::is_sealed(&value),
                counters: block::counters(&value)?.map(<[u8]>::to_vec),
                key,
            };
            if found.entries.is_empty() || found.last_seq() > through_seq {
                break;
            }
            let found_raw = found.raw_len();
            if found.sealed || found_raw > block::MAX_SEALED_RAW_BYTES {
                if run.is_empty() {
                    // Left as it is: the mark moves past it.
                    return Ok(Some(self.skip(mark, &found)));
                }
                break;
            }
            if !run.is_empty() && raw + found_raw > SEAL_RUN_BYTES {
                break;
            }
            raw += found_raw;
            run.push(found);
        }
        if run.is_empty() {
            return Ok(None);
        }
        let mut take = run.len();
        for _ in 0..SHRINK_TRIES {
            let mut packed = Vec::with_capacity(raw);
            for found in &run[..take] {
                for (_, entry) in &found.entries {
                    block::push(&mut packed, entry);
                }
            }
            let before: usize = run[..take].iter().map(|found| found.value_len).sum();
            let Some(sealed) = block::seal(&packed)? else {
                break;
            };
            let sealed = match &run[take - 1].counters {
                Some(counters) => {
                    let mut carried = block::with_counters(counters, sealed.len());
                    carried.extend_from_slice(&sealed);
                    carried
                }
                None => sealed,
            };
            if sealed.len() <= MAX_SEALED_BYTES && sealed.len() < before {
                return Ok(Some(self.replace(mark, &run[..take], sealed, before)));
            }
            if take == 1 {
                break;
            }
            take = if sealed.len() >= before {
                // It does not compress: try the first block alone.
                1
            } else {
                // Shrink in proportion to how far over the bound it came.
                (take * MAX_SEALED_BYTES * 9 / (10 * sealed.len())).clamp(1, take - 1)
            };
        }
        Ok(Some(self.skip(mark, &run[0])))
    }

    /// Writes the leaves holding `keys` whole again where links piled on
    /// them (see `PreparedSeal::keys`). A key's leaf already whole costs a
    /// lookup.
    pub(super) fn consolidate(&self, keys: &[IVec]) -> Result<(), StoreError> {
        for key in keys {
            self.tree().consolidate_leaf(key)?;
        }
        Ok(())
    }

    /// A step that moves the mark past `found`, leaving it as it is.
    fn skip(&self, mark: SealMark, found: &Found) -> PreparedSeal {
        let mark = SealMark {
            through_seq: found.last_seq(),
            through_bytes: mark.through_bytes.saturating_add(found.weight()),
        };
        let mut batch = sled::Batch::default();
        batch.insert(&SEAL_KEY, &mark.encode());
        let step = SealStep {
            mark,
            blocks_sealed: 0,
            bytes_before: 0,
            bytes_after: 0,
        };
        PreparedSeal {
            batch,
            step,
            keys: vec![IVec::from(&SEAL_KEY[..])],
        }
    }

    /// A step that replaces `run` with `sealed`.
    fn replace(
        &self,
        mark: SealMark,
        run: &[Found],
        sealed: Vec<u8>,
        before: usize,
    ) -> PreparedSeal {
        let mut batch = sled::Batch::default();
        let mut keys: Vec<IVec> = run.iter().map(|found| found.key.clone()).collect();
        keys.push(IVec::from(&SEAL_KEY[..]));
        let weight: u64 = run.iter().map(Found::weight).sum();
        let mark = SealMark {
            through_seq: run.last().map_or(mark.through_seq, Found::last_seq),
            through_bytes: mark.through_bytes.saturating_add(weight),
        };
        let after = sealed.len();
        if let Some((first, rest)) = run.split_first() {
            batch.insert(first.key.clone(), sealed);
            for found in rest {
                batch.remove(found.key.clone());
            }
        }
        batch.insert(&SEAL_KEY, &mark.encode());
        let step = SealStep {
            mark,
            blocks_sealed: run.len(),
            bytes_before: before,
            bytes_after: after,
        };
        PreparedSeal { batch, step, keys }
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::store::schema::{LogCounters, StoredEntry};
    use crate::store::{NewEntry, StoreHealth, decode_entry};

    fn log() -> LogTree {
        let db = sled::Config::new()
            .temporary(true)
            .open()
            .expect("a temporary sled");
        LogTree::new(
            db.open_tree("log/seal").expect("a tree"),
            StoreHealth::default(),
        )
    }

    fn append(log: &LogTree, counters: &LogCounters, messages: Vec<String>) -> LogCounters {
        let entries = messages
            .into_iter()
            .map(|message| {
                NewEntry::Decoded(StoredEntry {
                    message,
                    logger: "app.worker".to_owned(),
                    ..StoredEntry::default()
                })
            })
            .collect();
        log.append(counters, entries, None, SystemTime::now())
            .expect("append")
    }

    fn text(seq: usize) -> String {
        format!(
            "request {seq} served in {} ms for user {} from 10.0.{}.{}",
            seq % 97,
            seq % 13,
            seq % 7,
            seq % 251
        )
    }

    /// Seals through `through` step by step; the steps taken.
    fn seal_all(log: &LogTree, through: u64) -> Vec<SealStep> {
        let mut steps = Vec::new();
        while let Some(prepared) = log
            .prepare_seal(log.seal_mark().expect("mark"), through)
            .expect("prepare")
        {
            log.tree().apply_batch(prepared.batch).expect("apply");
            log.consolidate(&prepared.keys).expect("consolidate");
            steps.push(prepared.step);
        }
        steps
    }

    fn block_values(log: &LogTree) -> Vec<IVec> {
        log.tree()
            .range(keys::entry_key(0)..=keys::entry_key(keys::MAX_SEQ))
            .map(|item| item.expect("block").1)
            .collect()
    }

    fn messages(log: &LogTree, after: u64, through: u64) -> Vec<(u64, String)> {
        log.scan(after, through)
            .map(|item| {
                let (seq, bytes) = item.expect("scan");
                (seq, decode_entry(&bytes).expect("decodes").message)
            })
            .collect()
    }

    #[test]
    fn sealing_keeps_every_entry_and_compresses_within_bounds() {
        let log = log();
        let mut counters = LogCounters::default();
        for batch in 0..60 {
            counters = append(
                &log,
                &counters,
                (0..50).map(|i| text(batch * 50 + i)).collect(),
            );
        }
        let before = messages(&log, 0, counters.last_seq);
        let blocks_before = block_values(&log).len();
        let steps = seal_all(&log, counters.last_seq);
        assert!(steps.iter().all(|step| step.blocks_sealed > 0));
        let values = block_values(&log);
        assert!(values.len() * 4 < blocks_before, "{} blocks", values.len());
        for value in &values {
            assert!(block::is_sealed(value));
            assert!(value.len() <= MAX_SEALED_BYTES);
        }
        assert_eq!(messages(&log, 0, counters.last_seq), before);
        for (after, through) in [(0, 1), (17, 900), (2999, 3000), (1234, 2345)] {
            assert_eq!(
                messages(&log, after, through),
                before[after as usize..through as usize].to_vec()
            );
        }
        let reversed: Vec<u64> = log
            .scan(100, 2000)
            .rev()
            .map(|item| item.expect("scan").0)
            .collect();
        assert_eq!(reversed, (101..=2000).rev().collect::<Vec<_>>());
        let mark = log.seal_mark().expect("mark");
        assert_eq!(mark.through_seq, counters.last_seq);
        assert_eq!(mark.through_bytes, counters.size_bytes);
        assert_eq!(log.counters().expect("counters"), counters);
        assert!(seal_all(&log, counters.last_seq).is_empty());
    }

    #[test]
    fn sealing_stops_at_the_given_seq_and_resumes_after_more_appends() {
        let log = log();
        let mut counters = LogCounters::default();
        for batch in 0..10 {
            counters = append(
                &log,
                &counters,
                (0..100).map(|i| text(batch * 100 + i)).collect(),
            );
        }
        let edge = counters.last_seq;
        seal_all(&log, 500);
        assert_eq!(log.seal_mark().expect("mark").through_seq, 500);
        counters = append(&log, &counters, (0..100).map(text).collect());
        seal_all(&log, edge);
        assert_eq!(log.seal_mark().expect("mark").through_seq, edge);
        assert_eq!(
            messages(&log, 0, counters.last_seq)
                .iter()
                .map(|(seq, _)| *seq)
                .collect::<Vec<_>>(),
            (1..=counters.last_seq).collect::<Vec<_>>()
        );
    }

    #[test]
    fn incompressible_and_oversized_blocks_stay_as_they_are() {
        let log = log();
        let noise = |seed: u64| -> String {
            let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            (0..3000)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    char::from(b'!' + (state % 90) as u8)
                })
                .collect()
        };
        let mut counters = append(&log, &LogCounters::default(), (1..=6).map(noise).collect());
        counters = append(&log, &counters, vec!["x".repeat(2 << 20)]);
        counters = append(&log, &counters, (0..200).map(text).collect());
        let before = messages(&log, 0, counters.last_seq);
        seal_all(&log, counters.last_seq);
        assert_eq!(messages(&log, 0, counters.last_seq), before);
        let mark = log.seal_mark().expect("mark");
        assert_eq!(
            (mark.through_seq, mark.through_bytes),
            (counters.last_seq, counters.size_bytes)
        );
        let values = block_values(&log);
        assert!(values.iter().any(|value| !block::is_sealed(value)));
        assert!(values.iter().any(|value| block::is_sealed(value)));
        assert!(
            values
                .iter()
                .all(|value| !block::is_sealed(value) || value.len() <= MAX_SEALED_BYTES)
        );
    }

    /// A log of `batches` batches of the given sizes, with entries of
    /// varied length so blocks hold different counts.
    fn log_of(batches: &[usize]) -> (LogTree, LogCounters) {
        let log = log();
        let mut counters = LogCounters::default();
        let mut seq = 0;
        for size in batches {
            let messages = (0..*size)
                .map(|_| {
                    seq += 1;
                    format!("{}{}", text(seq), " pad".repeat(seq % 40))
                })
                .collect();
            counters = append(&log, &counters, messages);
        }
        (log, counters)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

        /// Readers interleaved with seal steps, at any point of a scan
        /// (between any two entries it yields), forwards and backwards and
        /// in pages resumed from their cursors: each sees every seq in its
        /// range once, in order.
        #[test]
        fn readers_interleaved_with_sealing_see_each_seq_once(
            batches in proptest::collection::vec(1usize..400, 1..12),
            after in 0u64..200,
            seal_every in 1usize..60,
            page in 1usize..300,
            backwards in proptest::bool::ANY,
        ) {
            let (log, counters) = log_of(&batches);
            let last = counters.last_seq;
            let after = after.min(last);
            let mut seen = Vec::new();
            let mut since_seal = 0usize;
            let mut seal = |log: &LogTree| {
                since_seal += 1;
                if since_seal >= seal_every {
                    since_seal = 0;
                    if let Some(prepared) = log.prepare_seal(log.seal_mark().expect("mark"), last).expect("prepare") {
                        log.tree().apply_batch(prepared.batch).expect("apply");
                    }
                }
            };
            if backwards {
                for item in log.scan(after, last).rev() {
                    seen.push(item.expect("scan").0);
                    seal(&log);
                }
                seen.reverse();
            } else {
                // Pages, each a fresh scan from the last one's cursor, as
                // Read and a follower's catch-up do.
                let mut cursor = after;
                while cursor < last {
                    let mut scan = log.scan(cursor, last);
                    for _ in 0..page {
                        let Some(item) = scan.next() else { break };
                        let (seq, _) = item.expect("scan");
                        seen.push(seq);
                        cursor = seq;
                        seal(&log);
                    }
                }
            }
            proptest::prop_assert_eq!(seen, (after + 1..=last).collect::<Vec<_>>());
        }
    }

    #[test]
    fn readers_on_other_threads_see_each_seq_once_while_a_log_is_sealed() {
        let (log, counters) = log_of(&[300; 20]);
        let last = counters.last_seq;
        let sealing = std::sync::atomic::AtomicBool::new(true);
        std::thread::scope(|scope| {
            for reader in 0..3u64 {
                let (log, sealing) = (&log, &sealing);
                scope.spawn(move || {
                    let mut rounds = 0;
                    while sealing.load(std::sync::atomic::Ordering::SeqCst) || rounds < 2 {
                        rounds += 1;
                        let mut cursor = reader * 7;
                        let mut seen = Vec::new();
                        while cursor < last {
                            let page = log
                                .page_forward_raw(
                                    cursor,
                                    last,
                                    &crate::store::EntryFilter::default(),
                                    crate::store::ScanLimits {
                                        max_entries: 50 + reader as usize * 40,
                                        max_scanned: 10_000,
                                        max_bytes: usize::MAX,
                                    },
                                )
                                .expect("page");
                            for bytes in &page.entries {
                                seen.push(decode_entry(bytes).expect("decodes").seq);
                            }
                            cursor = page.cursor;
                        }
                        assert_eq!(seen, (reader * 7 + 1..=last).collect::<Vec<_>>());
                        let tail: Vec<u64> = log
                            .scan(0, last)
                            .rev()
                            .map(|item| item.expect("scan").0)
                            .collect();
                        assert_eq!(tail, (1..=last).rev().collect::<Vec<_>>());
                    }
                });
            }
            let steps = seal_all(&log, last);
            assert!(steps.len() > 5);
            sealing.store(false, std::sync::atomic::Ordering::SeqCst);
        });
    }
}
