//! A session's progress signal. The sender exists only while the session
//! has followers. Callers hold the session's state lock around both
//! `subscribe` and `publish`, and publish after changing that state, so a
//! new follower either starts from a value that includes a change or is
//! told about it.

use tokio::sync::watch;

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
    sender: Option<watch::Sender<Progress>>,
}

impl ProgressSignal {
    /// A receiver whose current value is `current`. While the channel
    /// exists every change was published to it, so it already holds
    /// `current`.
    pub(crate) fn subscribe(&mut self, current: Progress) -> watch::Receiver<Progress> {
        match &self.sender {
            Some(sender) => sender.subscribe(),
            None => {
                let (sender, receiver) = watch::channel(current);
                self.sender = Some(sender);
                receiver
            }
        }
    }

    /// Tells every follower; drops the channel once none is left.
    pub(crate) fn publish(&mut self, progress: Progress) {
        if let Some(sender) = &self.sender {
            if sender.receiver_count() == 0 {
                self.sender = None;
            } else {
                sender.send_replace(progress);
            }
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
        let receiver = signal.subscribe(Progress::default());
        signal.publish(Progress {
            last_seq: 3,
            ..Progress::default()
        });
        assert_eq!(receiver.borrow().last_seq, 3);
        drop(receiver);
        signal.publish(Progress::default());
        assert!(!signal.is_open());
    }
}
