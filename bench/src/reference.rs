//! Figures measured elsewhere on the same kind of machine (2 cores,
//! loopback) that runs are compared with, and targets an issue sets where
//! there is nothing to measure against. Each names the figure of ours it
//! is held against; a run prints sessionlog ÷ reference.

/// A figure measured elsewhere on the same kind of machine (2 cores,
/// loopback), or a target, printed beside ours as sessionlog ÷ reference.
#[derive(Debug, Clone, Copy)]
pub(super) struct Reference {
    /// Which of our figures it compares with.
    pub(super) key: &'static str,
    pub(super) what: &'static str,
    pub(super) value: f64,
    /// A target set for us rather than a figure measured elsewhere: it is
    /// printed as such.
    pub(super) target: bool,
}

/// Redis 7 Streams, AOF `appendfsync everysec`, batches of 1,000 ~200-byte
/// entries: the figure `--fsync interval` is held to.
pub(super) const REDIS_EVERYSEC: [Reference; 2] = [
    Reference {
        key: "entries_per_second",
        what: "Redis 7 Streams, AOF everysec, batches of 1,000 x ~200 B",
        value: 170_000.0,
        target: false,
    },
    Reference {
        key: "server_cpu_us_per_entry",
        what: "Redis 7 Streams, AOF everysec, server CPU per entry",
        value: 4.0,
        target: false,
    },
];

/// Redis 7 Streams, AOF `appendfsync always`, the same batches.
pub(super) const REDIS_ALWAYS: [Reference; 1] = [Reference {
    key: "entries_per_second",
    what: "Redis 7 Streams, AOF always, batches of 1,000 x ~200 B",
    value: 80_000.0,
    target: false,
}];

/// Raw sled 0.34, `apply_batch` of 1,000, one key per entry: 75-85k/s.
pub(super) const RAW_SLED: [Reference; 1] = [Reference {
    key: "entries_per_second",
    what: "raw sled 0.34, apply_batch(1000), one key per entry, 75-85k/s",
    value: 80_000.0,
    target: false,
}];

/// Redis Streams, 100 followers (XREAD BLOCK) x 2,000 entries/s.
pub(super) const REDIS_FOLLOW: [Reference; 2] = [
    Reference {
        key: "latency_p50_us",
        what: "Redis 7 Streams, 100 followers x 2,000 entries/s, p50",
        value: 7_000.0,
        target: false,
    },
    Reference {
        key: "latency_p99_us",
        what: "Redis 7 Streams, 100 followers x 2,000 entries/s, p99",
        value: 70_000.0,
        target: false,
    },
];

/// Redis 7 Streams (AOF `everysec`) on this kind of machine,
/// `redis-benchmark -c 16` of single-entry `XADD`s: what 16 clients of
/// single-entry appends under `--fsync interval` are held to.
pub(super) const REDIS_XADD_16: [Reference; 2] = [
    Reference {
        key: "entries_per_second",
        what: "Redis 7 Streams, XADD of one entry, 16 clients",
        value: 91_900.0,
        target: false,
    },
    Reference {
        key: "server_cpu_us_per_append",
        what: "Redis 7 Streams, XADD of one entry, server CPU per XADD",
        value: 11.0,
        target: false,
    },
];

/// Redis Streams, 100 followers (XREAD BLOCK) of a producer sending one
/// entry per XADD at 2,000/s: what `--pace per-entry` is held to.
pub(super) const REDIS_FOLLOW_PER_ENTRY: [Reference; 3] = [
    Reference {
        key: "latency_p50_us",
        what: "Redis 7 Streams, 100 followers x 2,000 single-entry XADDs/s, p50",
        value: 6_100.0,
        target: false,
    },
    Reference {
        key: "latency_p99_us",
        what: "Redis 7 Streams, 100 followers x 2,000 single-entry XADDs/s, p99",
        value: 26_000.0,
        target: false,
    },
    Reference {
        key: "server_cpu_us_per_delivered",
        what: "Redis 7 Streams, server CPU per delivered entry",
        value: 3.1,
        target: false,
    },
];

/// Issue 20's target for ended sessions of real log text: at most 0.25
/// bytes of disk per encoded entry byte (0.1 the aim).
pub(super) const STORAGE_TARGET: [Reference; 1] = [Reference {
    key: "disk_per_encoded_byte",
    what: "issue 20, ended sessions: disk per encoded entry byte",
    value: 0.25,
    target: true,
}];

/// Issue 20's target under churn: the data dir at most twice the
/// compressed data retained.
pub(super) const CHURN_TARGET: [Reference; 1] = [Reference {
    key: "allocated_per_compressed_max",
    what: "issue 20, under churn: data dir (allocated) per compressed byte retained",
    value: 2.0,
    target: true,
}];

/// Issue 20's target for retention: pruning 2,500 of 10,000 stored
/// sessions in at most 0.5 s.
pub(super) const PRUNE_TARGET: [Reference; 1] = [Reference {
    key: "prune_seconds",
    what: "issue 20, pruning 2,500 of 10,000 sessions",
    value: 0.5,
    target: true,
}];
