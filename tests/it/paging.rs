//! Paging: `Read` cursors, limits, tails and filters; `ListSessions` pages
//! and filters.

use std::collections::{HashMap, HashSet};

use futures::future::join_all;
use sessionlog::pb;
use tonic::Code;

use crate::common::{Client, TestServer, append_entries, end_session, expect_code, start_session};

const LOGGERS: [&str; 5] = ["net.http", "net.dns", "db.pool", "dbx", "ui"];

/// The entry stored at `seq` in the sessions these tests fill.
fn entry_at(seq: u64) -> pb::LogEntry {
    let level = 1 + (seq % 6) as i32;
    let logger = LOGGERS[(seq % 5) as usize];
    let message = if seq.is_multiple_of(7) {
        format!("request {seq} timeout")
    } else if seq.is_multiple_of(11) {
        format!("request {seq} Timeout")
    } else {
        format!("request {seq} ok")
    };
    pb::LogEntry {
        level,
        logger: logger.to_owned(),
        message,
        ..Default::default()
    }
}

/// Whether `filter` keeps the entry stored at `seq`, by the contract.
fn keeps(filter: &pb::LogFilter, seq: u64) -> bool {
    let entry = entry_at(seq);
    (filter.min_level == 0 || entry.level >= filter.min_level)
        && (filter.logger_prefixes.is_empty()
            || filter
                .logger_prefixes
                .iter()
                .any(|prefix| entry.logger.starts_with(prefix.as_str())))
        && entry.message.contains(filter.contains.as_str())
}

/// A session holding `count` entries, appended in batches of at most 1,000.
async fn filled_session(client: &mut Client, count: u64) -> String {
    let id = start_session(client, "paging").await;
    let mut next = 1;
    while next <= count {
        let last = (next + 999).min(count);
        let response = append_entries(client, &id, (next..=last).map(entry_at).collect()).await;
        assert_eq!((response.first_seq, response.last_seq), (next, last));
        next = last + 1;
    }
    id
}

async fn read(client: &mut Client, request: pb::ReadRequest) -> pb::ReadResponse {
    client.read(request).await.expect("read").into_inner()
}

fn request(id: &str, after_seq: u64, limit: u32) -> pb::ReadRequest {
    pb::ReadRequest {
        session_id: id.to_owned(),
        after_seq,
        limit,
        ..Default::default()
    }
}

fn seqs(entries: &[pb::LogEntry]) -> Vec<u64> {
    entries.iter().map(|e| e.seq).collect()
}

#[tokio::test]
async fn reading_pages_of_1000_visits_each_of_10000_entries_once_in_order() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let id = filled_session(&mut client, 10_000).await;

    let mut cursor = 0;
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let page = read(&mut client, request(&id, cursor, 1_000)).await;
        assert_eq!(page.last_seq, 10_000);
        assert_eq!(page.state(), pb::SessionState::Active);
        if page.entries.is_empty() {
            assert_eq!(page.next_cursor, cursor, "an empty page stays put");
            break;
        }
        pages += 1;
        assert_eq!(page.entries.len(), 1_000);
        assert_eq!(
            page.entries[0].seq,
            cursor + 1,
            "pages continue at the cursor"
        );
        assert_eq!(page.next_cursor, page.entries.last().expect("entries").seq);
        for entry in &page.entries {
            assert_eq!(
                *entry,
                pb::LogEntry {
                    seq: entry.seq,
                    timestamp: entry.timestamp,
                    ..entry_at(entry.seq)
                }
            );
        }
        seen.extend(seqs(&page.entries));
        cursor = page.next_cursor;
        assert!(pages <= 10, "paging does not end");
    }
    assert_eq!(pages, 10);
    assert_eq!(cursor, 10_000);
    assert_eq!(seen, (1..=10_000).collect::<Vec<_>>());
    server.shutdown().await;
}

#[tokio::test]
async fn read_limit_0_means_1000_and_larger_limits_are_clamped_to_10000() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let id = filled_session(&mut client, 10_500).await;

    let default = read(&mut client, request(&id, 0, 0)).await;
    assert_eq!(seqs(&default.entries), (1..=1_000).collect::<Vec<_>>());
    assert_eq!(default.next_cursor, 1_000);

    let small = read(&mut client, request(&id, 100, 7)).await;
    assert_eq!(seqs(&small.entries), (101..=107).collect::<Vec<_>>());
    assert_eq!(small.next_cursor, 107);

    for limit in [10_001, 50_000, u32::MAX] {
        let clamped = read(&mut client, request(&id, 0, limit)).await;
        assert_eq!(clamped.entries.len(), 10_000, "limit {limit}");
        assert_eq!(
            seqs(&clamped.entries),
            (1..=10_000).collect::<Vec<_>>(),
            "limit {limit}"
        );
        assert_eq!(clamped.next_cursor, 10_000);
        assert_eq!(clamped.last_seq, 10_500);
    }
    let rest = read(&mut client, request(&id, 10_000, 50_000)).await;
    assert_eq!(seqs(&rest.entries), (10_001..=10_500).collect::<Vec<_>>());
    assert_eq!(rest.next_cursor, 10_500);

    // Past the end: nothing, and the cursor stays where it was.
    let past = read(&mut client, request(&id, 20_000, 0)).await;
    assert!(past.entries.is_empty());
    assert!(past.next_cursor >= 10_500);
    server.shutdown().await;
}

#[tokio::test]
async fn tail_returns_the_last_n_entries() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let id = filled_session(&mut client, 2_000).await;

    let tail = read(
        &mut client,
        pb::ReadRequest {
            tail: 5,
            ..request(&id, 0, 0)
        },
    )
    .await;
    assert_eq!(seqs(&tail.entries), [1_996, 1_997, 1_998, 1_999, 2_000]);
    assert_eq!(tail.next_cursor, 2_000);
    assert_eq!(tail.last_seq, 2_000);

    // With a cursor: the last N after it, fewer when fewer remain.
    let after = read(
        &mut client,
        pb::ReadRequest {
            tail: 5,
            ..request(&id, 1_997, 0)
        },
    )
    .await;
    assert_eq!(seqs(&after.entries), [1_998, 1_999, 2_000]);
    assert_eq!(after.next_cursor, 2_000);

    // A tail larger than the log returns all of it.
    let small = filled_session(&mut client, 3).await;
    let all = read(
        &mut client,
        pb::ReadRequest {
            tail: 100,
            ..request(&small, 0, 0)
        },
    )
    .await;
    assert_eq!(seqs(&all.entries), [1, 2, 3]);
    assert_eq!(all.next_cursor, 3);

    // A tail over the page maximum is clamped like a limit.
    let big = read(
        &mut client,
        pb::ReadRequest {
            tail: 50_000,
            ..request(&id, 0, 0)
        },
    )
    .await;
    assert_eq!(seqs(&big.entries), (1..=2_000).collect::<Vec<_>>());
    server.shutdown().await;
}

#[tokio::test]
async fn filters_keep_matching_entries_and_the_cursor_advances_past_skipped_ones() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    const COUNT: u64 = 1_500;
    let id = filled_session(&mut client, COUNT).await;

    let filters = [
        pb::LogFilter {
            min_level: pb::Level::Warn.into(),
            ..Default::default()
        },
        pb::LogFilter {
            min_level: pb::Level::Critical.into(),
            ..Default::default()
        },
        pb::LogFilter {
            logger_prefixes: vec!["net.".into()],
            ..Default::default()
        },
        pb::LogFilter {
            logger_prefixes: vec!["net.d".into(), "db".into()],
            ..Default::default()
        },
        pb::LogFilter {
            contains: "timeout".into(),
            ..Default::default()
        },
        pb::LogFilter {
            contains: "Timeout".into(),
            ..Default::default()
        },
        pb::LogFilter {
            min_level: pb::Level::Error.into(),
            logger_prefixes: vec!["ui".into(), "net.http".into()],
            contains: "timeout".into(),
            ..Default::default()
        },
        pb::LogFilter::default(),
    ];
    for filter in filters {
        let expected: Vec<u64> = (1..=COUNT).filter(|&seq| keeps(&filter, seq)).collect();
        assert!(!expected.is_empty(), "{filter:?} should match something");

        // Paging with a small limit visits exactly the matching entries.
        let mut cursor = 0;
        let mut seen = Vec::new();
        for _ in 0..=COUNT {
            let page = read(
                &mut client,
                pb::ReadRequest {
                    filter: Some(filter.clone()),
                    ..request(&id, cursor, 40)
                },
            )
            .await;
            assert!(page.entries.len() <= 40);
            assert!(page.next_cursor >= cursor, "the cursor never goes back");
            if let Some(last) = page.entries.last() {
                assert!(page.next_cursor >= last.seq);
                assert!(
                    page.entries.iter().all(|e| keeps(&filter, e.seq)),
                    "{filter:?}"
                );
            }
            seen.extend(seqs(&page.entries));
            if page.next_cursor == cursor || page.next_cursor >= page.last_seq {
                cursor = page.next_cursor;
                break;
            }
            cursor = page.next_cursor;
        }
        assert_eq!(seen, expected, "{filter:?}");
        assert_eq!(cursor, COUNT, "{filter:?}: the cursor reaches the end");

        // Tail with a filter: the last N matching.
        let tail = read(
            &mut client,
            pb::ReadRequest {
                filter: Some(filter.clone()),
                tail: 7,
                ..request(&id, 0, 0)
            },
        )
        .await;
        let want = &expected[expected.len().saturating_sub(7)..];
        assert_eq!(seqs(&tail.entries), want, "tail with {filter:?}");
    }

    // A filter that matches nothing still moves the cursor to the end.
    let nothing = read(
        &mut client,
        pb::ReadRequest {
            filter: Some(pb::LogFilter {
                contains: "no such text".into(),
                ..Default::default()
            }),
            ..request(&id, 0, 0)
        },
    )
    .await;
    assert!(nothing.entries.is_empty());
    assert_eq!(nothing.next_cursor, COUNT);
    assert_eq!(nothing.last_seq, COUNT);
    // Also from a cursor in the middle.
    let nothing = read(
        &mut client,
        pb::ReadRequest {
            filter: Some(pb::LogFilter {
                logger_prefixes: vec!["nobody".into()],
                ..Default::default()
            }),
            ..request(&id, 700, 10)
        },
    )
    .await;
    assert!(nothing.entries.is_empty());
    assert_eq!(nothing.next_cursor, COUNT);
    server.shutdown().await;
}

/// Starts `count` sessions over a few connections at once; returns their ids.
async fn start_many(server: &TestServer, count: usize, app_name: &str) -> Vec<String> {
    let connections = 4;
    let mut clients = Vec::new();
    for _ in 0..connections {
        clients.push(server.client().await);
    }
    let per_client = count.div_ceil(connections);
    let started = join_all(clients.iter_mut().enumerate().map(|(c, client)| {
        let n = per_client.min(count.saturating_sub(c * per_client));
        async move {
            let mut ids = Vec::with_capacity(n);
            for _ in 0..n {
                ids.push(start_session(client, app_name).await);
            }
            ids
        }
    }))
    .await;
    let ids: Vec<String> = started.into_iter().flatten().collect();
    assert_eq!(ids.len(), count);
    ids
}

async fn list(client: &mut Client, request: pb::ListSessionsRequest) -> pb::ListSessionsResponse {
    client
        .list_sessions(request)
        .await
        .expect("list sessions")
        .into_inner()
}

/// Every session `request` matches from its page token on, following tokens.
async fn list_all(client: &mut Client, request: pb::ListSessionsRequest) -> Vec<pb::Session> {
    let mut sessions = Vec::new();
    let mut page_token = request.page_token.clone();
    for _ in 0..10_000 {
        let page = list(
            client,
            pb::ListSessionsRequest {
                page_token,
                ..request.clone()
            },
        )
        .await;
        sessions.extend(page.sessions);
        if page.next_page_token.is_empty() {
            return sessions;
        }
        page_token = page.next_page_token;
    }
    panic!("listing does not end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_250_sessions_by_100_gives_3_pages_with_each_session_once() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let mut ids = start_many(&server, 250, "listed").await;
    ids.sort();

    let mut pages = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = list(
            &mut client,
            pb::ListSessionsRequest {
                page_size: 100,
                page_token,
                ..Default::default()
            },
        )
        .await;
        let done = page.next_page_token.is_empty();
        page_token = page.next_page_token;
        pages.push(page.sessions);
        if done {
            break;
        }
        assert!(pages.len() < 10, "listing does not end");
    }
    let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
    assert_eq!(sizes, [100, 100, 50]);
    let listed: Vec<String> = pages.into_iter().flatten().map(|s| s.id).collect();
    assert_eq!(listed, ids, "each session exactly once, in id order");

    // page_size 0 means 100.
    let default = list(&mut client, pb::ListSessionsRequest::default()).await;
    assert_eq!(default.sessions.len(), 100);
    assert!(!default.next_page_token.is_empty());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_while_sessions_start_sees_every_existing_session_exactly_once() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let existing = start_many(&server, 250, "existing").await;

    // Another connection keeps starting sessions while we page.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let starter = {
        let mut client = server.client().await;
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut started = 0;
            while !stop.load(std::sync::atomic::Ordering::Acquire) && started < 500 {
                start_session(&mut client, "newcomer").await;
                started += 1;
            }
            started
        })
    };

    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut page_token = String::new();
    let mut pages = 0;
    loop {
        let page = list(
            &mut client,
            pb::ListSessionsRequest {
                page_size: 100,
                page_token,
                ..Default::default()
            },
        )
        .await;
        pages += 1;
        for session in page.sessions {
            *seen.entry(session.id).or_default() += 1;
        }
        // Also start one between pages, so starts land mid-listing for sure.
        start_session(&mut client, "between-pages").await;
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
        assert!(pages < 100, "listing does not end");
    }
    stop.store(true, std::sync::atomic::Ordering::Release);
    starter.await.expect("starter task");

    for id in &existing {
        assert_eq!(
            seen.get(id),
            Some(&1),
            "{id} listed {:?} times",
            seen.get(id)
        );
    }
    assert!(
        seen.values().all(|&times| times == 1),
        "a session was listed twice"
    );
    server.shutdown().await;
}

/// A session the filter test started, and what it was started with.
struct Made {
    id: String,
    app: &'static str,
    job: &'static str,
    child: bool,
    ended: bool,
}

#[tokio::test]
async fn listing_filters_by_state_app_job_and_parent() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let parent = start_session(&mut client, "root").await;
    let mut made: Vec<Made> = Vec::new();
    for i in 0..60usize {
        let app = ["alpha", "beta", "gamma"][i % 3];
        let job = ["job-1", "job-2"][i % 2];
        let child = i % 5 == 0;
        let session = client
            .start_session(pb::StartSessionRequest {
                app_name: app.into(),
                job_id: job.into(),
                parent_session_id: if child { parent.clone() } else { String::new() },
                ..Default::default()
            })
            .await
            .expect("start")
            .into_inner();
        let ended = i % 4 == 0;
        if ended {
            end_session(&mut client, &session.id, "done").await;
        }
        made.push(Made {
            id: session.id,
            app,
            job,
            child,
            ended,
        });
    }
    let ids_where = |keep: &dyn Fn(&Made) -> bool| -> HashSet<String> {
        made.iter()
            .filter(|m| keep(m))
            .map(|m| m.id.clone())
            .collect()
    };
    let listed = |sessions: Vec<pb::Session>| -> HashSet<String> {
        let count = sessions.len();
        let ids: HashSet<String> = sessions.into_iter().map(|s| s.id).collect();
        assert_eq!(ids.len(), count, "a session listed twice");
        ids
    };

    let cases: Vec<(pb::ListSessionsRequest, HashSet<String>)> = vec![
        (
            pb::ListSessionsRequest {
                state: pb::SessionState::Ended.into(),
                ..Default::default()
            },
            ids_where(&|m| m.ended),
        ),
        (
            pb::ListSessionsRequest {
                app_name: "beta".into(),
                ..Default::default()
            },
            ids_where(&|m| m.app == "beta"),
        ),
        (
            pb::ListSessionsRequest {
                job_id: "job-2".into(),
                ..Default::default()
            },
            ids_where(&|m| m.job == "job-2"),
        ),
        (
            pb::ListSessionsRequest {
                parent_session_id: parent.clone(),
                ..Default::default()
            },
            ids_where(&|m| m.child),
        ),
        (
            pb::ListSessionsRequest {
                state: pb::SessionState::Active.into(),
                app_name: "alpha".into(),
                job_id: "job-1".into(),
                ..Default::default()
            },
            ids_where(&|m| !m.ended && m.app == "alpha" && m.job == "job-1"),
        ),
        (
            pb::ListSessionsRequest {
                app_name: "nobody".into(),
                ..Default::default()
            },
            HashSet::new(),
        ),
    ];
    for (request, want) in cases {
        // Small pages, so the filters are applied across page boundaries too.
        let paged = list_all(
            &mut client,
            pb::ListSessionsRequest {
                page_size: 4,
                ..request.clone()
            },
        )
        .await;
        assert!(paged.iter().all(|s| {
            (request.state == 0 || s.state == request.state)
                && (request.app_name.is_empty() || s.app_name == request.app_name)
                && (request.job_id.is_empty() || s.job_id == request.job_id)
                && (request.parent_session_id.is_empty()
                    || s.parent_session_id == request.parent_session_id)
        }));
        assert_eq!(listed(paged), want, "{request:?}");
    }

    // The active filter includes the parent, which matches no other filter.
    let active = listed(
        list_all(
            &mut client,
            pb::ListSessionsRequest {
                state: pb::SessionState::Active.into(),
                ..Default::default()
            },
        )
        .await,
    );
    let mut want = ids_where(&|m| !m.ended);
    want.insert(parent.clone());
    assert_eq!(active, want);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_page_size_over_1000_is_clamped_to_1000() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let mut ids = start_many(&server, 1_050, "many").await;
    ids.sort();
    let first = list(
        &mut client,
        pb::ListSessionsRequest {
            page_size: 5_000,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(first.sessions.len(), 1_000);
    assert!(!first.next_page_token.is_empty());
    let second = list(
        &mut client,
        pb::ListSessionsRequest {
            page_size: 5_000,
            page_token: first.next_page_token,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(second.sessions.len(), 50);
    assert!(second.next_page_token.is_empty());
    let listed: Vec<String> = first
        .sessions
        .into_iter()
        .chain(second.sessions)
        .map(|s| s.id)
        .collect();
    assert_eq!(listed, ids);
    let max = list(
        &mut client,
        pb::ListSessionsRequest {
            page_size: u32::MAX,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(max.sessions.len(), 1_000);
    expect_code(
        client
            .list_sessions(pb::ListSessionsRequest {
                page_token: "not-a-token".into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
    );
    server.shutdown().await;
}

#[tokio::test]
async fn listing_goes_on_after_the_last_listed_session_is_deleted() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let mut ids = Vec::new();
    for _ in 0..25 {
        ids.push(start_session(&mut client, "deleting").await);
    }
    let first = list(
        &mut client,
        pb::ListSessionsRequest {
            page_size: 10,
            ..Default::default()
        },
    )
    .await;
    let first_ids: Vec<String> = first.sessions.into_iter().map(|s| s.id).collect();
    assert_eq!(first_ids, ids[..10]);
    // The session the token points after disappears before the next page.
    client
        .delete_session(pb::DeleteSessionRequest {
            session_id: ids[9].clone(),
            force: true,
        })
        .await
        .expect("delete");
    let rest = list_all(
        &mut client,
        pb::ListSessionsRequest {
            page_size: 10,
            page_token: first.next_page_token,
            ..Default::default()
        },
    )
    .await;
    let rest_ids: Vec<String> = rest.into_iter().map(|s| s.id).collect();
    assert_eq!(rest_ids, ids[10..]);
    server.shutdown().await;
}
