//! OTLP/HTTP logs in (`POST /v1/logs` on the HTTP listener): protobuf and
//! JSON bodies, gzip and zstd, answers in the request's encoding, the
//! HTTP statuses an OTLP exporter acts on, tokens, and the one intake
//! behind gRPC and HTTP (an export sent both ways is stored once).
//! `--otlp-session-from` makes sessions from attributes.

use std::io::Write as _;

use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyKind;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message as _;
use prost_types::value::Kind;
use sessionlog::client::Connection;
use sessionlog::pb;

use crate::common;
use crate::common::http::{BinaryAnswer, post};
use crate::common::request::kv;
use crate::common::{TestServer, get_session, read_all};

const PROTOBUF: (&str, &str) = ("Content-Type", "application/x-protobuf");
const JSON: (&str, &str) = ("Content-Type", "application/json");

fn record(n: u64, body: &str, attributes: Vec<KeyValue>) -> LogRecord {
    LogRecord {
        time_unix_nano: 1_700_000_000_000_000_000 + n,
        severity_number: 9,
        body: Some(AnyValue {
            value: Some(AnyKind::StringValue(body.into())),
        }),
        attributes,
        ..Default::default()
    }
}

fn export_of(resource: Vec<KeyValue>, records: Vec<LogRecord>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: resource,
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: "app".into(),
                    ..Default::default()
                }),
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).expect("gzip");
    encoder.finish().expect("gzip")
}

fn decoded(answer: &BinaryAnswer) -> ExportLogsServiceResponse {
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(
        answer.header("content-type"),
        Some("application/x-protobuf")
    );
    ExportLogsServiceResponse::decode(answer.body.as_slice()).expect("a protobuf answer")
}

/// The `google.rpc.Status` message of a protobuf error body.
fn status_message(answer: &BinaryAnswer) -> String {
    #[derive(Clone, PartialEq, prost::Message)]
    struct RpcStatus {
        #[prost(int32, tag = "1")]
        code: i32,
        #[prost(string, tag = "2")]
        message: String,
    }
    RpcStatus::decode(answer.body.as_slice())
        .unwrap_or_else(|err| panic!("not a google.rpc.Status ({err}): {answer:?}"))
        .message
}

fn http(server: &TestServer) -> std::net::SocketAddr {
    server.http_addr.expect("started with http")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gzip_protobuf_export_is_stored_and_the_same_export_over_grpc_is_not_again() {
    let server = TestServer::builder().http().start().await;
    let mut client = server.client().await;
    let export = export_of(
        vec![kv("session.id", "http-1"), kv("service.name", "web")],
        vec![record(1, "one", vec![]), record(2, "two", vec![])],
    );
    let answer = post(
        http(&server),
        "/v1/logs",
        &[PROTOBUF, ("Content-Encoding", "gzip")],
        &gzip(&export.encode_to_vec()),
    )
    .await;
    assert_eq!(decoded(&answer).partial_success, None);
    let session = get_session(&mut client, "http-1").await;
    assert_eq!(session.app_name, "web");
    assert_eq!(session.lease_ttl.map(|ttl| ttl.seconds), Some(600));

    // The same records over gRPC: one intake, one dedupe.
    Connection::connect(&server.url(), None)
        .await
        .expect("connect")
        .otlp_logs()
        .export(export)
        .await
        .expect("grpc export");
    let entries = read_all(&mut client, "http-1").await;
    assert_eq!(common::messages(&entries), ["one", "two"]);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_export_reads_hex_ids_string_integers_and_zstd() {
    let server = TestServer::builder().http().start().await;
    let mut client = server.client().await;
    let body = serde_json::json!({
        "resourceLogs": [{
            "resource": {"attributes": [
                {"key": "session.id", "value": {"stringValue": "json-1"}},
                {"key": "service.name", "value": {"stringValue": "api"}}
            ]},
            "scopeLogs": [{
                "scope": {"name": "api.http"},
                "logRecords": [{
                    "timeUnixNano": "1700000000000000005",
                    "severityNumber": 13,
                    "severityText": "WARN",
                    "body": {"stringValue": "slow request"},
                    "attributes": [
                        {"key": "ms", "value": {"intValue": "950"}},
                        {"key": "ok", "value": {"boolValue": false}}
                    ],
                    "traceId": "0102030405060708090a0b0c0d0e0f10",
                    "spanId": "0102030405060708",
                    "someFutureField": 1
                }]
            }]
        }]
    });
    let compressed = zstd::encode_all(body.to_string().as_bytes(), 3).expect("zstd");
    let answer = post(
        http(&server),
        "/v1/logs",
        &[JSON, ("Content-Encoding", "zstd")],
        &compressed,
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.header("content-type"), Some("application/json"));
    assert_eq!(answer.body, b"{}");
    let entries = read_all(&mut client, "json-1").await;
    assert_eq!(entries.len(), 1);
    let entry = &entries[0];
    assert_eq!(
        (entry.message.as_str(), entry.logger.as_str(), entry.level),
        ("slow request", "api.http", pb::Level::Warn as i32)
    );
    assert_eq!(entry.trace_id, (1..=16).collect::<Vec<u8>>());
    assert_eq!(entry.span_id, (1..=8).collect::<Vec<u8>>());
    assert_eq!(entry.timestamp.map(|t| t.nanos), Some(5));
    let fields = &entry.fields.as_ref().expect("fields").fields;
    assert_eq!(fields["ms"].kind, Some(Kind::NumberValue(950.0)));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_records_come_back_as_partial_success_in_json() {
    let server = TestServer::builder().http().start().await;
    let mut client = server.client().await;
    let id = common::start_session(&mut client, "app").await;
    common::end_session(&mut client, &id, "done").await;
    let body = serde_json::json!({"resourceLogs": [
        {"resource": {"attributes": [{"key": "session.id", "value": {"stringValue": id}}]},
         "scopeLogs": [{"logRecords": [{"body": {"stringValue": "late"}}]}]},
        {"resource": {"attributes": [{"key": "session.id", "value": {"stringValue": "fresh"}}]},
         "scopeLogs": [{"logRecords": [{"body": {"stringValue": "kept"}}]}]}
    ]});
    let answer = post(
        http(&server),
        "/v1/logs",
        &[JSON],
        body.to_string().as_bytes(),
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let json: serde_json::Value = serde_json::from_slice(&answer.body).expect("json");
    assert_eq!(json["partialSuccess"]["rejectedLogRecords"], "1", "{json}");
    assert!(
        json["partialSuccess"]["errorMessage"]
            .as_str()
            .is_some_and(|m| m.contains("ended")),
        "{json}"
    );
    assert_eq!(
        common::messages(&read_all(&mut client, "fresh").await),
        ["kept"]
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_are_400_unknown_types_415_and_limits_413() {
    let server = TestServer::builder()
        .http()
        .configure(|settings| {
            settings.limits.max_message_bytes = 64 << 10;
            settings.limits.max_otlp_records = 3;
        })
        .start()
        .await;
    let addr = http(&server);
    let malformed = post(addr, "/v1/logs", &[PROTOBUF], b"\xff\xff\xff").await;
    assert_eq!(malformed.status, 400, "{malformed:?}");
    assert!(status_message(&malformed).contains("protobuf"));
    let not_json = post(addr, "/v1/logs", &[JSON], b"{\"resourceLogs\": 7}").await;
    assert_eq!(not_json.status, 400, "{not_json:?}");
    let json: serde_json::Value = serde_json::from_slice(&not_json.body).expect("json");
    assert_eq!(json["code"], 3);
    let not_gzip = post(
        addr,
        "/v1/logs",
        &[PROTOBUF, ("Content-Encoding", "gzip")],
        b"plain",
    )
    .await;
    assert_eq!(not_gzip.status, 400, "{not_gzip:?}");
    let text = post(addr, "/v1/logs", &[("Content-Type", "text/plain")], b"x").await;
    assert_eq!(text.status, 415, "{text:?}");
    let brotli = post(
        addr,
        "/v1/logs",
        &[PROTOBUF, ("Content-Encoding", "br")],
        b"x",
    )
    .await;
    assert_eq!(brotli.status, 415, "{brotli:?}");

    let big = vec![0u8; 65 << 10];
    let too_big = post(addr, "/v1/logs", &[PROTOBUF], &big).await;
    assert_eq!(too_big.status, 413, "{too_big:?}");
    assert!(status_message(&too_big).contains("--max-message-size"));
    // Small as sent, too large once inflated.
    let bomb = post(
        addr,
        "/v1/logs",
        &[PROTOBUF, ("Content-Encoding", "gzip")],
        &gzip(&big),
    )
    .await;
    assert_eq!(bomb.status, 413, "{bomb:?}");
    let records = (1..=4).map(|n| record(n, "x", vec![])).collect();
    let many = export_of(vec![kv("session.id", "many")], records);
    let refused = post(addr, "/v1/logs", &[PROTOBUF], &many.encode_to_vec()).await;
    assert_eq!(refused.status, 413, "{refused:?}");
    assert_eq!(refused.header("retry-after"), None);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_need_the_servers_token_and_closed_writes_are_503_with_retry_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "s3cret\n").expect("tokens");
    let server = TestServer::builder()
        .http()
        .configure(|settings| settings.auth_token_file = Some(tokens))
        .start()
        .await;
    let addr = http(&server);
    let body = |n| export_of(vec![kv("session.id", "tok")], vec![record(n, "x", vec![])]);
    let anonymous = post(addr, "/v1/logs", &[PROTOBUF], &body(1).encode_to_vec()).await;
    assert_eq!(anonymous.status, 401, "{anonymous:?}");
    let wrong = ("Authorization", "Bearer nope");
    let refused = post(
        addr,
        "/v1/logs",
        &[PROTOBUF, wrong],
        &body(1).encode_to_vec(),
    )
    .await;
    assert_eq!(refused.status, 401, "{refused:?}");
    let token = ("Authorization", "Bearer s3cret");
    let stored = post(
        addr,
        "/v1/logs",
        &[PROTOBUF, token],
        &body(1).encode_to_vec(),
    )
    .await;
    assert_eq!(decoded(&stored).partial_success, None);

    let sessions = server.sessions.clone();
    tokio::task::spawn_blocking(move || sessions.save_shutdown_counters())
        .await
        .expect("joined")
        .expect("saved");
    let closed = post(
        addr,
        "/v1/logs",
        &[PROTOBUF, token],
        &body(2).encode_to_vec(),
    )
    .await;
    assert_eq!(closed.status, 503, "{closed:?}");
    assert_eq!(closed.header("retry-after"), Some("1"));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_from_attributes_makes_one_session_per_container() {
    let server = TestServer::builder()
        .http()
        .configure(|settings| {
            settings.otlp_session_from = vec!["k8s.pod.uid".into(), "k8s.container.name".into()];
        })
        .start()
        .await;
    let mut client = server.client().await;
    let in_container = |container: &str| {
        vec![
            kv("k8s.pod.uid", "9f2c-11"),
            kv("k8s.container.name", container),
        ]
    };
    let records = vec![
        record(1, "web 1", in_container("web")),
        record(2, "proxy 1", in_container("proxy")),
        record(3, "web 2", in_container("web")),
        record(4, "nowhere", vec![]),
    ];
    let answer = post(
        http(&server),
        "/v1/logs",
        &[PROTOBUF],
        &export_of(vec![kv("k8s.namespace.name", "shop")], records).encode_to_vec(),
    )
    .await;
    let partial = decoded(&answer).partial_success.expect("one rejected");
    assert_eq!(partial.rejected_log_records, 1);
    assert!(partial.error_message.contains("--otlp-session-from"));
    let web = get_session(&mut client, "9f2c-11:web").await;
    assert_eq!(web.app_name, "web");
    assert_eq!(
        common::messages(&read_all(&mut client, "9f2c-11:web").await),
        ["web 1", "web 2"]
    );
    assert_eq!(
        common::messages(&read_all(&mut client, "9f2c-11:proxy").await),
        ["proxy 1"]
    );
    // Once a key's session ended, its records go on in the next one.
    common::end_session(&mut client, "9f2c-11:web", "lease expired").await;
    let later = export_of(vec![], vec![record(6, "web 3", in_container("web"))]);
    let answer = post(
        http(&server),
        "/v1/logs",
        &[PROTOBUF],
        &later.encode_to_vec(),
    )
    .await;
    assert_eq!(decoded(&answer).partial_success, None);
    assert_eq!(
        common::messages(&read_all(&mut client, "9f2c-11:web.2").await),
        ["web 3"]
    );
    // A resource's own `session.id` still wins.
    let named = export_of(
        vec![kv("session.id", "named")],
        vec![record(5, "mine", in_container("web"))],
    );
    let answer = post(
        http(&server),
        "/v1/logs",
        &[PROTOBUF],
        &named.encode_to_vec(),
    )
    .await;
    assert_eq!(decoded(&answer).partial_success, None);
    assert_eq!(
        common::messages(&read_all(&mut client, "named").await),
        ["mine"]
    );
    server.shutdown().await;
}
