//! Damage is found before it is served: with one byte flipped in sled's
//! files (a handful of fixed positions), the real binary either serves
//! exactly what was written (or a consistent prefix sled recovered), with
//! an ended session whose log fails its check (after start-up) answering
//! DATA_LOSS that names it, or exits non-zero with one line saying the
//! store is damaged; never SERVING and then INTERNAL on reads of what it
//! listed, and never a panic's backtrace.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use sessionlog::pb;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::common::process;

const BIN: &str = env!("CARGO_BIN_EXE_sessionlog");
const BOUND: Duration = Duration::from_secs(30);

fn serve(dir: &Path) -> Child {
    Command::new(BIN)
        .args(["serve", "--fsync", "always", "--data-dir"])
        .arg(dir.join("data"))
        .arg("--listen")
        .arg(format!("unix:{}", dir.join("s.sock").display()))
        .env("RUST_LOG", "warn,sessionlog::server=info")
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn serve")
}

type Client = pb::session_log_client::SessionLogClient<tonic::transport::Channel>;

async fn client(dir: &Path) -> Client {
    let channel = sessionlog::client::Connection::connect(
        &format!("unix:{}", dir.join("s.sock").display()),
        None,
    )
    .await
    .expect("connect")
    .channel();
    Client::new(channel)
}

/// Serving, or exited with these stderr lines.
enum Started {
    Serving(Child),
    Exited(std::process::ExitStatus, Vec<String>),
}

async fn start(dir: &Path) -> Started {
    let mut child = serve(dir);
    let mut lines = BufReader::new(child.stderr.take().expect("piped")).lines();
    let mut seen = Vec::new();
    loop {
        let line = tokio::time::timeout(BOUND, lines.next_line())
            .await
            .expect("the server starts or exits in time")
            .expect("stderr");
        match line {
            Some(line) if line.contains("serving") => {
                tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
                return Started::Serving(child);
            }
            Some(line) => seen.push(line),
            None => {
                let status = tokio::time::timeout(BOUND, child.wait())
                    .await
                    .expect("exits")
                    .expect("reaped");
                return Started::Exited(status, seen);
            }
        }
    }
}

/// Every entry's message, by session, as the server reads them; a session
/// answered with DATA_LOSS (an ended one whose log failed its check) is
/// left out.
async fn read_everything(client: &mut Client) -> Vec<(String, Vec<String>)> {
    let listed = client
        .list_sessions(pb::ListSessionsRequest::default())
        .await
        .expect("list")
        .into_inner();
    let mut sessions = Vec::new();
    'sessions: for session in listed.sessions {
        let mut messages = Vec::new();
        let mut after_seq = 0;
        loop {
            let read = client
                .read(pb::ReadRequest {
                    session_id: session.id.clone(),
                    after_seq,
                    ..Default::default()
                })
                .await;
            let page = match read {
                Ok(page) => page.into_inner(),
                Err(status)
                    if status.code() == tonic::Code::DataLoss
                        && session.state() == pb::SessionState::Ended
                        && after_seq == 0 =>
                {
                    assert!(
                        status.message().contains(&session.id),
                        "DATA_LOSS names the session: {status:?}"
                    );
                    println!("session {} is damaged: {}", session.id, status.message());
                    continue 'sessions;
                }
                Err(status) => panic!(
                    "SERVING, then a read of listed session {} failed: {status:?}",
                    session.id
                ),
            };
            messages.extend(page.entries.iter().map(|entry| entry.message.clone()));
            if page.next_cursor == after_seq || page.entries.is_empty() {
                break;
            }
            after_seq = page.next_cursor;
        }
        assert_eq!(
            u64::try_from(messages.len()).expect("fits"),
            session.last_seq,
            "session {} lists {} entries and reads {}",
            session.id,
            session.last_seq,
            messages.len()
        );
        sessions.push((session.id, messages));
    }
    sessions
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("dir");
    for entry in std::fs::read_dir(from).expect("list") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_is_served_correctly_or_refused_in_one_line() {
    let pristine = tempfile::tempdir().expect("temp dir");
    let Started::Serving(mut child) = start(pristine.path()).await else {
        panic!("a new store starts");
    };
    let mut rpc = client(pristine.path()).await;
    for (n, app) in ["alpha", "beta", "gamma"].iter().enumerate() {
        let id = crate::common::start_session(&mut rpc, app).await;
        for batch in 0..4 {
            let messages: Vec<String> = (0..25)
                .map(|i| format!("{app} b{batch} e{i} {}", "p".repeat(40)))
                .collect();
            let refs: Vec<&str> = messages.iter().map(String::as_str).collect();
            crate::common::append(&mut rpc, &id, &refs).await;
        }
        if n == 0 {
            crate::common::end_session(&mut rpc, &id, "done").await;
        }
    }
    let written = read_everything(&mut rpc).await;
    process::sigterm(&child);
    assert!(child.wait().await.expect("reaped").success());

    let db_len = std::fs::metadata(pristine.path().join("data/db"))
        .expect("db")
        .len();
    let conf_len = std::fs::metadata(pristine.path().join("data/conf"))
        .expect("conf")
        .len();
    // Spread over the db file, and one in `conf`'s settings text.
    let mut flips: Vec<(&str, u64)> = (1..=6).map(|k| ("db", db_len * k / 7)).collect();
    flips.push(("conf", conf_len / 3));
    // Each also without the clean-shutdown file, as after a crash: then
    // only the per-session checks can tell.
    let cases = flips
        .iter()
        .flat_map(|&(file, offset)| [(file, offset, true), (file, offset, false)]);
    let (mut served, mut refused) = (0, 0);
    for (file, offset, keep_mark) in cases {
        let damaged = tempfile::tempdir().expect("temp dir");
        copy_dir(&pristine.path().join("data"), &damaged.path().join("data"));
        let path = damaged.path().join("data").join(file);
        let mut bytes = std::fs::read(&path).expect("read");
        let at = usize::try_from(offset).expect("fits");
        bytes[at] ^= 0x5a;
        std::fs::write(&path, &bytes).expect("write");
        if !keep_mark {
            std::fs::remove_file(damaged.path().join("data/clean-shutdown"))
                .expect("a clean stop left it");
        }
        let file = if keep_mark {
            file.to_owned()
        } else {
            format!("{file} (no mark file)")
        };
        match start(damaged.path()).await {
            Started::Serving(mut child) => {
                let mut rpc = client(damaged.path()).await;
                let read = read_everything(&mut rpc).await;
                for (id, messages) in &read {
                    let original = written
                        .iter()
                        .find(|(written_id, _)| written_id == id)
                        .unwrap_or_else(|| panic!("{file}@{offset}: unknown session {id}"));
                    assert!(
                        original.1.starts_with(messages),
                        "{file}@{offset}: session {id} serves entries that were not written"
                    );
                }
                println!(
                    "{file}@{offset}: served {} of {} sessions intact",
                    read.len(),
                    written.len()
                );
                served += 1;
                process::sigterm(&child);
                let _ = tokio::time::timeout(BOUND, child.wait()).await;
            }
            Started::Exited(status, lines) => {
                assert!(!status.success(), "{file}@{offset}: {lines:#?}");
                let errors: Vec<&String> = lines
                    .iter()
                    .filter(|line| line.starts_with("error:"))
                    .collect();
                assert_eq!(
                    errors.len(),
                    1,
                    "{file}@{offset}: one error line: {lines:#?}"
                );
                assert!(
                    !lines
                        .iter()
                        .any(|line| line.contains("panicked") || line.contains("RUST_BACKTRACE")),
                    "{file}@{offset}: no panic output: {lines:#?}"
                );
                assert!(
                    !errors[0].contains("earlier than 0.29"),
                    "{file}@{offset}: not a misleading version message: {}",
                    errors[0]
                );
                println!("{file}@{offset}: refused: {}", errors[0]);
                refused += 1;
            }
        }
    }
    println!("{served} served, {refused} refused");
}
