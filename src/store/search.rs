//! Searching one log: the entries after a cursor that pass a filter and a
//! time range, in seq order, a chunk at a time (at most so many hits and
//! bytes of hits), with what the chunk examined. Built for scanning a lot
//! and keeping little: each block is read (and decompressed) once, its
//! bytes are checked for the text as a whole before any entry is looked
//! at (see `rules_out_text`), and entries are matched on
//! their encoded fields, never decoded; only hits are copied. Blocks are looked up afresh one
//! by one, as `Scan` does, so sealing under a search changes nothing it
//! sees. A chunk stops early, incomplete, once `cancel` is set.

use std::sync::atomic::{AtomicBool, Ordering};

use sled::IVec;

use super::StoreError;
use super::block;
use super::keys;
use super::log::LogTree;
use super::query::{EntryFilter, entry_wire_len};
use super::text::has_escape;
use super::view::{EntryView, message_of};

/// Entries whose timestamp is in `[since, until)`; `None` is unbounded.
/// An entry without a timestamp is outside any bound.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeRange {
    /// Nanoseconds since the Unix epoch, inclusive.
    pub since_nanos: Option<i128>,
    /// Nanoseconds since the Unix epoch, exclusive.
    pub until_nanos: Option<i128>,
}

impl TimeRange {
    fn is_unbounded(&self) -> bool {
        self.since_nanos.is_none() && self.until_nanos.is_none()
    }

    fn contains(&self, timestamp_nanos: Option<i128>) -> bool {
        if self.is_unbounded() {
            return true;
        }
        timestamp_nanos.is_some_and(|at| {
            self.since_nanos.is_none_or(|since| at >= since)
                && self.until_nanos.is_none_or(|until| at < until)
        })
    }
}

/// What one chunk of a search looks for, and where it stops.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SearchScan<'a> {
    pub(crate) filter: &'a EntryFilter,
    pub(crate) time: TimeRange,
    /// Stop after this many hits (at least 1).
    pub(crate) max_hits: usize,
    /// Stop before a hit would take the chunk's hits past this many bytes
    /// (as `entry_wire_len` weighs them); the first hit always goes in.
    pub(crate) max_bytes: usize,
    pub(crate) cancel: &'a AtomicBool,
}

/// The hits of one chunk and what it examined.
#[derive(Debug, Default)]
pub(crate) struct SearchChunk {
    /// Matching entries as stored, in seq order.
    pub(crate) hits: Vec<IVec>,
    /// The last seq examined: the next chunk's `after_seq`.
    pub(crate) cursor: u64,
    pub(crate) entries_scanned: u64,
    /// What the examined entries weigh, encoded.
    pub(crate) bytes_scanned: u64,
    /// Whether the chunk reached `through_seq`.
    pub(crate) done: bool,
}

impl LogTree {
    /// The next chunk of entries with `after_seq < seq <= through_seq`
    /// that pass `scan`'s filter and time range.
    pub(crate) fn search(
        &self,
        after_seq: u64,
        through_seq: u64,
        scan: &SearchScan<'_>,
    ) -> Result<SearchChunk, StoreError> {
        let through_seq = through_seq.min(keys::MAX_SEQ);
        let mut chunk = SearchChunk {
            cursor: after_seq,
            ..SearchChunk::default()
        };
        let mut hit_bytes = 0usize;
        // Sealed blocks are unpacked into this, one after another.
        let mut buffer = Vec::new();
        while chunk.cursor < through_seq {
            if scan.cancel.load(Ordering::Relaxed) {
                return Ok(chunk);
            }
            let want = chunk.cursor + 1;
            let Some((first, value)) = self.block_at(want)? else {
                // Nothing at or below `want`: the log starts later.
                match self.first_block_after(want, through_seq)? {
                    Some(next) => {
                        chunk.cursor = next - 1;
                        continue;
                    }
                    None => break,
                }
            };
            let plain = block::plain_in(&value, &mut buffer)?;
            let entries = block::entry_slices(plain)?;
            let count = u64::try_from(entries.len()).unwrap_or(u64::MAX);
            if first.saturating_add(count) <= want {
                // A gap (trimmed entries): on from the next block.
                match self.first_block_after(want, through_seq)? {
                    Some(next) => {
                        chunk.cursor = next - 1;
                        continue;
                    }
                    None => break,
                }
            }
            let skip_text = rules_out_text(scan.filter, plain, &entries)?;
            for (seq, bytes) in (first..).zip(entries) {
                if seq < want {
                    continue;
                }
                if seq > through_seq {
                    break;
                }
                if !skip_text && scan.keeps(bytes)? {
                    let weight = entry_wire_len(bytes.len());
                    if !chunk.hits.is_empty() && hit_bytes.saturating_add(weight) > scan.max_bytes {
                        // Not examined as far as the cursor goes: the next
                        // chunk starts with it.
                        return Ok(chunk);
                    }
                    hit_bytes = hit_bytes.saturating_add(weight);
                    chunk.hits.push(IVec::from(bytes));
                }
                chunk.entries_scanned += 1;
                chunk.bytes_scanned += u64::try_from(bytes.len()).unwrap_or(u64::MAX);
                chunk.cursor = seq;
                if chunk.hits.len() >= scan.max_hits.max(1) {
                    chunk.done = seq >= through_seq;
                    return Ok(chunk);
                }
            }
        }
        chunk.cursor = chunk.cursor.max(through_seq);
        chunk.done = true;
        Ok(chunk)
    }

    /// The last block whose first seq is at most `seq` (the block holding
    /// `seq`, when one does): its first seq and its value.
    fn block_at(&self, seq: u64) -> Result<Option<(u64, IVec)>, StoreError> {
        match self.tree().range(..=keys::entry_key(seq)).next_back() {
            Some(item) => {
                let (key, value) = item?;
                Ok(Some((block_seq(&key)?, value)))
            }
            None => Ok(None),
        }
    }

    /// The first seq of the first block after `seq`, within `through_seq`.
    fn first_block_after(&self, seq: u64, through_seq: u64) -> Result<Option<u64>, StoreError> {
        let Some(next) = seq.checked_add(1).filter(|next| *next <= through_seq) else {
            return Ok(None);
        };
        match self
            .tree()
            .range(keys::entry_key(next)..=keys::entry_key(through_seq))
            .next()
        {
            Some(item) => Ok(Some(block_seq(&item?.0)?)),
            None => Ok(None),
        }
    }
}

/// Whether no entry of a block can pass the text filter: the block's
/// bytes do not match as a whole, the filter is blind to what surrounds a
/// match (`TextMatcher::is_local`), and no message in the block has an
/// escape byte (those are matched stripped, which can join a match). The
/// messages are looked at only when the block holds an escape byte at all
/// (a length or a timestamp byte often is one).
fn rules_out_text(
    filter: &EntryFilter,
    plain: &[u8],
    entries: &[&[u8]],
) -> Result<bool, StoreError> {
    let Some(text) = filter.text.as_ref() else {
        return Ok(false);
    };
    if !text.is_local() || text.matches_unstripped(plain) {
        return Ok(false);
    }
    if !has_escape(plain) {
        return Ok(true);
    }
    for bytes in entries {
        if has_escape(message_of(bytes)?) {
            return Ok(false);
        }
    }
    Ok(true)
}

impl SearchScan<'_> {
    fn keeps(&self, bytes: &[u8]) -> Result<bool, StoreError> {
        if self.filter.is_empty() && self.time.is_unbounded() {
            return Ok(true);
        }
        let view = EntryView::parse(bytes)?;
        Ok(self.time.contains(view.timestamp_nanos) && self.filter.keeps(&view))
    }
}

fn block_seq(key: &[u8]) -> Result<u64, StoreError> {
    keys::entry_seq(key).ok_or_else(|| StoreError::Corrupt {
        detail: "a block key is not a seq".to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::store::schema::{LogCounters, StoredEntry};
    use crate::store::{NewEntry, StoreHealth, TextMatcher};

    fn log_with(messages: &[&str]) -> LogTree {
        let db = sled::Config::new()
            .temporary(true)
            .open()
            .expect("a temporary sled");
        let log = LogTree::new(db.open_tree("log/s").expect("tree"), StoreHealth::default());
        let mut counters = LogCounters::default();
        // Two appends, so the log has more than one block.
        for half in messages.chunks(messages.len().div_ceil(2).max(1)) {
            let entries = half
                .iter()
                .enumerate()
                .map(|(i, message)| {
                    NewEntry::Decoded(StoredEntry {
                        message: (*message).to_owned(),
                        timestamp: Some(
                            (SystemTime::UNIX_EPOCH
                                + Duration::from_secs(100 + counters.last_seq + i as u64))
                            .into(),
                        ),
                        ..StoredEntry::default()
                    })
                })
                .collect();
            counters = log
                .append(&counters, entries, None, SystemTime::now())
                .expect("append");
        }
        log
    }

    fn text(contains: &str) -> EntryFilter {
        EntryFilter {
            text: TextMatcher::new(contains, false, "")
                .expect("valid")
                .map(Arc::new),
            ..EntryFilter::default()
        }
    }

    fn seqs(chunk: &SearchChunk) -> Vec<u64> {
        chunk
            .hits
            .iter()
            .map(|bytes| crate::store::decode_entry(bytes).expect("decodes").seq)
            .collect()
    }

    #[test]
    fn chunks_stop_at_hits_and_resume_from_the_cursor() {
        let messages: Vec<String> = (1..=40).map(|n| format!("line {n}")).collect();
        let refs: Vec<&str> = messages.iter().map(String::as_str).collect();
        let log = log_with(&refs);
        let filter = text("line 1");
        let cancel = AtomicBool::new(false);
        let scan = SearchScan {
            filter: &filter,
            time: TimeRange::default(),
            max_hits: 3,
            max_bytes: usize::MAX,
            cancel: &cancel,
        };
        let first = log.search(0, 40, &scan).expect("search");
        assert_eq!(seqs(&first), vec![1, 10, 11]);
        assert_eq!(
            (first.cursor, first.entries_scanned, first.done),
            (11, 11, false)
        );
        let rest = log.search(first.cursor, 40, &scan).expect("search");
        assert_eq!(seqs(&rest), vec![12, 13, 14]);
        let all = SearchScan {
            max_hits: 100,
            ..scan
        };
        let tail = log.search(14, 40, &all).expect("search");
        assert_eq!(seqs(&tail), vec![15, 16, 17, 18, 19]);
        assert_eq!(
            (tail.cursor, tail.entries_scanned, tail.done),
            (40, 26, true)
        );
        // The time range: timestamps are 100 + seq - 1 seconds.
        let ranged = SearchScan {
            time: TimeRange {
                since_nanos: Some(110 * 1_000_000_000),
                until_nanos: Some(113 * 1_000_000_000),
            },
            ..all
        };
        assert_eq!(
            seqs(&log.search(0, 40, &ranged).expect("search")),
            vec![11, 12, 13]
        );
        cancel.store(true, Ordering::Relaxed);
        let cancelled = log.search(0, 40, &all).expect("search");
        assert!(!cancelled.done);
        assert!(cancelled.hits.is_empty());
    }

    #[test]
    fn hits_stop_at_the_byte_budget_and_colour_is_ignored() {
        let log = log_with(&["a \x1b[31mboom\x1b[0m", "quiet", "boom", "boom again"]);
        let filter = text("a boom");
        let cancel = AtomicBool::new(false);
        let scan = SearchScan {
            filter: &filter,
            time: TimeRange::default(),
            max_hits: 10,
            max_bytes: usize::MAX,
            cancel: &cancel,
        };
        assert_eq!(seqs(&log.search(0, 4, &scan).expect("search")), vec![1]);
        let boom = text("boom");
        let tight = SearchScan {
            filter: &boom,
            max_bytes: 1,
            ..scan
        };
        let chunk = log.search(0, 4, &tight).expect("search");
        assert_eq!((seqs(&chunk), chunk.cursor), (vec![1], 2));
        let chunk = log.search(2, 4, &tight).expect("search");
        assert_eq!((seqs(&chunk), chunk.cursor), (vec![3], 3));
    }
}
