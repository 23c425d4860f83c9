//! The model through the kernel: what a cut keeps and drops, seen with
//! ordinary file calls on the mount.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::FileExt;

use super::{PowerCutMount, mount_or_skip};

fn cut(mount: &PowerCutMount) {
    mount.power_cut();
    mount.power_on();
}

fn sync_dir(path: &std::path::Path) {
    File::open(path)
        .expect("open dir")
        .sync_all()
        .expect("fsync dir");
}

#[test]
fn synced_data_and_names_survive_a_cut_and_nothing_else_does() {
    let Some(mount) = mount_or_skip() else { return };
    let root = mount.path();
    let dir = root.join("dir");
    fs::create_dir(&dir).expect("mkdir");
    sync_dir(root);

    let mut kept = File::create(dir.join("kept")).expect("create");
    kept.write_all(b"durable").expect("write");
    kept.sync_data().expect("fdatasync");
    sync_dir(&dir);
    kept.write_all(b" and not").expect("write after the sync");
    let unnamed = File::create(dir.join("unnamed")).expect("create");
    unnamed.sync_all().expect("fsync: the data, not the name");
    fs::rename(dir.join("kept"), dir.join("renamed")).expect("rename");
    drop((kept, unnamed));
    assert_eq!(
        fs::read(dir.join("renamed")).expect("read"),
        b"durable and not"
    );

    cut(&mount);
    assert_eq!(fs::read(dir.join("kept")).expect("read"), b"durable");
    for gone in ["renamed", "unnamed"] {
        assert_eq!(
            fs::metadata(dir.join(gone)).map_err(|err| err.kind()).err(),
            Some(ErrorKind::NotFound),
            "{gone} was never made durable"
        );
    }

    fs::remove_file(dir.join("kept")).expect("unlink");
    cut(&mount);
    assert!(dir.join("kept").exists(), "an unsynced unlink is undone");
}

#[test]
fn sparse_writes_truncation_and_sizes_follow_the_syncs() {
    let Some(mount) = mount_or_skip() else { return };
    let path = mount.path().join("sparse");
    let file = OpenOptions::new()
        .create_new(true)
        .read(true)
        .write(true)
        .open(&path)
        .expect("create");
    sync_dir(mount.path());
    file.write_all_at(b"tail", 10_000)
        .expect("pwrite past the end");
    file.set_len(5_000).expect("shrink");
    file.set_len(10_004).expect("grow");
    let mut bytes = vec![1; 10_004];
    file.read_exact_at(&mut bytes, 0).expect("pread");
    assert!(bytes.iter().all(|&byte| byte == 0), "holes read as zeros");
    file.write_all_at(b"abc", 4_095)
        .expect("across a block edge");
    file.sync_all().expect("fsync");
    file.set_len(1).expect("unsynced truncate");
    drop(file);

    cut(&mount);
    let mut bytes = Vec::new();
    File::open(&path)
        .expect("open")
        .read_to_end(&mut bytes)
        .expect("read");
    assert_eq!(bytes.len(), 10_004, "the synced size");
    assert_eq!(&bytes[4_095..4_098], b"abc");
}

#[test]
fn the_power_off_fails_every_call_and_flock_is_exclusive() {
    let Some(mount) = mount_or_skip() else { return };
    let path = mount.path().join("db");
    let first = File::create(&path).expect("create");
    let second = File::open(&path).expect("open");
    rustix::fs::flock(&first, rustix::fs::FlockOperation::NonBlockingLockExclusive).expect("lock");
    assert_eq!(
        rustix::fs::flock(
            &second,
            rustix::fs::FlockOperation::NonBlockingLockExclusive
        ),
        Err(rustix::io::Errno::WOULDBLOCK),
        "a second exclusive lock waits"
    );
    drop((first, second));

    mount.power_cut();
    let err = fs::read_dir(mount.path()).expect_err("no disk while the power is off");
    assert_eq!(
        err.raw_os_error(),
        Some(rustix::io::Errno::IO.raw_os_error())
    );
    mount.power_on();
    assert!(!path.exists(), "db was never named durably");
}
