//! Making what sled wrote survive a power loss, not only a process crash.
//! sled 0.34's flush ends with `sync_file_range`, which writes the log's
//! pages out but flushes neither the drive's cache nor the file's metadata
//! (a grown size), and it never syncs the directory that names a new file.
//! `Syncer::sync` runs after each sled flush: it fsyncs every file of the
//! data dir that appeared or changed since the last sync (snapshots, the
//! config) and the directory when a name is new, then `fdatasync`s the log.
//!
//! Blobs (values too large for the log) are not synced here: a log record
//! can be made durable by any fsync of the log, including one sled makes
//! itself when it truncates freed segments, and a blob created between this
//! sync's listing and its `fdatasync` would be missed. Recovery skips a
//! record whose blob is missing, tearing the batch it belonged to, so the
//! vendored sled makes each blob and its name durable before it writes the
//! record (`vendor/sled/PATCH.md`).
//!
//! A file is seen as changed when its size or mtime differ from what they
//! were just before its last fsync.
//!
//! Invariant: when `sync` returns `Ok`, everything sled had written when it
//! was called is on stable storage; `syncs` counts those returns.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

/// sled's log file in the data dir.
const LOG_FILE: &str = "db";
/// sled's directory of values too large for the log.
const BLOBS_DIR: &str = "blobs";

#[derive(Debug)]
pub(super) struct Syncer {
    dir: PathBuf,
    log: File,
    /// The names already synced in the data dir, with what each looked
    /// like when it was; one sync at a time.
    known: Mutex<HashMap<OsString, Stamp>>,
    syncs: AtomicU64,
    /// Tests: how long the next sync waits after it is done, to stand for
    /// a flush that returns late.
    #[cfg(feature = "testing")]
    hold_next: Mutex<Option<std::time::Duration>>,
}

/// A file's size and mtime just before its last fsync; `None` for a
/// directory, which is synced once (its own directory is what names it).
type Stamp = Option<(u64, SystemTime)>;

fn stamp(metadata: &std::fs::Metadata) -> io::Result<Stamp> {
    if metadata.is_dir() {
        return Ok(None);
    }
    Ok(Some((metadata.len(), metadata.modified()?)))
}

impl Syncer {
    /// Syncs every file in `dir` and its blobs once (a crash of this or an
    /// older binary may have left any of them unsynced) and keeps the log
    /// open for the syncs to come.
    pub(super) fn open(dir: &Path) -> io::Result<Self> {
        let log = File::open(dir.join(LOG_FILE))?;
        let blobs = dir.join(BLOBS_DIR);
        if blobs.is_dir() {
            sync_new_files(&blobs, &mut HashMap::new(), None)?;
        }
        let syncer = Self {
            dir: dir.to_owned(),
            log,
            known: Mutex::new(HashMap::new()),
            syncs: AtomicU64::new(0),
            #[cfg(feature = "testing")]
            hold_next: Mutex::new(None),
        };
        syncer.sync()?;
        Ok(syncer)
    }

    /// Makes everything sled wrote so far durable. Blocking.
    pub(super) fn sync(&self) -> io::Result<()> {
        // A sync that failed part way leaves the sets as they were, so the
        // next one retries those files: a poisoned lock is still usable.
        let mut known = self
            .known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        sync_new_files(&self.dir, &mut known, Some(LOG_FILE))?;
        self.log.sync_data()?;
        self.syncs.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "testing")]
        if let Some(hold) = self
            .hold_next
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        {
            std::thread::sleep(hold);
        }
        Ok(())
    }

    /// Tests: the next sync, once done, waits `hold` before it returns.
    #[cfg(feature = "testing")]
    pub(super) fn hold_next(&self, hold: std::time::Duration) {
        *self
            .hold_next
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(hold);
    }

    /// How many syncs have completed.
    pub(super) fn count(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }
}

/// Fsyncs the entries of `dir` that are not in `known` or changed since
/// (files and directories), and `dir` itself when there were new ones, so
/// their names survive too. Names gone from `dir` are forgotten (sled
/// removes old snapshots). `log`, when named, is only
/// recorded: it changes at every flush and `sync` fdatasyncs it itself.
fn sync_new_files(
    dir: &Path,
    known: &mut HashMap<OsString, Stamp>,
    log: Option<&str>,
) -> io::Result<()> {
    let mut present = HashMap::with_capacity(known.len());
    let mut added = false;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if log.is_some_and(|log| name == log) {
            added |= !known.contains_key(&name);
            present.insert(name, None);
            continue;
        }
        let metadata = match entry.metadata() {
            Ok(metadata) => metadata,
            // Removed since the listing: nothing to keep.
            Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
            Err(err) => return Err(err),
        };
        // Taken before the fsync: a write after it changes the stamp, so
        // the next sync covers that write.
        let now = stamp(&metadata)?;
        let seen = known.get(&name);
        if seen != Some(&now) {
            match File::open(entry.path()) {
                Ok(file) => file.sync_all()?,
                Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                Err(err) => return Err(err),
            }
            added |= seen.is_none();
        }
        present.insert(name, now);
    }
    if added {
        sync_dir(dir)?;
    }
    *known = present;
    Ok(())
}

/// Fsyncs a directory, so the names created in it survive a power loss.
pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
