//! One session in memory: its record, its log counters and the lock that is
//! the session's single serialization point. Every change to the session
//! (append, update, end, delete) holds `write_lock`, so seqs are assigned in
//! commit order and are contiguous. Readers never take it: they copy a
//! snapshot and read the store up to the snapshot's `last_seq`, which is only
//! raised after a batch is fully applied, so no reader sees half a batch.
//!
//! No entry of a session is served before its log was checked against its
//! counters: an active session's at start-up, an ended one's (loaded
//! unchecked, see `store::load_sessions`) by `check_locked`, under the
//! write lock, on its first read or by the background check, whichever
//! comes first. `HandleState::log` is `Some` exactly when the log has
//! passed (and the session is not deleted); a log that fails is marked
//! damaged for good and every read of it is refused with `Damaged`.

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use crate::fanout::{Progress, ProgressSignal};
use crate::store::schema::{LogCounters, State, StoredSession};
use crate::store::{LogCheck, LogTree, Store};

use super::{SessionError, blocking};

/// A session's in-memory state. No entries are kept here.
#[derive(Debug)]
pub(crate) struct SessionHandle {
    pub(crate) id: String,
    /// The serialization point for every write to this session; shared so
    /// that a write's blocking work can own its guard.
    pub(crate) write_lock: Arc<tokio::sync::Mutex<()>>,
    /// Where sealing stands (see `seal`); touched by no lock.
    pub(crate) seal: SealState,
    state: Mutex<HandleState>,
}

/// A session's part in sealing (`seal`, which alone uses it).
#[derive(Debug, Default)]
pub(crate) struct SealState {
    /// In the sealer's queue, or being sealed.
    pub(super) queued: AtomicBool,
    /// The log's `size_bytes` at its seal mark, as last seen.
    pub(super) sealed_bytes: AtomicU64,
}

#[derive(Debug)]
pub(crate) struct HandleState {
    pub(crate) record: StoredSession,
    pub(crate) counters: LogCounters,
    /// Open, and checked, while active; for an ended session loaded at
    /// start-up, `None` until `check_locked` passes it.
    pub(crate) log: Option<LogTree>,
    /// What is wrong with the log, once its check failed; never cleared.
    pub(crate) damaged: Option<String>,
    pub(crate) deleted: bool,
    pub(crate) lease_expires_at: Option<SystemTime>,
    /// Followers' signal; publish after every change to the fields above.
    pub(crate) signal: ProgressSignal,
}

impl HandleState {
    pub(crate) fn progress(&self) -> Progress {
        Progress {
            last_seq: self.counters.last_seq,
            ended: self.record.state() != State::Active,
            deleted: self.deleted,
        }
    }

    pub(crate) fn view(&self) -> SessionView {
        SessionView {
            record: self.record.clone(),
            counters: self.counters,
            lease_expires_at: self.lease_expires_at,
        }
    }

    /// Tells followers about the current state.
    pub(crate) fn publish(&mut self) {
        let progress = self.progress();
        self.signal.publish(progress);
    }

    /// Tells followers about the current state, which includes the batch
    /// `entries` (as stored, under seqs from `first_seq`) just applied,
    /// and gives them the batch from memory.
    pub(crate) fn publish_batch(&mut self, first_seq: u64, entries: Vec<sled::IVec>) {
        let progress = self.progress();
        self.signal.publish_batch(progress, first_seq, entries);
    }
}

/// A consistent copy of what a session looks like now.
#[derive(Debug, Clone)]
pub struct SessionView {
    pub record: StoredSession,
    pub counters: LogCounters,
    pub lease_expires_at: Option<SystemTime>,
}

impl SessionView {
    pub fn is_active(&self) -> bool {
        self.record.state() == State::Active
    }
}

impl SessionHandle {
    pub(crate) fn new(record: StoredSession, counters: LogCounters, log: Option<LogTree>) -> Self {
        let lease_expires_at = lease_deadline(&record, SystemTime::now());
        Self {
            id: record.id.clone(),
            write_lock: Arc::new(tokio::sync::Mutex::new(())),
            seal: SealState::default(),
            state: Mutex::new(HandleState {
                record,
                counters,
                log,
                damaged: None,
                deleted: false,
                lease_expires_at,
                signal: ProgressSignal::default(),
            }),
        }
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, HandleState> {
        // The state is only ever replaced whole, so a panic elsewhere cannot
        // leave it half-written; keep serving it.
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// A copy of the session as it is now, or `NotFound` once deleted.
    pub(crate) fn view(&self) -> Result<SessionView, SessionError> {
        let state = self.state();
        if state.deleted {
            return Err(self.not_found());
        }
        Ok(state.view())
    }

    /// The session as it is now, deleted or not (for a stream's last word).
    pub(crate) fn final_view(&self) -> SessionView {
        self.state().view()
    }

    /// The session's log tree, once checked: an ended session loaded at
    /// start-up is checked first (on the blocking pool, see
    /// `check_locked`), so nothing is read from a log that was not.
    /// `Damaged` for a log that failed its check.
    pub(crate) async fn log(self: &Arc<Self>, store: &Store) -> Result<LogTree, SessionError> {
        if let Some(log) = self.checked_log()? {
            return Ok(log);
        }
        let writing = self.write_lock.clone().lock_owned().await;
        let (handle, store) = (self.clone(), store.clone());
        blocking(move || {
            let _writing = writing;
            handle.check_locked(&store)
        })
        .await
    }

    /// Checks the log unless that was done (see the module doc), and
    /// returns it. The caller holds `write_lock`: only writers open trees,
    /// so a delete cannot race the check's opening of the log, and two
    /// checks of one log never run at once. Blocking.
    pub(crate) fn check_locked(&self, store: &Store) -> Result<LogTree, SessionError> {
        let counters = match self.checked_log()? {
            Some(log) => return Ok(log),
            None => self.state().counters,
        };
        match store.check_log(&self.id, &counters)? {
            LogCheck::Passed(log) => {
                self.state().log = Some(log.clone());
                Ok(log)
            }
            LogCheck::Damaged { what } => {
                tracing::error!(
                    session = %self.id,
                    damage = %what,
                    "a stored session's log is damaged; it is not served (reads answer DATA_LOSS)"
                );
                self.state().damaged = Some(what.clone());
                Err(SessionError::Damaged {
                    session_id: self.id.clone(),
                    what,
                })
            }
        }
    }

    /// The log if it was checked and passed; `None` if it is still to be
    /// checked; an error once deleted or found damaged.
    fn checked_log(&self) -> Result<Option<LogTree>, SessionError> {
        let state = self.state();
        if state.deleted {
            return Err(self.not_found());
        }
        if let Some(what) = &state.damaged {
            return Err(SessionError::Damaged {
                session_id: self.id.clone(),
                what: what.clone(),
            });
        }
        Ok(state.log.clone())
    }

    /// Whether the log was checked and passed (and not deleted since).
    pub(crate) fn is_checked(&self) -> bool {
        self.state().log.is_some()
    }

    /// Whether the log failed its check (and is not deleted).
    pub(crate) fn is_damaged(&self) -> bool {
        let state = self.state();
        state.damaged.is_some() && !state.deleted
    }

    pub(crate) fn not_found(&self) -> SessionError {
        SessionError::NotFound {
            session_id: self.id.clone(),
        }
    }
}

/// When the lease of `record` ends if renewed at `now`; `None` without one.
pub(crate) fn lease_deadline(record: &StoredSession, now: SystemTime) -> Option<SystemTime> {
    if record.state() != State::Active {
        return None;
    }
    let ttl = record.lease_ttl.as_ref()?;
    let ttl = std::time::Duration::try_from(*ttl).ok()?;
    (!ttl.is_zero()).then(|| now + ttl)
}
