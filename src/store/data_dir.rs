//! The data dir: private to the server's user, and ours alone. It is created
//! `0700`; files sled creates in it are owner-only (the process umask is
//! `077` once a store is opened); a dir we own with looser modes is
//! tightened. A dir owned by another user is refused before anything is
//! created in it, unless the operator allows it (`--allow-foreign-store-owner`):
//! then each directory of the store first gets a default ACL giving its
//! owner read and write on every file created in it, so the files this
//! process creates never lock the owner out; where that ACL cannot be set
//! (not root, no ACL support) the dir is refused all the same. A store is
//! marked by a `SESSIONLOG` file written before sled creates anything; a
//! dir with anything else in it (another program's files, or a sled
//! database we did not create) is refused before sled opens it, never
//! reinitialised.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::Path;

use super::StoreError;

/// The marker file of a sessionlog store.
const MARKER_FILE: &str = "SESSIONLOG";
const MARKER_TEXT: &str = "a sessionlog store (sled database); do not edit files here\n";
const GROUP_OTHER_BITS: u32 = 0o077;

/// Whether a data dir owned by another user may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ForeignOwner {
    #[default]
    Refuse,
    /// Used, with a default ACL for its owner (see the module doc).
    Allow,
}

/// Makes `path` a private directory fit for the store. Returns whether it
/// already held a store.
pub(super) fn prepare(path: &Path, foreign: ForeignOwner) -> Result<bool, StoreError> {
    // Owner-only for every file sled creates from now on (snapshots, blobs).
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(GROUP_OTHER_BITS));
    let metadata = match fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(path)
                .map_err(|err| refused(path, format!("cannot be created: {err}")))?;
            // The new dir's name must survive a power loss with what is in it.
            if let Some(parent) = path
                .parent()
                .filter(|parent| !parent.as_os_str().is_empty())
            {
                super::sync::sync_dir(parent).map_err(StoreError::Io)?;
            }
            mark(path)?;
            return Ok(false);
        }
        Err(err) => return Err(refused(path, format!("cannot be read: {err}"))),
    };
    if !metadata.is_dir() {
        return Err(refused(path, "is not a directory".to_owned()));
    }
    let euid = rustix::process::geteuid().as_raw();
    if metadata.uid() != euid {
        match foreign {
            ForeignOwner::Refuse => {
                return Err(refused(
                    path,
                    format!(
                        "is owned by uid {}, not by this user (uid {euid}); nothing was changed; \
                         run the server as its owner, or pass --allow-foreign-store-owner",
                        metadata.uid()
                    ),
                ));
            }
            ForeignOwner::Allow => grant_owner(path, metadata.uid())?,
        }
    }
    let entries =
        fs::read_dir(path).map_err(|err| refused(path, format!("cannot be listed: {err}")))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|err| refused(path, format!("cannot be listed: {err}")))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    if names.is_empty() {
        tighten(path, &metadata)?;
        mark(path)?;
        return Ok(false);
    }
    if !names.iter().any(|name| name == MARKER_FILE) {
        return Err(StoreError::Foreign {
            detail: format!(
                "the data dir {} holds files that are not a sessionlog store ({}); nothing was changed; \
                 use an empty directory or an existing store",
                path.display(),
                names.join(", ")
            ),
        });
    }
    tighten(path, &metadata)?;
    Ok(true)
}

/// Gives `owner` read and write on every file created from now on in
/// `path` and the directories below it, through a default ACL on each, and
/// checks it took. Refuses the dir when it cannot.
fn grant_owner(path: &Path, owner: u32) -> Result<(), StoreError> {
    let acl = owner_acl(owner);
    let mut pending = vec![path.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let set = rustix::fs::setxattr(
            &dir,
            DEFAULT_ACL_XATTR,
            &acl,
            rustix::fs::XattrFlags::empty(),
        );
        let mut read_back = vec![0u8; acl.len()];
        let check =
            set.and_then(|()| rustix::fs::getxattr(&dir, DEFAULT_ACL_XATTR, &mut read_back));
        if !matches!(check, Ok(len) if read_back[..len] == acl[..]) {
            let why = check
                .err()
                .map_or_else(|| "it did not take".to_owned(), |err| err.to_string());
            return Err(refused(
                path,
                format!(
                    "is owned by uid {owner}, and the default ACL that keeps files created here \
                     readable by its owner cannot be set on {} ({why}); nothing else was changed",
                    dir.display()
                ),
            ));
        }
        for entry in fs::read_dir(&dir).map_err(StoreError::Io)? {
            let entry = entry.map_err(StoreError::Io)?;
            if entry.file_type().map_err(StoreError::Io)?.is_dir() {
                pending.push(entry.path());
            }
        }
    }
    tracing::warn!(
        data_dir = %path.display(),
        owner,
        "the data dir belongs to another user (--allow-foreign-store-owner); its directories \
         now carry a default ACL giving the owner read and write on the files this server creates"
    );
    Ok(())
}

/// The kernel's name for a directory's default ACL.
const DEFAULT_ACL_XATTR: &str = "system.posix_acl_default";

/// A default ACL in the kernel's xattr form: the file's owner and `owner`
/// read and write (and search, for directories), nobody else anything.
fn owner_acl(owner: u32) -> Vec<u8> {
    const VERSION: u32 = 2;
    const UNDEFINED_ID: u32 = u32::MAX;
    const USER_OBJ: u16 = 0x01;
    const USER: u16 = 0x02;
    const GROUP_OBJ: u16 = 0x04;
    const MASK: u16 = 0x10;
    const OTHER: u16 = 0x20;
    const RWX: u16 = 0o7;
    // Sorted by tag, as the kernel requires.
    let entries = [
        (USER_OBJ, RWX, UNDEFINED_ID),
        (USER, RWX, owner),
        (GROUP_OBJ, 0, UNDEFINED_ID),
        (MASK, RWX, UNDEFINED_ID),
        (OTHER, 0, UNDEFINED_ID),
    ];
    let mut acl = VERSION.to_le_bytes().to_vec();
    for (tag, perm, id) in entries {
        acl.extend_from_slice(&tag.to_le_bytes());
        acl.extend_from_slice(&perm.to_le_bytes());
        acl.extend_from_slice(&id.to_le_bytes());
    }
    acl
}

/// Writes the marker file atomically and durably: whole or absent, also
/// after a power loss.
fn mark(path: &Path) -> Result<(), StoreError> {
    let partial = path.join(format!("{MARKER_FILE}.partial"));
    let mut file = fs::File::create(&partial).map_err(StoreError::Io)?;
    file.write_all(MARKER_TEXT.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(StoreError::Io)?;
    fs::rename(&partial, path.join(MARKER_FILE)).map_err(StoreError::Io)?;
    super::sync::sync_dir(path).map_err(StoreError::Io)
}

/// Fails, naming the lock, when another process holds the store's lock
/// (sled's exclusive `flock` on `<dir>/db`). A holder that lets go within
/// `LOCK_WAIT` is waited for: a store just dropped in this process is
/// released by sled's own threads a moment later, and a server being
/// restarted may still be exiting. The probe lock is released at once; sled
/// takes its own right after.
pub(super) fn ensure_unlocked(path: &Path) -> Result<(), StoreError> {
    let lock_path = path.join("db");
    let file = match fs::OpenOptions::new().read(true).open(&lock_path) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(refused(path, format!("cannot be opened: {err}"))),
    };
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(()),
            Err(rustix::io::Errno::WOULDBLOCK) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(rustix::io::Errno::WOULDBLOCK) => {
                return Err(StoreError::Locked {
                    detail: format!(
                        "another process holds the lock on {}; is another sessionlog serving this --data-dir?",
                        lock_path.display()
                    ),
                });
            }
            Err(err) => return Err(refused(path, format!("cannot be locked: {err}"))),
        }
    }
}

/// How long a held store lock is waited for before giving up.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Removes group and other access from the dir and everything in it, when
/// the dir is ours; warns when it is not.
fn tighten(path: &Path, metadata: &fs::Metadata) -> Result<(), StoreError> {
    if metadata.uid() != rustix::process::geteuid().as_raw() {
        if metadata.mode() & GROUP_OTHER_BITS != 0 {
            tracing::warn!(
                data_dir = %path.display(),
                mode = format!("{:o}", metadata.mode() & 0o777),
                "the data dir is readable by others and owned by another user; leaving its modes alone"
            );
        }
        return Ok(());
    }
    let mut loosened = 0usize;
    let mut pending = vec![path.to_path_buf()];
    while let Some(current) = pending.pop() {
        let current_metadata = fs::symlink_metadata(&current).map_err(StoreError::Io)?;
        if current_metadata.file_type().is_symlink() {
            continue;
        }
        let mode = current_metadata.mode() & 0o777;
        // Files another user made here (a server allowed onto this store
        // as root) are not ours to chmod; their default ACL, which those
        // group bits show as its mask, is what lets us use them.
        let ours = current_metadata.uid() == rustix::process::geteuid().as_raw();
        if ours && mode & GROUP_OTHER_BITS != 0 {
            fs::set_permissions(
                &current,
                fs::Permissions::from_mode(mode & !GROUP_OTHER_BITS),
            )
            .map_err(StoreError::Io)?;
            loosened += 1;
        }
        if current_metadata.is_dir() {
            for entry in fs::read_dir(&current).map_err(StoreError::Io)? {
                pending.push(entry.map_err(StoreError::Io)?.path());
            }
        }
    }
    if loosened > 0 {
        tracing::warn!(data_dir = %path.display(), files = loosened, "removed group and other access from the data dir");
    }
    Ok(())
}

fn refused(path: &Path, reason: String) -> StoreError {
    StoreError::DataDir {
        detail: format!("the data dir {} {reason}", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_dir_is_created_owner_only() {
        let root = tempfile::tempdir().expect("temp dir");
        let path = root.path().join("data");
        prepare(&path, ForeignOwner::Refuse).expect("created");
        let mode = fs::metadata(&path).expect("exists").mode() & 0o777;
        assert_eq!(mode, 0o700);
    }

    #[test]
    fn loose_modes_of_our_own_dir_are_tightened() {
        let root = tempfile::tempdir().expect("temp dir");
        let path = root.path().join("data");
        fs::create_dir(&path).expect("dir");
        fs::write(path.join(MARKER_FILE), MARKER_TEXT).expect("file");
        fs::write(path.join("conf"), b"x").expect("file");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod");
        fs::set_permissions(path.join("conf"), fs::Permissions::from_mode(0o644)).expect("chmod");
        prepare(&path, ForeignOwner::Refuse).expect("tightened");
        assert_eq!(fs::metadata(&path).expect("dir").mode() & 0o777, 0o700);
        assert_eq!(
            fs::metadata(path.join("conf")).expect("file").mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn a_store_is_marked_and_recognised() {
        let root = tempfile::tempdir().expect("temp dir");
        let path = root.path().join("data");
        assert!(!prepare(&path, ForeignOwner::Refuse).expect("new"));
        assert!(prepare(&path, ForeignOwner::Refuse).expect("existing"));
    }

    #[test]
    fn a_sled_database_we_did_not_create_is_refused() {
        let root = tempfile::tempdir().expect("temp dir");
        fs::write(root.path().join("db"), b"someone's").expect("file");
        fs::write(root.path().join("conf"), b"theirs").expect("file");
        assert!(prepare(root.path(), ForeignOwner::Refuse).is_err());
        assert_eq!(
            fs::read(root.path().join("db")).expect("untouched"),
            b"someone's"
        );
    }

    #[test]
    fn a_dir_of_other_files_is_refused_and_left_alone() {
        let root = tempfile::tempdir().expect("temp dir");
        fs::write(root.path().join("notes.txt"), b"mine").expect("file");
        let err = prepare(root.path(), ForeignOwner::Refuse).expect_err("foreign");
        assert!(err.to_string().contains("notes.txt"), "{err}");
        assert_eq!(
            fs::read(root.path().join("notes.txt")).expect("untouched"),
            b"mine"
        );
    }

    #[test]
    fn a_file_is_not_a_data_dir() {
        let root = tempfile::tempdir().expect("temp dir");
        let path = root.path().join("file");
        fs::write(&path, b"").expect("file");
        assert!(prepare(&path, ForeignOwner::Refuse).is_err());
    }
}
