//! Reads: a page of entries after a cursor, or the last N. Reads go to the
//! store (no log is cached in memory) and stop at the session's committed
//! `last_seq`, so a reader never sees part of a batch being applied.

use crate::store::schema::{State, StoredEntry};
use crate::store::{EntryFilter, ScanLimits};

use super::{SessionError, SessionManager, blocking};

/// Entries per page when the request names no limit.
pub(crate) const DEFAULT_READ_LIMIT: usize = 1_000;
/// The most entries one page returns; larger limits are clamped.
pub(crate) const MAX_READ_LIMIT: usize = 10_000;
/// The most entries one read examines, so a filter that matches little
/// cannot make one call scan a whole large log; the cursor says where to
/// go on.
pub(crate) const MAX_SCANNED_PER_READ: usize = 100_000;

/// One `Read`.
#[derive(Debug, Clone, Default)]
pub struct ReadQuery {
    pub session_id: String,
    /// Exclusive: entries with `seq > after_seq`.
    pub after_seq: u64,
    /// 0 means `DEFAULT_READ_LIMIT`.
    pub limit: u32,
    /// When > 0, the last `tail` matching entries instead of the first.
    pub tail: u32,
    pub filter: EntryFilter,
    /// The page stops before its entries, encoded, pass this many bytes
    /// (at least one entry); 0 means `DEFAULT_PAGE_BYTES`.
    pub max_bytes: usize,
}

/// A page's byte budget when the query names none (`--max-response-size`'s
/// default).
pub(crate) const DEFAULT_PAGE_BYTES: usize = 2 << 20;

/// A page of entries.
#[derive(Debug, Clone)]
pub struct ReadPage {
    pub entries: Vec<StoredEntry>,
    /// The next `after_seq`: past every entry examined, kept or not, and
    /// just after the last entry returned when the byte budget cut the page.
    pub next_cursor: u64,
    pub last_seq: u64,
    pub state: State,
}

impl SessionManager {
    /// A page of entries with `seq > after_seq` in seq order, or from the
    /// first of the last `tail` of them; within the entry count and the
    /// byte budget either way, so a tail cut by the budget goes on from
    /// `next_cursor`.
    pub async fn read(&self, query: ReadQuery) -> Result<ReadPage, SessionError> {
        let handle = self.handle(&query.session_id)?;
        let log = handle.log(self.store()).await?;
        let view = handle.view()?;
        let through_seq = view.counters.last_seq;
        let page = blocking(move || {
            let mut limits = limits(query.limit, query.max_bytes);
            let mut after_seq = query.after_seq;
            if query.tail > 0 {
                after_seq = log.tail_start(
                    query.after_seq,
                    through_seq,
                    &query.filter,
                    self::limits(query.tail, 0).max_entries,
                    MAX_SCANNED_PER_READ,
                )?;
                // At most the tail matches after its start, and the start
                // is within `MAX_SCANNED_PER_READ` of `through_seq` (the
                // backward walk scanned no further), so only the byte
                // budget can stop the page before `through_seq`.
                limits.max_entries = usize::MAX;
            }
            Ok(log.page_forward(after_seq, through_seq, &query.filter, limits)?)
        })
        .await?;
        Ok(ReadPage {
            entries: page.entries,
            next_cursor: page.cursor,
            last_seq: through_seq,
            state: view.record.state(),
        })
    }
}

/// `requested` entries (0 means the default), clamped to the maximum,
/// within `max_bytes` (0 means the default).
pub(crate) fn limits(requested: u32, max_bytes: usize) -> ScanLimits {
    let max_entries = match usize::try_from(requested) {
        Ok(0) => DEFAULT_READ_LIMIT,
        Ok(limit) => limit.min(MAX_READ_LIMIT),
        Err(_) => MAX_READ_LIMIT,
    };
    ScanLimits {
        max_entries,
        max_scanned: MAX_SCANNED_PER_READ,
        max_bytes: match max_bytes {
            0 => DEFAULT_PAGE_BYTES,
            max_bytes => max_bytes,
        },
    }
}
