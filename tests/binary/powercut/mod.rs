//! A FUSE filesystem that models a power cut, for tests only.
//!
//! Every inode has a *volatile* state, what writes, creates, renames,
//! unlinks and truncates made of it, and a *durable* state, what survives
//! the power failing:
//!
//! - `fsync`/`fdatasync` of a file makes its data, size and metadata
//!   durable, not any name that points to it;
//! - `fsync` of a directory makes its entries (names to inodes) durable;
//! - a new inode is durable as empty, and reachable after a cut only if a
//!   directory sync made a name for it durable;
//! - `PowerCutMount::power_cut` reverts every inode to its durable state and
//!   fails every request with EIO until `power_on`, so nothing a dying
//!   process still sends survives.
//!
//! `PowerCutMount::stall_disk` holds writes, file syncs and truncations
//! unanswered until `resume_disk`, as a disk that stops taking writes for a
//! while (a slow sync, a full queue) does.
//!
//! What it does not model: torn or reordered writes within what was not
//! synced (a cut drops *all* unsynced changes to an inode, where a real disk
//! may have written some of them, in any order, or half a sector); the
//! durability that real filesystems give beyond POSIX (ext4 commits a new
//! file's name with its fsync, a `sync_file_range` writes pages to the
//! device); a drive that ignores cache flushes; running out of space;
//! hard links, symlinks, xattrs and POSIX locks. `flock` is the kernel's
//! local emulation (the filesystem does not take part), which is all sled's
//! exclusive lock on `<data>/db` needs.

mod disk;
mod fuse;
mod tests;

use std::io::{self, ErrorKind};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, MutexGuard};

use fuser::{BackgroundSession, Config, MountOption};

use disk::Disk;
use fuse::Stall;

/// The filesystem mounted on a temporary directory; unmounted when
/// dropped, also when a test fails.
#[derive(Debug)]
pub(crate) struct PowerCutMount {
    disk: Arc<Mutex<Disk>>,
    stall: Arc<Mutex<Stall>>,
    session: Option<BackgroundSession>,
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl PowerCutMount {
    /// Mounts an empty filesystem. Needs /dev/fuse and the privilege to
    /// mount (root; there is no fallback to a setuid `fusermount`).
    pub(crate) fn mount() -> io::Result<Self> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("mnt");
        std::fs::create_dir(&path)?;
        let disk = Arc::new(Mutex::new(Disk::new()));
        let stall = Arc::new(Mutex::new(Stall::default()));
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName("powercut".to_owned()),
            MountOption::NoAtime,
        ];
        let session = fuser::spawn_mount(
            fuse::PowerCutFs::new(disk.clone(), stall.clone()),
            &path,
            &config,
        )?;
        Ok(Self {
            disk,
            stall,
            session: Some(session),
            path,
            _dir: dir,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    fn disk(&self) -> MutexGuard<'_, Disk> {
        self.disk
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The power fails: every unsynced change is gone, and every request
    /// fails with EIO until `power_on`.
    pub(crate) fn power_cut(&self) {
        self.disk().power_cut();
    }

    /// The machine boots again on what was durable.
    pub(crate) fn power_on(&self) {
        self.disk().power_on();
    }

    fn stall(&self) -> MutexGuard<'_, Stall> {
        self.stall
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The disk stops taking writes: writes, file syncs and truncations
    /// wait, unanswered, until `resume_disk`; reads and the rest go on.
    pub(crate) fn stall_disk(&self) {
        self.stall().stop();
    }

    /// The disk takes writes again: what waited runs, in order.
    pub(crate) fn resume_disk(&self) {
        self.stall().resume();
    }

    /// Requests waiting on the stalled disk.
    pub(crate) fn held_requests(&self) -> usize {
        self.stall().held()
    }
}

impl Drop for PowerCutMount {
    fn drop(&mut self) {
        let Some(session) = self.session.take() else {
            return;
        };
        self.power_on();
        self.resume_disk();
        if session.umount_and_join().is_err() {
            // Busy (a failed test left a process with a file open): detach
            // it, so no dead mount outlives the test.
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}

/// The mount, or `None` (said on stderr) where this run may not mount FUSE.
pub(crate) fn mount_or_skip() -> Option<PowerCutMount> {
    match PowerCutMount::mount() {
        Ok(mount) => Some(mount),
        Err(err)
            if matches!(
                err.kind(),
                ErrorKind::PermissionDenied | ErrorKind::NotFound
            ) =>
        {
            eprintln!("skipped: mounting FUSE needs /dev/fuse and root: {err}");
            None
        }
        Err(err) => panic!("mount the power-cut filesystem: {err}"),
    }
}
