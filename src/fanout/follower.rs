//! One follower: history from its cursor, then live entries, each exactly
//! once and in seq order. It reads only up to the published `last_seq`, and
//! re-reads the signal after every page, so the switch from history to live
//! has no gap and no duplicate. Each page comes from the session's live
//! window when the seq after the cursor is still there (the next batch,
//! shared with the other followers), otherwise from the store: a follower
//! that falls behind the window reads the store until it is back in it.
//! Both give the same page by the same rule (`store::page_of`). Once live,
//! it sends at most one batch per `LIVE_LINGER`. It holds
//! nothing but its cursor and the page being sent, at most its byte budget
//! of entries (or one entry): there is no queue between its reads and the
//! stream, and backpressure from the client stops its reads, so a stalled
//! client pins one batch here and the one its transport holds. Store pages
//! are read on the blocking pool (`store::blocking`), never on an async
//! worker.

use std::sync::Arc;

use futures::Stream;
use prost::bytes::Bytes;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use sled::IVec;

use crate::store::{EntryFilter, LogTree, ScanLimits, StoreError, blocking};

use super::progress::{Progress, Subscription};
use super::window::{Found, LiveBatch, LiveWindow};

/// A live follower sends at most one batch per this long: entries that
/// come sooner after its last batch wait for the rest of it and go in the
/// next batch together. A session appended to one entry at a time, a few
/// thousand times a second, then costs each follower one message per
/// linger instead of one per entry (the message, its HTTP/2 frame and its
/// write to the socket are most of what a delivery costs); an entry that
/// comes after a quiet spell goes at once.
pub(crate) const LIVE_LINGER: std::time::Duration = std::time::Duration::from_millis(2);

/// What a follower sees, in this order: batches, one `CaughtUp`, more
/// batches, and `Ended` last. `S` is what `Ended` carries (the session,
/// added by the layer above). The contract's `Truncated` is never sent:
/// entries are never trimmed from a session (retention removes whole
/// sessions), so the entries after any cursor are all there.
#[derive(Debug, Clone, PartialEq)]
pub enum FollowEvent<S = ()> {
    /// Entries as stored (encoded `StoredEntry`s, which are encoded
    /// `LogEntry`s): sent on without a decode and re-encode per follower.
    Batch(FollowBatch),
    CaughtUp {
        cursor: u64,
    },
    Ended(S),
}

impl FollowEvent<()> {
    /// The same event with `ended` attached to `Ended`.
    pub fn with_ended<S>(self, ended: impl FnOnce() -> S) -> FollowEvent<S> {
        match self {
            Self::Batch(batch) => FollowEvent::Batch(batch),
            Self::CaughtUp { cursor } => FollowEvent::CaughtUp { cursor },
            Self::Ended(()) => FollowEvent::Ended(ended()),
        }
    }
}

/// A follower's batch: entries in seq order, and the cursor after them
/// (the last seq examined, which may be past the last entry kept).
#[derive(Debug, Clone)]
pub struct FollowBatch {
    entries: BatchEntries,
    cursor: u64,
}

#[derive(Debug, Clone)]
enum BatchEntries {
    /// A page of this follower's own, read from the store or cut from
    /// the window.
    Own(Vec<IVec>),
    /// A batch of the live window, whole, shared with other followers.
    Shared(Arc<LiveBatch>),
}

impl FollowBatch {
    /// A batch of `entries` with `cursor` after them.
    pub fn new(entries: Vec<IVec>, cursor: u64) -> Self {
        Self {
            entries: BatchEntries::Own(entries),
            cursor,
        }
    }

    pub fn entries(&self) -> &[IVec] {
        match &self.entries {
            BatchEntries::Own(entries) => entries,
            BatchEntries::Shared(batch) => batch.entries(),
        }
    }

    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// The batch as a response encoded by `encode` (given the entries and
    /// the cursor). A batch shared from the live window is encoded once
    /// for every follower that sends it with the same `K` (the edge's
    /// encoder); `encode` must depend on nothing but its arguments and
    /// settings of the whole server.
    pub fn encoded_once<K: 'static>(&self, encode: impl FnOnce(&[IVec], u64) -> Bytes) -> Bytes {
        match &self.entries {
            BatchEntries::Own(entries) => encode(entries, self.cursor),
            BatchEntries::Shared(batch) => batch.encoded_once::<K>(encode),
        }
    }

    /// `encoded_once` for a batch shared from the live window; `None` for
    /// a page of the follower's own, which there is nothing to share of.
    pub fn shared_encoded_once<K: 'static>(
        &self,
        encode: impl FnOnce(&[IVec], u64) -> Bytes,
    ) -> Option<Bytes> {
        match &self.entries {
            BatchEntries::Own(_) => None,
            BatchEntries::Shared(batch) => Some(batch.encoded_once::<K>(encode)),
        }
    }
}

impl PartialEq for FollowBatch {
    fn eq(&self, other: &Self) -> bool {
        self.cursor == other.cursor && self.entries() == other.entries()
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
    window: Arc<LiveWindow>,
    cursor: u64,
    /// Shared with each page read, so a page does not copy it.
    filter: Arc<EntryFilter>,
    max_batch: usize,
    max_bytes: usize,
    caught_up: bool,
    /// When the last live batch was sent (see `LIVE_LINGER`).
    last_live_send: Option<tokio::time::Instant>,
    finished: bool,
    shutdown: CancellationToken,
    _unit: GaugeUnit,
}

impl Follower {
    /// A follower of `log` from `after_seq` (exclusive).
    pub(crate) fn new(
        log: LogTree,
        subscription: Subscription,
        after_seq: u64,
        options: FollowOptions,
        shutdown: CancellationToken,
        gauge: &FollowerGauge,
    ) -> Self {
        Self {
            log,
            progress_rx: subscription.progress_rx,
            window: subscription.window,
            cursor: after_seq,
            filter: Arc::new(options.filter),
            max_batch: options.max_batch,
            max_bytes: options.max_bytes,
            caught_up: false,
            last_live_send: None,
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
                if let Some(sent) = self.lingering(progress) {
                    self.linger_until(sent + LIVE_LINGER).await?;
                    self.last_live_send = None;
                    continue;
                }
                let batch = self.next_page(progress.last_seq).await?;
                let kept = batch.entries().len();
                self.cursor = batch.cursor;
                if kept > 0 {
                    crate::metrics::get()
                        .delivered(kept, progress.last_seq.saturating_sub(self.cursor));
                    // Only a batch that took the follower to the published
                    // seq starts a linger: the rest of a page cut short by
                    // its limits is already due.
                    if self.caught_up && self.cursor >= progress.last_seq {
                        self.last_live_send = Some(tokio::time::Instant::now());
                    }
                    return Ok(FollowEvent::Batch(batch));
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

    /// Waits until `until`, or until the server shuts down. A follower in
    /// its linger does not listen for progress, so appends meanwhile do
    /// not wake it; news of the end or a deletion that comes meanwhile
    /// waits out the linger (at most `LIVE_LINGER`) like an entry.
    async fn linger_until(&self, until: tokio::time::Instant) -> Result<(), FollowError> {
        tokio::select! {
            () = tokio::time::sleep_until(until) => Ok(()),
            () = self.shutdown.cancelled() => Err(FollowError::ShuttingDown),
        }
    }

    /// When a live follower's last batch took it to the published seq
    /// less than `LIVE_LINGER` ago, and the session goes on: when that
    /// batch was sent, to wait from. A follower still catching up, the rest
    /// of a page cut short, and an end or deletion already published are
    /// not held back.
    fn lingering(&self, progress: Progress) -> Option<tokio::time::Instant> {
        if progress.ended || progress.deleted {
            return None;
        }
        self.last_live_send
            .filter(|sent| sent.elapsed() < LIVE_LINGER)
    }

    /// The page after the cursor up to `through_seq`: from the live window
    /// when it still holds the next seq, otherwise from the store.
    async fn next_page(&self, through_seq: u64) -> Result<FollowBatch, FollowError> {
        let limits = ScanLimits {
            max_entries: self.max_batch,
            // A filter that keeps little must not hold a blocking
            // thread for a whole log.
            max_scanned: self.max_batch.saturating_mul(4).max(1_000),
            max_bytes: self.max_bytes,
        };
        match self
            .window
            .next_page(self.cursor, through_seq, &self.filter, limits)?
        {
            Found::Whole(batch) => {
                let cursor = batch.last_seq();
                return Ok(FollowBatch {
                    entries: BatchEntries::Shared(batch),
                    cursor,
                });
            }
            Found::Page(page) => return Ok(FollowBatch::new(page.entries, page.cursor)),
            Found::Missing => {}
        }
        let (log, filter, cursor) = (self.log.clone(), self.filter.clone(), self.cursor);
        let page =
            blocking(move || log.page_forward_raw(cursor, through_seq, &filter, limits)).await?;
        Ok(FollowBatch::new(page.entries, page.cursor))
    }

    /// The follower as a stream of events.
    pub(crate) fn into_stream(self) -> impl Stream<Item = Result<FollowEvent, FollowError>> + Send {
        futures::stream::unfold(self, |mut follower| async move {
            let event = follower.next_event().await?;
            Some((event, follower))
        })
    }
}
