//! WatchSessions: snapshot, one caught_up, then live events in order, with
//! filters, and no gap or duplicate between snapshot and live.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use sessionlog::pb;
use sessionlog::pb::session_event::Kind;
use tonic::{Code, Streaming};

use crate::common;
use crate::common::request;
use crate::common::{Client, TestServer, append, start_session};

type Events = Streaming<pb::SessionEvent>;

async fn watch(client: &mut Client, request: pb::WatchSessionsRequest) -> Events {
    client
        .watch_sessions(request)
        .await
        .expect("watch")
        .into_inner()
}

async fn next(events: &mut Events) -> (Kind, Option<pb::Session>) {
    let event = tokio::time::timeout(Duration::from_secs(30), events.next())
        .await
        .expect("an event within 30s")
        .expect("stream open")
        .expect("no error");
    (event.kind(), event.session)
}

async fn start(client: &mut Client, id: &str, app: &str, job: &str) {
    client
        .start_session(pb::StartSessionRequest {
            session_id: id.to_owned(),
            app_name: app.to_owned(),
            job_id: job.to_owned(),
            ..Default::default()
        })
        .await
        .expect("start");
}

#[tokio::test]
async fn snapshot_oldest_first_then_caught_up_then_live_in_order() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    // Ids sort against creation order, so the snapshot must sort by time.
    start(&mut client, "z-first", "app", "").await;
    start(&mut client, "a-second", "app", "").await;
    let mut events = watch(
        &mut client,
        pb::WatchSessionsRequest {
            include_existing: true,
            ..Default::default()
        },
    )
    .await;
    let (kind, first) = next(&mut events).await;
    assert_eq!(
        (kind, first.expect("session").id.as_str()),
        (Kind::Started, "z-first")
    );
    let (kind, second) = next(&mut events).await;
    assert_eq!(
        (kind, second.expect("session").id.as_str()),
        (Kind::Started, "a-second")
    );
    assert_eq!(next(&mut events).await, (Kind::CaughtUp, None));

    start(&mut client, "live", "app", "").await;
    append(&mut client, "live", &["appends send no event"]).await;
    client
        .update_session(request::update(
            "live",
            Some(prost_types::Struct::default()),
        ))
        .await
        .expect("update");
    common::end_session(&mut client, "live", "bye").await;
    client
        .delete_session(request::delete("live", false))
        .await
        .expect("delete");
    let mut kinds = Vec::new();
    for _ in 0..4 {
        let (kind, session) = next(&mut events).await;
        assert_eq!(session.expect("session").id, "live");
        kinds.push(kind);
    }
    assert_eq!(
        kinds,
        [Kind::Started, Kind::Updated, Kind::Ended, Kind::Deleted]
    );
    server.shutdown().await;
}

#[tokio::test]
async fn without_include_existing_caught_up_comes_first_and_alone() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    start_session(&mut client, "old").await;
    let mut events = watch(&mut client, pb::WatchSessionsRequest::default()).await;
    assert_eq!(next(&mut events).await, (Kind::CaughtUp, None));
    start(&mut client, "new", "x", "").await;
    let (kind, session) = next(&mut events).await;
    assert_eq!(
        (kind, session.expect("session").id.as_str()),
        (Kind::Started, "new")
    );
    server.shutdown().await;
}

#[tokio::test]
async fn filters_apply_to_snapshot_and_live_events() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    start(&mut client, "web-1", "web", "j1").await;
    start(&mut client, "db-1", "db", "j1").await;
    start(&mut client, "web-2", "web", "j2").await;
    common::end_session(&mut client, "web-2", "done").await;
    let mut by_app = watch(
        &mut client,
        pb::WatchSessionsRequest {
            include_existing: true,
            app_name: "web".into(),
            state: pb::SessionState::Active.into(),
            ..Default::default()
        },
    )
    .await;
    let (kind, session) = next(&mut by_app).await;
    assert_eq!(
        (kind, session.expect("session").id.as_str()),
        (Kind::Started, "web-1")
    );
    assert_eq!(next(&mut by_app).await, (Kind::CaughtUp, None));
    let mut by_job = watch(
        &mut client,
        pb::WatchSessionsRequest {
            include_existing: true,
            job_id: "j1".into(),
            ..Default::default()
        },
    )
    .await;
    let mut snapshot = Vec::new();
    loop {
        match next(&mut by_job).await {
            (Kind::CaughtUp, None) => break,
            (_, session) => snapshot.push(session.expect("session").id),
        }
    }
    assert_eq!(snapshot, ["web-1", "db-1"]);
    start(&mut client, "db-2", "db", "j9").await;
    start(&mut client, "web-3", "web", "j1").await;
    common::end_session(&mut client, "web-1", "done").await;
    // by_app (web, active): web-3 started, then web-1 leaving (ended).
    let (kind, session) = next(&mut by_app).await;
    assert_eq!(
        (kind, session.expect("session").id.as_str()),
        (Kind::Started, "web-3")
    );
    let (kind, session) = next(&mut by_app).await;
    assert_eq!(
        (kind, session.expect("session").id.as_str()),
        (Kind::Ended, "web-1")
    );
    // by_job (j1): web-3 started, web-1 ended; db-2 is another job.
    let (kind, session) = next(&mut by_job).await;
    assert_eq!(
        (kind, session.expect("session").id.as_str()),
        (Kind::Started, "web-3")
    );
    let (kind, session) = next(&mut by_job).await;
    assert_eq!(
        (kind, session.expect("session").id.as_str()),
        (Kind::Ended, "web-1")
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_started_while_subscribing_arrive_exactly_once() {
    const STARTS: usize = 200;
    let server = TestServer::start().await;
    let mut starter = server.client().await;
    let starting = tokio::spawn(async move {
        for index in 0..STARTS {
            start(&mut starter, &format!("s-{index}"), "race", "").await;
        }
    });
    let mut client = server.client().await;
    let mut events = watch(
        &mut client,
        pb::WatchSessionsRequest {
            include_existing: true,
            app_name: "race".into(),
            ..Default::default()
        },
    )
    .await;
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut caught_up = 0;
    while seen.len() < STARTS {
        match next(&mut events).await {
            (Kind::CaughtUp, None) => caught_up += 1,
            (Kind::Started, Some(session)) => *seen.entry(session.id).or_default() += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    starting.await.expect("starter");
    assert_eq!(caught_up, 1);
    assert!(
        seen.values().all(|count| *count == 1),
        "a session arrived twice"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn an_invalid_state_filter_is_invalid_argument() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let refused = client
        .watch_sessions(pb::WatchSessionsRequest {
            state: 42,
            ..Default::default()
        })
        .await;
    assert_eq!(refused.expect_err("state 42").code(), Code::InvalidArgument);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_open_watches_with_unavailable() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let mut events = watch(&mut client, pb::WatchSessionsRequest::default()).await;
    assert_eq!(next(&mut events).await, (Kind::CaughtUp, None));
    let reader = tokio::spawn(async move { events.next().await });
    server.shutdown().await;
    let last = reader.await.expect("reader").expect("a final status");
    assert_eq!(
        last.expect_err("ends with a status").code(),
        Code::Unavailable
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_snapshot_holds_ended_sessions_as_started_with_their_state() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    start(&mut client, "over", "app", "job").await;
    common::end_session(&mut client, "over", "done").await;
    start(&mut client, "running", "app", "job").await;

    let mut every = watch(
        &mut client,
        pb::WatchSessionsRequest {
            include_existing: true,
            ..Default::default()
        },
    )
    .await;
    let mut snapshot = Vec::new();
    loop {
        match next(&mut every).await {
            (Kind::CaughtUp, None) => break,
            (kind, Some(session)) => snapshot.push((kind, session.id.clone(), session.state())),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        snapshot,
        [
            (Kind::Started, "over".to_owned(), pb::SessionState::Ended),
            (
                Kind::Started,
                "running".to_owned(),
                pb::SessionState::Active
            ),
        ]
    );

    let mut active = watch(
        &mut client,
        pb::WatchSessionsRequest {
            include_existing: true,
            state: pb::SessionState::Active.into(),
            ..Default::default()
        },
    )
    .await;
    let (kind, session) = next(&mut active).await;
    assert_eq!(
        (kind, session.map(|s| s.id)),
        (Kind::Started, Some("running".to_owned()))
    );
    assert_eq!(next(&mut active).await, (Kind::CaughtUp, None));
    server.shutdown().await;
}
