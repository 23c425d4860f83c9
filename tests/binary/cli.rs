//! The `sessionlog` binary end to end: client subcommands against a real
//! server, `tail -f` following live, and `serve` shutting down on SIGTERM.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

use crate::common;
use crate::common::process;
use crate::common::{TestServer, append, end_session, start_session};

const BIN: &str = env!("CARGO_BIN_EXE_sessionlog");

struct Output {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

async fn run(server: &TestServer, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .env("SESSIONLOG_SERVER", server.url())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sessionlog");
    let mut input = child.stdin.take().expect("stdin");
    input
        .write_all(stdin.as_bytes())
        .await
        .expect("write stdin");
    drop(input);
    let output = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("the command finishes")
        .expect("output");
    Output {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_commands_round_trip_a_session() {
    let server = TestServer::start().await;
    let health = run(&server, &["health"], "").await;
    assert_eq!((health.code, health.stdout.trim()), (Some(0), "SERVING"));

    let started = run(
        &server,
        &["start", "--app", "cli", "--job", "j7", "--meta", "k=v"],
        "",
    )
    .await;
    assert_eq!(started.code, Some(0), "{}", started.stderr);
    let id = started.stdout.trim().to_owned();
    assert!(!id.is_empty());

    let appended = run(
        &server,
        &["append", &id, "--level", "warn", "--logger", "ci"],
        "one\ntwo\nthree\n",
    )
    .await;
    assert_eq!(appended.code, Some(0), "{}", appended.stderr);
    assert!(appended.stdout.contains("appended 3 entries, last seq 3"));

    let read = run(&server, &["read", &id, "--json"], "").await;
    let lines: Vec<serde_json::Value> = read
        .stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[1]["message"], "two");
    assert_eq!(lines[1]["level"], "warn");
    assert_eq!(lines[1]["logger"], "ci");
    assert_eq!(lines[1]["seq"], 2);

    let tail = run(&server, &["read", &id, "--tail", "1"], "").await;
    assert!(tail.stdout.trim().ends_with("ci: three"), "{}", tail.stdout);

    let ended = run(&server, &["end", &id, "--reason", "finished", "--json"], "").await;
    let session: serde_json::Value = serde_json::from_str(ended.stdout.trim()).expect("JSON");
    assert_eq!(session["state"], "ended");
    assert_eq!(session["end_reason"], "finished");
    assert_eq!(session["metadata"]["k"], "v");

    let listed = run(&server, &["ls", "--state", "ended", "--job", "j7"], "").await;
    assert!(
        listed.stdout.lines().any(|line| line.starts_with(&id)),
        "{}",
        listed.stdout
    );
    let shown = run(&server, &["show", &id], "").await;
    assert!(shown.stdout.contains("finished"));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_exit_non_zero_with_the_error_on_stderr() {
    let server = TestServer::start().await;
    let missing = run(&server, &["show", "no-such-session"], "").await;
    assert_eq!(missing.code, Some(1));
    assert!(missing.stdout.is_empty());
    assert!(
        missing.stderr.starts_with("error: NOT_FOUND: "),
        "{}",
        missing.stderr
    );
    assert!(missing.stderr.contains("no-such-session"));
    let bad_level = run(&server, &["append", "x", "--level", "loud"], "").await;
    assert_eq!(bad_level.code, Some(2), "clap rejects unknown levels");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_follow_prints_live_entries_and_exits_when_the_session_ends() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let id = common::start_session(&mut client, "tail").await;
    append(&mut client, &id, &["before"]).await;
    let mut child = Command::new(BIN)
        .args(["tail", "-f", &id, "--json"])
        .env("SESSIONLOG_SERVER", server.url())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tail -f");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("history arrives")
        .expect("read")
        .expect("a line");
    assert!(first.contains("\"before\""), "{first}");
    // tail -f is now live: these arrive through Follow, not a re-read.
    append(&mut client, &id, &["live-1", "live-2"]).await;
    end_session(&mut client, &id, "over").await;
    let mut rest = Vec::new();
    while let Some(line) = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("lines arrive")
        .expect("read")
    {
        rest.push(line);
    }
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("tail -f exits")
        .expect("status");
    assert!(status.success());
    let messages: Vec<String> = rest
        .iter()
        .map(|line| {
            serde_json::from_str::<serde_json::Value>(line).expect("JSON")["message"].to_string()
        })
        .collect();
    assert_eq!(
        messages,
        ["\"live-1\"", "\"live-2\"", "\"Session ended: over\""]
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().expect("temp dir");
    let socket = dir.path().join("sessionlog.sock");
    let mut server = Command::new(BIN)
        .args(["serve", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--listen")
        .arg(format!("unix:{}", socket.display()))
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn serve");
    process::wait_until_serving(&mut server).await;
    let connection =
        sessionlog::client::Connection::connect(&format!("unix:{}", socket.display()), None)
            .await
            .expect("connect over the socket");
    let session = connection
        .sessions()
        .start_session(sessionlog::pb::StartSessionRequest::default())
        .await
        .expect("start over the socket");
    assert!(!session.into_inner().id.is_empty());
    process::sigterm(&server);
    let status = tokio::time::timeout(Duration::from_secs(30), server.wait())
        .await
        .expect("serve exits within 30s")
        .expect("status");
    assert!(status.success(), "serve exited with {status}");
}

#[tokio::test]
async fn serve_with_a_bad_flag_exits_with_one_error_line_before_serving() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = tokio::time::timeout(
        Duration::from_secs(30),
        Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--forward-otlp", "ftp://127.0.0.1:4317"])
            .env("RUST_LOG", "info")
            .output(),
    )
    .await
    .expect("the server gives up at once")
    .expect("run sessionlog serve");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("error"))
        .collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].starts_with("error: --forward-otlp `ftp://"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().last(), Some(errors[0]), "{stderr}");
    assert!(!stderr.contains("serving"), "{stderr}");
}

/// What a client stored reaches a reader's terminal only as visible text:
/// no OSC 52 clipboard write, title change, screen clear or forged line,
/// in any text command; `tail --color always` lets colour codes through
/// and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grep_finds_entries_across_sessions_and_read_all_prints_every_page() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let old = start_session(&mut client, "old").await;
    append(&mut client, &old, &["disk Full", "ok", "x1", "x2", "x3"]).await;
    end_session(&mut client, &old, "done").await;
    let new = start_session(&mut client, "new").await;
    append(&mut client, &new, &["\x1b[31mdisk\x1b[0m full here"]).await;

    let found = run(&server, &["grep", "full"], "").await;
    assert_eq!(found.code, Some(0), "{}", found.stderr);
    let lines: Vec<&str> = found.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{}", found.stdout);
    assert!(lines[0].starts_with(&format!("{new} 1 20")), "{}", lines[0]);
    assert!(
        lines[0].ends_with(" INFO test: \\x1b[31mdisk\\x1b[0m full here"),
        "{}",
        lines[0]
    );

    let folded = run(&server, &["grep", "-i", "FULL", "--json"], "").await;
    let hits: Vec<serde_json::Value> = folded
        .stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    let found: Vec<(String, u64)> = hits
        .iter()
        .map(|hit| {
            (
                hit["session_id"].as_str().expect("id").to_owned(),
                hit["seq"].as_u64().expect("seq"),
            )
        })
        .collect();
    assert_eq!(found, vec![(new.clone(), 1), (old.clone(), 1)]);
    assert_eq!(hits[1]["message"], "disk Full");
    assert_eq!(hits[1]["level"], "info");

    let regex = run(
        &server,
        &[
            "grep", "--regex", r"^x\d$", "--app", "old", "--since", "1h", "--limit", "2",
        ],
        "",
    )
    .await;
    assert_eq!(regex.code, Some(0), "{}", regex.stderr);
    let seqs: Vec<&str> = regex
        .stdout
        .lines()
        .map(|line| line.split(' ').nth(1).expect("seq"))
        .collect();
    assert_eq!(seqs, vec!["3", "4"]);
    assert!(
        regex.stderr.contains("more entries match"),
        "{}",
        regex.stderr
    );
    let none = run(&server, &["grep", "x1", "--until", "1h"], "").await;
    assert_eq!((none.code, none.stdout.as_str()), (Some(0), ""));
    let bad = run(&server, &["grep", "--regex", "(x"], "").await;
    assert_ne!(bad.code, Some(0));
    assert!(bad.stderr.contains("INVALID_ARGUMENT"), "{}", bad.stderr);

    let all = run(&server, &["read", &old, "--all", "--limit", "2"], "").await;
    assert_eq!(all.code, Some(0), "{}", all.stderr);
    let seqs: Vec<&str> = all
        .stdout
        .lines()
        .map(|line| line.split_whitespace().next().expect("seq"))
        .collect();
    assert_eq!(seqs, vec!["1", "2", "3", "4", "5", "6"]);
    let one_page = run(&server, &["read", &old, "--limit", "2"], "").await;
    assert_eq!(one_page.stdout.lines().count(), 2);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_output_shows_terminal_controls_from_entries_escaped() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let id = start_session(&mut client, "\x1b]0;retitled\x07app").await;
    let hostile = [
        "copy \x1b]52;c;cm0gLXJmIH4=\x07 this",
        "clear \x1b[2J\x1b[H",
        "ok\n     9 2026-01-01T00:00:00.000Z INFO     test: forged",
        "\x1b[32mgreen\x1b[0m",
    ];
    append(&mut client, &id, &hostile).await;
    end_session(&mut client, &id, "done\x1b[2J").await;

    for args in [
        vec!["read", id.as_str()],
        vec!["tail", id.as_str()],
        vec!["tail", "-f", id.as_str()],
        vec!["show", id.as_str()],
        vec!["ls"],
        vec!["grep", ""],
    ] {
        let output = run(&server, &args, "").await;
        assert_eq!(output.code, Some(0), "{args:?}: {}", output.stderr);
        for text in [&output.stdout, &output.stderr] {
            assert!(
                !text.contains('\x1b') && !text.contains('\x07'),
                "{args:?}: {text:?}"
            );
        }
        if args[0] != "ls" && args[0] != "show" {
            // The hostile entries and the one that ends the session.
            assert_eq!(output.stdout.lines().count(), hostile.len() + 1, "{args:?}");
            assert!(output.stdout.contains("\\x1b]52;c;"), "{args:?}");
        }
    }

    let coloured = run(&server, &["tail", "--color", "always", &id], "").await;
    assert_eq!(coloured.code, Some(0), "{}", coloured.stderr);
    assert!(coloured.stdout.contains("\x1b[32mgreen\x1b[0m"));
    assert!(coloured.stdout.contains("\\x1b[2J"));
    assert!(!coloured.stdout.contains("\x1b]") && !coloured.stdout.contains("\x1b[2J"));
}
