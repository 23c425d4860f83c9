//! Listing sessions: filtered, in id order (generated ids sort by creation
//! time), paged by the last id returned. A session that exists for the
//! whole paging is seen exactly once, whatever starts meanwhile. A page
//! stops at its size or at a byte budget of stored records, whichever comes
//! first (at least one session), so one page never copies without bound.

use std::ops::Bound;

use prost::Message;

use crate::store::schema::State;

use super::{SessionManager, SessionView};

/// Sessions per page when the request names no size.
pub(crate) const DEFAULT_PAGE_SIZE: usize = 100;
/// The largest page; larger requests are clamped.
pub(crate) const MAX_PAGE_SIZE: usize = 1_000;

/// One `ListSessions`. Empty strings do not filter.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// `None` lists every state.
    pub state: Option<State>,
    pub app_name: String,
    pub job_id: String,
    pub parent_session_id: String,
    /// 0 means `DEFAULT_PAGE_SIZE`.
    pub page_size: u32,
    /// Continue after this id (from the previous page).
    pub after_id: Option<String>,
    /// The page stops before its sessions' records, encoded, pass this
    /// many bytes (at least one session); 0 means no budget.
    pub max_bytes: usize,
}

/// A page of sessions.
#[derive(Debug, Clone)]
pub struct ListPage {
    pub sessions: Vec<SessionView>,
    /// Where the next page starts; `None` on the last page.
    pub next_after_id: Option<String>,
}

impl ListQuery {
    pub(super) fn matches(&self, view: &SessionView) -> bool {
        let record = &view.record;
        self.state.is_none_or(|state| record.state() == state)
            && (self.app_name.is_empty() || record.app_name == self.app_name)
            && (self.job_id.is_empty() || record.job_id == self.job_id)
            && (self.parent_session_id.is_empty()
                || record.parent_session_id == self.parent_session_id)
    }
}

impl SessionManager {
    /// One page of the sessions that match `query`.
    pub fn list(&self, query: &ListQuery) -> ListPage {
        let page_size = match usize::try_from(query.page_size) {
            Ok(0) => DEFAULT_PAGE_SIZE,
            Ok(size) => size.min(MAX_PAGE_SIZE),
            Err(_) => MAX_PAGE_SIZE,
        };
        let start = match &query.after_id {
            Some(after) => Bound::Excluded(after.clone()),
            None => Bound::Unbounded,
        };
        let sessions = self.sessions_read();
        let mut page = Vec::with_capacity(page_size);
        let mut next_after_id = None;
        let mut bytes = 0usize;
        let max_bytes = match query.max_bytes {
            0 => usize::MAX,
            max_bytes => max_bytes,
        };
        let matching = sessions
            .range((start, Bound::Unbounded))
            .filter_map(|(_, handle)| handle.view().ok())
            .filter(|view| query.matches(view));
        for view in matching {
            bytes = bytes.saturating_add(view.record.encoded_len());
            if page.len() == page_size || (!page.is_empty() && bytes > max_bytes) {
                next_after_id = page.last().map(|last: &SessionView| last.record.id.clone());
                break;
            }
            page.push(view);
        }
        ListPage {
            sessions: page,
            next_after_id,
        }
    }
}
