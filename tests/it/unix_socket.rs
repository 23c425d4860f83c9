//! `--listen unix:PATH`: only a stale socket at the path is replaced (a
//! file, a directory or a symlink is a start-up error naming the path,
//! left as it was), a clean shutdown removes the socket unless the path
//! holds something else by then, and a request whose `:authority` is the
//! socket's path (what gRPC's C core and grpc-java send) is served.

use std::path::{Path, PathBuf};

use sessionlog::server::{FsyncPolicy, ListenAddr, Listener, Listeners, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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

/// HTTP/2 frame types and flags the raw client below uses.
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const ACK: u8 = 0x1;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let length = u32::try_from(payload.len()).expect("a small frame");
    let mut frame = length.to_be_bytes()[1..].to_vec();
    frame.extend([kind, flags]);
    frame.extend(stream.to_be_bytes());
    frame.extend(payload);
    frame
}

/// HPACK "literal header field without indexing, new name", no Huffman
/// coding: the one representation any decoder takes, and the only way to
/// send an `:authority` that `http::Uri` would not build.
fn literal(name: &str, value: &str) -> Vec<u8> {
    let mut field = vec![0];
    for text in [name, value] {
        field.push(
            u8::try_from(text.len())
                .ok()
                .filter(|len| *len < 127)
                .expect("short"),
        );
        field.extend(text.as_bytes());
    }
    field
}

/// What the server answered one raw `grpc.health.v1.Health/Check` with.
#[derive(Debug, PartialEq)]
enum Answer {
    /// The response's first DATA frame.
    Data(Vec<u8>),
    Reset,
    GoAway,
}

/// Sends `Health/Check` for the whole server over a fresh connection to
/// `path`, with `authority` as the `:authority` pseudo-header, written
/// frame by frame.
async fn raw_health_check(path: &Path, authority: &str) -> Answer {
    let mut socket = tokio::net::UnixStream::connect(path)
        .await
        .expect("connect");
    let mut request = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    request.extend(frame(SETTINGS, 0, 0, &[]));
    let headers: Vec<u8> = [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/grpc.health.v1.Health/Check"),
        (":authority", authority),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ]
    .iter()
    .flat_map(|(name, value)| literal(name, value))
    .collect();
    request.extend(frame(HEADERS, END_HEADERS, 1, &headers));
    // An empty HealthCheckRequest: uncompressed, zero bytes long.
    request.extend(frame(DATA, END_STREAM, 1, &[0, 0, 0, 0, 0]));
    socket.write_all(&request).await.expect("send");
    tokio::time::timeout(std::time::Duration::from_secs(30), async {
        loop {
            let mut head = [0u8; 9];
            socket.read_exact(&mut head).await.expect("a frame");
            let length = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            let (kind, flags) = (head[3], head[4]);
            let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
            let mut payload = vec![0u8; length];
            socket.read_exact(&mut payload).await.expect("its payload");
            match (kind, stream) {
                (SETTINGS, 0) if flags & ACK == 0 => {
                    socket
                        .write_all(&frame(SETTINGS, ACK, 0, &[]))
                        .await
                        .expect("ack");
                }
                (DATA, 1) => return Answer::Data(payload),
                (RST_STREAM, 1) => return Answer::Reset,
                (GOAWAY, 0) => return Answer::GoAway,
                _ => {}
            }
        }
    })
    .await
    .expect("an answer within 30 s")
}

#[tokio::test]
async fn a_socket_path_as_the_authority_is_served() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("s.sock");
    let (stop_tx, stop_rx) = oneshot::channel();
    let listener = bind(&path).await.expect("bind");
    let server = tokio::spawn(serve_on(listener, dir.path().join("data"), stop_rx));
    // SERVING (1), as a gRPC message: uncompressed, two bytes long.
    let serving = Answer::Data(vec![0, 0, 0, 0, 2, 0x08, 0x01]);
    let plain = path.display().to_string();
    let encoded = plain.replace('/', "%2F");
    for authority in [
        "localhost",
        // grpc-java and Bazel
        plain.as_str(),
        // gRPC's C core (Python's grpcio since 1.57): the path %-encoded,
        // without its leading slash
        encoded.trim_start_matches("%2F"),
        encoded.as_str(),
    ] {
        assert_eq!(
            raw_health_check(&path, authority).await,
            serving,
            "with :authority {authority:?}"
        );
    }
    let _ = stop_tx.send(());
    server.await.expect("task").expect("clean stop");
}
