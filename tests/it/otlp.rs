//! OTLP logs in: exports through the OTLP client land in sessions with the
//! contract's mapping; rejections are reported in `partial_success`.

use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyKind;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost_types::value::Kind;
use sessionlog::client::Connection;
use sessionlog::pb;
use tonic::Code;

use crate::common;
use crate::common::{FsyncPolicy, TestServer, get_session, read_all};

fn kv(key: &str, value: AnyKind) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn text(value: &str) -> AnyKind {
    AnyKind::StringValue(value.into())
}

fn resource(attributes: Vec<KeyValue>) -> Option<Resource> {
    Some(Resource {
        attributes,
        ..Default::default()
    })
}

/// A record with a body, a severity and a timestamp unique to `n`.
fn record(n: u64, severity: i32, body: &str) -> LogRecord {
    LogRecord {
        time_unix_nano: 1_700_000_000_000_000_000 + n,
        severity_number: severity,
        body: Some(AnyValue {
            value: Some(text(body)),
        }),
        ..Default::default()
    }
}

fn request(
    resource: Option<Resource>,
    scope: &str,
    records: Vec<LogRecord>,
) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource,
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: scope.into(),
                    ..Default::default()
                }),
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

async fn export(
    server: &TestServer,
    request: ExportLogsServiceRequest,
) -> Result<ExportLogsServiceResponse, tonic::Status> {
    let connection = Connection::connect(&server.url(), None)
        .await
        .expect("connect");
    connection
        .otlp_logs()
        .export(request)
        .await
        .map(tonic::Response::into_inner)
}

fn rejected(response: &ExportLogsServiceResponse) -> (i64, String) {
    response
        .partial_success
        .as_ref()
        .map(|p| (p.rejected_log_records, p.error_message.clone()))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_starts_the_session_and_appends_its_records_in_order() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let mut warn = record(2, 13, "disk almost full");
    warn.attributes = vec![
        kv("sessionlog.format", text("disk almost full ({pct}%)")),
        kv("pct", AnyKind::IntValue(93)),
        kv("mount", text("/var")),
    ];
    warn.trace_id = (1..=16).collect();
    warn.span_id = (1..=8).collect();
    let records = vec![
        record(1, 5, "starting"),
        warn,
        record(3, 17, "write failed"),
        record(4, 21, "giving up"),
        record(5, 1, "trace detail"),
        record(6, 9, "still here"),
    ];
    let response = export(
        &server,
        request(
            resource(vec![
                kv("session.id", text("otlp-build-1")),
                kv("service.name", text("builder")),
                kv("sessionlog.job_id", text("job-9")),
                kv("sessionlog.meta.branch", text("main")),
                kv("process.pid", AnyKind::IntValue(1)),
            ]),
            "builder.disk",
            records,
        ),
    )
    .await
    .expect("export");
    assert_eq!(rejected(&response), (0, String::new()));

    let session = get_session(&mut client, "otlp-build-1").await;
    assert_eq!(session.app_name, "builder");
    assert_eq!(session.job_id, "job-9");
    assert_eq!(session.client_pid, 1);
    assert_eq!(session.state, pb::SessionState::Active as i32);
    assert_eq!(
        session.lease_ttl.map(|ttl| ttl.seconds),
        Some(600),
        "sessions started by OTLP get the --otlp-lease"
    );
    let metadata = session.metadata.expect("metadata");
    assert_eq!(
        metadata.fields["branch"].kind,
        Some(Kind::StringValue("main".into()))
    );

    let entries = read_all(&mut client, "otlp-build-1").await;
    let got: Vec<(u64, &str, i32)> = entries
        .iter()
        .map(|e| (e.seq, e.message.as_str(), e.level))
        .collect();
    assert_eq!(
        got,
        vec![
            (1, "starting", pb::Level::Debug as i32),
            (2, "disk almost full", pb::Level::Warn as i32),
            (3, "write failed", pb::Level::Error as i32),
            (4, "giving up", pb::Level::Critical as i32),
            (5, "trace detail", pb::Level::Trace as i32),
            (6, "still here", pb::Level::Info as i32),
        ]
    );
    let warn = &entries[1];
    assert_eq!(warn.logger, "builder.disk");
    assert_eq!(warn.format, "disk almost full ({pct}%)");
    let fields = &warn.fields.as_ref().expect("fields").fields;
    assert_eq!(fields["pct"].kind, Some(Kind::NumberValue(93.0)));
    assert_eq!(fields["mount"].kind, Some(Kind::StringValue("/var".into())));
    assert_eq!(warn.trace_id, (1..=16).collect::<Vec<u8>>());
    assert_eq!(warn.span_id, (1..=8).collect::<Vec<u8>>());
    let timestamp = warn.timestamp.expect("timestamp");
    assert_eq!((timestamp.seconds, timestamp.nanos), (1_700_000_000, 2));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_export_is_stored_once_and_later_exports_append() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let attributes = || resource(vec![kv("service.instance.id", text("instance-7"))]);
    let first = request(
        attributes(),
        "app",
        vec![record(1, 9, "one"), record(2, 9, "two")],
    );
    export(&server, first.clone()).await.expect("export");
    export(&server, first).await.expect("the same export again");
    export(
        &server,
        request(attributes(), "app", vec![record(3, 9, "three")]),
    )
    .await
    .expect("a later export");
    let entries = read_all(&mut client, "instance-7").await;
    assert_eq!(common::messages(&entries), ["one", "two", "three"]);
    assert_eq!(common::seqs(&entries), [1, 2, 3]);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_without_a_session_or_over_a_limit_are_rejected_honestly() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let nameless = export(
        &server,
        request(
            resource(vec![kv("service.name", text("anonymous"))]),
            "app",
            vec![record(1, 9, "a"), record(2, 9, "b")],
        ),
    )
    .await
    .expect("export");
    let (count, message) = rejected(&nameless);
    assert_eq!(count, 2);
    assert!(message.contains("session.id"), "{message}");

    let bad_id = export(
        &server,
        request(
            resource(vec![kv("session.id", text("spaces are not allowed"))]),
            "app",
            vec![record(1, 9, "a")],
        ),
    )
    .await
    .expect("export");
    let (count, message) = rejected(&bad_id);
    assert_eq!(count, 1);
    assert!(message.contains("session_id"), "{message}");

    let mut deep = AnyValue {
        value: Some(text("bottom")),
    };
    for _ in 0..20 {
        deep = AnyValue {
            value: Some(AnyKind::KvlistValue(
                opentelemetry_proto::tonic::common::v1::KeyValueList {
                    values: vec![KeyValue {
                        key: "k".into(),
                        value: Some(deep),
                        ..Default::default()
                    }],
                },
            )),
        };
    }
    let mut too_deep = record(2, 9, "too deep");
    too_deep.attributes = vec![KeyValue {
        key: "nested".into(),
        value: Some(deep),
        ..Default::default()
    }];
    let mut bad_trace = record(3, 9, "bad trace id");
    bad_trace.trace_id = vec![1, 2, 3];
    let mixed = export(
        &server,
        request(
            resource(vec![kv("session.id", text("mixed"))]),
            "app",
            vec![
                record(1, 9, "fine"),
                too_deep,
                bad_trace,
                record(4, 9, "also fine"),
            ],
        ),
    )
    .await
    .expect("export");
    let (count, message) = rejected(&mixed);
    assert_eq!(count, 2);
    assert!(message.contains("--max-struct-depth"), "{message}");
    assert!(message.contains("1 other reason"), "{message}");
    let entries = read_all(&mut client, "mixed").await;
    assert_eq!(common::messages(&entries), ["fine", "also fine"]);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_end_event_ends_the_session_with_its_reason() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let end = LogRecord {
        event_name: "sessionlog.session.ended".into(),
        body: Some(AnyValue {
            value: Some(text("exit code 3")),
        }),
        ..Default::default()
    };
    let start = LogRecord {
        event_name: "sessionlog.session.started".into(),
        ..Default::default()
    };
    let request = request(
        resource(vec![kv("session.id", text("ends-1"))]),
        "app",
        vec![
            start,
            record(1, 9, "working"),
            end,
            record(2, 9, "too late"),
        ],
    );
    let response = export(&server, request.clone()).await.expect("export");
    let (count, message) = rejected(&response);
    assert_eq!(count, 1, "the record after the end");
    assert!(message.contains("has ended"), "{message}");
    let session = get_session(&mut client, "ends-1").await;
    assert_eq!(session.state, pb::SessionState::Ended as i32);
    assert_eq!(session.end_reason, "exit code 3");
    let entries = read_all(&mut client, "ends-1").await;
    assert_eq!(entries.len(), 2, "the record and the end entry");
    assert_eq!(entries[0].message, "working");

    // An exporter retrying the whole request changes nothing.
    let retried = export(&server, request).await.expect("retry");
    assert_eq!(rejected(&retried).0, 1);
    assert_eq!(read_all(&mut client, "ends-1").await.len(), 2);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_need_the_token_like_every_other_call() {
    let dir = tempfile::tempdir().expect("temp dir");
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "otlp-token\n").expect("tokens");
    let path = tokens.clone();
    let server = TestServer::builder()
        .configure(move |settings| settings.auth_token_file = Some(path))
        .start()
        .await;
    let body = || {
        request(
            resource(vec![kv("session.id", text("guarded"))]),
            "app",
            vec![record(1, 9, "hello")],
        )
    };
    let refused = export(&server, body()).await.expect_err("no token");
    assert_eq!(refused.code(), Code::Unauthenticated);
    let connection = Connection::connect(&server.url(), Some(&tokens))
        .await
        .expect("connect");
    let accepted = connection
        .otlp_logs()
        .export(body())
        .await
        .expect("with the token")
        .into_inner();
    assert_eq!(rejected(&accepted).0, 0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_the_store_cannot_serve_is_rejected_and_the_rest_of_the_export_is_stored() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broken = || {
        request(
            resource(vec![kv("session.id", text("otlp-broken"))]),
            "app",
            vec![record(1, 9, "first"), record(2, 9, "second")],
        )
    };
    let server = TestServer::builder()
        .data_dir(dir.path())
        .fsync(FsyncPolicy::Always)
        .start()
        .await;
    let stored = export(&server, broken()).await.expect("the first export");
    assert_eq!(rejected(&stored).0, 0);
    server.shutdown().await;
    // Garble the batch record a retry of that export looks up, so the
    // retry meets a store error no retry can cure (INTERNAL inside).
    {
        let db = common::open_sled(dir.path());
        let log = db.open_tree("log/otlp-broken").expect("the session's log");
        let batch_records: Vec<_> = log
            .scan_prefix([0xff, b'b'])
            .keys()
            .map(|key| key.expect("key"))
            .collect();
        assert_eq!(batch_records.len(), 1, "one batch record");
        for key in batch_records {
            log.insert(key, vec![0xff; 8]).expect("garble");
        }
        db.flush().expect("flush");
    }
    let server = TestServer::builder()
        .data_dir(dir.path())
        .fsync(FsyncPolicy::Always)
        .start()
        .await;
    let mut client = server.client().await;
    let mut retried = broken();
    retried.resource_logs.extend(
        request(
            resource(vec![kv("session.id", text("otlp-healthy"))]),
            "app",
            vec![record(3, 9, "kept")],
        )
        .resource_logs,
    );
    let response = export(&server, retried)
        .await
        .expect("one session's failure for good does not fail the export");
    let (count, reason) = rejected(&response);
    assert_eq!(count, 2, "the broken session's records, rejected: {reason}");
    assert!(!reason.is_empty());
    let healthy: Vec<String> = read_all(&mut client, "otlp-healthy")
        .await
        .into_iter()
        .map(|entry| entry.message)
        .collect();
    assert_eq!(healthy, ["kept"]);
    server.shutdown().await;
}

/// A server closing for shutdown answers an export with UNAVAILABLE, which
/// an exporter (our forwarder among them) retries, never with a code it
/// drops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_while_the_server_closes_is_unavailable() {
    let server = TestServer::start().await;
    let body = |n: u64| {
        request(
            resource(vec![kv("session.id", text("otlp-closing"))]),
            "app",
            vec![record(n, 9, "line")],
        )
    };
    export(&server, body(1)).await.expect("before the shutdown");
    let sessions = server.sessions.clone();
    tokio::task::spawn_blocking(move || sessions.save_shutdown_counters())
        .await
        .expect("joined")
        .expect("saved");
    let refused = export(&server, body(2))
        .await
        .expect_err("writes are closed");
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_over_the_record_limit_is_refused_whole_and_stores_nothing() {
    let server = TestServer::builder()
        .configure(|settings| settings.limits.max_otlp_records = 5)
        .start()
        .await;
    let mut client = server.client().await;
    let records = |count: u64| (0..count).map(|n| record(n, 9, "r")).collect();
    let session = || resource(vec![kv("session.id", text("capped"))]);
    // Six records across two resources of the same session: over five.
    let mut over = request(session(), "app", records(3));
    over.resource_logs
        .extend(request(session(), "app", records(3)).resource_logs);
    let status = export(&server, over).await.expect_err("refused");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("--max-otlp-records"),
        "{}",
        status.message()
    );
    let missing = client
        .get_session(pb::GetSessionRequest {
            session_id: "capped".into(),
        })
        .await
        .expect_err("nothing stored");
    assert_eq!(missing.code(), Code::NotFound);

    let response = export(&server, request(session(), "app", records(5)))
        .await
        .expect("five records are within the limit");
    assert_eq!(rejected(&response), (0, String::new()));
    assert_eq!(read_all(&mut client, "capped").await.len(), 5);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_metadata_over_its_size_is_rejected_and_starts_nothing() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let big = "m".repeat(sessionlog::server::Limits::default().max_metadata_bytes);
    let attributes = vec![
        kv("session.id", text("meta-flood")),
        kv("sessionlog.meta.blob", text(&big)),
    ];
    let response = export(
        &server,
        request(resource(attributes), "app", vec![record(1, 9, "r")]),
    )
    .await
    .expect("the export is answered");
    let (count, message) = rejected(&response);
    assert_eq!(count, 1);
    assert!(message.contains("--max-metadata-size"), "{message}");
    let missing = client
        .get_session(pb::GetSessionRequest {
            session_id: "meta-flood".into(),
        })
        .await
        .expect_err("nothing stored");
    assert_eq!(missing.code(), Code::NotFound);
    server.shutdown().await;
}
