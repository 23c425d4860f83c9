//! Liveness: leases and client processes. Lease tests use real, short
//! durations (leases are wall-clock deadlines); they wait for the ENDED
//! event rather than sleeping past a guess.

use std::process::{Child, Command};
use std::time::Duration;

use futures::StreamExt;
use sessionlog::pb;
use sessionlog::pb::session_event::Kind;
use sessionlog::server::StoreOptions;
use sessionlog::testing::{State, Store, StoredSession};

use crate::common;
use crate::common::request;
use crate::common::{Client, TestServer};

async fn start(client: &mut Client, request: pb::StartSessionRequest) -> String {
    client
        .start_session(request)
        .await
        .expect("start")
        .into_inner()
        .id
}

fn lease(millis: u64) -> Option<prost_types::Duration> {
    prost_types::Duration::try_from(Duration::from_millis(millis)).ok()
}

/// Waits for the ENDED event of `session_id` and returns the session.
async fn ended_event(
    events: &mut tonic::Streaming<pb::SessionEvent>,
    session_id: &str,
) -> pb::Session {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(30), events.next())
            .await
            .expect("an event within 30s")
            .expect("stream open")
            .expect("no error");
        if event.kind() == Kind::Ended {
            let session = event.session.expect("session");
            if session.id == session_id {
                return session;
            }
        }
    }
}

async fn watch(client: &mut Client) -> tonic::Streaming<pb::SessionEvent> {
    client
        .watch_sessions(pb::WatchSessionsRequest::default())
        .await
        .expect("watch")
        .into_inner()
}

fn sleeper() -> Child {
    Command::new("sleep")
        .arg("60")
        .spawn()
        .expect("spawn sleep")
}

async fn fast_liveness_server() -> TestServer {
    TestServer::builder()
        .configure(|settings| settings.liveness_interval = Duration::from_millis(20))
        .start()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_ends_the_session_and_tells_followers() {
    let server = fast_liveness_server().await;
    let mut client = server.client().await;
    let mut events = watch(&mut client).await;
    let id = start(
        &mut client,
        pb::StartSessionRequest {
            lease_ttl: lease(150),
            ..Default::default()
        },
    )
    .await;
    let mut follow = client
        .follow(pb::FollowRequest {
            session_id: id.clone(),
            ..Default::default()
        })
        .await
        .expect("follow")
        .into_inner();
    let ended = ended_event(&mut events, &id).await;
    assert_eq!(ended.end_reason, "lease expired");
    let mut saw_end_entry = false;
    while let Some(response) = follow.next().await {
        match response.expect("follow event").event {
            Some(pb::follow_response::Event::Batch(batch)) => {
                saw_end_entry |= batch
                    .entries
                    .iter()
                    .any(|entry| entry.message == "Session ended: lease expired");
            }
            Some(pb::follow_response::Event::Ended(session)) => {
                assert_eq!(session.end_reason, "lease expired")
            }
            _ => {}
        }
    }
    assert!(
        saw_end_entry,
        "the follower got the end entry, then the stream closed"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_and_appends_renew_the_lease() {
    let server = fast_liveness_server().await;
    let mut client = server.client().await;
    let id = start(
        &mut client,
        pb::StartSessionRequest {
            lease_ttl: lease(300),
            ..Default::default()
        },
    )
    .await;
    // Renew for well over three lease periods, alternating heartbeat and append.
    for round in 0..12 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if round % 2 == 0 {
            let before = std::time::SystemTime::now();
            let response = client
                .heartbeat(request::heartbeat(&id))
                .await
                .expect("heartbeat")
                .into_inner();
            let expires =
                std::time::SystemTime::try_from(response.lease_expires_at.expect("a lease"))
                    .expect("time");
            let ahead = expires.duration_since(before).expect("in the future");
            assert!(
                ahead >= Duration::from_millis(290) && ahead <= Duration::from_millis(400),
                "{ahead:?}"
            );
        } else {
            common::append(&mut client, &id, &["still here"]).await;
        }
    }
    let session = common::get_session(&mut client, &id).await;
    assert_eq!(
        session.state(),
        pb::SessionState::Active,
        "renewed leases keep the session"
    );
    let mut events = watch(&mut client).await;
    let ended = ended_event(&mut events, &id).await;
    assert_eq!(ended.end_reason, "lease expired");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_process_that_exits_ends_its_session() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let mut child = sleeper();
    let id = start(
        &mut client,
        pb::StartSessionRequest {
            client_pid: child.id(),
            ..Default::default()
        },
    )
    .await;
    assert!(
        server.sessions.check_liveness().await.is_empty(),
        "the process runs"
    );
    child.kill().expect("kill");
    // Zombies count as exited too (unit-tested in `process`); here the
    // child is reaped so the check does not race the kernel.
    child.wait().expect("reap");
    let ended = server.sessions.check_liveness().await;
    assert_eq!(ended, [(id.clone(), "process exited")]);
    let session = common::get_session(&mut client, &id).await;
    assert_eq!(session.end_reason, "process exited");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_pid_does_not_keep_a_dead_client_alive() {
    // A session stored while pid P was its client; now P is another process
    // (here: a live `sleep` whose start time differs from the recorded one).
    let dir = tempfile::tempdir().expect("temp dir");
    let mut other = sleeper();
    {
        let store = Store::open(&StoreOptions {
            path: dir.path().to_path_buf(),
            cache_bytes: 8 << 20,
        })
        .expect("store");
        let record = StoredSession {
            id: "reused".into(),
            client_pid: other.id(),
            client_start_ticks: 1,
            state: State::Active.into(),
            ..Default::default()
        };
        store.create_session(&record).expect("create").expect("new");
        store.flush().expect("flush");
    }
    let server = TestServer::builder().data_dir(dir.path()).start().await;
    let ended = server.sessions.check_liveness().await;
    assert_eq!(ended, [("reused".to_owned(), "process exited")]);
    other.kill().expect("kill");
    other.wait().expect("reap");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_without_lease_or_visible_pid_are_left_alone() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let plain = common::start_session(&mut client, "plain").await;
    // Above the kernel's largest pid: never visible, so never watched.
    let invisible = start(
        &mut client,
        pb::StartSessionRequest {
            client_pid: 4_194_305,
            ..Default::default()
        },
    )
    .await;
    assert!(server.sessions.check_liveness().await.is_empty());
    for id in [plain, invisible] {
        assert_eq!(
            common::get_session(&mut client, &id).await.state(),
            pb::SessionState::Active
        );
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_leases_count_from_the_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::builder().data_dir(dir.path()).start().await;
    let mut client = server.client().await;
    let id = start(
        &mut client,
        pb::StartSessionRequest {
            lease_ttl: lease(60_000),
            ..Default::default()
        },
    )
    .await;
    server.shutdown().await;
    let restarted_at = std::time::SystemTime::now();
    let server = TestServer::builder().data_dir(dir.path()).start().await;
    let view = server.sessions.get(&id).expect("session");
    let expires = view.lease_expires_at.expect("a lease");
    assert!(
        expires >= restarted_at + Duration::from_millis(59_000),
        "counted from the restart"
    );
    assert_eq!(view.record.state(), State::Active);
    server.shutdown().await;
}
