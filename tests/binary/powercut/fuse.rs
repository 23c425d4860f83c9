//! The FUSE face of `Disk`: each request locks the disk, does one model
//! operation and replies. Entries and attributes are given a time to live
//! of zero and files are opened with `FOPEN_DIRECT_IO`, so the kernel caches
//! neither names, sizes nor pages: every read after a power cut comes from
//! the durable state, and every write reaches the model when `write(2)` is
//! called (FUSE writes through unless the filesystem asks for a writeback
//! cache, which this one does not). `sync_file_range` sends nothing to a
//! FUSE filesystem, so sled's own flush makes nothing durable here.
//!
//! While the disk is stalled, writes, file syncs and attribute changes
//! (truncations among them) are held unanswered (their callers wait in the
//! kernel) and run, in the order they came, when it resumes; everything
//! else is answered at once, reads from what was written before.

use std::ffi::OsStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};

use super::disk::{Disk, Kind, State};

const TTL: Duration = Duration::ZERO;
const HANDLE: FileHandle = FileHandle(0);

#[derive(Debug, Clone)]
pub(super) struct PowerCutFs {
    pub(super) disk: Arc<Mutex<Disk>>,
    stall: Arc<Mutex<Stall>>,
    uid: u32,
    gid: u32,
}

/// Requests held while the disk is stalled, each with its reply.
#[derive(Default)]
pub(super) struct Stall {
    stalled: bool,
    held: Vec<Box<dyn FnOnce() + Send>>,
}

impl std::fmt::Debug for Stall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stall")
            .field("stalled", &self.stalled)
            .field("held", &self.held.len())
            .finish()
    }
}

impl Stall {
    pub(super) fn stop(&mut self) {
        self.stalled = true;
    }

    /// Runs what was held, in order, while the caller holds the lock, so
    /// a request that comes meanwhile waits and runs after them.
    pub(super) fn resume(&mut self) {
        self.stalled = false;
        for op in self.held.drain(..) {
            op();
        }
    }

    pub(super) fn held(&self) -> usize {
        self.held.len()
    }
}

impl PowerCutFs {
    pub(super) fn new(disk: Arc<Mutex<Disk>>, stall: Arc<Mutex<Stall>>) -> Self {
        Self {
            disk,
            stall,
            uid: rustix::process::getuid().as_raw(),
            gid: rustix::process::getgid().as_raw(),
        }
    }

    /// Runs `op` now, or holds it until the disk resumes.
    fn when_running(&self, op: impl FnOnce() + Send + 'static) {
        let mut stall = self
            .stall
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if stall.stalled {
            stall.held.push(Box::new(op));
        } else {
            drop(stall);
            op();
        }
    }

    fn disk(&self) -> MutexGuard<'_, Disk> {
        // A panic in one request must not take the whole mount down.
        self.disk
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn attr(&self, ino: u64, state: &State) -> FileAttr {
        let size = state.size();
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: state.atime,
            mtime: state.mtime,
            ctime: state.ctime,
            crtime: state.ctime,
            kind: match state.kind() {
                Kind::File => FileType::RegularFile,
                Kind::Dir => FileType::Directory,
            },
            perm: state.perm,
            nlink: match state.kind() {
                Kind::File => 1,
                Kind::Dir => 2,
            },
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }

    fn attr_of(&self, disk: &Disk, ino: u64) -> Result<FileAttr, Errno> {
        Ok(self.attr(ino, disk.state(ino)?))
    }

    fn entry(&self, reply: ReplyEntry, result: Result<u64, Errno>) {
        let disk = self.disk();
        match result.and_then(|ino| self.attr_of(&disk, ino)) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(err) => reply.error(err),
        }
    }

    fn make(
        &self,
        parent: INodeNo,
        name: &OsStr,
        kind: Kind,
        mode: u32,
        umask: u32,
    ) -> Result<u64, Errno> {
        let perm = u16::try_from(mode & !umask & 0o7777).map_err(|_| Errno::EINVAL)?;
        self.disk().create(parent.0, name, kind, perm)
    }
}

fn empty(reply: ReplyEmpty, result: Result<(), Errno>) {
    match result {
        Ok(()) => reply.ok(),
        Err(err) => reply.error(err),
    }
}

fn time(time: TimeOrNow) -> SystemTime {
    match time {
        TimeOrNow::SpecificTime(time) => time,
        TimeOrNow::Now => SystemTime::now(),
    }
}

impl Filesystem for PowerCutFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let result = self.disk().lookup(parent.0, name);
        self.entry(reply, result);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.attr_of(&self.disk(), ino.0) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(err) => reply.error(err),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let fs = self.clone();
        self.when_running(move || {
            let mut disk = fs.disk();
            let result = (|| {
                if let Some(size) = size {
                    disk.truncate(ino.0, size)?;
                }
                let state = disk.state_mut(ino.0)?;
                if let Some(mode) = mode {
                    state.perm = u16::try_from(mode & 0o7777).map_err(|_| Errno::EINVAL)?;
                }
                if let Some(atime) = atime {
                    state.atime = time(atime);
                }
                if let Some(mtime) = mtime {
                    state.mtime = time(mtime);
                }
                state.ctime = SystemTime::now();
                fs.attr_of(&disk, ino.0)
            })();
            match result {
                Ok(attr) => reply.attr(&TTL, &attr),
                Err(err) => reply.error(err),
            }
        });
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let result = self.make(parent, name, Kind::Dir, mode, umask);
        self.entry(reply, result);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        empty(reply, self.disk().remove(parent.0, name, Kind::File));
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        empty(reply, self.disk().remove(parent.0, name, Kind::Dir));
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if !flags.is_empty() {
            // RENAME_NOREPLACE, RENAME_EXCHANGE: nothing here needs them.
            reply.error(Errno::EINVAL);
            return;
        }
        empty(
            reply,
            self.disk().rename(parent.0, name, newparent.0, newname),
        );
    }

    /// `O_TRUNC` arrives as a `setattr` before the open: this filesystem
    /// does not ask the kernel for atomic truncation on open.
    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.disk().state(ino.0).map(State::kind) {
            Ok(Kind::File) => reply.opened(HANDLE, FopenFlags::FOPEN_DIRECT_IO),
            Ok(Kind::Dir) => reply.error(Errno::EISDIR),
            Err(err) => reply.error(err),
        }
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let result = self.make(parent, name, Kind::File, mode, umask);
        let disk = self.disk();
        match result.and_then(|ino| self.attr_of(&disk, ino)) {
            Ok(attr) => reply.created(
                &TTL,
                &attr,
                Generation(0),
                HANDLE,
                FopenFlags::FOPEN_DIRECT_IO,
            ),
            Err(err) => reply.error(err),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.disk().read(ino.0, offset, u64::from(size)) {
            Ok(bytes) => reply.data(&bytes),
            Err(err) => reply.error(err),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let fs = self.clone();
        let data = data.to_vec();
        self.when_running(move || {
            let result = u32::try_from(data.len())
                .map_err(|_| Errno::EINVAL)
                .and_then(|len| fs.disk().write(ino.0, offset, &data).map(|()| len));
            match result {
                Ok(len) => reply.written(len),
                Err(err) => reply.error(err),
            }
        });
    }

    fn flush(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // close(2) makes nothing durable.
        empty(reply, self.disk().state(ino.0).map(|_| ()));
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let fs = self.clone();
        self.when_running(move || empty(reply, fs.disk().sync_file(ino.0)));
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let entries = match self.disk().list(ino.0) {
            Ok(entries) => entries,
            Err(err) => {
                reply.error(err);
                return;
            }
        };
        let dots = [
            (ino.0, Kind::Dir, OsStr::new(".").to_owned()),
            (ino.0, Kind::Dir, OsStr::new("..").to_owned()),
        ];
        // An entry's offset is the position of the next one.
        for (next, (child, kind, name)) in dots
            .into_iter()
            .chain(entries)
            .enumerate()
            .skip(usize::try_from(offset).unwrap_or(usize::MAX))
        {
            let kind = match kind {
                Kind::File => FileType::RegularFile,
                Kind::Dir => FileType::Directory,
            };
            if reply.add(INodeNo(child), next as u64 + 1, kind, &name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        empty(reply, self.disk().sync_dir(ino.0));
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        // Room enough; the model has no size limit.
        const BLOCKS: u64 = 1 << 24;
        let inodes = self.disk().inodes();
        reply.statfs(
            BLOCKS,
            BLOCKS,
            BLOCKS,
            inodes + BLOCKS,
            BLOCKS,
            4096,
            255,
            4096,
        );
    }
}
