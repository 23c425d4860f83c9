//! Durability and the data dir: group commit, owner-only files, and stores
//! that must not be opened (in use, foreign, corrupt) refused with a clear
//! message and left as they were.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use sessionlog::pb;
use sessionlog::server::{ForeignOwner, Listeners, Server, ServerSettings};

use crate::common;
use crate::common::FsyncPolicy;
use crate::common::{TestServer, start_session};

fn settings(dir: &Path) -> ServerSettings {
    common::settings(dir, FsyncPolicy::Always)
}

fn group_or_other_access(dir: &Path) -> Vec<String> {
    let mut loose = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        let metadata = std::fs::symlink_metadata(&path).expect("metadata");
        if metadata.mode() & 0o077 != 0 {
            loose.push(format!("{} {:o}", path.display(), metadata.mode() & 0o777));
        }
        if metadata.is_dir() {
            for entry in std::fs::read_dir(&path).expect("list") {
                pending.push(entry.expect("entry").path());
            }
        }
    }
    loose
}

/// Under `always` an OK means the batch was fsynced: every acknowledged
/// append, one after another, is covered by a sync that finished before
/// its OK (sled's own flush only calls `sync_file_range`). Also with a
/// value large enough to go to a sled blob file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_append_acknowledged_under_fsync_always_was_synced_first() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::builder()
        .data_dir(dir.path())
        .fsync(FsyncPolicy::Always)
        .start()
        .await;
    let mut client = server.client().await;
    let id = start_session(&mut client, "sync").await;
    let large = "x".repeat(300 << 10);
    for append in 0..20 {
        let message = if append % 5 == 4 {
            large.clone()
        } else {
            format!("entry {append}")
        };
        let before = server.sessions.sync_count();
        common::append(&mut client, &id, &[&message]).await;
        let after = server.sessions.sync_count();
        assert!(
            after > before,
            "append {append} was acknowledged before a sync"
        );
    }
    server.shutdown().await;
}

/// A flush that returns after `--flush-timeout` began before the appends
/// queued while it ran: its success must not acknowledge them. Here the
/// first append's flush syncs, then returns late; an append applied after
/// that sync is acknowledged only after a sync of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_flush_does_not_acknowledge_appends_applied_after_it_began() {
    const TIMEOUT: Duration = Duration::from_millis(500);
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::builder()
        .data_dir(dir.path())
        .fsync(FsyncPolicy::Always)
        .configure(|settings| settings.flush_timeout = TIMEOUT)
        .start()
        .await;
    let mut client = server.client().await;
    let id = start_session(&mut client, "late").await;
    common::append(&mut client, &id, &["before"]).await;

    // The next flush syncs, then returns between one and two timeouts later.
    let slow = {
        let mut client = server.client().await;
        let id = id.clone();
        common::spawn_with_held_flush(&server, TIMEOUT * 3 / 2, async move {
            client
                .append(pb::AppendRequest {
                    session_id: id,
                    entries: vec![common::entry("slow")],
                    ..Default::default()
                })
                .await
        })
        .await
    };
    let late_sync = server.sessions.sync_count();
    // Applied after the slow flush synced: that sync cannot cover it.
    let after = client
        .append(pb::AppendRequest {
            session_id: id.clone(),
            entries: vec![common::entry("after")],
            ..Default::default()
        })
        .await;
    let synced_at_ack = server.sessions.sync_count();
    let slow = slow.await.expect("the slow append's task");
    assert_eq!(
        slow.expect_err("the slow flush passed its timeout").code(),
        tonic::Code::Unavailable
    );
    after.expect("acknowledged once a sync covers it");
    assert!(
        synced_at_ack > late_sync,
        "acknowledged with no sync after it was applied ({synced_at_ack} syncs, the late one was {late_sync})"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_under_fsync_always_share_flushes() {
    const WRITERS: usize = 16;
    const APPENDS: usize = 30;
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::builder()
        .data_dir(dir.path())
        .fsync(FsyncPolicy::Always)
        .start()
        .await;
    let mut client = server.client().await;
    let id = start_session(&mut client, "group").await;
    let before = server.sessions.flush_count();
    let mut writers = tokio::task::JoinSet::new();
    for writer in 0..WRITERS {
        let mut client = server.client().await;
        let id = id.clone();
        writers.spawn(async move {
            for append in 0..APPENDS {
                common::append(&mut client, &id, &[&format!("{writer}-{append}")]).await;
            }
        });
    }
    while let Some(done) = writers.join_next().await {
        done.expect("writer");
    }
    let flushes = server.sessions.flush_count() - before;
    let appends = u64::try_from(WRITERS * APPENDS).expect("fits");
    println!("{appends} acknowledged appends shared {flushes} flushes");
    assert!(flushes >= 1);
    // Without group commit every append pays a flush; sharing one among
    // three or more is what the 16 writers must at least get.
    assert!(
        flushes * 3 <= appends,
        "group commit: {flushes} flushes for {appends} appends"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn the_data_dir_and_its_files_are_owner_only() {
    let root = tempfile::tempdir().expect("temp dir");
    let dir = root.path().join("data");
    let server = TestServer::builder()
        .data_dir(&dir)
        .fsync(FsyncPolicy::Always)
        .start()
        .await;
    let mut client = server.client().await;
    let id = start_session(&mut client, "private").await;
    common::append(&mut client, &id, &["secret"]).await;
    server.shutdown().await;
    assert_eq!(std::fs::metadata(&dir).expect("dir").mode() & 0o777, 0o700);
    assert_eq!(group_or_other_access(&dir), Vec::<String>::new());
}

#[tokio::test]
async fn a_loose_data_dir_of_ours_is_tightened_at_start() {
    let root = tempfile::tempdir().expect("temp dir");
    let dir = root.path().join("data");
    TestServer::builder()
        .data_dir(&dir)
        .fsync(FsyncPolicy::Always)
        .start()
        .await
        .shutdown()
        .await;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod dir");
    std::fs::set_permissions(dir.join("db"), std::fs::Permissions::from_mode(0o644))
        .expect("chmod db");
    TestServer::builder()
        .data_dir(&dir)
        .fsync(FsyncPolicy::Always)
        .start()
        .await
        .shutdown()
        .await;
    assert_eq!(group_or_other_access(&dir), Vec::<String>::new());
}

#[tokio::test]
async fn a_second_server_on_the_same_data_dir_fails_fast_naming_the_lock() {
    let dir = tempfile::tempdir().expect("temp dir");
    let first = TestServer::builder()
        .data_dir(dir.path())
        .fsync(FsyncPolicy::Always)
        .start()
        .await;
    let second = tokio::time::timeout(
        Duration::from_secs(10),
        Server::open(settings(dir.path()), Listeners::default()),
    )
    .await
    .expect("fails fast");
    let message = format!("{:#}", second.expect_err("the store is in use"));
    assert!(message.contains("lock"), "{message}");
    assert!(
        message.contains(&dir.path().join("db").display().to_string()),
        "{message}"
    );
    // The first server is unharmed.
    let mut client = first.client().await;
    start_session(&mut client, "still-serving").await;
    first.shutdown().await;
}

#[tokio::test]
async fn a_directory_of_other_files_is_refused_and_untouched() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("thesis.tex"), b"years of work").expect("file");
    let refused = Server::open(settings(dir.path()), Listeners::default()).await;
    let message = format!("{:#}", refused.expect_err("foreign"));
    assert!(message.contains("thesis.tex"), "{message}");
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .expect("list")
        .map(|entry| entry.expect("entry").file_name())
        .collect();
    assert_eq!(names, ["thesis.tex"]);
    assert_eq!(
        std::fs::read(dir.path().join("thesis.tex")).expect("kept"),
        b"years of work"
    );
}

#[tokio::test]
async fn a_store_sled_cannot_read_is_refused_not_reinitialised() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::builder()
        .data_dir(dir.path())
        .fsync(FsyncPolicy::Always)
        .start()
        .await;
    let mut client = server.client().await;
    let id = start_session(&mut client, "precious").await;
    common::append(&mut client, &id, &["keep me"]).await;
    server.shutdown().await;
    let garbage: Vec<u8> = (0..64 * 1024u32)
        .map(|i| u8::try_from(i * 7 % 251).expect("byte"))
        .collect();
    std::fs::write(dir.path().join("db"), &garbage).expect("corrupt the log");
    let refused = Server::open(settings(dir.path()), Listeners::default()).await;
    let message = format!("{:#}", refused.expect_err("corrupt"));
    assert!(message.contains("could not recover"), "{message}");
    // A second attempt is refused the same way: the first did not
    // quietly turn the store into an empty one.
    let again = Server::open(settings(dir.path()), Listeners::default()).await;
    assert!(again.is_err(), "still refused");
}

#[tokio::test]
async fn restart_keeps_active_sessions_active() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::builder()
        .data_dir(dir.path())
        .fsync(FsyncPolicy::Always)
        .start()
        .await;
    let mut client = server.client().await;
    let id = start_session(&mut client, "long-running").await;
    server.shutdown().await;
    let server = TestServer::builder()
        .data_dir(dir.path())
        .fsync(FsyncPolicy::Always)
        .start()
        .await;
    let mut client = server.client().await;
    let session = common::get_session(&mut client, &id).await;
    assert_eq!(session.state(), pb::SessionState::Active);
    server.shutdown().await;
}

#[tokio::test]
async fn a_loose_data_dir_owned_by_someone_else_is_left_alone() {
    let root = tempfile::tempdir().expect("temp dir");
    let dir = root.path().join("data");
    TestServer::builder()
        .data_dir(&dir)
        .fsync(FsyncPolicy::Always)
        .start()
        .await
        .shutdown()
        .await;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    // 65534 is `nobody`; changing the owner needs root, which this run may lack.
    if rustix::fs::chown(&dir, Some(rustix::fs::Uid::from_raw(65_534)), None).is_err() {
        eprintln!("skipped: changing the data dir's owner needs root");
        return;
    }
    let server = TestServer::builder()
        .data_dir(&dir)
        .fsync(FsyncPolicy::Always)
        .configure(|settings| settings.foreign_store_owner = ForeignOwner::Allow)
        .start()
        .await;
    server.shutdown().await;
    assert_eq!(
        std::fs::metadata(&dir).expect("dir").mode() & 0o777,
        0o755,
        "not ours: warned about, not changed"
    );
}
