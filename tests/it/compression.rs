//! Compressed gRPC: clients that compress their requests (gzip, zstd) are
//! served on every method, answers come back compressed when the client
//! says it accepts that, and forwarding compresses its exports as
//! `--forward-compression` says.

use std::time::Duration;

use futures::StreamExt;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::AnyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyKind;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use sessionlog::pb;
use sessionlog::pb::follow_response::Event;
use sessionlog::pb::session_log_client::SessionLogClient;
use sessionlog::server::ForwardCompression;
use tokio::sync::mpsc;
use tonic::codec::CompressionEncoding;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::common;
use crate::common::follow::{follow, next_event, request as follow_request};
use crate::common::request::kv;
use crate::common::{TestServer, entry, read_all, start_session};

const ENCODINGS: [(CompressionEncoding, &str); 2] = [
    (CompressionEncoding::Gzip, "gzip"),
    (CompressionEncoding::Zstd, "zstd"),
];

async fn channel(url: String) -> Channel {
    Channel::from_shared(url)
        .expect("endpoint")
        .connect()
        .await
        .expect("connect")
}

/// A client that compresses every request with `encoding` and accepts
/// answers compressed the same way.
async fn compressing_client(
    server: &TestServer,
    encoding: CompressionEncoding,
) -> SessionLogClient<Channel> {
    SessionLogClient::new(channel(server.url()).await)
        .send_compressed(encoding)
        .accept_compressed(encoding)
}

fn grpc_encoding(metadata: &tonic::metadata::MetadataMap) -> Option<String> {
    metadata
        .get("grpc-encoding")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

/// Entries big and alike enough that a compressor has something to do.
fn compressible(count: usize) -> Vec<pb::LogEntry> {
    (0..count)
        .map(|i| entry(format!("{i}: {}", "the same words again ".repeat(40))))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_appends_and_follows_are_served_and_answered_compressed() {
    let server = TestServer::start().await;
    for (encoding, name) in ENCODINGS {
        let mut client = compressing_client(&server, encoding).await;
        let session_id = start_session(&mut client, &format!("compressed-{name}")).await;

        let entries = compressible(20);
        let appended = client
            .append(common::request::append(&session_id, entries.clone()))
            .await
            .unwrap_or_else(|status| panic!("{name} append: {status:?}"));
        assert_eq!(
            grpc_encoding(appended.metadata()).as_deref(),
            Some(name),
            "the answer to a client accepting {name} is compressed with it"
        );
        assert_eq!(appended.into_inner().last_seq, 20);

        // A follower that compresses (its one request) and accepts
        // compressed batches sees every entry, then the live one.
        let response = client
            .follow(follow_request(&session_id, 0))
            .await
            .unwrap_or_else(|status| panic!("{name} follow: {status:?}"));
        assert_eq!(grpc_encoding(response.metadata()).as_deref(), Some(name));
        let mut events = response.into_inner();
        let mut seen = Vec::new();
        loop {
            match next_event(&mut events).await {
                Event::Batch(batch) => seen.extend(batch.entries),
                Event::CaughtUp(_) => break,
                other => panic!("unexpected event before caught_up: {other:?}"),
            }
        }
        let messages: Vec<&str> = seen.iter().map(|e| e.message.as_str()).collect();
        let sent: Vec<&str> = entries.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(messages, sent);
        common::append(&mut client, &session_id, &["live"]).await;
        match next_event(&mut events).await {
            Event::Batch(batch) => {
                assert_eq!(batch.entries.len(), 1);
                assert_eq!(batch.entries[0].message, "live");
                assert_eq!(batch.entries[0].seq, 21);
            }
            other => panic!("expected the live batch, got {other:?}"),
        }

        // A plain client reads what the compressing one wrote, and gets
        // its answers uncompressed (it did not say it accepts any).
        let mut plain = server.client().await;
        let read = plain
            .read(common::request::read(&session_id))
            .await
            .expect("plain read");
        assert_eq!(grpc_encoding(read.metadata()), None);
        assert_eq!(read_all(&mut plain, &session_id).await.len(), 21);
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_reflection_take_compressed_requests() {
    let server = TestServer::start().await;
    for (encoding, name) in ENCODINGS {
        let mut health = HealthClient::new(channel(server.url()).await)
            .send_compressed(encoding)
            .accept_compressed(encoding);
        let checked = health
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .unwrap_or_else(|status| panic!("{name} health check: {status:?}"));
        assert_eq!(grpc_encoding(checked.metadata()).as_deref(), Some(name));

        use tonic_reflection::pb::v1;
        let mut reflection =
            v1::server_reflection_client::ServerReflectionClient::new(channel(server.url()).await)
                .send_compressed(encoding)
                .accept_compressed(encoding);
        let list = v1::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
                String::new(),
            )),
        };
        let mut responses = reflection
            .server_reflection_info(futures::stream::iter([list]))
            .await
            .unwrap_or_else(|status| panic!("{name} reflection: {status:?}"))
            .into_inner();
        let listed = responses
            .message()
            .await
            .expect("a list response")
            .expect("one response per request");
        assert!(
            format!("{listed:?}").contains("sessionlog.v1.SessionLog"),
            "{listed:?}"
        );
    }
    server.shutdown().await;
}

fn export_request(session_id: &str, bodies: &[String]) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![kv("session.id", session_id), kv("service.name", "otel")],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: bodies
                    .iter()
                    .enumerate()
                    .map(|(n, body)| LogRecord {
                        time_unix_nano: 1_700_000_000_000_000_000 + n as u64,
                        severity_number: 9,
                        body: Some(AnyValue {
                            value: Some(AnyKind::StringValue(body.clone())),
                        }),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_otlp_exports_are_stored() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    for (encoding, name) in ENCODINGS {
        let mut otlp = LogsServiceClient::new(channel(server.url()).await)
            .send_compressed(encoding)
            .accept_compressed(encoding);
        let session_id = format!("otlp-{name}");
        let bodies: Vec<String> = (0..10)
            .map(|i| format!("{i} {}", "collector batch ".repeat(30)))
            .collect();
        let response = otlp
            .export(export_request(&session_id, &bodies))
            .await
            .unwrap_or_else(|status| panic!("{name} export: {status:?}"));
        assert_eq!(grpc_encoding(response.metadata()).as_deref(), Some(name));
        assert_eq!(
            response
                .into_inner()
                .partial_success
                .map(|p| p.rejected_log_records)
                .unwrap_or_default(),
            0
        );
        let stored: Vec<String> = read_all(&mut client, &session_id)
            .await
            .into_iter()
            .map(|entry| entry.message)
            .collect();
        assert_eq!(stored, bodies);
    }
    server.shutdown().await;
}

/// An OTLP receiver that reports, for each export, its `grpc-encoding`
/// header and its bodies.
struct Receiver {
    exports: mpsc::UnboundedSender<(Option<String>, Vec<String>)>,
}

#[tonic::async_trait]
impl LogsService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        let encoding = grpc_encoding(request.metadata());
        let bodies = request
            .into_inner()
            .resource_logs
            .into_iter()
            .flat_map(|resource| resource.scope_logs)
            .flat_map(|scope| scope.log_records)
            .filter_map(|record| match record.body?.value? {
                AnyKind::StringValue(text) => Some(text),
                _ => None,
            })
            .collect();
        let _ = self.exports.send((encoding, bodies));
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

/// Starts a receiver on an ephemeral loopback port; its URL, the exports it
/// gets, and what stops it.
async fn start_receiver(
    decompresses: bool,
) -> (
    String,
    mpsc::UnboundedReceiver<(Option<String>, Vec<String>)>,
    tokio::sync::oneshot::Sender<()>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let (exports, received) = mpsc::unbounded_channel();
    let mut service = LogsServiceServer::new(Receiver { exports });
    if decompresses {
        service = service
            .accept_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Zstd);
    }
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                async {
                    let _ = stopped.await;
                },
            ),
    );
    (url, received, stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_compresses_its_exports_as_configured() {
    for (compression, expected) in [
        (ForwardCompression::default(), Some("gzip")),
        (ForwardCompression::Zstd, Some("zstd")),
        (ForwardCompression::None, None),
    ] {
        let (url, mut received, stop) = start_receiver(true).await;
        let server = TestServer::builder()
            .configure(|settings| {
                settings.forward.targets = vec![url.clone()];
                settings.forward.linger = Duration::from_millis(10);
                settings.forward.compression = compression;
            })
            .start()
            .await;
        let mut client = server.client().await;
        let session_id = start_session(&mut client, "forwarded").await;
        common::append(&mut client, &session_id, &["one", "two"]).await;

        // The start record comes first; wait until both entries arrived.
        let mut bodies = Vec::new();
        tokio::time::timeout(Duration::from_secs(30), async {
            while !bodies.iter().any(|body: &String| body == "two") {
                let (encoding, exported) = received.recv().await.expect("the receiver runs");
                assert_eq!(
                    encoding.as_deref(),
                    expected,
                    "--forward-compression {compression:?}"
                );
                bodies.extend(exported);
            }
        })
        .await
        .expect("both entries forwarded within 30s");
        assert!(bodies.iter().any(|body| body == "one"), "{bodies:?}");
        server.shutdown().await;
        let _ = stop.send(());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_cannot_decompress_gets_every_record_uncompressed() {
    // An older sessionlog, or any receiver without gzip: it answers the
    // first gzipped export UNIMPLEMENTED, which is not retried; the
    // forwarder sends that export again uncompressed, and the rest too.
    let (url, mut received, stop) = start_receiver(false).await;
    let server = TestServer::builder()
        .configure(|settings| {
            settings.forward.targets = vec![url.clone()];
            settings.forward.linger = Duration::from_millis(10);
        })
        .start()
        .await;
    let mut client = server.client().await;
    let session_id = start_session(&mut client, "plain-target").await;
    common::append(&mut client, &session_id, &["one"]).await;
    let mut bodies = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), async {
        while !bodies.iter().any(|body: &String| body == "two") {
            let (encoding, exported) = received.recv().await.expect("the receiver runs");
            assert_eq!(encoding, None, "only uncompressed exports get through");
            bodies.extend(exported);
            if bodies.iter().any(|body| body == "one") && !bodies.iter().any(|b| b == "two") {
                common::append(&mut client, &session_id, &["two"]).await;
            }
        }
    })
    .await
    .expect("every entry forwarded within 30s");
    let entries: Vec<&String> = bodies
        .iter()
        .filter(|body| *body == "one" || *body == "two")
        .collect();
    assert_eq!(entries, ["one", "two"], "none dropped, none twice");
    server.shutdown().await;
    let _ = stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follow_with_compressed_answers_resumes_through_a_plain_stream() {
    // Compression changes only the frames: the cursor a compressed follow
    // ended on resumes a plain one with no gap.
    let server = TestServer::start().await;
    let mut compressed = compressing_client(&server, CompressionEncoding::Gzip).await;
    let session_id = start_session(&mut compressed, "resume").await;
    common::append(&mut compressed, &session_id, &["a", "b", "c"]).await;
    let mut events = follow(&mut compressed, follow_request(&session_id, 0)).await;
    let cursor = loop {
        if let Event::CaughtUp(caught_up) = next_event(&mut events).await {
            break caught_up.cursor;
        }
    };
    drop(events);
    common::append(&mut compressed, &session_id, &["d"]).await;
    let mut plain = server.client().await;
    let mut resumed = follow(&mut plain, follow_request(&session_id, cursor)).await;
    match resumed.next().await {
        Some(Ok(pb::FollowResponse {
            event: Some(Event::Batch(batch)),
        })) => {
            let seqs: Vec<u64> = batch.entries.iter().map(|e| e.seq).collect();
            assert_eq!(seqs, vec![4]);
        }
        other => panic!("expected the batch after the cursor, got {other:?}"),
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compressed_message_that_decompresses_past_the_limit_is_resource_exhausted() {
    let server = TestServer::builder()
        .configure(|settings| settings.limits.max_message_bytes = 64 << 10)
        .start()
        .await;
    let mut client = compressing_client(&server, CompressionEncoding::Gzip).await;
    let session_id = start_session(&mut client, "bomb").await;
    // A few KiB on the wire, far over the limit once inflated.
    let inflated = vec![entry("z".repeat(1 << 20))];
    let status = client
        .append(common::request::append(&session_id, inflated))
        .await
        .expect_err("refused");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("--max-message-size"),
        "{status:?}"
    );
    // Nothing of it was stored, and the session takes the next append.
    assert_eq!(
        common::append(&mut client, &session_id, &["after"]).await.1,
        1
    );
    server.shutdown().await;
}
