//! One follower: history from its cursor, then live entries, each exactly
//! once and in seq order. It reads only up to the published `last_seq`, and
//! re-reads the signal after every page, so the switch from history to live
//! has no gap and no duplicate. It holds nothing but its cursor and the page
//! being sent, at most its byte budget of entries (or one entry): there is
//! no queue between its reads and the stream, and backpressure from the
//! client stops its reads, so a stalled client pins one batch here and the
//! one its transport holds. Pages are read
//! on the blocking pool (`store::blocking`), never on an async worker.

use std::sync::Arc;

use futures::Stream;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use sled::IVec;

use crate::store::{EntryFilter, LogTree, ScanLimits, StoreError, blocking};

use super::progress::Progress;

/// What a follower sees, in this order: batches, one `CaughtUp`, more
/// batches, and `Ended` last. `S` is what `Ended` carries (the session,
/// added by the layer above). The contract's `Truncated` is never sent:
/// entries are never trimmed from a session (retention removes whole
/// sessions), so the entries after any cursor are all there.
#[derive(Debug, Clone, PartialEq)]
pub enum FollowEvent<S = ()> {
    /// Entries as stored (encoded `StoredEntry`s, which are encoded
    /// `LogEntry`s): sent on without a decode and re-encode per follower.
    Batch {
        entries: Vec<IVec>,
        cursor: u64,
    },
    CaughtUp {
        cursor: u64,
    },
    Ended(S),
}

impl FollowEvent<()> {
    /// The same event with `ended` attached to `Ended`.
    pub fn with_ended<S>(self, ended: impl FnOnce() -> S) -> FollowEvent<S> {
        match self {
            Self::Batch { entries, cursor } => FollowEvent::Batch { entries, cursor },
            Self::CaughtUp { cursor } => FollowEvent::CaughtUp { cursor },
            Self::Ended(()) => FollowEvent::Ended(ended()),
        }
    }
}

/// Why a follow stream stops early.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FollowError {
    #[error("the session was deleted")]
    Deleted,
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a follower wants besides its cursor.
#[derive(Debug, Clone)]
pub(crate) struct FollowOptions {
    pub filter: EntryFilter,
    /// At most this many entries per batch.
    pub max_batch: usize,
    /// At most this many bytes of entries per batch, as they weigh in a
    /// message (`store::entry_wire_len`); at least one entry.
    pub max_bytes: usize,
}

/// Counts live followers; each `Follower` holds one unit until dropped.
#[derive(Debug, Clone)]
pub(crate) struct FollowerGauge {
    count_tx: Arc<watch::Sender<usize>>,
}

impl Default for FollowerGauge {
    fn default() -> Self {
        Self {
            count_tx: Arc::new(watch::channel(0).0),
        }
    }
}

impl FollowerGauge {
    /// A receiver of the number of live followers.
    pub(crate) fn watch(&self) -> watch::Receiver<usize> {
        self.count_tx.subscribe()
    }

    fn enter(&self) -> GaugeUnit {
        self.count_tx.send_modify(|count| *count += 1);
        GaugeUnit {
            gauge: self.clone(),
        }
    }
}

#[derive(Debug)]
struct GaugeUnit {
    gauge: FollowerGauge,
}

impl Drop for GaugeUnit {
    fn drop(&mut self) {
        self.gauge
            .count_tx
            .send_modify(|count| *count = count.saturating_sub(1));
    }
}

/// One follow stream's state.
#[derive(Debug)]
pub(crate) struct Follower {
    log: LogTree,
    progress_rx: watch::Receiver<Progress>,
    cursor: u64,
    /// Shared with each page read, so a page does not copy it.
    filter: Arc<EntryFilter>,
    max_batch: usize,
    max_bytes: usize,
    caught_up: bool,
    finished: bool,
    shutdown: CancellationToken,
    _unit: GaugeUnit,
}

impl Follower {
    /// A follower of `log` from `after_seq` (exclusive).
    pub(crate) fn new(
        log: LogTree,
        progress_rx: watch::Receiver<Progress>,
        after_seq: u64,
        options: FollowOptions,
        shutdown: CancellationToken,
        gauge: &FollowerGauge,
    ) -> Self {
        Self {
            log,
            progress_rx,
            cursor: after_seq,
            filter: Arc::new(options.filter),
            max_batch: options.max_batch,
            max_bytes: options.max_bytes,
            caught_up: false,
            finished: false,
            shutdown,
            _unit: gauge.enter(),
        }
    }

    /// The next event; `None` after `Ended` or an error.
    pub(crate) async fn next_event(&mut self) -> Option<Result<FollowEvent, FollowError>> {
        if self.finished {
            return None;
        }
        let event = self.advance().await;
        if matches!(event, Ok(FollowEvent::Ended(())) | Err(_)) {
            self.finished = true;
        }
        Some(event)
    }

    async fn advance(&mut self) -> Result<FollowEvent, FollowError> {
        loop {
            if self.shutdown.is_cancelled() {
                return Err(FollowError::ShuttingDown);
            }
            let progress = *self.progress_rx.borrow_and_update();
            if progress.deleted {
                return Err(FollowError::Deleted);
            }
            if self.cursor < progress.last_seq {
                let limits = ScanLimits {
                    max_entries: self.max_batch,
                    // A filter that keeps little must not hold a blocking
                    // thread for a whole log.
                    max_scanned: self.max_batch.saturating_mul(4).max(1_000),
                    max_bytes: self.max_bytes,
                };
                let (log, filter, cursor) = (self.log.clone(), self.filter.clone(), self.cursor);
                let page = blocking(move || {
                    log.page_forward_raw(cursor, progress.last_seq, &filter, limits)
                })
                .await?;
                self.cursor = page.cursor;
                if !page.entries.is_empty() {
                    crate::metrics::get().delivered(
                        page.entries.len(),
                        progress.last_seq.saturating_sub(self.cursor),
                    );
                    return Ok(FollowEvent::Batch {
                        entries: page.entries,
                        cursor: self.cursor,
                    });
                }
                tokio::task::yield_now().await;
                continue;
            }
            if !self.caught_up {
                self.caught_up = true;
                return Ok(FollowEvent::CaughtUp {
                    cursor: self.cursor,
                });
            }
            if progress.ended {
                return Ok(FollowEvent::Ended(()));
            }
            tokio::select! {
                changed = self.progress_rx.changed() => {
                    // The sender goes only with the session itself.
                    if changed.is_err() {
                        return Err(FollowError::Deleted);
                    }
                }
                () = self.shutdown.cancelled() => return Err(FollowError::ShuttingDown),
            }
        }
    }

    /// The follower as a stream of events.
    pub(crate) fn into_stream(self) -> impl Stream<Item = Result<FollowEvent, FollowError>> + Send {
        futures::stream::unfold(self, |mut follower| async move {
            let event = follower.next_event().await?;
            Some((event, follower))
        })
    }
}
