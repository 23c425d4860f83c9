//! Following a session: where a follower starts (its cursor, or the last
//! `tail` entries), then the follower itself (see `follow`), with the final
//! session attached to `Ended`.

use futures::{Stream, StreamExt};

use crate::fanout::{FollowError, FollowEvent, FollowOptions, Follower};
use crate::store::schema::LogCounters;
use crate::store::{EntryFilter, LogTree};

use super::read::{DEFAULT_PAGE_BYTES, MAX_READ_LIMIT, MAX_SCANNED_PER_READ};
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
    /// A batch stops before its entries, encoded, pass this many bytes (at
    /// least one entry); 0 means `DEFAULT_PAGE_BYTES`.
    pub max_bytes: usize,
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
        let (subscription, counters) = {
            let mut state = handle.state();
            if state.deleted {
                return Err(handle.not_found());
            }
            let progress = state.progress();
            (state.signal.subscribe(progress), state.counters)
        };
        let start_log = log.clone();
        let start_query = query.clone();
        let after_seq = blocking(move || start(&start_log, &start_query, &counters)).await?;
        let options = FollowOptions {
            filter: query.filter,
            max_batch: match usize::try_from(query.max_batch) {
                Ok(0) => DEFAULT_FOLLOW_BATCH,
                Ok(size) => size.min(MAX_READ_LIMIT),
                Err(_) => MAX_READ_LIMIT,
            },
            max_bytes: match query.max_bytes {
                0 => DEFAULT_PAGE_BYTES,
                max_bytes => max_bytes,
            },
        };
        let follower = Follower::new(
            log,
            subscription,
            after_seq,
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

/// The cursor to follow from: the request's, or just before the last `tail`
/// matching entries after it. Any `after_seq` the client sends is taken as
/// is, `u64::MAX` included (nothing stored is after it).
fn start(log: &LogTree, query: &FollowQuery, counters: &LogCounters) -> Result<u64, SessionError> {
    if query.tail > 0 {
        let count = usize::try_from(query.tail)
            .unwrap_or(MAX_READ_LIMIT)
            .min(MAX_READ_LIMIT);
        return Ok(log.tail_start(
            query.after_seq,
            counters.last_seq,
            &query.filter,
            count,
            MAX_SCANNED_PER_READ,
        )?);
    }
    Ok(query.after_seq)
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::store::schema::StoredEntry;
    use crate::store::{NewEntry, Store, StoreOptions};

    /// A log holding seqs 1..=3, and its counters.
    fn log_of_three(dir: &std::path::Path) -> (LogTree, LogCounters) {
        let store = Store::open(&StoreOptions {
            path: dir.to_path_buf(),
            cache_bytes: 1 << 20,
        })
        .expect("store");
        let log = store.open_log("s").expect("log");
        let entries = (0..3)
            .map(|_| NewEntry::Decoded(StoredEntry::default()))
            .collect();
        let counters = log
            .append(&LogCounters::default(), entries, None, SystemTime::now())
            .expect("append");
        (log, counters)
    }

    #[test]
    fn any_cursor_starts_where_it_says_without_overflow() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (log, stored) = log_of_three(dir.path());
        // Counters that claim fewer entries than seqs (the state a removed
        // truncation branch looked for, and overflowed on) and the real ones.
        let gapped = LogCounters {
            entry_count: 1,
            ..stored
        };
        for counters in [stored, gapped] {
            for (after_seq, tail, expected) in [
                (u64::MAX, 0, u64::MAX),
                (u64::MAX, 2, u64::MAX),
                (u64::MAX - 1, 0, u64::MAX - 1),
                (0, 2, 1),
                (0, 0, 0),
                (3, 5, 3),
            ] {
                let query = FollowQuery {
                    after_seq,
                    tail,
                    ..FollowQuery::default()
                };
                let cursor = start(&log, &query, &counters).expect("start");
                assert_eq!(cursor, expected, "after_seq {after_seq}, tail {tail}");
            }
        }
    }

    fn batch<S: std::fmt::Debug>(
        event: Option<Result<FollowEvent<S>, SessionError>>,
    ) -> crate::fanout::FollowBatch {
        match event {
            Some(Ok(FollowEvent::Batch(batch))) => batch,
            other => panic!("expected a batch, got {other:?}"),
        }
    }

    type Events = std::pin::Pin<
        Box<dyn Stream<Item = Result<FollowEvent<SessionView>, SessionError>> + Send>,
    >;

    /// A new session in a manager over `dir`, and a follower of it with
    /// `max_batch` (0: the default), past its `CaughtUp`.
    async fn followed(dir: &std::path::Path, max_batch: u32) -> (SessionManager, String, Events) {
        let sessions = super::super::test_manager(dir);
        let id = sessions
            .start(crate::store::schema::StoredSession::default())
            .await
            .expect("start")
            .record
            .id;
        let mut events: Events = Box::pin(
            sessions
                .follow(FollowQuery {
                    session_id: id.clone(),
                    max_batch,
                    ..FollowQuery::default()
                })
                .await
                .expect("follow"),
        );
        assert!(matches!(
            events.next().await,
            Some(Ok(FollowEvent::CaughtUp { cursor: 0 }))
        ));
        (sessions, id, events)
    }

    /// Appends one batch of entries with these messages.
    async fn append(sessions: &SessionManager, id: &str, messages: &[&str]) {
        let entries = messages
            .iter()
            .map(|message| {
                NewEntry::Decoded(StoredEntry {
                    message: (*message).to_owned(),
                    ..StoredEntry::default()
                })
            })
            .collect();
        sessions
            .append(crate::sessions::AppendBatch {
                session_id: id.to_owned(),
                entries,
                ..crate::sessions::AppendBatch::default()
            })
            .await
            .expect("append");
    }

    /// A live follower sends at most one batch per `LIVE_LINGER`: entries
    /// appended right after its last batch wait for the rest of the linger
    /// and go together; an entry after a quiet spell goes at once. On
    /// tokio's paused clock, which moves only when every task waits.
    #[tokio::test(start_paused = true)]
    async fn a_live_follower_sends_at_most_one_batch_per_linger() {
        use futures::poll;
        use tokio::time::Instant;

        use crate::fanout::LIVE_LINGER;

        let dir = tempfile::tempdir().expect("temp dir");
        let (sessions, id, mut events) = followed(dir.path(), 0).await;

        append(&sessions, &id, &["first"]).await;
        let first = batch(events.next().await);
        let sent = Instant::now();
        assert_eq!(first.entries().len(), 1);

        for message in ["second", "third", "fourth"] {
            append(&sessions, &id, &[message]).await;
        }
        assert!(
            poll!(events.next()).is_pending(),
            "entries right after a batch wait for the linger"
        );
        let together = batch(events.next().await);
        assert_eq!(together.entries().len(), 3, "one batch for the three");
        assert_eq!(together.cursor(), 4);
        assert!(
            sent.elapsed() >= LIVE_LINGER,
            "sent before the linger ran out"
        );

        tokio::time::advance(LIVE_LINGER * 5).await;
        append(&sessions, &id, &["fifth"]).await;
        let quiet = Instant::now();
        match poll!(events.next()) {
            std::task::Poll::Ready(Some(Ok(FollowEvent::Batch(batch)))) => {
                assert_eq!(batch.cursor(), 5);
            }
            other => panic!("after a quiet spell the entry goes at once, got {other:?}"),
        }
        assert_eq!(quiet.elapsed(), std::time::Duration::ZERO);
    }

    /// A page cut short by the follower's `max_batch` is not a reason to
    /// linger: the rest of a batch already published goes at once.
    #[tokio::test(start_paused = true)]
    async fn the_rest_of_a_page_cut_short_is_not_held_back() {
        use futures::poll;
        use tokio::time::Instant;

        let dir = tempfile::tempdir().expect("temp dir");
        let (sessions, id, mut events) = followed(dir.path(), 2).await;
        append(&sessions, &id, &["1", "2", "3", "4", "5"]).await;
        let started = Instant::now();
        let mut cursors = Vec::new();
        while cursors.last() != Some(&5) {
            match poll!(events.next()) {
                std::task::Poll::Ready(event) => cursors.push(batch(event).cursor()),
                std::task::Poll::Pending => panic!("held back after {cursors:?}"),
            }
        }
        assert_eq!(cursors, [2, 4, 5]);
        assert_eq!(started.elapsed(), std::time::Duration::ZERO);
    }
}
