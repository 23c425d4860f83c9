//! Ended sessions' logs are checked after start-up, not before SERVING: a
//! damaged one is reported (DATA_LOSS naming it, an error line, the
//! `sessionlog_store_damaged_sessions` gauge) while the rest of the store
//! is served, and a read that meets the background check gets every entry.

use std::path::Path;

use sessionlog::pb;
use tonic::Code;

use crate::common;
use crate::common::FsyncPolicy;
use crate::common::request;
use crate::common::{
    Client, TestServer, append, end_session, expect_code, get_session, read_all, seqs,
    start_session,
};

/// `sessions` sessions of `batches` batches of 100 entries, ended (the
/// last `active` of them left active), with the server stopped after.
async fn fill(dir: &Path, sessions: usize, batches: usize, active: usize) -> Vec<String> {
    let server = TestServer::builder()
        .data_dir(dir)
        .fsync(FsyncPolicy::Always)
        .start()
        .await;
    let mut client = server.client().await;
    let mut ids = Vec::new();
    for n in 0..sessions {
        let id = start_session(&mut client, "check").await;
        for batch in 0..batches {
            let messages: Vec<String> = (0..100)
                .map(|i| format!("session {n} batch {batch} entry {i} {}", "x".repeat(40)))
                .collect();
            let refs: Vec<&str> = messages.iter().map(String::as_str).collect();
            append(&mut client, &id, &refs).await;
        }
        if n + active < sessions {
            end_session(&mut client, &id, "done").await;
        }
        ids.push(id);
    }
    drop(client);
    server.shutdown().await;
    ids
}

/// Cuts the value of the last block of `session_id`'s log in half, as a
/// torn or garbled page would leave it, with the server stopped.
fn damage_last_block(dir: &Path, session_id: &str) {
    let db = common::open_sled(dir);
    let log = db
        .open_tree(format!("log/{session_id}"))
        .expect("the session's log");
    // Entry blocks sit under big-endian seqs below 0x80; metadata keys
    // start with 0xff.
    let (key, block) = log
        .range([0u8; 8]..[0x80u8; 8])
        .next_back()
        .expect("a last block")
        .expect("read");
    log.insert(key, &block[..block.len() / 2]).expect("garble");
    db.flush().expect("flush");
}

async fn metric(addr: std::net::SocketAddr, name: &str) -> f64 {
    let answer = common::http::get(addr, "/metrics", &[]).await;
    assert_eq!(answer.status, 200);
    answer
        .body
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {}", answer.body))
}

async fn wait_log_check(server: &TestServer) {
    let sessions = server.sessions.clone();
    tokio::time::timeout(
        std::time::Duration::from_secs(30),
        tokio::task::spawn_blocking(move || sessions.wait_log_check()),
    )
    .await
    .expect("the log check finishes")
    .expect("waited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_ended_session_answers_data_loss_while_the_rest_is_served() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ids = fill(dir.path(), 4, 3, 1).await;
    let (damaged, healthy, active) = (&ids[1], [&ids[0], &ids[2]], &ids[3]);
    damage_last_block(dir.path(), damaged);

    let server = TestServer::builder()
        .data_dir(dir.path())
        .fsync(FsyncPolicy::Always)
        .http()
        .metrics()
        .start()
        .await;
    let mut client = server.client().await;
    // Read first: the read checks the log itself if the background check
    // has not got there yet.
    let status = expect_code(client.read(request::read(damaged)).await, Code::DataLoss);
    assert!(
        status.message().contains(damaged.as_str()) && status.message().contains("damaged"),
        "names the session and says what is wrong: {}",
        status.message()
    );
    let follow = client
        .follow(pb::FollowRequest {
            session_id: damaged.clone(),
            ..Default::default()
        })
        .await;
    expect_code(follow, Code::DataLoss);
    let answer = common::http::get(
        server.http_addr.expect("http"),
        &format!("/api/v1/sessions/{damaged}/entries"),
        &[],
    )
    .await;
    assert_eq!(answer.status, 500, "{}", answer.body);
    assert_eq!(answer.error_code(), "DATA_LOSS");
    // Listed and described from its record, like any session.
    assert_eq!(get_session(&mut client, damaged).await.last_seq, 301);

    for id in healthy {
        let entries = read_all(&mut client, id).await;
        assert_eq!(seqs(&entries), (1..=301).collect::<Vec<_>>(), "{id}");
    }
    let (first, _) = append(&mut client, active, &["after the restart"]).await;
    assert_eq!(first, 301);
    assert_eq!(read_all(&mut client, active).await.len(), 301);

    wait_log_check(&server).await;
    let metrics = server.metrics_addr.expect("metrics");
    assert_eq!(
        metric(metrics, "sessionlog_store_damaged_sessions").await,
        1.0
    );
    // Deleting it is how an operator clears it.
    client
        .delete_session(request::delete(damaged, false))
        .await
        .expect("a damaged session can be deleted");
    assert_eq!(
        metric(metrics, "sessionlog_store_damaged_sessions").await,
        0.0
    );
    drop(client);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_racing_the_background_check_get_every_entry() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ids = fill(dir.path(), 120, 2, 0).await;
    let server = TestServer::builder()
        .data_dir(dir.path())
        .fsync(FsyncPolicy::Always)
        .start()
        .await;
    // The check walks the sessions in id order; reads go the other way,
    // several at once, so they meet it somewhere in the middle.
    let mut reads = tokio::task::JoinSet::new();
    for (n, id) in ids.iter().rev().enumerate() {
        let mut client: Client = server.client().await;
        let id = id.clone();
        reads.spawn(async move {
            let entries = if n % 3 == 0 {
                follow_to_end(&mut client, &id).await
            } else {
                read_all(&mut client, &id).await
            };
            (id, entries)
        });
        if reads.len() >= 8
            && let Some(done) = reads.join_next().await
        {
            check_whole(done.expect("read task"));
        }
    }
    while let Some(done) = reads.join_next().await {
        check_whole(done.expect("read task"));
    }
    wait_log_check(&server).await;
    assert_eq!(server.sessions.damaged_count(), 0);
    server.shutdown().await;
}

/// Every entry a `Follow` of an ended session delivers before `ended`.
async fn follow_to_end(client: &mut Client, session_id: &str) -> Vec<pb::LogEntry> {
    use pb::follow_response::Event;
    let mut events = common::follow::follow(client, common::follow::request(session_id, 0)).await;
    let mut entries = Vec::new();
    loop {
        match common::follow::next_event(&mut events).await {
            Event::Batch(batch) => entries.extend(batch.entries),
            Event::CaughtUp(_) => {}
            Event::Ended(_) => return entries,
            other => panic!("unexpected event: {other:?}"),
        }
    }
}

fn check_whole((id, entries): (String, Vec<pb::LogEntry>)) {
    assert_eq!(seqs(&entries), (1..=201).collect::<Vec<_>>(), "{id}");
    assert_eq!(
        entries.last().map(|entry| entry.message.as_str()),
        Some("Session ended: done"),
        "{id}"
    );
}
