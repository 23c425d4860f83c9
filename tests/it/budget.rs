//! The byte budget of responses (`--max-response-size`): pages of `Read`
//! and `ListSessions`, `Follow` batches, HTTP pages and SSE events stop at
//! it (with at least one item), so a client with tonic's default 4 MiB
//! receive limit reads sessions of 1 MiB entries, and paging on from each
//! response's cursor or token visits every item exactly once.

use prost::Message;
use prost_types::value::Kind;
use prost_types::{Struct, Value};
use sessionlog::pb;
use sessionlog::pb::follow_response::Event;

use crate::common::follow::{next_event, request as follow_request};
use crate::common::http::{Sse, get};
use crate::common::{Client, TestServer, append_entries, end_session, entry, start_session};

/// The server's default budget (`--max-response-size`).
const BUDGET: usize = 2 << 20;
/// Room for the fields around the entries of one response.
const FRAMING: usize = 256;

/// Appends `count` entries whose messages are `size` copies of `byte`,
/// a few per call so each request stays under the request limit.
async fn append_large(client: &mut Client, session_id: &str, count: usize, size: usize, byte: u8) {
    let message = String::from_utf8(vec![byte; size]).expect("ASCII");
    for chunk in (0..count).collect::<Vec<_>>().chunks(4) {
        let entries = chunk.iter().map(|_| entry(message.clone())).collect();
        append_entries(client, session_id, entries).await;
    }
}

#[tokio::test]
async fn reads_of_megabyte_entries_come_in_pages_a_default_client_accepts() {
    let server = TestServer::start().await;
    // Tonic's defaults: a 4 MiB receive limit.
    let mut client = server.client().await;
    let id = start_session(&mut client, "budget").await;
    append_large(&mut client, &id, 12, 1_000_000, b'x').await;

    let (mut after_seq, mut seqs, mut pages) = (0, Vec::new(), 0);
    while after_seq < 12 {
        let page = client
            .read(pb::ReadRequest {
                session_id: id.clone(),
                after_seq,
                limit: 10_000,
                ..Default::default()
            })
            .await
            .expect("a page within the client's receive limit")
            .into_inner();
        assert!(
            page.encoded_len() <= BUDGET + FRAMING,
            "{}",
            page.encoded_len()
        );
        assert!(!page.entries.is_empty());
        assert_eq!(page.next_cursor, page.entries.last().expect("entries").seq);
        seqs.extend(page.entries.iter().map(|entry| entry.seq));
        after_seq = page.next_cursor;
        pages += 1;
    }
    assert_eq!(seqs, (1..=12).collect::<Vec<_>>());
    assert!(pages >= 6, "12 MB in {pages} pages");

    // A tail cut by the budget starts where the tail starts and goes on
    // from its cursor.
    let tail = client
        .read(pb::ReadRequest {
            session_id: id.clone(),
            tail: 5,
            ..Default::default()
        })
        .await
        .expect("tail")
        .into_inner();
    let tail_seqs: Vec<u64> = tail.entries.iter().map(|entry| entry.seq).collect();
    assert_eq!(tail_seqs, vec![8, 9]);
    assert_eq!(tail.next_cursor, 9);
    server.shutdown().await;
}

#[tokio::test]
async fn follow_batches_of_megabyte_entries_stay_under_the_budget() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let id = start_session(&mut client, "budget").await;
    append_large(&mut client, &id, 10, 1_000_000, b'y').await;

    let mut events = client
        .follow(pb::FollowRequest {
            max_batch: 10_000,
            ..follow_request(&id, 0)
        })
        .await
        .expect("follow")
        .into_inner();
    let mut seqs = Vec::new();
    loop {
        match next_event(&mut events).await {
            Event::Batch(batch) => {
                assert!(batch.encoded_len() <= BUDGET + FRAMING);
                assert_eq!(batch.cursor, batch.entries.last().expect("entries").seq);
                seqs.extend(batch.entries.iter().map(|entry| entry.seq));
            }
            Event::CaughtUp(caught_up) => {
                assert_eq!(caught_up.cursor, 10);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seqs, (1..=10).collect::<Vec<_>>());
    server.shutdown().await;
}

#[tokio::test]
async fn http_pages_and_sse_events_count_escaped_json_bytes() {
    let server = TestServer::builder().http().start().await;
    let addr = server.http_addr.expect("http");
    let mut client = server.client().await;
    let id = start_session(&mut client, "budget").await;
    // 300 KB of \x01 each: 1.8 MB of JSON each, 1.2 MB stored in all.
    append_large(&mut client, &id, 4, 300_000, 1).await;
    end_session(&mut client, &id, "done").await;

    let (mut after, mut seqs) = (0, Vec::new());
    loop {
        let answer = get(
            addr,
            &format!("/api/v1/sessions/{id}/entries?after={after}"),
            &[],
        )
        .await;
        assert_eq!(answer.status, 200);
        assert!(
            answer.body.len() <= BUDGET + FRAMING,
            "{}",
            answer.body.len()
        );
        let page = answer.json();
        let page_seqs: Vec<u64> = page["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .map(|entry| entry["seq"].as_u64().expect("seq"))
            .collect();
        if page_seqs.is_empty() {
            break;
        }
        seqs.extend(page_seqs);
        after = page["next_cursor"].as_u64().expect("cursor");
    }
    // Four entries and the end entry, each once.
    assert_eq!(seqs, (1..=5).collect::<Vec<_>>());

    let mut sse = Sse::open(addr, &format!("/api/v1/sessions/{id}/follow"), &[]).await;
    let mut streamed = Vec::new();
    for event in sse.rest().await {
        if event.event != "message" {
            continue;
        }
        assert!(event.data.len() <= BUDGET + FRAMING, "{}", event.data.len());
        let batch = event.json();
        let batch_seqs: Vec<u64> = batch["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .map(|entry| entry["seq"].as_u64().expect("seq"))
            .collect();
        // Each event's id resumes right after its last entry.
        let last = *batch_seqs.last().expect("an entry");
        assert_eq!(event.id.as_deref(), Some(last.to_string().as_str()));
        assert_eq!(batch["cursor"], last);
        streamed.extend(batch_seqs);
    }
    assert_eq!(streamed, (1..=5).collect::<Vec<_>>());
    server.shutdown().await;
}

/// Metadata of about `bytes` bytes, in one value.
fn bulky_metadata(bytes: usize) -> Struct {
    let mut metadata = Struct::default();
    metadata.fields.insert(
        "blob".into(),
        Value {
            kind: Some(Kind::StringValue("m".repeat(bytes))),
        },
    );
    metadata
}

#[tokio::test]
async fn session_pages_stop_at_the_budget_and_page_on_without_gaps() {
    const SMALL_BUDGET: usize = 256 << 10;
    let server = TestServer::builder()
        .http()
        .configure(|settings| settings.limits.max_response_bytes = SMALL_BUDGET)
        .start()
        .await;
    let addr = server.http_addr.expect("http");
    let mut client = server.client().await;
    let mut started = Vec::new();
    for _ in 0..12 {
        let session = client
            .start_session(pb::StartSessionRequest {
                metadata: Some(bulky_metadata(60_000)),
                ..Default::default()
            })
            .await
            .expect("start")
            .into_inner();
        started.push(session.id);
    }

    let (mut token, mut listed, mut pages) = (String::new(), Vec::new(), 0);
    loop {
        let page = client
            .list_sessions(pb::ListSessionsRequest {
                page_size: 1_000,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .expect("list")
            .into_inner();
        assert!(page.encoded_len() <= SMALL_BUDGET + FRAMING);
        listed.extend(page.sessions.into_iter().map(|session| session.id));
        pages += 1;
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(listed, started);
    assert!(pages >= 3, "720 KB of sessions in {pages} pages");

    let (mut token, mut listed) = (String::new(), Vec::new());
    loop {
        let answer = get(addr, &format!("/api/v1/sessions?page_token={token}"), &[]).await;
        assert_eq!(answer.status, 200);
        assert!(answer.body.len() <= SMALL_BUDGET + FRAMING);
        let page = answer.json();
        for session in page["sessions"].as_array().expect("sessions") {
            listed.push(session["id"].as_str().expect("id").to_owned());
        }
        token = page["next_page_token"].as_str().expect("token").to_owned();
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(listed, started);
    server.shutdown().await;
}
