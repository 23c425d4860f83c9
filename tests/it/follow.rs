//! Follow end to end: history, caught_up, live, end, resume, filters,
//! fan-out to many followers, slow followers, disconnects and shutdown.

use std::time::Duration;

use futures::StreamExt;
use sessionlog::pb;
use sessionlog::pb::follow_response::Event;
use tonic::Code;

use crate::common;
use crate::common::follow::{append_n, follow, next_event, request, until_caught_up, until_ended};
use crate::common::{TestServer, append, end_session, entry, start_session};

#[tokio::test]
async fn follow_delivers_history_then_caught_up_then_live_then_ended() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let id = start_session(&mut client, "follow").await;
    append_n(&mut client, &id, 10).await;
    let mut events = follow(&mut client, request(&id, 0)).await;
    let (history, cursor) = until_caught_up(&mut events).await;
    assert_eq!(history, (1..=10).collect::<Vec<_>>());
    assert_eq!(cursor, 10);
    append(&mut client, &id, &["live-1", "live-2"]).await;
    append(&mut client, &id, &["live-3"]).await;
    end_session(&mut client, &id, "done").await;
    let (live, session) = until_ended(&mut events).await;
    let seqs: Vec<u64> = live.iter().map(|entry| entry.seq).collect();
    assert_eq!(seqs, [11, 12, 13, 14]);
    assert_eq!(live[3].message, "Session ended: done");
    assert_eq!(session.state(), pb::SessionState::Ended);
    assert_eq!(session.last_seq, 14);
    server.shutdown().await;
}

#[tokio::test]
async fn follow_resumes_after_given_cursor() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let id = start_session(&mut client, "follow").await;
    append_n(&mut client, &id, 10).await;
    let mut events = follow(&mut client, request(&id, 7)).await;
    assert_eq!(until_caught_up(&mut events).await, (vec![8, 9, 10], 10));
    let mut beyond = follow(&mut client, request(&id, 10)).await;
    assert_eq!(until_caught_up(&mut beyond).await, (vec![], 10));
    server.shutdown().await;
}

#[tokio::test]
async fn follow_tail_starts_with_the_last_entries() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let id = start_session(&mut client, "follow").await;
    append_n(&mut client, &id, 10).await;
    let mut events = follow(
        &mut client,
        pb::FollowRequest {
            tail: 3,
            ..request(&id, 0)
        },
    )
    .await;
    assert_eq!(until_caught_up(&mut events).await, (vec![8, 9, 10], 10));
    server.shutdown().await;
}

#[tokio::test]
async fn follow_filters_on_the_server_and_cursor_passes_skipped_entries() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let id = start_session(&mut client, "follow").await;
    let levels = [
        pb::Level::Info,
        pb::Level::Warn,
        pb::Level::Debug,
        pb::Level::Error,
    ];
    let entries = (0..8)
        .map(|i| pb::LogEntry {
            level: levels[i % 4].into(),
            ..entry(format!("e{i}"))
        })
        .collect();
    common::append_entries(&mut client, &id, entries).await;
    append(&mut client, &id, &["info at the end"]).await;
    let mut events = follow(
        &mut client,
        pb::FollowRequest {
            filter: Some(pb::LogFilter {
                min_level: pb::Level::Warn.into(),
                ..Default::default()
            }),
            ..request(&id, 0)
        },
    )
    .await;
    let (seqs, cursor) = until_caught_up(&mut events).await;
    assert_eq!(seqs, [2, 4, 6, 8]);
    assert_eq!(cursor, 9, "caught_up is past the skipped info entry");
    server.shutdown().await;
}

#[tokio::test]
async fn follow_batches_respect_max_batch_and_coalesce_appends() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let id = start_session(&mut client, "follow").await;
    for _ in 0..3 {
        append(&mut client, &id, &["a"; 10]).await;
    }
    let mut coalesced = follow(&mut client, request(&id, 0)).await;
    match next_event(&mut coalesced).await {
        Event::Batch(batch) => assert_eq!(batch.entries.len(), 30, "three appends, one batch"),
        other => panic!("expected a batch, got {other:?}"),
    }
    let mut small = follow(
        &mut client,
        pb::FollowRequest {
            max_batch: 7,
            ..request(&id, 0)
        },
    )
    .await;
    let mut sizes = Vec::new();
    loop {
        match next_event(&mut small).await {
            Event::Batch(batch) => sizes.push(batch.entries.len()),
            Event::CaughtUp(_) => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(sizes, [7, 7, 7, 7, 2]);
    server.shutdown().await;
}

#[tokio::test]
async fn following_an_ended_session_replays_it_then_ends() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let id = start_session(&mut client, "follow").await;
    append_n(&mut client, &id, 5).await;
    end_session(&mut client, &id, "done").await;
    let mut events = follow(&mut client, request(&id, 0)).await;
    assert_eq!(until_caught_up(&mut events).await, ((1..=6).collect(), 6));
    let (rest, session) = until_ended(&mut events).await;
    assert!(rest.is_empty());
    assert_eq!(session.end_reason, "done");
    server.shutdown().await;
}

#[tokio::test]
async fn following_unknown_or_malformed_sessions_fails() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let unknown = client.follow(request("no-such-session", 0)).await;
    assert_eq!(unknown.expect_err("unknown").code(), Code::NotFound);
    let malformed = client.follow(request("bad/id", 0)).await;
    assert_eq!(
        malformed.expect_err("malformed").code(),
        Code::InvalidArgument
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnected_followers_release_everything() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let id = start_session(&mut client, "leak").await;
    append_n(&mut client, &id, 5).await;
    let mut open = Vec::new();
    for _ in 0..50 {
        let mut follower = server.client().await;
        let mut events = follow(&mut follower, request(&id, 0)).await;
        until_caught_up(&mut events).await;
        open.push((follower, events));
    }
    assert_eq!(*server.sessions.followers().borrow(), 50);
    drop(open);
    let mut count = server.sessions.followers();
    tokio::time::timeout(
        Duration::from_secs(10),
        count.wait_for(|followers| *followers == 0),
    )
    .await
    .expect("every follower released within 10s")
    .expect("gauge alive");
    // The session still works for a new follower after the others left.
    append(&mut client, &id, &["after"]).await;
    let mut events = follow(&mut client, request(&id, 5)).await;
    assert_eq!(until_caught_up(&mut events).await, (vec![6], 6));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_open_follows_with_unavailable() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let id = start_session(&mut client, "shutdown").await;
    let mut events = follow(&mut client, request(&id, 0)).await;
    until_caught_up(&mut events).await;
    let reader = tokio::spawn(async move { events.next().await });
    let started = std::time::Instant::now();
    server.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "shutdown did not wait out the grace period"
    );
    let last = reader.await.expect("reader task").expect("a final status");
    assert_eq!(
        last.expect_err("the stream ends with a status").code(),
        Code::Unavailable
    );
}

/// The largest cursor a client can send is a cursor like any other:
/// nothing is after it, with or without `tail`, for Read and Follow alike.
#[tokio::test]
async fn the_largest_cursor_finds_nothing_after_it() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let id = start_session(&mut client, "cursor").await;
    append_n(&mut client, &id, 5).await;
    for tail in [0, 3] {
        let page = client
            .read(pb::ReadRequest {
                session_id: id.clone(),
                after_seq: u64::MAX,
                tail,
                ..Default::default()
            })
            .await
            .expect("read")
            .into_inner();
        assert!(page.entries.is_empty(), "tail {tail}: {page:?}");
        assert_eq!((page.next_cursor, page.last_seq), (u64::MAX, 5));
    }
    // `tail` counts back from the end, within the entries after the cursor.
    let page = client
        .read(pb::ReadRequest {
            session_id: id.clone(),
            after_seq: 0,
            tail: u32::MAX,
            ..Default::default()
        })
        .await
        .expect("read")
        .into_inner();
    assert_eq!(common::seqs(&page.entries), [1, 2, 3, 4, 5]);

    let mut followers = Vec::new();
    for tail in [0, 3] {
        let mut events = follow(
            &mut client,
            pb::FollowRequest {
                tail,
                ..request(&id, u64::MAX)
            },
        )
        .await;
        assert_eq!(until_caught_up(&mut events).await, (vec![], u64::MAX));
        followers.push(events);
    }
    let mut tail_all = follow(
        &mut client,
        pb::FollowRequest {
            tail: u32::MAX,
            ..request(&id, 0)
        },
    )
    .await;
    assert_eq!(
        until_caught_up(&mut tail_all).await,
        (vec![1, 2, 3, 4, 5], 5)
    );
    append(&mut client, &id, &["later"]).await;
    end_session(&mut client, &id, "done").await;
    for mut events in followers {
        let (entries, session) = until_ended(&mut events).await;
        assert!(entries.is_empty(), "{entries:?}");
        assert_eq!(session.id, id);
    }
    let (entries, _) = until_ended(&mut tail_all).await;
    assert_eq!(common::seqs(&entries), [6, 7]);
    server.shutdown().await;
}
