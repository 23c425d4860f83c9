//! A full disk: appends fail with UNAVAILABLE and a message, the server does
//! not crash (sled refuses all I/O after a write error, so reads fail the
//! same way), shutdown reports the failed final flush, and once there is
//! space again every acknowledged batch is there. Runs on a small tmpfs,
//! which needs the privilege to mount; without it the test says so and
//! stops.

use std::path::{Path, PathBuf};
use std::process::Command;

use sessionlog::pb;
use tonic::Code;

use crate::common;
use crate::common::FsyncPolicy;
use crate::common::request;
use crate::common::{TestServer, start_session};

/// A mounted tmpfs, unmounted when dropped (also when the test fails).
struct SmallDisk {
    path: PathBuf,
}

impl SmallDisk {
    fn resize(&self, size: &str) {
        let resized = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.path)
            .status()
            .expect("mount");
        assert!(resized.success(), "remount");
    }

    fn mount(path: &Path, size: &str) -> Option<Self> {
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .is_ok_and(|status| status.success());
        mounted.then(|| Self {
            path: path.to_path_buf(),
        })
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_appends_with_unavailable_and_acknowledges_nothing_unsaved() {
    let root = tempfile::tempdir().expect("temp dir");
    let Some(disk) = SmallDisk::mount(root.path(), "3M") else {
        eprintln!("skipped: mounting a tmpfs needs privileges this run does not have");
        return;
    };
    let server = TestServer::builder()
        .data_dir(&disk.path.join("data"))
        .fsync(FsyncPolicy::Always)
        .start()
        .await;
    let mut client = server.client().await;
    let id = start_session(&mut client, "full").await;
    let payload = "z".repeat(180);
    let mut acknowledged = Vec::new();
    let failure = loop {
        let entries = (0..500)
            .map(|i| common::entry(format!("{i} {payload}")))
            .collect();
        let request = pb::AppendRequest {
            session_id: id.clone(),
            entries,
            batch_id: format!("batch-{}", acknowledged.len()),
            ..Default::default()
        };
        match client.append(request).await {
            Ok(response) => acknowledged.push(response.into_inner()),
            Err(status) => break status,
        }
        assert!(acknowledged.len() < 1_000, "a 3 MiB disk never filled");
    };
    assert_eq!(failure.code(), Code::Unavailable, "{failure:?}");
    assert!(failure.message().contains("retry"), "{}", failure.message());
    assert!(
        !failure
            .message()
            .contains(disk.path.to_str().expect("utf-8")),
        "no paths leak"
    );
    // A retry of the failed batch is not acknowledged either while the
    // disk stays full.
    let retry = client
        .append(pb::AppendRequest {
            session_id: id.clone(),
            entries: vec![common::entry("retry")],
            batch_id: format!("batch-{}", acknowledged.len()),
            ..Default::default()
        })
        .await;
    assert_eq!(retry.expect_err("still full").code(), Code::Unavailable);
    // The server still answers: a read succeeds or fails the same way.
    let read = client.read(request::read(&id)).await;
    if let Err(status) = read {
        assert_eq!(status.code(), Code::Unavailable);
    }
    let stopped = server.stop().await;
    let message = format!("{:#}", stopped.expect_err("the final flush cannot succeed"));
    assert!(message.contains("final flush"), "{message}");

    disk.resize("64M");
    let server = TestServer::builder()
        .data_dir(&disk.path.join("data"))
        .fsync(FsyncPolicy::Always)
        .start()
        .await;
    let mut client = server.client().await;
    let entries = common::read_all(&mut client, &id).await;
    let seqs: Vec<u64> = entries.iter().map(|entry| entry.seq).collect();
    let contiguous: Vec<u64> = (1..=u64::try_from(seqs.len()).expect("fits")).collect();
    assert_eq!(seqs, contiguous);
    assert!(!acknowledged.is_empty());
    for response in &acknowledged {
        let last = usize::try_from(response.last_seq).expect("fits");
        assert!(
            last <= entries.len(),
            "acknowledged batch up to seq {last} is on disk"
        );
    }
    println!(
        "{} batches acknowledged before the disk filled; all {} entries back after a restart",
        acknowledged.len(),
        entries.len()
    );
    server.shutdown().await;
}
