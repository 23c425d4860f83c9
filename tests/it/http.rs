//! The HTTP edge (`--http-listen`) end to end: the real server on
//! ephemeral loopback ports, gRPC to write, raw HTTP/1.0 to read (the bytes
//! `curl -N` sees): list/get/entries with every filter, errors as JSON with
//! HTTP statuses, tokens, SSE follow (ids, `caught_up`, `ended`, resume
//! with `Last-Event-ID`), SSE watch, stream limits, keep-alives, the
//! console's files, and shutdown with streams open.

use std::time::{Duration, Instant};

use sessionlog::pb;
use sessionlog::server::ServerSettings;

use crate::common;
use crate::common::http::{Sse, SseEvent, get};
use crate::common::{
    Client, TestServer, append, append_entries, end_session, entry, start_session,
};

fn http(server: &TestServer) -> std::net::SocketAddr {
    server.http_addr.expect("started with http")
}

/// A server with the HTTP edge (settings changed by `configure`), a
/// client, one started session's id, and the HTTP address.
async fn serve_one_session(
    configure: impl FnOnce(&mut ServerSettings),
) -> (TestServer, Client, String, std::net::SocketAddr) {
    let server = TestServer::builder()
        .http()
        .configure(configure)
        .start()
        .await;
    let mut client = server.client().await;
    let id = start_session(&mut client, "app").await;
    let addr = http(&server);
    (server, client, id, addr)
}

/// Opens an SSE stream and reads up to its `caught_up`.
async fn open_caught_up(addr: std::net::SocketAddr, path: &str) -> Sse {
    let mut sse = Sse::open(addr, path, &[]).await;
    assert_eq!(sse.status, 200, "{path}");
    assert_eq!(sse.next().await.expect("caught up").event, "caught_up");
    sse
}

fn seqs_of(event: &SseEvent) -> Vec<u64> {
    event.json()["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|entry| entry["seq"].as_u64().expect("seq"))
        .collect()
}

fn ids_of(body: &serde_json::Value) -> Vec<String> {
    body["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .map(|session| session["id"].as_str().expect("id").to_owned())
        .collect()
}

#[tokio::test]
async fn sessions_list_filters_pages_and_gets() {
    let server = TestServer::builder().http().start().await;
    let mut client = server.client().await;
    let start = |app: &str, job: &str| pb::StartSessionRequest {
        app_name: app.into(),
        job_id: job.into(),
        ..Default::default()
    };
    let mut ids = Vec::new();
    for (app, job) in [("build", "j1"), ("build", "j2"), ("test", "j1")] {
        let session = client.start_session(start(app, job)).await.expect("start");
        ids.push(session.into_inner().id);
    }
    end_session(&mut client, &ids[0], "done").await;
    let addr = http(&server);

    let all = get(addr, "/api/v1/sessions", &[]).await;
    assert_eq!(all.status, 200, "{}", all.body);
    assert_eq!(all.header("content-type"), Some("application/json"));
    assert_eq!(ids_of(&all.json()), ids);
    let active = get(addr, "/api/v1/sessions?state=active", &[]).await.json();
    assert_eq!(ids_of(&active), ids[1..]);
    let ended = get(addr, "/api/v1/sessions?state=ended", &[]).await.json();
    assert_eq!(ids_of(&ended), ids[..1]);
    assert_eq!(ended["sessions"][0]["state"], "ended");
    assert_eq!(ended["sessions"][0]["end_reason"], "done");
    let build = get(addr, "/api/v1/sessions?app=build", &[]).await.json();
    assert_eq!(ids_of(&build), ids[..2]);
    let j1 = get(addr, "/api/v1/sessions?job=j1&app=test", &[])
        .await
        .json();
    assert_eq!(ids_of(&j1), ids[2..]);

    let first = get(addr, "/api/v1/sessions?page_size=2", &[]).await.json();
    assert_eq!(ids_of(&first), ids[..2]);
    let token = first["next_page_token"].as_str().expect("a token");
    let rest = get(
        addr,
        &format!("/api/v1/sessions?page_size=2&page_token={token}"),
        &[],
    )
    .await
    .json();
    assert_eq!(ids_of(&rest), ids[2..]);
    assert_eq!(rest["next_page_token"], "");

    let one = get(addr, &format!("/api/v1/sessions/{}", ids[1]), &[]).await;
    assert_eq!(one.status, 200);
    let one = one.json();
    assert_eq!(one["id"], ids[1].as_str());
    assert_eq!(one["app_name"], "build");
    assert_eq!(one["job_id"], "j2");
    assert_eq!(one["state"], "active");
    assert_eq!(one["ended_at"], serde_json::Value::Null);
    assert!(
        one["created_at"]
            .as_str()
            .is_some_and(|at| at.ends_with('Z'))
    );
    server.shutdown().await;
}

#[tokio::test]
async fn entries_apply_every_filter_and_paging() {
    let (server, mut client, id, addr) = serve_one_session(|_| {}).await;
    let at = |level: pb::Level, logger: &str, message: &str| pb::LogEntry {
        level: level.into(),
        logger: logger.into(),
        message: message.into(),
        ..Default::default()
    };
    append_entries(
        &mut client,
        &id,
        vec![
            at(pb::Level::Debug, "net.http", "dial"),
            at(pb::Level::Info, "db", "query ok"),
            at(pb::Level::Warn, "net.dns", "slow lookup"),
            at(pb::Level::Error, "db", "query failed"),
            at(pb::Level::Info, "ui", "render"),
        ],
    )
    .await;
    let seqs = |path: String| async move {
        let answer = get(addr, &path, &[]).await;
        assert_eq!(answer.status, 200, "{path}: {}", answer.body);
        let body = answer.json();
        let seqs: Vec<u64> = body["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .map(|entry| entry["seq"].as_u64().expect("seq"))
            .collect();
        (seqs, body)
    };
    let base = format!("/api/v1/sessions/{id}/entries");
    let (all, body) = seqs(base.clone()).await;
    assert_eq!(all, [1, 2, 3, 4, 5]);
    assert_eq!(
        (body["last_seq"].as_u64(), body["state"].as_str()),
        (Some(5), Some("active"))
    );
    assert_eq!(body["entries"][2]["level"], "warn");
    assert_eq!(body["entries"][2]["logger"], "net.dns");
    assert_eq!(body["entries"][2]["message"], "slow lookup");
    assert_eq!(seqs(format!("{base}?after=3")).await.0, [4, 5]);
    let (page, body) = seqs(format!("{base}?after=1&limit=2")).await;
    assert_eq!((page, body["next_cursor"].as_u64()), (vec![2, 3], Some(3)));
    assert_eq!(seqs(format!("{base}?tail=2")).await.0, [4, 5]);
    assert_eq!(seqs(format!("{base}?level=warn")).await.0, [3, 4]);
    assert_eq!(seqs(format!("{base}?logger=net")).await.0, [1, 3]);
    assert_eq!(
        seqs(format!("{base}?logger=net.dns&logger=ui")).await.0,
        [3, 5]
    );
    assert_eq!(seqs(format!("{base}?contains=query")).await.0, [2, 4]);
    assert_eq!(
        seqs(format!("{base}?contains=query&level=error")).await.0,
        [4]
    );
    assert_eq!(seqs(format!("{base}?contains=slow%20lookup")).await.0, [3]);
    server.shutdown().await;
}

#[tokio::test]
async fn errors_are_json_with_the_http_status() {
    let (server, _client, id, addr) =
        serve_one_session(|settings| settings.limits.max_text_bytes = 16).await;
    let cases = [
        ("/api/v1/sessions/nope".to_owned(), 404, "NOT_FOUND"),
        ("/api/v1/sessions/nope/entries".to_owned(), 404, "NOT_FOUND"),
        ("/api/v1/sessions/nope/follow".to_owned(), 404, "NOT_FOUND"),
        (
            "/api/v1/sessions/bad%20id".to_owned(),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            format!("/api/v1/sessions/{id}/entries?after=x"),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            format!("/api/v1/sessions/{id}/entries?level=loud"),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            format!("/api/v1/sessions/{id}/entries?aftr=1"),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            format!("/api/v1/sessions/{id}/follow?tail=-1"),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            "/api/v1/sessions?state=open".to_owned(),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            "/api/v1/sessions?page_token=forged".to_owned(),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            "/api/v1/watch?include_existing=maybe".to_owned(),
            400,
            "INVALID_ARGUMENT",
        ),
        ("/api/v2/sessions".to_owned(), 404, "NOT_FOUND"),
    ];
    for (path, status, code) in cases {
        let answer = get(addr, &path, &[]).await;
        assert_eq!(answer.status, status, "{path}: {}", answer.body);
        assert_eq!(answer.error_code(), code, "{path}");
        let message = answer.json()["error"]["message"]
            .as_str()
            .map(str::to_owned);
        assert!(message.is_some_and(|m| !m.is_empty()), "{path}: no message");
    }
    let typo = get(addr, &format!("/api/v1/sessions/{id}/entries?aftr=1"), &[]).await;
    let message = typo.json()["error"]["message"].to_string();
    assert!(
        message.contains("aftr") && message.contains("after"),
        "{message}"
    );
    let long = "x".repeat(17);
    let over = get(
        addr,
        &format!("/api/v1/sessions/{id}/entries?contains={long}"),
        &[],
    )
    .await;
    assert_eq!(
        (over.status, over.error_code().as_str()),
        (429, "RESOURCE_EXHAUSTED")
    );
    server.shutdown().await;
}

#[tokio::test]
async fn tokens_guard_the_api_but_not_the_console() {
    let dir = tempfile::tempdir().expect("temp dir");
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "sekrit\n").expect("token file");
    let server = TestServer::builder()
        .http()
        .configure(|settings| {
            settings.auth_token_file = Some(tokens.clone());
        })
        .start()
        .await;
    let addr = http(&server);
    let view = server
        .sessions
        .start(sessionlog::testing::StoredSession::default())
        .await
        .expect("start");
    let id = view.record.id;
    let good = [("Authorization", "Bearer sekrit")];
    let bad = [("Authorization", "Bearer nope")];

    let missing = get(addr, "/api/v1/sessions", &[]).await;
    assert_eq!(
        (missing.status, missing.error_code().as_str()),
        (401, "UNAUTHENTICATED")
    );
    assert!(missing.header("www-authenticate").is_some());
    assert_eq!(get(addr, "/api/v1/sessions", &bad).await.status, 401);
    assert_eq!(get(addr, "/api/v1/sessions", &good).await.status, 200);
    let entries = format!("/api/v1/sessions/{id}/entries");
    assert_eq!(get(addr, &entries, &good).await.status, 200);
    // The query token is for EventSource only; plain routes want the header.
    let by_query = get(addr, &format!("{entries}?access_token=sekrit"), &[]).await;
    assert_eq!(by_query.status, 401);

    let follow = format!("/api/v1/sessions/{id}/follow");
    assert_eq!(get(addr, &follow, &[]).await.status, 401);
    let wrong = Sse::open(addr, &format!("{follow}?access_token=nope"), &[]).await;
    assert_eq!(wrong.status, 401);
    let mut by_query = Sse::open(addr, &format!("{follow}?access_token=sekrit"), &[]).await;
    assert_eq!(by_query.status, 200);
    assert_eq!(
        by_query.next().await.map(|event| event.event),
        Some("caught_up".into())
    );
    let by_header = Sse::open(addr, &follow, &good).await;
    assert_eq!(by_header.status, 200);
    let mut watch = Sse::open(addr, "/api/v1/watch?access_token=sekrit", &[]).await;
    assert_eq!(watch.status, 200);
    assert_eq!(
        watch.next().await.map(|event| event.event),
        Some("caught_up".into())
    );
    assert_eq!(Sse::open(addr, "/api/v1/watch", &[]).await.status, 401);

    let console = get(addr, "/", &[]).await;
    assert_eq!(console.status, 200);
    drop((by_query, by_header, watch));
    server.shutdown().await;
}

#[tokio::test]
async fn follow_streams_batches_with_cursor_ids_then_caught_up_then_ended() {
    let (server, mut client, id, addr) = serve_one_session(|_| {}).await;
    append(&mut client, &id, &["one", "two", "three"]).await;
    let mut sse = Sse::open(addr, &format!("/api/v1/sessions/{id}/follow"), &[]).await;
    assert_eq!(sse.status, 200);
    assert_eq!(
        sse.headers
            .iter()
            .find(|(k, _)| k == "content-type")
            .map(|(_, v)| v.as_str()),
        Some("text/event-stream")
    );
    let history = sse.next().await.expect("history");
    assert_eq!(
        (history.event.as_str(), history.id.as_deref()),
        ("message", Some("3"))
    );
    assert_eq!(seqs_of(&history), [1, 2, 3]);
    assert_eq!(history.json()["cursor"], 3);
    assert_eq!(history.json()["entries"][1]["message"], "two");
    let caught_up = sse.next().await.expect("caught up");
    assert_eq!(
        (caught_up.event.as_str(), caught_up.id.as_deref()),
        ("caught_up", Some("3"))
    );
    assert_eq!(caught_up.json()["cursor"], 3);

    append(&mut client, &id, &["four", "five"]).await;
    let live = sse.next().await.expect("live");
    assert_eq!(
        (live.id.as_deref(), seqs_of(&live)),
        (Some("5"), vec![4, 5])
    );
    end_session(&mut client, &id, "finished").await;
    let last = sse.next().await.expect("the end entry");
    assert_eq!(seqs_of(&last), [6]);
    assert_eq!(
        last.json()["entries"][0]["message"],
        "Session ended: finished"
    );
    let ended = sse.next().await.expect("ended");
    assert_eq!(ended.event, "ended");
    assert_eq!(
        (
            ended.json()["state"].as_str(),
            ended.json()["last_seq"].as_u64()
        ),
        (Some("ended"), Some(6))
    );
    assert_eq!(sse.next().await, None, "the stream closes after `ended`");

    // An ended session: history, caught_up, ended, closed.
    let events = Sse::open(addr, &format!("/api/v1/sessions/{id}/follow?after=4"), &[])
        .await
        .rest()
        .await;
    let names: Vec<&str> = events.iter().map(|event| event.event.as_str()).collect();
    assert_eq!(names, ["message", "caught_up", "ended"]);
    assert_eq!(seqs_of(&events[0]), [5, 6]);
    server.shutdown().await;
}

#[tokio::test]
async fn follow_resumes_from_last_event_id_without_gap_or_duplicate() {
    let (server, mut client, id, addr) = serve_one_session(|_| {}).await;
    let messages: Vec<String> = (1..=7).map(|n| format!("entry {n}")).collect();
    let refs: Vec<&str> = messages.iter().map(String::as_str).collect();
    append(&mut client, &id, &refs).await;
    let path = format!("/api/v1/sessions/{id}/follow?max_batch=3");
    let mut first = Sse::open(addr, &path, &[]).await;
    let batch = first.next().await.expect("a batch");
    assert_eq!(
        (batch.id.as_deref(), seqs_of(&batch)),
        (Some("3"), vec![1, 2, 3])
    );
    drop(first); // the connection drops mid-history

    append(&mut client, &id, &["entry 8"]).await;
    // A browser reconnects to the same URL with Last-Event-ID; it wins over `after`.
    let resumed_path = format!("{path}&after=1&tail=2");
    let mut resumed = Sse::open(addr, &resumed_path, &[("Last-Event-ID", "3")]).await;
    let mut seen = Vec::new();
    loop {
        let event = resumed.next().await.expect("an event");
        if event.event == "caught_up" {
            assert_eq!(event.id.as_deref(), Some("8"));
            break;
        }
        seen.extend(seqs_of(&event));
    }
    assert_eq!(seen, [4, 5, 6, 7, 8]);

    // With a filter, ids advance past skipped entries, so a resume
    // re-sends nothing and skips nothing that matches.
    append_entries(&mut client, &id, vec![entry("skip me"), entry("keep me")]).await;
    let filtered = format!("/api/v1/sessions/{id}/follow?contains=keep");
    let mut sse = Sse::open(addr, &filtered, &[("Last-Event-ID", "8")]).await;
    let kept = sse.next().await.expect("kept");
    assert_eq!((kept.id.as_deref(), seqs_of(&kept)), (Some("10"), vec![10]));
    server.shutdown().await;
}

#[tokio::test]
async fn watch_streams_existing_sessions_then_live_events() {
    let server = TestServer::builder().http().start().await;
    let mut client = server.client().await;
    let old = start_session(&mut client, "old").await;
    let addr = http(&server);
    let mut sse = Sse::open(addr, "/api/v1/watch?include_existing=true", &[]).await;
    let existing = sse.next().await.expect("existing");
    assert_eq!(existing.event, "started");
    assert_eq!(existing.json()["kind"], "started");
    assert_eq!(existing.json()["session"]["id"], old.as_str());
    assert_eq!(sse.next().await.expect("caught up").event, "caught_up");
    let new = start_session(&mut client, "new").await;
    let started = sse.next().await.expect("started");
    assert_eq!(
        (
            started.event.as_str(),
            started.json()["session"]["id"].as_str()
        ),
        ("started", Some(new.as_str()))
    );
    end_session(&mut client, &new, "bye").await;
    let ended = sse.next().await.expect("ended");
    assert_eq!(ended.event, "ended");
    assert_eq!(ended.json()["session"]["end_reason"], "bye");

    let mut only_new = open_caught_up(addr, "/api/v1/watch?app=other").await;
    start_session(&mut client, "skipped").await;
    let other = start_session(&mut client, "other").await;
    let event = only_new.next().await.expect("filtered");
    assert_eq!(event.json()["session"]["id"], other.as_str());
    server.shutdown().await;
}

#[tokio::test]
async fn sse_streams_count_against_the_stream_limits() {
    let (server, mut client, id, addr) =
        serve_one_session(|settings| settings.limits.max_follows_per_session = 1).await;
    let path = format!("/api/v1/sessions/{id}/follow");
    let open = open_caught_up(addr, &path).await;
    let refused = get(addr, &path, &[]).await;
    assert_eq!(
        (refused.status, refused.error_code().as_str()),
        (429, "RESOURCE_EXHAUSTED")
    );
    assert_eq!(refused.header("retry-after"), Some("1"));
    // The gRPC edge counts the same streams.
    let grpc = client
        .follow(pb::FollowRequest {
            session_id: id.clone(),
            ..Default::default()
        })
        .await;
    common::expect_code(grpc, tonic::Code::ResourceExhausted);
    drop(open);
    // The slot comes back when the stream's connection closes.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut again = Sse::open(addr, &path, &[]).await;
        if again.status == 200 {
            assert_eq!(again.next().await.expect("caught up").event, "caught_up");
            break;
        }
        assert!(Instant::now() < deadline, "the slot never came back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn idle_streams_get_keep_alive_comments() {
    let (server, mut client, id, addr) =
        serve_one_session(|settings| settings.sse_keep_alive = Duration::from_millis(50)).await;
    let mut sse = open_caught_up(addr, &format!("/api/v1/sessions/{id}/follow")).await;
    append(&mut client, &id, &["after a pause"]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    append(&mut client, &id, &["and another"]).await;
    let mut seqs = seqs_of(&sse.next().await.expect("batch"));
    if seqs == [1] {
        seqs.extend(seqs_of(&sse.next().await.expect("batch")));
    }
    assert_eq!(seqs, [1, 2]);
    assert!(sse.comments >= 2, "{} keep-alive comments", sse.comments);
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_ends_open_sse_streams_promptly() {
    let (server, _client, id, addr) = serve_one_session(|_| {}).await;
    let mut follow = open_caught_up(addr, &format!("/api/v1/sessions/{id}/follow")).await;
    let mut watch = open_caught_up(addr, "/api/v1/watch").await;
    let reader = tokio::spawn(async move { (follow.rest().await, watch.rest().await) });
    let began = Instant::now();
    server.shutdown().await;
    // Well under the 5 s grace: the streams ended, nothing waited them out.
    assert!(
        began.elapsed() < Duration::from_secs(3),
        "{:?}",
        began.elapsed()
    );
    let (follow_rest, watch_rest) = reader.await.expect("reader");
    for rest in [follow_rest, watch_rest] {
        assert_eq!(rest.len(), 1, "{rest:?}");
        assert_eq!(rest[0].event, "stream_error");
        assert_eq!(rest[0].json()["error"]["code"], "UNAVAILABLE");
    }
}

#[tokio::test]
async fn the_console_is_served_with_its_security_and_cache_headers() {
    let server = TestServer::builder().http().start().await;
    let addr = http(&server);
    let page = get(addr, "/", &[]).await;
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let csp = page.header("content-security-policy").expect("a CSP");
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert_eq!(page.header("referrer-policy"), Some("no-referrer"));
    assert_eq!(page.header("cache-control"), Some("no-cache"));
    assert!(page.body.contains("/assets/console.js"));
    let etag = page.header("etag").expect("an etag").to_owned();
    let again = get(addr, "/", &[("If-None-Match", &etag)]).await;
    assert_eq!((again.status, again.body.as_str()), (304, ""));
    let script = get(addr, "/assets/console.js", &[]).await;
    assert_eq!(
        (script.status, script.header("content-type")),
        (200, Some("text/javascript; charset=utf-8"))
    );
    let style = get(addr, "/assets/console.css", &[]).await;
    assert_eq!(
        (style.status, style.header("content-type")),
        (200, Some("text/css; charset=utf-8"))
    );
    server.shutdown().await;
}

#[tokio::test]
async fn without_tokens_only_this_servers_names_are_served() {
    let server = TestServer::builder()
        .http()
        .configure(|settings| settings.http_allowed_hosts = vec!["logs.internal".to_owned()])
        .start()
        .await;
    let addr = http(&server);
    let with_host = |host: &'static str| [("Host", host)];
    // A page on a rebound name reaches the loopback address with its own
    // name in `Host`.
    for host in ["rebind.example", "rebind.example:8080", "10.1.2.3"] {
        let refused = get(addr, "/api/v1/sessions", &with_host(host)).await;
        assert_eq!(
            (refused.status, refused.error_code().as_str()),
            (421, "INVALID_ARGUMENT"),
            "{host}"
        );
        assert_eq!(get(addr, "/", &with_host(host)).await.status, 421);
    }
    for host in [
        "localhost",
        "localhost:1234",
        "127.0.0.1",
        "logs.internal:80",
    ] {
        let served = get(addr, "/api/v1/sessions", &with_host(host)).await;
        assert_eq!(served.status, 200, "{host}: {}", served.body);
    }
    // The address the console is loaded from, as a browser sends it.
    assert_eq!(get(addr, "/", &[]).await.status, 200);
    server.shutdown().await;
}

#[tokio::test]
async fn with_tokens_the_host_is_not_checked() {
    let dir = tempfile::tempdir().expect("temp dir");
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "sekrit\n").expect("token file");
    let server = TestServer::builder()
        .http()
        .configure(|settings| settings.auth_token_file = Some(tokens.clone()))
        .start()
        .await;
    let addr = http(&server);
    let headers = [
        ("Host", "proxy.example"),
        ("Authorization", "Bearer sekrit"),
    ];
    assert_eq!(get(addr, "/api/v1/sessions", &headers).await.status, 200);
    server.shutdown().await;
}

#[tokio::test]
async fn paths_that_do_not_decode_and_dot_ids_get_json_errors() {
    let server = TestServer::builder().http().start().await;
    let addr = http(&server);
    for path in [
        "/api/v1/sessions/%FF",
        "/api/v1/sessions/%FF/entries",
        "/api/v1/sessions/%FF/follow",
        "/api/v1/sessions/./entries",
        "/api/v1/sessions/%2E%2E",
        "/api/v1/sessions/%2e/follow",
    ] {
        let answer = get(addr, path, &[]).await;
        assert_eq!(
            (answer.status, answer.error_code().as_str()),
            (400, "INVALID_ARGUMENT"),
            "{path}: {}",
            answer.body
        );
    }
    server.shutdown().await;
}
