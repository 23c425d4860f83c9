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
//! Between jobs, and every second when idle, it gives sled's dead space
//! back for reuse (`Store::reclaim`, in turns of at most
//! `RECLAIM_BUDGET`, each followed by as long for seals if any are
//! queued, or by `RECLAIM_BUDGET` once they fall behind). While that goes
//! on it also punches free segments as soon as a few pile up between the
//! store's flushes (`Store::punch_piled_up_free_segments`); once seals
//! pause, a settling turn has the segments drained last freed
//! (`GiveBack::Settle`).
//!
//! Invariants: a session is in the queue at most once (`SealState::queued`);
//! only a checked log is sealed (`HandleState::log` set); the thread stops
//! between steps when asked, and a step in progress lands whole or not at
//! all (it is one sled batch).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::store::schema::State;
use crate::store::{GiveBack, SealOutcome, SealTarget, Store};

use super::handle::SessionHandle;

/// The default for `--seal-active-after`: an active session is sealed once
/// this many bytes of its entries are past its seal mark.
pub(crate) const DEFAULT_SEAL_ACTIVE_AFTER: u64 = 1 << 20;

/// How often an idle sealer gives sled's dead space back for reuse
/// (`Store::reclaim`), and how long one turn may take: sled's own flusher
/// spends up to half of its 500 ms period on it. A busy one punches the
/// free segments at least every `RECLAIM_EVERY` too.
const RECLAIM_EVERY: Duration = Duration::from_secs(1);
const RECLAIM_BUDGET: Duration = Duration::from_millis(100);
/// How often a busy sealer waiting for jobs looks for free segments piled
/// up (`Store::punch_piled_up_free_segments`).
const PILE_CHECK_EVERY: Duration = Duration::from_millis(20);
/// Sessions waiting to be sealed past which turns wait `RECLAIM_BUDGET`
/// between them, not just as long as the last one took.
const SEALS_BEHIND: usize = 32;
/// How long no seal must come before a turn settles (`GiveBack::Settle`).
const SETTLE_AFTER: Duration = Duration::from_millis(50);

enum Job {
    Seal(Arc<SessionHandle>),
    /// Answered once every job queued before it is done.
    Idle(mpsc::Sender<()>),
    Stop,
}

/// The sealer thread's handle; `None` until started.
#[derive(Debug, Default)]
pub(super) struct Sealer {
    running: Mutex<Option<Running>>,
    stopping: Arc<AtomicBool>,
    /// 0 until started: nothing is queued before then.
    active_after: AtomicU64,
    backlog: Arc<Backlog>,
}

/// What the sealer has yet to do, for the metrics.
#[derive(Debug, Default)]
struct Backlog {
    /// Sessions queued or being sealed.
    sessions: AtomicUsize,
    /// Set during a turn of reclaiming, and between turns while the last
    /// one ran out of budget or a seal since may have left dead space.
    reclaiming: AtomicBool,
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
    /// Starts the thread and queues `sessions` (those loaded at start-up).
    pub(super) fn start(
        &self,
        store: Store,
        active_after: u64,
        sessions: Vec<Arc<SessionHandle>>,
    ) -> std::io::Result<()> {
        let mut running = self.lock();
        if running.is_some() {
            return Ok(());
        }
        let (jobs, queue) = mpsc::channel();
        let stopping = self.stopping.clone();
        let backlog = self.backlog.clone();
        backlog.sessions.store(0, Ordering::SeqCst);
        backlog.reclaiming.store(true, Ordering::SeqCst);
        let thread = std::thread::Builder::new()
            .name("sealer".to_owned())
            .spawn(move || run(&store, &queue, &stopping, &backlog, active_after))?;
        for handle in sessions {
            handle.seal.queued.store(true, Ordering::SeqCst);
            self.backlog.sessions.fetch_add(1, Ordering::SeqCst);
            if jobs.send(Job::Seal(handle)).is_err() {
                self.backlog.sessions.fetch_sub(1, Ordering::SeqCst);
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
        self.backlog.sessions.fetch_add(1, Ordering::SeqCst);
        match self.lock().as_ref() {
            Some(running) if running.jobs.send(Job::Seal(handle.clone())).is_ok() => {}
            _ => {
                self.backlog.sessions.fetch_sub(1, Ordering::SeqCst);
                handle.seal.queued.store(false, Ordering::SeqCst);
            }
        }
    }

    /// What is left to do; nothing once stopped.
    pub(super) fn backlog(&self) -> SealBacklog {
        if self.lock().is_none() {
            return SealBacklog::default();
        }
        SealBacklog {
            sessions: self.backlog.sessions.load(Ordering::SeqCst),
            reclaiming: self.backlog.reclaiming.load(Ordering::SeqCst),
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

    /// Stops the thread after the step in progress, and waits for it.
    /// Blocking.
    pub(super) fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.active_after.store(0, Ordering::SeqCst);
        let running = self.lock().take();
        if let Some(running) = running {
            let _ = running.jobs.send(Job::Stop);
            if running.thread.join().is_err() {
                tracing::warn!("the sealer thread panicked");
            }
        }
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
    backlog: &Backlog,
    active_after: u64,
) {
    // Recovery, and every seal, may leave segments queued for cleaning.
    let mut collecting = true;
    // Whether a settling turn ran since the last seal: one that, with no
    // page left to move, has the segments drained last freed even if the
    // log stopped (`GiveBack::Settle`). It waits until no seal came for
    // `SETTLE_AFTER`: while seals keep coming the log moves on by itself,
    // and ending its segment early at every turn would cost a sync and
    // leave a padded segment to drain in turn.
    let mut settled = false;
    let mut last_seal = Instant::now();
    // When the next turn may start: a turn is followed by as long for
    // seals while they keep coming, so collection takes at most half of
    // the thread's time when both have work. Only as long: under churn
    // segments turn mostly dead many times a second, and a fixed
    // `RECLAIM_BUDGET` after turns of a few milliseconds left 15 to 45 of
    // them allocated, waiting, before each turn.
    let mut next_turn = Instant::now();
    // Free segments go back at least this often while collecting, whatever
    // the flushes do (see `GiveBack::Punch`).
    let mut last_punch = Instant::now();
    loop {
        backlog
            .reclaiming
            .store(collecting || !settled, Ordering::SeqCst);
        let now = Instant::now();
        let settle_at = last_seal + SETTLE_AFTER;
        let turn = if collecting && now >= next_turn {
            Some(if last_punch.elapsed() >= RECLAIM_EVERY {
                GiveBack::Punch
            } else {
                GiveBack::Leave
            })
        } else if !collecting && !settled && now >= settle_at {
            Some(GiveBack::Settle)
        } else {
            None
        };
        if let Some(give_back) = turn {
            if stopping.load(Ordering::SeqCst) {
                return;
            }
            let started = Instant::now();
            collecting = reclaim(store, give_back, &mut last_punch);
            settled |= give_back == GiveBack::Settle && !collecting;
            punch_piled_up(store);
            // Seals come first once they fall behind: a session left
            // unsealed keeps its raw blocks, many times its sealed size,
            // which collection would only move around.
            let took = started.elapsed();
            let spacing = if backlog.sessions.load(Ordering::SeqCst) > SEALS_BEHIND {
                took.max(RECLAIM_BUDGET)
            } else {
                took
            };
            next_turn = Instant::now() + spacing;
            continue;
        }
        // While busy, the wait for a job is cut short to look at the free
        // segments the last turn's drained segments became.
        let wait = if collecting {
            (next_turn - now).min(PILE_CHECK_EVERY)
        } else if !settled {
            (settle_at - now).min(PILE_CHECK_EVERY)
        } else {
            RECLAIM_EVERY
        };
        let handle = match queue.recv_timeout(wait) {
            Ok(Job::Seal(handle)) => handle,
            Ok(Job::Idle(done)) => {
                let _ = done.send(());
                continue;
            }
            Ok(Job::Stop) | Err(RecvTimeoutError::Disconnected) => return,
            Err(RecvTimeoutError::Timeout) if collecting || !settled => {
                punch_piled_up(store);
                // No seal waits: the next turn need not wait for one.
                next_turn = Instant::now();
                continue;
            }
            Err(RecvTimeoutError::Timeout) => {
                // Idle: a settling turn every `RECLAIM_EVERY` (writes,
                // deletes and pruning free space without a seal).
                settled = false;
                continue;
            }
        };
        if stopping.load(Ordering::SeqCst) {
            return;
        }
        if let Err(err) = seal(store, &handle, stopping, active_after) {
            tracing::warn!(session = %handle.id, error = %err, "sealing a session's log failed");
        }
        punch_piled_up(store);
        handle.seal.queued.store(false, Ordering::SeqCst);
        collecting = true;
        settled = false;
        last_seal = Instant::now();
        // Reclaiming is marked before the session leaves the backlog, so
        // the backlog never reads empty between the two.
        backlog.reclaiming.store(true, Ordering::SeqCst);
        backlog.sessions.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One turn of `Store::reclaim`; whether there is more to do. None while
/// the store has failed or stalled (its health says why, once).
fn reclaim(store: &Store, give_back: GiveBack, last_punch: &mut Instant) -> bool {
    if store.health().failure().is_some() {
        return false;
    }
    match store.reclaim(RECLAIM_BUDGET, give_back) {
        Ok(done) => {
            if done.punched {
                *last_punch = Instant::now();
            }
            if done.pages > 0 || done.segments > 0 {
                tracing::trace!(
                    pages = done.pages,
                    segments = done.segments,
                    "relocated sled pages out of mostly dead segments and gave free segments back"
                );
            }
            done.more
        }
        Err(err) => {
            tracing::warn!(error = %err, "giving sled's dead space back failed");
            false
        }
    }
}

/// Gives back the blocks of free segments once enough of them pile up
/// between the flushes' syncs (see `Store::punch_piled_up_free_segments`).
fn punch_piled_up(store: &Store) {
    if store.health().failure().is_some() {
        return;
    }
    if let Err(err) = store.punch_piled_up_free_segments() {
        tracing::warn!(error = %err, "giving free segments back failed");
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
