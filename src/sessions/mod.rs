//! The rules: session lifecycle, seq assignment, dedupe and reads, on top of
//! the store, and search across sessions. Holds one `SessionHandle` per session (no log entries in
//! memory). Never sees protobuf API types; the API layer converts.
//! Store calls run on the blocking pool, each write with its locks and its
//! in-memory change (docs/architecture.md, "Blocking work and async workers").

mod append;
mod check;
mod commit;
mod events;
mod follow;
mod handle;
pub(crate) mod ids;
mod lifecycle;
mod list;
mod liveness;
mod process;
mod read;
mod reclaim;
mod retention;
mod seal;
mod search;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tokio_util::sync::CancellationToken;

use crate::fanout::FollowerGauge;
use crate::store::durability::Durability;
use crate::store::schema::State;
use crate::store::{Store, StoreError};

pub use append::AppendBatch;
pub(crate) use events::{WatchEvent, WatchQuery};
pub(crate) use follow::FollowQuery;
use handle::SessionHandle;
pub(crate) use handle::SessionView;
pub use lifecycle::END_LOGGER;
pub(crate) use list::ListQuery;
pub(crate) use read::{MAX_READ_LIMIT, ReadQuery};
pub use retention::{PruneReason, RetentionPolicy};
pub(crate) use seal::{DEFAULT_SEAL_ACTIVE_AFTER, SealBacklog};
pub(crate) use search::{SearchEvent, SearchQuery, SearchSummary};

/// Where a session stands, as `SessionManager::progress` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionProgress {
    pub id: String,
    pub last_seq: u64,
    pub active: bool,
}

/// What a request can run into, named after the situation.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("session `{session_id}` does not exist")]
    NotFound { session_id: String },
    #[error("session `{session_id}` already exists")]
    AlreadyExists { session_id: String },
    #[error("session `{session_id}` has ended")]
    Ended { session_id: String },
    #[error("session `{session_id}` is active; end it first or delete with `force`")]
    Active { session_id: String },
    #[error("session `{session_id}` has last_seq {actual}, not the expected {expected}")]
    SeqMismatch {
        session_id: String,
        expected: u64,
        actual: u64,
    },
    #[error("session `{session_id}` cannot take more entries: its seqs would pass {max_seq}")]
    SeqsExhausted { session_id: String, max_seq: u64 },
    #[error("session `{session_id}` was deleted")]
    Deleted { session_id: String },
    /// Its log failed the check against its counters (`what`); it is
    /// never served.
    #[error(
        "session `{session_id}` is damaged and cannot be read: {what}; \
         delete it, or restore the data dir from a backup"
    )]
    Damaged { session_id: String, what: String },
    /// The merged metadata of an update failed the caller's check (a
    /// limit); `reason` says which.
    #[error("{reason}")]
    MetadataRefused { reason: String },
    #[error("the server is shutting down; retry against another instance or later")]
    ShuttingDown,
    #[error("this watcher fell {missed} events behind; watch again with `include_existing`")]
    WatcherLagged { missed: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The sessions of one store, and every operation on them.
#[derive(Debug, Clone)]
pub struct SessionManager {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    durability: Durability,
    /// Applies every append (see `commit`).
    committer: commit::Committer,
    /// Seals logs in the background once started (see `seal`).
    sealer: seal::Sealer,
    /// Checks the logs of ended sessions loaded at start-up (see `check`).
    checker: check::LogChecker,
    ids: ids::IdGenerator,
    /// Held by start and delete, so an id's tree is never created while it
    /// is being dropped. Owned guards go into the blocking work they order.
    lifecycle_lock: Arc<tokio::sync::Mutex<()>>,
    events: events::SessionEvents,
    /// Active sessions with a lease or a watched pid.
    watched: liveness::Watched,
    followers: FollowerGauge,
    /// Cancelled when the server shuts down: open streams end.
    shutdown: CancellationToken,
    /// Set once the shutdown counters are saved: from then on no write may
    /// take a session's lock and move its counters past the saved ones.
    writes_closed: AtomicBool,
    /// Ordered by id, which is also the paging order of `list`.
    sessions: RwLock<BTreeMap<String, Arc<SessionHandle>>>,
    /// Says whether an ended session may go (see `set_prune_guard`).
    prune_guard: RwLock<Option<GuardSlot>>,
}

/// Holds the prune guard; a closure has no `Debug` of its own.
#[derive(Clone)]
struct GuardSlot(PruneGuard);

impl std::fmt::Debug for GuardSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PruneGuard")
    }
}

/// Whether an ended session has been handed on everywhere it must go
/// (forwarding targets), so retention may remove it.
pub(crate) type PruneGuard = Arc<dyn Fn(&str) -> bool + Send + Sync>;

impl SessionManager {
    /// Loads every stored session. Sessions active at shutdown stay active.
    /// Blocking (reads the store).
    pub fn load(store: Store, durability: Durability) -> Result<Self, SessionError> {
        let mut sessions = BTreeMap::new();
        let watched = liveness::Watched::default();
        for loaded in store.load_sessions()? {
            // Leases count from now: the clients had no server to renew with.
            let handle = Arc::new(SessionHandle::new(
                loaded.record,
                loaded.counters,
                loaded.log,
            ));
            watched.add_if_needed(&handle);
            sessions.insert(handle.id.clone(), handle);
        }
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                durability,
                committer: commit::Committer::start()?,
                sealer: seal::Sealer::default(),
                checker: check::LogChecker::default(),
                ids: ids::IdGenerator::default(),
                lifecycle_lock: Arc::new(tokio::sync::Mutex::new(())),
                events: events::SessionEvents::default(),
                watched,
                followers: FollowerGauge::default(),
                shutdown: CancellationToken::new(),
                writes_closed: AtomicBool::new(false),
                sessions: RwLock::new(sessions),
                prune_guard: RwLock::new(None),
            }),
        })
    }

    /// A receiver that sees a new value after any session changed (start,
    /// append, update, end, delete), for background work that waits for
    /// something to do.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.events.changes()
    }

    /// From now on, retention keeps an ended session that `guard` says is
    /// not handed on yet, except to get under `max_bytes`.
    pub fn set_prune_guard(&self, guard: PruneGuard) {
        *self
            .inner
            .prune_guard
            .write()
            .unwrap_or_else(|poison| poison.into_inner()) = Some(GuardSlot(guard));
    }

    fn may_prune(&self, session_id: &str) -> bool {
        let guard = self
            .inner
            .prune_guard
            .read()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone();
        guard.is_none_or(|GuardSlot(guard)| guard(session_id))
    }

    /// Every session's id and counters, ordered by id, without copying
    /// records: for background work that walks all sessions on every pass
    /// (forwarding) and needs a session's record only when it acts on it.
    /// A session found damaged is left out: nothing of it can be read.
    pub fn progress(&self) -> Vec<SessionProgress> {
        let handles: Vec<Arc<SessionHandle>> = self.sessions_read().values().cloned().collect();
        handles
            .iter()
            .filter_map(|handle| {
                let state = handle.state();
                (!state.deleted && state.damaged.is_none()).then(|| SessionProgress {
                    id: handle.id.clone(),
                    last_seq: state.counters.last_seq,
                    active: state.record.state() == State::Active,
                })
            })
            .collect()
    }

    /// One session, active or ended.
    pub fn get(&self, session_id: &str) -> Result<SessionView, SessionError> {
        self.handle(session_id)?.view()
    }

    /// Starts sealing logs in the background (see `seal`): every ended
    /// session not sealed yet once its log is checked (see `check`), then
    /// each session that ends, and an active session whenever
    /// `active_after` bytes of its entries are unsealed.
    pub fn start_sealer(&self, active_after: u64) -> Result<(), SessionError> {
        // Those not checked yet are queued by the log check.
        let handles: Vec<_> = self
            .sessions_read()
            .values()
            .filter(|handle| handle.is_checked())
            .cloned()
            .collect();
        self.inner
            .sealer
            .start(self.store().clone(), active_after, handles)
            .map_err(|err| SessionError::Store(StoreError::Io(err)))
    }

    /// Waits until every session queued for sealing so far is sealed.
    /// Blocking; for tests.
    #[cfg(any(test, feature = "testing"))]
    pub fn wait_sealer_idle(&self) {
        self.inner.sealer.wait_idle();
    }

    /// What the sealer has yet to do (for the metrics).
    pub(crate) fn seal_backlog(&self) -> SealBacklog {
        self.inner.sealer.backlog()
    }

    /// Stops the sealer after the step in progress, then the reclaimer
    /// after its turn, and waits for both. Blocking (a step, then a turn:
    /// a settling one may flush and sync a few times).
    pub fn stop_sealer(&self) {
        self.inner.sealer.stop();
    }

    /// Starts checking, on a thread of its own, the logs of the ended
    /// sessions loaded at start-up (see `check`): for after the server
    /// reports SERVING, so start-up does not wait for their reads. The
    /// sealer must be started first: the check queues each log it passes
    /// for sealing.
    pub fn start_log_check(&self) -> Result<(), SessionError> {
        let ended: Vec<_> = self
            .sessions_read()
            .values()
            .filter(|handle| handle.state().record.state() != State::Active)
            .cloned()
            .collect();
        self.inner
            .checker
            .start(Arc::downgrade(&self.inner), ended)
            .map_err(|err| SessionError::Store(StoreError::Io(err)))
    }

    /// Stops the log check after the session in progress and waits for
    /// it; the sessions it did not reach are checked when read. Blocking
    /// (one check at most). Before `save_shutdown_counters`, which saves
    /// nothing while a session's lock is held.
    pub fn stop_log_check(&self) {
        self.inner.checker.stop();
    }

    /// Waits until the log check has walked every session. Blocking; for
    /// tests.
    #[cfg(any(test, feature = "testing"))]
    pub fn wait_log_check(&self) {
        while !self.inner.checker.is_done() {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// How many sessions' logs were found damaged (for the metrics).
    pub fn damaged_count(&self) -> usize {
        self.sessions_read()
            .values()
            .filter(|handle| handle.is_damaged())
            .count()
    }

    /// Ends every open `Follow` and `WatchSessions` stream with
    /// `ShuttingDown`; other calls go on.
    pub fn begin_shutdown(&self) {
        self.inner.shutdown.cancel();
    }

    /// How many flushes the durability policy has run (group commit shares
    /// one among the appends waiting at the same moment).
    pub fn flush_count(&self) -> u64 {
        self.inner.durability.flush_count()
    }

    /// How many flushes were made durable with fsync (for tests).
    pub fn sync_count(&self) -> u64 {
        self.inner.store.sync_count()
    }

    /// Tests: the next flush, once synced, returns only after `hold`.
    #[cfg(feature = "testing")]
    pub fn hold_next_flush(&self, hold: std::time::Duration) {
        self.inner.store.hold_next_flush(hold);
    }

    /// How many sessions are stored.
    pub fn session_count(&self) -> usize {
        self.sessions_read().len()
    }

    /// At a clean shutdown, after every call that could write has finished:
    /// saves the active sessions' counters so the next start-up need not
    /// read them from each log. All or nothing: a record left out would
    /// keep counters saved at an earlier shutdown, which the new mark would
    /// vouch for; so if any session's write lock is still held, nothing is
    /// saved (and the next start-up reads every log). Blocking.
    pub fn save_shutdown_counters(&self) -> Result<usize, SessionError> {
        let handles: Vec<_> = self.sessions_read().values().cloned().collect();
        let mut active = Vec::new();
        let mut held = Vec::new();
        for handle in &handles {
            let Ok(writing) = handle.write_lock.try_lock() else {
                tracing::warn!(session = %handle.id, "a session is still being written; not saving counters");
                return Ok(0);
            };
            let state = handle.state();
            if state.deleted || state.record.state() != State::Active {
                continue;
            }
            active.push((state.record.clone(), state.counters));
            drop(state);
            // Held until the records are written: nothing may append in
            // between and leave the saved counters behind.
            held.push(writing);
        }
        let saved = self.inner.store.save_shutdown_counters(active)?;
        // Still holding every lock: a writer that takes one after this
        // sees the flag.
        self.inner.writes_closed.store(true, Ordering::SeqCst);
        drop(held);
        Ok(saved)
    }

    /// The session's write lock, unless writes are closed for shutdown. The
    /// guard is owned: a write moves it into its blocking work, so the lock
    /// is released only after the write and its in-memory change, even when
    /// the caller's future is dropped first.
    async fn write_guard(
        &self,
        handle: &SessionHandle,
    ) -> Result<tokio::sync::OwnedMutexGuard<()>, SessionError> {
        let writing = handle.write_lock.clone().lock_owned().await;
        if self.inner.writes_closed.load(Ordering::SeqCst) {
            return Err(SessionError::ShuttingDown);
        }
        Ok(writing)
    }

    /// The manager's lifecycle lock, owned (see `write_guard`).
    async fn lifecycle_guard(&self) -> tokio::sync::OwnedMutexGuard<()> {
        self.inner.lifecycle_lock.clone().lock_owned().await
    }

    /// How many sessions are (active, ended), for metrics.
    pub fn state_counts(&self) -> (usize, usize) {
        let sessions = self.sessions_read();
        let active = sessions
            .values()
            .filter(|handle| handle.state().record.state() == State::Active)
            .count();
        (active, sessions.len() - active)
    }

    fn handle(&self, session_id: &str) -> Result<Arc<SessionHandle>, SessionError> {
        self.sessions_read()
            .get(session_id)
            .cloned()
            .ok_or_else(|| SessionError::NotFound {
                session_id: session_id.to_owned(),
            })
    }

    fn sessions_read(&self) -> RwLockReadGuard<'_, BTreeMap<String, Arc<SessionHandle>>> {
        // Writers only insert or remove whole handles: a poisoned map is
        // still consistent.
        self.inner
            .sessions
            .read()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn sessions_write(&self) -> RwLockWriteGuard<'_, BTreeMap<String, Arc<SessionHandle>>> {
        self.inner
            .sessions
            .write()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn store(&self) -> &Store {
        &self.inner.store
    }
}

/// `store::blocking` with the rules' error: every store call of this module
/// goes through here.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, SessionError> + Send + 'static,
) -> Result<T, SessionError> {
    crate::store::blocking(work).await
}

/// A manager over a store in `dir`, with no flusher (`--fsync never`), for
/// this module's unit tests.
#[cfg(test)]
pub(super) fn test_manager(dir: &std::path::Path) -> SessionManager {
    let store = Store::open(&crate::store::StoreOptions {
        path: dir.to_path_buf(),
        cache_bytes: 1 << 20,
    })
    .expect("store");
    let (durability, _) = Durability::start(
        store.clone(),
        crate::store::durability::FsyncPolicy::Never,
        crate::store::durability::DEFAULT_FLUSH_TIMEOUT,
    );
    SessionManager::load(store, durability).expect("manager")
}
