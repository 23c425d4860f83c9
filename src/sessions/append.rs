//! Appends. Seqs are assigned under the session's write lock and the batch is
//! applied before the lock is released, so commit order is seq order and a
//! session's seqs are exactly `1..=last_seq` however many clients append.
//! The lock's guard goes with the batch to the blocking pool and is dropped
//! there, after the counters are updated and published: an append whose
//! caller gave up still lands whole, or not at all, before the next one.
//! When the session has followers, the batch's stored entries go into its
//! live window as it is published (before it is durable, like the seq
//! itself: followers see a batch once it is applied, whatever `--fsync`
//! says, while the append's caller waits for durability).

use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::OwnedMutexGuard;

use crate::metrics;
use crate::store::schema::State;
use crate::store::{MAX_SEQ, NewEntry};

use super::handle::{SessionHandle, lease_deadline};
use super::{SessionError, SessionManager, blocking};

/// One `Append`: entries (input seqs are ignored) and its preconditions.
#[derive(Debug, Clone, Default)]
pub struct AppendBatch {
    pub session_id: String,
    pub entries: Vec<NewEntry>,
    /// Store only if the session's `last_seq` equals this.
    pub expected_last_seq: Option<u64>,
    /// A retry of a stored batch id stores nothing and returns its seqs.
    pub batch_id: Option<String>,
}

/// Where a batch was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendOutcome {
    pub first_seq: u64,
    pub last_seq: u64,
    /// The batch id was stored before; nothing new was stored.
    pub duplicate: bool,
}

impl SessionManager {
    /// Stores `batch` atomically under seqs `last_seq + 1 ..`, or finds it
    /// stored already under its batch id. Returns once the batch is as
    /// durable as the fsync policy promises (on disk, under `always`).
    pub async fn append(&self, batch: AppendBatch) -> Result<AppendOutcome, SessionError> {
        let started = std::time::Instant::now();
        let stored = async {
            let handle = self.handle(&batch.session_id)?;
            let outcome = self.apply(handle, batch).await?;
            // A duplicate waits too: its original may still be on its way to disk.
            self.inner.durability.wait_durable().await?;
            Ok(outcome)
        }
        .await;
        let metrics = metrics::get();
        match &stored {
            Ok(outcome) if outcome.duplicate => metrics.duplicate_batch(),
            Ok(_) => {}
            Err(_) => metrics.failed_batch(),
        }
        metrics.append_took(started.elapsed());
        stored
    }

    async fn apply(
        &self,
        handle: Arc<SessionHandle>,
        batch: AppendBatch,
    ) -> Result<AppendOutcome, SessionError> {
        let writing = self.write_guard(&handle).await?;
        let manager = self.clone();
        blocking(move || manager.apply_locked(&handle, batch, writing)).await
    }

    /// The append proper, on the blocking pool, holding the session's write
    /// lock (`_writing`) until the batch is applied and published.
    fn apply_locked(
        &self,
        handle: &SessionHandle,
        batch: AppendBatch,
        _writing: OwnedMutexGuard<()>,
    ) -> Result<AppendOutcome, SessionError> {
        let AppendBatch {
            entries,
            expected_last_seq,
            batch_id,
            ..
        } = batch;
        let (log, counters, state, followed) = {
            let current = handle.state();
            if current.deleted {
                return Err(handle.not_found());
            }
            (
                current.log.clone(),
                current.counters,
                current.record.state(),
                current.signal.is_followed(),
            )
        };
        let log = match log {
            Some(log) => log,
            None => self.store().open_log(&handle.id)?,
        };
        if let Some(batch_id) = &batch_id
            && let Some(stored) = log.find_batch(batch_id)?
        {
            return Ok(AppendOutcome {
                first_seq: stored.first_seq,
                last_seq: stored.last_seq,
                duplicate: true,
            });
        }
        if state != State::Active {
            return Err(SessionError::Ended {
                session_id: handle.id.clone(),
            });
        }
        if let Some(expected) = expected_last_seq
            && expected != counters.last_seq
        {
            return Err(SessionError::SeqMismatch {
                session_id: handle.id.clone(),
                expected,
                actual: counters.last_seq,
            });
        }
        let first_seq = counters.last_seq + 1;
        let count = entries.len();
        let last_seq = checked_last_seq(
            handle,
            counters.last_seq,
            u64::try_from(count).unwrap_or(u64::MAX),
        )?;
        let now = SystemTime::now();
        let mut stored = followed.then(Vec::new);
        let next = log.append_keeping(
            &counters,
            entries,
            batch_id.as_deref(),
            now,
            stored.as_mut(),
        )?;
        metrics::get().appended(count, next.size_bytes.saturating_sub(counters.size_bytes));
        let mut current = handle.state();
        current.counters = next;
        current.lease_expires_at = lease_deadline(&current.record, now);
        match stored {
            Some(stored) => current.publish_batch(first_seq, stored),
            None => current.publish(),
        }
        drop(current);
        self.inner.events.changed();
        Ok(AppendOutcome {
            first_seq,
            last_seq,
            duplicate: false,
        })
    }
}

/// The last seq after `count` more entries, if it stays within `MAX_SEQ`.
pub(super) fn checked_last_seq(
    handle: &SessionHandle,
    last_seq: u64,
    count: u64,
) -> Result<u64, SessionError> {
    last_seq
        .checked_add(count)
        .filter(|last| *last <= MAX_SEQ)
        .ok_or_else(|| SessionError::SeqsExhausted {
            session_id: handle.id.clone(),
            max_seq: MAX_SEQ,
        })
}
