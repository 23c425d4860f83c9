//! `--listen unix:PATH`: only a stale socket at the path is replaced (a
//! file, a directory or a symlink is a start-up error naming the path,
//! left as it was), and a clean shutdown removes the socket unless the
//! path holds something else by then.

use std::path::{Path, PathBuf};

use sessionlog::server::{FsyncPolicy, ListenAddr, Listener, Listeners, Server};
use tokio::sync::oneshot;

use crate::common::settings;

async fn bind(path: &Path) -> anyhow::Result<Listener> {
    Listener::bind(&ListenAddr::Unix(path.to_path_buf())).await
}

async fn refused(path: &Path) -> String {
    let err = bind(path).await.expect_err("not replaced");
    let message = format!("{err:#}");
    assert!(
        message.contains(&path.display().to_string()),
        "names the path: {message}"
    );
    message
}

#[tokio::test]
async fn a_regular_file_at_the_path_is_left_alone() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("data.sock");
    std::fs::write(&path, b"precious").expect("write");
    let message = refused(&path).await;
    assert!(message.contains("regular file"), "{message}");
    assert_eq!(std::fs::read(&path).expect("still there"), b"precious");
}

#[tokio::test]
async fn a_directory_at_the_path_is_left_alone() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("sock.d");
    std::fs::create_dir(&path).expect("mkdir");
    let message = refused(&path).await;
    assert!(message.contains("directory"), "{message}");
    assert!(path.is_dir());
}

#[tokio::test]
async fn a_symlink_at_the_path_is_not_followed_nor_removed() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Even to a stale socket: its target is not ours to replace.
    let target = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&target).expect("bind"));
    let path = dir.path().join("link.sock");
    std::os::unix::fs::symlink(&target, &path).expect("symlink");
    let message = refused(&path).await;
    assert!(message.contains("symlink"), "{message}");
    assert!(path.symlink_metadata().expect("link").is_symlink());
    assert!(target.exists(), "the target stays");
}

#[tokio::test]
async fn a_stale_socket_is_replaced_and_a_live_one_is_not() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("s.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).expect("bind"));
    assert!(path.exists(), "a dead server's socket stays behind");
    let live = bind(&path).await.expect("the stale socket is replaced");
    let message = refused(&path).await;
    assert!(message.contains("in use"), "{message}");
    drop(live);
    assert!(!path.exists(), "a dropped listener removes its socket");
}

/// Serves a server on `listener` until `stop` fires; what `serve`
/// returned.
async fn serve_on(
    listener: Listener,
    data: PathBuf,
    stop: oneshot::Receiver<()>,
) -> anyhow::Result<()> {
    let server = Server::open(
        settings(&data, FsyncPolicy::Never),
        Listeners::grpc(vec![listener]),
    )
    .await
    .expect("open");
    server
        .serve(async {
            let _ = stop.await;
        })
        .await
}

#[tokio::test]
async fn a_clean_shutdown_removes_the_socket() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("s.sock");
    let (stop_tx, stop_rx) = oneshot::channel();
    let listener = bind(&path).await.expect("bind");
    let server = tokio::spawn(serve_on(listener, dir.path().join("data"), stop_rx));
    let mut client =
        sessionlog::client::Connection::connect(&format!("unix:{}", path.display()), None)
            .await
            .expect("connect")
            .sessions();
    client
        .list_sessions(sessionlog::pb::ListSessionsRequest::default())
        .await
        .expect("served on the socket");
    let _ = stop_tx.send(());
    server.await.expect("task").expect("clean stop");
    assert!(!path.exists(), "the socket is gone after a clean shutdown");
}

#[tokio::test]
async fn shutdown_leaves_a_file_that_took_the_sockets_path() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("s.sock");
    let (stop_tx, stop_rx) = oneshot::channel();
    let listener = bind(&path).await.expect("bind");
    let server = tokio::spawn(serve_on(listener, dir.path().join("data"), stop_rx));
    std::fs::remove_file(&path).expect("remove the socket");
    std::fs::write(&path, b"someone else's").expect("write");
    let _ = stop_tx.send(());
    server.await.expect("task").expect("clean stop");
    assert_eq!(std::fs::read(&path).expect("kept"), b"someone else's");
}
