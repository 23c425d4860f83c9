//! What every bench sends: entries that look like a service's logs, padded
//! to a target encoded size; when a load phase stops; the sessions a run
//! starts; and a deadline for every call, so a stuck server fails the
//! bench instead of hanging it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use prost::Message as _;
use prost_types::value::Kind;
use sessionlog::client::Client;
use sessionlog::pb;
use tokio::time::Instant;

/// The app name of the sessions a bench starts, so they are easy to find
/// (and delete) on a shared server.
pub(super) const BENCH_APP: &str = "sessionlog-bench";

/// Any single call that takes longer than this means the server is stuck.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Words the message text is padded with: log-like text rather than one
/// repeated byte, so nothing downstream gets an unrealistically easy input.
const FILLER: &[&str] = &[
    "request",
    "served",
    "from",
    "cache",
    "upstream",
    "latency",
    "within",
    "budget",
    "user",
    "session",
    "refreshed",
    "token",
    "for",
    "tenant",
    "region",
    "eu-west",
    "retry",
    "after",
    "backoff",
    "connection",
    "pool",
    "size",
    "checked",
    "out",
];

/// `count` entries of about `entry_size` encoded bytes each: a level, a
/// logger, a message, a timestamp and three structured fields, like a web
/// service's request log. Without padding they take about 150 bytes, so a
/// smaller size gives entries of that size.
pub(super) fn entries(count: usize, entry_size: usize, logger: &str) -> Vec<pb::LogEntry> {
    let now = SystemTime::now();
    (0..count)
        .map(|index| entry(index, entry_size, logger, now))
        .collect()
}

fn entry(index: usize, entry_size: usize, logger: &str, now: SystemTime) -> pb::LogEntry {
    let level = match index % 10 {
        0 => pb::Level::Warn,
        5 => pb::Level::Debug,
        _ => pb::Level::Info,
    };
    let duration_ms = (index * 7) % 250;
    let mut fields = prost_types::Struct::default();
    fields.fields.insert(
        "request_id".to_owned(),
        text_value(format!(
            "{:016x}",
            index.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        )),
    );
    fields.fields.insert(
        "status".to_owned(),
        number_value(if index.is_multiple_of(50) { 503 } else { 200 }),
    );
    fields
        .fields
        .insert("duration_ms".to_owned(), number_value(duration_ms));
    let mut entry = pb::LogEntry {
        timestamp: Some(now.into()),
        level: level.into(),
        logger: logger.to_owned(),
        message: format!("GET /api/items/{index} answered in {duration_ms} ms"),
        fields: Some(fields),
        ..Default::default()
    };
    pad(&mut entry, entry_size);
    entry
}

/// Grows the message until the entry encodes to about `entry_size` bytes
/// (a length prefix that gains a byte can overshoot by one).
fn pad(entry: &mut pb::LogEntry, entry_size: usize) {
    let mut words = FILLER.iter().cycle();
    while entry.encoded_len() < entry_size {
        let missing = entry_size - entry.encoded_len();
        let word = words.next().copied().unwrap_or("x");
        entry.message.push(' ');
        entry
            .message
            .push_str(&word[..word.len().min(missing.saturating_sub(1))]);
    }
}

fn text_value(text: String) -> prost_types::Value {
    prost_types::Value {
        kind: Some(Kind::StringValue(text)),
    }
}

fn number_value(number: usize) -> prost_types::Value {
    // Small whole numbers: exact as f64.
    let number = u32::try_from(number).map_or(f64::from(u32::MAX), f64::from);
    prost_types::Value {
        kind: Some(Kind::NumberValue(number)),
    }
}

/// The encoded size of a batch's entries, as MB/s counts them.
pub(super) fn payload_bytes(entries: &[pb::LogEntry]) -> u64 {
    entries
        .iter()
        .map(|entry| u64::try_from(entry.encoded_len()).unwrap_or(u64::MAX))
        .sum()
}

/// When a load phase ends: at a deadline, or once a number of entries has
/// been handed out (shared by every worker of the phase).
#[derive(Debug, Clone)]
pub(super) enum StopRule {
    Deadline(Instant),
    Count {
        handed_out: Arc<AtomicU64>,
        total: u64,
    },
}

impl StopRule {
    pub(super) fn new(duration: Duration, count: Option<u64>) -> Self {
        match count {
            Some(total) => Self::Count {
                handed_out: Arc::new(AtomicU64::new(0)),
                total,
            },
            None => Self::Deadline(Instant::now() + duration),
        }
    }

    /// How many entries the next batch of at most `batch` may have; zero
    /// when the phase is over. Under a count, the entries are claimed.
    pub(super) fn claim(&self, batch: usize) -> usize {
        match self {
            Self::Deadline(deadline) => {
                if Instant::now() < *deadline {
                    batch
                } else {
                    0
                }
            }
            Self::Count { handed_out, total } => {
                let wanted = u64::try_from(batch).unwrap_or(u64::MAX);
                let before = handed_out.fetch_add(wanted, Ordering::Relaxed);
                let granted = total.saturating_sub(before).min(wanted);
                usize::try_from(granted).unwrap_or(batch)
            }
        }
    }
}

/// Awaits one call with [`CALL_TIMEOUT`]; the error says which call.
pub(super) async fn within<T>(
    what: impl FnOnce() -> String,
    call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(Ok(response)) => Ok(response.into_inner()),
        Ok(Err(status)) => Err(anyhow::Error::new(status).context(what())),
        Err(_) => anyhow::bail!("{}: no answer within {CALL_TIMEOUT:?}", what()),
    }
}

/// Starts `count` sessions for one run; returns their ids.
pub(super) async fn start_sessions(
    client: &mut Client,
    count: usize,
    mode: &str,
) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::with_capacity(count);
    for _ in 0..count {
        let request = pb::StartSessionRequest {
            app_name: BENCH_APP.to_owned(),
            mode: mode.to_owned(),
            client_pid: std::process::id(),
            ..Default::default()
        };
        let session = within(
            || "cannot start a bench session".to_owned(),
            client.start_session(request),
        )
        .await?;
        ids.push(session.id);
    }
    Ok(ids)
}

/// The sum of the sessions' `last_seq`: what the server says it stored.
pub(super) async fn stored_entries(client: &mut Client, ids: &[String]) -> anyhow::Result<u64> {
    let mut stored = 0;
    for id in ids {
        let request = pb::GetSessionRequest {
            session_id: id.clone(),
        };
        let session = within(
            || format!("cannot get session `{id}`"),
            client.get_session(request),
        )
        .await?;
        stored += session.last_seq;
    }
    Ok(stored)
}

/// Ends the sessions: their followers then get the rest and `ended`.
pub(super) async fn end_sessions(client: &mut Client, ids: &[String]) -> anyhow::Result<()> {
    for id in ids {
        let request = pb::EndSessionRequest {
            session_id: id.clone(),
            reason: "bench done".to_owned(),
        };
        within(
            || format!("cannot end session `{id}`"),
            client.end_session(request),
        )
        .await?;
    }
    Ok(())
}

/// Deletes the sessions (ending those still active), so a server that
/// outlives the run keeps nothing of it.
pub(super) async fn delete_sessions(client: &mut Client, ids: &[String]) -> anyhow::Result<()> {
    for id in ids {
        let request = pb::DeleteSessionRequest {
            session_id: id.clone(),
            force: true,
        };
        within(
            || format!("cannot delete session `{id}`"),
            client.delete_session(request),
        )
        .await
        .with_context(|| format!("the bench's sessions (app `{BENCH_APP}`) stay behind"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_come_out_at_about_the_asked_size() {
        for size in [160, 200, 1_000, 4_096] {
            for entry in entries(20, size, "bench.ingest") {
                let encoded = entry.encoded_len();
                assert!(
                    (size..=size + 1).contains(&encoded),
                    "asked {size}, got {encoded}"
                );
            }
        }
    }

    #[test]
    fn a_count_is_handed_out_exactly_once() {
        let rule = StopRule::new(Duration::from_secs(1), Some(2_500));
        let granted: Vec<usize> = (0..5).map(|_| rule.claim(1_000)).collect();
        assert_eq!(granted, [1_000, 1_000, 500, 0, 0]);
    }
}
