//! Reading entries with a filter, for `Read` and for followers: which
//! entries a reader wants (level, logger prefixes, message text), and pages
//! that stop at a count of kept entries or of examined ones, whichever comes
//! first, so one call never scans without bound.

use sled::IVec;

use super::StoreError;
use super::log::{LogTree, decode_entry};
use super::schema::{Level, StoredEntry};

/// An entry filter; the default keeps everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntryFilter {
    /// Keep entries at this level or above; `Unspecified` keeps all.
    pub min_level: Level,
    /// Keep entries whose logger starts with one of these; empty keeps all.
    pub logger_prefixes: Vec<String>,
    /// Keep entries whose message contains this text; empty keeps all.
    pub contains: String,
}

impl EntryFilter {
    /// Whether the filter keeps every entry (and need not decode any).
    pub fn is_empty(&self) -> bool {
        self.min_level == Level::Unspecified
            && self.logger_prefixes.is_empty()
            && self.contains.is_empty()
    }

    /// Whether `entry` passes.
    pub fn matches(&self, entry: &StoredEntry) -> bool {
        (self.min_level == Level::Unspecified || entry.level >= self.min_level as i32)
            && (self.logger_prefixes.is_empty()
                || self
                    .logger_prefixes
                    .iter()
                    .any(|prefix| entry.logger.starts_with(prefix.as_str())))
            && (self.contains.is_empty() || entry.message.contains(self.contains.as_str()))
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
        let keep_all = filter.is_empty();
        let mut entries = Vec::new();
        for (scanned, item) in self.scan(after_seq, through_seq).enumerate() {
            let (seq, bytes) = item?;
            if keep_all || filter.matches(&decode_entry(&bytes)?) {
                entries.push(bytes);
            }
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

    /// The last `limits.max_entries` entries with `after_seq < seq <=
    /// through_seq` that pass `filter`, in seq order, examining at most
    /// `limits.max_scanned` from the end.
    pub fn page_tail(
        &self,
        after_seq: u64,
        through_seq: u64,
        filter: &EntryFilter,
        limits: ScanLimits,
    ) -> Result<Vec<StoredEntry>, StoreError> {
        let mut entries = Vec::new();
        for item in self
            .scan(after_seq, through_seq)
            .rev()
            .take(limits.max_scanned)
        {
            let entry = decode_entry(&item?.1)?;
            if filter.matches(&entry) {
                entries.push(entry);
                if entries.len() >= limits.max_entries {
                    break;
                }
            }
        }
        entries.reverse();
        Ok(entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(level: Level, logger: &str, message: &str) -> StoredEntry {
        StoredEntry {
            level: level as i32,
            logger: logger.to_owned(),
            message: message.to_owned(),
            ..StoredEntry::default()
        }
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
            contains: "timeout".to_owned(),
            ..EntryFilter::default()
        };
        assert!(filter.matches(&entry(Level::Info, "net.http", "read timeout")));
        assert!(filter.matches(&entry(Level::Info, "dbpool", "timeout")));
        assert!(!filter.matches(&entry(Level::Info, "ui", "timeout")));
        assert!(!filter.matches(&entry(Level::Info, "net.http", "ok")));
    }
}
