//! AppendStream: one response per request, in order; the first failure ends
//! the stream with its status and earlier batches stay stored.

use futures::StreamExt;
use sessionlog::pb;
use tonic::Code;

use crate::common::request;
use crate::common::{Client, TestServer, entry, read_all, start_session};

fn batch(session_id: &str, messages: &[&str]) -> pb::AppendRequest {
    request::append(
        session_id,
        messages.iter().map(|message| entry(*message)).collect(),
    )
}

#[tokio::test]
async fn responses_arrive_in_request_order_across_sessions() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let first = start_session(&mut client, "stream").await;
    let second = start_session(&mut client, "stream").await;
    let requests = vec![
        batch(&first, &["a", "b"]),
        batch(&second, &["x"]),
        batch(&first, &["c"]),
        pb::AppendRequest {
            batch_id: "once".into(),
            ..batch(&second, &["y", "z"])
        },
        pb::AppendRequest {
            batch_id: "once".into(),
            ..batch(&second, &["y", "z"])
        },
    ];
    let responses: Vec<pb::AppendResponse> = client
        .append_stream(futures::stream::iter(requests))
        .await
        .expect("open stream")
        .into_inner()
        .map(|response| response.expect("append"))
        .collect()
        .await;
    let ranges: Vec<(u64, u64, bool)> = responses
        .iter()
        .map(|response| (response.first_seq, response.last_seq, response.duplicate))
        .collect();
    assert_eq!(
        ranges,
        [
            (1, 2, false),
            (1, 1, false),
            (3, 3, false),
            (2, 3, false),
            (2, 3, true)
        ]
    );
    assert_eq!(read_all(&mut client, &second).await.len(), 3);
    server.shutdown().await;
}

#[tokio::test]
async fn the_first_failure_ends_the_stream_and_keeps_earlier_batches() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let id = start_session(&mut client, "stream").await;
    let requests = vec![
        batch(&id, &["kept"]),
        batch("no-such-session", &["lost"]),
        batch(&id, &["never sent on"]),
    ];
    let mut responses = client
        .append_stream(futures::stream::iter(requests))
        .await
        .expect("open stream")
        .into_inner();
    let first = responses.next().await.expect("a response").expect("ok");
    assert_eq!((first.first_seq, first.last_seq), (1, 1));
    let failure = responses
        .next()
        .await
        .expect("a status")
        .expect_err("the unknown session");
    assert_eq!(failure.code(), Code::NotFound);
    assert!(
        responses.next().await.is_none(),
        "nothing after the failure"
    );
    let stored: Vec<String> = read_all(&mut client, &id)
        .await
        .into_iter()
        .map(|e| e.message)
        .collect();
    assert_eq!(stored, ["kept"]);
    server.shutdown().await;
}

/// The status that ends a stream of `requests`, after the OK answers it got.
async fn stream_outcome(
    client: &mut Client,
    requests: Vec<pb::AppendRequest>,
) -> (usize, tonic::Status) {
    let mut responses = client
        .append_stream(futures::stream::iter(requests))
        .await
        .expect("open stream")
        .into_inner();
    let mut answered = 0;
    loop {
        match responses.next().await.expect("a response or a status") {
            Ok(_) => answered += 1,
            Err(status) => return (answered, status),
        }
    }
}

#[tokio::test]
async fn an_oversized_message_on_the_stream_is_resource_exhausted_naming_the_flag() {
    let server = TestServer::builder()
        .configure(|settings| settings.limits.max_message_bytes = 64 << 10)
        .start()
        .await;
    let mut client = server.client().await;
    let id = start_session(&mut client, "stream").await;
    let oversized = || batch(&id, &[&"x".repeat(100 << 10)]);
    let cases = [
        (vec![batch(&id, &["a"]), batch(&id, &["b"]), oversized()], 2),
        (vec![oversized(), batch(&id, &["never read"])], 0),
    ];
    for (requests, answered_before) in cases {
        let (answered, status) = stream_outcome(&mut client, requests).await;
        assert_eq!(answered, answered_before);
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        assert!(
            status.message().contains("--max-message-size"),
            "the message names the flag: {}",
            status.message()
        );
    }
    let stored: Vec<String> = read_all(&mut client, &id)
        .await
        .into_iter()
        .map(|e| e.message)
        .collect();
    assert_eq!(stored, ["a", "b"]);
    server.shutdown().await;
}
