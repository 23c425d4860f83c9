//! Session lifecycle events for `WatchSessions`. A change to a session's
//! in-memory state and the sending of its event happen under one lock (the
//! gate), and a watcher subscribes and takes its snapshot under the same
//! lock: every change is in the snapshot or delivered live, never both and
//! never neither. Appends send no events.

use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt};
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use crate::store::schema::State;

use super::{SessionError, SessionManager, SessionView};

/// How many events a watcher may fall behind before its stream ends.
pub(crate) const WATCH_BACKLOG: usize = 4_096;

/// What `WatchSessions` reports. The view is shared: the channel keeps
/// the last `WATCH_BACKLOG` events in slots it allocates up front, and
/// each watcher receives a clone of every event.
#[derive(Debug, Clone)]
pub enum WatchEvent {
    Started(Arc<SessionView>),
    Updated(Arc<SessionView>),
    Ended(Arc<SessionView>),
    Deleted(Arc<SessionView>),
    /// The snapshot is complete; live events follow.
    CaughtUp,
}

/// One `WatchSessions`. Empty strings do not filter.
#[derive(Debug, Clone, Default)]
pub struct WatchQuery {
    pub include_existing: bool,
    /// `None` watches every state. `Ended` and `Deleted` events always pass,
    /// so a watcher learns when a session leaves the state it watches.
    pub state: Option<State>,
    pub app_name: String,
    pub job_id: String,
}

impl WatchQuery {
    fn matches(&self, event: &WatchEvent) -> bool {
        let (view, leaving) = match event {
            WatchEvent::CaughtUp => return true,
            WatchEvent::Started(view) | WatchEvent::Updated(view) => (view, false),
            WatchEvent::Ended(view) | WatchEvent::Deleted(view) => (view, true),
        };
        let record = &view.record;
        (leaving || self.state.is_none_or(|state| record.state() == state))
            && (self.app_name.is_empty() || record.app_name == self.app_name)
            && (self.job_id.is_empty() || record.job_id == self.job_id)
    }
}

/// The gate and the channel behind it.
#[derive(Debug)]
pub(crate) struct SessionEvents {
    gate: Mutex<broadcast::Sender<WatchEvent>>,
    /// Counts changes of any kind; see `SessionManager::changes`.
    changes: tokio::sync::watch::Sender<u64>,
}

impl Default for SessionEvents {
    fn default() -> Self {
        Self {
            gate: Mutex::new(broadcast::channel(WATCH_BACKLOG).0),
            changes: tokio::sync::watch::channel(0).0,
        }
    }
}

impl SessionEvents {
    /// Applies `change` to in-memory state and sends the event it returns,
    /// both under the gate. `change` must not take the gate.
    pub(crate) fn publish(&self, change: impl FnOnce() -> WatchEvent) {
        let sender = self
            .gate
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let event = change();
        // No watchers is not an error.
        let _ = sender.send(event);
        drop(sender);
        self.changed();
    }

    /// Counts a change that is not a lifecycle event (an append).
    pub(crate) fn changed(&self) {
        self.changes
            .send_modify(|count| *count = count.wrapping_add(1));
    }

    pub(crate) fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn subscribe_with<T>(
        &self,
        snapshot: impl FnOnce() -> T,
    ) -> (broadcast::Receiver<WatchEvent>, T) {
        let sender = self
            .gate
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        (sender.subscribe(), snapshot())
    }
}

impl SessionManager {
    /// Matching existing sessions (oldest first, when asked for), one
    /// `CaughtUp`, then live events in the order they happened.
    pub fn watch(
        &self,
        query: WatchQuery,
    ) -> impl Stream<Item = Result<WatchEvent, SessionError>> + Send + 'static {
        let (live_rx, mut existing) = self.inner.events.subscribe_with(|| {
            if !query.include_existing {
                return Vec::new();
            }
            self.sessions_read()
                .values()
                .filter_map(|handle| handle.view().ok())
                .map(|view| WatchEvent::Started(Arc::new(view)))
                .filter(|event| query.matches(event))
                .collect()
        });
        existing.sort_by_key(|event| match event {
            WatchEvent::Started(view) => view.record.created_at.map(|at| (at.seconds, at.nanos)),
            _ => None,
        });
        let shutdown = self.inner.shutdown.clone();
        let live = BroadcastStream::new(live_rx)
            .filter_map(move |received| {
                let passed = match received {
                    Ok(event) => query.matches(&event).then_some(Ok(event)),
                    Err(BroadcastStreamRecvError::Lagged(missed)) => {
                        Some(Err(SessionError::WatcherLagged { missed }))
                    }
                };
                std::future::ready(passed)
            })
            .take_until(shutdown.cancelled_owned())
            .chain(futures::stream::once(async {
                Err(SessionError::ShuttingDown)
            }));
        let mut failed = false;
        futures::stream::iter(existing.into_iter().map(Ok))
            .chain(futures::stream::once(async { Ok(WatchEvent::CaughtUp) }))
            .chain(live)
            .take_while(move |item| {
                let go_on = !failed;
                failed = item.is_err();
                std::future::ready(go_on)
            })
    }
}
