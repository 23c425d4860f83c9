//! The session lifecycle end to end through the generated client, and every
//! status code the contract names for the lifecycle, append and read RPCs.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use prost_types::value::Kind;
use prost_types::{Struct, Timestamp, Value};
use sessionlog::pb;
use tonic::Code;

use crate::common::request;
use crate::common::{
    Client, TestServer, append, append_entries, append_with_batch_id, end_session, entry,
    expect_code, get_session, messages, read_all, seqs, start_session,
};

fn string(text: &str) -> Value {
    Value {
        kind: Some(Kind::StringValue(text.to_owned())),
    }
}

fn number(value: f64) -> Value {
    Value {
        kind: Some(Kind::NumberValue(value)),
    }
}

fn null() -> Value {
    Value {
        kind: Some(Kind::NullValue(prost_types::NullValue::NullValue.into())),
    }
}

fn object(pairs: Vec<(&str, Value)>) -> Struct {
    Struct {
        fields: pairs
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value))
            .collect(),
    }
}

fn nested(pairs: Vec<(&str, Value)>) -> Value {
    Value {
        kind: Some(Kind::StructValue(object(pairs))),
    }
}

fn time(timestamp: Option<Timestamp>) -> SystemTime {
    SystemTime::try_from(timestamp.expect("timestamp is set")).expect("valid timestamp")
}

async fn read_page(client: &mut Client, request: pb::ReadRequest) -> pb::ReadResponse {
    client.read(request).await.expect("read").into_inner()
}

#[tokio::test]
async fn start_append_read_end_get() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let id = start_session(&mut client, "smoke").await;
    assert_eq!(append(&mut client, &id, &["a", "b"]).await, (1, 2));
    assert_eq!(append(&mut client, &id, &["c"]).await, (3, 3));
    let ended = end_session(&mut client, &id, "done").await;
    assert_eq!(ended.state(), pb::SessionState::Ended);
    assert_eq!(ended.last_seq, 4);
    let entries = read_all(&mut client, &id).await;
    let messages: Vec<_> = entries.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(messages, ["a", "b", "c", "Session ended: done"]);
    server.shutdown().await;
}

#[tokio::test]
async fn full_lifecycle_keeps_every_field_merges_metadata_and_ends_with_a_synthetic_entry() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let parent = start_session(&mut client, "parent").await;

    let before_start = SystemTime::now();
    let metadata = object(vec![
        ("keep", string("1")),
        ("replace", string("old")),
        ("drop", string("x")),
        (
            "nested",
            nested(vec![("a", number(1.0)), ("b", number(2.0))]),
        ),
    ]);
    let lease_ttl = prost_types::Duration {
        seconds: 3_600,
        nanos: 0,
    };
    let started = client
        .start_session(pb::StartSessionRequest {
            session_id: "build-42.step_3:agent".into(),
            app_name: "builder".into(),
            mode: "ci".into(),
            platform: "linux-x86_64".into(),
            client_pid: std::process::id(),
            parent_session_id: parent.clone(),
            job_id: "job-7".into(),
            metadata: Some(metadata.clone()),
            lease_ttl: Some(lease_ttl),
        })
        .await
        .expect("start")
        .into_inner();
    let after_start = SystemTime::now();
    assert_eq!(started.id, "build-42.step_3:agent");
    assert_eq!(started.app_name, "builder");
    assert_eq!(started.mode, "ci");
    assert_eq!(started.platform, "linux-x86_64");
    assert_eq!(started.client_pid, std::process::id());
    assert_eq!(started.parent_session_id, parent);
    assert_eq!(started.job_id, "job-7");
    assert_eq!(started.metadata.as_ref(), Some(&metadata));
    assert_eq!(started.lease_ttl, Some(lease_ttl));
    assert_eq!(started.state(), pb::SessionState::Active);
    assert_eq!(started.end_reason, "");
    assert_eq!(started.ended_at, None);
    assert_eq!(
        (started.last_seq, started.entry_count, started.size_bytes),
        (0, 0, 0)
    );
    let created_at = time(started.created_at);
    assert!(before_start <= created_at && created_at <= after_start);
    assert!(time(started.updated_at) >= created_at);

    let id = started.id.clone();
    assert_eq!(get_session(&mut client, &id).await, started);

    // Update merges top-level keys: replaces whole values, adds, and a null removes.
    let updated = client
        .update_session(request::update(
            &id,
            Some(object(vec![
                ("replace", string("new")),
                ("add", string("2")),
                ("drop", null()),
                ("nested", nested(vec![("c", number(3.0))])),
            ])),
        ))
        .await
        .expect("update")
        .into_inner();
    let expected_metadata = object(vec![
        ("keep", string("1")),
        ("replace", string("new")),
        ("add", string("2")),
        ("nested", nested(vec![("c", number(3.0))])),
    ]);
    assert_eq!(updated.metadata.as_ref(), Some(&expected_metadata));
    assert_eq!(updated.created_at, started.created_at);
    assert!(time(updated.updated_at) > time(started.updated_at));
    assert_eq!(updated.state(), pb::SessionState::Active);
    assert_eq!(get_session(&mut client, &id).await, updated);

    assert_eq!(append(&mut client, &id, &["one", "two"]).await, (1, 2));
    let after_append = get_session(&mut client, &id).await;
    assert_eq!(
        (after_append.last_seq, after_append.entry_count),
        (2, 2),
        "counters follow appends"
    );
    assert!(after_append.size_bytes > 0);

    let before_end = SystemTime::now();
    let ended = end_session(&mut client, &id, "finished").await;
    let after_end = SystemTime::now();
    assert_eq!(ended.state(), pb::SessionState::Ended);
    assert_eq!(ended.end_reason, "finished");
    let ended_at = time(ended.ended_at);
    assert!(before_end <= ended_at && ended_at <= after_end);
    assert_eq!((ended.last_seq, ended.entry_count), (3, 3));
    assert!(ended.size_bytes > after_append.size_bytes);
    assert_eq!(ended.metadata.as_ref(), Some(&expected_metadata));
    assert_eq!(ended.created_at, started.created_at);
    assert_eq!(get_session(&mut client, &id).await, ended);

    let entries = read_all(&mut client, &id).await;
    assert_eq!(
        messages(&entries),
        ["one", "two", "Session ended: finished"]
    );
    let encoded: usize = entries.iter().map(prost::Message::encoded_len).sum();
    assert_eq!(
        ended.size_bytes, encoded as u64,
        "size_bytes is the size of the encoded entries"
    );
    assert_eq!(seqs(&entries), [1, 2, 3]);
    let last = entries.last().expect("end entry");
    assert_eq!(last.level(), pb::Level::Info);
    assert_eq!(last.logger, "sessions");
    let end_entry_time = time(last.timestamp);
    assert!(before_end <= end_entry_time && end_entry_time <= after_end);

    let page = read_page(&mut client, request::read(&id)).await;
    assert_eq!(page.state(), pb::SessionState::Ended);
    assert_eq!(page.last_seq, 3);

    client
        .delete_session(request::delete(&id, false))
        .await
        .expect("delete an ended session");
    expect_code(client.get_session(request::get(&id)).await, Code::NotFound);
    server.shutdown().await;
}

#[tokio::test]
async fn ending_with_an_empty_reason_writes_session_ended() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let id = start_session(&mut client, "quiet").await;
    let ended = end_session(&mut client, &id, "").await;
    assert_eq!(ended.state(), pb::SessionState::Ended);
    assert_eq!(ended.end_reason, "");
    assert!(ended.ended_at.is_some());
    assert_eq!(ended.last_seq, 1);
    let entries = read_all(&mut client, &id).await;
    assert_eq!(messages(&entries), ["Session ended"]);
    assert_eq!(entries[0].logger, "sessions");
    assert_eq!(entries[0].level(), pb::Level::Info);
    server.shutdown().await;
}

#[tokio::test]
async fn starting_an_existing_id_is_already_exists_active_or_ended() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let start = |id: &str, app: &str| pb::StartSessionRequest {
        session_id: id.to_owned(),
        app_name: app.to_owned(),
        ..Default::default()
    };
    client
        .start_session(start("taken", "first"))
        .await
        .expect("first start");
    append(&mut client, "taken", &["kept"]).await;
    let status = expect_code(
        client.start_session(start("taken", "second")).await,
        Code::AlreadyExists,
    );
    assert!(status.message().contains("taken"), "{status:?}");
    let original = get_session(&mut client, "taken").await;
    assert_eq!(original.app_name, "first");
    assert_eq!(original.state(), pb::SessionState::Active);
    assert_eq!(original.last_seq, 1);

    end_session(&mut client, "taken", "over").await;
    expect_code(
        client.start_session(start("taken", "third")).await,
        Code::AlreadyExists,
    );
    let still_ended = get_session(&mut client, "taken").await;
    assert_eq!(still_ended.app_name, "first");
    assert_eq!(still_ended.state(), pb::SessionState::Ended);
    assert_eq!(still_ended.end_reason, "over");
    assert_eq!(
        messages(&read_all(&mut client, "taken").await),
        ["kept", "Session ended: over"]
    );
    server.shutdown().await;
}

#[tokio::test]
async fn invalid_session_ids_are_invalid_argument() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let too_long = "a".repeat(129);
    let bad_ids = ["a/b", too_long.as_str(), "a b", "é", "x\n"];
    for bad in bad_ids {
        expect_code(
            client.start_session(request::start(bad)).await,
            Code::InvalidArgument,
        );
        expect_code(
            client
                .start_session(pb::StartSessionRequest {
                    parent_session_id: bad.to_owned(),
                    ..Default::default()
                })
                .await,
            Code::InvalidArgument,
        );
    }
    // The longest valid id and every allowed character are accepted.
    let longest = "Z".repeat(128);
    for good in [longest.as_str(), "Az09._:-"] {
        let session = client
            .start_session(request::start(good))
            .await
            .expect("valid id")
            .into_inner();
        assert_eq!(session.id, good);
    }

    // Every RPC that names a session refuses a malformed (or empty) id.
    for bad in ["a/b", too_long.as_str(), ""] {
        expect_code(
            client.get_session(request::get(bad)).await,
            Code::InvalidArgument,
        );
        expect_code(
            client.update_session(request::update(bad, None)).await,
            Code::InvalidArgument,
        );
        expect_code(
            client.end_session(request::end(bad, "")).await,
            Code::InvalidArgument,
        );
        expect_code(
            client.heartbeat(request::heartbeat(bad)).await,
            Code::InvalidArgument,
        );
        expect_code(
            client.delete_session(request::delete(bad, true)).await,
            Code::InvalidArgument,
        );
        expect_code(
            client.append(request::append(bad, vec![entry("x")])).await,
            Code::InvalidArgument,
        );
        expect_code(client.read(request::read(bad)).await, Code::InvalidArgument);
    }
    server.shutdown().await;
}

#[tokio::test]
async fn every_rpc_on_an_unknown_session_is_not_found() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    // Another session exists, so the store is not simply empty.
    start_session(&mut client, "other").await;
    let id = "no-such-session".to_owned();
    expect_code(client.get_session(request::get(&id)).await, Code::NotFound);
    expect_code(
        client
            .update_session(request::update(&id, Some(object(vec![("k", string("v"))]))))
            .await,
        Code::NotFound,
    );
    expect_code(
        client.end_session(request::end(&id, "why")).await,
        Code::NotFound,
    );
    expect_code(
        client
            .append(request::append(&id, vec![entry("lost")]))
            .await,
        Code::NotFound,
    );
    expect_code(client.read(request::read(&id)).await, Code::NotFound);
    expect_code(
        client.heartbeat(request::heartbeat(&id)).await,
        Code::NotFound,
    );
    for force in [false, true] {
        expect_code(
            client.delete_session(request::delete(&id, force)).await,
            Code::NotFound,
        );
    }
    // None of those created the session.
    expect_code(client.get_session(request::get(&id)).await, Code::NotFound);
    server.shutdown().await;
}

#[tokio::test]
async fn empty_batch_is_invalid_argument() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let id = start_session(&mut client, "empty").await;
    expect_code(
        client.append(request::append(&id, vec![])).await,
        Code::InvalidArgument,
    );
    assert_eq!(get_session(&mut client, &id).await.last_seq, 0);
    server.shutdown().await;
}

#[tokio::test]
async fn batch_over_10000_entries_is_resource_exhausted_and_10000_fit() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let id = start_session(&mut client, "big").await;
    let status = expect_code(
        client
            .append(request::append(
                &id,
                (0..10_001).map(|i| entry(format!("e{i}"))).collect(),
            ))
            .await,
        Code::ResourceExhausted,
    );
    assert!(
        status.message().contains("10000") || status.message().contains("10,000"),
        "the message names the limit: {status:?}"
    );
    let after_refusal = get_session(&mut client, &id).await;
    assert_eq!((after_refusal.last_seq, after_refusal.entry_count), (0, 0));

    let stored = append_entries(
        &mut client,
        &id,
        (0..10_000).map(|i| entry(format!("e{i}"))).collect(),
    )
    .await;
    assert_eq!((stored.first_seq, stored.last_seq), (1, 10_000));
    assert!(!stored.duplicate);
    server.shutdown().await;
}

#[tokio::test]
async fn malformed_entries_are_invalid_argument_and_store_nothing_of_the_batch() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let id = start_session(&mut client, "malformed").await;
    append(&mut client, &id, &["first"]).await;

    let bad_entries = [
        pb::LogEntry {
            trace_id: vec![1; 3],
            ..entry("short trace id")
        },
        pb::LogEntry {
            trace_id: vec![1; 17],
            ..entry("long trace id")
        },
        pb::LogEntry {
            span_id: vec![2; 5],
            ..entry("short span id")
        },
        pb::LogEntry {
            level: 42,
            ..entry("level 42")
        },
        pb::LogEntry {
            level: -1,
            ..entry("negative level")
        },
        pb::LogEntry {
            timestamp: Some(Timestamp {
                seconds: 0,
                nanos: -5,
            }),
            ..entry("bad timestamp")
        },
    ];
    for bad in bad_entries {
        let label = bad.message.clone();
        let status = expect_code(
            client
                .append(request::append(
                    &id,
                    vec![entry("good before"), bad, entry("good after")],
                ))
                .await,
            Code::InvalidArgument,
        );
        assert!(!status.message().is_empty(), "{label}: {status:?}");
        let session = get_session(&mut client, &id).await;
        assert_eq!(
            (session.last_seq, session.entry_count),
            (1, 1),
            "{label}: the batch is refused whole"
        );
    }

    // Well-formed ids round-trip.
    let good = pb::LogEntry {
        trace_id: (0..16).collect(),
        span_id: (100..108).collect(),
        level: pb::Level::Critical.into(),
        format: "disk {pct}%".into(),
        fields: Some(object(vec![("pct", number(99.0))])),
        ..entry("disk 99%")
    };
    let stored = append_entries(&mut client, &id, vec![good.clone()]).await;
    assert_eq!((stored.first_seq, stored.last_seq), (2, 2));
    let entries = read_all(&mut client, &id).await;
    assert_eq!(messages(&entries), ["first", "disk 99%"]);
    let read_back = &entries[1];
    assert_eq!(read_back.trace_id, good.trace_id);
    assert_eq!(read_back.span_id, good.span_id);
    assert_eq!(read_back.level(), pb::Level::Critical);
    assert_eq!(read_back.format, good.format);
    assert_eq!(read_back.fields, good.fields);
    assert_eq!(read_back.logger, good.logger);
    server.shutdown().await;
}

#[tokio::test]
async fn append_to_ended_session_is_failed_precondition() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let id = start_session(&mut client, "ended").await;
    append(&mut client, &id, &["before"]).await;
    end_session(&mut client, &id, "done").await;
    expect_code(
        client
            .append(request::append(&id, vec![entry("after")]))
            .await,
        Code::FailedPrecondition,
    );
    let session = get_session(&mut client, &id).await;
    assert_eq!((session.last_seq, session.entry_count), (2, 2));
    assert_eq!(
        messages(&read_all(&mut client, &id).await),
        ["before", "Session ended: done"]
    );
    server.shutdown().await;
}

#[tokio::test]
async fn ending_an_ended_session_is_failed_precondition_and_changes_nothing() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let id = start_session(&mut client, "twice").await;
    let ended = end_session(&mut client, &id, "first").await;
    expect_code(
        client.end_session(request::end(&id, "second")).await,
        Code::FailedPrecondition,
    );
    assert_eq!(get_session(&mut client, &id).await, ended);
    assert_eq!(
        messages(&read_all(&mut client, &id).await),
        ["Session ended: first"]
    );
    server.shutdown().await;
}

#[tokio::test]
async fn heartbeat_on_ended_session_is_failed_precondition() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let id = client
        .start_session(request::start_leased(Duration::from_secs(600)))
        .await
        .expect("start")
        .into_inner()
        .id;
    client
        .heartbeat(request::heartbeat(&id))
        .await
        .expect("heartbeat while active");
    end_session(&mut client, &id, "done").await;
    expect_code(
        client.heartbeat(request::heartbeat(&id)).await,
        Code::FailedPrecondition,
    );
    server.shutdown().await;
}

#[tokio::test]
async fn deleting_an_active_session_needs_force_and_then_it_is_gone() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let id = "doomed".to_owned();
    client
        .start_session(pb::StartSessionRequest {
            session_id: id.clone(),
            app_name: "doomed-app".into(),
            ..Default::default()
        })
        .await
        .expect("start");
    append_with_batch_id(&mut client, &id, "old-batch", &["a", "b"]).await;

    expect_code(
        client.delete_session(request::delete(&id, false)).await,
        Code::FailedPrecondition,
    );
    let untouched = get_session(&mut client, &id).await;
    assert_eq!(untouched.state(), pb::SessionState::Active);
    assert_eq!(untouched.last_seq, 2);
    assert_eq!(messages(&read_all(&mut client, &id).await), ["a", "b"]);

    client
        .delete_session(request::delete(&id, true))
        .await
        .expect("forced delete");
    expect_code(client.get_session(request::get(&id)).await, Code::NotFound);
    expect_code(client.read(request::read(&id)).await, Code::NotFound);
    expect_code(
        client
            .append(request::append(&id, vec![entry("late")]))
            .await,
        Code::NotFound,
    );
    expect_code(
        client.delete_session(request::delete(&id, true)).await,
        Code::NotFound,
    );
    let listed = client
        .list_sessions(pb::ListSessionsRequest::default())
        .await
        .expect("list")
        .into_inner();
    assert!(listed.sessions.iter().all(|s| s.id != id));

    // The id is free again, and the new session starts with an empty log.
    let reborn = client
        .start_session(request::start(&id))
        .await
        .expect("start a deleted id again")
        .into_inner();
    assert_eq!(reborn.state(), pb::SessionState::Active);
    assert_eq!((reborn.last_seq, reborn.entry_count), (0, 0));
    assert!(read_all(&mut client, &id).await.is_empty());
    // Nor does it inherit the deleted session's dedupe window.
    let fresh = append_with_batch_id(&mut client, &id, "old-batch", &["fresh"]).await;
    assert_eq!(
        (fresh.first_seq, fresh.last_seq, fresh.duplicate),
        (1, 1, false)
    );
    assert_eq!(messages(&read_all(&mut client, &id).await), ["fresh"]);
    server.shutdown().await;
}

#[tokio::test]
async fn invalid_list_requests_are_invalid_argument() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    start_session(&mut client, "listed").await;
    for token in ["garbage", "s1.%%%", "s1.", "s1.YS9i" /* "a/b" */] {
        expect_code(
            client
                .list_sessions(pb::ListSessionsRequest {
                    page_token: token.to_owned(),
                    ..Default::default()
                })
                .await,
            Code::InvalidArgument,
        );
    }
    expect_code(
        client
            .list_sessions(pb::ListSessionsRequest {
                state: 9,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
    );
    expect_code(
        client
            .list_sessions(pb::ListSessionsRequest {
                parent_session_id: "a/b".into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
    );
    server.shutdown().await;
}

#[tokio::test]
async fn invalid_read_filter_and_lease_are_invalid_argument() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let id = start_session(&mut client, "filters").await;
    expect_code(
        client
            .read(pb::ReadRequest {
                session_id: id.clone(),
                filter: Some(pb::LogFilter {
                    min_level: 42,
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
    );
    expect_code(
        client
            .start_session(pb::StartSessionRequest {
                lease_ttl: Some(prost_types::Duration {
                    seconds: -5,
                    nanos: 0,
                }),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
    );
    server.shutdown().await;
}

#[tokio::test]
async fn missing_timestamp_is_set_by_the_server_and_a_given_one_is_kept() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let id = start_session(&mut client, "clock").await;
    let given = Timestamp {
        seconds: 1_600_000_000,
        nanos: 123_456_789,
    };
    let before = SystemTime::now();
    append_entries(
        &mut client,
        &id,
        vec![
            entry("no timestamp"),
            pb::LogEntry {
                timestamp: Some(given),
                ..entry("given timestamp")
            },
        ],
    )
    .await;
    let after = SystemTime::now();
    let entries = read_all(&mut client, &id).await;
    assert_eq!(messages(&entries), ["no timestamp", "given timestamp"]);
    let stamped = time(entries[0].timestamp);
    assert!(
        before <= stamped && stamped <= after,
        "server time {stamped:?} not within the call ({before:?}..{after:?})"
    );
    assert_eq!(entries[1].timestamp, Some(given));
    server.shutdown().await;
}

#[tokio::test]
async fn input_seq_is_ignored() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let id = start_session(&mut client, "seqs").await;
    let response = append_entries(
        &mut client,
        &id,
        vec![
            pb::LogEntry {
                seq: 999,
                ..entry("a")
            },
            pb::LogEntry {
                seq: 7,
                ..entry("b")
            },
            pb::LogEntry {
                seq: u64::MAX,
                ..entry("c")
            },
        ],
    )
    .await;
    assert_eq!((response.first_seq, response.last_seq), (1, 3));
    let next = append_entries(
        &mut client,
        &id,
        vec![pb::LogEntry {
            seq: 1,
            ..entry("d")
        }],
    )
    .await;
    assert_eq!((next.first_seq, next.last_seq), (4, 4));
    let entries = read_all(&mut client, &id).await;
    assert_eq!(seqs(&entries), [1, 2, 3, 4]);
    assert_eq!(messages(&entries), ["a", "b", "c", "d"]);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_ids_are_unique_valid_and_sort_by_creation_order() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let mut sequential = Vec::new();
    for _ in 0..100 {
        let session = client
            .start_session(pb::StartSessionRequest::default())
            .await
            .expect("start")
            .into_inner();
        sequential.push(session);
    }
    for pair in sequential.windows(2) {
        assert!(
            pair[0].id < pair[1].id,
            "{} then {} do not sort in creation order",
            pair[0].id,
            pair[1].id
        );
        assert!(time(pair[0].created_at) <= time(pair[1].created_at));
    }
    let valid = |id: &str| {
        (1..=128).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
    };
    assert!(sequential.iter().all(|s| valid(&s.id)));

    // Concurrent starts from several connections still get unique ids.
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let mut client = server.client().await;
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for _ in 0..25 {
                ids.push(start_session(&mut client, "concurrent").await);
            }
            ids
        }));
    }
    let mut all: HashSet<String> = sequential.iter().map(|s| s.id.clone()).collect();
    let last_sequential = sequential.last().expect("sessions").id.clone();
    for task in tasks {
        let ids = task.await.expect("starter task");
        assert!(ids.windows(2).all(|pair| pair[0] < pair[1]));
        for id in ids {
            assert!(id > last_sequential, "a later session sorts after");
            assert!(valid(&id));
            assert!(all.insert(id), "duplicate generated id");
        }
    }
    assert_eq!(all.len(), 200);
    server.shutdown().await;
}

#[tokio::test]
async fn heartbeat_returns_the_lease_deadline_only_for_a_session_with_a_lease() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let ttl = Duration::from_secs(600);
    let leased = client
        .start_session(request::start_leased(ttl))
        .await
        .expect("start leased")
        .into_inner()
        .id;
    let before = SystemTime::now();
    let response = client
        .heartbeat(request::heartbeat(&leased))
        .await
        .expect("heartbeat")
        .into_inner();
    let after = SystemTime::now();
    let expires = time(response.lease_expires_at);
    assert!(
        before + ttl <= expires && expires <= after + ttl,
        "lease_expires_at {expires:?} is not now + ttl"
    );

    // A later heartbeat moves the deadline on.
    let again = client
        .heartbeat(request::heartbeat(&leased))
        .await
        .expect("heartbeat again")
        .into_inner();
    assert!(time(again.lease_expires_at) >= expires);

    for lease_ttl in [None, Some(prost_types::Duration::default())] {
        let unleased = client
            .start_session(pb::StartSessionRequest {
                lease_ttl,
                ..Default::default()
            })
            .await
            .expect("start unleased")
            .into_inner()
            .id;
        let response = client
            .heartbeat(request::heartbeat(&unleased))
            .await
            .expect("heartbeat without a lease")
            .into_inner();
        assert_eq!(response.lease_expires_at, None, "lease_ttl {lease_ttl:?}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn append_stream_answers_each_request_in_order_and_stops_at_the_first_failure() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let id = start_session(&mut client, "stream").await;
    let requests = vec![
        request::append(&id, vec![entry("a"), entry("b")]),
        request::append(&id, vec![entry("c")]),
        request::append(&id, vec![]),
        request::append(&id, vec![entry("never")]),
    ];
    let mut responses = client
        .append_stream(futures::stream::iter(requests))
        .await
        .expect("open stream")
        .into_inner();
    let first = responses.message().await.expect("first").expect("some");
    assert_eq!((first.first_seq, first.last_seq), (1, 2));
    let second = responses.message().await.expect("second").expect("some");
    assert_eq!((second.first_seq, second.last_seq), (3, 3));
    let failure = responses
        .message()
        .await
        .expect_err("the empty batch fails");
    assert_eq!(failure.code(), Code::InvalidArgument);
    assert_eq!(messages(&read_all(&mut client, &id).await), ["a", "b", "c"]);
    server.shutdown().await;
}
