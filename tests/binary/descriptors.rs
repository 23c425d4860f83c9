//! Descriptor exhaustion: the real binary under a low open-file limit
//! (`prlimit`) is flooded with idle TCP connections, which need no token.
//! Those over the connection cap are closed at once, and an append that
//! needs a new file in the store (a 300 KB entry) still succeeds.

use std::process::Stdio;
use std::time::Duration;

use sessionlog::pb::session_log_client::SessionLogClient;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::Command;

use crate::common::{append, entry, process, read_all, start_session};

const OPEN_FILES: u64 = 512;

#[tokio::test]
async fn idle_connections_cannot_take_the_stores_descriptors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut child = Command::new("prlimit")
        .arg(format!("--nofile={OPEN_FILES}:{OPEN_FILES}"))
        .arg(env!("CARGO_BIN_EXE_sessionlog"))
        .args(["serve", "--log-format", "json", "--listen", "127.0.0.1:0"])
        // Idle peers keep their slots for the whole test.
        .args(["--handshake-timeout", "10m"])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn prlimit serve");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let (mut addr, mut cap) = (None, None);
    while addr.is_none() {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("the server starts within 30s")
            .expect("read stderr")
            .expect("the server is running");
        let log: serde_json::Value = serde_json::from_str(&line).expect("a JSON log line");
        let fields = &log["fields"];
        match fields["message"].as_str() {
            Some("connections per listener") => cap = fields["max_connections"].as_u64(),
            Some("serving") => addr = fields["listen"].as_str().map(str::to_owned),
            _ => {}
        }
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let addr = addr.expect("grpc address");
    let cap = usize::try_from(cap.expect("the cap is logged")).expect("cap fits");
    assert!(
        cap < usize::try_from(OPEN_FILES).expect("fits"),
        "the cap {cap} leaves descriptors for the store"
    );

    let mut client = SessionLogClient::connect(format!("http://{addr}"))
        .await
        .expect("connect");
    let session = start_session(&mut client, "descriptors").await;
    // The client holds one slot; idle peers take every other one.
    let mut idle = Vec::with_capacity(cap);
    for _ in 1..cap {
        idle.push(
            TcpStream::connect(&addr)
                .await
                .expect("connect within the cap"),
        );
    }
    // Past the cap, every new connection is closed at once.
    for _ in 0..16 {
        let mut over = TcpStream::connect(&addr).await.expect("connect");
        let mut buf = [0_u8; 16];
        let read = tokio::time::timeout(Duration::from_secs(10), over.read(&mut buf))
            .await
            .expect("closed promptly");
        assert!(
            matches!(read, Ok(0) | Err(_)),
            "closed, not answered: {read:?}"
        );
    }

    // A large entry: sled opens a file for it.
    let large = "x".repeat(300 * 1024);
    let response = client
        .append(sessionlog::pb::AppendRequest {
            session_id: session.clone(),
            entries: vec![entry(large.clone())],
            ..Default::default()
        })
        .await
        .expect("a 300 KB append succeeds with every slot taken");
    assert_eq!(response.into_inner().last_seq, 1);
    append(&mut client, &session, &["after"]).await;
    let entries = read_all(&mut client, &session).await;
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].message.len(), large.len());

    drop(idle);
    process::sigterm(&child);
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("stops within 30s")
        .expect("reaped");
    assert!(status.success(), "clean stop: {status}");
}
