//! Forwarding to a second sessionlog (which takes OTLP in) as the central
//! target: every entry arrives once and in order, with the session's
//! attributes, and the session ends there too; after the target was down
//! for a while; and across a restart of the forwarding server. Over
//! OTLP/HTTP too (a URL with a path), with its retry rules.

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_with_a_steady_backlog_does_not_starve_the_others() {
    use opentelemetry_proto::tonic::collector::logs::v1::{
        ExportLogsServiceRequest, ExportLogsServiceResponse,
    };
    use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyKind;
    use sessionlog::pb::otlp_logs::logs_service_server::{LogsService, LogsServiceServer};
    use tokio::sync::{mpsc, oneshot};

    /// A target that hands each export to the test and answers OK only
    /// once the test lets it go, so the test sets the pace.
    struct GatedTarget {
        exports_tx: mpsc::Sender<(ExportLogsServiceRequest, oneshot::Sender<()>)>,
    }

    #[tonic::async_trait]
    impl LogsService for GatedTarget {
        async fn export(
            &self,
            request: tonic::Request<ExportLogsServiceRequest>,
        ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
            let (release_tx, release_rx) = oneshot::channel();
            if self
                .exports_tx
                .send((request.into_inner(), release_tx))
                .await
                .is_ok()
            {
                // A dropped sender lets it go too.
                let _ = release_rx.await;
            }
            Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
        }
    }

    /// The entries (not start or end events) per session in `export`.
    fn entries_by_session(export: &ExportLogsServiceRequest) -> Vec<(String, usize)> {
        export
            .resource_logs
            .iter()
            .map(|logs| {
                let id = logs
                    .resource
                    .iter()
                    .flat_map(|resource| &resource.attributes)
                    .find(|attribute| attribute.key == "session.id")
                    .and_then(|attribute| attribute.value.as_ref()?.value.as_ref())
                    .and_then(|value| match value {
                        AnyKind::StringValue(id) => Some(id.clone()),
                        _ => None,
                    })
                    .unwrap_or_default();
                let entries = logs
                    .scope_logs
                    .iter()
                    .flat_map(|scope| &scope.log_records)
                    .filter(|record| record.event_name.is_empty())
                    .count();
                (id, entries)
            })
            .collect()
    }

    let (exports_tx, mut exports_rx) = mpsc::channel(1);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let target_addr = listener.local_addr().expect("addr");
    let target = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(LogsServiceServer::new(GatedTarget { exports_tx }))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let sidecar = TestServer::builder()
        .data_dir(dir.path())
        .fsync(FsyncPolicy::Always)
        .configure(|settings| {
            settings.forward.targets = vec![format!("http://{target_addr}")];
            settings.forward.max_records = 4;
            settings.forward.linger = Duration::ZERO;
        })
        .start()
        .await;
    let mut client = sidecar.client().await;
    let next_export = async |exports_rx: &mut mpsc::Receiver<_>| {
        tokio::time::timeout(Duration::from_secs(30), exports_rx.recv())
            .await
            .expect("an export within 30 s")
            .expect("the target runs")
    };

    let (busy, quiet) = ("fwd-a-busy", "fwd-b-quiet");
    // The lower id has a backlog and keeps growing; the other has a
    // backlog of its own, ready before the forwarder's second pass.
    start_forwarded(&mut client, busy).await;
    append_range(&mut client, busy, 0..40).await;
    let (first, release) = next_export(&mut exports_rx).await;
    start_forwarded(&mut client, quiet).await;
    append_range(&mut client, quiet, 0..8).await;
    let mut busy_sent: usize = 0;
    let mut busy_appended = 40;
    let mut export = first;
    let mut release = release;
    let mut exports = 1;
    loop {
        let counts = entries_by_session(&export);
        let sent_to = |id: &str| -> usize {
            counts
                .iter()
                .filter(|(session, _)| session == id)
                .map(|(_, entries)| entries)
                .sum()
        };
        busy_sent += sent_to(busy);
        if sent_to(quiet) > 0 {
            assert!(
                busy_sent < busy_appended,
                "the quiet session got its turn while the busy one still had a backlog \
                 ({busy_sent} of {busy_appended} sent)"
            );
            break;
        }
        assert!(
            exports < 10,
            "after {exports} exports of at most 4 records the quiet session has had \
             nothing; the busy one sent {busy_sent} of {busy_appended}"
        );
        // The busy session's steady stream: one more entry per export.
        common::append(&mut client, busy, &["more"]).await;
        busy_appended += 1;
        let _ = release.send(());
        (export, release) = next_export(&mut exports_rx).await;
        exports += 1;
    }
    drop(release);
    drop(exports_rx);
    sidecar.shutdown().await;
    target.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_with_a_path_forwards_over_otlp_http_once_in_order() {
    let central = TestServer::builder().http().start().await;
    let http = central.http_addr.expect("started with http");
    let dir = tempfile::tempdir().expect("temp dir");
    let sidecar = forwarding_server(dir.path(), &format!("http://{http}/v1/logs")).await;
    let mut client = sidecar.client().await;
    start_forwarded(&mut client, "fwd-http").await;
    append_range(&mut client, "fwd-http", 0..1_000).await;
    common::end_session(&mut client, "fwd-http", "exit code 0").await;
    let messages = central_log(&central, "fwd-http", 0, true).await;
    assert_log(
        &messages,
        &expected(1_000, true),
        "every entry once, in order, over OTLP/HTTP",
    );
    sidecar.shutdown().await;
    central.shutdown().await;
}

/// One request an OTLP/HTTP target received: when, its
/// `Content-Encoding`, and its records' bodies.
#[derive(Debug)]
struct Posted {
    at: std::time::Instant,
    encoding: String,
    bodies: Vec<String>,
}

/// A stand-in OTLP/HTTP target on loopback that answers each request with
/// what `answer` says for it and its index (status, `Retry-After`),
/// closing each connection after its answer; every request goes to the
/// channel.
async fn scripted_target(
    answer: impl Fn(usize, &Posted) -> (u16, Option<&'static str>) + Send + 'static,
) -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<Posted>,
) {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use prost::Message as _;
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (posted_tx, posted_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut index = 0;
        while let Ok((stream, _)) = listener.accept().await {
            let mut reader = BufReader::new(stream);
            let (mut length, mut encoding) = (0usize, String::new());
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                    break;
                }
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                if let Some((name, value)) = line.split_once(':') {
                    match name.to_ascii_lowercase().as_str() {
                        "content-length" => length = value.trim().parse().unwrap_or(0),
                        "content-encoding" => encoding = value.trim().to_owned(),
                        _ => {}
                    }
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).await.is_err() {
                continue;
            }
            let plain = match encoding.as_str() {
                "gzip" => {
                    let mut plain = Vec::new();
                    std::io::Read::read_to_end(
                        &mut flate2::read::GzDecoder::new(body.as_slice()),
                        &mut plain,
                    )
                    .expect("gzip");
                    plain
                }
                _ => body,
            };
            let export = ExportLogsServiceRequest::decode(plain.as_slice()).expect("protobuf");
            let bodies = export
                .resource_logs
                .iter()
                .flat_map(|r| &r.scope_logs)
                .flat_map(|s| &s.log_records)
                .filter(|record| record.event_name.is_empty())
                .filter_map(|record| match record.body.as_ref()?.value.as_ref()? {
                    opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(text) => {
                        Some(text.clone())
                    }
                    _ => None,
                })
                .collect();
            let posted = Posted {
                at: std::time::Instant::now(),
                encoding,
                bodies,
            };
            let (status, retry_after) = answer(index, &posted);
            index += 1;
            let _ = posted_tx.send(posted);
            let mut answer =
                format!("HTTP/1.1 {status} Scripted\r\nContent-Length: 0\r\nConnection: close\r\n");
            if let Some(seconds) = retry_after {
                answer.push_str(&format!("Retry-After: {seconds}\r\n"));
            }
            answer.push_str("\r\n");
            let _ = reader.get_mut().write_all(answer.as_bytes()).await;
        }
    });
    (addr, posted_rx)
}

async fn next_post(posted: &mut tokio::sync::mpsc::UnboundedReceiver<Posted>) -> Posted {
    tokio::time::timeout(Duration::from_secs(30), posted.recv())
        .await
        .expect("a post in time")
        .expect("the target runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_http_retries_503_after_retry_after_and_drops_what_400_refuses() {
    let (addr, mut posted) = scripted_target(|index, posted| {
        if index == 0 {
            (503, Some("1"))
        } else if posted.bodies.iter().any(|body| body == "three") {
            (400, None)
        } else {
            (200, None)
        }
    })
    .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let sidecar = forwarding_server(dir.path(), &format!("http://{addr}/v1/logs")).await;
    let mut client = sidecar.client().await;
    start_forwarded(&mut client, "fwd-scripted").await;
    common::append(&mut client, "fwd-scripted", &["one", "two"]).await;

    // The first export holds the start and maybe the entries; read until
    // the entries arrived, and check the 503 made the same export come
    // again no sooner than `Retry-After`.
    let refused = next_post(&mut posted).await;
    assert_eq!(refused.encoding, "gzip");
    let retried = next_post(&mut posted).await;
    assert_eq!(retried.bodies, refused.bodies, "the same export again");
    assert!(
        retried.at - refused.at >= Duration::from_millis(950),
        "retried after {:?}",
        retried.at - refused.at
    );
    let mut seen = retried.bodies;
    while seen != ["one", "two"] {
        seen = next_post(&mut posted).await.bodies;
    }
    // The export of `three` is refused for good (400): not sent again.
    common::append(&mut client, "fwd-scripted", &["three"]).await;
    assert_eq!(next_post(&mut posted).await.bodies, ["three"]);
    common::append(&mut client, "fwd-scripted", &["four"]).await;
    assert_eq!(next_post(&mut posted).await.bodies, ["four"]);
    sidecar.shutdown().await;
}
