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
mod keys;
mod log;
mod query;
pub mod schema;

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::SystemTime;

use prost::Message;
use sled::Transactional;
use sled::transaction::ConflictableTransactionError;

pub use entry::NewEntry;
pub(crate) use keys::MAX_SEQ;
pub(crate) use log::LogTree;
pub(crate) use log::decode_entry;
pub(crate) use query::{EntryFilter, ScanLimits, entry_wire_len};
use schema::{LogCounters, State, StoredEntry, StoredSession};

const SESSIONS_TREE: &str = "sessions";
/// Marks a sled database as a sessionlog store, and which layout it has.
const FORMAT_KEY: &[u8] = b"sessionlog.format";
const FORMAT_VERSION: &[u8] = b"3";
/// Layout 1 kept an entry per key; layout 2 reads those as blocks of one;
/// layout 3 adds the clean-shutdown mark and the counters it vouches for.
/// Opening an older store only rewrites the marker, and from then on an
/// older binary refuses it: one that ignored the mark could append and
/// leave the mark vouching for counters that are no longer the last.
const UPGRADABLE_FROM: [&[u8]; 2] = [b"1", b"2"];
/// Set by a clean shutdown after the active sessions' counters were saved
/// in their records, to a value those records carry; removed, and flushed,
/// by the next start-up before any write.
const CLEAN_SHUTDOWN_KEY: &[u8] = b"sessionlog.clean-shutdown";
const LOG_TREE_PREFIX: &str = "log/";

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
    /// Open for active sessions; ended ones open theirs when read.
    pub log: Option<LogTree>,
}

/// The open database.
#[derive(Debug, Clone)]
pub struct Store {
    db: sled::Db,
    sessions: sled::Tree,
}

impl Store {
    /// Opens (or creates, owner-only) the database at `options.path`.
    /// Blocking: call on the blocking pool, like every method here.
    pub fn open(options: &StoreOptions) -> Result<Self, StoreError> {
        // A store whose sled files exist must come back with its marker key.
        let existing = data_dir::prepare(&options.path)? && options.path.join("db").exists();
        data_dir::ensure_unlocked(&options.path)?;
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
        Ok(Self { db, sessions })
    }

    /// Every stored session with its counters. Also drops log trees left
    /// without a record by a crash during delete. After a clean shutdown,
    /// active sessions' counters come from their records (reading each
    /// log's counters pulls a page of every active log into memory); the
    /// mark that vouches for them is removed and flushed before returning,
    /// so no write can happen while it still stands.
    pub fn load_sessions(&self) -> Result<Vec<LoadedSession>, StoreError> {
        let mark = self.db.get(CLEAN_SHUTDOWN_KEY)?;
        let mut loaded = Vec::new();
        let mut ids = HashSet::new();
        for item in self.sessions.iter() {
            let (_, bytes) = item?;
            let mut record: StoredSession = log::decode(&bytes, "session record")?;
            let saved = record.shutdown_counters.take();
            let saved_under = std::mem::take(&mut record.shutdown_mark);
            let (counters, log) = if record.state() == State::Ended {
                (record.final_counters.unwrap_or_default(), None)
            } else {
                let log = self.open_log(&record.id)?;
                let trusted = mark
                    .as_ref()
                    .is_some_and(|mark| !saved_under.is_empty() && mark.as_ref() == saved_under);
                let counters = match saved {
                    Some(saved) if trusted => saved,
                    _ => log.counters()?,
                };
                (counters, Some(log))
            };
            ids.insert(record.id.clone());
            loaded.push(LoadedSession {
                record,
                counters,
                log,
            });
        }
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
            self.db.remove(CLEAN_SHUTDOWN_KEY)?;
            self.db.flush()?;
        }
        Ok(loaded)
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
        self.sessions.apply_batch(batch)?;
        self.db.insert(CLEAN_SHUTDOWN_KEY, mark.as_slice())?;
        Ok(saved)
    }

    /// Stores a new session's record and opens its log, or returns `None`
    /// when a session with this id already exists.
    pub fn create_session(&self, record: &StoredSession) -> Result<Option<LogTree>, StoreError> {
        let created = self.sessions.compare_and_swap(
            record.id.as_bytes(),
            None::<&[u8]>,
            Some(record.encode_to_vec()),
        )?;
        if created.is_err() {
            return Ok(None);
        }
        self.open_log(&record.id).map(Some)
    }

    /// Replaces a session's record.
    pub fn put_session(&self, record: &StoredSession) -> Result<(), StoreError> {
        self.sessions
            .insert(record.id.as_bytes(), record.encode_to_vec())?;
        Ok(())
    }

    /// The log tree of a session.
    pub fn open_log(&self, session_id: &str) -> Result<LogTree, StoreError> {
        let tree = self
            .db
            .open_tree(format!("{LOG_TREE_PREFIX}{session_id}"))?;
        Ok(LogTree::new(tree))
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
        let (batch, next) = log.prepare(counters, vec![NewEntry::Decoded(end_entry)], None, now)?;
        record.final_counters = Some(next);
        let record_bytes = record.encode_to_vec();
        (&self.sessions, log.tree())
            .transaction(|(sessions, log)| {
                log.apply_batch(&batch)?;
                sessions.insert(record.id.as_bytes(), record_bytes.as_slice())?;
                Ok::<_, ConflictableTransactionError<()>>(())
            })
            .map_err(|err| match err {
                sled::transaction::TransactionError::Storage(err) => StoreError::from(err),
                sled::transaction::TransactionError::Abort(()) => StoreError::Corrupt {
                    detail: "the end-session transaction aborted".to_owned(),
                },
            })?;
        Ok(next)
    }

    /// Removes a session's record, then its log. A crash in between leaves
    /// an orphan log that `load_sessions` drops; never a record without log.
    pub fn delete_session(&self, session_id: &str) -> Result<(), StoreError> {
        self.sessions.remove(session_id.as_bytes())?;
        self.db
            .drop_tree(format!("{LOG_TREE_PREFIX}{session_id}"))?;
        Ok(())
    }

    /// Writes every dirty buffer and fsyncs. Blocking.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    /// Bytes sled occupies on disk.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.db.size_on_disk()?)
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
