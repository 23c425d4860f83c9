//! One session's log: a sled tree holding its entries under their seqs, its
//! `LogCounters`, and the batch-id dedupe window. A batch, its counters and
//! its dedupe record are written in one `sled::Batch`, so a crash keeps all of
//! them or none. Callers serialize appends per session (see `sessions`).

use prost::Message;
use sled::IVec;

use super::StoreError;
use super::keys::{self, COUNTERS_KEY};
use super::schema::{LogCounters, StoredBatch, StoredEntry};

/// How many batch ids per session a retry is recognised among.
pub const DEDUPE_WINDOW: u64 = 1_000;

/// A session's log tree.
#[derive(Debug, Clone)]
pub struct LogTree {
    tree: sled::Tree,
}

/// An entry as stored: its seq and its encoded `StoredEntry`.
pub type RawEntry = (u64, IVec);

impl LogTree {
    pub(super) fn new(tree: sled::Tree) -> Self {
        Self { tree }
    }

    pub(super) fn tree(&self) -> &sled::Tree {
        &self.tree
    }

    /// The counters last written with a batch (zero for a new log).
    pub fn counters(&self) -> Result<LogCounters, StoreError> {
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

    /// Stores `entries` (seqs already assigned, contiguous after
    /// `counters.last_seq`) atomically with the new counters and, when given,
    /// the batch id. Returns the new counters. The caller must hold the
    /// session's append lock: the counters it passes must be the latest.
    pub fn append(
        &self,
        counters: &LogCounters,
        entries: &[StoredEntry],
        batch_id: Option<&str>,
    ) -> Result<LogCounters, StoreError> {
        let (batch, next) = self.prepare(counters, entries, batch_id)?;
        self.tree.apply_batch(batch)?;
        Ok(next)
    }

    /// Builds the sled batch for an append without applying it, for callers
    /// that apply it inside a transaction with other trees.
    pub(super) fn prepare(
        &self,
        counters: &LogCounters,
        entries: &[StoredEntry],
        batch_id: Option<&str>,
    ) -> Result<(sled::Batch, LogCounters), StoreError> {
        let mut batch = sled::Batch::default();
        let mut next = *counters;
        for entry in entries {
            debug_assert_eq!(entry.seq, next.last_seq + 1, "seqs must be contiguous");
            let bytes = entry.encode_to_vec();
            next.size_bytes += u64::try_from(bytes.len()).unwrap_or(u64::MAX);
            next.entry_count += 1;
            next.last_seq = entry.seq;
            batch.insert(&keys::entry_key(entry.seq), bytes);
        }
        if let (Some(batch_id), Some(first)) = (batch_id, entries.first()) {
            if next.batch_ids >= DEDUPE_WINDOW {
                self.evict_oldest_batch(&mut batch)?;
                next.batch_ids -= 1;
            }
            let record = StoredBatch {
                first_seq: first.seq,
                last_seq: next.last_seq,
            };
            batch.insert(keys::batch_key(batch_id.as_bytes()), record.encode_to_vec());
            batch.insert(&keys::batch_order_key(first.seq), batch_id.as_bytes());
            next.batch_ids += 1;
        }
        batch.insert(&COUNTERS_KEY, next.encode_to_vec());
        Ok((batch, next))
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

    /// Entries with `after_seq < seq <= through_seq`, in seq order.
    pub fn scan(
        &self,
        after_seq: u64,
        through_seq: u64,
    ) -> impl DoubleEndedIterator<Item = Result<RawEntry, StoreError>> + use<> {
        let first = after_seq.saturating_add(1).min(keys::MAX_SEQ);
        let last = through_seq.min(keys::MAX_SEQ);
        let range = if first <= last {
            self.tree
                .range(keys::entry_key(first)..=keys::entry_key(last))
        } else {
            // An empty range: sled rejects start > end.
            self.tree
                .range(keys::entry_key(first)..keys::entry_key(first))
        };
        range.map(|item| {
            let (key, value) = item?;
            let seq = keys::entry_seq(&key).ok_or_else(|| StoreError::Corrupt {
                detail: "an entry key is not a seq".to_owned(),
            })?;
            Ok((seq, value))
        })
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

/// Decodes a stored entry.
pub fn decode_entry(bytes: &[u8]) -> Result<StoredEntry, StoreError> {
    decode(bytes, "log entry")
}

pub(super) fn decode<M: Message + Default>(bytes: &[u8], what: &str) -> Result<M, StoreError> {
    M::decode(bytes).map_err(|err| StoreError::Corrupt {
        detail: format!("a stored {what} does not decode: {err}"),
    })
}
