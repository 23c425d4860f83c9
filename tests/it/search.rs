//! `Search` end to end: hits newest session first and seq ascending, each
//! filter (sessions, level, logger, text with ANSI colours removed,
//! ignore_case, regex, the time range), the limit and `limit_reached`, the
//! summary's counts on the last message only, the byte budget splitting a
//! session's hits across messages, the new `LogFilter` fields on `Read`,
//! and a property test that Search agrees with reading every session and
//! filtering here.

use std::time::{Duration, SystemTime};

use futures::StreamExt;
use proptest::prelude::*;
use prost::Message;
use sessionlog::pb;

use crate::common::{
    Client, TestServer, append_entries, end_session, entry, expect_code, read_all,
};

/// Every message of a search: the hits as (session, seq), and the summary.
async fn search(
    client: &mut Client,
    request: pb::SearchRequest,
) -> (Vec<(String, u64)>, pb::SearchSummary) {
    let (messages, summary) = search_messages(client, request).await;
    let hits = messages
        .iter()
        .flat_map(|message| &message.hits)
        .map(|hit| {
            (
                hit.session_id.clone(),
                hit.entry.as_ref().expect("entry").seq,
            )
        })
        .collect();
    (hits, summary)
}

async fn search_messages(
    client: &mut Client,
    request: pb::SearchRequest,
) -> (Vec<pb::SearchResponse>, pb::SearchSummary) {
    let mut stream = client.search(request).await.expect("search").into_inner();
    let mut messages = Vec::new();
    while let Some(message) = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("a message within 10 s")
    {
        messages.push(message.expect("no error"));
    }
    let (last, before) = messages.split_last().expect("at least the summary");
    assert!(
        before.iter().all(|message| message.summary.is_none()),
        "the summary comes on the last message only"
    );
    let summary = last.summary.expect("a summary on the last message");
    (messages, summary)
}

fn text(contains: &str) -> pb::SearchRequest {
    pb::SearchRequest {
        filter: Some(pb::LogFilter {
            contains: contains.to_owned(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn with_filter(filter: pb::LogFilter) -> pb::SearchRequest {
    pb::SearchRequest {
        filter: Some(filter),
        ..Default::default()
    }
}

fn at(seconds: u64) -> prost_types::Timestamp {
    (SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)).into()
}

fn logged(level: pb::Level, logger: &str, message: &str, seconds: u64) -> pb::LogEntry {
    pb::LogEntry {
        level: level.into(),
        logger: logger.to_owned(),
        message: message.to_owned(),
        timestamp: Some(at(seconds)),
        ..Default::default()
    }
}

async fn start(client: &mut Client, app: &str, job: &str) -> String {
    client
        .start_session(pb::StartSessionRequest {
            app_name: app.to_owned(),
            job_id: job.to_owned(),
            ..Default::default()
        })
        .await
        .expect("start")
        .into_inner()
        .id
}

/// Three sessions, oldest first: `build` (ended), `test`, `deploy`.
async fn three_sessions(client: &mut Client) -> [String; 3] {
    let build = start(client, "build", "j1").await;
    append_entries(
        client,
        &build,
        vec![
            logged(pb::Level::Info, "cargo", "compiling foo", 100),
            logged(
                pb::Level::Error,
                "cargo",
                "\x1b[31mSEGFAULT\x1b[0m in foo",
                101,
            ),
            logged(pb::Level::Warn, "cargo.lint", "unused variable", 102),
        ],
    )
    .await;
    end_session(client, &build, "done").await;
    let test = start(client, "test", "j1").await;
    append_entries(
        client,
        &test,
        vec![
            logged(pb::Level::Info, "runner", "req 15 ms", 200),
            logged(
                pb::Level::Info,
                "runner",
                "seg\x1b[1mfault\x1b[0m again",
                201,
            ),
            logged(pb::Level::Debug, "runner.db", "req 250 ms slow", 202),
        ],
    )
    .await;
    let deploy = start(client, "deploy", "j2").await;
    append_entries(
        client,
        &deploy,
        vec![
            logged(pb::Level::Critical, "k8s", "segfault: pod crashed", 300),
            logged(pb::Level::Info, "k8s", "rolled back", 301),
        ],
    )
    .await;
    [build, test, deploy]
}

fn hits_of(pairs: &[(&String, u64)]) -> Vec<(String, u64)> {
    pairs
        .iter()
        .map(|(id, seq)| ((*id).clone(), *seq))
        .collect()
}

#[tokio::test]
async fn hits_come_newest_session_first_with_their_summary() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let [build, test, deploy] = three_sessions(&mut client).await;
    // The end entry counts as one more entry of `build`.
    let (hits, summary) = search(&mut client, pb::SearchRequest::default()).await;
    let expected = hits_of(&[
        (&deploy, 1),
        (&deploy, 2),
        (&test, 1),
        (&test, 2),
        (&test, 3),
        (&build, 1),
        (&build, 2),
        (&build, 3),
        (&build, 4),
    ]);
    assert_eq!(hits, expected);
    assert_eq!(summary.sessions_scanned, 3);
    assert_eq!(summary.entries_scanned, 9);
    assert!(summary.bytes_scanned > 9 * 10, "{summary:?}");
    assert!(!summary.limit_reached);

    // `contains` matches with the colours removed, case-sensitively.
    let (hits, summary) = search(&mut client, text("segfault")).await;
    assert_eq!(hits, hits_of(&[(&deploy, 1), (&test, 2)]));
    assert_eq!(summary.entries_scanned, 9);
    // ignore_case.
    let (hits, _) = search(
        &mut client,
        with_filter(pb::LogFilter {
            contains: "SegFault".into(),
            ignore_case: true,
            ..Default::default()
        }),
    )
    .await;
    assert_eq!(hits, hits_of(&[(&deploy, 1), (&test, 2), (&build, 2)]));
    // A regex, anchored: the whole message, colours removed.
    let (hits, _) = search(
        &mut client,
        with_filter(pb::LogFilter {
            regex: r"^req \d+ ms".into(),
            ..Default::default()
        }),
    )
    .await;
    assert_eq!(hits, hits_of(&[(&test, 1), (&test, 3)]));
    let (hits, _) = search(
        &mut client,
        with_filter(pb::LogFilter {
            regex: r"^SEGFAULT in \w+$".into(),
            ..Default::default()
        }),
    )
    .await;
    assert_eq!(hits, hits_of(&[(&build, 2)]));
    // Level and logger prefixes.
    let (hits, _) = search(
        &mut client,
        with_filter(pb::LogFilter {
            min_level: pb::Level::Warn.into(),
            logger_prefixes: vec!["cargo".into()],
            ..Default::default()
        }),
    )
    .await;
    assert_eq!(hits, hits_of(&[(&build, 2), (&build, 3)]));
}

#[tokio::test]
async fn sessions_and_time_ranges_narrow_the_search() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let [build, test, deploy] = three_sessions(&mut client).await;
    let (hits, summary) = search(
        &mut client,
        pb::SearchRequest {
            job_id: "j1".into(),
            state: pb::SessionState::Active.into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(hits, hits_of(&[(&test, 1), (&test, 2), (&test, 3)]));
    assert_eq!(summary.sessions_scanned, 1);
    let (hits, _) = search(
        &mut client,
        pb::SearchRequest {
            app_name: "build".into(),
            ..text("foo")
        },
    )
    .await;
    assert_eq!(hits, hits_of(&[(&build, 1), (&build, 2)]));
    // [since, until): 101 is in, 201 is out.
    let (hits, _) = search(
        &mut client,
        pb::SearchRequest {
            since: Some(at(101)),
            until: Some(at(201)),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(hits, hits_of(&[(&test, 1), (&build, 2), (&build, 3)]));
    let (hits, _) = search(
        &mut client,
        pb::SearchRequest {
            since: Some(at(300)),
            ..Default::default()
        },
    )
    .await;
    // The end entry of `build` has the time it ended: now.
    assert_eq!(hits, hits_of(&[(&deploy, 1), (&deploy, 2), (&build, 4)]));
}

#[tokio::test]
async fn the_limit_stops_the_search_and_says_whether_more_match() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let [_, test, deploy] = three_sessions(&mut client).await;
    let limited = |limit| pb::SearchRequest { limit, ..text("e") };
    // Matching "e": deploy 1, 2; test 1, 2, 3; build 3 and the end entry.
    let (hits, summary) = search(&mut client, limited(3)).await;
    assert_eq!(hits, hits_of(&[(&deploy, 1), (&deploy, 2), (&test, 1)]));
    assert!(summary.limit_reached);
    assert_eq!(summary.sessions_scanned, 2);
    let (all, summary) = search(&mut client, limited(0)).await;
    assert_eq!(all.len(), 7);
    assert!(!summary.limit_reached);
    let (exact, summary) = search(&mut client, limited(7)).await;
    assert_eq!(exact, all);
    assert!(!summary.limit_reached, "exactly the limit: nothing more");
    let (_, summary) = search(&mut client, limited(6)).await;
    assert!(summary.limit_reached);
}

#[tokio::test]
async fn an_invalid_regex_is_refused_naming_the_error_on_every_call() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let [_, test, _] = three_sessions(&mut client).await;
    let bad = pb::LogFilter {
        regex: "(unclosed".into(),
        ..Default::default()
    };
    let status = expect_code(
        client.search(with_filter(bad.clone())).await,
        tonic::Code::InvalidArgument,
    );
    assert!(status.message().contains("regex"), "{status:?}");
    assert!(status.message().contains("unclosed"), "{status:?}");
    let status = expect_code(
        client
            .read(pb::ReadRequest {
                session_id: test.clone(),
                filter: Some(bad),
                ..Default::default()
            })
            .await,
        tonic::Code::InvalidArgument,
    );
    assert!(status.message().contains("regex"), "{status:?}");
    // Read takes the new fields too.
    let page = client
        .read(pb::ReadRequest {
            session_id: test,
            filter: Some(pb::LogFilter {
                regex: "fault|SLOW".into(),
                ignore_case: true,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("read")
        .into_inner();
    let seqs: Vec<u64> = page.entries.iter().map(|entry| entry.seq).collect();
    assert_eq!(seqs, vec![2, 3]);
}

#[tokio::test]
async fn the_byte_budget_splits_a_sessions_hits_across_messages() {
    const BUDGET: usize = 8 * 1024;
    let server = TestServer::builder()
        .configure(|settings| settings.limits.max_response_bytes = BUDGET)
        .start()
        .await;
    let mut client = server.client().await;
    let older = start(&mut client, "a", "").await;
    append_entries(&mut client, &older, vec![entry("needle small")]).await;
    let big = start(&mut client, "a", "").await;
    let message = format!("needle {}", "x".repeat(1000));
    let entries = (0..30).map(|_| entry(message.clone())).collect();
    append_entries(&mut client, &big, entries).await;
    let (messages, summary) = search_messages(&mut client, text("needle")).await;
    let hits: Vec<(String, u64)> = messages
        .iter()
        .flat_map(|message| &message.hits)
        .map(|hit| {
            (
                hit.session_id.clone(),
                hit.entry.as_ref().expect("entry").seq,
            )
        })
        .collect();
    let mut expected: Vec<(String, u64)> = (1..=30).map(|seq| (big.clone(), seq)).collect();
    expected.push((older.clone(), 1));
    assert_eq!(hits, expected);
    assert!(!summary.limit_reached);
    let with_hits = messages.iter().filter(|m| !m.hits.is_empty()).count();
    assert!(with_hits >= 4, "30 KB of hits in {with_hits} messages");
    for message in &messages {
        assert!(
            message.encoded_len() <= BUDGET + 64,
            "{} bytes",
            message.encoded_len()
        );
    }
}

/// A session's entries in the model: (level, logger, message, seconds).
type ModelEntry = (i32, &'static str, String, u64);

fn model_entries() -> impl Strategy<Value = Vec<Vec<ModelEntry>>> {
    let word = prop::sample::select(vec![
        "alpha",
        "Beta",
        "gamma",
        "\x1b[32mal\x1b[0mpha",
        "delta",
    ]);
    let message = prop::collection::vec(word, 1..4).prop_map(|words| words.join(" "));
    let logger = prop::sample::select(vec!["net", "net.http", "db"]);
    let one = (1i32..=6, logger, message, 0u64..50);
    prop::collection::vec(prop::collection::vec(one, 0..40), 1..5)
}

#[derive(Debug, Clone)]
struct ModelQuery {
    contains: &'static str,
    regex: &'static str,
    ignore_case: bool,
    min_level: i32,
    logger: Option<&'static str>,
    since: Option<u64>,
    until: Option<u64>,
    limit: u32,
}

fn model_queries() -> impl Strategy<Value = ModelQuery> {
    (
        prop::sample::select(vec!["", "alpha", "beta", "a g", "pha d"]),
        prop::sample::select(vec!["", "^alpha", "a$", r"\bgam", "(?i)BETA|delta"]),
        any::<bool>(),
        0i32..=6,
        prop::option::of(prop::sample::select(vec!["net", "net.", "db"])),
        prop::option::of(0u64..50),
        prop::option::of(0u64..50),
        prop::sample::select(vec![0u32, 1, 5, 30]),
    )
        .prop_map(
            |(contains, regex, ignore_case, min_level, logger, since, until, limit)| ModelQuery {
                contains,
                regex,
                ignore_case,
                min_level,
                logger,
                since,
                until,
                limit,
            },
        )
}

fn strip(text: &str) -> String {
    text.replace("\x1b[32m", "").replace("\x1b[0m", "")
}

fn model_keeps(query: &ModelQuery, entry: &pb::LogEntry) -> bool {
    let message = strip(&entry.message);
    let seconds = entry
        .timestamp
        .as_ref()
        .map_or(0, |at| u64::try_from(at.seconds).expect("positive"));
    let contains = if query.ignore_case {
        message
            .to_lowercase()
            .contains(&query.contains.to_lowercase())
    } else {
        message.contains(query.contains)
    };
    let regex = regex_lite_match(query, &message);
    entry.level >= query.min_level
        && query
            .logger
            .is_none_or(|prefix| entry.logger.starts_with(prefix))
        && query.since.is_none_or(|since| seconds >= since)
        && query.until.is_none_or(|until| seconds < until)
        && contains
        && regex
}

/// The few regexes the model uses, matched by hand.
fn regex_lite_match(query: &ModelQuery, message: &str) -> bool {
    let folded = |text: &str| {
        if query.ignore_case {
            text.to_lowercase()
        } else {
            text.to_owned()
        }
    };
    let message = folded(message);
    match query.regex {
        "" => true,
        "^alpha" => message.starts_with(&folded("alpha")),
        "a$" => message.ends_with(&folded("a")),
        r"\bgam" => message
            .split(' ')
            .any(|word| word.starts_with(&folded("gam"))),
        // `(?i)` holds for both alternatives.
        "(?i)BETA|delta" => {
            let lower = message.to_lowercase();
            lower.contains("beta") || lower.contains("delta")
        }
        other => unreachable!("{other}"),
    }
}

async fn check_model(
    client: &mut Client,
    app: &str,
    sessions: Vec<Vec<ModelEntry>>,
    query: ModelQuery,
) {
    let mut ids = Vec::new();
    for entries in sessions {
        let id = start(client, app, "").await;
        if !entries.is_empty() {
            let entries = entries
                .into_iter()
                .map(|(level, logger, message, seconds)| pb::LogEntry {
                    level,
                    logger: logger.to_owned(),
                    message,
                    timestamp: Some(at(seconds)),
                    ..Default::default()
                })
                .collect();
            append_entries(client, &id, entries).await;
        }
        ids.push(id);
    }
    let request = pb::SearchRequest {
        app_name: app.to_owned(),
        state: pb::SessionState::Active.into(),
        since: query.since.map(at),
        until: query.until.map(at),
        filter: Some(pb::LogFilter {
            min_level: query.min_level,
            logger_prefixes: query.logger.map(str::to_owned).into_iter().collect(),
            contains: query.contains.to_owned(),
            ignore_case: query.ignore_case,
            regex: query.regex.to_owned(),
        }),
        limit: query.limit,
        ..Default::default()
    };
    let (hits, summary) = search(client, request).await;
    // The model: newest session first, every entry read back and filtered.
    let mut expected = Vec::new();
    let mut total = 0;
    for id in ids.iter().rev() {
        let entries = read_all(client, id).await;
        total += entries.len();
        for entry in entries.iter().filter(|entry| model_keeps(&query, entry)) {
            expected.push((id.clone(), entry.seq));
        }
    }
    let limit = if query.limit == 0 {
        1_000
    } else {
        query.limit as usize
    };
    let more = expected.len() > limit;
    expected.truncate(limit);
    assert_eq!(hits, expected, "{query:?}");
    assert_eq!(summary.limit_reached, more);
    if !more {
        assert_eq!(summary.entries_scanned, total as u64);
        assert_eq!(summary.sessions_scanned, ids.len() as u64);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Also over sealed blocks: the server seals active logs past one byte.
    #[test]
    fn search_agrees_with_reading_every_session(
        sessions in model_entries(),
        query in model_queries(),
        sealed in any::<bool>(),
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let server = TestServer::builder()
                .configure(|settings| {
                    if sealed {
                        settings.seal_active_after = 1;
                    }
                })
                .start()
                .await;
            let mut client = server.client().await;
            check_model(&mut client, "model", sessions, query).await;
            server.shutdown().await;
        });
    }
}

#[tokio::test]
async fn a_search_its_client_stops_reading_holds_up_no_append_and_no_other_search() {
    const BUDGET: usize = 8 * 1024;
    let server = TestServer::builder()
        .configure(|settings| settings.limits.max_response_bytes = BUDGET)
        .start()
        .await;
    let mut client = server.client().await;
    let id = start(&mut client, "busy", "").await;
    let message = format!("needle {}", "x".repeat(1000));
    for _ in 0..4 {
        let entries = (0..50).map(|_| entry(message.clone())).collect();
        append_entries(&mut client, &id, entries).await;
    }
    // A search of 200 hits in messages of about 7 entries: one is read,
    // the rest wait on the client, which stops reading.
    let mut unread = client
        .search(text("needle"))
        .await
        .expect("search")
        .into_inner();
    let first = unread.message().await.expect("a message").expect("hits");
    assert!(!first.hits.is_empty());
    let within = Duration::from_secs(10);
    let appended = tokio::time::timeout(
        within,
        append_entries(&mut client, &id, vec![entry("needle after")]),
    )
    .await
    .expect("an append while a search waits on its client");
    assert_eq!(appended.last_seq, 201);
    let (hits, summary) = tokio::time::timeout(
        within,
        search(
            &mut client,
            pb::SearchRequest {
                limit: 1,
                ..text("after")
            },
        ),
    )
    .await
    .expect("another search meanwhile");
    assert_eq!(hits, vec![(id.clone(), 201)]);
    assert!(!summary.limit_reached);
    drop(unread);
}
