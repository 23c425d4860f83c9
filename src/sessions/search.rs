//! Search across sessions: the sessions a `ListQuery` would list, newest
//! first (`created_at` descending, then id descending), each log searched
//! up to the `last_seq` it had when the search began, in seq order, a chunk
//! at a time (`LogTree::search`). Hits come out in that order, a session's
//! in consecutive events, and a summary last.
//!
//! Bounds: at most `limit` hits (clamped), and the search goes on only
//! until it knows whether one more exists (`limit_reached`); a few
//! sessions are searched at once on the blocking pool (no more than
//! `MAX_PARALLEL`), each chunk within the response budget, so memory stays
//! at a few chunks whatever the store holds. No lock is held while a log
//! is read (opening an ended session's log takes its write lock, which no
//! append needs any more): appends and followers never wait for a search.
//! Dropping the stream (the client went
//! away) or shutting down stops the chunks in progress at their next block.
//! All searches together read at most as many chunks at once as there are
//! cores (`scan_slots`), so however many run, the blocking pool and the
//! cores stay free for appends.

use std::cmp::Reverse;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use futures::{Stream, StreamExt};
use sled::IVec;
use tokio::sync::{Semaphore, mpsc};

use crate::store::{EntryFilter, SearchChunk, SearchScan, Store, TimeRange};

use super::handle::SessionHandle;
use super::{ListQuery, SessionError, SessionManager, blocking};

/// Hits per search when the request names no limit.
pub(crate) const DEFAULT_SEARCH_LIMIT: usize = 1_000;
/// The most hits one search returns; larger limits are clamped.
pub(crate) const MAX_SEARCH_LIMIT: usize = 100_000;
/// The most sessions one search reads at once.
const MAX_PARALLEL: usize = 4;

/// The chunk reads all searches of the process may run at once: one per
/// core (see the module doc).
fn scan_slots() -> &'static Semaphore {
    static SLOTS: OnceLock<Semaphore> = OnceLock::new();
    SLOTS
        .get_or_init(|| Semaphore::new(std::thread::available_parallelism().map_or(1, usize::from)))
}

/// One `Search`.
#[derive(Debug, Clone, Default)]
pub struct SearchQuery {
    /// Which sessions (its paging fields are not used).
    pub sessions: ListQuery,
    pub time: TimeRange,
    pub filter: EntryFilter,
    /// 0 means `DEFAULT_SEARCH_LIMIT`.
    pub limit: u32,
    /// A chunk of hits stops before its entries, encoded, pass this many
    /// bytes (at least one hit).
    pub max_bytes: usize,
}

/// What a search yields: hits of one session, in seq order, then the
/// summary, last.
#[derive(Debug)]
pub enum SearchEvent {
    Hits {
        session_id: Arc<str>,
        /// Entries as stored.
        entries: Vec<IVec>,
    },
    Done(SearchSummary),
}

/// What a search examined.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SearchSummary {
    pub sessions_scanned: u64,
    pub entries_scanned: u64,
    pub bytes_scanned: u64,
    /// More entries match than the hits returned.
    pub limit_reached: bool,
}

/// Sorts sessions newest first: `created_at` descending, then id
/// descending.
type NewestFirst = Reverse<((i64, i32), String)>;

/// One session to search, up to the seq it had published.
#[derive(Debug, Clone)]
struct Target {
    handle: Arc<SessionHandle>,
    through_seq: u64,
}

/// What the chunks of one search share.
#[derive(Debug)]
struct Shared {
    store: Store,
    query: SearchQuery,
    limit: usize,
    /// Hits handed out so far.
    sent: AtomicUsize,
    /// Set when the stream is dropped, the search is over, or the server
    /// shuts down.
    cancel: AtomicBool,
}

/// Sets the cancel flag when the consumer drops the stream.
#[derive(Debug)]
struct CancelOnDrop(Arc<Shared>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel.store(true, Ordering::Relaxed);
    }
}

impl SessionManager {
    /// Searches the sessions `query` selects (see the module docs for
    /// the order and the bounds).
    pub fn search(
        &self,
        query: SearchQuery,
    ) -> impl Stream<Item = Result<SearchEvent, SessionError>> + Send + 'static {
        let limit = match usize::try_from(query.limit) {
            Ok(0) => DEFAULT_SEARCH_LIMIT,
            Ok(limit) => limit.min(MAX_SEARCH_LIMIT),
            Err(_) => MAX_SEARCH_LIMIT,
        };
        let targets = self.search_targets(&query.sessions);
        let shared = Arc::new(Shared {
            store: self.store().clone(),
            query,
            limit,
            sent: AtomicUsize::new(0),
            cancel: AtomicBool::new(false),
        });
        // One event ahead: the producer scans while the consumer sends.
        let (events_tx, events_rx) = mpsc::channel(1);
        let shutdown = self.inner.shutdown.clone();
        let producer = shared.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = produce(producer.clone(), targets, &events_tx) => {}
                () = shutdown.cancelled() => {
                    let _ = events_tx.send(Err(SessionError::ShuttingDown)).await;
                }
                () = events_tx.closed() => {}
            }
            producer.cancel.store(true, Ordering::Relaxed);
        });
        let guard = CancelOnDrop(shared);
        tokio_stream::wrappers::ReceiverStream::new(events_rx).map(move |event| {
            let _guard = &guard;
            event
        })
    }

    /// The sessions `query` selects, newest first.
    fn search_targets(&self, query: &ListQuery) -> Vec<Target> {
        let mut targets: Vec<(NewestFirst, Target)> = self
            .sessions_read()
            .values()
            .filter_map(|handle| {
                let view = handle.view().ok()?;
                if !query.matches(&view) {
                    return None;
                }
                let created = view
                    .record
                    .created_at
                    .map_or((0, 0), |at| (at.seconds, at.nanos));
                Some((
                    Reverse((created, view.record.id.clone())),
                    Target {
                        handle: handle.clone(),
                        through_seq: view.counters.last_seq,
                    },
                ))
            })
            .collect();
        targets.sort_by(|a, b| a.0.cmp(&b.0));
        targets.into_iter().map(|(_, target)| target).collect()
    }
}

type EventSender = mpsc::Sender<Result<SearchEvent, SessionError>>;

/// Runs the search, sending hits as they are found and the summary last.
async fn produce(shared: Arc<Shared>, targets: Vec<Target>, events_tx: &EventSender) {
    let mut summary = SearchSummary::default();
    let parallel = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .clamp(1, MAX_PARALLEL);
    let first_chunks = futures::stream::iter(targets).map(|target| {
        let shared = shared.clone();
        async move {
            let chunk = next_chunk(&shared, &target, 0).await;
            (target, chunk)
        }
    });
    let mut first_chunks = std::pin::pin!(first_chunks.buffered(parallel));
    'sessions: while let Some((target, chunk)) = first_chunks.next().await {
        let mut chunk = match chunk {
            Ok(Some(chunk)) => chunk,
            // Deleted meanwhile: as if it had not been selected.
            Ok(None) => continue,
            Err(err) => {
                let _ = events_tx.send(Err(err)).await;
                return;
            }
        };
        summary.sessions_scanned += 1;
        loop {
            summary.entries_scanned += chunk.entries_scanned;
            summary.bytes_scanned += chunk.bytes_scanned;
            let sent = shared.sent.load(Ordering::Relaxed);
            let room = shared.limit.saturating_sub(sent);
            if chunk.hits.len() > room {
                chunk.hits.truncate(room);
                summary.limit_reached = true;
            }
            if !chunk.hits.is_empty() {
                shared.sent.fetch_add(chunk.hits.len(), Ordering::Relaxed);
                let event = SearchEvent::Hits {
                    session_id: Arc::from(target.handle.id.as_str()),
                    entries: std::mem::take(&mut chunk.hits),
                };
                if events_tx.send(Ok(event)).await.is_err() {
                    return;
                }
            }
            if summary.limit_reached {
                break 'sessions;
            }
            if chunk.done || shared.cancel.load(Ordering::Relaxed) {
                break;
            }
            chunk = match next_chunk(&shared, &target, chunk.cursor).await {
                Ok(Some(next)) => next,
                Ok(None) => break,
                Err(err) => {
                    let _ = events_tx.send(Err(err)).await;
                    return;
                }
            };
        }
    }
    // Chunks read ahead for sessions past the limit stop at their next
    // block; their counts are not the search's.
    shared.cancel.store(true, Ordering::Relaxed);
    let _ = events_tx.send(Ok(SearchEvent::Done(summary))).await;
}

/// The next chunk of `target` after `after_seq`, looking for one hit past
/// the limit (so that `limit_reached` is exact); `None` when the session
/// was deleted.
async fn next_chunk(
    shared: &Arc<Shared>,
    target: &Target,
    after_seq: u64,
) -> Result<Option<SearchChunk>, SessionError> {
    if shared.cancel.load(Ordering::Relaxed) {
        return Ok(Some(SearchChunk {
            cursor: after_seq,
            ..SearchChunk::default()
        }));
    }
    let log = match target.handle.log(&shared.store).await {
        Ok(log) => log,
        Err(SessionError::NotFound { .. }) => return Ok(None),
        Err(err) => return Err(err),
    };
    let (shared, through_seq) = (shared.clone(), target.through_seq);
    // Never closed: a failed acquire cannot happen, but would only mean
    // reading without a slot.
    let _slot = scan_slots().acquire().await.ok();
    let chunk = blocking(move || {
        let max_hits = (shared.limit + 1).saturating_sub(shared.sent.load(Ordering::Relaxed));
        let scan = SearchScan {
            filter: &shared.query.filter,
            time: shared.query.time,
            max_hits: max_hits.max(1),
            max_bytes: shared.query.max_bytes.max(1),
            cancel: &shared.cancel,
        };
        Ok(log.search(after_seq, through_seq, &scan)?)
    })
    .await?;
    Ok(Some(chunk))
}
