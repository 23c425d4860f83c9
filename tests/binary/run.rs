//! `sessionlog run -- CMD` through the real binary: output passed through
//! byte for byte, every line stored once and in order, the end reason and
//! exit code, signal forwarding, and a server that is not there.

use std::process::Stdio;
use std::time::Duration;

use futures::StreamExt as _;
use sessionlog::pb;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;

use crate::common::process;
use crate::common::{TestServer, get_session, read_all};

const BIN: &str = env!("CARGO_BIN_EXE_sessionlog");

struct Ran {
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: String,
}

fn command(server_url: &str, args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .arg("run")
        .args(args)
        .env("SESSIONLOG_SERVER", server_url)
        .env_remove("SESSIONLOG_SESSION_ID")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

async fn run(server_url: &str, args: &[&str]) -> Ran {
    let child = command(server_url, args).spawn().expect("spawn run");
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("run finishes")
        .expect("output");
    Ran {
        code: output.status.code(),
        stdout: output.stdout,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A shell script printing `lines` numbered stdout lines, with an
/// unterminated final piece, a CRLF line and every tenth line also on
/// stderr, then exiting 3.
fn chatty_script(lines: usize) -> String {
    format!(
        r#"i=1
while [ $i -le {lines} ]; do
  echo "out $i"
  if [ $((i % 10)) -eq 0 ]; then echo "err $i" >&2; fi
  i=$((i + 1))
done
printf 'crlf line\r\n'
printf 'no newline at the end'
exit 3"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_passes_through_and_every_line_is_stored_once_in_order() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let ran = run(
        &server.url(),
        &[
            "--id",
            "run-1",
            "--app",
            "chatty",
            "--",
            "sh",
            "-c",
            &chatty_script(2_000),
        ],
    )
    .await;
    assert_eq!(
        ran.code,
        Some(3),
        "the child's exit code; stderr: {}",
        ran.stderr
    );

    let mut expected_stdout = String::new();
    for i in 1..=2_000 {
        expected_stdout.push_str(&format!("out {i}\n"));
    }
    expected_stdout.push_str("crlf line\r\nno newline at the end");
    assert_eq!(
        String::from_utf8_lossy(&ran.stdout),
        expected_stdout,
        "stdout passes through unchanged"
    );
    let expected_stderr: String = (1..=200).map(|i| format!("err {}\n", i * 10)).collect();
    assert_eq!(
        ran.stderr, expected_stderr,
        "stderr passes through unchanged"
    );

    let session = get_session(&mut client, "run-1").await;
    assert_eq!(session.app_name, "chatty");
    assert_eq!(session.state, pb::SessionState::Ended as i32);
    assert_eq!(session.end_reason, "exit code 3");
    assert_ne!(session.client_pid, 0);

    let entries = read_all(&mut client, "run-1").await;
    let stdout: Vec<&str> = entries
        .iter()
        .filter(|e| e.logger == "stdout")
        .map(|e| e.message.as_str())
        .collect();
    let mut expected: Vec<String> = (1..=2_000).map(|i| format!("out {i}")).collect();
    expected.push("crlf line".into());
    expected.push("no newline at the end".into());
    assert_eq!(stdout, expected, "stdout lines, each once, in order");
    let stderr: Vec<&str> = entries
        .iter()
        .filter(|e| e.logger == "stderr")
        .map(|e| e.message.as_str())
        .collect();
    let expected: Vec<String> = (1..=200).map(|i| format!("err {}", i * 10)).collect();
    assert_eq!(stderr, expected, "stderr lines, each once, in order");
    assert!(
        entries
            .iter()
            .filter(|e| e.logger == "stdout")
            .all(|e| e.level == pb::Level::Info as i32)
    );
    assert!(
        entries
            .iter()
            .filter(|e| e.logger == "stderr")
            .all(|e| e.level == pb::Level::Error as i32)
    );
    assert_eq!(entries.len(), 2_000 + 2 + 200 + 1, "plus the end entry");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_arrive_while_the_command_still_runs_and_it_sees_its_session() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let release = dir.path().join("release");
    // The child prints its pid and session, then waits for the test to have
    // seen that line through Follow: only streaming gets it there.
    let script = format!(
        r#"echo "pid $$ session $SESSIONLOG_SESSION_ID"
while [ ! -e '{}' ]; do sleep 0.01; done
echo done"#,
        release.display()
    );
    let child = command(
        &server.url(),
        &["--id", "live-1", "--", "sh", "-c", &script],
    )
    .spawn()
    .expect("spawn run");
    let mut follow = loop {
        match client
            .follow(pb::FollowRequest {
                session_id: "live-1".into(),
                ..Default::default()
            })
            .await
        {
            Ok(stream) => break stream.into_inner(),
            // The session starts right after the child does.
            Err(status) if status.code() == tonic::Code::NotFound => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(status) => panic!("follow: {status}"),
        }
    };
    let first = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let response = follow.next().await.expect("open").expect("event");
            if let Some(pb::follow_response::Event::Batch(batch)) = response.event {
                break batch.entries[0].message.clone();
            }
        }
    })
    .await
    .expect("the first line arrives while the command runs");
    std::fs::write(&release, b"").expect("release the child");
    let output = child.wait_with_output().await.expect("run finishes");
    assert_eq!(output.status.code(), Some(0));
    let session = get_session(&mut client, "live-1").await;
    assert_eq!(first, format!("pid {} session live-1", session.client_pid));
    assert_eq!(session.end_reason, "exit code 0");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_command_ends_the_session_with_its_signal() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let ran = run(
        &server.url(),
        &["--id", "killed-1", "--", "sh", "-c", "echo bye; kill -9 $$"],
    )
    .await;
    assert_eq!(ran.code, Some(137), "128 + SIGKILL, as shells report it");
    let session = get_session(&mut client, "killed-1").await;
    assert_eq!(session.end_reason, "killed by signal 9");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_is_forwarded_to_the_command() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let script = r#"trap 'echo got TERM; exit 7' TERM
echo ready
while :; do sleep 0.01; done"#;
    let mut child = command(&server.url(), &["--id", "term-1", "--", "sh", "-c", script])
        .spawn()
        .expect("spawn run");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let ready = tokio::time::timeout(Duration::from_secs(10), stdout.next_line())
        .await
        .expect("the command starts")
        .expect("read")
        .expect("a line");
    assert_eq!(ready, "ready");
    process::sigterm(&child);
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("run exits after the command")
        .expect("status");
    assert_eq!(status.code(), Some(7));
    let rest = stdout.next_line().await.expect("read");
    assert_eq!(rest.as_deref(), Some("got TERM"));
    let session = get_session(&mut client, "term-1").await;
    assert_eq!(session.end_reason, "exit code 7");
    let messages: Vec<String> = read_all(&mut client, "term-1")
        .await
        .into_iter()
        .filter(|e| e.logger == "stdout")
        .map(|e| e.message)
        .collect();
    assert_eq!(messages, ["ready", "got TERM"]);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_server_the_command_runs_and_the_loss_is_reported() {
    let dir = tempfile::tempdir().expect("temp dir");
    let nowhere = format!("unix:{}", dir.path().join("no-server.sock").display());
    let mut child = command(
        &nowhere,
        &[
            "--buffer",
            "100",
            "--flush-timeout",
            "200ms",
            "--",
            "sh",
            "-c",
            &chatty_script(1_000),
        ],
    )
    .spawn()
    .expect("spawn run");
    let mut stdout = Vec::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_end(&mut stdout)
        .await
        .expect("stdout");
    let output = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("run finishes")
        .expect("output");
    assert_eq!(output.status.code(), Some(3), "the child's code, not ours");
    let text = String::from_utf8_lossy(&stdout);
    assert_eq!(
        text.lines().count(),
        1_002,
        "all output still passes through"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report = stderr
        .lines()
        .find(|line| line.starts_with("sessionlog: "))
        .unwrap_or_else(|| panic!("a report on stderr: {stderr}"));
    assert!(
        report.contains("1102 of 1102 lines were not stored"),
        "{report}"
    );
}
