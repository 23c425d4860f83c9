//! Fan-out: a thousand followers of one session each receive every entry;
//! followers at the live edge share the session's live window, and one
//! that falls out of it mid-stream catches up from the store.

use sessionlog::pb;
use tonic::transport::Endpoint;

use crate::common::follow::{Events, follow, next_event, request, until_caught_up, until_ended};
use crate::common::{Client, TestServer, append, end_session, entry, start_session};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_followers_each_receive_every_entry() {
    const FOLLOWERS: usize = 1_000;
    const CONNECTIONS: usize = 10;
    let server = TestServer::start().await;
    let mut writer = server.client().await;
    let id = start_session(&mut writer, "fanout").await;
    let mut clients = Vec::new();
    for _ in 0..CONNECTIONS {
        clients.push(server.client().await);
    }
    let mut followers = tokio::task::JoinSet::new();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(FOLLOWERS);
    for index in 0..FOLLOWERS {
        let mut client = clients[index % CONNECTIONS].clone();
        let id = id.clone();
        let ready_tx = ready_tx.clone();
        followers.spawn(async move {
            let mut events = follow(&mut client, request(&id, 0)).await;
            let (mut seqs, _) = until_caught_up(&mut events).await;
            ready_tx.send(()).await.expect("ready");
            let (live, _) = until_ended(&mut events).await;
            seqs.extend(live.iter().map(|entry| entry.seq));
            seqs
        });
    }
    for _ in 0..FOLLOWERS {
        ready_rx.recv().await.expect("a follower is caught up");
    }
    for batch in 0..20 {
        let messages: Vec<String> = (0..10).map(|i| format!("b{batch}-{i}")).collect();
        let refs: Vec<&str> = messages.iter().map(String::as_str).collect();
        append(&mut writer, &id, &refs).await;
    }
    end_session(&mut writer, &id, "done").await;
    let expected: Vec<u64> = (1..=201).collect();
    let mut finished = 0;
    while let Some(seqs) = followers.join_next().await {
        assert_eq!(seqs.expect("follower task"), expected);
        finished += 1;
    }
    assert_eq!(finished, FOLLOWERS);
    server.shutdown().await;
}

/// Reads batches until one reaches `seq`; returns the entries read.
async fn read_through(events: &mut Events, seq: u64) -> Vec<pb::LogEntry> {
    let mut entries = Vec::new();
    while entries
        .last()
        .is_none_or(|entry: &pb::LogEntry| entry.seq < seq)
    {
        match next_event(events).await {
            pb::follow_response::Event::Batch(batch) => entries.extend(batch.entries),
            other => panic!("unexpected event while live: {other:?}"),
        }
    }
    entries
}

/// Live followers (one with every entry, one filtered, one with
/// `max_batch` 1 under batches of 3) and one that stops reading
/// mid-stream while 1,000 batches of about 1 KiB are appended. Its client
/// lets through only 64 KiB per stream, and the server's send buffer holds
/// a few hundred KiB more, so it ends far more than the window (at most
/// 128 KiB of entries) behind: it has to go back to the store, then
/// rejoin the live edge. Each still sees every entry once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_that_falls_out_of_the_live_window_catches_up_from_the_store() {
    const STALLED_BATCHES: u64 = 1_000;
    let server = TestServer::start().await;
    let mut writer = server.client().await;
    let id = start_session(&mut writer, "window").await;
    let mut narrow: Client = Client::new(
        Endpoint::from_shared(server.url())
            .expect("url")
            .initial_stream_window_size(Some(65_535))
            .initial_connection_window_size(Some(65_535))
            .connect()
            .await
            .expect("connect"),
    );
    let mut wide = server.client().await;
    let mut live = follow(&mut wide, request(&id, 0)).await;
    let mut filtered = follow(
        &mut wide,
        pb::FollowRequest {
            filter: Some(pb::LogFilter {
                contains: "keep".to_owned(),
                ..Default::default()
            }),
            ..request(&id, 0)
        },
    )
    .await;
    let mut one_at_a_time = follow(
        &mut wide,
        pb::FollowRequest {
            max_batch: 1,
            ..request(&id, 0)
        },
    )
    .await;
    let mut stalled = follow(&mut narrow, request(&id, 0)).await;
    for events in [&mut live, &mut filtered, &mut one_at_a_time, &mut stalled] {
        assert_eq!(until_caught_up(events).await, (vec![], 0));
    }
    let mut received: [Vec<pb::LogEntry>; 4] = Default::default();
    // Mid-stream: every follower takes these live, from the window.
    for batch in 0..10 {
        let messages = [
            format!("keep {batch}"),
            format!("drop {batch}"),
            format!("x {batch}"),
        ];
        let refs: Vec<&str> = messages.iter().map(String::as_str).collect();
        let (_, last) = append(&mut writer, &id, &refs).await;
        for (events, seen) in [&mut live, &mut one_at_a_time, &mut stalled]
            .into_iter()
            .zip([0, 2, 3])
        {
            received[seen].extend(read_through(events, last).await);
        }
    }
    // The stalled follower reads nothing while these go by.
    let payload = "y".repeat(1_000);
    for batch in 0..STALLED_BATCHES {
        let message = if batch % 7 == 0 {
            format!("keep {batch} {payload}")
        } else {
            format!("{batch} {payload}")
        };
        writer
            .append(pb::AppendRequest {
                session_id: id.clone(),
                entries: vec![entry(message)],
                ..Default::default()
            })
            .await
            .expect("append");
    }
    end_session(&mut writer, &id, "done").await;
    let last_seq = 30 + STALLED_BATCHES + 1;
    for (events, seen) in [&mut live, &mut filtered, &mut one_at_a_time, &mut stalled]
        .into_iter()
        .zip(0..)
    {
        let (rest, session) = until_ended(events).await;
        assert_eq!(session.last_seq, last_seq);
        received[seen].extend(rest);
    }
    let all: Vec<u64> = (1..=last_seq).collect();
    for (seen, name) in [(0, "live"), (2, "max_batch 1"), (3, "stalled")] {
        let seqs: Vec<u64> = received[seen].iter().map(|entry| entry.seq).collect();
        assert!(seqs == all, "{name}: every seq once, in order");
    }
    let kept: Vec<u64> = received[0]
        .iter()
        .filter(|entry| entry.message.contains("keep"))
        .map(|entry| entry.seq)
        .collect();
    let filtered_seqs: Vec<u64> = received[1].iter().map(|entry| entry.seq).collect();
    assert!(!kept.is_empty());
    assert!(
        filtered_seqs == kept,
        "the filtered follower: its entries once, in order"
    );
    server.shutdown().await;
}
