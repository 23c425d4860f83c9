//! Crash cycles over the real binary, shared by the kill -9 and the power
//! cut tests: a server process on a chosen data dir and socket, writers
//! that append batches until the server dies (with batch ids, but half the
//! single small entries without, which the server stores as one sled key
//! instead of a batch), a ledger of
//! what was sent and acknowledged, and the checks after a restart (seqs
//! exactly `1..=last_seq`, every stored batch whole, in order and once,
//! acknowledged batches with their seqs, in-flight batches retried once).

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
use tokio::task::JoinSet;

use super::process;

const BIN: &str = env!("CARGO_BIN_EXE_sessionlog");
pub(crate) const SESSIONS: [&str; 2] = ["crash-a", "crash-b"];
/// Far below the default, so the writers' active sessions are sealed over
/// and over between the kills (a few KiB per cycle).
const SEAL_ACTIVE_AFTER: &str = "4KiB";

pub(crate) struct ServerProcess {
    child: Child,
    socket: PathBuf,
}

impl ServerProcess {
    /// `sessionlog serve` on `data_dir`, listening on the unix socket
    /// `socket`; returns once it serves.
    pub(crate) async fn start(data_dir: &Path, socket: &Path, fsync: &str) -> Self {
        Self::start_with(
            data_dir,
            socket,
            &["--fsync", fsync, "--seal-active-after", SEAL_ACTIVE_AFTER],
        )
        .await
    }

    /// `sessionlog serve` with `args` besides its data dir and socket.
    pub(crate) async fn start_with(data_dir: &Path, socket: &Path, args: &[&str]) -> Self {
        let mut child = Command::new(BIN)
            .arg("serve")
            .args(args)
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--listen")
            .arg(format!("unix:{}", socket.display()))
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn serve");
        process::wait_until_serving(&mut child).await;
        Self {
            child,
            socket: socket.to_owned(),
        }
    }

    pub(crate) async fn client(&self) -> Client {
        Connection::connect(&format!("unix:{}", self.socket.display()), None)
            .await
            .expect("connect")
            .sessions()
    }

    /// SIGTERM: a clean stop, which flushes.
    pub(crate) async fn stop(mut self) {
        process::sigterm(&self.child);
        let status = self.child.wait().await.expect("reaped");
        assert!(status.success(), "clean stop: {status}");
    }

    /// SIGKILL, and waits until the process is gone.
    pub(crate) async fn kill(mut self) {
        self.child.start_kill().expect("SIGKILL");
        self.child.wait().await.expect("reaped");
    }
}

/// A batch as sent: its session and messages. Each message starts with
/// `<batch id>:`.
#[derive(Debug, Clone)]
pub(crate) struct SentBatch {
    session_id: String,
    messages: Vec<String>,
    /// Sent with its batch id; half the single small entries are sent
    /// without, which the server stores as one sled key (no batch).
    with_id: bool,
}

#[derive(Debug, Default, Clone)]
pub(crate) struct Ledger {
    sent: HashMap<String, SentBatch>,
    /// Acknowledged batches and the seqs they got.
    pub(crate) acked: HashMap<String, (u64, u64)>,
    /// Batches whose append failed when the server died.
    pub(crate) in_flight: Vec<String>,
}

/// What the writers send.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Workload {
    /// Batches have 1 to this many entries.
    pub(crate) max_batch: usize,
    /// One batch in this many (at random) is a single entry of about
    /// 300 KiB, which sled stores in a blob file of its own.
    pub(crate) large_one_in: Option<u32>,
}

const LARGE_PADDING: usize = 300 << 10;

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
        batch_id: if batch.with_id {
            batch_id.to_owned()
        } else {
            String::new()
        },
    }
}

/// Appends until the server dies; records what was sent and acknowledged,
/// and counts acknowledgements on `acked_tx`.
async fn write_until_killed(
    mut client: Client,
    batch_prefix: String,
    workload: Workload,
    ledger: Arc<Mutex<Ledger>>,
    acked_tx: Arc<watch::Sender<usize>>,
) {
    for number in 0.. {
        let batch_id = format!("{batch_prefix}-b{number}");
        let batch = {
            let mut rng = rand::rng();
            let session_id = SESSIONS[rng.random_range(0..SESSIONS.len())].to_owned();
            let large = workload
                .large_one_in
                .is_some_and(|one_in| rng.random_ratio(1, one_in));
            let messages: Vec<String> = if large {
                vec![format!("{batch_id}:0:{}", "x".repeat(LARGE_PADDING))]
            } else {
                (0..rng.random_range(1..=workload.max_batch))
                    .map(|i| format!("{batch_id}:{i}"))
                    .collect()
            };
            let with_id = large || messages.len() > 1 || rng.random_bool(0.5);
            SentBatch {
                session_id,
                messages,
                with_id,
            }
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

pub(crate) async fn read_log(client: &mut Client, session_id: &str) -> Vec<pb::LogEntry> {
    let mut entries = Vec::new();
    let mut after_seq = 0;
    loop {
        let page = client
            .read(pb::ReadRequest {
                session_id: session_id.to_owned(),
                after_seq,
                limit: 10,
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

/// What a restart kept of the acknowledged batches.
#[derive(Debug)]
pub(crate) struct Verified {
    /// Acknowledged batches found with their seqs.
    pub(crate) found: usize,
    /// Acknowledged batches missing (only when not every ack must be durable).
    pub(crate) lost: Vec<String>,
    /// Every batch found, with its seqs.
    stored: HashMap<String, (u64, u64)>,
}

/// Checks the invariants after a restart. With `every_ack_durable`, a
/// missing acknowledged batch fails the test.
pub(crate) async fn verify(
    client: &mut Client,
    ledger: &Ledger,
    every_ack_durable: bool,
) -> Verified {
    let mut stored_batches: HashMap<String, (u64, u64)> = HashMap::new();
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
            assert!(
                stored == batch.messages,
                "batch {batch_id} is whole and in order"
            );
            let first = entries[index].seq;
            let last = first + u64::try_from(batch.messages.len()).expect("fits") - 1;
            assert!(
                stored_batches
                    .insert(batch_id.to_owned(), (first, last))
                    .is_none(),
                "{batch_id} stored twice"
            );
            index += batch.messages.len();
        }
    }
    let mut verified = Verified {
        found: 0,
        lost: Vec::new(),
        stored: stored_batches.clone(),
    };
    for (batch_id, seqs) in &ledger.acked {
        match stored_batches.get(batch_id) {
            Some(stored) => {
                assert_eq!(stored, seqs, "{batch_id} kept its acknowledged seqs");
                verified.found += 1;
            }
            None => {
                assert!(!every_ack_durable, "acknowledged batch {batch_id} was lost");
                verified.lost.push(batch_id.clone());
            }
        }
    }
    verified
}

/// Retries every in-flight batch: found with its seqs, or stored once now.
/// One sent without a batch id is only sent again if it is not stored (the
/// server could not tell a retry from a new batch). Returns the seqs each
/// got, to count as acknowledged.
pub(crate) async fn retry_in_flight(
    client: &mut Client,
    ledger: &Ledger,
    verified: &Verified,
) -> Vec<(String, (u64, u64))> {
    let mut retried = Vec::new();
    for batch_id in &ledger.in_flight {
        let batch = &ledger.sent[batch_id];
        if let (false, Some(seqs)) = (batch.with_id, verified.stored.get(batch_id)) {
            retried.push((batch_id.clone(), *seqs));
            continue;
        }
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

/// Starts the sessions the writers append to, then stops cleanly.
pub(crate) async fn start_sessions(data_dir: &Path, socket: &Path, fsync: &str) {
    let server = ServerProcess::start(data_dir, socket, fsync).await;
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
    drop(client);
    server.stop().await;
}

/// After a restart: verifies the store against the ledger, retries the
/// batches that were in flight, and forgets the acknowledged batches that
/// were lost (so a later check does not count them again).
pub(crate) async fn check_restart(
    server: &ServerProcess,
    ledger: &Mutex<Ledger>,
    every_ack_durable: bool,
) -> Verified {
    let mut client = server.client().await;
    let snapshot = ledger.lock().expect("ledger").clone();
    let verified = verify(&mut client, &snapshot, every_ack_durable).await;
    let retried = retry_in_flight(&mut client, &snapshot, &verified).await;
    let mut ledger = ledger.lock().expect("ledger");
    ledger.in_flight.clear();
    for batch_id in &verified.lost {
        ledger.acked.remove(batch_id);
    }
    ledger.acked.extend(retried);
    verified
}

/// Starts `writers` writers on `server` and returns once `acks` appends
/// were acknowledged; the writers go on until the server dies.
pub(crate) async fn write_until_acked(
    server: &ServerProcess,
    batch_prefix: &str,
    writers: usize,
    workload: Workload,
    ledger: &Arc<Mutex<Ledger>>,
    acks: usize,
) -> JoinSet<()> {
    let (acked_tx, mut acked_rx) = watch::channel(0usize);
    let acked_tx = Arc::new(acked_tx);
    let mut set = JoinSet::new();
    for writer in 0..writers {
        let client = server.client().await;
        set.spawn(write_until_killed(
            client,
            format!("{batch_prefix}-w{writer}"),
            workload,
            ledger.clone(),
            acked_tx.clone(),
        ));
    }
    acked_rx
        .wait_for(|acked| *acked >= acks)
        .await
        .expect("writers alive");
    set
}

/// Waits for the writers to notice that the server died.
pub(crate) async fn join_writers(mut writers: JoinSet<()>) {
    tokio::time::timeout(Duration::from_secs(30), async {
        while writers.join_next().await.is_some() {}
    })
    .await
    .expect("writers notice the crash");
}
