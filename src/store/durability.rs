//! When acknowledged appends reach the disk. `Always`: an append waits for a
//! flush that started after its batch was applied; appends waiting at the
//! same moment share one flush (group commit). `Interval`: a task flushes
//! every period, so a crash loses at most about one period. `Never`: sled
//! writes its buffers when they fill; only shutdown flushes. Flushes run on
//! the blocking pool, never on an async worker. No wait is unbounded: a
//! flush that does not return within the flush timeout answers its waiters
//! with `FlushTimedOut` and marks the store stalled (see `health`) until it
//! returns, and no new flush starts while one is stuck.

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

type Waiter = oneshot::Sender<Result<(), StoreError>>;

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
    timeout: Duration,
}

/// The flush timeout `serve` uses unless told otherwise.
pub(crate) const DEFAULT_FLUSH_TIMEOUT: Duration = Duration::from_secs(30);

impl Durability {
    /// Starts the flusher task the policy needs (none for `Never`); a
    /// flush may take up to `timeout` (see the module doc).
    pub fn start(
        store: Store,
        policy: FsyncPolicy,
        timeout: Duration,
    ) -> (Self, Option<JoinHandle<()>>) {
        let flushes = Arc::new(AtomicU64::new(0));
        let stop = CancellationToken::new();
        let flusher = Flusher {
            store,
            flushes: flushes.clone(),
            timeout,
            running: None,
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
            timeout,
        };
        (durability, task)
    }

    /// Returns once everything applied before the call is on disk, under
    /// `Always`; at once otherwise. Fails with `FlushTimedOut` rather than
    /// wait longer than twice the flush timeout (a flush already running
    /// when this one queued, then its own).
    pub async fn wait_durable(&self) -> Result<(), StoreError> {
        let Some(waiters_tx) = &self.waiters_tx else {
            return Ok(());
        };
        let (done_tx, done_rx) = oneshot::channel();
        if waiters_tx.send(done_tx).is_err() {
            return Err(stopped());
        }
        match tokio::time::timeout(self.timeout.saturating_mul(2), done_rx).await {
            Ok(Ok(flushed)) => flushed,
            Ok(Err(_)) => Err(stopped()),
            Err(_) => Err(StoreError::FlushTimedOut {
                timeout: self.timeout,
            }),
        }
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

fn stopped() -> StoreError {
    StoreError::Io(std::io::Error::other("the flusher stopped"))
}

/// A waiter's copy of a flush's outcome.
fn outcome(result: &Result<(), StoreError>) -> Result<(), StoreError> {
    result.as_ref().map_err(StoreError::copied).copied()
}

struct Flusher {
    store: Store,
    flushes: Arc<AtomicU64>,
    timeout: Duration,
    /// A flush that outlived its timeout and has not returned yet.
    running: Option<JoinHandle<Result<(), StoreError>>>,
}

impl Flusher {
    /// One flush for the waiters queued now, bounded by the timeout. A
    /// flush still stuck from before is waited on first (within the
    /// timeout) instead of starting another on top of it, which sled would
    /// only queue behind it; its success does not answer these waiters, as
    /// it began before their appends were applied, so a fresh flush follows.
    async fn flush(&mut self) -> Result<(), StoreError> {
        let started = std::time::Instant::now();
        let flushed = match self.running.take() {
            Some(stale) => match self.bounded(stale).await {
                Ok(()) => self.fresh().await,
                Err(err) => Err(err),
            },
            None => self.fresh().await,
        };
        crate::metrics::get().flush_took(started.elapsed());
        self.flushes.fetch_add(1, Ordering::Relaxed);
        flushed
    }

    async fn fresh(&mut self) -> Result<(), StoreError> {
        let store = self.store.clone();
        // Not `store::blocking`: a flush that times out is kept and awaited
        // again, so the handle itself is needed.
        self.bounded(tokio::task::spawn_blocking(move || store.flush()))
            .await
    }

    /// Waits for `running` within the timeout; one that outlives it stalls
    /// the store and is kept for the next flush to wait on.
    async fn bounded(
        &mut self,
        mut running: JoinHandle<Result<(), StoreError>>,
    ) -> Result<(), StoreError> {
        match tokio::time::timeout(self.timeout, &mut running).await {
            Ok(Ok(flushed)) => {
                self.store.health().unstall();
                flushed
            }
            Ok(Err(join)) => Err(StoreError::TaskFailed {
                detail: join.to_string(),
            }),
            Err(_) => {
                self.store.health().stall(format!(
                    "a flush has not finished within {:?}",
                    self.timeout
                ));
                self.running = Some(running);
                Err(StoreError::FlushTimedOut {
                    timeout: self.timeout,
                })
            }
        }
    }

    /// One flush per group of waiters: whoever queued while a flush ran
    /// shares the next one. Clients that append and wait in a loop come
    /// back together after their flush, but reach the queue one by one; the
    /// flusher waits (briefly) for as many as the last group held before it
    /// flushes, so a group does not split into many small ones. A lone
    /// client makes groups of one, so it never waits.
    async fn group_commit(
        mut self,
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
            if let Err(err) = &result
                && !matches!(err, StoreError::Failed { .. } | StoreError::Stalled { .. })
            {
                tracing::error!(error = %err, "flush failed; appends waiting on it fail");
            }
            for waiter in group {
                let _ = waiter.send(outcome(&result));
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
                let _ = waiter.send(outcome(&result));
            }
        }
    }

    async fn every(mut self, period: Duration, stop: CancellationToken) {
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                () = stop.cancelled() => break,
            }
            match self.flush().await {
                // Logged once, when the store failed.
                Ok(()) | Err(StoreError::Failed { .. } | StoreError::Stalled { .. }) => {}
                Err(err) => tracing::error!(error = %err, "periodic flush failed"),
            }
        }
    }
}

fn drain(waiters_rx: &mut mpsc::UnboundedReceiver<Waiter>, group: &mut Vec<Waiter>) {
    while let Ok(waiter) = waiters_rx.try_recv() {
        group.push(waiter);
    }
}
