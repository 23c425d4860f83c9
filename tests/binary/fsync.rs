//! `--fsync always` as the kernel sees it: the real binary under `strace`
//! makes an `fdatasync` of sled's log for every acknowledged single-entry
//! append made one after another, and fsyncs each blob file sled creates
//! for a large value (sled's own flush only calls `sync_file_range`, which
//! survives a process crash but not a power loss). CI installs strace; a
//! machine without it skips this test and says so.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use sessionlog::client::Connection;
use sessionlog::pb;
use tokio::process::Command;

use crate::common::{entry, process};

const BIN: &str = env!("CARGO_BIN_EXE_sessionlog");
const APPENDS: usize = 20;
/// Every fifth entry is large enough for sled to put it in a blob file.
const LARGE_EVERY: usize = 5;

fn strace_available() -> bool {
    std::process::Command::new("strace")
        .arg("-V")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// The pid of the server that `strace` (pid `tracer`) started.
fn traced_child(tracer: u32) -> rustix::process::Pid {
    let children = std::fs::read_to_string(format!("/proc/{tracer}/task/{tracer}/children"))
        .expect("strace's children");
    let pid: i32 = children
        .split_whitespace()
        .next()
        .expect("strace runs the server")
        .parse()
        .expect("a pid");
    rustix::process::Pid::from_raw(pid).expect("non-zero pid")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsync_always_fdatasyncs_the_log_before_each_acknowledged_append() {
    if !strace_available() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI installs strace (.ci/run); it is missing"
        );
        eprintln!("skipped: strace is not installed");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let socket = dir.path().join("sessionlog.sock");
    let trace = dir.path().join("trace.txt");
    let mut tracer = Command::new("strace")
        .args(["-f", "-qq", "-y", "-e", "trace=fsync,fdatasync", "-o"])
        .arg(&trace)
        .arg(BIN)
        .args(["serve", "--fsync", "always", "--data-dir"])
        .arg(&data)
        .arg("--listen")
        .arg(format!("unix:{}", socket.display()))
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn strace");
    process::wait_until_serving(&mut tracer).await;
    let server = traced_child(tracer.id().expect("strace is running"));

    let mut client = Connection::connect(&format!("unix:{}", socket.display()), None)
        .await
        .expect("connect")
        .sessions();
    let id = client
        .start_session(pb::StartSessionRequest {
            app_name: "fsync".into(),
            ..Default::default()
        })
        .await
        .expect("start")
        .into_inner()
        .id;
    let log_syncs_before = log_syncs(&trace);
    let large = "x".repeat(300 << 10);
    for index in 0..APPENDS {
        let message = if index % LARGE_EVERY == LARGE_EVERY - 1 {
            large.clone()
        } else {
            format!("entry {index}")
        };
        client
            .append(pb::AppendRequest {
                session_id: id.clone(),
                entries: vec![entry(message)],
                ..Default::default()
            })
            .await
            .expect("append");
    }
    drop(client);

    rustix::process::kill_process(server, rustix::process::Signal::TERM).expect("SIGTERM");
    let status = tokio::time::timeout(Duration::from_secs(60), tracer.wait())
        .await
        .expect("the server stops")
        .expect("strace exits");
    assert!(
        status.success(),
        "strace and the server exit cleanly: {status}"
    );

    let text = std::fs::read_to_string(&trace).expect("the trace");
    let log_syncs = log_syncs(&trace) - log_syncs_before;
    assert!(
        log_syncs >= APPENDS,
        "{log_syncs} fdatasyncs of sled's log for {APPENDS} acknowledged appends:\n{text}"
    );
    let blob_syncs = text
        .lines()
        .filter(|line| line.contains("fsync(") && line.contains("/blobs/"))
        .count();
    assert!(
        blob_syncs >= APPENDS / LARGE_EVERY,
        "{blob_syncs} blob files fsynced for {} large entries:\n{text}",
        APPENDS / LARGE_EVERY
    );
    println!("{APPENDS} appends: {log_syncs} log fdatasyncs, {blob_syncs} blob fsyncs");
}

/// How many `fdatasync`s of sled's log the trace holds so far (strace
/// writes each line as the call returns).
fn log_syncs(trace: &Path) -> usize {
    let data_log = "/data/db>";
    std::fs::read_to_string(trace)
        .unwrap_or_default()
        .lines()
        .filter(|line| line.contains("fdatasync(") && line.contains(data_log))
        .count()
}
