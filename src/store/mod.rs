//! The sled store: one database in the data dir, a `sessions` tree of
//! session records, and one tree per session for its log (`log/<id>`,
//! entries packed in blocks, see `block`).
//! Besides those, one `forward` tree holds forwarding cursors. Nothing else
//! gets a tree: sled keeps every tree in its meta page.
//! This layer knows sled and the storage schema, never tonic or the API.
//! Any call here may wait on the disk: async code calls only through
//! `blocking` (docs/architecture.md, "Blocking work and async workers").

pub(crate) mod block;
mod cursors;
mod data_dir;
pub(crate) mod durability;
mod entry;
mod health;
mod keys;
mod log;
mod query;
mod reclaim;
pub mod schema;
mod seal;
#[cfg(test)]
mod seal_measure;
#[cfg(test)]
pub(crate) use seal_measure::dir_bytes;
mod search;
mod sync;
mod text;
mod verify;
mod view;

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::SystemTime;

use prost::Message;
use sled::Transactional;
use sled::transaction::ConflictableTransactionError;

pub use data_dir::ForeignOwner;
pub use entry::NewEntry;
pub(crate) use health::{Failure as StoreFailure, StoreHealth};
pub(crate) use keys::MAX_SEQ;
pub(crate) use log::decode_entry;
pub(crate) use log::{AppliedAppend, LogTree, PreparedAppend};
pub(crate) use query::{EntryFilter, RawPage, ScanLimits, entry_wire_len, page_of};
pub(crate) use reclaim::GiveBack;
use schema::{LogCounters, State, StoredEntry, StoredSession};
#[cfg(test)]
pub(crate) use seal::SealMark;
pub(crate) use seal::{SealOutcome, SealTarget};
pub(crate) use search::{SearchChunk, SearchScan, TimeRange};
pub(crate) use text::{TextError, TextMatcher};
pub(crate) use verify::without_panics;

const SESSIONS_TREE: &str = "sessions";
/// Marks a sled database as a sessionlog store, and which layout it has.
const FORMAT_KEY: &[u8] = b"sessionlog.format";
const FORMAT_VERSION: &[u8] = b"5";
/// Layout 1 kept an entry per key; layout 2 reads those as blocks of one;
/// layout 3 adds the clean-shutdown mark and the counters it vouches for;
/// layout 4 keeps a log's counters in its last block and adds sealed
/// (compressed) blocks and each log's seal mark (see `block` and `seal`);
/// layout 5 is sled's table of trees kept as a base and links to it (the
/// vendored sled's patch), which an older binary's sled would read without
/// the links, missing the logs created since the table was last written
/// whole. Opening an older store only rewrites the marker (its logs are sealed
/// afterwards, in the background), and from then on an older binary
/// refuses it: one that ignored the mark could append and leave the mark
/// vouching for counters that are no longer the last, and one before
/// layout 4 would read neither counters in a block nor a sealed block; one
/// before layout 5 would miss logs. The marker is in sled's default tree,
/// which is always in the table's base, so every older binary reads it.
const UPGRADABLE_FROM: [&[u8]; 4] = [b"1", b"2", b"3", b"4"];
/// Set by a clean shutdown after the active sessions' counters were saved
/// in their records, to a value those records carry; removed, and flushed,
/// by the next start-up before any write.
const CLEAN_SHUTDOWN_KEY: &[u8] = b"sessionlog.clean-shutdown";
const LOG_TREE_PREFIX: &str = "log/";
/// Beside sled's files: the clean-shutdown mark, written after the final
/// flush. A start-up that finds it while sled recovered no such mark knows
/// sled lost part of its log (it reads damage as a torn end) and refuses.
const CLEAN_SHUTDOWN_FILE: &str = "clean-shutdown";

/// What can go wrong below the rules: the disk, or what is on it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage i/o failed: {0}")]
    Io(#[source] std::io::Error),
    #[error("the store is corrupt: {detail}")]
    Corrupt { detail: String },
    #[error("the storage engine failed: {0}")]
    Engine(#[source] sled::Error),
    #[error("{detail}")]
    DataDir { detail: String },
    #[error("{detail}")]
    Foreign { detail: String },
    #[error("{detail}")]
    Locked { detail: String },
    #[error("the session's log was deleted while it was being read")]
    LogDropped,
    #[error("a storage task failed: {detail}")]
    TaskFailed { detail: String },
    /// A write failed earlier: see `health`.
    #[error("the store takes no writes after a storage failure: {reason}")]
    Failed { reason: String },
    /// A flush is stuck; writes wait until it returns: see `health`.
    #[error("the store takes no writes while a flush is stuck: {reason}")]
    Stalled { reason: String },
    /// A flush an append waits for did not finish in time.
    #[error("the flush did not finish within {timeout:?}")]
    FlushTimedOut { timeout: std::time::Duration },
}

impl StoreError {
    /// The same error for another caller, when one failure answers several
    /// (a flush's waiters, a group of appends). Errors that carry a source
    /// keep its message.
    pub(crate) fn copied(&self) -> Self {
        match self {
            Self::Failed { reason } => Self::Failed {
                reason: reason.clone(),
            },
            Self::Stalled { reason } => Self::Stalled {
                reason: reason.clone(),
            },
            Self::FlushTimedOut { timeout } => Self::FlushTimedOut { timeout: *timeout },
            Self::Corrupt { detail } => Self::Corrupt {
                detail: detail.clone(),
            },
            Self::LogDropped => Self::LogDropped,
            Self::Engine(err) => Self::Engine(err.clone()),
            Self::TaskFailed { detail } => Self::TaskFailed {
                detail: detail.clone(),
            },
            Self::Io(err) => Self::Io(std::io::Error::new(err.kind(), err.to_string())),
            other => Self::Io(std::io::Error::other(other.to_string())),
        }
    }
}

impl From<sled::Error> for StoreError {
    fn from(err: sled::Error) -> Self {
        match err {
            sled::Error::Io(io) => Self::Io(io),
            sled::Error::CollectionNotFound(_) => Self::LogDropped,
            sled::Error::Corruption { at, .. } => Self::Corrupt {
                detail: format!("sled found corruption at {at:?}"),
            },
            other => Self::Engine(other),
        }
    }
}

/// A failed transaction of ours: only storage fails one, as none aborts.
fn transaction_error(err: sled::transaction::TransactionError<()>, what: &str) -> StoreError {
    match err {
        sled::transaction::TransactionError::Storage(err) => StoreError::from(err),
        sled::transaction::TransactionError::Abort(()) => StoreError::Corrupt {
            detail: format!("{what} aborted"),
        },
    }
}

/// Runs storage work on tokio's blocking pool: the one way async code calls
/// the store, so no async worker ever waits on the disk. `work` runs to its
/// end even when the returned future is dropped (a client that goes away
/// cancels its call, not this), so whatever must happen with a write, and
/// the lock that orders it, belongs inside `work`.
pub(crate) async fn blocking<T, E>(
    work: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, E>
where
    T: Send + 'static,
    E: From<StoreError> + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|join| {
            Err(StoreError::TaskFailed {
                detail: join.to_string(),
            }
            .into())
        })
}

/// Where and how to open the store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub path: PathBuf,
    /// sled's page cache, in bytes.
    pub cache_bytes: u64,
}

/// A session as found on disk at start-up.
#[derive(Debug)]
pub struct LoadedSession {
    pub record: StoredSession,
    pub counters: LogCounters,
    /// Open, and checked, for active sessions; an ended session's log is
    /// neither opened nor checked at start-up: `Store::check_log` does
    /// both before it is served.
    pub log: Option<LogTree>,
}

/// What `Store::check_log` found.
#[derive(Debug)]
pub(crate) enum LogCheck {
    /// The log agrees with its counters; here it is, open.
    Passed(LogTree),
    /// It does not, or sled failed reading it: `what` says how (without
    /// the session's id).
    Damaged { what: String },
}

/// The open database.
#[derive(Debug, Clone)]
pub struct Store {
    db: sled::Db,
    sessions: sled::Tree,
    health: StoreHealth,
    path: PathBuf,
    syncer: std::sync::Arc<sync::Syncer>,
    /// Held by a seal step and by dropping a log, so a step never writes
    /// to a tree being dropped (see `seal_step`).
    seal_lock: std::sync::Arc<std::sync::Mutex<()>>,
}

/// At most this many threads load sessions at start-up.
const LOAD_THREADS: usize = 4;

/// `load` over `items` on up to `LOAD_THREADS` threads (start-up is mostly
/// reading and decompressing each active session's first and last block),
/// in `items`' order; the first error fails the whole load.
fn load_in_parallel<T: Send, U: Send>(
    items: Vec<T>,
    load: impl Fn(T) -> Result<U, StoreError> + Sync,
) -> Result<Vec<U>, StoreError> {
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .clamp(1, LOAD_THREADS);
    if threads == 1 || items.len() < 2 * threads {
        return items.into_iter().map(load).collect();
    }
    let per_thread = items.len().div_ceil(threads);
    let mut chunks = Vec::with_capacity(threads);
    let mut items = items.into_iter();
    loop {
        let chunk: Vec<T> = items.by_ref().take(per_thread).collect();
        if chunk.is_empty() {
            break;
        }
        chunks.push(chunk);
    }
    let load = &load;
    let quiet = verify::quiet_panics();
    let load_chunk = move |chunk: Vec<T>| {
        verify::inherit_quiet_panics(quiet);
        chunk.into_iter().map(load).collect::<Result<Vec<U>, _>>()
    };
    std::thread::scope(|scope| {
        // A thread that cannot be started (a process or thread limit)
        // leaves its chunk to this one: slower, never a refused store.
        let mut spawned = Vec::with_capacity(chunks.len());
        for chunk in chunks {
            let (keep, give) = std::sync::mpsc::sync_channel(1);
            let started = std::thread::Builder::new()
                .name("load-sessions".to_owned())
                // The chunk goes over a channel once the thread runs: a
                // closure that failed to start would drop it with itself.
                .spawn_scoped(scope, move || load_chunk(give.recv().unwrap_or_default()));
            match started {
                Ok(worker) => {
                    // The receiver lives until the worker has it.
                    let _ = keep.send(chunk);
                    spawned.push(Ok(worker));
                }
                Err(_) => spawned.push(Err(chunk)),
            }
        }
        // Every worker is joined before the outcome is decided, so the
        // first failure in record order is the one reported.
        let outcomes: Vec<std::thread::Result<Result<Vec<U>, StoreError>>> = spawned
            .into_iter()
            .map(|spawned| match spawned {
                Ok(worker) => worker.join(),
                Err(chunk) => Ok(load_chunk(chunk)),
            })
            .collect();
        let mut loaded = Vec::new();
        for outcome in outcomes {
            match outcome {
                Ok(part) => loaded.extend(part?),
                // A panic inside sled while loading: surfaced as the panic
                // it was, for `without_panics` to report.
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        Ok(loaded)
    })
}

impl Store {
    /// Opens (or creates, owner-only) the database at `options.path`,
    /// refusing a data dir owned by another user.
    /// Blocking: call on the blocking pool, like every method here.
    pub fn open(options: &StoreOptions) -> Result<Self, StoreError> {
        Self::open_with(options, ForeignOwner::Refuse)
    }

    /// `open`, saying whether a data dir owned by another user may be used.
    pub fn open_with(options: &StoreOptions, foreign: ForeignOwner) -> Result<Self, StoreError> {
        // A store whose sled files exist must come back with its marker key.
        let existing =
            data_dir::prepare(&options.path, foreign)? && options.path.join("db").exists();
        data_dir::ensure_unlocked(&options.path)?;
        if existing {
            verify::check_conf(&options.path)?;
        }
        let db = sled::Config::new()
            .path(&options.path)
            .cache_capacity(options.cache_bytes)
            // Flushing is ours to schedule (see `durability`): sled's own
            // background flusher adds tail latency and no guarantee.
            .flush_every_ms(None)
            .mode(sled::Mode::HighThroughput)
            .open()?;
        check_format(&db, &options.path, existing)?;
        let sessions = db.open_tree(SESSIONS_TREE)?;
        db.flush()?;
        let syncer =
            std::sync::Arc::new(sync::Syncer::open(&options.path).map_err(StoreError::Io)?);
        Ok(Self {
            db,
            sessions,
            health: StoreHealth::default(),
            path: options.path.clone(),
            syncer,
            seal_lock: std::sync::Arc::default(),
        })
    }

    /// Whether the store still takes writes, shared by every clone.
    pub fn health(&self) -> &StoreHealth {
        &self.health
    }

    /// Runs a write: refused at once when the store has failed, and an I/O
    /// failure of `write` fails the store (see `health`).
    fn write<T>(&self, write: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
        self.health.check()?;
        self.health.after_write(write())
    }

    /// Every stored session with its counters. An active session's log is
    /// opened and checked against them (see `verify`): a damaged one fails
    /// the whole load, naming it. An ended session's counters are its
    /// record's final ones and its log is left unopened (opening and
    /// checking 10,000 logs is seconds of reads): `check_log` checks it
    /// before it is served. Also drops log trees left
    /// without a record by a crash during delete. After a clean shutdown,
    /// active sessions' counters come from their records (reading each
    /// log's counters pulls a page of every active log into memory); the
    /// mark that vouches for them is removed and flushed before returning,
    /// so no write can happen while it still stands.
    pub fn load_sessions(&self) -> Result<Vec<LoadedSession>, StoreError> {
        let mark = self.db.get(CLEAN_SHUTDOWN_KEY)?;
        let mark_file = self.path.join(CLEAN_SHUTDOWN_FILE);
        match std::fs::read(&mark_file) {
            Ok(expected) if mark.as_deref() != Some(expected.as_slice()) => {
                return Err(verify::damaged(
                    &self.path,
                    "sled recovered less than the last clean shutdown wrote",
                ));
            }
            Ok(_) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(StoreError::Io(err)),
        }
        let mut records = Vec::new();
        for item in self.sessions.iter() {
            let (_, bytes) = item?;
            records.push(log::decode::<StoredSession>(&bytes, "session record")?);
        }
        let mark = mark.as_ref().map(|mark| mark.as_ref());
        let loaded = load_in_parallel(records, |record| self.load_session(record, mark))?;
        let ids: HashSet<&str> = loaded
            .iter()
            .map(|session| session.record.id.as_str())
            .collect();
        for name in self.db.tree_names() {
            let Some(id) = name.strip_prefix(LOG_TREE_PREFIX.as_bytes()) else {
                continue;
            };
            if !ids.contains(String::from_utf8_lossy(id).as_ref()) {
                tracing::info!(tree = %String::from_utf8_lossy(&name), "dropping the log of a deleted session");
                self.db.drop_tree(&name)?;
            }
        }
        if mark.is_some() {
            // The file first: a crash between the two leaves a mark without
            // a file, which is only a mark, never a false alarm.
            // The removal is synced, or a power cut could bring the file
            // back without the mark: a false alarm at the next start.
            match std::fs::remove_file(&mark_file) {
                Ok(()) => sync::sync_dir(&self.path).map_err(StoreError::Io)?,
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => return Err(StoreError::Io(err)),
            }
            self.db.remove(CLEAN_SHUTDOWN_KEY)?;
            self.flush()?;
        }
        Ok(loaded)
    }

    /// One stored session (see `load_sessions`): an active one's log
    /// opened and checked against its counters; `mark` is the
    /// clean-shutdown mark, if any.
    fn load_session(
        &self,
        mut record: StoredSession,
        mark: Option<&[u8]>,
    ) -> Result<LoadedSession, StoreError> {
        let saved = record.shutdown_counters.take();
        let saved_under = std::mem::take(&mut record.shutdown_mark);
        let (counters, log) = if record.state() == State::Ended {
            // Written in the same transaction as the end entry, so they are
            // the log's last counters unless the log is damaged, which
            // `check_log` finds before the log is served.
            (record.final_counters.unwrap_or_default(), None)
        } else {
            let log = self.open_log(&record.id)?;
            let trusted = mark.is_some_and(|mark| !saved_under.is_empty() && mark == saved_under);
            let counters = match saved {
                Some(saved) if trusted => saved,
                _ => log.counters()?,
            };
            verify::check_log(&record.id, &log, &counters)?;
            (counters, Some(log))
        };
        Ok(LoadedSession {
            record,
            counters,
            log,
        })
    }

    /// At a clean shutdown, once nothing can write any more: saves the
    /// counters of every active session (all of them: the mark vouches for
    /// each active record's saved counters) in its record, then sets the
    /// mark that lets the next start-up trust them. The caller flushes. sled recovers
    /// a prefix of what was written, so a mark that survives a crash has
    /// its records with it.
    pub fn save_shutdown_counters(
        &self,
        active: impl IntoIterator<Item = (StoredSession, LogCounters)>,
    ) -> Result<usize, StoreError> {
        // A mark of its own per shutdown: counters saved under an earlier
        // one can never pass for these.
        let mark: [u8; 16] = rand::random();
        let mut batch = sled::Batch::default();
        let mut saved = 0;
        for (mut record, counters) in active {
            record.shutdown_counters = Some(counters);
            record.shutdown_mark = mark.to_vec();
            batch.insert(record.id.as_bytes(), record.encode_to_vec());
            saved += 1;
        }
        self.write(|| {
            self.sessions.apply_batch(batch)?;
            self.db.insert(CLEAN_SHUTDOWN_KEY, mark.as_slice())?;
            Ok(saved)
        })
    }

    /// Stores a new session's record and opens its log, or returns `None`
    /// when a session with this id already exists.
    pub fn create_session(&self, record: &StoredSession) -> Result<Option<LogTree>, StoreError> {
        self.write(|| {
            let created = self.sessions.compare_and_swap(
                record.id.as_bytes(),
                None::<&[u8]>,
                Some(record.encode_to_vec()),
            )?;
            if created.is_err() {
                return Ok(None);
            }
            self.open_log(&record.id).map(Some)
        })
    }

    /// Replaces a session's record.
    pub fn put_session(&self, record: &StoredSession) -> Result<(), StoreError> {
        self.write(|| {
            self.sessions
                .insert(record.id.as_bytes(), record.encode_to_vec())?;
            Ok(())
        })
    }

    /// Opens `session_id`'s log and checks it against `counters`, the ones
    /// it is to be served with (see `verify::find_damage`: two block
    /// reads). Damage is an answer, not an error: what is wrong, including
    /// a panic inside sled while reading the log (reported as one line,
    /// without a backtrace). An error is a failure to read (I/O), which a
    /// later check may get past.
    pub(crate) fn check_log(
        &self,
        session_id: &str,
        counters: &LogCounters,
    ) -> Result<LogCheck, StoreError> {
        let checked = verify::catch_quietly(|| {
            let log = self.open_log(session_id)?;
            Ok::<_, StoreError>(
                verify::find_damage(&log, counters)?
                    .map_or(LogCheck::Passed(log), |what| LogCheck::Damaged { what }),
            )
        });
        match checked {
            Ok(Ok(check)) => Ok(check),
            // sled found a bad page while reading this log.
            Ok(Err(StoreError::Corrupt { detail })) => Ok(LogCheck::Damaged { what: detail }),
            Ok(Err(err)) => Err(err),
            Err(panic) => Ok(LogCheck::Damaged {
                what: format!("sled failed while reading its log ({panic})"),
            }),
        }
    }

    /// The log tree of a session.
    pub fn open_log(&self, session_id: &str) -> Result<LogTree, StoreError> {
        let tree = self
            .db
            .open_tree(format!("{LOG_TREE_PREFIX}{session_id}"))?;
        Ok(LogTree::new(tree, self.health.clone()))
    }

    /// Applies appends prepared for distinct logs (`LogTree::prepare_append`)
    /// and returns what each one applied, in order. Appends of one key each
    /// are inserted one by one: sled stores a key atomically and cheaply.
    /// Otherwise they are one transaction: sled seals its log buffer (two
    /// buffer writes) for every batch or transaction, so one for the group
    /// instead of one per append; a crash keeps all of them or none, and an
    /// error applies none. Inserted one by one, an error stops the rest:
    /// each answer says whether its append landed.
    pub(crate) fn apply_appends(
        &self,
        appends: Vec<PreparedAppend>,
    ) -> Vec<Result<AppliedAppend, StoreError>> {
        let single = |append: &PreparedAppend| matches!(append.writes, log::Writes::One { .. });
        if appends.len() == 1 || appends.iter().all(single) {
            let mut failed: Option<StoreError> = None;
            return appends
                .into_iter()
                .map(|append| {
                    if let Some(err) = &failed {
                        return Err(err.copied());
                    }
                    let (log, writes, applied) = append.split();
                    match self.write(|| Ok(writes.apply(log.tree())?)) {
                        Ok(()) => Ok(applied),
                        Err(err) => {
                            failed = Some(err.copied());
                            Err(err)
                        }
                    }
                })
                .collect();
        }
        let mut trees = Vec::with_capacity(appends.len());
        let mut batches = Vec::with_capacity(appends.len());
        let mut applied = Vec::with_capacity(appends.len());
        for append in appends {
            let (log, writes, done) = append.split();
            trees.push(log);
            batches.push(writes.into_batch());
            applied.push(done);
        }
        let trees: Vec<&sled::Tree> = trees.iter().map(LogTree::tree).collect();
        let written = self.write(|| {
            trees
                .as_slice()
                .transaction(|trees| {
                    for (tree, batch) in trees.iter().zip(&batches) {
                        tree.apply_batch(batch)?;
                    }
                    Ok::<_, ConflictableTransactionError<()>>(())
                })
                .map_err(|err| transaction_error(err, "an append group"))
        });
        match written {
            Ok(()) => applied.into_iter().map(Ok).collect(),
            Err(err) => applied.iter().map(|_| Err(err.copied())).collect(),
        }
    }

    /// Appends the end entry and stores the ended record (with the final
    /// counters) in one transaction: a crash leaves the session either
    /// active without the entry or ended with it.
    pub fn end_session(
        &self,
        log: &LogTree,
        record: &mut StoredSession,
        counters: &LogCounters,
        end_entry: StoredEntry,
        now: SystemTime,
    ) -> Result<LogCounters, StoreError> {
        let (writes, next) = log.prepare(
            counters,
            vec![NewEntry::Decoded(end_entry)],
            None,
            now,
            None,
        )?;
        let batch = writes.into_batch();
        record.final_counters = Some(next);
        let record_bytes = record.encode_to_vec();
        self.health.check()?;
        let ended = (&self.sessions, log.tree())
            .transaction(|(sessions, log)| {
                log.apply_batch(&batch)?;
                sessions.insert(record.id.as_bytes(), record_bytes.as_slice())?;
                Ok::<_, ConflictableTransactionError<()>>(())
            })
            .map_err(|err| transaction_error(err, "the end-session transaction"));
        self.health.after_write(ended)?;
        Ok(next)
    }

    /// Removes a session's record, then its log. A crash in between leaves
    /// an orphan log that `load_sessions` drops; never a record without log.
    pub fn delete_session(&self, session_id: &str) -> Result<(), StoreError> {
        self.delete_sessions(&[session_id.to_owned()])
    }

    /// Removes sessions' records in one batch, then their logs. A crash
    /// in between leaves orphan logs that `load_sessions` drops.
    pub fn delete_sessions(&self, session_ids: &[String]) -> Result<(), StoreError> {
        if session_ids.is_empty() {
            return Ok(());
        }
        self.write(|| {
            let mut records = sled::Batch::default();
            for session_id in session_ids {
                records.remove(session_id.as_bytes());
            }
            self.sessions.apply_batch(records)?;
            let _sealing = self.seal_guard();
            for session_id in session_ids {
                self.db
                    .drop_tree(format!("{LOG_TREE_PREFIX}{session_id}"))?;
            }
            Ok(())
        })
    }

    /// Seals the next run of `session_id`'s log at or below
    /// `target.through_seq` (which must be applied): one atomic batch on
    /// its tree (see `seal`), unless fewer than `target.min_unsealed` of its
    /// `target.size_bytes` are past the seal mark, or nothing is left to
    /// seal. `alive` is asked under the lock that dropping a log takes, so
    /// a deletion that has not said so yet cannot drop the tree before the
    /// step lands; the caller must know the session's record exists until
    /// `alive` turns false (this opens its log).
    pub fn seal_step(
        &self,
        session_id: &str,
        target: SealTarget,
        alive: impl FnOnce() -> bool,
    ) -> Result<SealOutcome, StoreError> {
        let _sealing = self.seal_guard();
        if !alive() {
            return Ok(SealOutcome::Gone);
        }
        let log = self.open_log(session_id)?;
        let mark = log.seal_mark()?;
        if target.size_bytes.saturating_sub(mark.through_bytes) < target.min_unsealed {
            return Ok(SealOutcome::Done(mark));
        }
        let Some(prepared) = log.prepare_seal(mark, target.through_seq)? else {
            return Ok(SealOutcome::Done(mark));
        };
        self.write(|| {
            log.tree().apply_batch(prepared.batch)?;
            log.consolidate(&prepared.keys)
        })?;
        Ok(SealOutcome::Step(prepared.step))
    }

    fn seal_guard(&self) -> std::sync::MutexGuard<'_, ()> {
        // Guards no data: a panic while it was held leaves nothing to fix.
        self.seal_lock
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Writes every dirty buffer, then fsyncs what sled wrote (see `sync`),
    /// so it survives a power loss, then punches the free segments that
    /// sync covers (see `reclaim`). Blocking; refused once the store has
    /// failed, since sled's flush would then never return. A failed sync
    /// fails the store too: after an fsync error the kernel may have
    /// dropped the pages, so a retry could report success for lost data.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.write(|| {
            self.db.flush()?;
            // Segments sled freed before this sync may be reused once it
            // is done (see vendor/sled/PATCH.md): a free comes after the
            // write of its pages' new copies, which the sync covers. Read
            // after sled's flush, whose writes often free a relocation's
            // drained segments.
            let freed = self.db.free_generation();
            self.syncer.sync().map_err(StoreError::Io)?;
            self.db.note_durable(freed);
            // And their blocks may go back to the filesystem. Under steady
            // churn segments are freed about as fast as they are written,
            // and the reclaimer's turns, busy relocating, came too seldom to
            // punch them before they piled up (see `reclaim`).
            self.db.punch_durable_free_segments();
            Ok(())
        })
    }

    /// How many flushes have been made durable with fsync (for tests).
    pub fn sync_count(&self) -> u64 {
        self.syncer.count()
    }

    /// Tests: the next flush, once synced, returns only after `hold`.
    #[cfg(feature = "testing")]
    pub fn hold_next_flush(&self, hold: std::time::Duration) {
        self.syncer.hold_next(hold);
    }

    /// After the final flush: copies the clean-shutdown mark, if this
    /// shutdown set one, into a file beside sled's (see
    /// `CLEAN_SHUTDOWN_FILE`), durably.
    pub fn record_clean_shutdown(&self) -> Result<(), StoreError> {
        let Some(mark) = self.db.get(CLEAN_SHUTDOWN_KEY)? else {
            return Ok(());
        };
        let partial = self.path.join(format!("{CLEAN_SHUTDOWN_FILE}.partial"));
        let mut file = std::fs::File::create(&partial).map_err(StoreError::Io)?;
        std::io::Write::write_all(&mut file, &mark).map_err(StoreError::Io)?;
        file.sync_all().map_err(StoreError::Io)?;
        std::fs::rename(&partial, self.path.join(CLEAN_SHUTDOWN_FILE)).map_err(StoreError::Io)?;
        sync::sync_dir(&self.path).map_err(StoreError::Io)
    }

    /// Whether this database can still be dropped, after the store failed:
    /// a flush that returns (with sled's sticky error, usually) shows sled
    /// is poisoned but not wedged, and dropping it does no I/O; one that
    /// does not return within `timeout` means sled's own shutdown flush
    /// would hang too. Blocking, up to `timeout`; the probe thread is left
    /// behind when it hangs.
    pub fn can_drop_after_failure(&self, timeout: std::time::Duration) -> bool {
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let db = self.db.clone();
        let probe = std::thread::Builder::new()
            .name("sled-probe".to_owned())
            .spawn(move || {
                let _ = db.flush();
                let _ = done_tx.send(());
            });
        probe.is_ok() && done_rx.recv_timeout(timeout).is_ok()
    }

    /// Bytes sled occupies on disk.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.db.size_on_disk()?)
    }

    /// How sled's log file is used: segments by state and the bytes of
    /// live pages in them (the rest of the file is dead space or holes).
    pub fn segment_usage(&self) -> sled::SegmentUsage {
        self.db.segment_usage()
    }
}

/// Accepts a new database (and marks it) or one this layout wrote. Refuses
/// a store whose contents sled could not recover: sled reads an unreadable
/// log as a torn write and starts it over, which must not pass as empty.
fn check_format(db: &sled::Db, path: &std::path::Path, existing: bool) -> Result<(), StoreError> {
    match db.get(FORMAT_KEY)? {
        Some(version) if version.as_ref() == FORMAT_VERSION => Ok(()),
        Some(version) if UPGRADABLE_FROM.contains(&version.as_ref()) => {
            tracing::info!(
                path = %path.display(),
                from = %String::from_utf8_lossy(&version),
                to = %String::from_utf8_lossy(FORMAT_VERSION),
                "upgrading the store's layout"
            );
            db.insert(FORMAT_KEY, FORMAT_VERSION)?;
            db.flush()?;
            Ok(())
        }
        Some(version) => Err(StoreError::Foreign {
            detail: format!(
                "the store in {} has layout {:?}, which this version cannot read",
                path.display(),
                String::from_utf8_lossy(&version)
            ),
        }),
        None if existing => Err(StoreError::Corrupt {
            detail: format!(
                "sled could not recover the store in {}; refusing to start on it \
                 (keep the directory for inspection, or restore a backup)",
                path.display()
            ),
        }),
        None => {
            db.insert(FORMAT_KEY, FORMAT_VERSION)?;
            db.flush()?;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(messages: &[&str]) -> Vec<NewEntry> {
        messages
            .iter()
            .map(|message| {
                NewEntry::Decoded(StoredEntry {
                    message: (*message).to_owned(),
                    ..StoredEntry::default()
                })
            })
            .collect()
    }

    fn messages(log: &LogTree) -> Vec<String> {
        log.scan(0, MAX_SEQ)
            .map(|item| {
                let (_, bytes) = item.expect("scan");
                decode_entry(&bytes).expect("decodes").message
            })
            .collect()
    }

    pub(super) fn open_store(dir: &tempfile::TempDir) -> Store {
        Store::open(&StoreOptions {
            path: dir.path().join("data"),
            cache_bytes: 1 << 20,
        })
        .expect("store")
    }

    /// Appends `messages` to the empty `log` in one append; its counters.
    fn first_append(store: &Store, log: &LogTree, messages: &[&str]) -> LogCounters {
        let prepared = log
            .prepare_append(
                &LogCounters::default(),
                entries(messages),
                None,
                SystemTime::now(),
                false,
            )
            .expect("prepare");
        store
            .apply_appends(vec![prepared])
            .into_iter()
            .next()
            .expect("one")
            .expect("landed")
            .counters
    }

    #[test]
    fn a_group_of_appends_lands_in_every_log_with_its_counters_and_batch_ids() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = open_store(&dir);
        let logs: Vec<LogTree> = ["a", "b", "c"]
            .iter()
            .map(|id| store.open_log(id).expect("log"))
            .collect();
        let now = SystemTime::now();
        let first = LogCounters::default();
        let landed = |applied: Vec<Result<AppliedAppend, StoreError>>| -> Vec<AppliedAppend> {
            applied
                .into_iter()
                .map(|applied| applied.expect("landed"))
                .collect()
        };
        // A group of one, then a group of three with a batch id in one.
        let applied = landed(store.apply_appends(vec![
            logs[0]
                .prepare_append(&first, entries(&["a1"]), None, now, true)
                .expect("prepare"),
        ]));
        let a = applied[0].counters;
        assert_eq!((a.last_seq, a.entry_count), (1, 1));
        assert_eq!(applied[0].kept.as_ref().map(Vec::len), Some(1));
        let group = vec![
            logs[0]
                .prepare_append(&a, entries(&["a2", "a3"]), Some("id-a"), now, false)
                .expect("prepare"),
            logs[1]
                .prepare_append(&first, entries(&["b1"]), None, now, false)
                .expect("prepare"),
            logs[2]
                .prepare_append(&first, entries(&["c1", "c2", "c3"]), None, now, false)
                .expect("prepare"),
        ];
        let applied = landed(store.apply_appends(group));
        let last: Vec<u64> = applied.iter().map(|a| a.counters.last_seq).collect();
        assert_eq!(last, [3, 1, 3]);
        assert!(applied.iter().all(|a| a.kept.is_none()));
        assert_eq!(messages(&logs[0]), ["a1", "a2", "a3"]);
        assert_eq!(messages(&logs[1]), ["b1"]);
        assert_eq!(messages(&logs[2]), ["c1", "c2", "c3"]);
        for (log, applied) in logs.iter().zip(&applied) {
            assert_eq!(log.counters().expect("counters"), applied.counters);
        }
        let batch = logs[0].find_batch("id-a").expect("find").expect("stored");
        assert_eq!((batch.first_seq, batch.last_seq), (2, 3));
        // A group of one-key appends: each its own insert, same outcome.
        let counters: Vec<LogCounters> = applied.iter().map(|a| a.counters).collect();
        let group = logs
            .iter()
            .zip(&counters)
            .map(|(log, counters)| {
                log.prepare_append(counters, entries(&["one more"]), None, now, false)
                    .expect("prepare")
            })
            .collect();
        let applied = landed(store.apply_appends(group));
        for (log, applied) in logs.iter().zip(&applied) {
            assert_eq!(log.counters().expect("counters"), applied.counters);
            assert_eq!(messages(log).last().map(String::as_str), Some("one more"));
        }
        let last: Vec<u64> = applied.iter().map(|a| a.counters.last_seq).collect();
        assert_eq!(last, [4, 2, 4]);
    }

    #[test]
    fn sealing_small_logs_leaves_their_unsealed_blocks_dead() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = open_store(&dir);
        let text: Vec<String> = (0..30)
            .map(|i| {
                format!(
                    "GET /api/items/{i} 200 served in {} ms by worker {}",
                    i % 17,
                    i % 3
                )
            })
            .collect();
        let text: Vec<&str> = text.iter().map(String::as_str).collect();
        // Each log is one append, so one block in one leaf: sealing it
        // leaves the leaf with a few links, under sled's threshold for
        // writing it whole by itself.
        let mut logs = Vec::new();
        for i in 0..40 {
            let id = format!("small-{i}");
            let log = store.open_log(&id).expect("log");
            let counters = first_append(&store, &log, &text);
            logs.push((id, counters));
        }
        store.flush().expect("flush");
        let unsealed = store.segment_usage().live_bytes;
        for (id, counters) in &logs {
            let target = SealTarget {
                through_seq: counters.last_seq,
                size_bytes: counters.size_bytes,
                min_unsealed: 1,
            };
            while let SealOutcome::Step(_) = store.seal_step(id, target, || true).expect("seal") {}
        }
        store.flush().expect("flush");
        let sealed = store.segment_usage().live_bytes;
        assert!(
            sealed * 2 < unsealed,
            "sled counts {sealed} bytes live after sealing, {unsealed} before"
        );
        for (id, _) in &logs {
            let log = store.open_log(id).expect("log");
            assert_eq!(messages(&log), text);
        }
    }

    #[test]
    fn a_log_checked_against_other_counters_or_garbled_is_damaged() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = open_store(&dir);
        let log = store.open_log("s").expect("log");
        let counters = first_append(&store, &log, &["one", "two", "three"]);
        let damage = |counters: &LogCounters| match store.check_log("s", counters).expect("read") {
            LogCheck::Passed(log) => {
                assert_eq!(messages(&log), ["one", "two", "three"]);
                None
            }
            LogCheck::Damaged { what } => Some(what),
        };
        assert_eq!(damage(&counters), None);
        let more = LogCounters {
            last_seq: 4,
            entry_count: 4,
            ..counters
        };
        let what = damage(&more).expect("more than the log holds");
        assert!(what.contains("disagree"), "{what}");
        let (key, block) = log
            .tree()
            .range(keys::entry_key(0)..=keys::entry_key(MAX_SEQ))
            .next_back()
            .expect("a block")
            .expect("read");
        log.tree()
            .insert(key, &block[..block.len() / 2])
            .expect("garble");
        assert!(damage(&counters).is_some(), "a garbled last block");
    }

    #[test]
    fn a_failed_store_lands_no_append_of_a_group() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = open_store(&dir);
        let logs: Vec<LogTree> = ["a", "b"]
            .iter()
            .map(|id| store.open_log(id).expect("log"))
            .collect();
        let now = SystemTime::now();
        store.health().fail("a test".to_owned());
        let group = logs
            .iter()
            .map(|log| {
                log.prepare_append(&LogCounters::default(), entries(&["x"]), None, now, false)
                    .expect("prepare")
            })
            .collect();
        let applied = store.apply_appends(group);
        assert_eq!(applied.len(), 2);
        assert!(applied.iter().all(Result::is_err));
        for log in &logs {
            assert_eq!(log.counters().expect("counters"), LogCounters::default());
        }
    }
}
