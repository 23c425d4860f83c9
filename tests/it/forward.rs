//! Forwarding to a second sessionlog (which takes OTLP in) as the central
//! target: every entry arrives once and in order, with the session's
//! attributes, and the session ends there too; after the target was down
//! for a while; and across a restart of the forwarding server.

use std::time::Duration;

use sessionlog::pb;
use tokio_stream::StreamExt;

use crate::common;
use crate::common::request;
use crate::common::{Client, FsyncPolicy, TestServer};

/// A forwarding server on `dir` that sends to `target`.
async fn forwarding_server(dir: &std::path::Path, target: &str) -> TestServer {
    TestServer::builder()
        .data_dir(dir)
        .fsync(FsyncPolicy::Always)
        .configure(|settings| {
            settings.forward.targets = vec![target.to_owned()];
            settings.forward.max_records = 300;
            settings.forward.linger = Duration::from_millis(10);
        })
        .start()
        .await
}

async fn start_forwarded(client: &mut Client, id: &str) {
    client
        .start_session(pb::StartSessionRequest {
            session_id: id.to_owned(),
            app_name: "builder".to_owned(),
            job_id: "job-7".to_owned(),
            ..Default::default()
        })
        .await
        .expect("start");
}

async fn append_range(client: &mut Client, id: &str, range: std::ops::Range<usize>) {
    let messages: Vec<String> = range.map(|i| format!("entry {i}")).collect();
    for chunk in messages.chunks(100) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        common::append(client, id, &refs).await;
    }
}

/// Waits (on `WatchSessions`) until the central server has session `id`.
async fn wait_for_session(central: &TestServer, id: &str) {
    let mut client = central.client().await;
    tokio::time::timeout(Duration::from_secs(30), async {
        let mut events = client
            .watch_sessions(pb::WatchSessionsRequest {
                include_existing: true,
                ..Default::default()
            })
            .await
            .expect("watch")
            .into_inner();
        while let Some(event) = events.next().await {
            if event.expect("event").session.is_some_and(|s| s.id == id) {
                return;
            }
        }
        panic!("the watch ended before session {id} appeared");
    })
    .await
    .expect("the central server got the session in time");
}

/// Waits (on `WatchSessions`, then `Follow`) until the central server has
/// session `id` with `count` entries, or has ended it when `ended`; returns
/// its entries' messages.
async fn central_log(central: &TestServer, id: &str, count: usize, ended: bool) -> Vec<String> {
    wait_for_session(central, id).await;
    let mut client = central.client().await;
    tokio::time::timeout(Duration::from_secs(30), async {
        let mut stream = client
            .follow(pb::FollowRequest {
                session_id: id.to_owned(),
                ..Default::default()
            })
            .await
            .expect("follow")
            .into_inner();
        let mut messages = Vec::new();
        while let Some(response) = stream.next().await {
            match response.expect("follow event").event {
                Some(pb::follow_response::Event::Batch(batch)) => {
                    messages.extend(batch.entries.into_iter().map(|e| e.message));
                    if !ended && messages.len() >= count {
                        break;
                    }
                }
                Some(pb::follow_response::Event::Ended(session)) => {
                    assert_eq!(session.app_name, "builder");
                    assert_eq!(session.job_id, "job-7");
                    assert_eq!(session.end_reason, "exit code 0");
                    break;
                }
                _ => {}
            }
        }
        messages
    })
    .await
    .expect("the central server got the session in time")
}

fn expected(count: usize, ended: bool) -> Vec<String> {
    let mut messages: Vec<String> = (0..count).map(|i| format!("entry {i}")).collect();
    if ended {
        messages.push("Session ended: exit code 0".to_owned());
    }
    messages
}

/// Asserts the central log is exactly `expected`, naming the first place
/// it differs rather than printing both logs.
fn assert_log(got: &[String], expected: &[String], what: &str) {
    let first_difference = got.iter().zip(expected).position(|(a, b)| a != b);
    assert!(
        got.len() == expected.len() && first_difference.is_none(),
        "{what}: got {} messages for {} expected; first difference at {:?}: {:?}",
        got.len(),
        expected.len(),
        first_difference,
        first_difference.map(|i| (&got[i], &expected[i])),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_arrive_once_in_order_and_the_session_ends_there_too() {
    let central = TestServer::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let sidecar = forwarding_server(dir.path(), &central.url()).await;
    let mut client = sidecar.client().await;
    start_forwarded(&mut client, "fwd-normal").await;
    append_range(&mut client, "fwd-normal", 0..1_000).await;
    common::end_session(&mut client, "fwd-normal", "exit code 0").await;

    let messages = central_log(&central, "fwd-normal", 0, true).await;
    assert_log(
        &messages,
        &expected(1_000, true),
        "every entry once, in order",
    );
    // Exports go one at a time, so once a later session reaches the
    // target, the export before it has been counted: the start event, 1,000
    // entries and the end event, once each (plus perhaps the later start).
    start_forwarded(&mut client, "fwd-normal-later").await;
    wait_for_session(&central, "fwd-normal-later").await;
    let metrics = sessionlog::testing::metrics_text();
    let prefix = format!(
        "sessionlog_forward_records_total{{target=\"{}\",result=\"exported\"}} ",
        central.url()
    );
    let exported: u64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|count| count.parse().ok())
        .unwrap_or_else(|| panic!("{prefix} in\n{metrics}"));
    assert!((1_002..=1_003).contains(&exported), "exported {exported}");
    sidecar.shutdown().await;
    central.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_was_down_gets_everything_when_it_comes_back() {
    // A loopback port with nobody on it, for now.
    let addr = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        probe.local_addr().expect("addr")
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let sidecar = forwarding_server(dir.path(), &format!("http://{addr}")).await;
    let mut client = sidecar.client().await;
    start_forwarded(&mut client, "fwd-outage").await;
    append_range(&mut client, "fwd-outage", 0..500).await;
    common::end_session(&mut client, "fwd-outage", "exit code 0").await;
    // Appends were acknowledged while the target was away.
    let central_dir = tempfile::tempdir().expect("temp dir");
    let central = TestServer::builder()
        .data_dir(central_dir.path())
        .addr(addr)
        .start()
        .await;
    let messages = central_log(&central, "fwd-outage", 0, true).await;
    assert_log(
        &messages,
        &expected(500, true),
        "everything after the outage",
    );
    sidecar.shutdown().await;
    central.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_forwarder_resumes_where_the_target_acknowledged() {
    let central = TestServer::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let sidecar = forwarding_server(dir.path(), &central.url()).await;
    let mut client = sidecar.client().await;
    start_forwarded(&mut client, "fwd-restart").await;
    append_range(&mut client, "fwd-restart", 0..600).await;
    let first = central_log(&central, "fwd-restart", 600, false).await;
    assert_log(&first, &expected(600, false), "before the restart");
    sidecar.shutdown().await;

    let sidecar = forwarding_server(dir.path(), &central.url()).await;
    let mut client = sidecar.client().await;
    append_range(&mut client, "fwd-restart", 600..900).await;
    common::end_session(&mut client, "fwd-restart", "exit code 0").await;
    let messages = central_log(&central, "fwd-restart", 0, true).await;
    assert_log(
        &messages,
        &expected(900, true),
        "nothing sent twice after the restart",
    );
    sidecar.shutdown().await;
    central.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_keeps_an_ended_session_until_every_target_has_it() {
    use sessionlog::server::RetentionPolicy;
    let addr = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        probe.local_addr().expect("addr")
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let sidecar = forwarding_server(dir.path(), &format!("http://{addr}")).await;
    let mut client = sidecar.client().await;
    let end = |id: &str| request::end(id, "exit code 0");
    start_forwarded(&mut client, "fwd-kept").await;
    append_range(&mut client, "fwd-kept", 0..10).await;
    client.end_session(end("fwd-kept")).await.expect("end");

    // The target is down: an age limit keeps the session for it...
    let by_age = RetentionPolicy {
        max_age: Some(Duration::ZERO),
        ..RetentionPolicy::default()
    };
    assert!(sidecar.sessions.enforce_retention(by_age).await.is_empty());
    // ...but a store over its byte limit lets it go, and says so.
    let by_bytes = RetentionPolicy {
        max_bytes: Some(0),
        ..RetentionPolicy::default()
    };
    let pruned = sidecar.sessions.enforce_retention(by_bytes).await;
    assert_eq!(
        pruned.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(),
        ["fwd-kept"]
    );
    let metrics = sessionlog::testing::metrics_text();
    assert!(
        metrics.lines().any(|line| line
            .starts_with("sessionlog_forward_pruned_unforwarded_sessions_total ")
            && !line.ends_with(" 0")),
        "{metrics}"
    );

    // Once the target has a session to its end, the age limit prunes it.
    let central_dir = tempfile::tempdir().expect("temp dir");
    let central = TestServer::builder()
        .data_dir(central_dir.path())
        .addr(addr)
        .start()
        .await;
    start_forwarded(&mut client, "fwd-handed").await;
    append_range(&mut client, "fwd-handed", 0..10).await;
    client.end_session(end("fwd-handed")).await.expect("end");
    central_log(&central, "fwd-handed", 0, true).await;
    // Exports go one at a time: once a later session arrives, the one
    // that ended the first has been acknowledged.
    start_forwarded(&mut client, "fwd-handed-later").await;
    wait_for_session(&central, "fwd-handed-later").await;
    let pruned = sidecar.sessions.enforce_retention(by_age).await;
    assert_eq!(
        pruned.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(),
        ["fwd-handed"]
    );
    sidecar.shutdown().await;
    central.shutdown().await;
}
