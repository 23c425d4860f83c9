//! The reclaimer: one thread per store gives sled's dead space back
//! (`Store::reclaim`) beside the sealer's, so neither waits for the other.
//! On one thread, seals and relocation shared its time: under churn the
//! sealer was busy most of it, and each pause of a flush piled up both
//! sessions left unsealed (their raw blocks, several times their sealed
//! size) and segments left draining, for a data dir at up to 3x the
//! compressed data it held.
//!
//! It runs a turn of at most `RECLAIM_BUDGET` whenever a seal may have
//! left dead space (`Signal::dirty`), each followed by as long as it took
//! (at most half of a core, shared with appends and seals), and by
//! `RECLAIM_BUDGET` at least once seals fall far behind (`SEALS_BEHIND`).
//! While there is work it punches free segments as soon as a few pile up
//! between the store's flushes (`Store::punch_piled_up_free_segments`,
//! looked for every `PILE_CHECK_EVERY`). Once no seal came for
//! `SETTLE_AFTER` and none is queued, a settling turn has the segments
//! drained last freed (`GiveBack::Settle`); an idle store gets one every
//! `RECLAIM_EVERY`, for what writes, deletes and pruning left.
//!
//! Invariant: `Signal::reclaiming` reads false only while no turn runs and
//! none is due; it is set with the wake-up, under the same lock, so a
//! signalled seal is never reported idle before its turn.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::store::{GiveBack, Store};

/// How often an idle store gets a settling turn, and how long one turn
/// may take: sled's own flusher spends up to half of its 500 ms period on
/// it. A busy one punches the free segments at least every
/// `RECLAIM_EVERY` too.
const RECLAIM_EVERY: Duration = Duration::from_secs(1);
const RECLAIM_BUDGET: Duration = Duration::from_millis(100);
/// How often a busy reclaimer waiting for work looks for free segments
/// piled up (`Store::punch_piled_up_free_segments`).
const PILE_CHECK_EVERY: Duration = Duration::from_millis(20);
/// Sessions waiting to be sealed past which turns are followed by
/// `RECLAIM_BUDGET`, or as long as they took if longer: seals come first
/// once they fall behind (a session left unsealed keeps its raw blocks,
/// which collection would only move around; with no such floor on one
/// thread, sealing once fell 1,000 sessions behind).
const SEALS_BEHIND: usize = 32;
/// How long no seal must come before a turn settles (`GiveBack::Settle`).
const SETTLE_AFTER: Duration = Duration::from_millis(50);

/// What the sealer tells the reclaimer, and what the metrics read.
#[derive(Debug, Default)]
pub(super) struct Signal {
    wake: Mutex<Wake>,
    woken: Condvar,
    /// Notified after each settling turn (for tests).
    settled: Condvar,
    reclaiming: AtomicBool,
}

#[derive(Debug, Default)]
struct Wake {
    /// A seal landed since the reclaimer last looked.
    dirty: bool,
    stop: bool,
    /// Settling turns run so far.
    settling_turns: u64,
}

impl Signal {
    /// A seal landed: its dead space is to be given back. Marks the
    /// reclaimer busy before returning.
    pub(super) fn dirty(&self) {
        let mut wake = self.lock();
        wake.dirty = true;
        self.reclaiming.store(true, Ordering::SeqCst);
        self.woken.notify_one();
    }

    /// Whether it is giving sled's dead space back, or will be shortly.
    pub(super) fn reclaiming(&self) -> bool {
        self.reclaiming.load(Ordering::SeqCst)
    }

    /// Waits for a settling turn after the `after`th, at most `timeout`;
    /// how many have run. Blocking; for tests.
    #[cfg(test)]
    fn wait_settling_turn(&self, after: u64, timeout: Duration) -> u64 {
        let (wake, _) = self
            .settled
            .wait_timeout_while(self.lock(), timeout, |wake| wake.settling_turns <= after)
            .unwrap_or_else(|poison| poison.into_inner());
        wake.settling_turns
    }

    fn lock(&self) -> MutexGuard<'_, Wake> {
        self.wake
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

/// The reclaimer thread's handle; `None` until started.
#[derive(Debug, Default)]
pub(super) struct Reclaimer {
    signal: Arc<Signal>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Reclaimer {
    pub(super) fn signal(&self) -> &Arc<Signal> {
        &self.signal
    }

    /// Starts the thread; `seals_waiting` is the sealer's backlog.
    pub(super) fn start(
        &self,
        store: Store,
        seals_waiting: Arc<AtomicUsize>,
    ) -> std::io::Result<()> {
        let mut thread = self.lock();
        if thread.is_some() {
            return Ok(());
        }
        let signal = self.signal.clone();
        {
            let mut wake = signal.lock();
            wake.stop = false;
            wake.dirty = false;
        }
        signal.reclaiming.store(true, Ordering::SeqCst);
        *thread = Some(
            std::thread::Builder::new()
                .name("reclaimer".to_owned())
                .spawn(move || run(&store, &signal, &seals_waiting))?,
        );
        Ok(())
    }

    /// Stops the thread after the turn in progress, and waits for it.
    /// Blocking.
    pub(super) fn stop(&self) {
        let thread = self.lock().take();
        if let Some(thread) = thread {
            {
                let mut wake = self.signal.lock();
                wake.stop = true;
                self.signal.woken.notify_one();
            }
            if thread.join().is_err() {
                tracing::warn!("the reclaimer thread panicked");
            }
        }
        self.signal.reclaiming.store(false, Ordering::SeqCst);
    }

    fn lock(&self) -> MutexGuard<'_, Option<std::thread::JoinHandle<()>>> {
        self.thread
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

fn run(store: &Store, signal: &Signal, seals_waiting: &AtomicUsize) {
    // Recovery, and every seal, may leave segments queued for cleaning.
    let mut collecting = true;
    // Whether a settling turn ran since the last seal: one that, with no
    // page left to move, has the segments drained last freed even if the
    // log stopped (`GiveBack::Settle`). It waits until no seal came for
    // `SETTLE_AFTER` and none is queued: while seals keep coming the log
    // moves on by itself, and ending its segment early at every turn
    // would cost syncs (a few per round, up to three rounds) and leave a
    // padded segment to drain in turn. A seal can take longer than
    // `SETTLE_AFTER` under load, so the quiet alone is not enough.
    let mut settled = false;
    let mut last_seal = Instant::now();
    let mut next_turn = Instant::now();
    // Free segments go back at least this often while collecting, whatever
    // the flushes do (see `GiveBack::Punch`).
    let mut last_punch = Instant::now();
    // Free segments piled up between the flushes are looked for at least
    // this often while there is work, however often seals wake it.
    let mut last_pile_check = Instant::now();
    loop {
        let give_back = {
            let mut wake = signal.lock();
            if wake.stop {
                return;
            }
            let now = Instant::now();
            if std::mem::take(&mut wake.dirty) {
                collecting = true;
                settled = false;
                last_seal = now;
            }
            signal
                .reclaiming
                .store(collecting || !settled, Ordering::SeqCst);
            let settle_at = last_seal + SETTLE_AFTER;
            if collecting && now >= next_turn {
                if last_punch.elapsed() >= RECLAIM_EVERY {
                    GiveBack::Punch
                } else {
                    GiveBack::Leave
                }
            } else if !collecting
                && !settled
                && now >= settle_at
                && seals_waiting.load(Ordering::SeqCst) == 0
            {
                GiveBack::Settle
            } else {
                let wait = if collecting {
                    (next_turn - now).min(PILE_CHECK_EVERY)
                } else if !settled {
                    // Past `settle_at` only while seals are queued: the
                    // next one's landing wakes it.
                    match settle_at.saturating_duration_since(now) {
                        Duration::ZERO => PILE_CHECK_EVERY,
                        until => until.min(PILE_CHECK_EVERY),
                    }
                } else {
                    RECLAIM_EVERY
                };
                let (wake, waited) = signal
                    .woken
                    .wait_timeout(wake, wait)
                    .unwrap_or_else(|poison| poison.into_inner());
                let timed_out = waited.timed_out() && !wake.dirty && !wake.stop;
                drop(wake);
                if collecting || !settled {
                    if last_pile_check.elapsed() >= PILE_CHECK_EVERY {
                        punch_piled_up(store);
                        last_pile_check = Instant::now();
                    }
                } else if timed_out {
                    // Idle: a settling turn every `RECLAIM_EVERY` (writes,
                    // deletes and pruning free space without a seal).
                    settled = false;
                }
                continue;
            }
        };
        let started = Instant::now();
        collecting = reclaim(store, give_back, &mut last_punch);
        punch_piled_up(store);
        last_pile_check = Instant::now();
        if give_back == GiveBack::Settle {
            settled = !collecting;
            signal.lock().settling_turns += 1;
            signal.settled.notify_all();
        }
        // A turn is followed by as long as it took: collection takes at
        // most half of a core, which the appends and the sealer share.
        let took = started.elapsed();
        next_turn = if seals_waiting.load(Ordering::SeqCst) > SEALS_BEHIND {
            Instant::now() + took.max(RECLAIM_BUDGET)
        } else {
            Instant::now() + took
        };
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::sessions::{AppendBatch, SessionManager, test_manager};
    use crate::store::schema::{StoredEntry, StoredSession};
    use crate::store::{NewEntry, dir_bytes};

    /// The blocks allocated to the files under `dir` (sled's has holes).
    fn allocated(dir: &std::path::Path) -> u64 {
        dir_bytes(dir).1
    }

    /// 160 hex digits of a mixed `seed`: text that compresses about 2x.
    fn noise(seed: u64) -> String {
        let mut word = seed;
        (0..10)
            .map(|_| {
                word = (word ^ word >> 31).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5851_F42D;
                format!("{word:016x}")
            })
            .collect()
    }

    /// A session of 1,000 entries of about 200 bytes that compress about
    /// 2x, ended.
    async fn ended_session(sessions: &SessionManager, n: u64) -> String {
        let id = sessions
            .start(StoredSession::default())
            .await
            .expect("start")
            .record
            .id;
        for batch in 0..10u64 {
            let entries = (0..100u64)
                .map(|i| {
                    let seed = n << 32 | batch << 16 | i;
                    NewEntry::Decoded(StoredEntry {
                        message: format!("GET /items/{i} 200 {}", noise(seed)),
                        ..StoredEntry::default()
                    })
                })
                .collect();
            sessions
                .append(AppendBatch {
                    session_id: id.clone(),
                    entries,
                    ..AppendBatch::default()
                })
                .await
                .expect("append");
        }
        sessions.end(&id, "done").await.expect("end");
        id
    }

    /// The next settling turn after the `after`th; how many have run.
    async fn settling_turn(sessions: &SessionManager, after: u64) -> u64 {
        let signal = sessions.inner.sealer.reclaimer().clone();
        let turns = tokio::task::spawn_blocking(move || {
            signal.wait_settling_turn(after, Duration::from_secs(30))
        })
        .await
        .expect("waited");
        assert!(
            turns > after,
            "no settling turn in 30 s after the {after}th"
        );
        turns
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_reclaimer_gives_back_what_seals_and_deletes_leave() {
        let dir = tempfile::tempdir().expect("temp dir");
        let sessions = test_manager(dir.path());
        sessions.start_sealer(1 << 20).expect("sealer");
        let mut ids = Vec::new();
        for n in 0..80 {
            ids.push(ended_session(&sessions, n).await);
        }
        let waiting = sessions.clone();
        tokio::task::spawn_blocking(move || waiting.wait_sealer_idle())
            .await
            .expect("waited");
        // Once the seals' dead space is given back, deleting nine in ten
        // sessions frees most of what is left. A loaded machine may need
        // more than one settling turn for either (see `Store::settle`).
        let signal = sessions.inner.sealer.reclaimer().clone();
        // Two turns: one may have started before the last seal landed.
        let before = signal.lock().settling_turns;
        let mut turns = settling_turn(&sessions, before + 1).await;
        let full = allocated(dir.path());
        for id in &ids[8..] {
            sessions.delete(id, false).await.expect("delete");
        }
        loop {
            turns = settling_turn(&sessions, turns).await;
            let now = allocated(dir.path());
            let usage = sessions.store().segment_usage();
            if now < full / 2 && usage.unpunched == 0 {
                break;
            }
            assert!(
                turns < before + 10,
                "{full} bytes allocated before the deletes, {now} after {turns} settling turns; {usage:?}"
            );
        }
        sessions.stop_sealer();
    }
}
