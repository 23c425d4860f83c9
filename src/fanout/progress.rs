//! A session's progress signal and its live window (see `window`). Both
//! exist only while the session has followers. Callers hold the session's
//! state lock around `subscribe` and `publish`, and publish after changing
//! that state, so a new follower either starts from a value that includes
//! a change or is told about it. A batch goes into the window before its
//! seq is published.

use std::sync::Arc;

use sled::IVec;
use tokio::sync::watch;

use super::window::{LiveBatch, LiveWindow};

/// What followers wait for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Progress {
    /// The highest seq whose batch is fully applied.
    pub last_seq: u64,
    pub ended: bool,
    pub deleted: bool,
}

/// The per-session signal; `None` while nobody follows.
#[derive(Debug, Default)]
pub(crate) struct ProgressSignal {
    sender: Option<(watch::Sender<Progress>, Arc<LiveWindow>)>,
}

/// What a new follower gets: the signal and the session's live window.
#[derive(Debug)]
pub(crate) struct Subscription {
    pub(crate) progress_rx: watch::Receiver<Progress>,
    pub(crate) window: Arc<LiveWindow>,
}

impl ProgressSignal {
    /// A receiver whose current value is `current`. While the channel
    /// exists every change was published to it, so it already holds
    /// `current`.
    pub(crate) fn subscribe(&mut self, current: Progress) -> Subscription {
        let (sender, window) = self
            .sender
            .get_or_insert_with(|| (watch::channel(current).0, Arc::new(LiveWindow::default())));
        Subscription {
            progress_rx: sender.subscribe(),
            window: window.clone(),
        }
    }

    /// Whether anyone follows, so that an append keeps its entries' bytes
    /// for the window. A follower that arrives after this said no finds
    /// that batch missing from the window and reads it from the store.
    pub(crate) fn is_followed(&self) -> bool {
        self.sender
            .as_ref()
            .is_some_and(|(sender, _)| sender.receiver_count() > 0)
    }

    /// Tells every follower; drops the channel and the window once none
    /// is left.
    pub(crate) fn publish(&mut self, progress: Progress) {
        self.publish_with(progress, None);
    }

    /// Puts the batch `entries` (stored under seqs from `first_seq`, which
    /// `progress` includes) in the window, then tells every follower.
    pub(crate) fn publish_batch(&mut self, progress: Progress, first_seq: u64, entries: Vec<IVec>) {
        self.publish_with(progress, Some(LiveBatch::new(first_seq, entries)));
    }

    fn publish_with(&mut self, progress: Progress, batch: Option<LiveBatch>) {
        if let Some((sender, window)) = &self.sender {
            if sender.receiver_count() == 0 {
                self.sender = None;
                return;
            }
            if let Some(batch) = batch {
                window.push(batch);
            }
            sender.send_replace(progress);
        }
    }

    /// Whether a channel exists (none without followers).
    #[cfg(test)]
    fn is_open(&self) -> bool {
        self.sender.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_channel_until_someone_follows_and_none_after() {
        let mut signal = ProgressSignal::default();
        signal.publish(Progress::default());
        assert!(!signal.is_open());
        let subscription = signal.subscribe(Progress::default());
        assert!(signal.is_followed());
        signal.publish(Progress {
            last_seq: 3,
            ..Progress::default()
        });
        assert_eq!(subscription.progress_rx.borrow().last_seq, 3);
        drop(subscription);
        assert!(!signal.is_followed());
        signal.publish(Progress::default());
        assert!(!signal.is_open());
    }
}
