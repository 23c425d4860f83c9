use crate::common;
use crate::common::request;

// A model-based property test: random sequences of StartSession, Append,
// Read, EndSession and GetSession over 1–3 sessions, run against the real
// server, every response checked against an in-memory model of the API
// contract (seqs, batch-id dedupe, `expected_last_seq`, filters, cursors,
// tails, the synthetic end entry, error codes).
//
// `PROPTEST_CASES=N` runs more (or fewer) cases than the default 64.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};

use common::{Client, TestServer};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use sessionlog::pb;
use tonic::Code;

/// Loggers the generated entries use.
const LOGGERS: [&str; 3] = ["app", "app.db", "net"];
/// Logger prefixes a read filter may name ("" keeps every logger).
const PREFIXES: [&str; 6] = ["app", "app.", "net", "ne", "sessions", ""];
/// `contains` texts: the messages are words over {a, b, c}; "ended" only
/// hits the synthetic end entry.
const CONTAINS: [&str; 5] = ["a", "ab", "cc", "ended", "Session"];
/// A pool of batch ids shared by every session of a case, so ids repeat
/// within a session (duplicates) and across sessions (not duplicates).
const BATCH_IDS: [&str; 5] = ["b0", "b1", "b2", "b3", "b4"];
const REASONS: [&str; 3] = ["", "done", "exit code 0"];

/// The server's read page bounds (`src/sessions/read.rs`).
const DEFAULT_READ_LIMIT: usize = 1_000;
const MAX_READ_LIMIT: usize = 10_000;
/// The logger and level of the synthetic end entry.
const END_LOGGER: &str = "sessions";
const INFO: i32 = 3;

// ---------------------------------------------------------------------------
// Operations

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    level: i32,
    logger: &'static str,
    message: String,
    /// Seconds since the epoch; `None` leaves it to the server.
    timestamp: Option<i64>,
}

#[derive(Debug, Clone, Copy)]
enum Expected {
    /// `expected_last_seq` unset.
    Unset,
    /// The model's current `last_seq`.
    Right,
    /// This value (wrong unless it happens to equal `last_seq`).
    Exactly(u64),
}

#[derive(Debug, Clone, Copy)]
enum After {
    Exactly(u64),
    /// `last_seq - n`, saturating.
    BackFromLast(u64),
    /// `last_seq + n`.
    PastLast(u64),
    Max,
}

#[derive(Debug, Clone, Default)]
struct Filter {
    min_level: i32,
    prefixes: Vec<&'static str>,
    contains: &'static str,
}

#[derive(Debug, Clone)]
enum Op {
    Start {
        s: usize,
    },
    Append {
        s: usize,
        entries: Vec<Entry>,
        batch_id: Option<&'static str>,
        expected: Expected,
    },
    Read {
        s: usize,
        after: After,
        limit: u32,
        tail: u32,
        filter: Filter,
    },
    /// Pages through the whole log with `limit` and `filter`, following
    /// `next_cursor` (each page is checked like a `Read`).
    Page {
        s: usize,
        limit: u32,
        filter: Filter,
    },
    End {
        s: usize,
        reason: &'static str,
    },
    Get {
        s: usize,
    },
}

fn entry_strategy() -> impl Strategy<Value = Entry> {
    (
        1..=6i32,
        select(&LOGGERS[..]),
        "[abc]{1,4}",
        prop_oneof![3 => Just(None), 1 => (0..=2_000_000_000i64).prop_map(Some)],
    )
        .prop_map(|(level, logger, message, timestamp)| Entry {
            level,
            logger,
            message,
            timestamp,
        })
}

fn filter_strategy() -> impl Strategy<Value = Filter> {
    (
        prop_oneof![3 => Just(0i32), 2 => 1..=6i32],
        prop_oneof![3 => Just(Vec::new()), 2 => vec(select(&PREFIXES[..]), 1..=2)],
        prop_oneof![3 => Just(""), 2 => select(&CONTAINS[..])],
    )
        .prop_map(|(min_level, prefixes, contains)| Filter {
            min_level,
            prefixes,
            contains,
        })
}

fn op_strategy(sessions: usize) -> impl Strategy<Value = Op> {
    let s = 0..sessions;
    let entries = prop_oneof![1 => Just(Vec::new()), 30 => vec(entry_strategy(), 1..=20)];
    let batch_id = prop_oneof![2 => Just(None), 3 => select(&BATCH_IDS[..]).prop_map(Some)];
    let expected = prop_oneof![
        4 => Just(Expected::Unset),
        2 => Just(Expected::Right),
        1 => (0..=60u64).prop_map(Expected::Exactly),
    ];
    let after = prop_oneof![
        2 => (0..=60u64).prop_map(After::Exactly),
        3 => (0..=25u64).prop_map(After::BackFromLast),
        1 => (1..=5u64).prop_map(After::PastLast),
        1 => Just(After::Max),
    ];
    let limit = prop_oneof![
        1 => Just(0u32),
        12 => 1..=30u32,
        1 => prop_oneof![Just(10_001u32), Just(u32::MAX)],
    ];
    let tail = prop_oneof![6 => Just(0u32), 5 => 1..=5u32, 1 => Just(u32::MAX)];
    prop_oneof![
        1 => s.clone().prop_map(|s| Op::Start { s }),
        8 => (s.clone(), entries, batch_id, expected).prop_map(
            |(s, entries, batch_id, expected)| Op::Append { s, entries, batch_id, expected }
        ),
        5 => (s.clone(), after, limit, tail, filter_strategy()).prop_map(
            |(s, after, limit, tail, filter)| Op::Read { s, after, limit, tail, filter }
        ),
        2 => (s.clone(), 1..=7u32, filter_strategy())
            .prop_map(|(s, limit, filter)| Op::Page { s, limit, filter }),
        1 => (s.clone(), select(&REASONS[..])).prop_map(|(s, reason)| Op::End { s, reason }),
        2 => s.prop_map(|s| Op::Get { s }),
    ]
}

/// 1–3 sessions; each is usually started first (so the random operations
/// mostly meet live sessions), then up to 40 random operations.
fn case_strategy() -> impl Strategy<Value = Vec<Op>> {
    (1..=3usize)
        .prop_flat_map(|sessions| {
            (
                vec(prop::bool::weighted(0.85), sessions),
                vec(op_strategy(sessions), 1..=40),
            )
        })
        .prop_map(|(start_first, ops)| {
            start_first
                .iter()
                .enumerate()
                .filter(|(_, start)| **start)
                .map(|(s, _)| Op::Start { s })
                .chain(ops)
                .collect()
        })
}

// ---------------------------------------------------------------------------
// The model

#[derive(Debug, Default, Clone)]
struct SessionModel {
    started: bool,
    /// The end reason, once ended.
    ended: Option<String>,
    log: BTreeMap<u64, Entry>,
    /// Stored batch ids and their (first_seq, last_seq).
    batches: HashMap<&'static str, (u64, u64)>,
    /// The largest `size_bytes` seen so far (it never shrinks).
    size_bytes: u64,
}

impl SessionModel {
    fn last_seq(&self) -> u64 {
        self.log.keys().next_back().copied().unwrap_or(0)
    }

    fn state(&self) -> pb::SessionState {
        if self.ended.is_some() {
            pb::SessionState::Ended
        } else {
            pb::SessionState::Active
        }
    }

    fn after_seq(&self, after: After) -> u64 {
        match after {
            After::Exactly(seq) => seq,
            After::BackFromLast(n) => self.last_seq().saturating_sub(n),
            After::PastLast(n) => self.last_seq() + n,
            After::Max => u64::MAX,
        }
    }

    /// What `Read` returns: the entries (seq, entry) and `next_cursor`.
    fn read(
        &self,
        after_seq: u64,
        limit: u32,
        tail: u32,
        filter: &Filter,
    ) -> (Vec<(u64, Entry)>, u64) {
        let end_cursor = after_seq.max(self.last_seq());
        let after: Vec<(u64, &Entry)> = match after_seq.checked_add(1) {
            Some(first) => self.log.range(first..).map(|(seq, e)| (*seq, e)).collect(),
            None => Vec::new(),
        };
        if tail > 0 {
            let wanted = clamp(tail);
            let matching: Vec<(u64, Entry)> = after
                .iter()
                .filter(|(_, e)| filter.matches(e))
                .map(|(seq, e)| (*seq, (*e).clone()))
                .collect();
            let skip = matching.len().saturating_sub(wanted);
            return (matching[skip..].to_vec(), end_cursor);
        }
        let limit = if limit == 0 {
            DEFAULT_READ_LIMIT
        } else {
            clamp(limit)
        };
        let mut entries = Vec::new();
        for (seq, e) in after {
            if filter.matches(e) {
                entries.push((seq, e.clone()));
                if entries.len() == limit {
                    return (entries, seq);
                }
            }
        }
        (entries, end_cursor)
    }
}

fn clamp(requested: u32) -> usize {
    usize::try_from(requested).map_or(MAX_READ_LIMIT, |n| n.min(MAX_READ_LIMIT))
}

impl Filter {
    fn matches(&self, entry: &Entry) -> bool {
        (self.min_level == 0 || entry.level >= self.min_level)
            && (self.prefixes.is_empty()
                || self.prefixes.iter().any(|p| entry.logger.starts_with(p)))
            && entry.message.contains(self.contains)
    }

    fn to_pb(&self) -> Option<pb::LogFilter> {
        Some(pb::LogFilter {
            min_level: self.min_level,
            logger_prefixes: self.prefixes.iter().map(|p| (*p).to_owned()).collect(),
            contains: self.contains.to_owned(),
            ..Default::default()
        })
    }
}

// ---------------------------------------------------------------------------
// Running a case

/// Session ids unique across the cases that share one server.
fn session_ids() -> Vec<String> {
    static CASE: AtomicU64 = AtomicU64::new(0);
    let case = CASE.fetch_add(1, Ordering::Relaxed);
    (0..3).map(|s| format!("model-{case}-s{s}")).collect()
}

macro_rules! check {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(TestCaseError::fail(format!($($fmt)+)));
        }
    };
}

fn check_eq<T: PartialEq + Debug>(what: &str, actual: T, expected: T) -> Result<(), TestCaseError> {
    check!(
        actual == expected,
        "{what}: server {actual:?}, model {expected:?}"
    );
    Ok(())
}

/// Checks that `result` failed with `code` (and an actionable message).
fn check_code<T: Debug>(result: Result<T, tonic::Status>, code: Code) -> Result<(), TestCaseError> {
    match result {
        Ok(value) => Err(TestCaseError::fail(format!(
            "expected {code:?}, the server answered OK: {value:?}"
        ))),
        Err(status) => {
            check!(
                status.code() == code,
                "expected {code:?}, the server answered {status:?}"
            );
            check!(!status.message().is_empty(), "{code:?} without a message");
            Ok(())
        }
    }
}

fn ok<T>(result: Result<tonic::Response<T>, tonic::Status>) -> Result<T, TestCaseError> {
    result.map(tonic::Response::into_inner).map_err(|status| {
        TestCaseError::fail(format!("expected OK, the server answered {status:?}"))
    })
}

/// Runs `ops` against the server behind `client` on fresh sessions.
async fn run_ops(client: &mut Client, ops: &[Op]) -> Result<(), TestCaseError> {
    let ids = session_ids();
    let mut models = vec![SessionModel::default(); ids.len()];
    for (step, op) in ops.iter().enumerate() {
        let s = match op {
            Op::Start { s }
            | Op::Append { s, .. }
            | Op::Read { s, .. }
            | Op::Page { s, .. }
            | Op::End { s, .. }
            | Op::Get { s } => *s,
        };
        apply(client, &ids[s], &mut models[s], op)
            .await
            .map_err(|err| TestCaseError::fail(format!("step {step} {op:?}: {err}")))?;
    }
    // Finally every session's whole log, read with the default limit.
    for (id, model) in ids.iter().zip(&models) {
        let op = Op::Read {
            s: 0,
            after: After::Exactly(0),
            limit: 0,
            tail: 0,
            filter: Filter::default(),
        };
        apply(client, id, &mut model.clone(), &op)
            .await
            .map_err(|err| TestCaseError::fail(format!("final read of {id}: {err}")))?;
    }
    Ok(())
}

async fn apply(
    client: &mut Client,
    id: &str,
    model: &mut SessionModel,
    op: &Op,
) -> Result<(), TestCaseError> {
    match op {
        Op::Start { .. } => {
            let result = client
                .start_session(pb::StartSessionRequest {
                    session_id: id.to_owned(),
                    app_name: "model".to_owned(),
                    ..Default::default()
                })
                .await;
            if model.started {
                return check_code(result, Code::AlreadyExists);
            }
            let session = ok(result)?;
            model.started = true;
            check_session(&session, id, model)
        }
        Op::Append {
            entries,
            batch_id,
            expected,
            ..
        } => {
            let expected_last_seq = match expected {
                Expected::Unset => None,
                Expected::Right => Some(model.last_seq()),
                Expected::Exactly(seq) => Some(*seq),
            };
            let result = client
                .append(pb::AppendRequest {
                    session_id: id.to_owned(),
                    // Input seqs are ignored.
                    entries: entries
                        .iter()
                        .map(|e| pb::LogEntry {
                            seq: 42,
                            ..to_pb_entry(e)
                        })
                        .collect(),
                    expected_last_seq,
                    batch_id: batch_id.unwrap_or_default().to_owned(),
                })
                .await;
            if entries.is_empty() {
                return check_code(result, Code::InvalidArgument);
            }
            if !model.started {
                return check_code(result, Code::NotFound);
            }
            // A retry of a stored batch id wins over every other rule: it
            // stores nothing, so ending or a moved `last_seq` cannot matter.
            if let Some((first, last)) = batch_id.and_then(|b| model.batches.get(b).copied()) {
                let response = ok(result)?;
                return check_eq(
                    "duplicate append (first_seq, last_seq, duplicate)",
                    (response.first_seq, response.last_seq, response.duplicate),
                    (first, last, true),
                );
            }
            if model.ended.is_some() {
                return check_code(result, Code::FailedPrecondition);
            }
            if expected_last_seq.is_some_and(|seq| seq != model.last_seq()) {
                return check_code(result, Code::Aborted);
            }
            let response = ok(result)?;
            let first = model.last_seq() + 1;
            let last = model.last_seq() + entries.len() as u64;
            check_eq(
                "append (first_seq, last_seq, duplicate)",
                (response.first_seq, response.last_seq, response.duplicate),
                (first, last, false),
            )?;
            model
                .log
                .extend((first..=last).zip(entries.iter().cloned()));
            if let Some(batch_id) = batch_id {
                model.batches.insert(batch_id, (first, last));
            }
            Ok(())
        }
        Op::Read {
            after,
            limit,
            tail,
            filter,
            ..
        } => {
            let after_seq = model.after_seq(*after);
            read_page(client, id, model, after_seq, *limit, *tail, filter)
                .await
                .map(drop)
        }
        Op::Page { limit, filter, .. } => {
            if !model.started {
                return read_page(client, id, model, 0, *limit, 0, filter)
                    .await
                    .map(drop);
            }
            let mut cursor = 0;
            let mut seen = Vec::new();
            // Each page but the last holds `limit` entries, so this is plenty.
            for _ in 0..=model.log.len() + 1 {
                let (entries, next_cursor) =
                    read_page(client, id, model, cursor, *limit, 0, filter).await?;
                check!(
                    next_cursor > cursor || next_cursor >= model.last_seq(),
                    "paging stalled at cursor {cursor}"
                );
                seen.extend(entries.iter().map(|e| e.seq));
                cursor = next_cursor;
                if cursor >= model.last_seq() {
                    let all: Vec<u64> = model
                        .log
                        .iter()
                        .filter(|(_, e)| filter.matches(e))
                        .map(|(seq, _)| *seq)
                        .collect();
                    return check_eq("seqs seen paging through the log", seen, all);
                }
            }
            Err(TestCaseError::fail(format!(
                "paging did not reach last_seq {} (cursor {cursor})",
                model.last_seq()
            )))
        }
        Op::End { reason, .. } => {
            let result = client.end_session(request::end(id, reason)).await;
            if !model.started {
                return check_code(result, Code::NotFound);
            }
            if model.ended.is_some() {
                return check_code(result, Code::FailedPrecondition);
            }
            let session = ok(result)?;
            let message = if reason.is_empty() {
                "Session ended".to_owned()
            } else {
                format!("Session ended: {reason}")
            };
            let seq = model.last_seq() + 1;
            model.log.insert(
                seq,
                Entry {
                    level: INFO,
                    logger: END_LOGGER,
                    message,
                    timestamp: None,
                },
            );
            model.ended = Some((*reason).to_owned());
            check_session(&session, id, model)
        }
        Op::Get { .. } => {
            let result = client.get_session(request::get(id)).await;
            if !model.started {
                return check_code(result, Code::NotFound);
            }
            let session = ok(result)?;
            check_session(&session, id, model)
        }
    }
}

/// One `Read`, checked against the model; returns its entries and cursor.
async fn read_page(
    client: &mut Client,
    id: &str,
    model: &SessionModel,
    after_seq: u64,
    limit: u32,
    tail: u32,
    filter: &Filter,
) -> Result<(Vec<pb::LogEntry>, u64), TestCaseError> {
    let result = client
        .read(pb::ReadRequest {
            session_id: id.to_owned(),
            after_seq,
            limit,
            filter: filter.to_pb(),
            tail,
        })
        .await;
    if !model.started {
        check_code(result, Code::NotFound)?;
        return Ok((Vec::new(), after_seq));
    }
    let page = ok(result)?;
    let (entries, next_cursor) = model.read(after_seq, limit, tail, filter);
    let what = format!("read after {after_seq} limit {limit} tail {tail}");
    let expected: Vec<pb::LogEntry> = entries
        .iter()
        .map(|(seq, e)| pb::LogEntry {
            seq: *seq,
            ..to_pb_entry(e)
        })
        .collect();
    check_eq(
        &format!("{what}: seqs"),
        seqs(&page.entries),
        seqs(&expected),
    )?;
    // A timestamp the client left out is the server's receive time: set,
    // but not predictable. Every other field comes back as sent.
    let mut actual = page.entries.clone();
    for (got, want) in actual.iter_mut().zip(&expected) {
        if want.timestamp.is_none() {
            check!(
                got.timestamp.is_some(),
                "{what}: seq {} has no timestamp",
                got.seq
            );
            got.timestamp = None;
        }
    }
    check_eq(&format!("{what}: entries"), actual, expected)?;
    check_eq(
        &format!("{what}: next_cursor"),
        page.next_cursor,
        next_cursor,
    )?;
    check_eq(
        &format!("{what}: last_seq"),
        page.last_seq,
        model.last_seq(),
    )?;
    check_eq(&format!("{what}: state"), page.state(), model.state())?;
    Ok((page.entries, page.next_cursor))
}

fn seqs(entries: &[pb::LogEntry]) -> Vec<u64> {
    entries.iter().map(|e| e.seq).collect()
}

fn check_session(
    session: &pb::Session,
    id: &str,
    model: &mut SessionModel,
) -> Result<(), TestCaseError> {
    check_eq("id", session.id.as_str(), id)?;
    check_eq("app_name", session.app_name.as_str(), "model")?;
    check_eq("state", session.state(), model.state())?;
    check_eq("last_seq", session.last_seq, model.last_seq())?;
    check_eq("entry_count", session.entry_count, model.log.len() as u64)?;
    check_eq(
        "end_reason",
        session.end_reason.as_str(),
        model.ended.as_deref().unwrap_or_default(),
    )?;
    check_eq(
        "ended_at set",
        session.ended_at.is_some(),
        model.ended.is_some(),
    )?;
    check!(session.created_at.is_some(), "created_at unset");
    check_eq(
        "size_bytes > 0",
        session.size_bytes > 0,
        !model.log.is_empty(),
    )?;
    check!(
        session.size_bytes >= model.size_bytes,
        "size_bytes shrank from {} to {}",
        model.size_bytes,
        session.size_bytes
    );
    model.size_bytes = session.size_bytes;
    Ok(())
}

fn to_pb_entry(entry: &Entry) -> pb::LogEntry {
    pb::LogEntry {
        level: entry.level,
        logger: entry.logger.to_owned(),
        message: entry.message.clone(),
        timestamp: entry
            .timestamp
            .map(|seconds| prost_types::Timestamp { seconds, nanos: 0 }),
        ..Default::default()
    }
}

// ---------------------------------------------------------------------------
// Tests

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

#[test]
fn random_operations_match_the_model() {
    let runtime = runtime();
    let server = runtime.block_on(TestServer::start());
    let client = runtime.block_on(server.client());
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(64);
    let mut runner = TestRunner::new(Config {
        cases,
        // A failure is kept as a named regression test below instead.
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&case_strategy(), |ops| {
        let mut client = client.clone();
        runtime.block_on(run_ops(&mut client, &ops))
    });
    runtime.block_on(server.shutdown());
    if let Err(err) = result {
        panic!("{err}");
    }
}

/// Replays `ops` on a fresh server.
async fn replay(ops: &[Op]) {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    if let Err(err) = run_ops(&mut client, ops).await {
        panic!("{err}");
    }
    server.shutdown().await;
}

fn entries(messages: &[&str]) -> Vec<Entry> {
    messages
        .iter()
        .map(|message| Entry {
            level: INFO,
            logger: "app",
            message: (*message).to_owned(),
            timestamp: None,
        })
        .collect()
}

/// The model's reading of the contract where rules meet, spelled out: a
/// retried batch id is a duplicate even with a stale `expected_last_seq`
/// and after the session ended; a new batch then is FAILED_PRECONDITION;
/// batch ids are per session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripted_dedupe_precedence() {
    replay(&[
        Op::Start { s: 0 },
        Op::Start { s: 1 },
        Op::Append {
            s: 0,
            entries: entries(&["a", "b"]),
            batch_id: Some("b0"),
            expected: Expected::Right,
        },
        Op::Append {
            s: 0,
            entries: entries(&["c"]),
            batch_id: Some("b0"),
            expected: Expected::Exactly(0),
        },
        Op::Append {
            s: 1,
            entries: entries(&["c"]),
            batch_id: Some("b0"),
            expected: Expected::Unset,
        },
        Op::Append {
            s: 0,
            entries: entries(&["d"]),
            batch_id: None,
            expected: Expected::Exactly(7),
        },
        Op::End {
            s: 0,
            reason: "done",
        },
        Op::Append {
            s: 0,
            entries: entries(&["e"]),
            batch_id: Some("b0"),
            expected: Expected::Unset,
        },
        Op::Append {
            s: 0,
            entries: entries(&["e"]),
            batch_id: Some("b1"),
            expected: Expected::Unset,
        },
        Op::End { s: 0, reason: "" },
        Op::Read {
            s: 0,
            after: After::Exactly(1),
            limit: 1,
            tail: 0,
            filter: Filter {
                contains: "ended",
                ..Filter::default()
            },
        },
        Op::Read {
            s: 0,
            after: After::PastLast(2),
            limit: 0,
            tail: 2,
            filter: Filter::default(),
        },
        Op::Page {
            s: 0,
            limit: 1,
            filter: Filter {
                prefixes: vec!["sessions"],
                ..Filter::default()
            },
        },
        Op::Get { s: 0 },
        Op::Get { s: 2 },
    ])
    .await;
}
