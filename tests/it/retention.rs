//! Retention: ended sessions are pruned by count, age and bytes, oldest
//! `ended_at` first; active sessions never are; followers and watchers of a
//! pruned session see its end.

use std::time::Duration;

use futures::StreamExt;
use sessionlog::pb;
use sessionlog::pb::session_event::Kind;
use sessionlog::server::RetentionPolicy;
use sessionlog::testing::PruneReason;
use tonic::Code;

use crate::common;
use crate::common::request;
use crate::common::{Client, FsyncPolicy, TestServer, end_session, start_session};

async fn exists(client: &mut Client, id: &str) -> bool {
    match client.get_session(request::get(id)).await {
        Ok(_) => true,
        Err(status) if status.code() == Code::NotFound => false,
        Err(status) => panic!("unexpected {status:?}"),
    }
}

/// Starts `count` sessions and ends them one after another (so their
/// `ended_at` order is their index order).
async fn ended_sessions(client: &mut Client, count: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..count {
        let id = start_session(client, "old").await;
        end_session(client, &id, "done").await;
        ids.push(id);
    }
    ids
}

#[tokio::test]
async fn count_prunes_the_oldest_ended_sessions_and_never_active_ones() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let active_first = start_session(&mut client, "active").await;
    let ended = ended_sessions(&mut client, 5).await;
    let active_last = start_session(&mut client, "active").await;
    let policy = RetentionPolicy {
        max_sessions: Some(4),
        ..RetentionPolicy::default()
    };
    let pruned = server.sessions.enforce_retention(policy).await;
    let expected: Vec<(String, PruneReason)> = ended[..3]
        .iter()
        .map(|id| (id.clone(), PruneReason::Count))
        .collect();
    assert_eq!(pruned, expected, "oldest ended first");
    for id in &ended[..3] {
        assert!(!exists(&mut client, id).await);
    }
    for id in ended[3..].iter().chain([&active_first, &active_last]) {
        assert!(exists(&mut client, id).await);
    }
    server.shutdown().await;
}

#[tokio::test]
async fn with_more_active_sessions_than_the_maximum_every_ended_one_goes() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let ended = ended_sessions(&mut client, 2).await;
    let mut active = Vec::new();
    for _ in 0..3 {
        active.push(start_session(&mut client, "busy").await);
    }
    let policy = RetentionPolicy {
        max_sessions: Some(2),
        ..RetentionPolicy::default()
    };
    assert_eq!(server.sessions.enforce_retention(policy).await.len(), 2);
    for id in &ended {
        assert!(!exists(&mut client, id).await);
    }
    for id in &active {
        assert!(
            exists(&mut client, id).await,
            "active sessions are never pruned"
        );
    }
    server.shutdown().await;
}

#[tokio::test]
async fn age_prunes_sessions_that_ended_longer_ago_than_the_maximum() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let old = ended_sessions(&mut client, 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let young = ended_sessions(&mut client, 1).await;
    let active = start_session(&mut client, "active").await;
    let policy = RetentionPolicy {
        max_age: Some(Duration::from_millis(200)),
        ..RetentionPolicy::default()
    };
    let pruned = server.sessions.enforce_retention(policy).await;
    let expected: Vec<(String, PruneReason)> = old
        .iter()
        .map(|id| (id.clone(), PruneReason::Age))
        .collect();
    assert_eq!(pruned, expected);
    assert!(exists(&mut client, &young[0]).await);
    assert!(exists(&mut client, &active).await);
    server.shutdown().await;
}

#[tokio::test]
async fn bytes_prune_the_oldest_until_the_store_fits() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let mut ids = Vec::new();
    for _ in 0..4 {
        let id = start_session(&mut client, "big").await;
        let text = "b".repeat(1_000);
        common::append(&mut client, &id, &[text.as_str(); 10]).await;
        end_session(&mut client, &id, "done").await;
        ids.push(id);
    }
    let mut sizes = Vec::new();
    for id in &ids {
        sizes.push(common::get_session(&mut client, id).await.size_bytes);
    }
    let total: u64 = sizes.iter().sum();
    // Room for a little more than two sessions: the two oldest must go.
    let policy = RetentionPolicy {
        max_bytes: Some(total - sizes[0] - sizes[1] + 10),
        ..RetentionPolicy::default()
    };
    let pruned = server.sessions.enforce_retention(policy).await;
    let expected: Vec<(String, PruneReason)> = ids[..2]
        .iter()
        .map(|id| (id.clone(), PruneReason::Bytes))
        .collect();
    assert_eq!(pruned, expected);
    assert!(exists(&mut client, &ids[2]).await && exists(&mut client, &ids[3]).await);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retention_task_prunes_and_watchers_and_followers_see_the_end() {
    let server = TestServer::builder()
        .configure(|settings| {
            settings.retention = RetentionPolicy {
                max_sessions: Some(1),
                ..RetentionPolicy::default()
            };
            settings.retention_interval = Duration::from_millis(20);
        })
        .start()
        .await;
    let mut client = server.client().await;
    let mut events = client
        .watch_sessions(pb::WatchSessionsRequest::default())
        .await
        .expect("watch")
        .into_inner();
    let id = start_session(&mut client, "doomed").await;
    // More than the HTTP/2 windows hold, so the server cannot have sent it
    // all before the prune.
    let lines: Vec<String> = (0..4_000)
        .map(|i| format!("line {i} {}", "p".repeat(2_000)))
        .collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    for chunk in refs.chunks(1_000) {
        common::append(&mut client, &id, chunk).await;
    }
    // A follower that has read only the first entry when the session goes.
    let mut follower = client
        .follow(pb::FollowRequest {
            session_id: id.clone(),
            max_batch: 1,
            ..Default::default()
        })
        .await
        .expect("follow")
        .into_inner();
    let first = follower.next().await.expect("an event").expect("a batch");
    assert!(matches!(
        first.event,
        Some(pb::follow_response::Event::Batch(_))
    ));
    start_session(&mut client, "newer").await;
    end_session(&mut client, &id, "done").await;
    loop {
        let event = tokio::time::timeout(Duration::from_secs(30), events.next())
            .await
            .expect("the prune arrives")
            .expect("stream open")
            .expect("no error");
        if event.kind() == Kind::Deleted {
            assert_eq!(event.session.expect("session").id, id);
            break;
        }
    }
    // The follower drains what was already sent, then its stream ends.
    let ending = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match follower.next().await {
                Some(Ok(_)) => {}
                Some(Err(status)) => return Some(status),
                None => return None,
            }
        }
    })
    .await
    .expect("the follower's stream ends, it does not hang");
    let status = ending.expect("the stream ends with a status, not a replay of a pruned session");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert!(!exists(&mut client, &id).await);
    server.shutdown().await;
}

/// `EndSession` answers with the session it ended even when retention
/// prunes it while the end waits for its flush (it read the session again
/// after the wait, and answered NOT_FOUND).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ending_a_session_that_retention_prunes_before_the_end_is_durable_answers_with_it() {
    let server = TestServer::builder()
        .fsync(FsyncPolicy::Always)
        .start()
        .await;
    let mut client = server.client().await;
    let id = start_session(&mut client, "pruned-while-ending").await;
    common::append(&mut client, &id, &["one"]).await;
    // The end's flush syncs, then returns only after the prune below.
    let ending = {
        let mut client = server.client().await;
        let id = id.clone();
        common::spawn_with_held_flush(&server, Duration::from_millis(500), async move {
            end_session(&mut client, &id, "done").await
        })
        .await
    };
    let pruned = server
        .sessions
        .enforce_retention(RetentionPolicy {
            max_sessions: Some(0),
            ..RetentionPolicy::default()
        })
        .await;
    assert_eq!(pruned, vec![(id.clone(), PruneReason::Count)]);
    let ended = ending.await.expect("the end answers");
    assert_eq!(ended.id, id);
    assert_eq!(ended.state(), pb::SessionState::Ended);
    assert!(!exists(&mut client, &id).await);
    server.shutdown().await;
}

#[tokio::test]
async fn pruning_more_than_one_batch_takes_the_oldest_and_they_stay_gone_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::builder().data_dir(dir.path()).start().await;
    let mut client = server.client().await;
    // More than one deletion batch (256) of ended sessions.
    let ended = ended_sessions(&mut client, 300).await;
    let policy = RetentionPolicy {
        max_sessions: Some(20),
        ..RetentionPolicy::default()
    };
    let pruned = server.sessions.enforce_retention(policy).await;
    let expected: Vec<(String, PruneReason)> = ended[..280]
        .iter()
        .map(|id| (id.clone(), PruneReason::Count))
        .collect();
    assert_eq!(pruned, expected, "oldest ended first, across batches");
    drop(client);
    server.shutdown().await;

    let server = TestServer::builder().data_dir(dir.path()).start().await;
    let mut client = server.client().await;
    let listed = client
        .list_sessions(pb::ListSessionsRequest::default())
        .await
        .expect("list")
        .into_inner();
    let mut kept: Vec<String> = listed.sessions.into_iter().map(|s| s.id).collect();
    kept.sort();
    let mut expected_kept = ended[280..].to_vec();
    expected_kept.sort();
    assert_eq!(kept, expected_kept, "what is left after the restart");
    assert!(!exists(&mut client, &ended[0]).await);
    server.shutdown().await;
}
