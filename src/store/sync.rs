//! Making what sled wrote survive a power loss, not only a process crash.
//! sled 0.34's flush ends with `sync_file_range`, which writes the log's
//! pages out but flushes neither the drive's cache nor the file's metadata
//! (a grown size), and it never syncs the blob files it creates for large
//! values or the directories that name new files. `Syncer::sync` runs after
//! each sled flush: it fsyncs every file that appeared since the last sync
//! (blobs, snapshots) and the directory that names it, then `fdatasync`s
//! the log. Blobs go first: a log record must never be durable before the
//! blob it points to.
//!
//! Invariant: when `sync` returns `Ok`, everything sled had written when it
//! was called is on stable storage; `syncs` counts those returns.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// sled's log file in the data dir.
const LOG_FILE: &str = "db";
/// sled's directory of values too large for the log.
const BLOBS_DIR: &str = "blobs";

#[derive(Debug)]
pub(super) struct Syncer {
    dir: PathBuf,
    log: File,
    /// The names already synced, per directory; one sync at a time.
    known: Mutex<Known>,
    syncs: AtomicU64,
}

#[derive(Debug, Default)]
struct Known {
    top: HashSet<OsString>,
    blobs: HashSet<OsString>,
}

impl Syncer {
    /// Syncs every file in `dir` once (a crash may have left any of them
    /// unsynced) and keeps the log open for the syncs to come.
    pub(super) fn open(dir: &Path) -> io::Result<Self> {
        let log = File::open(dir.join(LOG_FILE))?;
        let syncer = Self {
            dir: dir.to_owned(),
            log,
            known: Mutex::new(Known::default()),
            syncs: AtomicU64::new(0),
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
        let Known { top, blobs } = &mut *known;
        let blobs_dir = self.dir.join(BLOBS_DIR);
        if blobs_dir.is_dir() {
            sync_new_files(&blobs_dir, blobs)?;
        }
        sync_new_files(&self.dir, top)?;
        self.log.sync_data()?;
        self.syncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// How many syncs have completed.
    pub(super) fn count(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }
}

/// Fsyncs the entries of `dir` not in `known` (files and directories), and
/// `dir` itself when there were any, so their names survive too. Names gone
/// from `dir` are forgotten (sled removes old snapshots and freed blobs).
fn sync_new_files(dir: &Path, known: &mut HashSet<OsString>) -> io::Result<()> {
    let mut present = HashSet::with_capacity(known.len());
    let mut added = false;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if !known.contains(&name) {
            match File::open(entry.path()) {
                Ok(file) => file.sync_all()?,
                // Removed between the listing and the open: nothing to keep.
                Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                Err(err) => return Err(err),
            }
            added = true;
        }
        present.insert(name);
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
