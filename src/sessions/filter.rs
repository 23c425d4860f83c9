//! Which entries a reader wants: level, logger prefixes, message text.

use crate::store::schema::{Level, StoredEntry};

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
