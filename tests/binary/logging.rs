//! The server's own log: text without colour codes when stderr is not a
//! terminal (a file, a journal, a pipe to a log shipper).

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::common::process;

#[tokio::test]
async fn text_logs_to_a_pipe_have_no_colour_codes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sessionlog"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn serve");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut log = Vec::new();
    while !log.iter().any(|line: &String| line.contains("serving")) {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("the server starts within 30s")
            .expect("read stderr")
            .expect("the server is running");
        log.push(line);
    }
    process::sigterm(&child);
    while let Some(line) = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("the server stops within 30s")
        .expect("read stderr")
    {
        log.push(line);
    }
    let status = child.wait().await.expect("wait");
    assert!(status.success(), "{status}: {log:#?}");
    assert!(log.iter().any(|line| line.contains("INFO")), "{log:#?}");
    let coloured: Vec<&String> = log.iter().filter(|line| line.contains('\x1b')).collect();
    assert!(coloured.is_empty(), "escape codes in {coloured:#?}");
}
