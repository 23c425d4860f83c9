//! The in-memory disk behind the power-cut filesystem: inodes by number,
//! each with a volatile state (what the last operations made of it) and a
//! durable state (what a power cut leaves).
//!
//! Invariants: inode numbers are never reused (a name that a power cut
//! brings back points at the inode it named when it was made durable);
//! nodes are never freed, so an open handle to an unlinked file keeps
//! working; the durable state changes only through `sync_file`,
//! `sync_dir` and `create` (a new inode is durable as empty and nameless).

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::sync::Arc;
use std::time::SystemTime;

use fuser::Errno;

/// Bytes per block of file data. Blocks are shared between the two states
/// until written again, so syncing a large file copies no data.
const BLOCK: u64 = 4096;
pub(super) const ROOT: u64 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    File,
    Dir,
}

/// File contents: blocks never written (sparse) read as zeros.
#[derive(Debug, Clone, Default)]
struct Data {
    blocks: BTreeMap<u64, Arc<Vec<u8>>>,
    size: u64,
}

#[derive(Debug, Clone)]
enum Body {
    File(Data),
    Dir(BTreeMap<OsString, u64>),
}

/// One state of an inode: its contents and the metadata that goes with them.
#[derive(Debug, Clone)]
pub(super) struct State {
    body: Body,
    pub(super) perm: u16,
    pub(super) atime: SystemTime,
    pub(super) mtime: SystemTime,
    pub(super) ctime: SystemTime,
}

impl State {
    fn empty(kind: Kind, perm: u16) -> Self {
        let now = SystemTime::now();
        Self {
            body: match kind {
                Kind::File => Body::File(Data::default()),
                Kind::Dir => Body::Dir(BTreeMap::new()),
            },
            perm,
            atime: now,
            mtime: now,
            ctime: now,
        }
    }

    pub(super) fn kind(&self) -> Kind {
        match self.body {
            Body::File(_) => Kind::File,
            Body::Dir(_) => Kind::Dir,
        }
    }

    pub(super) fn size(&self) -> u64 {
        match &self.body {
            Body::File(data) => data.size,
            Body::Dir(entries) => u64::try_from(entries.len()).unwrap_or(u64::MAX),
        }
    }
}

#[derive(Debug)]
struct Node {
    volatile: State,
    durable: State,
}

/// The whole filesystem. While the power is off every operation fails
/// with EIO, as on a machine that is down: nothing the dying process
/// still sends can change what the next boot sees.
#[derive(Debug)]
pub(super) struct Disk {
    nodes: HashMap<u64, Node>,
    next_ino: u64,
    powered: bool,
}

type Result<T> = std::result::Result<T, Errno>;

impl Disk {
    /// An empty root directory, already durable.
    pub(super) fn new() -> Self {
        let root = State::empty(Kind::Dir, 0o755);
        let mut nodes = HashMap::new();
        nodes.insert(
            ROOT,
            Node {
                volatile: root.clone(),
                durable: root,
            },
        );
        Self {
            nodes,
            next_ino: ROOT + 1,
            powered: true,
        }
    }

    /// Every volatile state reverts to its durable state, and every
    /// operation fails until `power_on`.
    pub(super) fn power_cut(&mut self) {
        for node in self.nodes.values_mut() {
            node.volatile = node.durable.clone();
        }
        self.powered = false;
    }

    pub(super) fn power_on(&mut self) {
        self.powered = true;
    }

    fn node(&self, ino: u64) -> Result<&Node> {
        if !self.powered {
            return Err(Errno::EIO);
        }
        self.nodes.get(&ino).ok_or(Errno::ENOENT)
    }

    fn node_mut(&mut self, ino: u64) -> Result<&mut Node> {
        if !self.powered {
            return Err(Errno::EIO);
        }
        self.nodes.get_mut(&ino).ok_or(Errno::ENOENT)
    }

    pub(super) fn state(&self, ino: u64) -> Result<&State> {
        Ok(&self.node(ino)?.volatile)
    }

    fn entries(&self, dir: u64) -> Result<&BTreeMap<OsString, u64>> {
        match &self.state(dir)?.body {
            Body::Dir(entries) => Ok(entries),
            Body::File(_) => Err(Errno::ENOTDIR),
        }
    }

    fn entries_mut(&mut self, dir: u64) -> Result<&mut BTreeMap<OsString, u64>> {
        let state = &mut self.node_mut(dir)?.volatile;
        state.mtime = SystemTime::now();
        match &mut state.body {
            Body::Dir(entries) => Ok(entries),
            Body::File(_) => Err(Errno::ENOTDIR),
        }
    }

    fn data_mut(&mut self, ino: u64) -> Result<&mut Data> {
        let state = &mut self.node_mut(ino)?.volatile;
        state.mtime = SystemTime::now();
        match &mut state.body {
            Body::File(data) => Ok(data),
            Body::Dir(_) => Err(Errno::EISDIR),
        }
    }

    pub(super) fn lookup(&self, dir: u64, name: &OsStr) -> Result<u64> {
        self.entries(dir)?.get(name).copied().ok_or(Errno::ENOENT)
    }

    /// The entries of `dir` in name order, with their kinds.
    pub(super) fn list(&self, dir: u64) -> Result<Vec<(u64, Kind, OsString)>> {
        self.entries(dir)?
            .iter()
            .map(|(name, &ino)| Ok((ino, self.state(ino)?.kind(), name.clone())))
            .collect()
    }

    /// A new inode named `name` in `dir`. The name is volatile until the
    /// directory is synced; the inode is durable as empty from the start.
    pub(super) fn create(&mut self, dir: u64, name: &OsStr, kind: Kind, perm: u16) -> Result<u64> {
        if self.entries(dir)?.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        let state = State::empty(kind, perm);
        self.nodes.insert(
            ino,
            Node {
                volatile: state.clone(),
                durable: state,
            },
        );
        self.entries_mut(dir)?.insert(name.to_owned(), ino);
        Ok(ino)
    }

    /// Removes the name `name` from `dir`; a directory must be empty.
    pub(super) fn remove(&mut self, dir: u64, name: &OsStr, kind: Kind) -> Result<()> {
        let ino = self.lookup(dir, name)?;
        match (kind, self.state(ino)?.kind()) {
            (Kind::File, Kind::Dir) => return Err(Errno::EISDIR),
            (Kind::Dir, Kind::File) => return Err(Errno::ENOTDIR),
            (Kind::Dir, Kind::Dir) if !self.entries(ino)?.is_empty() => {
                return Err(Errno::ENOTEMPTY);
            }
            _ => {}
        }
        self.entries_mut(dir)?.remove(name);
        Ok(())
    }

    /// Moves a name, replacing what the new name held (a file by a file, or
    /// an empty directory by a directory).
    pub(super) fn rename(
        &mut self,
        dir: u64,
        name: &OsStr,
        new_dir: u64,
        new_name: &OsStr,
    ) -> Result<()> {
        let ino = self.lookup(dir, name)?;
        let kind = self.state(ino)?.kind();
        self.entries(new_dir)?;
        match self.lookup(new_dir, new_name) {
            Ok(replaced) if replaced == ino => return Ok(()),
            Ok(_) => self.remove(new_dir, new_name, kind)?,
            Err(err) if err == Errno::ENOENT => {}
            Err(err) => return Err(err),
        }
        self.entries_mut(dir)?.remove(name);
        self.entries_mut(new_dir)?.insert(new_name.to_owned(), ino);
        Ok(())
    }

    pub(super) fn read(&self, ino: u64, offset: u64, len: u64) -> Result<Vec<u8>> {
        let Body::File(data) = &self.state(ino)?.body else {
            return Err(Errno::EISDIR);
        };
        let end = data.size.min(offset.saturating_add(len));
        let mut out = Vec::new();
        let mut pos = offset;
        while pos < end {
            let (index, within) = (pos / BLOCK, pos % BLOCK);
            let take = (BLOCK - within).min(end - pos);
            let from = usize::try_from(within).map_err(|_| Errno::EINVAL)?;
            let take_usize = usize::try_from(take).map_err(|_| Errno::EINVAL)?;
            match data.blocks.get(&index) {
                Some(block) => out.extend_from_slice(&block[from..from + take_usize]),
                None => out.resize(out.len() + take_usize, 0),
            }
            pos += take;
        }
        Ok(out)
    }

    pub(super) fn write(&mut self, ino: u64, offset: u64, bytes: &[u8]) -> Result<()> {
        let data = self.data_mut(ino)?;
        let mut pos = offset;
        for chunk in chunks_at(offset, bytes) {
            let (index, within) = (pos / BLOCK, pos % BLOCK);
            let block = data
                .blocks
                .entry(index)
                .or_insert_with(|| Arc::new(vec![0; BLOCK as usize]));
            let from = usize::try_from(within).map_err(|_| Errno::EINVAL)?;
            Arc::make_mut(block)[from..from + chunk.len()].copy_from_slice(chunk);
            pos += chunk.len() as u64;
        }
        data.size = data.size.max(pos);
        Ok(())
    }

    /// Sets the size; bytes past a shrunk end are gone, so growing again
    /// reads zeros there.
    pub(super) fn truncate(&mut self, ino: u64, size: u64) -> Result<()> {
        let data = self.data_mut(ino)?;
        data.blocks.split_off(&size.div_ceil(BLOCK));
        if !size.is_multiple_of(BLOCK)
            && let Some(block) = data.blocks.get_mut(&(size / BLOCK))
        {
            let from = usize::try_from(size % BLOCK).map_err(|_| Errno::EINVAL)?;
            Arc::make_mut(block)[from..].fill(0);
        }
        data.size = size;
        Ok(())
    }

    pub(super) fn state_mut(&mut self, ino: u64) -> Result<&mut State> {
        Ok(&mut self.node_mut(ino)?.volatile)
    }

    /// fsync/fdatasync of a file: its data, size and metadata become
    /// durable, not the names that point to it.
    pub(super) fn sync_file(&mut self, ino: u64) -> Result<()> {
        let node = self.node_mut(ino)?;
        node.durable = node.volatile.clone();
        Ok(())
    }

    /// fsync of a directory: its entries become durable (each naming an
    /// inode whose own durable state is whatever its last sync left).
    pub(super) fn sync_dir(&mut self, ino: u64) -> Result<()> {
        let node = self.node_mut(ino)?;
        if node.volatile.kind() != Kind::Dir {
            return Err(Errno::ENOTDIR);
        }
        node.durable = node.volatile.clone();
        Ok(())
    }

    pub(super) fn inodes(&self) -> u64 {
        u64::try_from(self.nodes.len()).unwrap_or(u64::MAX)
    }
}

/// Splits a write at `offset` at block boundaries.
fn chunks_at(offset: u64, bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = bytes;
    let mut pos = offset;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let room = usize::try_from(BLOCK - pos % BLOCK).unwrap_or(usize::MAX);
        let (chunk, tail) = rest.split_at(room.min(rest.len()));
        rest = tail;
        pos += chunk.len() as u64;
        Some(chunk)
    })
}
