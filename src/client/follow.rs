//! `follow` as a `Stream` that survives disconnects: after a transient
//! error it reconnects from the last cursor it yielded, so the caller sees
//! every entry once, in seq order, across any number of reconnects. It ends
//! after the session's end (or a permanent error).

use std::time::Duration;

use futures::{Stream, StreamExt as _};
use tonic::{Status, Streaming};

use super::Connection;
use super::writer::is_transient;
use crate::pb;
use crate::pb::follow_response::Event;

/// Where to start and what to receive.
#[derive(Debug, Clone, Default)]
pub struct FollowOptions {
    /// Entries after this seq.
    pub after_seq: u64,
    /// Instead, start with the last `tail` entries (first connection only).
    pub tail: u32,
    pub filter: Option<pb::LogFilter>,
    /// At most this many entries per batch (0: the server's default).
    pub max_batch: u32,
}

/// What a follow stream yields.
#[derive(Debug, Clone)]
pub enum FollowItem {
    /// Entries in seq order; `cursor` is where a resume would start.
    Entries {
        entries: Vec<pb::LogEntry>,
        cursor: u64,
    },
    /// History is delivered; what follows is live.
    CaughtUp { cursor: u64 },
    /// Entries up to `first_available_seq - 1` were pruned before they
    /// could be sent.
    Truncated { first_available_seq: u64 },
    /// The connection was lost; the stream reconnects after `after_seq`.
    Reconnecting { after_seq: u64, error: Status },
    /// The session ended; the stream ends after this.
    Ended(Box<pb::Session>),
}

struct State {
    connection: Connection,
    session_id: String,
    options: FollowOptions,
    cursor: u64,
    events: Option<Streaming<pb::FollowResponse>>,
    backoff: Duration,
    done: bool,
}

/// Follows `session_id`, reconnecting after transient errors.
pub fn follow(
    connection: Connection,
    session_id: impl Into<String>,
    options: FollowOptions,
) -> impl Stream<Item = Result<FollowItem, Status>> + Send {
    let state = State {
        connection,
        session_id: session_id.into(),
        cursor: options.after_seq,
        options,
        events: None,
        backoff: Duration::from_millis(100),
        done: false,
    };
    futures::stream::unfold(state, |mut state| async move {
        let item = state.next().await?;
        Some((item, state))
    })
}

impl State {
    async fn next(&mut self) -> Option<Result<FollowItem, Status>> {
        if self.done {
            return None;
        }
        let Some(events) = self.events.as_mut() else {
            return self.connect().await;
        };
        let event = match events.next().await {
            Some(Ok(response)) => response.event,
            Some(Err(status)) => return self.lost(status).await,
            None => {
                return self
                    .lost(Status::unavailable(
                        "the follow stream closed before the session ended",
                    ))
                    .await;
            }
        };
        self.backoff = Duration::from_millis(100);
        let item = match event {
            Some(Event::Batch(batch)) => {
                self.seen(batch.cursor);
                FollowItem::Entries {
                    entries: batch.entries,
                    cursor: batch.cursor,
                }
            }
            Some(Event::CaughtUp(caught_up)) => {
                self.seen(caught_up.cursor);
                FollowItem::CaughtUp {
                    cursor: caught_up.cursor,
                }
            }
            Some(Event::Truncated(truncated)) => FollowItem::Truncated {
                first_available_seq: truncated.first_available_seq,
            },
            Some(Event::Ended(session)) => {
                self.done = true;
                FollowItem::Ended(Box::new(session))
            }
            // An event this client does not know: skip it.
            None => return Box::pin(self.next()).await,
        };
        Some(Ok(item))
    }

    /// A cursor arrived: resumes continue from it, not from the tail.
    fn seen(&mut self, cursor: u64) {
        self.cursor = self.cursor.max(cursor);
        self.options.tail = 0;
    }

    async fn connect(&mut self) -> Option<Result<FollowItem, Status>> {
        let request = pb::FollowRequest {
            session_id: self.session_id.clone(),
            after_seq: self.cursor,
            tail: self.options.tail,
            filter: self.options.filter.clone(),
            max_batch: self.options.max_batch,
        };
        match self.connection.sessions().follow(request).await {
            Ok(response) => {
                self.events = Some(response.into_inner());
                Box::pin(self.next()).await
            }
            Err(status) => self.lost(status).await,
        }
    }

    /// Waits, then yields `Reconnecting` for a transient error; ends the
    /// stream with the error otherwise.
    async fn lost(&mut self, error: Status) -> Option<Result<FollowItem, Status>> {
        self.events = None;
        if !is_transient(&error) {
            self.done = true;
            return Some(Err(error));
        }
        tokio::time::sleep(self.backoff).await;
        self.backoff = (self.backoff * 2).min(Duration::from_secs(5));
        Some(Ok(FollowItem::Reconnecting {
            after_seq: self.cursor,
            error,
        }))
    }
}
