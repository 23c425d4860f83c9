//! `churn`: the disk a server keeps while sessions come and go. For the
//! whole run, clients start sessions, append corpus lines to them (one
//! entry per line, in batches, as `footprint` does) and end them, while
//! the local server's retention (`--retention-max-sessions`, run every
//! `--retention-interval`) prunes the oldest. Every `--sample-every` the
//! bench reads the data dir's size, the retained sessions' encoded bytes
//! (`size_bytes` over ListSessions) and the server's compression ratio
//! (its `seal_output` / `seal_input` byte counters): "compressed data
//! retained" is the retained encoded bytes times that ratio, and the
//! figure held to issue 20's target is the data dir over it. Samples count
//! once the first quarter of the run is over and retention has pruned
//! something: before that the store is still filling. Always a fresh
//! local server: its data dir must be ours to measure.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use serde_json::json;
use sessionlog::client::Client;
use sessionlog::pb;
use sessionlog::units::parse_duration;
use tokio::time::Instant;

use super::footprint::{self, Corpus, DiskUse};
use super::latency::Totals;
use super::local::{self, ServerUnderTest};
use super::reference;
use super::report::{self, ResourceUse, RunReport, Unit};
use super::workload::{self, within};
use super::{EngineArgs, OutputArgs, TargetArgs};

/// The data dir may take at most this many times the compressed data
/// retained (issue 20).
const TARGET_RATIO: f64 = 2.0;
/// ListSessions' largest page.
const PAGE_SIZE: u32 = 1_000;

#[derive(Debug, clap::Args)]
pub(super) struct ChurnArgs {
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
    /// How long sessions are started, filled and ended.
    #[arg(long, default_value = "30m", value_parser = parse_duration)]
    duration: Duration,
    /// The server keeps at most this many sessions (its
    /// `--retention-max-sessions`).
    #[arg(long, default_value_t = 1_000, value_parser = super::at_least_one())]
    retained: usize,
    /// How often the server's retention runs (its `--retention-interval`).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    retention_interval: Duration,
    /// Lines appended to each session before it is ended: the next lines
    /// of the corpus, wrapping at its end.
    #[arg(long, default_value_t = 1_000, value_parser = super::at_least_one())]
    entries_per_session: usize,
    /// Entries per append.
    #[arg(long, default_value_t = 100, value_parser = super::at_least_one())]
    batch: usize,
    /// Clients at once, each starting, filling and ending one session
    /// after another.
    #[arg(long, default_value_t = 4, value_parser = super::at_least_one())]
    concurrency: usize,
    /// How often the data dir and the retained sessions are measured.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    sample_every: Duration,
    #[command(flatten)]
    output: OutputArgs,
}

pub(super) async fn run(args: ChurnArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        !args.sample_every.is_zero(),
        "--sample-every must be more than 0"
    );
    let corpus = Arc::new(Corpus::load(&args.corpus)?);
    anyhow::ensure!(
        !corpus.lines.is_empty(),
        "{} holds no log lines (*.log or *.jsonl files)",
        args.corpus.display()
    );
    super::repeat(&args.output, || one_run(&args, corpus.clone())).await
}

/// One measurement of the data dir against what the server retains.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Duration,
    /// Sessions started before the listing (each exists then, or was
    /// pruned).
    started: u64,
    disk: DiskUse,
    /// Bench sessions the server still lists.
    retained_sessions: u64,
    /// The sum of their `size_bytes`.
    retained_bytes: u64,
    /// Sealing's output over its input so far; `None` before anything
    /// was sealed.
    seal_ratio: Option<f64>,
    /// What the server's metrics said of its store then.
    store: StoreState,
}

/// The server's own view of its store at a sample, to tell apart what a
/// swing of the data dir is made of.
#[derive(Debug, Clone, Copy, Default)]
struct StoreState {
    /// Ended sessions not yet sealed.
    seal_backlog: f64,
    /// The bytes of pages sled counts live.
    live_bytes: f64,
    /// sled's segments being written, written, and being relocated.
    active: f64,
    inactive: f64,
    draining: f64,
}

impl StoreState {
    fn of(text: &str) -> anyhow::Result<Self> {
        let segments = |state: &str| {
            local::metric(
                text,
                &format!("sessionlog_store_segments{{state=\"{state}\"}}"),
            )
        };
        Ok(Self {
            seal_backlog: local::metric(text, "sessionlog_seal_backlog_sessions")?,
            live_bytes: local::metric(text, "sessionlog_store_live_bytes")?,
            active: segments("active")?,
            inactive: segments("inactive")?,
            draining: segments("draining")?,
        })
    }
}

impl Sample {
    fn compressed_retained(&self) -> Option<f64> {
        self.seal_ratio
            .map(|ratio| report::approx(self.retained_bytes) * ratio)
            .filter(|bytes| *bytes > 0.0)
    }

    /// Allocated blocks and file sizes over the compressed data retained.
    fn ratios(&self) -> Option<(f64, f64)> {
        let compressed = self.compressed_retained()?;
        Some((
            report::approx(self.disk.allocated_bytes) / compressed,
            report::approx(self.disk.file_bytes) / compressed,
        ))
    }
}

async fn one_run(args: &ChurnArgs, corpus: Arc<Corpus>) -> anyhow::Result<RunReport> {
    let target = TargetArgs::local(args.server_bin.clone(), args.engine.clone());
    let server_args = [
        "--retention-max-sessions".to_owned(),
        args.retained.to_string(),
        "--retention-interval".to_owned(),
        humantime::format_duration(args.retention_interval).to_string(),
    ];
    let server = ServerUnderTest::start_with(&target, &server_args).await?;
    let measured = measure(args, &corpus, &server).await;
    let stopped = server.stop().await;
    let report = measured?;
    stopped?;
    Ok(report)
}

/// What the clients did.
#[derive(Debug)]
struct Churned {
    totals: Totals,
    sessions: u64,
}

/// One client: sessions started, filled and ended one after another
/// until `until`; the session in hand is finished first.
async fn client_churns(
    mut client: Client,
    corpus: Arc<Corpus>,
    next_session: Arc<AtomicUsize>,
    created: Arc<AtomicU64>,
    args: (usize, usize),
    until: Instant,
) -> anyhow::Result<Churned> {
    let (per_session, batch) = args;
    // Consecutive sessions read consecutive runs of the corpus.
    let shares = (corpus.lines.len() / per_session).max(1);
    let mut churned = Churned {
        totals: Totals::new(),
        sessions: 0,
    };
    while Instant::now() < until {
        let index = next_session.fetch_add(1, Ordering::Relaxed);
        let session_id = workload::start_sessions(&mut client, 1, "churn")
            .await?
            .pop()
            .context("a session was started")?;
        churned.sessions += 1;
        created.fetch_add(1, Ordering::Relaxed);
        for lines in corpus.share(index, shares, Some(per_session)).chunks(batch) {
            footprint::append_lines(&mut client, &session_id, lines, &mut churned.totals).await?;
        }
        workload::end_sessions(&mut client, std::slice::from_ref(&session_id)).await?;
    }
    Ok(churned)
}

/// The bench's sessions the server lists (every state, every page): how
/// many, and their `size_bytes` summed.
pub(super) async fn retained(client: &mut Client) -> anyhow::Result<(u64, u64)> {
    let (mut sessions, mut bytes) = (0, 0);
    let mut page_token = String::new();
    loop {
        let page = within(
            || "cannot list the bench's sessions".to_owned(),
            client.list_sessions(pb::ListSessionsRequest {
                app_name: workload::BENCH_APP.to_owned(),
                page_size: PAGE_SIZE,
                page_token: page_token.clone(),
                ..Default::default()
            }),
        )
        .await?;
        sessions += u64::try_from(page.sessions.len()).unwrap_or(u64::MAX);
        bytes += page
            .sessions
            .iter()
            .map(|session| session.size_bytes)
            .sum::<u64>();
        if page.next_page_token.is_empty() {
            return Ok((sessions, bytes));
        }
        page_token = page.next_page_token;
    }
}

async fn take_sample(
    server: &ServerUnderTest,
    control: &mut Client,
    data_dir: &Path,
    created: &AtomicU64,
    at: Duration,
) -> anyhow::Result<Sample> {
    let started = created.load(Ordering::Relaxed);
    let (retained_sessions, retained_bytes) = retained(control).await?;
    let disk = DiskUse::of(data_dir)?;
    let text = server
        .metrics_text()
        .await?
        .context("the local server has not named its metrics listener")?;
    let input = local::metric(&text, "sessionlog_seal_input_bytes_total")?;
    let output = local::metric(&text, "sessionlog_seal_output_bytes_total")?;
    Ok(Sample {
        at,
        started,
        disk,
        retained_sessions,
        retained_bytes,
        seal_ratio: (input > 0.0).then(|| output / input),
        store: StoreState::of(&text)?,
    })
}

/// A line per sample on stderr: a long run shows how it goes.
fn print_sample(sample: &Sample) {
    const MB: f64 = 1e6;
    let ratios = sample.ratios().map_or_else(
        || "-".to_owned(),
        |(allocated, files)| format!("{allocated:.2} (files {files:.2})"),
    );
    eprintln!(
        "churn {:>7.1}s: {} started, {} retained ({:.1} MB encoded, seal ratio {}), \
         data dir {:.1} MB allocated / {:.1} MB files; disk / compressed retained {ratios}; \
         live {:.1} MB, segments {} active / {} inactive / {} draining, {} to seal",
        sample.at.as_secs_f64(),
        sample.started,
        sample.retained_sessions,
        report::approx(sample.retained_bytes) / MB,
        sample
            .seal_ratio
            .map_or_else(|| "-".to_owned(), |ratio| format!("{ratio:.3}")),
        report::approx(sample.disk.allocated_bytes) / MB,
        report::approx(sample.disk.file_bytes) / MB,
        sample.store.live_bytes / MB,
        sample.store.active,
        sample.store.inactive,
        sample.store.draining,
        sample.store.seal_backlog,
    );
}

async fn measure(
    args: &ChurnArgs,
    corpus: &Arc<Corpus>,
    server: &ServerUnderTest,
) -> anyhow::Result<RunReport> {
    let data_dir = server.data_dir().context("a local server has a data dir")?;
    let mut control = server.connect().await?.sessions();
    let mut clients = Vec::with_capacity(args.concurrency);
    for _ in 0..args.concurrency {
        clients.push(server.connect().await?.sessions());
    }

    let server_before = server.sample()?;
    let client_before = local::sample(std::process::id()).ok();
    let started = Instant::now();
    let until = started + args.duration;
    let next_session = Arc::new(AtomicUsize::new(0));
    let created = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for client in clients {
        tasks.spawn(client_churns(
            client,
            corpus.clone(),
            next_session.clone(),
            created.clone(),
            (args.entries_per_session, args.batch),
            until,
        ));
    }

    let mut samples = Vec::new();
    let mut tick = tokio::time::interval_at(started + args.sample_every, args.sample_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut churned = Churned {
        totals: Totals::new(),
        sessions: 0,
    };
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let sample =
                    take_sample(server, &mut control, &data_dir, &created, started.elapsed()).await?;
                print_sample(&sample);
                samples.push(sample);
            }
            done = tasks.join_next() => {
                let Some(done) = done else { break };
                let client = done.context("a churn client failed")??;
                churned.totals.add(&client.totals);
                churned.sessions += client.sessions;
            }
        }
    }
    let elapsed = started.elapsed();
    // The last sample: every session ended, retention still running.
    let last = take_sample(server, &mut control, &data_dir, &created, elapsed).await?;
    print_sample(&last);
    samples.push(last);
    let server_after = server.sample()?;
    let client_after = local::sample(std::process::id()).ok();

    let mut report = RunReport::new(
        "churn",
        vec![
            ("corpus", json!(args.corpus.display().to_string())),
            ("corpus_files", json!(corpus.files)),
            ("duration_seconds", json!(args.duration.as_secs_f64())),
            ("retained", json!(args.retained)),
            (
                "retention_interval_seconds",
                json!(args.retention_interval.as_secs_f64()),
            ),
            ("entries_per_session", json!(args.entries_per_session)),
            ("batch", json!(args.batch)),
            ("concurrency", json!(args.concurrency)),
            (
                "sample_every_seconds",
                json!(args.sample_every.as_secs_f64()),
            ),
            ("fsync", json!(args.engine.fsync_name())),
            ("server", json!(server.describe())),
        ],
    );
    push_figures(&mut report, &churned, last, &samples, args.duration / 4)?;
    report.push_throughput(churned.totals.entries, churned.totals.bytes, elapsed);
    report
        .figures
        .extend(churned.totals.latency.figures("append", "append latency"));
    report::push_cpu_and_memory(
        &mut report,
        churned.totals.entries,
        elapsed,
        ResourceUse {
            before: server_before,
            after: server_after,
        },
        server.idle(),
        ResourceUse {
            before: client_before,
            after: client_after,
        },
    );
    report.references = reference::CHURN_TARGET.to_vec();
    Ok(report)
}

/// The largest value of each ratio over the counted samples, and the
/// last counted sample's.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Ratios {
    allocated_max: f64,
    files_max: f64,
    allocated_last: f64,
    files_last: f64,
    counted: usize,
}

/// Samples taken after `warmup` once retention had pruned something, and
/// with something sealed: before that the data dir is a store filling up.
fn counted_ratios(samples: &[Sample], warmup: Duration) -> Option<Ratios> {
    let mut ratios: Option<Ratios> = None;
    for sample in samples {
        if sample.at < warmup || sample.retained_sessions >= sample.started {
            continue;
        }
        let Some((allocated, files)) = sample.ratios() else {
            continue;
        };
        let so_far = ratios.get_or_insert(Ratios {
            allocated_max: allocated,
            files_max: files,
            allocated_last: allocated,
            files_last: files,
            counted: 0,
        });
        so_far.allocated_max = so_far.allocated_max.max(allocated);
        so_far.files_max = so_far.files_max.max(files);
        so_far.allocated_last = allocated;
        so_far.files_last = files;
        so_far.counted += 1;
    }
    ratios
}

fn push_figures(
    report: &mut RunReport,
    churned: &Churned,
    last: Sample,
    samples: &[Sample],
    warmup: Duration,
) -> anyhow::Result<()> {
    let ratios = counted_ratios(samples, warmup).with_context(|| {
        format!(
            "no sample after the warm-up ({warmup:?}) had retention pruning and sealed data \
             to compare with; run longer, sample more often or retain fewer sessions"
        )
    })?;
    let pruned = churned.sessions.saturating_sub(last.retained_sessions);
    let max_disk = samples
        .iter()
        .fold(DiskUse::default(), |max, sample| DiskUse {
            file_bytes: max.file_bytes.max(sample.disk.file_bytes),
            allocated_bytes: max.allocated_bytes.max(sample.disk.allocated_bytes),
            files: max.files.max(sample.disk.files),
        });
    let counts = [
        ("sessions_started", "sessions started", churned.sessions),
        ("sessions_pruned", "sessions pruned", pruned),
        (
            "sessions_retained",
            "sessions retained, end",
            last.retained_sessions,
        ),
        ("entries", "entries (corpus lines)", churned.totals.entries),
        (
            "retained_encoded_bytes",
            "retained encoded bytes, end",
            last.retained_bytes,
        ),
        (
            "max_disk_bytes",
            "data dir max, file sizes",
            max_disk.file_bytes,
        ),
        (
            "max_disk_allocated_bytes",
            "data dir max, allocated",
            max_disk.allocated_bytes,
        ),
        (
            "disk_allocated_bytes",
            "data dir at the end, allocated",
            last.disk.allocated_bytes,
        ),
    ];
    for (key, label, value) in counts {
        report.push(key, label, Unit::Count, report::approx(value));
    }
    report.push(
        "seal_ratio",
        "seal output / input bytes",
        Unit::Ratio,
        last.seal_ratio.unwrap_or(0.0),
    );
    report.push(
        "compressed_retained_bytes",
        "compressed retained, end",
        Unit::Count,
        last.compressed_retained().unwrap_or(0.0),
    );
    report.push(
        "samples_counted",
        "samples after the warm-up",
        Unit::Count,
        report::approx(u64::try_from(ratios.counted).unwrap_or(u64::MAX)),
    );
    let figures = [
        (
            "allocated_per_compressed_max",
            "allocated / compressed, max",
            ratios.allocated_max,
        ),
        (
            "allocated_per_compressed_last",
            "allocated / compressed, last",
            ratios.allocated_last,
        ),
        (
            "disk_per_compressed_max",
            "files / compressed, max",
            ratios.files_max,
        ),
        (
            "disk_per_compressed_last",
            "files / compressed, last",
            ratios.files_last,
        ),
    ];
    for (key, label, value) in figures {
        report.push(key, label, Unit::Ratio, value);
    }
    // The allocated blocks are what fills a volume (`du`, `df`, a
    // volume's size limit); the files' lengths count the holes of the
    // segments punched, and are reported beside.
    let within = ratios.allocated_max <= TARGET_RATIO;
    report.push(
        "within_2x",
        "within 2x (1 yes, 0 no)",
        Unit::Count,
        if within { 1.0 } else { 0.0 },
    );
    Ok(())
}
