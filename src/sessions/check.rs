//! The log check: start-up loads ended sessions without reading their logs
//! (see `store::load_sessions`), and once the server is SERVING one thread,
//! `log-check`, walks them in id order and checks each log against its
//! counters (`SessionHandle::check_locked`, under the session's write lock:
//! the same path a read that gets there first takes), then queues it for
//! sealing, which seals only checked logs. A log that fails is marked
//! damaged there, with its error line.
//!
//! Invariants: the thread holds at most one session's lock, for one check
//! (two block reads); it stops between sessions when asked, and must be
//! stopped before the shutdown counters are saved (they are not saved
//! while any session's lock is held); it holds the manager only weakly,
//! so dropping the manager ends it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use super::handle::SessionHandle;
use super::{Inner, SessionError};

/// The check thread's handle; `None` until started and once stopped.
#[derive(Debug, Default)]
pub(super) struct LogChecker {
    running: Mutex<Option<std::thread::JoinHandle<()>>>,
    stopping: Arc<AtomicBool>,
}

impl LogChecker {
    /// Starts the thread on `sessions` (the ended ones loaded at start-up;
    /// any a read checked already are passed over quickly).
    pub(super) fn start(
        &self,
        inner: Weak<Inner>,
        sessions: Vec<Arc<SessionHandle>>,
    ) -> std::io::Result<()> {
        let mut running = self.lock();
        if running.is_some() || sessions.is_empty() {
            return Ok(());
        }
        let stopping = self.stopping.clone();
        let thread = std::thread::Builder::new()
            .name("log-check".to_owned())
            .spawn(move || run(&inner, &sessions, &stopping))?;
        *running = Some(thread);
        Ok(())
    }

    /// Stops the thread after the session in progress, and waits for it.
    /// Blocking (one check at most).
    pub(super) fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let running = self.lock().take();
        if let Some(thread) = running
            && thread.join().is_err()
        {
            tracing::warn!("the log check thread panicked");
        }
    }

    /// Whether the thread has walked every session (or was never needed).
    pub(super) fn is_done(&self) -> bool {
        self.lock()
            .as_ref()
            .is_none_or(|thread| thread.is_finished())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<std::thread::JoinHandle<()>>> {
        // Guards only the handle: a panic while it was held leaves nothing
        // to fix.
        self.running
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

fn run(inner: &Weak<Inner>, sessions: &[Arc<SessionHandle>], stopping: &AtomicBool) {
    let started = Instant::now();
    let (mut passed, mut damaged) = (0usize, 0usize);
    for handle in sessions {
        if stopping.load(Ordering::SeqCst) {
            return;
        }
        // Upgraded per session: the manager may be dropped meanwhile.
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let checked = {
            let _writing = handle.write_lock.blocking_lock();
            handle.check_locked(&inner.store)
        };
        match checked {
            Ok(_) => {
                passed += 1;
                inner.sealer.queue(handle);
            }
            Err(SessionError::Damaged { .. }) => damaged += 1,
            // Deleted since start-up.
            Err(SessionError::NotFound { .. }) => {}
            Err(err) => tracing::warn!(
                session = %handle.id,
                error = %err,
                "checking a stored session's log failed; it is checked again when read"
            ),
        }
    }
    tracing::info!(
        sessions = passed,
        damaged,
        check_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        "checked the stored sessions' logs"
    );
}
