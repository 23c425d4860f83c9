//! What is checked before a store or a session's log is served, so damage
//! is found then, with one line naming it, and not later as INTERNAL on a
//! read: sled's `conf` file against its checksum (sled itself only warns,
//! then misreads a garbled one as written by an old version), a session's
//! counters against its log (the stored counters, and the first and last
//! block decoding with the seqs the counters promise), and a panic inside
//! sled turned into an error instead of a backtrace. Start-up refuses a
//! damaged store as a whole (a bad `conf`, a clean shutdown's mark sled did
//! not recover, an active session's log that fails its check): sled reads a
//! checksum failure in its log as the end of the log, so what follows the
//! damage is gone from what it serves, and writing on would bury it. An
//! ended session's log is checked after start-up, before it is first
//! served (`Store::check_log`); one that fails is reported as damaged and
//! never served, and the rest of the store is.

use std::any::Any;
use std::cell::Cell;
use std::path::Path;
use std::sync::Once;

use super::StoreError;
use super::keys;
use super::log::{LogTree, decode_entry};
use super::schema::LogCounters;

/// sled's settings file, `key: value` lines then a crc32 of them (LE).
const CONF_FILE: &str = "conf";
const CRC_BYTES: usize = 4;
/// Shorter than the shortest line sled writes there (`use_compression: false`).
const MIN_SETTINGS_BYTES: usize = 4;

/// Refuses a `conf` file that does not match its checksum, before sled
/// reads it. A missing one is left to sled (it writes a fresh one).
pub(super) fn check_conf(dir: &Path) -> Result<(), StoreError> {
    let path = dir.join(CONF_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(StoreError::Io(err)),
    };
    // A crc32 after at least one `key: value` line (sled writes several).
    let Some(split) = bytes
        .len()
        .checked_sub(CRC_BYTES)
        .filter(|settings| *settings > MIN_SETTINGS_BYTES)
    else {
        return Err(damaged(dir, "sled's `conf` file is truncated"));
    };
    let (settings, stored_crc) = bytes.split_at(split);
    let stored_crc = u32::from_le_bytes(stored_crc.try_into().expect("CRC_BYTES bytes"));
    if crc32fast::hash(settings) != stored_crc {
        return Err(damaged(dir, "sled's `conf` file fails its checksum"));
    }
    Ok(())
}

/// Checks one session's log against the counters start-up is about to
/// serve (see `find_damage`); damage is `StoreError::Corrupt` naming the
/// session.
pub(super) fn check_log(
    session_id: &str,
    log: &LogTree,
    counters: &LogCounters,
) -> Result<(), StoreError> {
    match find_damage(log, counters)? {
        None => Ok(()),
        Some(what) => Err(StoreError::Corrupt {
            detail: format!("session `{session_id}`: {what}"),
        }),
    }
}

/// What is wrong with a log against the counters it is to be served with,
/// or `None`: the stored counters agree, the first block starts at seq 1
/// and its first entry decodes, and the last block ends at `last_seq` with
/// its last entry decoding. Two block reads. An error is a failure to read,
/// not damage found.
pub(super) fn find_damage(
    log: &LogTree,
    counters: &LogCounters,
) -> Result<Option<String>, StoreError> {
    let stored = log.counters()?;
    if stored != *counters {
        return Ok(Some(format!(
            "its log's counters (last seq {}, {} entries) disagree with its record's \
             (last seq {}, {} entries)",
            stored.last_seq, stored.entry_count, counters.last_seq, counters.entry_count
        )));
    }
    let blocks = || {
        log.tree()
            .range(keys::entry_key(0)..=keys::entry_key(keys::MAX_SEQ))
    };
    let (first, last) = (blocks().next(), blocks().next_back());
    let (Some(first), Some(last)) = (first, last) else {
        if counters.last_seq == 0 {
            return Ok(None);
        }
        return Ok(Some(format!(
            "its counters say {} entries but its log holds none",
            counters.last_seq
        )));
    };
    if counters.last_seq == 0 {
        return Ok(Some(
            "its log holds entries its counters do not count".to_owned(),
        ));
    }
    let (first_key, first_block) = first?;
    let first_entries = match super::log::block_entries(&first_key, &first_block) {
        Ok(entries) => entries,
        Err(err) => return Ok(Some(format!("its first block does not decode ({err})"))),
    };
    let (last_key, last_block) = last?;
    // A session of one block: decoded once (a sealed block is a whole
    // compressed frame).
    let other_last;
    let last_entries = if last_key == first_key {
        &first_entries
    } else {
        other_last = match super::log::block_entries(&last_key, &last_block) {
            Ok(entries) => entries,
            Err(err) => return Ok(Some(format!("its last block does not decode ({err})"))),
        };
        &other_last
    };
    for (which, entries, seq) in [
        ("first", &first_entries, first_entries.first()),
        ("last", last_entries, last_entries.last()),
    ] {
        let Some((seq, bytes)) = seq else {
            return Ok(Some(format!("its {which} block is empty")));
        };
        let entry = match decode_entry(bytes) {
            Ok(entry) => entry,
            Err(err) => return Ok(Some(format!("its {which} entry does not decode ({err})"))),
        };
        let expected = if which == "first" {
            1
        } else {
            counters.last_seq
        };
        if *seq != expected || entry.seq != expected {
            return Ok(Some(format!(
                "its {which} entry has seq {} (stored as {}), not {expected} ({} in the block)",
                seq,
                entry.seq,
                entries.len()
            )));
        }
    }
    Ok(None)
}

/// The error for a store found damaged, naming what to do.
pub(super) fn damaged(dir: &Path, what: &str) -> StoreError {
    StoreError::Corrupt {
        detail: format!(
            "{what} (in {}); refusing to start on it \
             (keep the directory for inspection, or restore a backup)",
            dir.display()
        ),
    }
}

thread_local! {
    /// Set while this thread runs start-up store work: a panic here is
    /// reported as one error line, not by the panic hook.
    static QUIET_PANICS: Cell<bool> = const { Cell::new(false) };
}

/// Runs start-up store work; a panic in it (sled panics on some damage)
/// becomes `StoreError::Corrupt` with the panic's message, and prints no
/// backtrace.
pub(crate) fn without_panics<T>(
    dir: &Path,
    work: impl FnOnce() -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    catch_quietly(work).unwrap_or_else(|panic| {
        Err(damaged(
            dir,
            &format!("sled failed while reading it ({panic})"),
        ))
    })
}

/// Runs `work`; a panic in it (sled panics on some damage) is returned as
/// the first line of its message, and prints no backtrace.
pub(super) fn catch_quietly<T>(work: impl FnOnce() -> T) -> Result<T, String> {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET_PANICS.with(Cell::get) {
                previous(info);
            }
        }));
    });
    let outer = QUIET_PANICS.with(|quiet| quiet.replace(true));
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
    QUIET_PANICS.with(|quiet| quiet.set(outer));
    outcome.map_err(|panic| panic_message(&*panic))
}

/// Whether this thread's panics are kept quiet (inside `without_panics`),
/// for threads it starts to inherit with `inherit_quiet_panics`.
pub(super) fn quiet_panics() -> bool {
    QUIET_PANICS.with(Cell::get)
}

/// Makes this thread's panics as quiet as its parent's (`quiet_panics`):
/// a thread working for `without_panics` reports a panic as its one line.
pub(super) fn inherit_quiet_panics(quiet: bool) {
    QUIET_PANICS.with(|cell| cell.set(quiet));
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    let text = panic
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".to_owned());
    // One line: the first of the message.
    text.lines().next().unwrap_or_default().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_one_error() {
        let err = without_panics::<()>(Path::new("/data"), || panic!("bad page\nmore"))
            .expect_err("panicked");
        let text = err.to_string();
        assert!(
            text.contains("bad page") && !text.contains("more"),
            "{text}"
        );
    }

    #[test]
    fn a_conf_that_fails_its_checksum_is_damage() {
        let dir = tempfile::tempdir().expect("dir");
        let settings = b"segment_size: 524288\nuse_compression: false\nversion: 0.34\n";
        let mut conf = settings.to_vec();
        conf.extend_from_slice(&crc32fast::hash(settings).to_le_bytes());
        std::fs::write(dir.path().join(CONF_FILE), &conf).expect("write");
        check_conf(dir.path()).expect("intact");
        conf[3] ^= 0x40;
        std::fs::write(dir.path().join(CONF_FILE), &conf).expect("write");
        let err = check_conf(dir.path()).expect_err("damaged");
        assert!(err.to_string().contains("checksum"), "{err}");
    }
}
