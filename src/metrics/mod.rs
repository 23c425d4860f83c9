//! Prometheus metrics: one process-wide set of instruments that any layer
//! may report to (recording is a few atomic adds, never a lock or I/O), and
//! the `--metrics-listen` HTTP server (`http`). Gauges that describe state
//! (sessions, followers, disk) are read when scraped, not kept up to date.

mod endpoint;

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

pub(crate) use endpoint::router;

/// A label set of one `reason`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct Reason {
    pub reason: String,
}

/// A label set of one `state`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct State {
    state: &'static str,
}

/// A label set of one `result`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    result: &'static str,
}

/// A label set of one forwarding `target` (its URL).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Target {
    target: String,
}

/// A forwarding target and what became of records sent to it.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetOutcome {
    target: String,
    result: &'static str,
}

/// Every instrument. Names follow Prometheus conventions: the registry adds
/// the `sessionlog_` prefix, `_total` to counters and the unit suffix.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    appended_entries: Counter,
    appended_bytes: Counter,
    seal_input_bytes: Counter,
    seal_output_bytes: Counter,
    append_batches: Family<Outcome, Counter>,
    append_seconds: Histogram,
    flush_seconds: Histogram,
    sessions: Family<State, Gauge>,
    followers: Gauge,
    follow_delivered: Counter,
    follower_lag: Histogram,
    liveness_endings: Family<Reason, Counter>,
    pruned_sessions: Family<Reason, Counter>,
    store_size: Gauge,
    store_live_bytes: Gauge,
    store_segments: Family<State, Gauge>,
    seal_backlog: Gauge,
    store_reclaiming: Gauge,
    store_damaged_sessions: Gauge,
    otlp_records: Family<Outcome, Counter>,
    forward_records: Family<TargetOutcome, Counter>,
    forward_failed_exports: Family<Target, Counter>,
    forward_lag_entries: Family<Target, Gauge>,
    forward_lag_seconds: Family<Target, Gauge<f64, std::sync::atomic::AtomicU64>>,
    forward_pruned_unforwarded: Counter,
    connections_closed: Family<Outcome, Counter>,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's instruments.
pub(crate) fn get() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("sessionlog");
        // 100 µs to ~3.3 s, doubling: an append ranges from a memory write
        // to a slow disk's flush.
        let latency = || Histogram::new(exponential_buckets(0.000_1, 2.0, 16));
        let metrics = Self {
            appended_entries: Counter::default(),
            appended_bytes: Counter::default(),
            seal_input_bytes: Counter::default(),
            seal_output_bytes: Counter::default(),
            append_batches: Family::default(),
            append_seconds: latency(),
            flush_seconds: latency(),
            sessions: Family::default(),
            followers: Gauge::default(),
            follow_delivered: Counter::default(),
            // 0 (caught up), then 1, 4, 16, ... 4^9 entries behind.
            follower_lag: Histogram::new(
                std::iter::once(0.0).chain(exponential_buckets(1.0, 4.0, 10)),
            ),
            liveness_endings: Family::default(),
            pruned_sessions: Family::default(),
            store_size: Gauge::default(),
            store_live_bytes: Gauge::default(),
            store_segments: Family::default(),
            seal_backlog: Gauge::default(),
            store_reclaiming: Gauge::default(),
            store_damaged_sessions: Gauge::default(),
            otlp_records: Family::default(),
            forward_records: Family::default(),
            forward_failed_exports: Family::default(),
            forward_lag_entries: Family::default(),
            forward_lag_seconds: Family::default(),
            forward_pruned_unforwarded: Counter::default(),
            connections_closed: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "appended_entries",
            "Log entries stored by Append, AppendStream and OTLP intake",
            metrics.appended_entries.clone(),
        );
        registry.register_with_unit(
            "appended",
            "Encoded size of the log entries stored",
            Unit::Bytes,
            metrics.appended_bytes.clone(),
        );
        registry.register_with_unit(
            "seal_input",
            "Stored size of the log blocks sealing replaced",
            Unit::Bytes,
            metrics.seal_input_bytes.clone(),
        );
        registry.register_with_unit(
            "seal_output",
            "Stored size of the compressed blocks sealing wrote in their place",
            Unit::Bytes,
            metrics.seal_output_bytes.clone(),
        );
        registry.register(
            "append_batches",
            "Append batches by result: stored, duplicate (a retried batch id) or failed",
            metrics.append_batches.clone(),
        );
        registry.register_with_unit(
            "append_duration",
            "Time from an append reaching the rules to its batch being durable as --fsync promises",
            Unit::Seconds,
            metrics.append_seconds.clone(),
        );
        registry.register_with_unit(
            "flush_duration",
            "Time of one flush of the store to disk",
            Unit::Seconds,
            metrics.flush_seconds.clone(),
        );
        registry.register(
            "sessions",
            "Sessions in the store by state",
            metrics.sessions.clone(),
        );
        registry.register(
            "followers",
            "Open Follow streams",
            metrics.followers.clone(),
        );
        registry.register(
            "follow_delivered_entries",
            "Log entries sent to followers",
            metrics.follow_delivered.clone(),
        );
        registry.register(
            "follower_lag_entries",
            "How many entries a follower was still behind the session's last seq when it was sent a batch",
            metrics.follower_lag.clone(),
        );
        registry.register(
            "liveness_endings",
            "Sessions ended by the liveness check, by reason",
            metrics.liveness_endings.clone(),
        );
        registry.register(
            "pruned_sessions",
            "Sessions removed by retention, by reason",
            metrics.pruned_sessions.clone(),
        );
        registry.register_with_unit(
            "store_size",
            "Size of the sled database on disk",
            Unit::Bytes,
            metrics.store_size.clone(),
        );
        registry.register_with_unit(
            "store_live",
            "Bytes of live pages in sled's log, as sled accounts them (the rest of store_size is dead space sled has yet to reuse)",
            Unit::Bytes,
            metrics.store_live_bytes.clone(),
        );
        registry.register(
            "store_segments",
            "sled's log segments by state: free, active (being written), inactive (written), draining (being relocated)",
            metrics.store_segments.clone(),
        );
        registry.register(
            "seal_backlog_sessions",
            "Sessions waiting for their logs to be sealed, or being sealed",
            metrics.seal_backlog.clone(),
        );
        registry.register(
            "store_reclaiming",
            "1 while the store relocates pages out of mostly dead sled segments, else 0",
            metrics.store_reclaiming.clone(),
        );
        registry.register(
            "store_damaged_sessions",
            "Sessions whose log failed its check against their counters: not served, reads answer DATA_LOSS",
            metrics.store_damaged_sessions.clone(),
        );
        registry.register(
            "otlp_records",
            "OTLP log records received, by result: stored or rejected",
            metrics.otlp_records.clone(),
        );
        registry.register(
            "forward_records",
            "Records forwarded, by target and result: exported (acknowledged), rejected (by partial_success) or dropped (the target refused the export for good)",
            metrics.forward_records.clone(),
        );
        registry.register(
            "forward_failed_exports",
            "Forwarded exports that failed and were retried, by target",
            metrics.forward_failed_exports.clone(),
        );
        registry.register(
            "forward_lag_entries",
            "Entries stored but not yet acknowledged by the target",
            metrics.forward_lag_entries.clone(),
        );
        registry.register_with_unit(
            "forward_lag",
            "Age of the oldest entry not yet acknowledged by the target (0 when caught up)",
            Unit::Seconds,
            metrics.forward_lag_seconds.clone(),
        );
        registry.register(
            "forward_pruned_unforwarded_sessions",
            "Ended sessions retention removed before every forwarding target had them (the store was over --retention-max-bytes)",
            metrics.forward_pruned_unforwarded.clone(),
        );
        registry.register(
            "connections_closed",
            "Connections the server closed early, by result: over_cap (their listener was at --max-connections) or handshake_timeout (no first bytes within --handshake-timeout)",
            metrics.connections_closed.clone(),
        );
        Self {
            registry,
            ..metrics
        }
    }

    /// A batch of `entries` taking `bytes` was stored.
    pub(crate) fn appended(&self, entries: usize, bytes: u64) {
        self.appended_entries.inc_by(entries as u64);
        self.appended_bytes.inc_by(bytes);
        self.batch("stored");
    }

    /// A seal step replaced blocks of `input` stored bytes with one of
    /// `output`.
    pub(crate) fn sealed(&self, input: usize, output: usize) {
        self.seal_input_bytes.inc_by(input as u64);
        self.seal_output_bytes.inc_by(output as u64);
    }

    /// A retried batch id was answered from the dedupe window.
    pub(crate) fn duplicate_batch(&self) {
        self.batch("duplicate");
    }

    /// An append failed (ended session, storage error, ...).
    pub(crate) fn failed_batch(&self) {
        self.batch("failed");
    }

    fn batch(&self, result: &'static str) {
        self.append_batches.get_or_create(&Outcome { result }).inc();
    }

    pub(crate) fn append_took(&self, took: Duration) {
        self.append_seconds.observe(took.as_secs_f64());
    }

    pub(crate) fn flush_took(&self, took: Duration) {
        self.flush_seconds.observe(took.as_secs_f64());
    }

    /// A follower was sent `entries` and is `lag` entries behind after them.
    pub(crate) fn delivered(&self, entries: usize, lag: u64) {
        self.follow_delivered.inc_by(entries as u64);
        #[allow(clippy::cast_precision_loss)] // a bucket boundary, not a count
        self.follower_lag.observe(lag as f64);
    }

    /// A session ended by the liveness check (`lease expired` is
    /// labelled `lease_expired`).
    pub(crate) fn liveness_ended(&self, reason: &str) {
        self.liveness_endings.get_or_create(&label(reason)).inc();
    }

    /// A new connection was closed at once: its listener was full.
    pub(crate) fn connection_refused(&self) {
        self.connections_closed
            .get_or_create(&Outcome { result: "over_cap" })
            .inc();
    }

    /// A connection sent nothing usable within the handshake timeout.
    pub(crate) fn handshake_timed_out(&self) {
        self.connections_closed
            .get_or_create(&Outcome {
                result: "handshake_timeout",
            })
            .inc();
    }

    /// A session removed by retention (`max age` is labelled `max_age`).
    pub(crate) fn pruned(&self, reason: &str) {
        self.pruned_sessions.get_or_create(&label(reason)).inc();
    }

    pub(crate) fn otlp_records(&self, stored: usize, rejected: usize) {
        for (result, count) in [("stored", stored), ("rejected", rejected)] {
            if count > 0 {
                self.otlp_records
                    .get_or_create(&Outcome { result })
                    .inc_by(count as u64);
            }
        }
    }

    /// `records` sent to `target` ended as `result` (exported, rejected,
    /// dropped).
    pub(crate) fn forwarded(&self, target: &str, result: &'static str, records: u64) {
        if records > 0 {
            self.forward_records
                .get_or_create(&TargetOutcome {
                    target: target.to_owned(),
                    result,
                })
                .inc_by(records);
        }
    }

    pub(crate) fn pruned_unforwarded(&self) {
        self.forward_pruned_unforwarded.inc();
    }

    pub(crate) fn forward_failed(&self, target: &str) {
        self.forward_failed_exports
            .get_or_create(&Target {
                target: target.to_owned(),
            })
            .inc();
    }

    /// How far `target` is behind: entries, and the age of the oldest.
    pub(crate) fn forward_lag(&self, target: &str, entries: u64, oldest: Duration) {
        let label = Target {
            target: target.to_owned(),
        };
        self.forward_lag_entries
            .get_or_create(&label)
            .set(i64::try_from(entries).unwrap_or(i64::MAX));
        self.forward_lag_seconds
            .get_or_create(&label)
            .set(oldest.as_secs_f64());
    }

    /// Sets the gauges read at scrape time and renders every metric in
    /// the OpenMetrics text format.
    pub(crate) fn render(&self, state: &Snapshot) -> String {
        for (state_name, count) in [("active", state.active), ("ended", state.ended)] {
            self.sessions
                .get_or_create(&State { state: state_name })
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
        self.followers
            .set(i64::try_from(state.followers).unwrap_or(i64::MAX));
        if let Some(bytes) = state.store_bytes {
            self.store_size
                .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
        {
            let usage = state.segments;
            self.store_live_bytes
                .set(i64::try_from(usage.live_bytes).unwrap_or(i64::MAX));
            for (state_name, count) in [
                ("free", usage.free),
                ("active", usage.active),
                ("inactive", usage.inactive),
                ("draining", usage.draining),
            ] {
                self.store_segments
                    .get_or_create(&State { state: state_name })
                    .set(i64::try_from(count).unwrap_or(i64::MAX));
            }
        }
        self.seal_backlog
            .set(i64::try_from(state.seal_backlog).unwrap_or(i64::MAX));
        self.store_reclaiming.set(i64::from(state.reclaiming));
        self.store_damaged_sessions
            .set(i64::try_from(state.damaged_sessions).unwrap_or(i64::MAX));
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

fn label(reason: &str) -> Reason {
    Reason {
        reason: reason.replace(' ', "_"),
    }
}

/// State read at scrape time.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Snapshot {
    pub active: usize,
    pub ended: usize,
    pub followers: usize,
    /// `None` when the size could not be read.
    pub store_bytes: Option<u64>,
    /// Sessions waiting to be sealed, or being sealed.
    pub seal_backlog: usize,
    /// Whether the store is relocating pages out of mostly dead segments.
    pub reclaiming: bool,
    /// Sessions whose log failed its check.
    pub damaged_sessions: usize,
    /// How sled's log file is used.
    pub segments: SegmentUsage,
}

/// sled's log segments by state, and the live bytes in them.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SegmentUsage {
    pub free: u64,
    pub active: u64,
    pub inactive: u64,
    pub draining: u64,
    pub live_bytes: u64,
}
