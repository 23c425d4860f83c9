//! Crash safety of the real binary: writers append batches with batch ids
//! while the server is killed with SIGKILL at random moments, over and over.
//! After each restart, under `--fsync always`, every acknowledged batch is
//! there with its seqs and content; under any mode, seqs are exactly
//! `1..=last_seq` and no batch is partly stored; retrying a batch that was
//! in flight either finds it (same seqs) or stores it once. The writers'
//! sessions are sealed as they grow, and each cycle also ends a session of
//! a few thousand entries while the writers go on, so its sealing is often
//! what the kill cuts: after every restart each such session ended under
//! `--fsync always` holds every entry once, in order.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rand::Rng;
use sessionlog::client::Client;
use sessionlog::pb;

use crate::common::ledger::{
    self, Ledger, ServerProcess, Workload, check_restart, join_writers, read_log, write_until_acked,
};

const WRITERS: usize = 4;
const WORKLOAD: Workload = Workload {
    max_batch: 20,
    large_one_in: None,
};

impl ServerProcess {
    /// The server on `dir/data`, listening on `dir/sessionlog.sock`.
    async fn start_in(dir: &Path, fsync: &str) -> Self {
        Self::start(&dir.join("data"), &dir.join("sessionlog.sock"), fsync).await
    }
}

/// Entries in each session a cycle ends (a few hundred KiB).
const ENDED_ENTRIES: u64 = 3_000;

/// Starts a session, appends `ENDED_ENTRIES` in batches of 500 and ends it;
/// fails when the server dies first.
async fn write_and_end(mut client: Client, session_id: String) -> Result<(), tonic::Status> {
    client
        .start_session(pb::StartSessionRequest {
            session_id: session_id.clone(),
            ..Default::default()
        })
        .await?;
    for first in (1..=ENDED_ENTRIES).step_by(500) {
        let entries = (first..first + 500)
            .map(|n| pb::LogEntry {
                message: format!(
                    "{session_id} entry {n}: served GET /items/{} in {} ms",
                    n % 97,
                    n % 13
                ),
                ..Default::default()
            })
            .collect();
        client
            .append(pb::AppendRequest {
                session_id: session_id.clone(),
                entries,
                ..Default::default()
            })
            .await?;
    }
    client
        .end_session(pb::EndSessionRequest {
            session_id,
            reason: "done".to_owned(),
        })
        .await?;
    Ok(())
}

/// Every ended session holds its entries, then the end entry, once each.
async fn check_ended(client: &mut Client, ended: &[String]) {
    for session_id in ended {
        let mut seqs = Vec::new();
        let mut after_seq = 0;
        loop {
            let page = client
                .read(pb::ReadRequest {
                    session_id: session_id.clone(),
                    after_seq,
                    limit: 700,
                    ..Default::default()
                })
                .await
                .expect("read an ended session")
                .into_inner();
            for entry in &page.entries {
                if entry.seq <= ENDED_ENTRIES {
                    assert_eq!(
                        entry.message.split(':').next(),
                        Some(format!("{session_id} entry {}", entry.seq).as_str())
                    );
                }
            }
            seqs.extend(page.entries.iter().map(|entry| entry.seq));
            if page.next_cursor >= page.last_seq {
                break;
            }
            after_seq = page.next_cursor;
        }
        assert_eq!(
            seqs,
            (1..=ENDED_ENTRIES + 1).collect::<Vec<_>>(),
            "{session_id}: every entry once, in order, then the end entry"
        );
    }
}

async fn crash_cycles(fsync: &str, cycles: usize) -> usize {
    let dir = tempfile::tempdir().expect("temp dir");
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let every_ack_durable = fsync == "always";
    let mut ended: Vec<String> = Vec::new();
    ledger::start_sessions(
        &dir.path().join("data"),
        &dir.path().join("sessionlog.sock"),
        fsync,
    )
    .await;
    for cycle in 0..cycles {
        let server = ServerProcess::start_in(dir.path(), fsync).await;
        check_restart(&server, &ledger, every_ack_durable).await;
        if every_ack_durable {
            check_ended(&mut server.client().await, &ended).await;
        }
        // Ended (and so sealed) before the kill, or not: only a session
        // whose end was acknowledged is checked.
        let ending = tokio::spawn(write_and_end(
            server.client().await,
            format!("ended-{cycle}"),
        ));
        // The moment of the kill: after a random number of acknowledgements.
        let kill_after = rand::rng().random_range(5..60);
        let writers = write_until_acked(
            &server,
            &format!("c{cycle}"),
            WRITERS,
            WORKLOAD,
            &ledger,
            kill_after,
        )
        .await;
        // Half the time the kill waits for the end, so it lands while
        // that session is being sealed; else it may come before the end.
        if rand::rng().random_bool(0.5) {
            let ended_now = ending.await.expect("the ending task");
            assert!(
                ended_now.is_ok(),
                "the ended session's writes: {ended_now:?}"
            );
            ended.push(format!("ended-{cycle}"));
            server.kill().await;
        } else {
            server.kill().await;
            // Its calls fail or finish: either way it is not checked.
            let _ = ending.await;
        }
        join_writers(writers).await;
    }
    let server = ServerProcess::start_in(dir.path(), fsync).await;
    let verified = check_restart(&server, &ledger, every_ack_durable).await;
    if every_ack_durable {
        check_ended(&mut server.client().await, &ended).await;
    }
    server.kill().await;
    verified.found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_batches_survive_kill_9_under_fsync_always() {
    let verified = crash_cycles("always", 20).await;
    println!("20 kill -9 cycles: {verified} acknowledged batches verified after the last restart");
    assert!(
        verified > 100,
        "the test acknowledged too little to mean anything: {verified}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_fsync_interval_never_leaves_a_gap_or_partial_batch() {
    let verified = crash_cycles("interval", 5).await;
    println!("5 kill -9 cycles under interval: {verified} acknowledged batches found");
}

async fn append_messages(client: &mut Client, session_id: &str, messages: &[String]) -> (u64, u64) {
    let response = client
        .append(pb::AppendRequest {
            session_id: session_id.to_owned(),
            entries: messages
                .iter()
                .map(|message| pb::LogEntry {
                    message: message.clone(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
        .await
        .expect("append")
        .into_inner();
    (response.first_seq, response.last_seq)
}

fn numbered(range: std::ops::RangeInclusive<u64>) -> Vec<String> {
    range.map(|n| format!("entry {n}")).collect()
}

/// A clean stop saves the active sessions' counters for the next start-up.
/// Those must not outlive that start-up: here the server appends after it
/// and is then killed, and the start after the kill still counts those
/// appends (trusting the saved counters would reuse seqs 11..=15).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_saved_at_a_clean_stop_are_not_trusted_after_a_later_crash() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = ServerProcess::start_in(dir.path(), "always").await;
    let mut client = server.client().await;
    let id = client
        .start_session(pb::StartSessionRequest {
            session_id: "saved-counters".to_owned(),
            app_name: "crash".to_owned(),
            ..Default::default()
        })
        .await
        .expect("start")
        .into_inner()
        .id;
    assert_eq!(
        append_messages(&mut client, &id, &numbered(1..=10)).await,
        (1, 10)
    );
    drop(client);
    server.stop().await;

    let server = ServerProcess::start_in(dir.path(), "always").await;
    let mut client = server.client().await;
    assert_eq!(
        append_messages(&mut client, &id, &numbered(11..=15)).await,
        (11, 15)
    );
    drop(client);
    server.kill().await;

    let server = ServerProcess::start_in(dir.path(), "always").await;
    let mut client = server.client().await;
    assert_eq!(
        append_messages(&mut client, &id, &numbered(16..=16)).await,
        (16, 16)
    );
    let entries = read_log(&mut client, &id).await;
    let seqs: Vec<u64> = entries.iter().map(|entry| entry.seq).collect();
    assert_eq!(seqs, (1..=16).collect::<Vec<_>>());
    let messages: Vec<String> = entries.into_iter().map(|entry| entry.message).collect();
    assert_eq!(messages, numbered(1..=16));
    drop(client);
    server.stop().await;
}
