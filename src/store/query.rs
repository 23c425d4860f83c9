//! Reading entries with a filter, for `Read` and for followers: which
//! entries a reader wants (level, logger prefixes, message text), and pages
//! that stop at a count of kept entries, at a byte budget of kept entries
//! (always at least one), or at a count of examined ones, whichever comes
//! first, so one call never scans, holds or sends without bound. A page's
//! cursor is the last seq it examined, so paging on from it has no gap and
//! no duplicate wherever the page stopped.

use std::sync::Arc;

use prost::encoding::encoded_len_varint;
use sled::IVec;

use super::StoreError;
use super::log::{LogTree, decode_entry};
use super::schema::{Level, StoredEntry};
use super::text::TextMatcher;
use super::view::EntryView;

/// An entry filter; the default keeps everything. Cheap to clone: the
/// compiled text filter is shared.
#[derive(Debug, Clone, Default)]
pub struct EntryFilter {
    /// Keep entries at this level or above; `Unspecified` keeps all.
    pub min_level: Level,
    /// Keep entries whose logger starts with one of these; empty keeps all.
    pub logger_prefixes: Vec<String>,
    /// Keep entries whose message, ANSI escapes removed, matches this
    /// (`contains`, `regex`, `ignore_case`); `None` keeps all.
    pub text: Option<Arc<TextMatcher>>,
}

impl EntryFilter {
    /// Whether the filter keeps every entry (and need not decode any).
    pub fn is_empty(&self) -> bool {
        self.min_level == Level::Unspecified
            && self.logger_prefixes.is_empty()
            && self.text.is_none()
    }

    /// Whether the entry whose fields `view` reads passes: the one rule
    /// every reader of entries (pages, tails, followers, search) applies.
    pub(crate) fn keeps(&self, view: &EntryView<'_>) -> bool {
        (self.min_level == Level::Unspecified || view.level >= self.min_level as i32)
            && (self.logger_prefixes.is_empty()
                || self
                    .logger_prefixes
                    .iter()
                    .any(|prefix| view.logger.starts_with(prefix.as_bytes())))
            && self
                .text
                .as_ref()
                .is_none_or(|text| text.is_match(view.message))
    }

    /// Whether the encoded entry `bytes` passes.
    pub fn matches_encoded(&self, bytes: &[u8]) -> Result<bool, StoreError> {
        Ok(self.is_empty() || self.keeps(&EntryView::parse(bytes)?))
    }

    /// Whether `entry` passes.
    #[cfg(test)]
    pub fn matches(&self, entry: &StoredEntry) -> bool {
        use prost::Message as _;
        self.matches_encoded(&entry.encode_to_vec())
            .expect("an encoded entry reads back")
    }
}

/// Entries kept by a forward scan, and where the scan stopped.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub entries: Vec<StoredEntry>,
    /// The last seq examined (kept or not): the next `after_seq`.
    pub cursor: u64,
}

/// A `Page` of entries as stored, encoded: what followers send on, since
/// a `StoredEntry`'s bytes are a `LogEntry`'s.
#[derive(Debug, Clone, Default)]
pub struct RawPage {
    pub entries: Vec<IVec>,
    /// The last seq examined (kept or not): the next `after_seq`.
    pub cursor: u64,
}

/// Bounds of one scan.
#[derive(Debug, Clone, Copy)]
pub struct ScanLimits {
    /// Stop after keeping this many entries.
    pub max_entries: usize,
    /// Stop after examining this many entries.
    pub max_scanned: usize,
    /// Stop before a kept entry would take the page past this many bytes,
    /// counted as the entries weigh in a response message
    /// (`entry_wire_len`); the first kept entry always goes in.
    pub max_bytes: usize,
}

/// What an entry of `len` encoded bytes weighs in a message that carries
/// it as a repeated field: its bytes, its length and a one-byte key.
pub(crate) fn entry_wire_len(len: usize) -> usize {
    1 + encoded_len_varint(u64::try_from(len).unwrap_or(u64::MAX)) + len
}

/// A page of the encoded entries `items` (seq order, `after_seq < seq <=
/// through_seq`) that pass `filter`, within `limits`: the one rule for
/// where a page stops and what its cursor is, for pages read from the
/// store and for those a follower takes from memory. The cursor is
/// `max(after_seq, through_seq)` when `items` ran out.
pub(crate) fn page_of(
    items: impl Iterator<Item = Result<(u64, IVec), StoreError>>,
    after_seq: u64,
    through_seq: u64,
    filter: &EntryFilter,
    limits: ScanLimits,
) -> Result<RawPage, StoreError> {
    let keep_all = filter.is_empty();
    let mut entries = Vec::new();
    let mut bytes_kept = 0usize;
    let mut last_examined = after_seq;
    for (scanned, item) in items.enumerate() {
        let (seq, bytes) = item?;
        if keep_all || filter.matches_encoded(&bytes)? {
            let weight = entry_wire_len(bytes.len());
            if !entries.is_empty() && bytes_kept.saturating_add(weight) > limits.max_bytes {
                // This entry is not examined yet as far as the cursor
                // goes: the next page starts with it.
                return Ok(RawPage {
                    entries,
                    cursor: last_examined,
                });
            }
            bytes_kept = bytes_kept.saturating_add(weight);
            entries.push(bytes);
        }
        last_examined = seq;
        if entries.len() >= limits.max_entries || scanned + 1 >= limits.max_scanned {
            return Ok(RawPage {
                entries,
                cursor: seq,
            });
        }
    }
    Ok(RawPage {
        entries,
        cursor: after_seq.max(through_seq),
    })
}

impl LogTree {
    /// Entries with `after_seq < seq <= through_seq` that pass `filter`, in
    /// seq order, within `limits`. The cursor is `max(after_seq,
    /// through_seq)` when the scan reached `through_seq`.
    pub fn page_forward(
        &self,
        after_seq: u64,
        through_seq: u64,
        filter: &EntryFilter,
        limits: ScanLimits,
    ) -> Result<Page, StoreError> {
        let raw = self.page_forward_raw(after_seq, through_seq, filter, limits)?;
        Ok(Page {
            entries: raw
                .entries
                .iter()
                .map(|bytes| decode_entry(bytes))
                .collect::<Result<_, _>>()?,
            cursor: raw.cursor,
        })
    }

    /// `page_forward` without decoding what is kept: with an empty filter
    /// nothing is decoded at all.
    pub fn page_forward_raw(
        &self,
        after_seq: u64,
        through_seq: u64,
        filter: &EntryFilter,
        limits: ScanLimits,
    ) -> Result<RawPage, StoreError> {
        page_of(
            self.scan(after_seq, through_seq),
            after_seq,
            through_seq,
            filter,
            limits,
        )
    }

    /// The cursor just before the last `max_entries` entries with
    /// `after_seq < seq <= through_seq` that pass `filter`, examining at
    /// most `max_scanned` from the end: a forward page from it reads that
    /// tail (within its byte budget, and on from its cursor). Without a
    /// matching entry, the cursor is `max(after_seq, through_seq)`. Only
    /// seqs are kept, so a tail of large entries costs no memory here.
    pub fn tail_start(
        &self,
        after_seq: u64,
        through_seq: u64,
        filter: &EntryFilter,
        max_entries: usize,
        max_scanned: usize,
    ) -> Result<u64, StoreError> {
        let keep_all = filter.is_empty();
        let mut kept = 0usize;
        let mut first_kept = None;
        for item in self.scan(after_seq, through_seq).rev().take(max_scanned) {
            let (seq, bytes) = item?;
            if keep_all || filter.matches_encoded(&bytes)? {
                first_kept = Some(seq);
                kept += 1;
                if kept >= max_entries {
                    break;
                }
            }
        }
        Ok(match first_kept {
            // Stored seqs start at 1.
            Some(first) => first.saturating_sub(1).max(after_seq),
            None => after_seq.max(through_seq),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreHealth;

    fn entry(level: Level, logger: &str, message: &str) -> StoredEntry {
        StoredEntry {
            level: level as i32,
            logger: logger.to_owned(),
            message: message.to_owned(),
            ..StoredEntry::default()
        }
    }

    fn log_of(levels: &[Level]) -> LogTree {
        let db = sled::Config::new()
            .temporary(true)
            .open()
            .expect("a temporary sled");
        let log = LogTree::new(
            db.open_tree("log/query").expect("a tree"),
            StoreHealth::default(),
        );
        let entries = levels
            .iter()
            .map(|level| super::super::NewEntry::Decoded(entry(*level, "l", &"m".repeat(100))))
            .collect();
        log.append(
            &super::super::schema::LogCounters::default(),
            entries,
            None,
            std::time::SystemTime::now(),
        )
        .expect("append");
        log
    }

    #[test]
    fn pages_cut_by_bytes_resume_after_their_last_entry() {
        let levels: Vec<Level> = (0..10)
            .map(|i| if i % 2 == 0 { Level::Info } else { Level::Warn })
            .collect();
        let log = log_of(&levels);
        let warn = EntryFilter {
            min_level: Level::Warn,
            ..EntryFilter::default()
        };
        let one_entry = entry_wire_len(log.scan(0, 1).next().expect("one").expect("ok").1.len());
        let limits = ScanLimits {
            max_entries: 100,
            max_scanned: 100,
            max_bytes: 2 * one_entry,
        };
        let (mut cursor, mut seqs, mut pages) = (0, Vec::new(), 0);
        while cursor < 10 {
            let page = log.page_forward(cursor, 10, &warn, limits).expect("page");
            assert!(page.entries.len() <= 2);
            seqs.extend(page.entries.iter().map(|entry| entry.seq));
            cursor = page.cursor;
            pages += 1;
        }
        assert_eq!(seqs, vec![2, 4, 6, 8, 10]);
        assert_eq!(pages, 3);
        // The first entry goes in whatever the budget.
        let tiny = ScanLimits {
            max_bytes: 1,
            ..limits
        };
        let page = log
            .page_forward(0, 10, &EntryFilter::default(), tiny)
            .expect("page");
        assert_eq!((page.entries.len(), page.cursor), (1, 1));
    }

    #[test]
    fn a_tail_starts_before_its_first_matching_entry() {
        let levels = [
            Level::Warn,
            Level::Info,
            Level::Warn,
            Level::Info,
            Level::Info,
        ];
        let log = log_of(&levels);
        let warn = EntryFilter {
            min_level: Level::Warn,
            ..EntryFilter::default()
        };
        assert_eq!(log.tail_start(0, 5, &warn, 1, 100).expect("tail"), 2);
        assert_eq!(log.tail_start(0, 5, &warn, 5, 100).expect("tail"), 0);
        assert_eq!(
            log.tail_start(0, 5, &EntryFilter::default(), 2, 100)
                .expect("tail"),
            3
        );
        assert_eq!(log.tail_start(3, 5, &warn, 1, 100).expect("tail"), 5);
    }

    #[test]
    fn default_filter_keeps_everything() {
        assert!(EntryFilter::default().is_empty());
        assert!(EntryFilter::default().matches(&entry(Level::Trace, "", "")));
    }

    #[test]
    fn min_level_keeps_that_level_and_above() {
        let filter = EntryFilter {
            min_level: Level::Warn,
            ..EntryFilter::default()
        };
        assert!(!filter.matches(&entry(Level::Info, "a", "m")));
        assert!(filter.matches(&entry(Level::Warn, "a", "m")));
        assert!(filter.matches(&entry(Level::Critical, "a", "m")));
    }

    #[test]
    fn any_logger_prefix_and_contains_must_match() {
        let filter = EntryFilter {
            logger_prefixes: vec!["net.".to_owned(), "db".to_owned()],
            text: TextMatcher::new("timeout", false, "")
                .expect("valid")
                .map(Arc::new),
            ..EntryFilter::default()
        };
        assert!(filter.matches(&entry(Level::Info, "net.http", "read timeout")));
        assert!(filter.matches(&entry(Level::Info, "dbpool", "timeout")));
        assert!(!filter.matches(&entry(Level::Info, "ui", "timeout")));
        assert!(!filter.matches(&entry(Level::Info, "net.http", "ok")));
    }
}
