//! The committer: one thread per store applies every append. An append
//! reaches it holding its session's write lock (see `append`), so the
//! appends queued at one moment are of distinct sessions. The committer
//! takes all of them (up to `MAX_GROUP` appends or `MAX_GROUP_BYTES` of
//! entries) and applies them together (`Store::apply_appends`: one key
//! each where an append is one block, else one transaction, which seals
//! sled's log buffer once for the group instead of once per append); then
//! it publishes each and answers it. A busy committer never sleeps between
//! groups, and no append pays a hop to the blocking pool and back.
//!
//! Invariants: an append is answered only once it is applied and published,
//! or refused whole; its session's lock is released only after that; an
//! answer says whether its own append landed. A panic while committing a
//! group drops that group's answers (its callers get `TaskFailed`); one
//! from the group's write on also fails the store (see `FailOnPanic`),
//! since what landed may not be published. The committer goes on with the
//! next group.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::SystemTime;

use tokio::sync::{OwnedMutexGuard, oneshot};

use crate::metrics;
use crate::store::StoreError;

use super::append::{AppendOutcome, Pending, Prepared};
use super::handle::SessionHandle;
use super::{SessionError, SessionManager};

/// At most this many appends share one sled write: a bigger group would
/// keep its first append waiting longer than the write it saves.
const MAX_GROUP: usize = 256;
/// A group stops taking appends once it holds this many bytes of entries,
/// so one sled write stays a few MiB however large the batches.
const MAX_GROUP_BYTES: u64 = 4 << 20;
type Answer = oneshot::Sender<Result<AppendOutcome, SessionError>>;

/// Hands appends to the committer thread; the thread ends when this is
/// dropped and the appends queued before are answered.
#[derive(Debug)]
pub(super) struct Committer {
    queue: mpsc::Sender<(Pending, Answer)>,
}

impl Committer {
    pub(super) fn start() -> Result<Self, SessionError> {
        let (queue, appends) = mpsc::channel();
        std::thread::Builder::new()
            .name("sessionlog-commit".to_owned())
            .spawn(move || run(&appends))
            .map_err(StoreError::Io)?;
        Ok(Self { queue })
    }

    /// Applies `pending` with whatever else is queued; returns its answer.
    pub(super) async fn commit(&self, pending: Pending) -> Result<AppendOutcome, SessionError> {
        let (answer, answered) = oneshot::channel();
        self.queue
            .send((pending, answer))
            .map_err(|_| gone("the committer has stopped"))?;
        answered
            .await
            .map_err(|_| gone("the append's group failed in the committer (see the server log)"))?
    }
}

fn gone(detail: &str) -> SessionError {
    SessionError::Store(StoreError::TaskFailed {
        detail: detail.to_owned(),
    })
}

fn run(appends: &mpsc::Receiver<(Pending, Answer)>) {
    while let Ok(first) = appends.recv() {
        let committed = std::panic::catch_unwind(AssertUnwindSafe(|| commit_group(first, appends)));
        if committed.is_err() {
            tracing::error!("committing a group of appends panicked; those appends failed");
        }
    }
}

/// An append that passed its checks, waiting for its group's write.
struct Write {
    manager: SessionManager,
    handle: Arc<SessionHandle>,
    writing: OwnedMutexGuard<()>,
    answer: Answer,
    outcome: AppendOutcome,
    count: usize,
    size_before: u64,
}

/// Prepares `first` and the appends queued behind it, applies them in one
/// write, then publishes and answers each. It takes only what is queued:
/// waiting for more would save sled writes but cost as much in wake-ups,
/// and a lone client would wait for nothing.
fn commit_group(first: (Pending, Answer), appends: &mpsc::Receiver<(Pending, Answer)>) {
    let now = SystemTime::now();
    let mut writes = Vec::new();
    let mut prepared = Vec::new();
    let mut bytes = 0;
    let mut next = Some(first);
    while let Some((pending, answer)) = next.take() {
        let Pending {
            manager,
            handle,
            batch,
            writing,
        } = pending;
        match manager.prepare_append(&handle, batch, now) {
            Ok(Prepared::Write {
                append,
                outcome,
                count,
                size_before,
            }) => {
                bytes += append.next().size_bytes.saturating_sub(size_before);
                prepared.push(append);
                writes.push(Write {
                    manager,
                    handle,
                    writing,
                    answer,
                    outcome,
                    count,
                    size_before,
                });
            }
            Ok(Prepared::Answered(outcome)) => {
                drop(writing);
                let _ = answer.send(Ok(outcome));
            }
            Err(err) => {
                drop(writing);
                let _ = answer.send(Err(err));
            }
        }
        if prepared.len() < MAX_GROUP && bytes < MAX_GROUP_BYTES {
            next = appends.try_recv().ok();
        }
    }
    let Some(manager) = writes.first().map(|write| write.manager.clone()) else {
        return;
    };
    let store = manager.store().clone();
    // On a panic from here on, the store must fail before any session's
    // lock is released, so each `FailOnPanic` is declared after what holds
    // the locks (`writes`, then the iterator over them, then the `write`
    // being published): it is dropped first.
    let failing = FailOnPanic(&store);
    let results = store.apply_appends(prepared);
    drop(failing);
    let mut published = false;
    let mut answers = writes.into_iter().zip(results);
    let _failing = FailOnPanic(&store);
    for (write, applied) in answers.by_ref() {
        let _failing = FailOnPanic(&store);
        match applied {
            Ok(applied) => {
                let size_after = applied.counters.size_bytes;
                write
                    .manager
                    .publish_append(&write.handle, applied, write.outcome.first_seq, now);
                metrics::get().appended(write.count, size_after.saturating_sub(write.size_before));
                drop(write.writing);
                let _ = write.answer.send(Ok(write.outcome));
                published = true;
            }
            Err(err) => {
                drop(write.writing);
                let _ = write.answer.send(Err(SessionError::Store(err)));
            }
        }
    }
    if published {
        manager.inner.events.changed();
    }
}

/// Fails the store when dropped by a panic: the panic came after the
/// group's write may have landed and before every session in it was
/// published, so a session's counters in memory may be behind its log,
/// and its next append would reuse seqs. A failed store takes no writes
/// until a restart, which reads the counters from the logs.
struct FailOnPanic<'a>(&'a crate::store::Store);

impl Drop for FailOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.health().fail(
                "applying a group of appends panicked; restart the server (see its log)".to_owned(),
            );
        }
    }
}
