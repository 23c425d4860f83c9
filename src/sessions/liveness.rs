//! Liveness: an active session ends with `lease expired` when its lease runs
//! out, and with `process exited` when its client process is gone. Only
//! sessions with a lease or a watched pid are in the `watched` set, so a
//! pass costs nothing for the others.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use crate::store::schema::State;

use super::handle::SessionHandle;
use super::{SessionError, SessionManager, process};

/// The end reason when no append or heartbeat renewed the lease in time.
pub(crate) const LEASE_EXPIRED: &str = "lease expired";
/// The end reason when the client process no longer exists.
pub(crate) const PROCESS_EXITED: &str = "process exited";

/// Active sessions with a lease or a watched pid.
#[derive(Debug, Default)]
pub(crate) struct Watched {
    sessions: Mutex<BTreeMap<String, Arc<SessionHandle>>>,
}

impl Watched {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Arc<SessionHandle>>> {
        self.sessions
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Watches `handle` if it is active and has a lease or a watched pid.
    pub(crate) fn add_if_needed(&self, handle: &Arc<SessionHandle>) {
        let state = handle.state();
        let record = &state.record;
        let needed = record.state() == State::Active
            && (state.lease_expires_at.is_some() || record.client_start_ticks != 0);
        drop(state);
        if needed {
            self.lock().insert(handle.id.clone(), handle.clone());
        }
    }

    pub(crate) fn remove(&self, session_id: &str) {
        self.lock().remove(session_id);
    }

    fn snapshot(&self) -> Vec<Arc<SessionHandle>> {
        self.lock().values().cloned().collect()
    }
}

impl SessionManager {
    /// Ends every watched session whose lease expired or whose process
    /// exited; returns the ids ended, with their reasons.
    pub async fn check_liveness(&self) -> Vec<(String, &'static str)> {
        let now = SystemTime::now();
        let mut ended = Vec::new();
        for handle in self.inner.watched.snapshot() {
            let (active, lease_expires_at, pid, ticks) = {
                let state = handle.state();
                let record = &state.record;
                (
                    !state.deleted && record.state() == State::Active,
                    state.lease_expires_at,
                    record.client_pid,
                    record.client_start_ticks,
                )
            };
            if !active {
                self.inner.watched.remove(&handle.id);
                continue;
            }
            let reason = if lease_expires_at.is_some_and(|deadline| deadline <= now) {
                LEASE_EXPIRED
            } else if ticks != 0 && !process::is_running(pid, ticks) {
                PROCESS_EXITED
            } else {
                continue;
            };
            match self.end(&handle.id, reason).await {
                Ok(_) => {
                    tracing::info!(session_id = %handle.id, reason, "session ended by liveness check");
                    crate::metrics::get().liveness_ended(reason);
                    ended.push((handle.id.clone(), reason));
                }
                // Ended or deleted meanwhile by someone else.
                Err(SessionError::Ended { .. } | SessionError::NotFound { .. }) => {}
                Err(err) => {
                    tracing::warn!(session_id = %handle.id, error = %err, "liveness could not end a session")
                }
            }
        }
        ended
    }
}
