//! A data dir owned by another user: refused with one line and nothing
//! created, unless `--allow-foreign-store-owner`; with it, every file the
//! server creates stays readable (and writable) by the dir's owner, who can
//! serve the store again. Changing a dir's owner needs root: without it the
//! test says so and stops.

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use crate::common::process;

const BIN: &str = env!("CARGO_BIN_EXE_sessionlog");
const NOBODY: u32 = 65_534;

fn chown_to_nobody(path: &Path) {
    rustix::fs::chown(path, Some(rustix::fs::Uid::from_raw(NOBODY)), None).expect("chown");
}

fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).expect("list") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

fn serve(data: &Path, socket: &Path, allow: bool) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(["serve", "--fsync", "always", "--data-dir"])
        .arg(data)
        .arg("--listen")
        .arg(format!("unix:{}", socket.display()))
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if allow {
        command.arg("--allow-foreign-store-owner");
    }
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_owned_by_another_user_is_refused_unless_allowed_and_stays_theirs() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: giving a data dir to another user needs root");
        return;
    }
    let root = tempfile::tempdir().expect("temp dir");
    // The owner must reach the store and its socket through the temp dir.
    std::fs::set_permissions(
        root.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let data = root.path().join("data");
    let sockets = root.path().join("sockets");
    for dir in [&data, &sockets] {
        std::fs::create_dir(dir).expect("dir");
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .expect("chmod");
        chown_to_nobody(dir);
    }
    let socket = sockets.join("sessionlog.sock");

    let refused = tokio::time::timeout(
        Duration::from_secs(30),
        serve(&data, &socket, false).output(),
    )
    .await
    .expect("refused promptly")
    .expect("ran");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].contains("owned by uid 65534")
            && errors[0].contains("--allow-foreign-store-owner"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        std::fs::read_dir(&data).expect("list").count(),
        0,
        "nothing created"
    );

    let mut allowed = serve(&data, &socket, true).spawn().expect("spawn");
    process::wait_until_serving(&mut allowed).await;
    let mut client =
        sessionlog::client::Connection::connect(&format!("unix:{}", socket.display()), None)
            .await
            .expect("connect")
            .sessions();
    let id = client
        .start_session(sessionlog::pb::StartSessionRequest {
            app_name: "foreign".to_owned(),
            ..Default::default()
        })
        .await
        .expect("start")
        .into_inner()
        .id;
    client
        .append(sessionlog::pb::AppendRequest {
            session_id: id.clone(),
            // Large enough for a blob file of its own, in a subdirectory.
            entries: vec![crate::common::entry("z".repeat(300_000))],
            ..Default::default()
        })
        .await
        .expect("append");
    process::sigterm(&allowed);
    assert!(allowed.wait().await.expect("reaped").success());
    std::fs::remove_file(&socket).ok();

    let files = files_below(&data);
    assert!(files.len() >= 3, "{files:?}");
    for file in &files {
        let readable = std::process::Command::new("cat")
            .arg(file)
            .uid(NOBODY)
            .gid(NOBODY)
            .stdout(Stdio::null())
            .status()
            .expect("cat");
        assert!(
            readable.success(),
            "{} (uid {}) is not readable by the dir's owner",
            file.display(),
            std::fs::metadata(file).expect("meta").uid()
        );
    }

    // The owner serves its store again, and finds the session.
    let mut owner = serve(&data, &socket, false);
    owner.uid(NOBODY).gid(NOBODY);
    let mut owner = owner.spawn().expect("spawn as the owner");
    process::wait_until_serving(&mut owner).await;
    let mut client =
        sessionlog::client::Connection::connect(&format!("unix:{}", socket.display()), None)
            .await
            .expect("connect")
            .sessions();
    let session = client
        .get_session(sessionlog::pb::GetSessionRequest { session_id: id })
        .await
        .expect("the owner's server has the session")
        .into_inner();
    assert_eq!(session.last_seq, 1);
    process::sigterm(&owner);
    assert!(owner.wait().await.expect("reaped").success());
}
