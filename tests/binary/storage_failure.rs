//! A storage failure never wedges the real binary: with its open-file limit
//! lowered so sled cannot create a blob file, a large append fails with
//! UNAVAILABLE (within a bound, not a hang), calls that need no write still
//! answer, health turns NOT_SERVING, SIGTERM ends the process within the
//! grace period plus a bound (non-zero, with one line saying why), and every
//! acknowledged entry is there after a restart.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sessionlog::client::Connection;
use sessionlog::pb;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;

use crate::common::process;
use crate::common::{entry, http, read_all, start_session};

const BIN: &str = env!("CARGO_BIN_EXE_sessionlog");
/// A loopback address nothing listens on at the moment.
fn free_loopback_port() -> String {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a probe");
    probe.local_addr().expect("probe address").to_string()
}

/// The longest any one call may take here: a hang fails the test instead.
const CALL_BOUND: Duration = Duration::from_secs(20);
const GRACE: Duration = Duration::from_secs(2);

/// A running `sessionlog serve` whose stderr lines are kept.
struct Served {
    child: Child,
    socket: String,
    /// `--metrics-listen`, for `/healthz`.
    metrics: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Served {
    async fn start(dir: &Path) -> Self {
        let socket = format!("unix:{}", dir.join("sessionlog.sock").display());
        let metrics = free_loopback_port();
        let mut child = Command::new(BIN)
            .args(["serve", "--fsync", "always", "--shutdown-grace", "2s"])
            .args(["--metrics-listen", &metrics])
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(["--listen", &socket])
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn serve");
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        loop {
            let line = tokio::time::timeout(CALL_BOUND, lines.next_line())
                .await
                .expect("the server starts in time")
                .expect("stderr")
                .expect("the server is running");
            let serving = line.contains("serving");
            log.lock().expect("log").push(line);
            if serving {
                break;
            }
        }
        let kept = log.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                kept.lock().expect("log").push(line);
            }
        });
        Self {
            child,
            socket,
            metrics,
            log,
        }
    }

    async fn connect(&self) -> Connection {
        Connection::connect(&self.socket, None)
            .await
            .expect("connect")
    }

    fn pid(&self) -> rustix::process::Pid {
        let pid = self.child.id().expect("running");
        rustix::process::Pid::from_raw(i32::try_from(pid).expect("fits")).expect("non-zero")
    }

    fn lines(&self) -> Vec<String> {
        self.log.lock().expect("log").clone()
    }
}

/// The lowest descriptor number the server has free: with the limit set
/// to it, every new descriptor fails with EMFILE (descriptors above it, if
/// any, stay open and usable).
fn lowest_free_descriptor(pid: rustix::process::Pid) -> u64 {
    let open: std::collections::HashSet<u64> =
        std::fs::read_dir(format!("/proc/{}/fd", pid.as_raw_nonzero()))
            .expect("the server's fds")
            .filter_map(|fd| fd.ok()?.file_name().to_str()?.parse().ok())
            .collect();
    (0..).find(|fd| !open.contains(fd)).expect("a free number")
}

/// Sets the server's soft open-file limit; the hard one stays as the
/// server inherited it from this process, so the soft one can go back up
/// without privileges.
fn set_open_file_limit(pid: rustix::process::Pid, limit: Option<u64>) {
    use rustix::process::{Resource, Rlimit, getrlimit, prlimit};
    let inherited = getrlimit(Resource::Nofile);
    prlimit(
        Some(pid),
        Resource::Nofile,
        Rlimit {
            current: limit.or(inherited.current),
            maximum: inherited.maximum,
        },
    )
    .expect("prlimit");
}

async fn bounded<T>(what: &str, call: impl Future<Output = T>) -> T {
    tokio::time::timeout(CALL_BOUND, call)
        .await
        .unwrap_or_else(|_| panic!("{what} did not answer within {CALL_BOUND:?}: a hang"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_descriptors_fails_writes_without_wedging_the_server() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = Served::start(dir.path()).await;
    let channel = server.connect().await.channel();
    let mut client = pb::session_log_client::SessionLogClient::new(channel.clone());
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let id = start_session(&mut client, "descriptors").await;
    let other = start_session(&mut client, "bystander").await;
    let mut acknowledged = Vec::new();
    for batch in 0..5 {
        let messages: Vec<String> = (0..20).map(|i| format!("b{batch} e{i}")).collect();
        let response = client
            .append(pb::AppendRequest {
                session_id: id.clone(),
                entries: messages.iter().map(entry).collect(),
                ..Default::default()
            })
            .await
            .expect("append before the limit")
            .into_inner();
        assert_eq!(response.last_seq, (batch + 1) * 20);
        acknowledged.extend(messages);
    }

    // From here the server cannot open another file: sled's next blob file
    // (a value over ~128 KiB) fails with EMFILE.
    let pid = server.pid();
    let limit = lowest_free_descriptor(pid);
    set_open_file_limit(pid, Some(limit));
    let large = pb::AppendRequest {
        session_id: id.clone(),
        entries: vec![entry("x".repeat(300_000))],
        ..Default::default()
    };
    let started = Instant::now();
    let failed = bounded("the large append", client.append(large))
        .await
        .expect_err("no blob file can be created");
    println!(
        "large append with {limit} descriptors: {:?} after {:?}: {}",
        failed.code(),
        started.elapsed(),
        failed.message()
    );
    assert_eq!(failed.code(), Code::Unavailable, "{failed:?}");

    // Later writes are refused at once, without touching sled; reads and
    // in-memory calls still answer; health says NOT_SERVING.
    let small = bounded(
        "a small append",
        client.append(pb::AppendRequest {
            session_id: other.clone(),
            entries: vec![entry("after")],
            ..Default::default()
        }),
    )
    .await
    .expect_err("the store takes no writes");
    assert_eq!(small.code(), Code::Unavailable, "{small:?}");
    assert!(small.message().contains("restart"), "{}", small.message());
    let got = bounded(
        "GetSession",
        client.get_session(pb::GetSessionRequest {
            session_id: id.clone(),
        }),
    )
    .await
    .expect("in-memory calls answer")
    .into_inner();
    assert_eq!(got.last_seq, 100, "the failed batch is not counted");
    let listed = bounded(
        "ListSessions",
        client.list_sessions(pb::ListSessionsRequest::default()),
    )
    .await
    .expect("list answers");
    assert_eq!(listed.into_inner().sessions.len(), 2);
    let status = bounded(
        "health",
        health.check(HealthCheckRequest {
            service: "sessionlog.v1.SessionLog".to_owned(),
        }),
    )
    .await
    .expect("health answers")
    .into_inner()
    .status();
    assert_eq!(status, ServingStatus::NotServing);

    // The cause going away does not revive sled 0.34 in-process; SIGTERM
    // still ends the process, within the grace period plus a bound.
    set_open_file_limit(pid, None);
    // The metrics listener's probe agrees with gRPC health.
    let addr = server.metrics.parse().expect("the metrics address");
    let answer = bounded("/healthz", http::get(addr, "/healthz", &[])).await;
    let (code, body) = (answer.status, answer.body);
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("the store failed"), "{body}");
    let stopping = Instant::now();
    process::sigterm(&server.child);
    let exit = tokio::time::timeout(GRACE + CALL_BOUND, server.child.wait())
        .await
        .expect("SIGTERM ends the process: it did not exit in time")
        .expect("reaped");
    println!("exited after SIGTERM in {:?}: {exit}", stopping.elapsed());
    assert!(!exit.success(), "a store that failed exits non-zero");
    // Give the stderr reader a moment to take the last lines (it reads
    // until the pipe closes, which it now has).
    tokio::time::sleep(Duration::from_millis(100)).await;
    let lines = server.lines();
    let failures: Vec<&String> = lines
        .iter()
        .filter(|line| line.contains("the store failed:"))
        .collect();
    assert_eq!(
        failures.len(),
        1,
        "one line says the store failed: {lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|line| line.starts_with("error: ") && line.contains("final flush was skipped")),
        "{lines:#?}"
    );
    assert!(
        !lines.iter().any(|line| line.contains("panicked")),
        "{lines:#?}"
    );

    let server = Served::start(dir.path()).await;
    let channel = server.connect().await.channel();
    let mut client = pb::session_log_client::SessionLogClient::new(channel);
    let stored: Vec<String> = read_all(&mut client, &id)
        .await
        .into_iter()
        .map(|entry| entry.message)
        .collect();
    assert_eq!(
        stored, acknowledged,
        "every acknowledged entry, nothing else"
    );
    let appended = client
        .append(pb::AppendRequest {
            session_id: id.clone(),
            entries: vec![entry("y".repeat(300_000))],
            ..Default::default()
        })
        .await
        .expect("the large append works once descriptors are back")
        .into_inner();
    assert_eq!(appended.last_seq, 101);
}
