//! `prune`: how long a restarted server takes to prune what its retention
//! no longer keeps (issue 20: 2,500 of 10,000 ended sessions in at most
//! 0.5 s). A fresh local server gets `--sessions` sessions of
//! `--entries-per-session` corpus lines (one entry per line, in batches, as
//! `footprint` appends them), all ended and sealed; it is stopped cleanly
//! and started again on the same data dir with `--retention-max-sessions`
//! at `--sessions` − `--prune`. The server's first retention pass runs as
//! it starts serving (tokio's interval ticks at once), so the bench times
//! from reading the `serving` line until the server's
//! `sessionlog_pruned_sessions_total` reaches `--prune` (polled every
//! 5 ms), and from the server's own log timestamps. Owns the run and its
//! figures; the server comes from `local`, the corpus from `footprint`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use serde_json::json;
use sessionlog::client::Client;
use tokio::time::Instant;

use super::churn;
use super::footprint::{self, Corpus, DiskUse};
use super::latency::Totals;
use super::local::{self, LogMark, ProcessSample, ServerUnderTest};
use super::reference;
use super::report::{self, RunReport, Unit};
use super::workload;
use super::{EngineArgs, OutputArgs, TargetArgs};

/// The longest the server may take to seal the ended sessions, before
/// the stop and after the pruning.
const SETTLE_LIMIT: Duration = Duration::from_secs(300);
/// The longest retention may take to prune `--prune` sessions.
const PRUNE_LIMIT: Duration = Duration::from_secs(120);
/// How often the server's prune counter is read while it prunes: the
/// measured time is late by at most this and one `/metrics` answer.
const POLL_EVERY: Duration = Duration::from_millis(5);
/// Only the first pass, which runs at start, is timed; a long interval
/// keeps a second one out of the measurement.
const RETENTION_INTERVAL: &str = "1h";
/// The server's counter of pruned sessions, one series per reason.
const PRUNED_METRIC: &str = "sessionlog_pruned_sessions_total";
/// The server's log messages the timing reads.
const SERVING_LINE: &str = "serving";
const PRUNED_LINE: &str = "pruned session";
/// The end of the ended sessions' log check, which starts at SERVING and
/// competes with the first retention pass for the cores.
const CHECKED_LINE: &str = "checked the stored sessions' logs";
/// How long the bench waits for the log reader to catch up with a line
/// the server has logged.
const LOG_LIMIT: Duration = Duration::from_secs(10);

#[derive(Debug, clap::Args)]
pub(super) struct PruneArgs {
    /// The `sessionlog` binary the local server runs (default: the one
    /// beside this program, else `sessionlog` on PATH).
    #[arg(long, env = "SESSIONLOG_BIN", value_name = "PATH")]
    server_bin: Option<PathBuf>,
    #[command(flatten)]
    engine: EngineArgs,
    /// The directory of log files (`*.log`, `*.jsonl`) to append, one
    /// entry per non-empty line (default: the corpus this bench was built
    /// with).
    #[arg(long, default_value = footprint::CORPUS_DIR)]
    corpus: PathBuf,
    /// Sessions stored (and ended) before the restart.
    #[arg(long, default_value_t = 10_000, value_parser = super::at_least_one())]
    sessions: usize,
    /// Lines appended to each session: the next lines of the corpus,
    /// wrapping at its end.
    #[arg(long, default_value_t = 100, value_parser = super::at_least_one())]
    entries_per_session: usize,
    /// Sessions the restarted server's retention prunes (it keeps
    /// `--sessions` minus this many).
    #[arg(long, default_value_t = 2_500, value_parser = super::at_least_one())]
    prune: usize,
    /// Entries per append.
    #[arg(long, default_value_t = 100, value_parser = super::at_least_one())]
    batch: usize,
    /// Clients filling sessions at once, each starting, filling and ending
    /// one session after another.
    #[arg(long, default_value_t = 4, value_parser = super::at_least_one())]
    concurrency: usize,
    #[command(flatten)]
    output: OutputArgs,
}

impl PruneArgs {
    /// The restarted server's `--retention-max-sessions`.
    fn kept(&self) -> usize {
        self.sessions.saturating_sub(self.prune)
    }

    /// Issue 20's shape: its target is held against this one only.
    fn is_issue_shape(&self) -> bool {
        self.sessions == 10_000 && self.prune == 2_500
    }
}

pub(super) async fn run(args: PruneArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.prune < args.sessions,
        "--prune {} must be less than --sessions {}: the restarted server keeps the rest",
        args.prune,
        args.sessions
    );
    let corpus = Arc::new(Corpus::load(&args.corpus)?);
    anyhow::ensure!(
        !corpus.lines.is_empty(),
        "{} holds no log lines (*.log or *.jsonl files)",
        args.corpus.display()
    );
    super::repeat(&args.output, || one_run(&args, corpus.clone())).await
}

/// What filling the first server took.
#[derive(Debug)]
struct Filled {
    totals: Totals,
    elapsed: Duration,
    /// From the last end until the sealer had nothing left to do.
    settle: Duration,
    peak: Option<ProcessSample>,
}

/// What the restarted server did.
#[derive(Debug)]
struct Pruned {
    /// Spawn to its `serving` line.
    startup: Duration,
    /// The `serving` line read to the prune counter seen at `--prune`.
    observed: Duration,
    /// By the server's log timestamps: its `serving` line to its last
    /// `pruned session` line, and its first to its last such line.
    serving_to_last_line: Option<Duration>,
    first_to_last_line: Option<Duration>,
    /// The server's `serving` line to the end of its log check.
    log_check: Option<Duration>,
    pruned: u64,
    remaining: u64,
    /// After the pruning, until the sealer had nothing left to do.
    settle: Duration,
    peak: Option<ProcessSample>,
}

async fn one_run(args: &PruneArgs, corpus: Arc<Corpus>) -> anyhow::Result<RunReport> {
    let target = TargetArgs::local(args.server_bin.clone(), args.engine.clone());
    let server = ServerUnderTest::start(&target).await?;
    let filled = fill(args, &corpus, &server).await;
    // A clean stop: the restart then recovers nothing, so the time after
    // it is pruning (and what any restart does), not repair.
    let stopped = server.stop_keeping_data().await;
    let filled = filled?;
    let data_dir = stopped?.context("a local server has a data dir")?;
    let before = DiskUse::of(&data_dir.path().join("data"))?;

    let server_args = [
        "--retention-max-sessions".to_owned(),
        args.kept().to_string(),
        "--retention-interval".to_owned(),
        RETENTION_INTERVAL.to_owned(),
    ];
    let server = ServerUnderTest::restart_in(
        &target,
        data_dir,
        &server_args,
        &[SERVING_LINE, PRUNED_LINE, CHECKED_LINE],
    )
    .await?;
    let pruned = watch_pruning(args, &server).await;
    let stopped = server.stop_keeping_data().await;
    let pruned = pruned?;
    let data_dir = stopped?.context("a local server has a data dir")?;
    let after = DiskUse::of(&data_dir.path().join("data"))?;
    Ok(report(args, &corpus, &filled, &pruned, [before, after]))
}

/// Fills `--sessions` sessions from `--concurrency` clients and ends them;
/// returns once the server has sealed them all.
async fn fill(
    args: &PruneArgs,
    corpus: &Arc<Corpus>,
    server: &ServerUnderTest,
) -> anyhow::Result<Filled> {
    let mut clients = Vec::with_capacity(args.concurrency);
    for _ in 0..args.concurrency {
        clients.push(server.connect().await?.sessions());
    }
    let next_session = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for client in clients {
        tasks.spawn(fill_sessions(
            client,
            corpus.clone(),
            next_session.clone(),
            (args.sessions, args.entries_per_session, args.batch),
        ));
    }
    let mut totals = Totals::new();
    while let Some(done) = tasks.join_next().await {
        totals.add(&done.context("a prune client failed")??);
    }
    let elapsed = started.elapsed();

    let mut control = server.connect().await?.sessions();
    let (listed, _) = churn::retained(&mut control).await?;
    let sessions = u64::try_from(args.sessions).context("--sessions is too large")?;
    anyhow::ensure!(
        listed == sessions,
        "the server lists {listed} bench sessions after {sessions} were started and ended"
    );
    // Sealing left for after the restart would be timed as pruning.
    let settle = server.wait_settled(SETTLE_LIMIT).await?;
    Ok(Filled {
        totals,
        elapsed,
        settle,
        peak: server.sample()?,
    })
}

/// One client: claims the next session index until `sessions` are
/// taken; starts that session, appends its lines and ends it.
async fn fill_sessions(
    mut client: Client,
    corpus: Arc<Corpus>,
    next_session: Arc<AtomicUsize>,
    shape: (usize, usize, usize),
) -> anyhow::Result<Totals> {
    let (sessions, per_session, batch) = shape;
    // Consecutive sessions read consecutive runs of the corpus.
    let shares = (corpus.lines.len() / per_session).max(1);
    let mut totals = Totals::new();
    loop {
        let index = next_session.fetch_add(1, Ordering::Relaxed);
        if index >= sessions {
            return Ok(totals);
        }
        let session_id = workload::start_sessions(&mut client, 1, "prune")
            .await?
            .pop()
            .context("a session was started")?;
        for lines in corpus.share(index, shares, Some(per_session)).chunks(batch) {
            footprint::append_lines(&mut client, &session_id, lines, &mut totals).await?;
        }
        workload::end_sessions(&mut client, std::slice::from_ref(&session_id)).await?;
    }
}

/// Times the restarted server's first retention pass and checks what it
/// left: exactly `--prune` sessions pruned, `--sessions` − `--prune`
/// listed.
async fn watch_pruning(args: &PruneArgs, server: &ServerUnderTest) -> anyhow::Result<Pruned> {
    let served_at = server
        .served_at()
        .context("a local server has a serving time")?;
    let want = u64::try_from(args.prune).context("--prune is too large")?;
    let (observed, counted) = wait_counted(server, served_at, want).await?;
    anyhow::ensure!(
        counted == report::approx(want),
        "retention pruned {counted} sessions where {want} were over --retention-max-sessions {}",
        args.kept()
    );
    let mut control = server.connect().await?.sessions();
    let (remaining, _) = churn::retained(&mut control).await?;
    let kept = u64::try_from(args.kept()).context("--sessions is too large")?;
    anyhow::ensure!(
        remaining == kept,
        "the server lists {remaining} bench sessions after pruning, not {kept}"
    );
    let pruned_lines = wait_for_lines(server, PRUNED_LINE, want)
        .await
        .with_context(|| format!("the server logged fewer than {want} `{PRUNED_LINE}` lines"))?;
    let settle = server.wait_settled(SETTLE_LIMIT).await?;
    let serving = server.log_mark(SERVING_LINE).unwrap_or_default();
    // A server that could not start its check says so in a warning
    // instead; the figure is then left out.
    let checked = wait_for_lines(server, CHECKED_LINE, 1).await;
    let between = |from: Option<SystemTime>, to: Option<SystemTime>| to?.duration_since(from?).ok();
    Ok(Pruned {
        startup: server
            .startup()
            .context("a local server has a start-up time")?,
        observed,
        serving_to_last_line: between(serving.first, pruned_lines.last),
        first_to_last_line: between(pruned_lines.first, pruned_lines.last),
        log_check: checked.and_then(|checked| between(serving.first, checked.last)),
        pruned: want,
        remaining,
        settle,
        peak: server.sample()?,
    })
}

/// Polls the server's prune counter from `served_at` until it reaches
/// `want`; returns when that was seen and the count then.
async fn wait_counted(
    server: &ServerUnderTest,
    served_at: Instant,
    want: u64,
) -> anyhow::Result<(Duration, f64)> {
    let mut ticks = tokio::time::interval(POLL_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        // No text yet: the metrics listener is named just after `serving`.
        let counted = server
            .metrics_text()
            .await?
            .map_or(0.0, |text| local::metric_sum(&text, PRUNED_METRIC));
        let seen = served_at.elapsed();
        if counted >= report::approx(want) {
            return Ok((seen, counted));
        }
        anyhow::ensure!(
            seen < PRUNE_LIMIT,
            "retention had pruned {counted} of {want} sessions {PRUNE_LIMIT:?} after the restart"
        );
    }
}

/// The lines whose message is `message` once `count` of them have been
/// read: the log reader may trail the server's counters. `None` if they
/// are not there within `LOG_LIMIT`.
async fn wait_for_lines(server: &ServerUnderTest, message: &str, count: u64) -> Option<LogMark> {
    let started = Instant::now();
    loop {
        let mark = server.log_mark(message).unwrap_or_default();
        if mark.count >= count {
            return Some(mark);
        }
        if started.elapsed() >= LOG_LIMIT {
            return None;
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

fn report(
    args: &PruneArgs,
    corpus: &Corpus,
    filled: &Filled,
    pruned: &Pruned,
    [before, after]: [DiskUse; 2],
) -> RunReport {
    const MIB: f64 = 1_048_576.0;
    let mut report = RunReport::new(
        "prune",
        vec![
            ("corpus", json!(args.corpus.display().to_string())),
            ("corpus_files", json!(corpus.files)),
            ("sessions", json!(args.sessions)),
            ("entries_per_session", json!(args.entries_per_session)),
            ("prune", json!(args.prune)),
            ("retention_max_sessions", json!(args.kept())),
            ("retention_interval", json!(RETENTION_INTERVAL)),
            ("batch", json!(args.batch)),
            ("concurrency", json!(args.concurrency)),
            ("fsync", json!(args.engine.fsync_name())),
            ("server", json!("local")),
        ],
    );
    let counts = [
        (
            "entries",
            "entries (a corpus line each)",
            filled.totals.entries,
        ),
        (
            "encoded_entry_bytes",
            "encoded entry bytes (protobuf)",
            filled.totals.bytes,
        ),
    ];
    for (key, label, value) in counts {
        report.push(key, label, Unit::Count, report::approx(value));
    }
    report.push_throughput(filled.totals.entries, filled.totals.bytes, filled.elapsed);
    let times = [
        (
            "seal_seconds",
            "sealing after the last end",
            Some(filled.settle),
        ),
        (
            "restart_seconds",
            "restart to SERVING",
            Some(pruned.startup),
        ),
        (
            "prune_seconds",
            "SERVING to all pruned (metrics)",
            Some(pruned.observed),
        ),
        (
            "prune_log_seconds",
            "serving to last pruned line (log)",
            pruned.serving_to_last_line,
        ),
        (
            "pruned_lines_seconds",
            "first to last pruned line (log)",
            pruned.first_to_last_line,
        ),
        (
            "log_check_seconds",
            "serving to log check done (log)",
            pruned.log_check,
        ),
        (
            "collect_seconds",
            "sealer settled after pruning",
            Some(pruned.settle),
        ),
    ];
    for (key, label, value) in times {
        if let Some(value) = value {
            report.push(key, label, Unit::Seconds, value.as_secs_f64());
        }
    }
    let counts = [
        ("sessions_pruned", "sessions pruned", pruned.pruned),
        (
            "sessions_remaining",
            "sessions listed after (checked)",
            pruned.remaining,
        ),
        (
            "disk_allocated_bytes_before",
            "data dir allocated (du), before",
            before.allocated_bytes,
        ),
        (
            "disk_allocated_bytes_after",
            "data dir allocated (du), after",
            after.allocated_bytes,
        ),
        (
            "disk_bytes_before",
            "data dir file sizes, before",
            before.file_bytes,
        ),
        (
            "disk_bytes_after",
            "data dir file sizes, after",
            after.file_bytes,
        ),
    ];
    for (key, label, value) in counts {
        report.push(key, label, Unit::Count, report::approx(value));
    }
    if before.allocated_bytes > 0 {
        report.push(
            "disk_allocated_after_per_before",
            "allocated after / before",
            Unit::Ratio,
            report::approx(after.allocated_bytes) / report::approx(before.allocated_bytes),
        );
    }
    let peaks = [
        (
            "fill_server_peak_rss_mib",
            "server peak RSS, filling",
            filled.peak,
        ),
        (
            "server_peak_rss_mib",
            "server peak RSS, restart + prune",
            pruned.peak,
        ),
    ];
    for (key, label, peak) in peaks {
        if let Some(peak) = peak {
            let mib = report::approx(peak.peak_rss_bytes) / MIB;
            report.push(key, label, Unit::Mebibytes, mib);
        }
    }
    if args.is_issue_shape() {
        report.references = reference::PRUNE_TARGET.to_vec();
    }
    report
}
