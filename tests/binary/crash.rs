//! Crash safety of the real binary: writers append batches with batch ids
//! while the server is killed with SIGKILL at random moments, over and over.
//! After each restart, under `--fsync always`, every acknowledged batch is
//! there with its seqs and content; under any mode, seqs are exactly
//! `1..=last_seq` and no batch is partly stored; retrying a batch that was
//! in flight either finds it (same seqs) or stores it once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use sessionlog::client::{Client, Connection};
use sessionlog::pb;
use tokio::process::{Child, Command};
use tokio::sync::watch;

use crate::common::process;

const BIN: &str = env!("CARGO_BIN_EXE_sessionlog");
const SESSIONS: [&str; 2] = ["crash-a", "crash-b"];
const WRITERS: usize = 4;

struct ServerProcess {
    child: Child,
    socket: PathBuf,
}

impl ServerProcess {
    async fn start(dir: &Path, fsync: &str) -> Self {
        let socket = dir.join("sessionlog.sock");
        let mut child = Command::new(BIN)
            .args(["serve", "--fsync", fsync, "--data-dir"])
            .arg(dir.join("data"))
            .arg("--listen")
            .arg(format!("unix:{}", socket.display()))
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn serve");
        process::wait_until_serving(&mut child).await;
        Self { child, socket }
    }

    async fn client(&self) -> Client {
        Connection::connect(&format!("unix:{}", self.socket.display()), None)
            .await
            .expect("connect")
            .sessions()
    }

    /// SIGTERM: a clean stop, which flushes.
    async fn stop(mut self) {
        process::sigterm(&self.child);
        let status = self.child.wait().await.expect("reaped");
        assert!(status.success(), "clean stop: {status}");
    }

    async fn kill(mut self) {
        self.child.start_kill().expect("SIGKILL");
        self.child.wait().await.expect("reaped");
    }
}

/// A batch as sent: its id, session and messages.
#[derive(Debug, Clone)]
struct SentBatch {
    session_id: String,
    messages: Vec<String>,
}

#[derive(Debug, Default, Clone)]
struct Ledger {
    sent: HashMap<String, SentBatch>,
    acked: HashMap<String, (u64, u64)>,
    in_flight: Vec<String>,
}

fn request(batch_id: &str, batch: &SentBatch) -> pb::AppendRequest {
    pb::AppendRequest {
        session_id: batch.session_id.clone(),
        entries: batch
            .messages
            .iter()
            .map(|message| pb::LogEntry {
                level: pb::Level::Info.into(),
                logger: "crash".into(),
                message: message.clone(),
                ..Default::default()
            })
            .collect(),
        expected_last_seq: None,
        batch_id: batch_id.to_owned(),
    }
}

/// Appends until the server dies; records what was sent and acknowledged.
async fn write_until_killed(
    mut client: Client,
    cycle: usize,
    writer: usize,
    ledger: Arc<Mutex<Ledger>>,
    acked_tx: Arc<watch::Sender<usize>>,
) {
    for number in 0.. {
        let batch_id = format!("c{cycle}-w{writer}-b{number}");
        let (session, size) = {
            let mut rng = rand::rng();
            (
                SESSIONS[rng.random_range(0..SESSIONS.len())],
                rng.random_range(1..=20),
            )
        };
        let batch = SentBatch {
            session_id: session.to_owned(),
            messages: (0..size).map(|i| format!("{batch_id}:{i}")).collect(),
        };
        ledger
            .lock()
            .expect("ledger")
            .sent
            .insert(batch_id.clone(), batch.clone());
        match client.append(request(&batch_id, &batch)).await {
            Ok(response) => {
                let response = response.into_inner();
                ledger
                    .lock()
                    .expect("ledger")
                    .acked
                    .insert(batch_id, (response.first_seq, response.last_seq));
                acked_tx.send_modify(|count| *count += 1);
            }
            Err(_) => {
                ledger.lock().expect("ledger").in_flight.push(batch_id);
                return;
            }
        }
    }
}

async fn read_log(client: &mut Client, session_id: &str) -> Vec<pb::LogEntry> {
    let mut entries = Vec::new();
    let mut after_seq = 0;
    loop {
        let page = client
            .read(pb::ReadRequest {
                session_id: session_id.to_owned(),
                after_seq,
                limit: 10_000,
                ..Default::default()
            })
            .await
            .expect("read")
            .into_inner();
        let next = page.next_cursor;
        entries.extend(page.entries);
        if next >= page.last_seq {
            return entries;
        }
        after_seq = next;
    }
}

/// Checks the invariants after a restart; returns how many acknowledged
/// batches were verified.
async fn verify(client: &mut Client, ledger: &Ledger, every_ack_durable: bool) -> usize {
    let mut found: HashMap<String, (u64, u64)> = HashMap::new();
    for session_id in SESSIONS {
        let entries = read_log(client, session_id).await;
        let seqs: Vec<u64> = entries.iter().map(|entry| entry.seq).collect();
        let expected: Vec<u64> = (1..=u64::try_from(entries.len()).expect("fits")).collect();
        assert_eq!(
            seqs, expected,
            "{session_id}: seqs are exactly 1..=last_seq"
        );
        let mut index = 0;
        while index < entries.len() {
            let (batch_id, _) = entries[index]
                .message
                .split_once(':')
                .expect("a batch message");
            let batch = &ledger.sent[batch_id];
            let stored: Vec<&str> = entries[index..]
                .iter()
                .take(batch.messages.len())
                .map(|entry| entry.message.as_str())
                .collect();
            assert_eq!(
                stored, batch.messages,
                "batch {batch_id} is whole and in order"
            );
            let first = entries[index].seq;
            let last = first + u64::try_from(batch.messages.len()).expect("fits") - 1;
            assert!(
                found.insert(batch_id.to_owned(), (first, last)).is_none(),
                "{batch_id} stored twice"
            );
            index += batch.messages.len();
        }
    }
    let mut verified = 0;
    for (batch_id, seqs) in &ledger.acked {
        match found.get(batch_id) {
            Some(stored) => {
                assert_eq!(stored, seqs, "{batch_id} kept its acknowledged seqs");
                verified += 1;
            }
            None => assert!(!every_ack_durable, "acknowledged batch {batch_id} was lost"),
        }
    }
    verified
}

/// Retries every in-flight batch: found with its seqs, or stored once now.
/// Returns the seqs each got, to count as acknowledged.
async fn retry_in_flight(client: &mut Client, ledger: &Ledger) -> Vec<(String, (u64, u64))> {
    let mut retried = Vec::new();
    for batch_id in &ledger.in_flight {
        let batch = &ledger.sent[batch_id];
        let response = client
            .append(request(batch_id, batch))
            .await
            .expect("retry")
            .into_inner();
        let count = u64::try_from(batch.messages.len()).expect("fits");
        assert_eq!(response.last_seq - response.first_seq + 1, count);
        retried.push((batch_id.clone(), (response.first_seq, response.last_seq)));
    }
    retried
}

async fn crash_cycles(fsync: &str, cycles: usize) -> usize {
    let dir = tempfile::tempdir().expect("temp dir");
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut verified = 0;
    {
        let server = ServerProcess::start(dir.path(), fsync).await;
        let mut client = server.client().await;
        for session_id in SESSIONS {
            client
                .start_session(pb::StartSessionRequest {
                    session_id: session_id.to_owned(),
                    ..Default::default()
                })
                .await
                .expect("start");
        }
        server.stop().await;
    }
    for cycle in 0..cycles {
        let server = ServerProcess::start(dir.path(), fsync).await;
        let mut client = server.client().await;
        let snapshot = ledger.lock().expect("ledger").clone();
        verified = verify(&mut client, &snapshot, fsync == "always").await;
        let retried = retry_in_flight(&mut client, &snapshot).await;
        {
            let mut ledger = ledger.lock().expect("ledger");
            ledger.in_flight.clear();
            ledger.acked.extend(retried);
        }
        let (acked_tx, mut acked_rx) = watch::channel(0usize);
        let acked_tx = Arc::new(acked_tx);
        let kill_after = rand::rng().random_range(5..60);
        let mut writers = tokio::task::JoinSet::new();
        for writer in 0..WRITERS {
            let client = server.client().await;
            writers.spawn(write_until_killed(
                client,
                cycle,
                writer,
                ledger.clone(),
                acked_tx.clone(),
            ));
        }
        // The moment of the kill: after a random number of acknowledgements.
        acked_rx
            .wait_for(|acked| *acked >= kill_after)
            .await
            .expect("writers alive");
        server.kill().await;
        tokio::time::timeout(Duration::from_secs(30), async {
            while writers.join_next().await.is_some() {}
        })
        .await
        .expect("writers notice the crash");
    }
    let server = ServerProcess::start(dir.path(), fsync).await;
    let mut client = server.client().await;
    let snapshot = ledger.lock().expect("ledger").clone();
    verified = verified.max(verify(&mut client, &snapshot, fsync == "always").await);
    server.kill().await;
    verified
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
    let server = ServerProcess::start(dir.path(), "always").await;
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

    let server = ServerProcess::start(dir.path(), "always").await;
    let mut client = server.client().await;
    assert_eq!(
        append_messages(&mut client, &id, &numbered(11..=15)).await,
        (11, 15)
    );
    drop(client);
    server.kill().await;

    let server = ServerProcess::start(dir.path(), "always").await;
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
