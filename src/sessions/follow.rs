//! Following a session: where a follower starts (its cursor, or the last
//! `tail` entries; past trimmed entries with a `Truncated` first), then the
//! follower itself (see `follow`), with the final session attached to
//! `Ended`.

use futures::{Stream, StreamExt};

use crate::follow::{FollowError, FollowEvent, FollowOptions, Follower};
use crate::store::schema::LogCounters;
use crate::store::{EntryFilter, LogTree, ScanLimits};

use super::read::{MAX_READ_LIMIT, MAX_SCANNED_PER_READ};
use super::{SessionError, SessionManager, SessionView, blocking};

/// Entries per follow batch when the request names no `max_batch`.
pub(crate) const DEFAULT_FOLLOW_BATCH: usize = 500;

/// One `Follow`.
#[derive(Debug, Clone, Default)]
pub struct FollowQuery {
    pub session_id: String,
    /// Exclusive: entries with `seq > after_seq`.
    pub after_seq: u64,
    /// When > 0, start with the last `tail` matching entries.
    pub tail: u32,
    pub filter: EntryFilter,
    /// 0 means `DEFAULT_FOLLOW_BATCH`; clamped to the read maximum.
    pub max_batch: u32,
}

impl SessionManager {
    /// The session's entries after the cursor, then live ones, as events.
    pub async fn follow(
        &self,
        query: FollowQuery,
    ) -> Result<
        impl Stream<Item = Result<FollowEvent<SessionView>, SessionError>> + Send + 'static,
        SessionError,
    > {
        let handle = self.handle(&query.session_id)?;
        let log = handle.log(self.store()).await?;
        let (progress_rx, counters) = {
            let mut state = handle.state();
            if state.deleted {
                return Err(handle.not_found());
            }
            let progress = state.progress();
            (state.signal.subscribe(progress), state.counters)
        };
        let start_log = log.clone();
        let start_query = query.clone();
        let (after_seq, truncated) =
            blocking(move || start(&start_log, &start_query, &counters)).await?;
        let options = FollowOptions {
            filter: query.filter,
            max_batch: match usize::try_from(query.max_batch) {
                Ok(0) => DEFAULT_FOLLOW_BATCH,
                Ok(size) => size.min(MAX_READ_LIMIT),
                Err(_) => MAX_READ_LIMIT,
            },
        };
        let follower = Follower::new(
            log,
            progress_rx,
            after_seq,
            truncated,
            options,
            self.inner.shutdown.clone(),
            &self.inner.followers,
        );
        let session_id = handle.id.clone();
        Ok(follower.into_stream().map(move |event| match event {
            Ok(event) => Ok(event.with_ended(|| handle.final_view())),
            Err(FollowError::Deleted) => Err(SessionError::Deleted {
                session_id: session_id.clone(),
            }),
            Err(FollowError::ShuttingDown) => Err(SessionError::ShuttingDown),
            Err(FollowError::Store(err)) => Err(SessionError::Store(err)),
        }))
    }

    /// How many follow streams are open, as a watch (for tests and metrics).
    pub fn followers(&self) -> tokio::sync::watch::Receiver<usize> {
        self.inner.followers.watch()
    }
}

/// The cursor to follow from, and the first available seq when entries
/// right after the cursor were trimmed away.
fn start(
    log: &LogTree,
    query: &FollowQuery,
    counters: &LogCounters,
) -> Result<(u64, Option<u64>), SessionError> {
    let mut after_seq = query.after_seq;
    if query.tail > 0 {
        let limits = ScanLimits {
            max_entries: usize::try_from(query.tail)
                .unwrap_or(MAX_READ_LIMIT)
                .min(MAX_READ_LIMIT),
            max_scanned: MAX_SCANNED_PER_READ,
        };
        let tail = log.page_tail(query.after_seq, counters.last_seq, &query.filter, limits)?;
        after_seq = match tail.first() {
            Some(first) => first.seq - 1,
            None => query.after_seq.max(counters.last_seq),
        };
    }
    // Only a log that lost entries can start above seq 1.
    if counters.entry_count < counters.last_seq
        && let Some(first_seq) = log.first_seq()?
        && after_seq + 1 < first_seq
    {
        return Ok((first_seq - 1, Some(first_seq)));
    }
    Ok((after_seq, None))
}
