//! Follow helpers shared by the follow suites.

use std::time::Duration;

use futures::StreamExt;
use sessionlog::pb;
use sessionlog::pb::follow_response::Event;
use tonic::Streaming;

use super::{Client, append};

pub(crate) type Events = Streaming<pb::FollowResponse>;

pub(crate) async fn follow(client: &mut Client, request: pb::FollowRequest) -> Events {
    client.follow(request).await.expect("follow").into_inner()
}

pub(crate) fn request(session_id: &str, after_seq: u64) -> pb::FollowRequest {
    pb::FollowRequest {
        session_id: session_id.to_owned(),
        after_seq,
        ..Default::default()
    }
}

pub(crate) async fn next_event(events: &mut Events) -> Event {
    tokio::time::timeout(Duration::from_secs(30), events.next())
        .await
        .expect("an event within 30s")
        .expect("the stream is open")
        .expect("an event, not an error")
        .event
        .expect("a set event")
}

/// Collects batches until `caught_up`; returns (seqs, caught_up cursor).
pub(crate) async fn until_caught_up(events: &mut Events) -> (Vec<u64>, u64) {
    let mut seqs = Vec::new();
    loop {
        match next_event(events).await {
            Event::Batch(batch) => {
                // The cursor may pass entries the filter skipped.
                assert!(batch.cursor >= batch.entries.last().expect("non-empty batch").seq);
                seqs.extend(batch.entries.iter().map(|entry| entry.seq));
            }
            Event::CaughtUp(caught_up) => return (seqs, caught_up.cursor),
            other => panic!("unexpected event before caught_up: {other:?}"),
        }
    }
}

/// Collects batches until `ended`, then checks the stream closes with OK.
pub(crate) async fn until_ended(events: &mut Events) -> (Vec<pb::LogEntry>, pb::Session) {
    let mut entries = Vec::new();
    loop {
        match next_event(events).await {
            Event::Batch(batch) => entries.extend(batch.entries),
            Event::Ended(session) => {
                let after = tokio::time::timeout(Duration::from_secs(10), events.next())
                    .await
                    .expect("the stream closes");
                assert!(after.is_none(), "nothing after ended, got {after:?}");
                return (entries, session);
            }
            other => panic!("unexpected event after caught_up: {other:?}"),
        }
    }
}

pub(crate) async fn append_n(client: &mut Client, session_id: &str, count: usize) {
    let messages: Vec<String> = (0..count).map(|i| format!("m{i}")).collect();
    let refs: Vec<&str> = messages.iter().map(String::as_str).collect();
    for chunk in refs.chunks(1_000) {
        append(client, session_id, chunk).await;
    }
}
