//! Liveness: an active session ends with `lease expired` when its lease runs
//! out, and with `process exited` when its client process is gone. Only
//! sessions with a lease or a watched pid are in the `watched` set, so a
//! pass costs nothing for the others. A pass reads leases without locks;
//! an expired one is checked again under the session's write lock, which
//! everything that renews a lease (appends, heartbeats) also holds, and the
//! session ends only if the lease is still expired then.

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
            // A heartbeat or an append may have renewed the lease since it
            // was read; a client process, once gone, stays gone.
            let still_due = |view: &super::SessionView| {
                reason != LEASE_EXPIRED
                    || view
                        .lease_expires_at
                        .is_some_and(|deadline| deadline <= SystemTime::now())
            };
            match self.end_if(&handle.id, reason, still_due).await {
                Ok(None) => {}
                Ok(Some(_)) => {
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

#[cfg(test)]
mod tests {
    use std::pin::pin;
    use std::time::UNIX_EPOCH;

    use futures::poll;

    use super::*;
    use crate::store::schema::StoredSession;

    /// A session with an hour's lease that has just run out.
    async fn expired(sessions: &SessionManager) -> Arc<SessionHandle> {
        let view = sessions
            .start(StoredSession {
                lease_ttl: Some(prost_types::Duration {
                    seconds: 3_600,
                    nanos: 0,
                }),
                ..StoredSession::default()
            })
            .await
            .expect("start");
        let handle = sessions.handle(&view.record.id).expect("handle");
        handle.state().lease_expires_at = Some(UNIX_EPOCH);
        handle
    }

    /// Liveness has seen the lease run out and waits for the session's
    /// write lock (an append holds it) when a heartbeat comes: whatever
    /// the heartbeat is told, the session agrees with it afterwards.
    #[tokio::test]
    async fn a_heartbeat_while_liveness_ends_the_session_is_told_the_truth() {
        let dir = tempfile::tempdir().expect("temp dir");
        let sessions = super::super::test_manager(dir.path());
        let handle = expired(&sessions).await;
        let writing = handle.write_lock.lock().await;
        let mut liveness = pin!(sessions.check_liveness());
        assert!(poll!(liveness.as_mut()).is_pending(), "waits for the lock");
        let mut heartbeat = pin!(sessions.heartbeat(&handle.id));
        assert!(poll!(heartbeat.as_mut()).is_pending(), "waits for the lock");
        drop(writing);
        let ended = liveness.await;
        let renewed = heartbeat.await;
        let active = sessions.get(&handle.id).expect("get").is_active();
        match renewed {
            Ok(_) => assert!(active && ended.is_empty(), "renewed, yet ended"),
            Err(SessionError::Ended { .. }) => assert!(!active && ended.len() == 1),
            Err(err) => panic!("unexpected {err}"),
        }
    }

    /// A heartbeat that gets the write lock before liveness does renews
    /// the lease, and liveness, checking again under the lock, lets the
    /// session be.
    #[tokio::test]
    async fn liveness_spares_a_lease_renewed_after_it_looked() {
        let dir = tempfile::tempdir().expect("temp dir");
        let sessions = super::super::test_manager(dir.path());
        let handle = expired(&sessions).await;
        let writing = handle.write_lock.lock().await;
        let mut heartbeat = pin!(sessions.heartbeat(&handle.id));
        assert!(poll!(heartbeat.as_mut()).is_pending(), "waits for the lock");
        let mut liveness = pin!(sessions.check_liveness());
        assert!(poll!(liveness.as_mut()).is_pending(), "waits for the lock");
        drop(writing);
        let renewed = heartbeat.await.expect("renewed");
        assert!(renewed.is_some_and(|deadline| deadline > SystemTime::now()));
        assert_eq!(liveness.await, []);
        assert!(sessions.get(&handle.id).expect("get").is_active());
    }
}
