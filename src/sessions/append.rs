//! Appends. Seqs are assigned under the session's write lock and the batch is
//! applied before the lock is released, so commit order is seq order and a
//! session's seqs are exactly `1..=last_seq` however many clients append.
//! The lock's guard goes with the batch to the committer (see `commit`) and
//! is dropped there, after the counters are updated and published: an
//! append whose caller gave up still lands whole, or not at all, before the
//! next one.
//! When the session has followers, the batch's stored entries go into its
//! live window as it is published (before it is durable, like the seq
//! itself: followers see a batch once it is applied, whatever `--fsync`
//! says, while the append's caller waits for durability).

use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::OwnedMutexGuard;

use crate::metrics;
use crate::store::schema::State;
use crate::store::{AppliedAppend, MAX_SEQ, NewEntry, PreparedAppend};

use super::handle::{SessionHandle, lease_deadline};
use super::{SessionError, SessionManager};

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

    /// Takes the session's write lock and hands the batch, with the lock's
    /// guard, to the committer (see `commit`), which applies it with the
    /// other appends waiting at the same moment.
    async fn apply(
        &self,
        handle: Arc<SessionHandle>,
        batch: AppendBatch,
    ) -> Result<AppendOutcome, SessionError> {
        let writing = self.write_guard(&handle).await?;
        self.inner
            .committer
            .commit(Pending {
                manager: self.clone(),
                handle,
                batch,
                writing,
            })
            .await
    }

    /// The checks of an append and its sled batch, holding the session's
    /// write lock: either the answer (a duplicate, or why not), or the
    /// append to apply. On the committer's thread.
    pub(super) fn prepare_append(
        &self,
        handle: &SessionHandle,
        batch: AppendBatch,
        now: SystemTime,
    ) -> Result<Prepared, SessionError> {
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
            // After a failed write sled's memory may hold what never
            // reached its log: a failed store vouches for no batch.
            self.store().health().check()?;
            return Ok(Prepared::Answered(AppendOutcome {
                first_seq: stored.first_seq,
                last_seq: stored.last_seq,
                duplicate: true,
            }));
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
        let count = entries.len();
        let last_seq = checked_last_seq(
            handle,
            counters.last_seq,
            u64::try_from(count).unwrap_or(u64::MAX),
        )?;
        let append = log.prepare_append(&counters, entries, batch_id.as_deref(), now, followed)?;
        Ok(Prepared::Write {
            append,
            outcome: AppendOutcome {
                first_seq: counters.last_seq + 1,
                last_seq,
                duplicate: false,
            },
            count,
            size_before: counters.size_bytes,
        })
    }

    /// After the append was applied, still holding the session's write
    /// lock: the session's counters and lease move on, and followers hear
    /// of the batch (from memory, when it was kept for them).
    pub(super) fn publish_append(
        &self,
        handle: &Arc<SessionHandle>,
        applied: AppliedAppend,
        first_seq: u64,
        now: SystemTime,
    ) {
        let mut current = handle.state();
        current.counters = applied.counters;
        current.lease_expires_at = lease_deadline(&current.record, now);
        let size_bytes = applied.counters.size_bytes;
        match applied.kept {
            Some(stored) => current.publish_batch(first_seq, stored),
            None => current.publish(),
        }
        drop(current);
        self.inner.sealer.nudge(handle, size_bytes);
    }
}

/// An append on its way to the committer, with its session's write lock.
pub(super) struct Pending {
    pub(super) manager: SessionManager,
    pub(super) handle: Arc<SessionHandle>,
    pub(super) batch: AppendBatch,
    pub(super) writing: OwnedMutexGuard<()>,
}

/// What `prepare_append` found.
pub(super) enum Prepared {
    /// Nothing to write: the answer is known (a retried batch id).
    Answered(AppendOutcome),
    /// An append to apply, and its answer once applied.
    Write {
        append: PreparedAppend,
        outcome: AppendOutcome,
        /// Entries, and the log's stored bytes before, for metrics.
        count: usize,
        size_before: u64,
    },
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
