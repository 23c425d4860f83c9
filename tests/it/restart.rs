//! A server stopped and started again on the same data dir finds everything
//! as it was: sessions, entries, counters and dedupe state.

use std::path::Path;
use std::time::{Duration, SystemTime};

use prost_types::value::Kind;
use prost_types::{Struct, Value};
use sessionlog::pb;
use tonic::Code;

use crate::common;
use crate::common::FsyncPolicy;
use crate::common::request;
use crate::common::{
    Client, TestServer, append, append_with_batch_id, end_session, entry, expect_code, get_session,
    messages, read_all, seqs,
};

fn metadata(pairs: &[(&str, &str)]) -> Struct {
    Struct {
        fields: pairs
            .iter()
            .map(|(key, value)| {
                (
                    (*key).to_owned(),
                    Value {
                        kind: Some(Kind::StringValue((*value).to_owned())),
                    },
                )
            })
            .collect(),
    }
}

async fn list_ids(client: &mut Client) -> Vec<String> {
    let mut ids = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_sessions(pb::ListSessionsRequest {
                page_token,
                ..Default::default()
            })
            .await
            .expect("list")
            .into_inner();
        ids.extend(page.sessions.into_iter().map(|s| s.id));
        if page.next_page_token.is_empty() {
            return ids;
        }
        page_token = page.next_page_token;
    }
}

async fn restart(server: TestServer, client: Client, dir: &Path) -> (TestServer, Client) {
    drop(client);
    server.shutdown().await;
    let server = TestServer::builder().data_dir(dir).start().await;
    let client = server.client().await;
    (server, client)
}

#[tokio::test]
async fn sessions_entries_counters_and_dedupe_state_survive_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::builder().data_dir(dir.path()).start().await;
    let mut client = server.client().await;

    // An active session with every field, batches with and without ids.
    let active = client
        .start_session(pb::StartSessionRequest {
            session_id: "active-1".into(),
            app_name: "app".into(),
            mode: "dev".into(),
            platform: "linux".into(),
            client_pid: std::process::id(),
            parent_session_id: "parent-0".into(),
            job_id: "job-1".into(),
            metadata: Some(metadata(&[("owner", "alice")])),
            lease_ttl: Some(prost_types::Duration {
                seconds: 3_600,
                nanos: 0,
            }),
        })
        .await
        .expect("start active")
        .into_inner()
        .id;
    append(&mut client, &active, &["a1", "a2", "a3"]).await;
    let batch = append_with_batch_id(&mut client, &active, "retry-me", &["a4", "a5"]).await;
    assert_eq!((batch.first_seq, batch.last_seq), (4, 5));
    client
        .append(request::append(
            &active,
            vec![pb::LogEntry {
                level: pb::Level::Error.into(),
                logger: "net.http".into(),
                trace_id: vec![7; 16],
                span_id: vec![8; 8],
                fields: Some(metadata(&[("status", "503")])),
                ..entry("a6")
            }],
        ))
        .await
        .expect("append a6");
    client
        .update_session(request::update(
            &active,
            Some(metadata(&[("stage", "two")])),
        ))
        .await
        .expect("update");

    // An ended session.
    let ended = client
        .start_session(pb::StartSessionRequest {
            session_id: "ended-1".into(),
            app_name: "app".into(),
            ..Default::default()
        })
        .await
        .expect("start ended")
        .into_inner()
        .id;
    append_with_batch_id(&mut client, &ended, "ended-batch", &["e1", "e2"]).await;
    end_session(&mut client, &ended, "finished").await;

    // Deleted sessions: an ended one, and an active one deleted with force.
    for (id, force) in [("deleted-ended", false), ("deleted-forced", true)] {
        client
            .start_session(request::start(id))
            .await
            .expect("start doomed");
        append(&mut client, id, &["gone"]).await;
        if !force {
            end_session(&mut client, id, "bye").await;
        }
        client
            .delete_session(request::delete(id, force))
            .await
            .expect("delete");
    }

    let active_before = get_session(&mut client, &active).await;
    let ended_before = get_session(&mut client, &ended).await;
    let active_entries = read_all(&mut client, &active).await;
    let ended_entries = read_all(&mut client, &ended).await;
    assert_eq!((active_before.last_seq, active_before.entry_count), (6, 6));
    assert_eq!((ended_before.last_seq, ended_before.entry_count), (3, 3));
    let ids_before = list_ids(&mut client).await;
    assert_eq!(ids_before, ["active-1", "ended-1"]);

    let (server, mut client) = restart(server, client, dir.path()).await;

    // Everything reads back exactly as before.
    let active_after = get_session(&mut client, &active).await;
    assert_eq!(active_after, active_before);
    assert_eq!(active_after.state(), pb::SessionState::Active);
    let ended_after = get_session(&mut client, &ended).await;
    assert_eq!(ended_after, ended_before);
    assert_eq!(ended_after.state(), pb::SessionState::Ended);
    assert_eq!(ended_after.end_reason, "finished");
    assert!(ended_after.ended_at.is_some());
    assert!(active_after.size_bytes > 0 && ended_after.size_bytes > 0);
    assert_eq!(read_all(&mut client, &active).await, active_entries);
    assert_eq!(read_all(&mut client, &ended).await, ended_entries);
    assert_eq!(list_ids(&mut client).await, ids_before);
    for id in ["deleted-ended", "deleted-forced"] {
        expect_code(client.get_session(request::get(id)).await, Code::NotFound);
        expect_code(client.read(request::read(id)).await, Code::NotFound);
    }

    // Dedupe state survived, in both sessions.
    let retry = append_with_batch_id(&mut client, &active, "retry-me", &["a4", "a5"]).await;
    assert_eq!(
        (retry.first_seq, retry.last_seq, retry.duplicate),
        (4, 5, true)
    );
    let retry = append_with_batch_id(&mut client, &ended, "ended-batch", &["e1", "e2"]).await;
    assert_eq!(
        (retry.first_seq, retry.last_seq, retry.duplicate),
        (1, 2, true)
    );

    // The active session goes on at last_seq + 1; the ended one stays ended.
    assert_eq!(append(&mut client, &active, &["a7", "a8"]).await, (7, 8));
    expect_code(
        client
            .append(request::append(&ended, vec![entry("late")]))
            .await,
        Code::FailedPrecondition,
    );
    expect_code(
        client.end_session(request::end(&ended, "again")).await,
        Code::FailedPrecondition,
    );

    // Its lease counts from the restart.
    let before = SystemTime::now();
    let lease = client
        .heartbeat(request::heartbeat(&active))
        .await
        .expect("heartbeat after restart")
        .into_inner()
        .lease_expires_at
        .expect("a leased session has a deadline");
    let lease = SystemTime::try_from(lease).expect("valid time");
    assert!(lease >= before + Duration::from_secs(3_600));

    // A generated id made now sorts before one made after the next restart.
    let generated_before = client
        .start_session(pb::StartSessionRequest::default())
        .await
        .expect("start generated")
        .into_inner()
        .id;

    // A second restart keeps what the first session after restart wrote.
    let (server, mut client) = restart(server, client, dir.path()).await;
    let active_again = get_session(&mut client, &active).await;
    assert_eq!((active_again.last_seq, active_again.entry_count), (8, 8));
    assert_eq!(active_again.state(), pb::SessionState::Active);
    let entries = read_all(&mut client, &active).await;
    assert_eq!(seqs(&entries), (1..=8).collect::<Vec<_>>());
    assert_eq!(
        messages(&entries),
        ["a1", "a2", "a3", "a4", "a5", "a6", "a7", "a8"]
    );
    assert_eq!(get_session(&mut client, &ended).await, ended_before);
    let generated_after = client
        .start_session(pb::StartSessionRequest::default())
        .await
        .expect("start generated after restart")
        .into_inner()
        .id;
    assert!(generated_after > generated_before);
    assert_eq!(append(&mut client, &active, &["a9"]).await, (9, 9));
    drop(client);
    server.shutdown().await;
}

#[tokio::test]
async fn appends_acknowledged_under_fsync_always_are_there_after_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::builder()
        .data_dir(dir.path())
        .fsync(FsyncPolicy::Always)
        .start()
        .await;
    let mut client = server.client().await;
    let id = common::start_session(&mut client, "durable").await;
    for i in 0..20 {
        let message = format!("m{i}");
        append(&mut client, &id, &[&message]).await;
    }
    let before = get_session(&mut client, &id).await;
    drop(client);
    server.shutdown().await;

    let server = TestServer::builder()
        .data_dir(dir.path())
        .fsync(FsyncPolicy::Interval(Duration::from_millis(50)))
        .start()
        .await;
    let mut client = server.client().await;
    assert_eq!(get_session(&mut client, &id).await, before);
    let entries = read_all(&mut client, &id).await;
    assert_eq!(seqs(&entries), (1..=20).collect::<Vec<_>>());
    assert_eq!(append(&mut client, &id, &["next"]).await, (21, 21));
    drop(client);
    server.shutdown().await;
}

#[tokio::test]
async fn a_deleted_session_stays_deleted_and_a_reused_id_starts_fresh_across_restarts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::builder().data_dir(dir.path()).start().await;
    let mut client = server.client().await;
    for id in ["reused", "forgotten"] {
        client
            .start_session(request::start(id))
            .await
            .expect("start");
        append_with_batch_id(&mut client, id, "batch", &["old-1", "old-2", "old-3"]).await;
        client
            .delete_session(request::delete(id, true))
            .await
            .expect("forced delete");
    }
    // One ended before the restart is deleted after it, untouched meanwhile.
    client
        .start_session(request::start("ended-early"))
        .await
        .expect("start");
    append(&mut client, "ended-early", &["x"]).await;
    end_session(&mut client, "ended-early", "early").await;
    let (server, mut client) = restart(server, client, dir.path()).await;
    client
        .delete_session(request::delete("ended-early", false))
        .await
        .expect("delete an ended session loaded at start-up");
    for id in ["reused", "forgotten", "ended-early"] {
        expect_code(client.get_session(request::get(id)).await, Code::NotFound);
    }
    assert!(list_ids(&mut client).await.is_empty());

    // Starting a deleted id again gives an empty log without old batch ids.
    let reborn = client
        .start_session(request::start("reused"))
        .await
        .expect("start the deleted id again")
        .into_inner();
    assert_eq!(
        (reborn.last_seq, reborn.entry_count, reborn.size_bytes),
        (0, 0, 0)
    );
    assert!(read_all(&mut client, "reused").await.is_empty());
    let fresh = append_with_batch_id(&mut client, "reused", "batch", &["new"]).await;
    assert_eq!(
        (fresh.first_seq, fresh.last_seq, fresh.duplicate),
        (1, 1, false)
    );

    let (server, mut client) = restart(server, client, dir.path()).await;
    let reused = get_session(&mut client, "reused").await;
    assert_eq!((reused.last_seq, reused.entry_count), (1, 1));
    assert_eq!(messages(&read_all(&mut client, "reused").await), ["new"]);
    for id in ["forgotten", "ended-early"] {
        expect_code(client.get_session(request::get(id)).await, Code::NotFound);
    }
    assert_eq!(list_ids(&mut client).await, ["reused"]);
    drop(client);
    server.shutdown().await;
}

/// Once a shutdown has saved the active sessions' counters, no write may
/// move them: appends, updates and ends are refused as UNAVAILABLE, and the
/// next start resumes after the saved counters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_after_the_shutdown_counters_are_saved_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::builder().data_dir(dir.path()).start().await;
    let mut client = server.client().await;
    let id = common::start_session(&mut client, "closing").await;
    append(&mut client, &id, &["one", "two"]).await;
    let sessions = server.sessions.clone();
    let saved = tokio::task::spawn_blocking(move || sessions.save_shutdown_counters())
        .await
        .expect("joined")
        .expect("saved");
    assert_eq!(saved, 1);
    let refused = client
        .append(request::append(&id, vec![entry("three")]))
        .await;
    expect_code(refused, Code::Unavailable);
    let refused = client.end_session(request::end(&id, "late")).await;
    expect_code(refused, Code::Unavailable);
    let (server, mut client) = restart(server, client, dir.path()).await;
    assert_eq!(messages(&read_all(&mut client, &id).await), ["one", "two"]);
    append(&mut client, &id, &["three"]).await;
    assert_eq!(seqs(&read_all(&mut client, &id).await), [1, 2, 3]);
    drop(client);
    server.shutdown().await;
}
