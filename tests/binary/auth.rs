//! Bearer tokens from the real binary's side: the CLI sends its token file,
//! and no token reaches the server's log.

use std::process::Stdio;
use std::time::Duration;

use sessionlog::client::Connection;
use sessionlog::pb;

use crate::common::access::server_with_tokens;
use crate::common::process;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_sends_its_token_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "cli-token\n").expect("tokens");
    let server = server_with_tokens(&tokens).await;
    let run = |with_token: bool| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_sessionlog"));
        command.args(["ls", "--server", &server.url()]);
        if with_token {
            command.arg("--token-file").arg(&tokens);
        }
        command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .expect("run")
    };
    let refused = run(false);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr).starts_with("error: UNAUTHENTICATED: "),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(run(true).status.success());
    server.shutdown().await;
}

/// `sessionlog append` without the token to a session at seq 2: the error
/// names the code as gRPC spells it and claims no seq; an append of nothing
/// reports the session's own last seq.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_append_says_the_code_and_no_false_seq() {
    let dir = tempfile::tempdir().expect("temp dir");
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "cli-token\n").expect("tokens");
    let server = server_with_tokens(&tokens).await;
    let append = |with_token: bool, input: &'static str, id: String| {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_sessionlog"));
        command.args(["append", &id, "--server", &server.url()]);
        if with_token {
            command.arg("--token-file").arg(&tokens);
        }
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        async move {
            let mut child = command.spawn().expect("spawn");
            let mut stdin = child.stdin.take().expect("stdin");
            tokio::io::AsyncWriteExt::write_all(&mut stdin, input.as_bytes())
                .await
                .expect("write stdin");
            drop(stdin);
            let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
                .await
                .expect("append finishes")
                .expect("output");
            (
                output.status.code(),
                String::from_utf8_lossy(&output.stdout).into_owned(),
                String::from_utf8_lossy(&output.stderr).into_owned(),
            )
        }
    };
    let connection = Connection::connect(&server.url(), Some(&tokens))
        .await
        .expect("connect");
    let id = connection
        .sessions()
        .start_session(pb::StartSessionRequest::default())
        .await
        .expect("start")
        .into_inner()
        .id;
    let (code, stdout, _) = append(true, "one\ntwo\n", id.clone()).await;
    assert_eq!(
        (code, stdout.trim()),
        (Some(0), "appended 2 entries, last seq 2")
    );

    let (code, stdout, stderr) = append(false, "three\n", id.clone()).await;
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(
        stderr.starts_with("error: no entries stored, 1 not: UNAUTHENTICATED: "),
        "{stderr}"
    );
    assert!(!stderr.contains("last seq"), "{stderr}");

    let (code, stdout, stderr) = append(true, "", id).await;
    assert_eq!(
        (code, stdout.trim()),
        (Some(0), "appended 0 entries, last seq 2"),
        "{stderr}"
    );
    server.shutdown().await;
}

/// Even at `RUST_LOG=trace`, where tonic, h2 and hyper log their frames,
/// neither an accepted nor a refused token reaches the server's log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_never_reach_the_log_even_at_trace_level() {
    use tokio::io::{AsyncBufReadExt, BufReader};

    let dir = tempfile::tempdir().expect("temp dir");
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "accepted-7f3c9a\n").expect("tokens");
    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "refused-2b8e41\n").expect("wrong");
    let socket = dir.path().join("sessionlog.sock");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sessionlog"))
        .args(["serve", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--listen")
        .arg(format!("unix:{}", socket.display()))
        .arg("--auth-token-file")
        .arg(&tokens)
        .env("RUST_LOG", "trace")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn serve");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut log = Vec::new();
    loop {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("the server starts within 30s")
            .expect("read stderr")
            .expect("the server is running");
        let ready = line.contains("serving");
        log.push(line);
        if ready {
            break;
        }
    }
    let collector = tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            log.push(line);
        }
        log
    });

    let url = format!("unix:{}", socket.display());
    for (token_file, accepted) in [(&tokens, true), (&wrong, false)] {
        let mut sessions = Connection::connect(&url, Some(token_file))
            .await
            .expect("connect")
            .sessions();
        let result = sessions
            .start_session(pb::StartSessionRequest {
                app_name: "auth-log".into(),
                ..Default::default()
            })
            .await;
        assert_eq!(result.is_ok(), accepted, "{result:?}");
    }

    process::sigterm(&child);
    assert!(child.wait().await.expect("reaped").success());
    let log = collector.await.expect("log collector").join("\n");
    assert!(
        log.contains("Headers"),
        "trace logging was on, so header frames were logged ({} bytes)",
        log.len()
    );
    assert!(
        !log.contains("accepted-7f3c9a"),
        "an accepted token was logged"
    );
    assert!(
        !log.contains("refused-2b8e41"),
        "a refused token was logged"
    );
}

/// Emptying the token file while serving refuses every call from then on:
/// a warning, as at start-up, not an info line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_file_emptied_while_serving_is_a_warning() {
    use tokio::io::{AsyncBufReadExt, BufReader};

    let dir = tempfile::tempdir().expect("temp dir");
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "some-token\n").expect("tokens");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sessionlog"))
        .args(["serve", "--log-format", "json", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--listen")
        .arg(format!("unix:{}", dir.path().join("s.sock").display()))
        .arg("--auth-token-file")
        .arg(&tokens)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn serve");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut next_log = async || -> serde_json::Value {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("a log line in time")
            .expect("read stderr")
            .expect("the server is running");
        serde_json::from_str(&line).expect("a JSON log line")
    };
    while next_log().await["fields"]["message"] != "serving" {}
    std::fs::write(&tokens, "").expect("empty the token file");
    let reloaded = loop {
        let log = next_log().await;
        let message = log["fields"]["message"].as_str().unwrap_or_default();
        if message.starts_with("reloaded the token file") {
            break log;
        }
    };
    assert_eq!(reloaded["level"], "WARN", "{reloaded}");
    process::sigterm(&child);
    assert!(child.wait().await.expect("reaped").success());
}
