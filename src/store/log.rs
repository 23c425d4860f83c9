//! One session's log: a sled tree holding its entries in blocks under the
//! seq of each block's first entry (see `block`), and the batch-id dedupe
//! window. The log's `LogCounters` are in its last block (layouts up to 3
//! kept them under `COUNTERS_KEY`, which is read while the last block
//! carries none). An append that fits in one block and has no batch id is
//! that one key; otherwise its blocks and its dedupe record are written in
//! one `sled::Batch`. Either way a crash keeps all of an append or none.
//! Blocks never straddle batches and hold contiguous seqs, so the block
//! holding seq `s` is the last one whose key is at most `s`. Callers
//! serialize appends per session (see `sessions`).

use std::collections::VecDeque;
use std::time::SystemTime;

use prost::Message;
use sled::IVec;

use super::NewEntry;
use super::StoreError;
use super::StoreHealth;
use super::block;
use super::keys::{self, COUNTERS_KEY};
use super::schema::{LogCounters, StoredBatch, StoredEntry};

/// How many batch ids per session a retry is recognised among.
pub(crate) const DEDUPE_WINDOW: u64 = 1_000;

/// A session's log tree.
#[derive(Debug, Clone)]
pub struct LogTree {
    tree: sled::Tree,
    health: StoreHealth,
}

/// An entry as stored: its seq and its encoded `StoredEntry`.
pub(crate) type RawEntry = (u64, IVec);

/// An append built but not yet applied (see `Store::apply_appends`).
#[derive(Debug)]
pub(crate) struct PreparedAppend {
    pub(super) log: LogTree,
    pub(super) writes: Writes,
    next: LogCounters,
    kept: Option<Vec<IVec>>,
}

/// What an append writes to its log's tree.
#[derive(Debug)]
pub(super) enum Writes {
    /// One block, carrying the log's counters: a single key, which sled
    /// stores atomically on its own.
    One { key: [u8; 8], block: Vec<u8> },
    /// Several blocks, or a block and its batch-id records: one atomic batch.
    Batch(sled::Batch),
}

impl Writes {
    /// The writes as one `sled::Batch`, for a transaction.
    pub(super) fn into_batch(self) -> sled::Batch {
        match self {
            Self::One { key, block } => {
                let mut batch = sled::Batch::default();
                batch.insert(&key, block);
                batch
            }
            Self::Batch(batch) => batch,
        }
    }

    /// Applies them to `tree`, outside any transaction.
    pub(super) fn apply(self, tree: &sled::Tree) -> sled::Result<()> {
        match self {
            Self::One { key, block } => tree.insert(key, block).map(drop),
            Self::Batch(batch) => tree.apply_batch(batch),
        }
    }
}

/// What an applied append left: the log's counters, and the stored
/// entries' bytes if `prepare_append` was told to keep them.
#[derive(Debug)]
pub(crate) struct AppliedAppend {
    pub(crate) counters: LogCounters,
    pub(crate) kept: Option<Vec<IVec>>,
}

impl PreparedAppend {
    /// The log's counters once this is applied.
    pub(crate) fn next(&self) -> LogCounters {
        self.next
    }

    /// The log, its writes, and what it left once they are applied.
    pub(super) fn split(self) -> (LogTree, Writes, AppliedAppend) {
        let applied = AppliedAppend {
            counters: self.next,
            kept: self.kept,
        };
        (self.log, self.writes, applied)
    }
}

impl LogTree {
    pub(super) fn new(tree: sled::Tree, health: StoreHealth) -> Self {
        Self { tree, health }
    }

    pub(super) fn tree(&self) -> &sled::Tree {
        &self.tree
    }

    /// The counters the last append wrote (zero for a new log): those its
    /// last block carries, else those a layout-3 store kept apart.
    pub fn counters(&self) -> Result<LogCounters, StoreError> {
        let last = self
            .tree
            .range(keys::entry_key(0)..=keys::entry_key(keys::MAX_SEQ))
            .next_back()
            .transpose()?;
        if let Some((_, block)) = &last
            && let Some(bytes) = block::counters(block)?
        {
            return decode(bytes, "log counters");
        }
        match self.tree.get(COUNTERS_KEY)? {
            Some(bytes) => decode(&bytes, "log counters"),
            None => Ok(LogCounters::default()),
        }
    }

    /// The seqs a batch id was stored under, if it is still in the window.
    pub fn find_batch(&self, batch_id: &str) -> Result<Option<StoredBatch>, StoreError> {
        match self.tree.get(keys::batch_key(batch_id.as_bytes()))? {
            Some(bytes) => decode(&bytes, "batch record").map(Some),
            None => Ok(None),
        }
    }

    /// Stores `entries` under the seqs after `counters.last_seq`,
    /// atomically with the new counters and, when given, the batch id;
    /// entries without a timestamp get `now`. Returns the new counters. The
    /// caller must hold the session's append lock: the counters it passes
    /// must be the latest.
    pub fn append(
        &self,
        counters: &LogCounters,
        entries: Vec<NewEntry>,
        batch_id: Option<&str>,
        now: SystemTime,
    ) -> Result<LogCounters, StoreError> {
        let append = self.prepare_append(counters, entries, batch_id, now, false)?;
        self.apply(append)
    }

    /// Builds an append of `entries` without applying it (see `append`),
    /// keeping each stored entry's bytes (the bytes a read returns for it)
    /// when `keep` says so, for followers served from memory. The caller
    /// must hold the session's append lock until the append is applied.
    pub(crate) fn prepare_append(
        &self,
        counters: &LogCounters,
        entries: Vec<NewEntry>,
        batch_id: Option<&str>,
        now: SystemTime,
        keep: bool,
    ) -> Result<PreparedAppend, StoreError> {
        let mut kept = keep.then(|| Vec::with_capacity(entries.len()));
        let (writes, next) = self.prepare(counters, entries, batch_id, now, kept.as_mut())?;
        Ok(PreparedAppend {
            log: self.clone(),
            writes,
            next,
            kept,
        })
    }

    /// Applies one prepared append of this log.
    fn apply(&self, append: PreparedAppend) -> Result<LogCounters, StoreError> {
        self.health.check()?;
        let applied = append.writes.apply(&self.tree).map_err(StoreError::from);
        self.health.after_write(applied)?;
        Ok(append.next)
    }

    /// Builds the writes of an append without applying them, for callers
    /// that apply them with other appends or inside a transaction.
    pub(super) fn prepare(
        &self,
        counters: &LogCounters,
        entries: Vec<NewEntry>,
        batch_id: Option<&str>,
        now: SystemTime,
        mut kept: Option<&mut Vec<IVec>>,
    ) -> Result<(Writes, LogCounters), StoreError> {
        let mut next = *counters;
        let first_seq = counters.last_seq + 1;
        let mut blocks = Vec::new();
        let mut block = Vec::new();
        let mut block_first = 0;
        for (seq, entry) in (first_seq..).zip(entries) {
            let bytes = entry.encode(seq, now);
            if !block.is_empty()
                && block.len() + block::pushed_len(bytes.len()) > block::TARGET_BLOCK_BYTES
            {
                blocks.push((block_first, std::mem::take(&mut block)));
            }
            if block.is_empty() {
                block_first = seq;
            }
            block::push(&mut block, &bytes);
            next.size_bytes += u64::try_from(bytes.len()).unwrap_or(u64::MAX);
            if let Some(kept) = kept.as_deref_mut() {
                kept.push(IVec::from(bytes));
            }
            next.entry_count += 1;
            next.last_seq = seq;
        }
        if block.is_empty() {
            // No entries: nothing changes.
            return Ok((Writes::Batch(sled::Batch::default()), next));
        }
        let mut records = None;
        if let Some(batch_id) = batch_id {
            let mut batch = sled::Batch::default();
            if next.batch_ids >= DEDUPE_WINDOW {
                self.evict_oldest_batch(&mut batch)?;
                next.batch_ids -= 1;
            }
            let record = StoredBatch {
                first_seq,
                last_seq: next.last_seq,
            };
            batch.insert(keys::batch_key(batch_id.as_bytes()), record.encode_to_vec());
            batch.insert(&keys::batch_order_key(first_seq), batch_id.as_bytes());
            next.batch_ids += 1;
            records = Some(batch);
        }
        // The counters go last, once the dedupe window is settled.
        let mut last = block::with_counters(&next.encode_to_vec(), block.len());
        last.extend_from_slice(&block);
        let key = keys::entry_key(block_first);
        let writes = match (blocks.is_empty(), records) {
            (true, None) => Writes::One { key, block: last },
            (_, records) => {
                let mut batch = records.unwrap_or_default();
                for (first, block) in blocks {
                    batch.insert(&keys::entry_key(first), block);
                }
                batch.insert(&key, last);
                Writes::Batch(batch)
            }
        };
        Ok((writes, next))
    }

    fn evict_oldest_batch(&self, batch: &mut sled::Batch) -> Result<(), StoreError> {
        let range = keys::batch_order_range();
        if let Some(oldest) = self.tree.range(range.start..range.end).next() {
            let (order_key, batch_id) = oldest?;
            batch.remove(order_key);
            batch.remove(keys::batch_key(&batch_id));
        }
        Ok(())
    }

    /// Entries with `after_seq < seq <= through_seq`, in seq order (or
    /// reverse order, from the back). See `Scan` for why this stays right
    /// while the log is being sealed.
    pub fn scan(&self, after_seq: u64, through_seq: u64) -> Scan {
        Scan {
            tree: self.tree.clone(),
            lo: after_seq.saturating_add(1),
            hi: through_seq.min(keys::MAX_SEQ),
            front: VecDeque::new(),
            back: Vec::new(),
            failed: false,
        }
    }

    /// The seq of the oldest stored entry, if any.
    pub fn first_seq(&self) -> Result<Option<u64>, StoreError> {
        Ok(self
            .scan(0, keys::MAX_SEQ)
            .next()
            .transpose()?
            .map(|(seq, _)| seq))
    }
}

/// A scan of a log's entries, block by block. sled's iteration is not a
/// snapshot, and sealing replaces several blocks with one under the first
/// one's key, so a scan never iterates over keys: each block it needs is
/// looked up afresh as the block holding the next seq it wants (the last
/// key at or below it, from the front; the same for the back), and entries
/// outside `lo..=hi` are dropped. Each lookup is one step of a sled
/// iterator, which sled's concurrency control orders wholly before or
/// after any batch (a batch applies its writes in no particular order, so
/// a read in between could otherwise see a key removed before its
/// replacement landed): it meets the old blocks or the sealed one, and in
/// either the last key at or below a seq is the block holding it. So a
/// scan yields each seq once and in order, whichever it meets from one
/// block to the next. A block is decoded (and decompressed) once per scan.
#[derive(Debug)]
pub struct Scan {
    tree: sled::Tree,
    /// The next seq wanted from the front.
    lo: u64,
    /// The next seq wanted from the back.
    hi: u64,
    front: VecDeque<RawEntry>,
    /// In seq order; taken from its end.
    back: Vec<RawEntry>,
    failed: bool,
}

impl Scan {
    fn done(&self) -> bool {
        self.failed || self.lo > self.hi
    }

    /// The block holding `seq`, or else the first block after it within
    /// `hi`: its entries from `seq` on.
    fn block_from(&self, seq: u64) -> Result<Option<Vec<RawEntry>>, StoreError> {
        if let Some(item) = self.tree.range(..=keys::entry_key(seq)).next_back() {
            let (key, value) = item?;
            let entries = block_entries(&key, &value)?;
            if entries.last().is_some_and(|(last, _)| *last >= seq) {
                return Ok(Some(trim_front(entries, seq)));
            }
        }
        // Below the first block, or past a block that ends before `seq`.
        let Some(next) = seq.checked_add(1).filter(|next| *next <= self.hi) else {
            return Ok(None);
        };
        match self
            .tree
            .range(keys::entry_key(next)..=keys::entry_key(self.hi))
            .next()
        {
            Some(item) => {
                let (key, value) = item?;
                Ok(Some(block_entries(&key, &value)?))
            }
            None => Ok(None),
        }
    }

    /// The block holding `seq` (the last one at or below it): its entries
    /// up to `seq`.
    fn block_through(&self, seq: u64) -> Result<Option<Vec<RawEntry>>, StoreError> {
        match self.tree.range(..=keys::entry_key(seq)).next_back() {
            Some(item) => {
                let (key, value) = item?;
                let mut entries = block_entries(&key, &value)?;
                entries.retain(|(stored, _)| *stored <= seq);
                Ok(Some(entries))
            }
            None => Ok(None),
        }
    }

    fn fail(&mut self, err: StoreError) -> Option<Result<RawEntry, StoreError>> {
        self.failed = true;
        Some(Err(err))
    }
}

fn trim_front(mut entries: Vec<RawEntry>, seq: u64) -> Vec<RawEntry> {
    let skip = entries.partition_point(|(stored, _)| *stored < seq);
    entries.drain(..skip);
    entries
}

impl Iterator for Scan {
    type Item = Result<RawEntry, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.done() {
                return None;
            }
            if let Some((seq, bytes)) = self.front.pop_front() {
                if seq < self.lo {
                    continue;
                }
                if seq > self.hi {
                    self.lo = seq;
                    return None;
                }
                self.lo = seq + 1;
                return Some(Ok((seq, bytes)));
            }
            match self.block_from(self.lo) {
                Ok(Some(entries)) if !entries.is_empty() => self.front = entries.into(),
                Ok(_) => {
                    self.lo = self.hi.saturating_add(1).max(self.lo);
                    return None;
                }
                Err(err) => return self.fail(err),
            }
        }
    }
}

impl DoubleEndedIterator for Scan {
    fn next_back(&mut self) -> Option<Self::Item> {
        loop {
            if self.done() {
                return None;
            }
            if let Some((seq, bytes)) = self.back.pop() {
                if seq > self.hi {
                    continue;
                }
                if seq < self.lo {
                    self.back.clear();
                    self.hi = 0;
                    self.lo = 1;
                    return None;
                }
                match seq.checked_sub(1) {
                    Some(below) => self.hi = below,
                    None => self.lo = 1,
                }
                return Some(Ok((seq, bytes)));
            }
            match self.block_through(self.hi) {
                Ok(Some(entries)) if !entries.is_empty() => self.back = entries,
                Ok(_) => {
                    self.hi = 0;
                    self.lo = 1;
                    return None;
                }
                Err(err) => return self.fail(err),
            }
        }
    }
}

/// A block's entries with their seqs.
pub(super) fn block_entries(key: &[u8], value: &IVec) -> Result<Vec<RawEntry>, StoreError> {
    let first = keys::entry_seq(key).ok_or_else(|| StoreError::Corrupt {
        detail: "a block key is not a seq".to_owned(),
    })?;
    Ok((first..).zip(block::entries(value)?).collect())
}

/// Decodes a stored entry.
pub(crate) fn decode_entry(bytes: &[u8]) -> Result<StoredEntry, StoreError> {
    decode(bytes, "log entry")
}

pub(super) fn decode<M: Message + Default>(bytes: &[u8], what: &str) -> Result<M, StoreError> {
    M::decode(bytes).map_err(|err| StoreError::Corrupt {
        detail: format!("a stored {what} does not decode: {err}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log() -> LogTree {
        let db = sled::Config::new()
            .temporary(true)
            .open()
            .expect("a temporary sled");
        LogTree::new(
            db.open_tree("log/test").expect("a tree"),
            StoreHealth::default(),
        )
    }

    /// Appends `sizes.len()` entries whose messages have those lengths.
    fn append(log: &LogTree, counters: &LogCounters, sizes: &[usize]) -> LogCounters {
        let entries = sizes
            .iter()
            .map(|size| {
                NewEntry::Decoded(StoredEntry {
                    message: "m".repeat(*size),
                    ..StoredEntry::default()
                })
            })
            .collect();
        log.append(counters, entries, None, SystemTime::now())
            .expect("append")
    }

    fn seqs(log: &LogTree, after: u64, through: u64) -> Vec<u64> {
        log.scan(after, through)
            .map(|item| {
                let (seq, bytes) = item.expect("scan");
                assert_eq!(decode_entry(&bytes).expect("decodes").seq, seq);
                seq
            })
            .collect()
    }

    fn block_keys(log: &LogTree) -> usize {
        log.tree()
            .range(keys::entry_key(0)..=keys::entry_key(MAX_SEQ))
            .count()
    }

    use super::keys::MAX_SEQ;

    #[test]
    fn a_batch_is_one_block_and_reads_from_any_cursor() {
        let log = log();
        let counters = append(&log, &LogCounters::default(), &[10; 100]);
        let counters = append(&log, &counters, &[10; 50]);
        assert_eq!(block_keys(&log), 2);
        assert_eq!(counters.last_seq, 150);
        for (after, through) in [(0, 150), (37, 150), (99, 101), (100, 100), (120, 130)] {
            let expected: Vec<u64> = (after + 1..=through).collect();
            assert_eq!(seqs(&log, after, through), expected, "({after}, {through}]");
        }
        let tail: Vec<u64> = log
            .scan(40, 150)
            .rev()
            .take(60)
            .map(|item| item.expect("scan").0)
            .collect();
        assert_eq!(tail, (91..=150).rev().collect::<Vec<_>>());
        assert_eq!(log.first_seq().expect("first"), Some(1));
    }

    #[test]
    fn a_large_batch_splits_into_blocks_of_bounded_size() {
        let log = log();
        let counters = append(&log, &LogCounters::default(), &[1000; 300]);
        let blocks = block_keys(&log);
        let min_blocks = 300 * 1000 / block::TARGET_BLOCK_BYTES;
        assert!(
            (min_blocks..=min_blocks + 2).contains(&blocks),
            "300 KB in {blocks} blocks"
        );
        for item in log
            .tree()
            .range(keys::entry_key(0)..=keys::entry_key(MAX_SEQ))
        {
            let (_, value) = item.expect("block");
            assert!(value.len() <= block::TARGET_BLOCK_BYTES + block::COUNTERS_MAX_BYTES);
        }
        // An entry larger than a block gets one of its own.
        let counters = append(&log, &counters, &[10, 100_000, 10]);
        assert_eq!(block_keys(&log), blocks + 3);
        assert_eq!(
            seqs(&log, 0, counters.last_seq),
            (1..=303).collect::<Vec<_>>()
        );
        assert_eq!(seqs(&log, 301, 302), vec![302]);
    }

    /// Every key of the tree, entries and meta alike.
    fn all_keys(log: &LogTree) -> usize {
        log.tree().iter().count()
    }

    #[test]
    fn a_small_append_is_one_key_that_carries_the_counters() {
        let log = log();
        let mut counters = LogCounters::default();
        for n in 1..=5u64 {
            counters = append(&log, &counters, &[40]);
            assert_eq!(all_keys(&log), usize::try_from(n).expect("small"));
            assert_eq!(log.counters().expect("counters"), counters);
        }
        assert_eq!((counters.last_seq, counters.entry_count), (5, 5));
        assert_eq!(seqs(&log, 0, 5), vec![1, 2, 3, 4, 5]);
        // A batch id adds its records in one batch with the block.
        let entries = vec![NewEntry::Decoded(StoredEntry::default())];
        let with_id = log
            .append(&counters, entries, Some("id"), SystemTime::now())
            .expect("append");
        assert_eq!(with_id.batch_ids, 1);
        assert_eq!(log.counters().expect("counters"), with_id);
        assert_eq!(all_keys(&log), 6 + 2);
    }

    #[test]
    fn a_layout_three_log_keeps_its_counters_until_the_next_append() {
        let log = log();
        let mut block = Vec::new();
        for seq in 1..=2u64 {
            let entry = StoredEntry {
                seq,
                ..StoredEntry::default()
            };
            block::push(&mut block, &entry.encode_to_vec());
        }
        log.tree()
            .insert(keys::entry_key(1), block)
            .expect("insert");
        let old = LogCounters {
            last_seq: 2,
            entry_count: 2,
            size_bytes: 4,
            batch_ids: 0,
        };
        log.tree()
            .insert(COUNTERS_KEY, old.encode_to_vec())
            .expect("insert");
        assert_eq!(log.counters().expect("counters"), old);
        let next = append(&log, &old, &[3]);
        assert_eq!(next.last_seq, 3);
        assert_eq!(log.counters().expect("counters"), next);
        assert_eq!(seqs(&log, 0, 3), vec![1, 2, 3]);
    }

    #[test]
    fn layout_one_entries_read_alongside_blocks() {
        let log = log();
        for seq in 1..=3u64 {
            let entry = StoredEntry {
                seq,
                message: format!("old {seq}"),
                ..StoredEntry::default()
            };
            log.tree()
                .insert(keys::entry_key(seq), entry.encode_to_vec())
                .expect("insert");
        }
        let counters = LogCounters {
            last_seq: 3,
            entry_count: 3,
            ..LogCounters::default()
        };
        let counters = append(&log, &counters, &[5; 4]);
        assert_eq!(
            seqs(&log, 0, counters.last_seq),
            (1..=7).collect::<Vec<_>>()
        );
        assert_eq!(seqs(&log, 2, 5), vec![3, 4, 5]);
    }
}
