//! `--metrics-listen`: the real binary (its own process, so the counters
//! are this test's alone) reports appends, duplicates, failures, followers,
//! liveness endings, prunes and disk size, and answers `/healthz`.

use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;

use futures::StreamExt as _;
use sessionlog::client::Connection;
use sessionlog::pb;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::common::{http, process};

struct Served {
    child: Child,
    grpc: String,
    metrics: String,
}

/// Starts `serve` on port 0 for both listeners and reads the bound
/// addresses from its JSON log.
async fn start(dir: &std::path::Path) -> Served {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sessionlog"))
        .args(["serve", "--log-format", "json", "--listen", "127.0.0.1:0"])
        .args(["--metrics-listen", "127.0.0.1:0"])
        .args([
            "--liveness-interval",
            "50ms",
            "--retention-interval",
            "50ms",
        ])
        .args(["--retention-max-sessions", "3"])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn serve");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let (mut grpc, mut metrics) = (None, None);
    while grpc.is_none() || metrics.is_none() {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("the server starts within 30s")
            .expect("read stderr")
            .expect("the server is running");
        let log: serde_json::Value = serde_json::from_str(&line).expect("a JSON log line");
        let listen = log["fields"]["listen"].as_str().map(str::to_owned);
        match log["fields"]["message"].as_str() {
            Some("serving") => grpc = listen,
            Some("serving metrics") => metrics = listen,
            _ => {}
        }
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Served {
        child,
        grpc: format!("http://{}", grpc.expect("grpc address")),
        metrics: metrics.expect("metrics address"),
    }
}

/// Every sample line as `name{labels}` → value.
async fn scrape(addr: &str) -> HashMap<String, f64> {
    let http::Answer { status, body, .. } =
        http::get(addr.parse().expect("the metrics address"), "/metrics", &[]).await;
    assert_eq!(status, 200);
    body.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect()
}

fn value(samples: &HashMap<String, f64>, name: &str) -> f64 {
    samples.get(name).copied().unwrap_or(0.0)
}

/// Scrapes until `done` holds (bounded), for what background tasks do.
async fn scrape_until(
    addr: &str,
    done: impl Fn(&HashMap<String, f64>) -> bool,
) -> HashMap<String, f64> {
    for _ in 0..200 {
        let samples = scrape(addr).await;
        if done(&samples) {
            return samples;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the metrics did not reach the expected values within 5s");
}

fn entry(message: &str) -> pb::LogEntry {
    pb::LogEntry {
        level: pb::Level::Info.into(),
        message: message.into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_what_the_server_does() {
    let dir = tempfile::tempdir().expect("temp dir");
    let served = start(dir.path()).await;
    let http::Answer { status, body, .. } = http::get(
        served.metrics.parse().expect("the metrics address"),
        "/healthz",
        &[],
    )
    .await;
    assert_eq!((status, body.trim()), (200, "ok"));

    let connection = Connection::connect(&served.grpc, None)
        .await
        .expect("connect");
    let mut client = connection.sessions();
    let id = client
        .start_session(pb::StartSessionRequest {
            app_name: "metrics".into(),
            ..Default::default()
        })
        .await
        .expect("start")
        .into_inner()
        .id;
    let mut follow = client
        .follow(pb::FollowRequest {
            session_id: id.clone(),
            ..Default::default()
        })
        .await
        .expect("follow")
        .into_inner();
    let batch = |batch_id: &str, messages: &[&str]| pb::AppendRequest {
        session_id: id.clone(),
        entries: messages.iter().map(|m| entry(m)).collect(),
        expected_last_seq: None,
        batch_id: batch_id.into(),
    };
    client
        .append(batch("b1", &["a", "b", "c"]))
        .await
        .expect("append");
    client
        .append(batch("b2", &["d", "e"]))
        .await
        .expect("append");
    let retried = client
        .append(batch("b2", &["d", "e"]))
        .await
        .expect("retry");
    assert!(retried.into_inner().duplicate);

    let samples = scrape(&served.metrics).await;
    assert_eq!(value(&samples, "sessionlog_appended_entries_total"), 5.0);
    assert!(value(&samples, "sessionlog_appended_bytes_total") > 5.0);
    assert_eq!(
        value(
            &samples,
            r#"sessionlog_append_batches_total{result="stored"}"#
        ),
        2.0
    );
    assert_eq!(
        value(
            &samples,
            r#"sessionlog_append_batches_total{result="duplicate"}"#
        ),
        1.0
    );
    assert_eq!(
        value(&samples, "sessionlog_append_duration_seconds_count"),
        3.0
    );
    assert!(value(&samples, "sessionlog_flush_duration_seconds_count") >= 1.0);
    assert_eq!(
        value(&samples, r#"sessionlog_sessions{state="active"}"#),
        1.0
    );
    assert_eq!(value(&samples, "sessionlog_followers"), 1.0);
    assert!(value(&samples, "sessionlog_store_size_bytes") > 0.0);

    // The follower reads all five entries.
    let mut received = 0;
    while received < 5 {
        let response = follow.next().await.expect("open").expect("event");
        if let Some(pb::follow_response::Event::Batch(batch)) = response.event {
            received += batch.entries.len();
        }
    }
    drop(follow);
    let samples = scrape_until(&served.metrics, |s| value(s, "sessionlog_followers") == 0.0).await;
    assert_eq!(
        value(&samples, "sessionlog_follow_delivered_entries_total"),
        5.0
    );
    assert!(value(&samples, "sessionlog_follower_lag_entries_count") >= 1.0);

    client
        .end_session(pb::EndSessionRequest {
            session_id: id.clone(),
            reason: "done".into(),
        })
        .await
        .expect("end");
    let refused = client.append(batch("b3", &["late"])).await;
    assert!(refused.is_err(), "the session has ended");

    // A lease that lapses, and more ended sessions than retention keeps.
    client
        .start_session(pb::StartSessionRequest {
            app_name: "leased".into(),
            lease_ttl: Some(prost_types::Duration {
                seconds: 0,
                nanos: 100_000_000,
            }),
            ..Default::default()
        })
        .await
        .expect("start leased");
    for n in 0..3 {
        let extra = client
            .start_session(pb::StartSessionRequest {
                app_name: format!("extra-{n}"),
                ..Default::default()
            })
            .await
            .expect("start")
            .into_inner()
            .id;
        client
            .end_session(pb::EndSessionRequest {
                session_id: extra,
                reason: "done".into(),
            })
            .await
            .expect("end");
    }
    let samples = scrape_until(&served.metrics, |s| {
        value(
            s,
            r#"sessionlog_liveness_endings_total{reason="lease_expired"}"#,
        ) == 1.0
            && value(
                s,
                r#"sessionlog_pruned_sessions_total{reason="max_sessions"}"#,
            ) >= 2.0
    })
    .await;
    assert_eq!(
        value(
            &samples,
            r#"sessionlog_append_batches_total{result="failed"}"#
        ),
        1.0
    );
    assert_eq!(
        value(&samples, r#"sessionlog_sessions{state="active"}"#),
        0.0
    );
    assert_eq!(
        value(&samples, r#"sessionlog_sessions{state="ended"}"#),
        3.0
    );

    // The ended sessions are sealed in the background, and the backlog
    // drains.
    let samples = scrape_until(&served.metrics, |s| {
        value(s, "sessionlog_seal_backlog_sessions") == 0.0
            && value(s, "sessionlog_store_reclaiming") == 0.0
    })
    .await;
    assert!(value(&samples, "sessionlog_seal_input_bytes_total") > 0.0);
    assert!(value(&samples, "sessionlog_seal_output_bytes_total") > 0.0);

    process::sigterm(&served.child);
    let mut child = served.child;
    assert!(child.wait().await.expect("reaped").success());
}
