//! Hostile and careless input: every limit answers with the contract's code
//! and a message naming it; garbage frames, deep nesting, invalid UTF-8 and
//! huge batches are refused; and afterwards the server still serves and the
//! data stored before is intact.

use std::time::Duration;

use prost::bytes::{Buf, BufMut, Bytes};
use prost_types::value::Kind;
use prost_types::{Struct, Value};
use sessionlog::pb;
use sessionlog::server::Limits;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::{Code, Status};
use tonic_types::StatusExt;

use crate::common::request;
use crate::common::{Client, TestServer, append, entry, read_all, start_session};

/// Sends bytes as they are, so a test can put anything in a gRPC frame.
#[derive(Debug, Default, Clone)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

async fn raw_call(server: &TestServer, method: &str, body: Vec<u8>) -> Result<Bytes, Status> {
    let channel = tonic::transport::Endpoint::from_shared(server.url())
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("ready");
    let path = if method.starts_with('/') {
        method.to_owned()
    } else {
        format!("/sessionlog.v1.SessionLog/{method}")
    };
    let path = path.parse().expect("path");
    grpc.unary(tonic::Request::new(Bytes::from(body)), path, RawCodec)
        .await
        .map(tonic::Response::into_inner)
}

fn key(field: u32, wire_type: u32) -> u8 {
    u8::try_from(field << 3 | wire_type).expect("small field")
}

fn varint(mut value: usize, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push(u8::try_from(value & 0x7f).expect("7 bits") | 0x80);
        value >>= 7;
    }
    out.push(u8::try_from(value).expect("7 bits"));
}

fn length_delimited(field: u32, payload: &[u8], out: &mut Vec<u8>) {
    out.push(key(field, 2));
    varint(payload.len(), out);
    out.extend_from_slice(payload);
}

/// An `AppendRequest` whose one entry's `fields` nest `depth` levels deep,
/// encoded by hand (a generated encoder would recurse that deep).
fn deeply_nested_append(session_id: &str, depth: usize) -> Vec<u8> {
    let mut value = Vec::new(); // Value{} (null)
    for _ in 0..depth {
        // Struct { fields: { "n": value } }
        let mut map_entry = Vec::new();
        length_delimited(1, b"n", &mut map_entry);
        length_delimited(2, &value, &mut map_entry);
        let mut structure = Vec::new();
        length_delimited(1, &map_entry, &mut structure);
        // Value { struct_value = 5 }
        value.clear();
        length_delimited(5, &structure, &mut value);
    }
    // The innermost wrapper is a Value; `fields` wants a Struct around it.
    let mut map_entry = Vec::new();
    length_delimited(1, b"n", &mut map_entry);
    length_delimited(2, &value, &mut map_entry);
    let mut fields = Vec::new();
    length_delimited(1, &map_entry, &mut fields);
    let mut log_entry = Vec::new();
    length_delimited(7, &fields, &mut log_entry);
    let mut request = Vec::new();
    length_delimited(1, session_id.as_bytes(), &mut request);
    length_delimited(2, &log_entry, &mut request);
    request
}

fn nested_struct(depth: usize) -> Struct {
    let mut inner = Struct::default();
    for _ in 0..depth {
        let mut outer = Struct::default();
        outer.fields.insert(
            "n".into(),
            Value {
                kind: Some(Kind::StructValue(inner)),
            },
        );
        inner = outer;
    }
    inner
}

#[track_caller]
fn assert_refused<T: std::fmt::Debug>(result: Result<T, Status>, code: Code, names: &str) {
    let status = result.expect_err("refused");
    assert_eq!(status.code(), code, "{status:?}");
    assert!(
        status.message().contains(names),
        "the message names `{names}`: {}",
        status.message()
    );
}

/// Data appended before the abuse, and checked after it.
async fn stored_before(client: &mut Client) -> String {
    let id = start_session(client, "victim").await;
    append(client, &id, &["before-1", "before-2"]).await;
    id
}

async fn still_intact(server: &TestServer, id: &str) {
    let mut client = server.client().await;
    let messages: Vec<String> = read_all(&mut client, id)
        .await
        .into_iter()
        .map(|e| e.message)
        .collect();
    assert_eq!(messages, ["before-1", "before-2"]);
    append(&mut client, id, &["after"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_limit_is_refused_with_its_name() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let id = stored_before(&mut client).await;
    let limits = Limits::default();
    let long_name = "n".repeat(limits.max_name_bytes + 1);
    let long_text = "t".repeat(limits.max_text_bytes + 1);
    let append_one = |entry: pb::LogEntry| request::append(&id, vec![entry]);
    assert_refused(
        client
            .start_session(pb::StartSessionRequest {
                app_name: long_name.clone(),
                ..Default::default()
            })
            .await,
        Code::ResourceExhausted,
        "--max-name-length",
    );
    assert_refused(
        client
            .start_session(pb::StartSessionRequest {
                metadata: Some(nested_struct(limits.max_struct_depth + 1)),
                ..Default::default()
            })
            .await,
        Code::ResourceExhausted,
        "--max-struct-depth",
    );
    let mut wide = Struct::default();
    for index in 0..=limits.max_struct_values {
        wide.fields.insert(
            format!("k{index}"),
            Value {
                kind: Some(Kind::NullValue(0)),
            },
        );
    }
    assert_refused(
        client
            .update_session(request::update(&id, Some(wide)))
            .await,
        Code::ResourceExhausted,
        "--max-struct-values",
    );
    assert_refused(
        client
            .append(append_one(pb::LogEntry {
                logger: long_name.clone(),
                ..entry("x")
            }))
            .await,
        Code::ResourceExhausted,
        "--max-name-length",
    );
    assert_refused(
        client
            .append(append_one(pb::LogEntry {
                format: long_text.clone(),
                ..entry("x")
            }))
            .await,
        Code::ResourceExhausted,
        "--max-text-length",
    );
    assert_refused(
        client
            .append(append_one(entry("m".repeat(limits.max_entry_bytes + 1))))
            .await,
        Code::ResourceExhausted,
        "--max-entry-size",
    );
    assert_refused(
        client
            .append(request::append(
                &id,
                vec![entry("x"); limits.max_batch_entries + 1],
            ))
            .await,
        Code::ResourceExhausted,
        "--max-batch-entries",
    );
    assert_refused(
        client.end_session(request::end(&id, &long_text)).await,
        Code::ResourceExhausted,
        "--max-text-length",
    );
    assert_refused(
        client
            .read(pb::ReadRequest {
                session_id: id.clone(),
                filter: Some(pb::LogFilter {
                    contains: long_text.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await,
        Code::ResourceExhausted,
        "--max-text-length",
    );
    assert_refused(
        client
            .list_sessions(pb::ListSessionsRequest {
                job_id: long_name.clone(),
                ..Default::default()
            })
            .await,
        Code::ResourceExhausted,
        "--max-name-length",
    );
    still_intact(&server, &id).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_64_mib_batch_is_resource_exhausted_naming_the_limit() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let id = stored_before(&mut client).await;
    let megabyte = "x".repeat(1 << 20);
    let huge = request::append(&id, vec![entry(megabyte); 64]);
    assert_refused(
        client.append(huge).await,
        Code::ResourceExhausted,
        "--max-message-size",
    );
    still_intact(&server, &id).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_invalid_utf8_and_deep_nesting_are_invalid_argument() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let id = stored_before(&mut client).await;
    let garbage: Vec<u8> = (0..4_096u32)
        .map(|i| u8::try_from((i * 131 + 7) % 256).expect("byte"))
        .collect();
    for method in [
        "Append",
        "StartSession",
        "Read",
        "ListSessions",
        "EndSession",
        "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
    ] {
        assert_refused(
            raw_call(&server, method, garbage.clone()).await,
            Code::InvalidArgument,
            "protobuf",
        );
    }
    // session_id (field 1) with bytes that are not UTF-8.
    let mut invalid_utf8 = Vec::new();
    length_delimited(1, &[0xff, 0xfe, b'a'], &mut invalid_utf8);
    assert_refused(
        raw_call(&server, "GetSession", invalid_utf8).await,
        Code::InvalidArgument,
        "protobuf",
    );
    // 10,000 levels: refused at decode, without a stack overflow.
    assert_refused(
        raw_call(&server, "Append", deeply_nested_append(&id, 10_000)).await,
        Code::InvalidArgument,
        "protobuf",
    );
    // 20 levels decode but pass the server's depth limit.
    assert_refused(
        raw_call(&server, "Append", deeply_nested_append(&id, 20)).await,
        Code::ResourceExhausted,
        "--max-struct-depth",
    );
    // A truncated frame body: a length prefix promising more than is there.
    let mut truncated = Vec::new();
    truncated.push(key(1, 2));
    varint(1_000, &mut truncated);
    truncated.extend_from_slice(b"short");
    assert_refused(
        raw_call(&server, "Append", truncated).await,
        Code::InvalidArgument,
        "protobuf",
    );
    still_intact(&server, &id).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_follow_streams_are_refused_with_retry_info() {
    let server = TestServer::builder()
        .configure(|settings| {
            settings.limits.max_follows_per_session = 2;
            settings.limits.max_streams = 3;
        })
        .start()
        .await;
    let mut client = server.client().await;
    let id = start_session(&mut client, "popular").await;
    let other = start_session(&mut client, "other").await;
    let follow = |session_id: &str| pb::FollowRequest {
        session_id: session_id.to_owned(),
        ..Default::default()
    };
    let first = client
        .follow(follow(&id))
        .await
        .expect("first")
        .into_inner();
    let _second = client
        .follow(follow(&id))
        .await
        .expect("second")
        .into_inner();
    let refused = client
        .follow(follow(&id))
        .await
        .expect_err("third on one session");
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert!(
        refused.message().contains("--max-follows-per-session"),
        "{}",
        refused.message()
    );
    let retry = refused
        .get_error_details()
        .retry_info()
        .and_then(|info| info.retry_delay);
    assert!(
        retry.is_some_and(|delay| delay > Duration::ZERO),
        "RetryInfo present"
    );
    let _third = client
        .follow(follow(&other))
        .await
        .expect("another session")
        .into_inner();
    let total = client
        .watch_sessions(pb::WatchSessionsRequest::default())
        .await
        .expect_err("fourth stream in all");
    assert!(
        total.message().contains("--max-streams"),
        "{}",
        total.message()
    );
    drop(first);
    // The slot comes back once the server sees the stream gone.
    let mut reopened = None;
    for _ in 0..100 {
        match client.follow(follow(&id)).await {
            Ok(stream) => {
                reopened = Some(stream);
                break;
            }
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    assert!(reopened.is_some(), "a closed stream frees its slot");
    server.shutdown().await;
}

#[tokio::test]
async fn dot_session_ids_are_refused_by_every_call() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    for id in [".", ".."] {
        let started = client
            .start_session(pb::StartSessionRequest {
                session_id: id.to_owned(),
                app_name: "dots".to_owned(),
                ..Default::default()
            })
            .await
            .expect_err("start refused");
        assert_eq!(started.code(), Code::InvalidArgument, "{id}");
        let appended = client
            .append(pb::AppendRequest {
                session_id: id.to_owned(),
                entries: vec![entry("x")],
                ..Default::default()
            })
            .await
            .expect_err("append refused");
        assert_eq!(appended.code(), Code::InvalidArgument, "{id}");
        let got = client
            .get_session(pb::GetSessionRequest {
                session_id: id.to_owned(),
            })
            .await
            .expect_err("get refused");
        assert_eq!(got.code(), Code::InvalidArgument, "{id}");
        let read = client
            .read(pb::ReadRequest {
                session_id: id.to_owned(),
                ..Default::default()
            })
            .await
            .expect_err("read refused");
        assert_eq!(read.code(), Code::InvalidArgument, "{id}");
    }
    // Dots inside an id stay valid.
    let id = client
        .start_session(pb::StartSessionRequest {
            session_id: "...".to_owned(),
            app_name: "dots".to_owned(),
            ..Default::default()
        })
        .await
        .expect("three dots are an id")
        .into_inner()
        .id;
    assert_eq!(id, "...");
    server.shutdown().await;
}

/// An OTLP export of `records` empty records for session `session_id`,
/// encoded by hand (an empty record is two bytes on the wire; a generated
/// encoder would build each in memory first).
fn empty_records_export(session_id: &str, records: usize) -> Vec<u8> {
    flood_export(session_id, records, |scope_logs| {
        length_delimited(2, &[], scope_logs);
    })
}

/// An OTLP export of one record with `attributes` empty attributes.
fn empty_attributes_export(session_id: &str, attributes: usize) -> Vec<u8> {
    let mut record = Vec::with_capacity(attributes * 2);
    for _ in 0..attributes {
        length_delimited(6, &[], &mut record);
    }
    flood_export(session_id, 1, |scope_logs| {
        length_delimited(2, &record, scope_logs);
    })
}

/// An export for `session_id` whose one scope holds what `push` writes,
/// `times` times.
fn flood_export(session_id: &str, times: usize, mut push: impl FnMut(&mut Vec<u8>)) -> Vec<u8> {
    // KeyValue { key: "session.id", value: AnyValue { string_value } }
    let mut value = Vec::new();
    length_delimited(1, session_id.as_bytes(), &mut value);
    let mut attribute = Vec::new();
    length_delimited(1, b"session.id", &mut attribute);
    length_delimited(2, &value, &mut attribute);
    let mut resource = Vec::new();
    length_delimited(1, &attribute, &mut resource);
    let mut scope_logs = Vec::with_capacity(16 << 20);
    for _ in 0..times {
        push(&mut scope_logs);
    }
    let mut resource_logs = Vec::with_capacity(scope_logs.len() + 64);
    length_delimited(1, &resource, &mut resource_logs);
    length_delimited(2, &scope_logs, &mut resource_logs);
    let mut export = Vec::with_capacity(resource_logs.len() + 8);
    length_delimited(1, &resource_logs, &mut export);
    export
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_exports_of_millions_of_empty_records_or_attributes_are_refused_unread() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let id = stored_before(&mut client).await;
    // Just under the 16 MiB message limit: 8 million records, or one
    // record of 8 million attributes.
    let many = ((16 << 20) - 128) / 2;
    for (export, names) in [
        (empty_records_export("flood", many), "log records"),
        (empty_attributes_export("flood", many), "attributes"),
    ] {
        assert!(export.len() <= 16 << 20);
        let status = raw_call(
            &server,
            "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
            export,
        )
        .await
        .expect_err("refused");
        refused_unread(&status, names);
    }
    assert_refused(
        client.get_session(request::get("flood")).await,
        Code::NotFound,
        "flood",
    );
    still_intact(&server, &id).await;
    server.shutdown().await;
}

/// An OTLP export refused for its size, in a way exporters do not retry.
fn refused_unread(status: &Status, names: &str) {
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("--max-otlp-records"),
        "{}",
        status.message()
    );
    assert!(status.message().contains(names), "{}", status.message());
    // No RetryInfo: an OTLP exporter drops the export rather than retry it.
    assert!(status.get_error_details().retry_info().is_none());
}

/// Metadata of `keys` keys `{prefix}{n}`, each holding `value`.
fn metadata_of(prefix: &str, keys: usize, value: &str) -> Struct {
    let mut metadata = Struct::default();
    for n in 0..keys {
        metadata.fields.insert(
            format!("{prefix}{n}"),
            Value {
                kind: Some(Kind::StringValue(value.to_owned())),
            },
        );
    }
    metadata
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_over_its_size_is_refused_on_start_and_after_an_update_merges() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let max = Limits::default().max_metadata_bytes;
    let big = "b".repeat(max);
    assert_refused(
        client
            .start_session(pb::StartSessionRequest {
                session_id: "too-big".into(),
                metadata: Some(metadata_of("k", 1, &big)),
                ..Default::default()
            })
            .await,
        Code::ResourceExhausted,
        "--max-metadata-size",
    );
    assert_refused(
        client.get_session(request::get("too-big")).await,
        Code::NotFound,
        "too-big",
    );

    // Two halves pass alone; merged, they are over.
    let half = "h".repeat(max / 2);
    let id = client
        .start_session(pb::StartSessionRequest {
            metadata: Some(metadata_of("a", 1, &half)),
            ..Default::default()
        })
        .await
        .expect("half fits")
        .into_inner()
        .id;
    assert_refused(
        client
            .update_session(request::update(&id, Some(metadata_of("b", 1, &half))))
            .await,
        Code::ResourceExhausted,
        "--max-metadata-size",
    );
    let kept = client
        .get_session(request::get(&id))
        .await
        .expect("get")
        .into_inner()
        .metadata
        .expect("metadata");
    assert_eq!(kept, metadata_of("a", 1, &half), "nothing stored");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_cannot_merge_metadata_past_the_value_limit() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let max_values = Limits::default().max_struct_values;
    let id = start_session(&mut client, "merge").await;
    let mut refused = 0;
    for round in 0..5 {
        let update = metadata_of(&format!("r{round}-"), max_values, "v");
        match client
            .update_session(request::update(&id, Some(update)))
            .await
        {
            Ok(_) => assert_eq!(round, 0, "only the first update fits"),
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted);
                assert!(
                    status.message().contains("--max-struct-values"),
                    "{}",
                    status.message()
                );
                refused += 1;
            }
        }
    }
    assert_eq!(refused, 4);
    let metadata = client
        .get_session(request::get(&id))
        .await
        .expect("get")
        .into_inner()
        .metadata
        .expect("metadata");
    assert_eq!(metadata.fields.len(), max_values);
    server.shutdown().await;
}

/// A struct with a `Value` of no kind (what protobufjs sends for a
/// misspelt oneof) down a struct and a list, at `a.b[1]`.
fn with_kindless_value() -> Struct {
    let null = Value {
        kind: Some(Kind::NullValue(0)),
    };
    let list = Value {
        kind: Some(Kind::ListValue(prost_types::ListValue {
            values: vec![null.clone(), Value::default()],
        })),
    };
    let inner = Value {
        kind: Some(Kind::StructValue(Struct {
            fields: [("b".to_owned(), list)].into(),
        })),
    };
    Struct {
        fields: [("a".to_owned(), inner), ("ok".to_owned(), null)].into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_with_no_kind_is_invalid_argument_naming_the_field_and_stores_nothing() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let id = stored_before(&mut client).await;
    let kindless = |field: &str| {
        format!("`{field}` holds a google.protobuf.Value with no kind set, at `a.b[1]`")
    };
    let with_fields = || pb::LogEntry {
        fields: Some(with_kindless_value()),
        ..entry("x")
    };
    assert_refused(
        client
            .append(request::append(&id, vec![entry("fine"), with_fields()]))
            .await,
        Code::InvalidArgument,
        &kindless("entries.fields"),
    );
    let mut responses = client
        .append_stream(futures::stream::iter([request::append(
            &id,
            vec![with_fields()],
        )]))
        .await
        .expect("the stream opens")
        .into_inner();
    assert_refused(
        responses.message().await,
        Code::InvalidArgument,
        &kindless("entries.fields"),
    );
    assert_refused(
        client
            .start_session(pb::StartSessionRequest {
                session_id: "kindless".into(),
                metadata: Some(with_kindless_value()),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        &kindless("metadata"),
    );
    assert_eq!(
        client
            .get_session(request::get("kindless"))
            .await
            .expect_err("not started")
            .code(),
        Code::NotFound
    );
    assert_refused(
        client
            .update_session(request::update(&id, Some(with_kindless_value())))
            .await,
        Code::InvalidArgument,
        &kindless("metadata"),
    );
    assert!(
        crate::common::get_session(&mut client, &id)
            .await
            .metadata
            .is_none_or(|metadata| !metadata.fields.contains_key("a")),
        "the update changed nothing"
    );
    still_intact(&server, &id).await;
    server.shutdown().await;
}
