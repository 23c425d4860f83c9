//! The sealer: one thread per store seals sessions' logs in the background
//! (`Store::seal_step`, see `store::seal`), off the async workers and the
//! committer. It takes sessions from a queue: an ended session soon after
//! it ends (all of its log), every session at start-up (an ended one not
//! yet sealed once the log check passed it, see `check`; an active one
//! past the threshold), and an active session
//! whose entries past its seal mark reach `active_after` bytes (the
//! committer queues it; see `nudge`). It seals an active log only up to
//! the counters it has published, which appends never rewrite, so it takes
//! no session lock: appends and followers never wait for it. Deleting a
//! session waits for at most one step (the store's seal lock).
//!
//! Each seal leaves dead space (the raw blocks it replaced): it wakes the
//! reclaimer (see `reclaim`), which gives it back on a thread of its own.
//!
//! Invariants: a session is in the queue at most once (`SealState::queued`);
//! only a checked log is sealed (`HandleState::log` set); the thread stops
//! between steps when asked, and a step in progress lands whole or not at
//! all (it is one sled batch).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use crate::store::schema::State;
use crate::store::{SealOutcome, SealTarget, Store};

use super::handle::SessionHandle;
use super::reclaim::{Reclaimer, Signal};

/// The default for `--seal-active-after`: an active session is sealed once
/// this many bytes of its entries are past its seal mark.
pub(crate) const DEFAULT_SEAL_ACTIVE_AFTER: u64 = 1 << 20;

enum Job {
    Seal(Arc<SessionHandle>),
    /// Answered once every job queued before it is done.
    Idle(mpsc::Sender<()>),
    Stop,
}

/// The sealer thread's handle, and the reclaimer's it wakes; `None` until
/// started.
#[derive(Debug, Default)]
pub(super) struct Sealer {
    /// Held through `start` and `stop`, so neither runs in the other's
    /// middle (where the sealer is gone but its reclaimer is not yet).
    lifecycle: Mutex<()>,
    running: Mutex<Option<Running>>,
    stopping: Arc<AtomicBool>,
    /// 0 until started: nothing is queued before then.
    active_after: AtomicU64,
    /// Sessions queued or being sealed.
    waiting: Arc<AtomicUsize>,
    reclaimer: Reclaimer,
}

/// The sealer's backlog at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SealBacklog {
    /// Sessions waiting to be sealed, or being sealed.
    pub sessions: usize,
    /// Whether it is giving sled's dead space back (`Store::reclaim`).
    pub reclaiming: bool,
}

#[derive(Debug)]
struct Running {
    jobs: mpsc::Sender<Job>,
    thread: std::thread::JoinHandle<()>,
}

impl Sealer {
    /// Starts the thread, and the reclaimer's, and queues `sessions` (those
    /// loaded at start-up).
    pub(super) fn start(
        &self,
        store: Store,
        active_after: u64,
        sessions: Vec<Arc<SessionHandle>>,
    ) -> std::io::Result<()> {
        let _lifecycle = self
            .lifecycle
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let mut running = self.lock();
        if running.is_some() {
            return Ok(());
        }
        self.stopping.store(false, Ordering::SeqCst);
        let (jobs, queue) = mpsc::channel();
        let stopping = self.stopping.clone();
        let waiting = self.waiting.clone();
        waiting.store(0, Ordering::SeqCst);
        self.reclaimer.start(store.clone(), waiting.clone())?;
        let reclaimer = self.reclaimer.signal().clone();
        let spawned = std::thread::Builder::new()
            .name("sealer".to_owned())
            .spawn(move || {
                run(
                    &store,
                    &queue,
                    &stopping,
                    &waiting,
                    &reclaimer,
                    active_after,
                );
            });
        let thread = match spawned {
            Ok(thread) => thread,
            Err(err) => {
                self.reclaimer.stop();
                return Err(err);
            }
        };
        for handle in sessions {
            handle.seal.queued.store(true, Ordering::SeqCst);
            self.waiting.fetch_add(1, Ordering::SeqCst);
            if jobs.send(Job::Seal(handle)).is_err() {
                self.waiting.fetch_sub(1, Ordering::SeqCst);
            }
        }
        self.active_after
            .store(active_after.max(1), Ordering::SeqCst);
        *running = Some(Running { jobs, thread });
        Ok(())
    }

    /// Queues `handle` unless it is queued already.
    pub(super) fn queue(&self, handle: &Arc<SessionHandle>) {
        if self.active_after.load(Ordering::SeqCst) == 0
            || handle.seal.queued.swap(true, Ordering::SeqCst)
        {
            return;
        }
        self.waiting.fetch_add(1, Ordering::SeqCst);
        match self.lock().as_ref() {
            Some(running) if running.jobs.send(Job::Seal(handle.clone())).is_ok() => {}
            _ => {
                self.waiting.fetch_sub(1, Ordering::SeqCst);
                handle.seal.queued.store(false, Ordering::SeqCst);
            }
        }
    }

    /// The reclaimer's signal (for tests).
    #[cfg(test)]
    pub(super) fn reclaimer(&self) -> &Arc<Signal> {
        self.reclaimer.signal()
    }

    /// What is left to do; nothing once stopped.
    pub(super) fn backlog(&self) -> SealBacklog {
        if self.lock().is_none() {
            return SealBacklog::default();
        }
        SealBacklog {
            sessions: self.waiting.load(Ordering::SeqCst),
            reclaiming: self.reclaimer.signal().reclaiming(),
        }
    }

    /// After an append: queues an active session whose unsealed entries
    /// reached the threshold. A few atomic loads when it has not.
    pub(super) fn nudge(&self, handle: &Arc<SessionHandle>, size_bytes: u64) {
        let active_after = self.active_after.load(Ordering::Relaxed);
        let sealed = handle.seal.sealed_bytes.load(Ordering::Relaxed);
        if active_after != 0 && size_bytes.saturating_sub(sealed) >= active_after {
            self.queue(handle);
        }
    }

    /// Waits until everything queued so far is sealed (for tests).
    /// Blocking.
    pub(super) fn wait_idle(&self) {
        let (done, idle) = mpsc::channel();
        let sent = self
            .lock()
            .as_ref()
            .is_some_and(|running| running.jobs.send(Job::Idle(done)).is_ok());
        if sent {
            let _ = idle.recv();
        }
    }

    /// Stops the thread after the step in progress, then the reclaimer
    /// after its turn, and waits for both. Blocking.
    pub(super) fn stop(&self) {
        let _lifecycle = self
            .lifecycle
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        self.stopping.store(true, Ordering::SeqCst);
        self.active_after.store(0, Ordering::SeqCst);
        let running = self.lock().take();
        if let Some(running) = running {
            let _ = running.jobs.send(Job::Stop);
            if running.thread.join().is_err() {
                tracing::warn!("the sealer thread panicked");
            }
        }
        self.reclaimer.stop();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Running>> {
        self.running
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

fn run(
    store: &Store,
    queue: &mpsc::Receiver<Job>,
    stopping: &AtomicBool,
    waiting: &AtomicUsize,
    reclaimer: &Signal,
    active_after: u64,
) {
    loop {
        let handle = match queue.recv() {
            Ok(Job::Seal(handle)) => handle,
            Ok(Job::Idle(done)) => {
                let _ = done.send(());
                continue;
            }
            Ok(Job::Stop) | Err(_) => return,
        };
        if stopping.load(Ordering::SeqCst) {
            return;
        }
        if let Err(err) = seal(store, &handle, stopping, active_after) {
            tracing::warn!(session = %handle.id, error = %err, "sealing a session's log failed");
        }
        handle.seal.queued.store(false, Ordering::SeqCst);
        // The reclaimer is marked busy before the session leaves the
        // backlog, so the two never read idle together in between.
        reclaimer.dirty();
        waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Seals `handle`'s log: all of it once ended, else (when it is past the
/// threshold) up to its published counters. Not before the log was checked
/// (see `check`): sealing rewrites blocks, which must not carry damage
/// further, and the check queues the log again once it passes.
fn seal(
    store: &Store,
    handle: &SessionHandle,
    stopping: &AtomicBool,
    active_after: u64,
) -> Result<(), crate::store::StoreError> {
    let (counters, ended) = {
        let state = handle.state();
        if state.deleted || state.log.is_none() {
            return Ok(());
        }
        (state.counters, state.record.state() != State::Active)
    };
    let mut target = SealTarget {
        through_seq: counters.last_seq,
        size_bytes: counters.size_bytes,
        min_unsealed: if ended { 1 } else { active_after },
    };
    let (mut steps, mut before, mut after) = (0usize, 0usize, 0usize);
    while !stopping.load(Ordering::SeqCst) {
        let alive = || !handle.state().deleted;
        match store.seal_step(&handle.id, target, alive)? {
            SealOutcome::Step(step) => {
                handle
                    .seal
                    .sealed_bytes
                    .store(step.mark.through_bytes, Ordering::Relaxed);
                steps += usize::from(step.blocks_sealed > 0);
                crate::metrics::get().sealed(step.bytes_before, step.bytes_after);
                before += step.bytes_before;
                after += step.bytes_after;
                target.min_unsealed = 1;
            }
            SealOutcome::Done(mark) => {
                handle
                    .seal
                    .sealed_bytes
                    .store(mark.through_bytes, Ordering::Relaxed);
                break;
            }
            SealOutcome::Gone => break,
        }
    }
    if steps > 0 {
        tracing::debug!(
            session = %handle.id,
            through_seq = target.through_seq,
            seal_steps = steps,
            bytes_before = before,
            bytes_after = after,
            "sealed"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::sessions::{AppendBatch, SessionManager, test_manager};
    use crate::store::schema::{StoredEntry, StoredSession};
    use crate::store::{MAX_SEQ, NewEntry, SealMark, decode_entry};

    async fn start(sessions: &SessionManager) -> String {
        sessions
            .start(StoredSession::default())
            .await
            .expect("start")
            .record
            .id
    }

    async fn append(sessions: &SessionManager, id: &str, batch: usize) {
        let entries = (0..100)
            .map(|i| {
                NewEntry::Decoded(StoredEntry {
                    message: format!("batch {batch} line {i}: GET /api/items/{i} 200"),
                    ..StoredEntry::default()
                })
            })
            .collect();
        sessions
            .append(AppendBatch {
                session_id: id.to_owned(),
                entries,
                ..AppendBatch::default()
            })
            .await
            .expect("append");
    }

    fn mark(sessions: &SessionManager, id: &str) -> SealMark {
        let log = sessions.store().open_log(id).expect("log");
        log.seal_mark().expect("mark")
    }

    fn seqs(sessions: &SessionManager, id: &str) -> Vec<u64> {
        let log = sessions.store().open_log(id).expect("log");
        log.scan(0, MAX_SEQ)
            .map(|item| {
                let (seq, bytes) = item.expect("scan");
                assert_eq!(decode_entry(&bytes).expect("decodes").seq, seq);
                seq
            })
            .collect()
    }

    async fn idle(sessions: &SessionManager) {
        let sessions = sessions.clone();
        tokio::task::spawn_blocking(move || sessions.wait_sealer_idle())
            .await
            .expect("waits");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ended_sessions_seal_whole_and_active_ones_past_the_threshold() {
        let dir = tempfile::tempdir().expect("temp dir");
        let sessions = test_manager(dir.path());
        let (active, ended, quiet) = (
            start(&sessions).await,
            start(&sessions).await,
            start(&sessions).await,
        );
        sessions.start_sealer(32 * 1024).expect("sealer");
        for batch in 0..20 {
            append(&sessions, &active, batch).await;
            append(&sessions, &ended, batch).await;
        }
        append(&sessions, &quiet, 0).await;
        idle(&sessions).await;
        let sealed = mark(&sessions, &active);
        assert!(
            sealed.through_seq > 0,
            "an active session past the threshold"
        );
        assert_eq!(mark(&sessions, &quiet), SealMark::default());
        let last = sessions.end(&ended, "done").await.expect("end").counters;
        idle(&sessions).await;
        assert_eq!(
            mark(&sessions, &ended),
            SealMark {
                through_seq: last.last_seq,
                through_bytes: last.size_bytes
            }
        );
        assert_eq!(
            seqs(&sessions, &ended),
            (1..=last.last_seq).collect::<Vec<_>>()
        );
        assert_eq!(seqs(&sessions, &active), (1..=2000).collect::<Vec<_>>());
        // Deleting a session queued for sealing: nothing comes back.
        sessions.end(&active, "done").await.expect("end");
        sessions.delete(&active, false).await.expect("delete");
        idle(&sessions).await;
        assert!(sessions.get(&active).is_err());
        sessions.stop_sealer();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_sealer_started_again_after_a_stop_seals() {
        let dir = tempfile::tempdir().expect("temp dir");
        let sessions = test_manager(dir.path());
        sessions.start_sealer(1 << 20).expect("sealer");
        sessions.stop_sealer();
        sessions.start_sealer(1 << 20).expect("sealer again");
        let id = start(&sessions).await;
        append(&sessions, &id, 0).await;
        let last = sessions.end(&id, "done").await.expect("end").counters;
        idle(&sessions).await;
        assert_eq!(mark(&sessions, &id).through_seq, last.last_seq);
        assert_eq!(sessions.seal_backlog().sessions, 0);
        sessions.stop_sealer();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn start_up_seals_the_ended_sessions_left_unsealed_once_checked() {
        let dir = tempfile::tempdir().expect("temp dir");
        let id = {
            let sessions = test_manager(dir.path());
            let id = start(&sessions).await;
            for batch in 0..5 {
                append(&sessions, &id, batch).await;
            }
            sessions.end(&id, "done").await.expect("end");
            assert_eq!(mark(&sessions, &id), SealMark::default());
            sessions.store().flush().expect("flush");
            id
        };
        let sessions = test_manager(dir.path());
        sessions.start_sealer(1 << 20).expect("sealer");
        idle(&sessions).await;
        // Not before the log check has passed its log.
        assert_eq!(mark(&sessions, &id), SealMark::default());
        sessions.start_log_check().expect("log check");
        let checking = sessions.clone();
        tokio::task::spawn_blocking(move || checking.wait_log_check())
            .await
            .expect("waited");
        idle(&sessions).await;
        assert_eq!(mark(&sessions, &id).through_seq, 501);
        assert_eq!(seqs(&sessions, &id), (1..=501).collect::<Vec<_>>());
        sessions.stop_sealer();
    }
}
