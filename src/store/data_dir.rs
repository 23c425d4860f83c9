//! The data dir: private to the server's user, and ours alone. It is created
//! `0700`; files sled creates in it are owner-only (the process umask is
//! `077` once a store is opened); a dir we own with looser modes is
//! tightened, one we do not own is used with a warning. A store is marked
//! by a `SESSIONLOG` file written before sled creates anything; a dir with
//! anything else in it (another program's files, or a sled database we did
//! not create) is refused before sled opens it, never reinitialised.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::Path;

use super::StoreError;

/// The marker file of a sessionlog store.
const MARKER_FILE: &str = "SESSIONLOG";
const MARKER_TEXT: &str = "a sessionlog store (sled database); do not edit files here\n";
const GROUP_OTHER_BITS: u32 = 0o077;

/// Makes `path` a private directory fit for the store. Returns whether it
/// already held a store.
pub(super) fn prepare(path: &Path) -> Result<bool, StoreError> {
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
        if mode & GROUP_OTHER_BITS != 0 {
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
        prepare(&path).expect("created");
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
        prepare(&path).expect("tightened");
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
        assert!(!prepare(&path).expect("new"));
        assert!(prepare(&path).expect("existing"));
    }

    #[test]
    fn a_sled_database_we_did_not_create_is_refused() {
        let root = tempfile::tempdir().expect("temp dir");
        fs::write(root.path().join("db"), b"someone's").expect("file");
        fs::write(root.path().join("conf"), b"theirs").expect("file");
        assert!(prepare(root.path()).is_err());
        assert_eq!(
            fs::read(root.path().join("db")).expect("untouched"),
            b"someone's"
        );
    }

    #[test]
    fn a_dir_of_other_files_is_refused_and_left_alone() {
        let root = tempfile::tempdir().expect("temp dir");
        fs::write(root.path().join("notes.txt"), b"mine").expect("file");
        let err = prepare(root.path()).expect_err("foreign");
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
        assert!(prepare(&path).is_err());
    }
}
