//! When acknowledged appends reach the disk. `Always`: an append waits for a
//! flush that started after its batch was applied; appends waiting at the
//! same moment share one flush (group commit). `Interval`: a task flushes
//! every period, so a crash loses at most about one period. `Never`: sled
//! writes its buffers when they fill; only shutdown flushes. Flushes run on
//! the blocking pool, never on an async worker.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Store, StoreError};

/// The fsync policy of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    Always,
    Interval(Duration),
    Never,
}

type Waiter = oneshot::Sender<Result<(), String>>;

/// The longest a group waits for the members the last group had. When
/// fewer come (a client stopped), one group pays this once and the next
/// expects fewer.
const GROUP_WAIT: Duration = Duration::from_millis(1);

/// Hands out durability waits; cheap to clone.
#[derive(Debug, Clone)]
pub struct Durability {
    waiters_tx: Option<mpsc::UnboundedSender<Waiter>>,
    flushes: Arc<AtomicU64>,
    stop: CancellationToken,
}

impl Durability {
    /// Starts the flusher task the policy needs (none for `Never`).
    pub fn start(store: Store, policy: FsyncPolicy) -> (Self, Option<JoinHandle<()>>) {
        let flushes = Arc::new(AtomicU64::new(0));
        let stop = CancellationToken::new();
        let flusher = Flusher {
            store,
            flushes: flushes.clone(),
        };
        let (waiters_tx, task) = match policy {
            FsyncPolicy::Always => {
                let (waiters_tx, waiters_rx) = mpsc::unbounded_channel();
                let task = tokio::spawn(flusher.group_commit(waiters_rx, stop.clone()));
                (Some(waiters_tx), Some(task))
            }
            FsyncPolicy::Interval(period) => {
                let task = tokio::spawn(flusher.every(period, stop.clone()));
                (None, Some(task))
            }
            FsyncPolicy::Never => (None, None),
        };
        let durability = Self {
            waiters_tx,
            flushes,
            stop,
        };
        (durability, task)
    }

    /// Returns once everything applied before the call is on disk, under
    /// `Always`; at once otherwise.
    pub async fn wait_durable(&self) -> Result<(), StoreError> {
        let Some(waiters_tx) = &self.waiters_tx else {
            return Ok(());
        };
        let (done_tx, done_rx) = oneshot::channel();
        let flushed = match waiters_tx.send(done_tx) {
            Ok(()) => done_rx
                .await
                .unwrap_or(Err("the flusher stopped".to_owned())),
            Err(_) => Err("the flusher stopped".to_owned()),
        };
        flushed.map_err(|detail| StoreError::Io(std::io::Error::other(detail)))
    }

    /// How many flushes the flusher has run (for tests and metrics).
    pub fn flush_count(&self) -> u64 {
        self.flushes.load(Ordering::Relaxed)
    }

    /// Stops the flusher task; waiters still queued get a final flush.
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

struct Flusher {
    store: Store,
    flushes: Arc<AtomicU64>,
}

impl Flusher {
    async fn flush(&self) -> Result<(), String> {
        let store = self.store.clone();
        let started = std::time::Instant::now();
        let flushed = super::blocking(move || store.flush()).await;
        crate::metrics::get().flush_took(started.elapsed());
        self.flushes.fetch_add(1, Ordering::Relaxed);
        flushed.map_err(|err| err.to_string())
    }

    /// One flush per group of waiters: whoever queued while a flush ran
    /// shares the next one. Clients that append and wait in a loop come
    /// back together after their flush, but reach the queue one by one; the
    /// flusher waits (briefly) for as many as the last group held before it
    /// flushes, so a group does not split into many small ones. A lone
    /// client makes groups of one, so it never waits.
    async fn group_commit(
        self,
        mut waiters_rx: mpsc::UnboundedReceiver<Waiter>,
        stop: CancellationToken,
    ) {
        let mut expected = 1;
        loop {
            let first = tokio::select! {
                waiter = waiters_rx.recv() => waiter,
                () = stop.cancelled() => None,
            };
            let Some(first) = first else { break };
            let mut group = vec![first];
            // Appends already running on the other workers are a moment
            // from queueing: one yield lets them join this flush instead of
            // paying for the next. With nothing else runnable it returns at
            // once, so a lone append waits no longer.
            tokio::task::yield_now().await;
            drain(&mut waiters_rx, &mut group);
            if group.len() < expected {
                let deadline = tokio::time::Instant::now() + GROUP_WAIT;
                while group.len() < expected {
                    match tokio::time::timeout_at(deadline, waiters_rx.recv()).await {
                        Ok(Some(waiter)) => {
                            group.push(waiter);
                            drain(&mut waiters_rx, &mut group);
                        }
                        Ok(None) | Err(_) => break,
                    }
                }
            }
            expected = group.len();
            let result = self.flush().await;
            if let Err(err) = &result {
                tracing::error!(error = %err, "flush failed; appends waiting on it fail");
            }
            for waiter in group {
                let _ = waiter.send(result.clone());
            }
        }
        waiters_rx.close();
        let mut rest = Vec::new();
        while let Ok(waiter) = waiters_rx.try_recv() {
            rest.push(waiter);
        }
        if !rest.is_empty() {
            let result = self.flush().await;
            for waiter in rest {
                let _ = waiter.send(result.clone());
            }
        }
    }

    async fn every(self, period: Duration, stop: CancellationToken) {
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                () = stop.cancelled() => break,
            }
            if let Err(err) = self.flush().await {
                tracing::error!(error = %err, "periodic flush failed");
            }
        }
    }
}

fn drain(waiters_rx: &mut mpsc::UnboundedReceiver<Waiter>, group: &mut Vec<Waiter>) {
    while let Ok(waiter) = waiters_rx.try_recv() {
        group.push(waiter);
    }
}
