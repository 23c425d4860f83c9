//! Counts open follow and watch streams, per session and in all, across
//! every edge (gRPC `Follow`/`WatchSessions` and the HTTP edge's SSE share
//! one counter), so a flood of streams is refused (`TooManyStreams`) before
//! it costs anything. A permit travels with its stream and is returned when
//! the stream is dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::error::RequestError;
use super::limits::Limits;

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_session: HashMap<String, usize>,
}

/// The open streams.
#[derive(Debug, Default)]
pub(crate) struct StreamCounter {
    counts: Mutex<Counts>,
}

/// One open stream; dropping it closes its slot.
#[derive(Debug)]
pub(crate) struct StreamPermit {
    counter: Arc<StreamCounter>,
    session_id: Option<String>,
}

impl StreamCounter {
    fn counts(&self) -> MutexGuard<'_, Counts> {
        self.counts
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// A slot for a stream, on `session_id` when it follows one.
    pub(crate) fn acquire(
        self: &Arc<Self>,
        session_id: Option<&str>,
        limits: &Limits,
    ) -> Result<StreamPermit, RequestError> {
        let mut counts = self.counts();
        if counts.total >= limits.max_streams {
            return Err(RequestError::TooManyStreams {
                reason: format!(
                    "the server has {} open streams, its limit (--max-streams); retry later",
                    counts.total
                ),
            });
        }
        if let Some(session_id) = session_id {
            let open = counts.per_session.get(session_id).copied().unwrap_or(0);
            if open >= limits.max_follows_per_session {
                return Err(RequestError::TooManyStreams {
                    reason: format!(
                        "session `{session_id}` has {open} followers, its limit (--max-follows-per-session); retry later"
                    ),
                });
            }
            counts.per_session.insert(session_id.to_owned(), open + 1);
        }
        counts.total += 1;
        Ok(StreamPermit {
            counter: self.clone(),
            session_id: session_id.map(str::to_owned),
        })
    }
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let mut counts = self.counter.counts();
        counts.total = counts.total.saturating_sub(1);
        if let Some(session_id) = &self.session_id
            && let Some(open) = counts.per_session.get_mut(session_id)
        {
            *open -= 1;
            if *open == 0 {
                counts.per_session.remove(session_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_session_and_in_all_and_slots_come_back() {
        let limits = Limits {
            max_follows_per_session: 2,
            max_streams: 3,
            ..Limits::default()
        };
        let counter = Arc::new(StreamCounter::default());
        let a1 = counter.acquire(Some("a"), &limits).expect("first");
        let _a2 = counter.acquire(Some("a"), &limits).expect("second");
        let refused = counter.acquire(Some("a"), &limits).expect_err("third on a");
        assert!(
            matches!(refused, RequestError::TooManyStreams { .. }),
            "{refused:?}"
        );
        let _watch = counter.acquire(None, &limits).expect("a watch");
        assert!(counter.acquire(Some("b"), &limits).is_err(), "four in all");
        drop(a1);
        assert!(
            counter.acquire(Some("b"), &limits).is_ok(),
            "a slot came back"
        );
    }
}
