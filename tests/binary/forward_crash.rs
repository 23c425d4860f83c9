//! Forwarding through `kill -9`: a forwarding server (the real binary) is
//! killed while it is still sending to the central target, then restarted
//! on the same store. Every acknowledged entry reaches the target, in
//! order, and what arrives twice is bounded by one export: the one in
//! flight at the kill, at most `--forward-batch` records.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use sessionlog::client::Connection;
use sessionlog::pb;
use tokio::process::{Child, Command};
use tokio_stream::StreamExt;

use crate::common;
use crate::common::TestServer;
use crate::common::process;

const BIN: &str = env!("CARGO_BIN_EXE_sessionlog");
/// Small exports, so that many are in flight when the kill comes.
const FORWARD_BATCH: usize = 20;
const ENTRIES: usize = 20_000;

async fn forwarding_server(dir: &Path, target: &str) -> Child {
    let mut child = Command::new(BIN)
        .args(["serve", "--fsync", "always", "--data-dir"])
        .arg(dir.join("data"))
        .arg("--listen")
        .arg(format!("unix:{}", dir.join("s.sock").display()))
        .args(["--forward-otlp", target])
        .args(["--forward-batch", &FORWARD_BATCH.to_string()])
        .args(["--forward-linger", "1ms"])
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn serve");
    process::wait_until_serving(&mut child).await;
    child
}

/// How many entries the central server holds for `id` (0 before it exists).
async fn central_count(central: &TestServer, id: &str) -> u64 {
    let mut client = central.client().await;
    client
        .get_session(pb::GetSessionRequest {
            session_id: id.to_owned(),
        })
        .await
        .map_or(0, |session| session.into_inner().entry_count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_forwarding_loses_nothing_and_repeats_at_most_one_export() {
    let central = TestServer::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let socket = format!("unix:{}", dir.path().join("s.sock").display());
    let mut server = forwarding_server(dir.path(), &central.url()).await;
    let mut client = Connection::connect(&socket, None)
        .await
        .expect("connect")
        .sessions();
    client
        .start_session(pb::StartSessionRequest {
            session_id: "fwd-crash".into(),
            ..Default::default()
        })
        .await
        .expect("start");
    let messages: Vec<String> = (0..ENTRIES).map(|i| format!("entry {i}")).collect();
    for chunk in messages.chunks(500) {
        client
            .append(pb::AppendRequest {
                session_id: "fwd-crash".into(),
                entries: chunk.iter().map(common::entry).collect(),
                ..Default::default()
            })
            .await
            .expect("append");
    }
    // Every entry is acknowledged (and on disk: --fsync always); the
    // forwarder, twenty records an export, is still behind.
    server.start_kill().expect("SIGKILL");
    server.wait().await.expect("reaped");
    let at_kill = central_count(&central, "fwd-crash").await;
    assert!(
        at_kill < ENTRIES as u64,
        "the kill came after forwarding had finished ({at_kill} entries there); nothing was tested"
    );

    let _restarted = forwarding_server(dir.path(), &central.url()).await;
    let mut stream = central
        .client()
        .await
        .follow(pb::FollowRequest {
            session_id: "fwd-crash".into(),
            ..Default::default()
        })
        .await
        .expect("follow")
        .into_inner();
    let mut received = Vec::new();
    let mut distinct = std::collections::HashSet::new();
    tokio::time::timeout(Duration::from_secs(60), async {
        while distinct.len() < ENTRIES {
            let Some(response) = stream.next().await else {
                break;
            };
            if let Some(pb::follow_response::Event::Batch(batch)) =
                response.expect("follow event").event
            {
                for entry in batch.entries {
                    distinct.insert(entry.message.clone());
                    received.push(entry.message);
                }
            }
        }
    })
    .await
    .expect("every entry reaches the target after the restart");

    // In order, once each, but for one repeated export at most.
    let mut first_seen = std::collections::HashSet::new();
    let in_order: Vec<&String> = received
        .iter()
        .filter(|message| first_seen.insert(message.as_str()))
        .collect();
    assert!(
        in_order.iter().copied().eq(messages.iter()),
        "entries arrive in order"
    );
    let repeated = received.len() - ENTRIES;
    assert!(
        repeated <= FORWARD_BATCH,
        "{repeated} entries arrived twice; the bound is one export of {FORWARD_BATCH}"
    );
    println!(
        "killed with {at_kill} of {ENTRIES} entries at the target; {repeated} arrived twice after the restart"
    );
    central.shutdown().await;
}
