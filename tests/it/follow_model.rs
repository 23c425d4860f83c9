//! A property test of Follow: random interleavings of appends (several
//! writers, varied batch sizes) and followers that connect at random
//! cursors and moments, some dropping their stream and resuming from their
//! last cursor. Each follower must see exactly the seqs after its cursor,
//! in order, once; also while the log is sealed under the followers (a
//! threshold of one byte: every append queues a seal of all before it,
//! and the end a seal of the rest).

use std::time::Duration;

use futures::StreamExt;
use proptest::prelude::*;
use sessionlog::pb;
use sessionlog::pb::follow_response::Event;
use tokio::sync::watch;

use crate::common;
use crate::common::follow::{follow, request};
use crate::common::{Client, TestServer, entry, start_session};

#[derive(Debug, Clone)]
struct FollowerPlan {
    /// Connect once this many batches were appended.
    connect_after_batches: usize,
    after_seq: u64,
    /// Drop the stream after receiving this many entries, then resume.
    disconnect_every: Option<usize>,
    max_batch: u32,
}

#[derive(Debug, Clone)]
struct Plan {
    /// Batch sizes, one list per writer.
    writers: Vec<Vec<usize>>,
    followers: Vec<FollowerPlan>,
}

fn plans() -> impl Strategy<Value = Plan> {
    let writers = prop::collection::vec(prop::collection::vec(1usize..=20, 1..=8), 1..=3);
    let follower = (
        0usize..=24,
        0u64..=120,
        prop::option::of(1usize..=40),
        0u32..=8,
    )
        .prop_map(
            |(connect_after_batches, after_seq, disconnect_every, max_batch)| FollowerPlan {
                connect_after_batches,
                after_seq,
                disconnect_every,
                max_batch,
            },
        );
    (writers, prop::collection::vec(follower, 1..=6))
        .prop_map(|(writers, followers)| Plan { writers, followers })
}

/// Follows from `plan.after_seq` until `ended`, reconnecting as planned;
/// returns every seq received.
async fn run_follower(mut client: Client, session_id: String, plan: FollowerPlan) -> Vec<u64> {
    let mut seqs = Vec::new();
    let mut cursor = plan.after_seq;
    loop {
        let mut events = follow(
            &mut client,
            pb::FollowRequest {
                max_batch: plan.max_batch,
                ..request(&session_id, cursor)
            },
        )
        .await;
        let mut since_connect = 0;
        loop {
            let event = tokio::time::timeout(Duration::from_secs(30), events.next())
                .await
                .expect("an event within 30s")
                .expect("stream open")
                .expect("no error")
                .event
                .expect("event set");
            match event {
                Event::Batch(batch) => {
                    since_connect += batch.entries.len();
                    seqs.extend(batch.entries.iter().map(|entry| entry.seq));
                    cursor = batch.cursor;
                }
                Event::CaughtUp(_) | Event::Truncated(_) => {}
                Event::Ended(_) => return seqs,
            }
            if plan
                .disconnect_every
                .is_some_and(|every| since_connect >= every)
            {
                break;
            }
        }
    }
}

/// `plan` on a server that seals an active log past `seal_active_after`
/// unsealed bytes, when given (else the default).
async fn check(plan: Plan, seal_active_after: Option<u64>) {
    let server = TestServer::builder()
        .configure(|settings| {
            if let Some(bytes) = seal_active_after {
                settings.seal_active_after = bytes;
            }
        })
        .start()
        .await;
    let mut client = server.client().await;
    let id = start_session(&mut client, "model").await;
    let (appended_tx, appended_rx) = watch::channel(0usize);
    let mut followers = tokio::task::JoinSet::new();
    for follower in plan.followers.clone() {
        let client = server.client().await;
        let id = id.clone();
        let mut appended_rx = appended_rx.clone();
        followers.spawn(async move {
            let wanted = follower.connect_after_batches;
            let _ = appended_rx.wait_for(|count| *count >= wanted).await;
            let after_seq = follower.after_seq;
            (after_seq, run_follower(client, id, follower).await)
        });
    }
    let mut writers = tokio::task::JoinSet::new();
    for sizes in plan.writers.clone() {
        let mut client = server.client().await;
        let id = id.clone();
        let appended_tx = appended_tx.clone();
        writers.spawn(async move {
            for size in sizes {
                let entries = (0..size).map(|i| entry(format!("e{i}"))).collect();
                common::append_entries(&mut client, &id, entries).await;
                appended_tx.send_modify(|count| *count += 1);
            }
        });
    }
    while let Some(done) = writers.join_next().await {
        done.expect("writer");
    }
    // Followers waiting for more batches than were planned connect now.
    appended_tx.send_modify(|count| *count = usize::MAX);
    let total: usize = plan.writers.iter().flatten().sum();
    let last_seq = u64::try_from(total).expect("fits") + 1;
    common::end_session(&mut client, &id, "done").await;
    while let Some(result) = followers.join_next().await {
        let (after_seq, seqs) = result.expect("follower");
        let expected: Vec<u64> = (after_seq + 1..=last_seq).collect();
        assert_eq!(seqs, expected, "follower from {after_seq}");
    }
    server.shutdown().await;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn followers_see_every_seq_after_their_cursor_once_in_order(plan in plans()) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(check(plan, None));
    }

    #[test]
    fn followers_see_every_seq_once_while_the_log_is_sealed(plan in plans()) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(check(plan, Some(1)));
    }
}
