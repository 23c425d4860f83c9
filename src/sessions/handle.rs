//! One session in memory: its record, its log counters and the lock that is
//! the session's single serialization point. Every change to the session
//! (append, update, end, delete) holds `write_lock`, so seqs are assigned in
//! commit order and are contiguous. Readers never take it: they copy a
//! snapshot and read the store up to the snapshot's `last_seq`, which is only
//! raised after a batch is fully applied, so no reader sees half a batch.

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use crate::fanout::{Progress, ProgressSignal};
use crate::store::schema::{LogCounters, State, StoredSession};
use crate::store::{LogTree, Store};

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
    /// Open while active; opened on demand for ended sessions.
    pub(crate) log: Option<LogTree>,
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

    /// The session's log tree, opening it (on the blocking pool) for an
    /// ended session.
    pub(crate) async fn log(self: &Arc<Self>, store: &Store) -> Result<LogTree, SessionError> {
        if let Some(log) = self.open_log_if_loaded()? {
            return Ok(log);
        }
        // Only writers open trees, so a delete cannot race a re-open.
        let writing = self.write_lock.clone().lock_owned().await;
        let (handle, store) = (self.clone(), store.clone());
        blocking(move || {
            let _writing = writing;
            if let Some(log) = handle.open_log_if_loaded()? {
                return Ok(log);
            }
            let log = store.open_log(&handle.id)?;
            handle.state().log = Some(log.clone());
            Ok(log)
        })
        .await
    }

    fn open_log_if_loaded(&self) -> Result<Option<LogTree>, SessionError> {
        let state = self.state();
        if state.deleted {
            return Err(self.not_found());
        }
        Ok(state.log.clone())
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
