//! Session lifecycle: start, update, heartbeat, end, delete. Each change
//! holds the session's write lock, so it is ordered with the session's
//! appends; start and delete also hold the manager's lifecycle lock, so a
//! session id is never created and dropped at the same moment. The store
//! write and the in-memory change of each run on the blocking pool in one
//! closure that owns those locks, so a caller that gives up cannot leave
//! the session table behind the store, or let the next write in early.

use std::sync::Arc;
use std::time::SystemTime;

use prost_types::value::Kind;
use prost_types::{Struct, Timestamp};
use tokio::sync::OwnedMutexGuard;

use crate::store::schema::{Level, LogCounters, State, StoredEntry, StoredSession};

use super::append::checked_last_seq;
use super::handle::{SessionHandle, lease_deadline};
use super::{SessionError, SessionManager, SessionView, WatchEvent, blocking, process};

/// The logger of the synthetic entry that ends a session.
pub const END_LOGGER: &str = "sessions";
/// The reason recorded when a forced delete ends an active session.
pub(crate) const DELETED_REASON: &str = "deleted";

/// What `delete_ended` did.
#[derive(Debug, Default)]
pub(super) struct DeletedSessions {
    /// Gone from memory, and from the store unless `failed` says otherwise.
    pub deleted: Vec<String>,
    /// Left as they were: gone already, still active, or shutting down.
    pub skipped: Vec<(String, SessionError)>,
    /// Why the store may still hold `deleted` (a restart brings them back).
    pub failed: Option<SessionError>,
}

impl SessionManager {
    /// Creates an active session from `draft` (its id, when empty, is
    /// generated). Time and state fields of `draft` are ignored.
    pub async fn start(&self, draft: StoredSession) -> Result<SessionView, SessionError> {
        self.start_inner(draft, true).await
    }

    /// Like `start`, for a session reported by an exporter (OTLP intake):
    /// its `client_pid` is recorded but never watched, because that process
    /// may run on another host, where the same pid here means nothing.
    pub async fn start_reported(&self, draft: StoredSession) -> Result<SessionView, SessionError> {
        self.start_inner(draft, false).await
    }

    async fn start_inner(
        &self,
        draft: StoredSession,
        watch_pid: bool,
    ) -> Result<SessionView, SessionError> {
        let lifecycle = self.lifecycle_guard().await;
        let manager = self.clone();
        let handle = blocking(move || manager.create_locked(draft, watch_pid, lifecycle)).await?;
        self.inner.durability.wait_durable().await?;
        handle.view()
    }

    /// Stores the new session and puts it in the table, on the blocking
    /// pool, holding the lifecycle lock (`_lifecycle`) until both are done.
    fn create_locked(
        &self,
        draft: StoredSession,
        watch_pid: bool,
        _lifecycle: OwnedMutexGuard<()>,
    ) -> Result<Arc<SessionHandle>, SessionError> {
        let now = Timestamp::from(SystemTime::now());
        let id = if draft.id.is_empty() {
            self.inner.ids.next_id()
        } else {
            draft.id.clone()
        };
        let client_start_ticks = if watch_pid {
            process::start_ticks(draft.client_pid).unwrap_or_default()
        } else {
            0
        };
        if watch_pid && draft.client_pid != 0 && client_start_ticks == 0 {
            tracing::warn!(
                pid = draft.client_pid,
                "the client pid is not visible here; process liveness is off for this session"
            );
        }
        let record = StoredSession {
            id,
            client_start_ticks,
            created_at: Some(now),
            updated_at: Some(now),
            ended_at: None,
            state: State::Active.into(),
            end_reason: String::new(),
            final_counters: None,
            ..draft
        };
        let Some(log) = self.store().create_session(&record)? else {
            return Err(SessionError::AlreadyExists {
                session_id: record.id,
            });
        };
        let handle = Arc::new(SessionHandle::new(
            record,
            LogCounters::default(),
            Some(log),
        ));
        self.inner.events.publish(|| {
            self.sessions_write()
                .insert(handle.id.clone(), handle.clone());
            WatchEvent::Started(Arc::new(handle.final_view()))
        });
        self.inner.watched.add_if_needed(&handle);
        Ok(handle)
    }

    /// Merges `metadata`'s top-level keys into the session's; a key set to
    /// null is removed. Ended sessions can be annotated too. `check` sees
    /// the merged metadata under the session's write lock, before anything
    /// is stored: an `Err` (its reason) refuses the update
    /// (`MetadataRefused`) and leaves the session as it was, so limits hold
    /// after any sequence of updates, concurrent ones included.
    pub async fn update(
        &self,
        session_id: &str,
        metadata: Option<Struct>,
        check: impl FnOnce(Option<&Struct>) -> Result<(), String> + Send + 'static,
    ) -> Result<SessionView, SessionError> {
        let handle = self.handle(session_id)?;
        let writing = self.write_guard(&handle).await?;
        let (manager, target) = (self.clone(), handle.clone());
        blocking(move || manager.update_locked(&target, metadata, check, writing)).await?;
        self.inner.durability.wait_durable().await?;
        handle.view()
    }

    /// Stores and publishes the merged record, on the blocking pool, holding
    /// the session's write lock (`_writing`).
    fn update_locked(
        &self,
        handle: &SessionHandle,
        metadata: Option<Struct>,
        check: impl FnOnce(Option<&Struct>) -> Result<(), String>,
        _writing: OwnedMutexGuard<()>,
    ) -> Result<(), SessionError> {
        let mut record = handle.view()?.record;
        if let Some(update) = metadata {
            merge_metadata(record.metadata.get_or_insert_with(Struct::default), update);
        }
        check(record.metadata.as_ref())
            .map_err(|reason| SessionError::MetadataRefused { reason })?;
        record.updated_at = Some(SystemTime::now().into());
        self.store().put_session(&record)?;
        self.inner.events.publish(|| {
            let mut state = handle.state();
            state.record = record;
            WatchEvent::Updated(Arc::new(state.view()))
        });
        Ok(())
    }

    /// Renews the session's lease; returns when it now expires (`None`
    /// for a session without a lease). Under the session's write lock, like
    /// every change: liveness ends a session for its lease only under that
    /// lock too, after checking the lease again, so a heartbeat told it
    /// renewed is never followed by an end for the lease it replaced.
    pub async fn heartbeat(&self, session_id: &str) -> Result<Option<SystemTime>, SessionError> {
        let handle = self.handle(session_id)?;
        // Renewing writes nothing to the store, so it goes on while a
        // shutdown has closed writes.
        let _writing = handle.write_lock.lock().await;
        let mut state = handle.state();
        if state.deleted {
            return Err(handle.not_found());
        }
        if state.record.state() != State::Active {
            return Err(SessionError::Ended {
                session_id: handle.id.clone(),
            });
        }
        state.lease_expires_at = lease_deadline(&state.record, SystemTime::now());
        Ok(state.lease_expires_at)
    }

    /// Ends an active session: appends the synthetic end entry and records
    /// the reason, atomically.
    pub async fn end(&self, session_id: &str, reason: &str) -> Result<SessionView, SessionError> {
        self.end_if(session_id, reason, |_| true)
            .await
            .map(|ended| ended.expect("ends unconditionally"))
    }

    /// Ends an active session as `end` does, if `still_due` holds for its
    /// state once the session's write lock is held (nothing that renews a
    /// lease can run in between); `None` when it did not hold.
    pub(super) async fn end_if(
        &self,
        session_id: &str,
        reason: &str,
        still_due: impl FnOnce(&SessionView) -> bool,
    ) -> Result<Option<SessionView>, SessionError> {
        let handle = self.handle(session_id)?;
        let writing = self.write_guard(&handle).await?;
        let view = handle.view()?;
        if view.is_active() && !still_due(&view) {
            return Ok(None);
        }
        let (manager, target, reason) = (self.clone(), handle.clone(), reason.to_owned());
        // The ended view is read under the write lock: once it is released,
        // retention may prune the session before the end is durable, and
        // the caller still gets what it ended.
        let ended = blocking(move || {
            let _writing = writing;
            manager.end_locked(&target, &reason)?;
            target.view()
        })
        .await?;
        self.inner.sealer.queue(&handle);
        self.inner.durability.wait_durable().await?;
        Ok(Some(ended))
    }

    /// Removes a session and its log. An active one is ended first when
    /// `force`, and refused otherwise.
    pub async fn delete(&self, session_id: &str, force: bool) -> Result<(), SessionError> {
        let handle = self.handle(session_id)?;
        let lifecycle = self.lifecycle_guard().await;
        let writing = self.write_guard(&handle).await?;
        let manager = self.clone();
        blocking(move || manager.delete_locked(&handle, force, lifecycle, writing)).await?;
        self.inner
            .durability
            .wait_durable()
            .await
            .map_err(SessionError::from)
    }

    /// Removes the session from memory, then from disk, on the blocking
    /// pool, holding the lifecycle lock and the session's write lock until
    /// the log is dropped.
    fn delete_locked(
        &self,
        handle: &Arc<SessionHandle>,
        force: bool,
        _lifecycle: OwnedMutexGuard<()>,
        _writing: OwnedMutexGuard<()>,
    ) -> Result<(), SessionError> {
        if handle.view()?.is_active() {
            if !force {
                return Err(SessionError::Active {
                    session_id: handle.id.clone(),
                });
            }
            self.end_locked(handle, DELETED_REASON)?;
        }
        self.forget_locked(handle);
        Ok(self.store().delete_session(&handle.id)?)
    }

    /// Deletes ended sessions (retention's path): one hop to the blocking
    /// pool and one store batch for all of `ids`, instead of one of each
    /// per session, then one durability wait. Holds the lifecycle lock
    /// throughout, so callers pass a bounded number.
    pub(super) async fn delete_ended(&self, ids: Vec<String>) -> DeletedSessions {
        let lifecycle = self.lifecycle_guard().await;
        let mut outcome = DeletedSessions::default();
        let mut locked = Vec::with_capacity(ids.len());
        for id in ids {
            let locking = match self.handle(&id) {
                Ok(handle) => self
                    .write_guard(&handle)
                    .await
                    .map(|writing| (handle, writing)),
                Err(err) => Err(err),
            };
            match locking {
                Ok(pair) => locked.push(pair),
                Err(err) => outcome.skipped.push((id, err)),
            }
        }
        if locked.is_empty() {
            return outcome;
        }
        let manager = self.clone();
        let result = blocking(move || {
            let mut outcome = outcome;
            manager.delete_ended_locked(locked, lifecycle, &mut outcome);
            Ok(outcome)
        })
        .await;
        let mut outcome = match result {
            Ok(outcome) => outcome,
            Err(err) => {
                // The blocking pool refused the job: nothing was deleted.
                return DeletedSessions {
                    failed: Some(err),
                    ..DeletedSessions::default()
                };
            }
        };
        if outcome.failed.is_none()
            && let Err(err) = self.inner.durability.wait_durable().await
        {
            outcome.failed = Some(err.into());
        }
        outcome
    }

    /// `delete_ended`'s blocking part: each ended session leaves memory,
    /// then their records and logs leave the store together.
    fn delete_ended_locked(
        &self,
        locked: Vec<(Arc<SessionHandle>, OwnedMutexGuard<()>)>,
        _lifecycle: OwnedMutexGuard<()>,
        outcome: &mut DeletedSessions,
    ) {
        for (handle, _writing) in &locked {
            match handle.view() {
                Ok(view) if view.is_active() => {
                    let session_id = handle.id.clone();
                    outcome
                        .skipped
                        .push((handle.id.clone(), SessionError::Active { session_id }));
                }
                Ok(_) => {
                    self.forget_locked(handle);
                    outcome.deleted.push(handle.id.clone());
                }
                Err(err) => outcome.skipped.push((handle.id.clone(), err)),
            }
        }
        if let Err(err) = self.store().delete_sessions(&outcome.deleted) {
            outcome.failed = Some(err.into());
        }
    }

    /// Removes `handle`'s session from memory and tells watchers, before
    /// its store deletion: a call that gets the handle now sees
    /// `NotFound`, never half a session. The caller holds the lifecycle
    /// lock and the session's write lock.
    fn forget_locked(&self, handle: &Arc<SessionHandle>) {
        self.inner.events.publish(|| {
            let mut state = handle.state();
            state.deleted = true;
            state.log = None;
            state.publish();
            let last_view = state.view();
            drop(state);
            let mut sessions = self.sessions_write();
            if sessions
                .get(&handle.id)
                .is_some_and(|current| Arc::ptr_eq(current, handle))
            {
                sessions.remove(&handle.id);
            }
            WatchEvent::Deleted(Arc::new(last_view))
        });
        self.inner.watched.remove(&handle.id);
    }

    /// Ends `handle`'s session. Blocking: the caller holds its write lock,
    /// on the blocking pool.
    fn end_locked(&self, handle: &SessionHandle, reason: &str) -> Result<(), SessionError> {
        let view = handle.view()?;
        if !view.is_active() {
            return Err(SessionError::Ended {
                session_id: handle.id.clone(),
            });
        }
        let seq = checked_last_seq(handle, view.counters.last_seq, 1)?;
        let now = SystemTime::now();
        let entry = end_entry(seq, reason, now);
        let mut record = view.record;
        record.state = State::Ended.into();
        record.ended_at = Some(now.into());
        record.updated_at = Some(now.into());
        record.end_reason = reason.to_owned();
        let log = match handle.state().log.clone() {
            Some(log) => log,
            None => self.store().open_log(&handle.id)?,
        };
        let counters = self
            .store()
            .end_session(&log, &mut record, &view.counters, entry, now)?;
        self.inner.events.publish(|| {
            let mut state = handle.state();
            state.record = record;
            state.counters = counters;
            state.lease_expires_at = None;
            state.publish();
            WatchEvent::Ended(Arc::new(state.view()))
        });
        self.inner.watched.remove(&handle.id);
        Ok(())
    }
}

/// The entry that marks a session's end.
fn end_entry(seq: u64, reason: &str, now: SystemTime) -> StoredEntry {
    let message = if reason.is_empty() {
        "Session ended".to_owned()
    } else {
        format!("Session ended: {reason}")
    };
    StoredEntry {
        seq,
        timestamp: Some(now.into()),
        level: Level::Info.into(),
        logger: END_LOGGER.to_owned(),
        message,
        ..StoredEntry::default()
    }
}

/// Merges top-level keys of `update` into `metadata`; null removes a key.
fn merge_metadata(metadata: &mut Struct, update: Struct) {
    for (key, value) in update.fields {
        if matches!(value.kind, None | Some(Kind::NullValue(_))) {
            metadata.fields.remove(&key);
        } else {
            metadata.fields.insert(key, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost_types::Value;

    fn string(text: &str) -> Value {
        Value {
            kind: Some(Kind::StringValue(text.to_owned())),
        }
    }

    #[test]
    fn merge_sets_replaces_and_removes_top_level_keys() {
        let mut metadata = Struct::default();
        metadata.fields.insert("keep".into(), string("1"));
        metadata.fields.insert("replace".into(), string("old"));
        metadata.fields.insert("drop".into(), string("x"));
        let mut update = Struct::default();
        update.fields.insert("replace".into(), string("new"));
        update.fields.insert("add".into(), string("2"));
        update.fields.insert(
            "drop".into(),
            Value {
                kind: Some(Kind::NullValue(0)),
            },
        );
        merge_metadata(&mut metadata, update);
        assert_eq!(metadata.fields.get("keep"), Some(&string("1")));
        assert_eq!(metadata.fields.get("replace"), Some(&string("new")));
        assert_eq!(metadata.fields.get("add"), Some(&string("2")));
        assert!(!metadata.fields.contains_key("drop"));
    }

    #[test]
    fn end_entry_names_its_reason() {
        let now = SystemTime::now();
        assert_eq!(end_entry(1, "", now).message, "Session ended");
        let entry = end_entry(7, "exit code 0", now);
        assert_eq!(entry.message, "Session ended: exit code 0");
        assert_eq!(entry.logger, END_LOGGER);
        assert_eq!(entry.level(), Level::Info);
        assert_eq!(entry.seq, 7);
    }
}
