//! `search`: how fast `Search` scans a store. The corpus (as `footprint`
//! appends it: one entry per line, a run of lines per session) goes into
//! `--sessions` sessions of `--entries-per-session` entries each; a rare
//! marker line is appended to `--rare-sessions` of them; the sessions are
//! ended and sealed (the bench waits for the server's sealer); then each
//! search runs `--repeat` times: a common term (with the largest limit, so
//! it scans far) and the rare marker (it scans everything). Reports the
//! median seconds of each, what it examined, MB/s of encoded entries
//! examined (the summary's `bytes_scanned` over the time), and the
//! server's CPU time per search (on a busy machine, what the time would
//! be with its cores to itself is about that over the cores).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use serde_json::json;
use sessionlog::client::Client;
use sessionlog::pb;
use tokio::time::Instant;

use super::footprint::{Corpus, client_appends};
use super::local::ServerUnderTest;
use super::report::{self, RunReport, Unit};
use super::workload::{self, within};
use super::{EngineArgs, OutputArgs, TargetArgs};

/// The line the rare search looks for; in no corpus file.
const RARE_MARKER: &str = "search-bench-marker-5f0c9e";
/// The longest the server may take to seal the ended sessions.
const SETTLE_LIMIT: Duration = Duration::from_secs(600);

#[derive(Debug, clap::Args)]
pub(super) struct SearchArgs {
    /// The `sessionlog` binary the local server runs (default: the one
    /// beside this program, else `sessionlog` on PATH).
    #[arg(long, env = "SESSIONLOG_BIN", value_name = "PATH")]
    server_bin: Option<std::path::PathBuf>,
    #[command(flatten)]
    engine: EngineArgs,
    /// The directory of log files to append (default: the corpus this bench
    /// was built with).
    #[arg(long, default_value = super::footprint::CORPUS_DIR)]
    corpus: std::path::PathBuf,
    /// Sessions in the store.
    #[arg(long, default_value_t = 1_000, value_parser = super::at_least_one())]
    sessions: usize,
    /// Entries per session (corpus lines from the session's own place on,
    /// wrapping).
    #[arg(long, default_value_t = 1_000, value_parser = super::at_least_one())]
    entries_per_session: usize,
    /// Sessions that get the rare marker line.
    #[arg(long, default_value_t = 5)]
    rare_sessions: usize,
    /// The common term.
    #[arg(long, default_value = "error")]
    common: String,
    /// Each search runs this many times; the median is reported.
    #[arg(long, default_value_t = 5, value_parser = super::at_least_one())]
    repeat: usize,
    /// Entries per append.
    #[arg(long, default_value_t = 1_000, value_parser = super::at_least_one())]
    batch: usize,
    /// Clients appending at once.
    #[arg(long, default_value_t = 4, value_parser = super::at_least_one())]
    concurrency: usize,
    #[command(flatten)]
    output: OutputArgs,
}

pub(super) async fn run(args: SearchArgs) -> anyhow::Result<()> {
    let corpus = Arc::new(Corpus::load(&args.corpus)?);
    anyhow::ensure!(
        !corpus.lines.is_empty(),
        "{} holds no log lines",
        args.corpus.display()
    );
    super::repeat(&args.output, || one_run(&args, corpus.clone())).await
}

async fn one_run(args: &SearchArgs, corpus: Arc<Corpus>) -> anyhow::Result<RunReport> {
    let target = TargetArgs::local(args.server_bin.clone(), args.engine.clone());
    let server = ServerUnderTest::start(&target).await?;
    let measured = measure(args, &corpus, &server).await;
    let stopped = server.stop().await;
    let report = measured?;
    stopped?;
    Ok(report)
}

/// One search's figures.
#[derive(Debug, Clone, Copy)]
struct Timed {
    seconds: f64,
    hits: u64,
    summary: pb::SearchSummary,
    /// The server's CPU time per search, over all the repeats (when its
    /// pid is known).
    server_cpu_seconds: Option<f64>,
}

async fn search_once(client: &mut Client, contains: &str, limit: u32) -> anyhow::Result<Timed> {
    let request = pb::SearchRequest {
        filter: Some(pb::LogFilter {
            contains: contains.to_owned(),
            ..Default::default()
        }),
        limit,
        ..Default::default()
    };
    let started = Instant::now();
    let mut stream = client.search(request).await?.into_inner();
    let (mut hits, mut summary) = (0u64, None);
    while let Some(message) = stream.message().await? {
        hits += u64::try_from(message.hits.len()).unwrap_or(u64::MAX);
        summary = message.summary.or(summary);
    }
    let seconds = started.elapsed().as_secs_f64();
    let summary = summary.context("a search ended without its summary")?;
    Ok(Timed {
        seconds,
        hits,
        summary,
        server_cpu_seconds: None,
    })
}

/// Runs the search `repeat` times; the run with the median time.
async fn median_search(
    server: &ServerUnderTest,
    client: &mut Client,
    contains: &str,
    limit: u32,
    repeat: usize,
) -> anyhow::Result<Timed> {
    let before = server.sample()?;
    let mut runs = Vec::with_capacity(repeat);
    for _ in 0..repeat {
        runs.push(search_once(client, contains, limit).await?);
    }
    let after = server.sample()?;
    runs.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
    let mut median = runs[runs.len() / 2];
    if let (Some(before), Some(after)) = (before, after) {
        let repeats = f64::from(u32::try_from(repeat).unwrap_or(u32::MAX));
        median.server_cpu_seconds = Some((after.cpu_seconds - before.cpu_seconds) / repeats);
    }
    Ok(median)
}

async fn measure(
    args: &SearchArgs,
    corpus: &Arc<Corpus>,
    server: &ServerUnderTest,
) -> anyhow::Result<RunReport> {
    let mut control = server.connect().await?.sessions();
    let sessions = workload::start_sessions(&mut control, args.sessions, "search").await?;
    let mut shares: Vec<Vec<(String, usize)>> = vec![Vec::new(); args.concurrency];
    for (index, session_id) in sessions.iter().enumerate() {
        shares[index % args.concurrency].push((session_id.clone(), index));
    }
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for share in shares {
        let client = server.connect().await?.sessions();
        tasks.spawn(client_appends(
            client,
            corpus.clone(),
            share,
            args.sessions,
            Some(args.entries_per_session),
            args.batch,
        ));
    }
    let (mut entries, mut bytes) = (0u64, 0u64);
    while let Some(done) = tasks.join_next().await {
        let totals = done.context("an appending client failed")??;
        entries += totals.entries;
        bytes += totals.bytes;
    }
    let load_seconds = started.elapsed().as_secs_f64();
    let rare_every = args.sessions / args.rare_sessions.max(1);
    for session_id in sessions
        .iter()
        .step_by(rare_every.max(1))
        .take(args.rare_sessions)
    {
        let request = pb::AppendRequest {
            session_id: session_id.clone(),
            entries: vec![pb::LogEntry {
                timestamp: Some(SystemTime::now().into()),
                level: pb::Level::Error.into(),
                logger: "bench".to_owned(),
                message: format!("a {RARE_MARKER} line"),
                ..Default::default()
            }],
            ..Default::default()
        };
        within(
            || "cannot append the marker".to_owned(),
            control.append(request),
        )
        .await?;
    }
    workload::end_sessions(&mut control, &sessions).await?;
    let settled = server.wait_settled(SETTLE_LIMIT).await?;

    let mut client = server.connect().await?.sessions();
    let common = median_search(server, &mut client, &args.common, 100_000, args.repeat).await?;
    let rare = median_search(server, &mut client, RARE_MARKER, 0, args.repeat).await?;
    anyhow::ensure!(
        rare.hits == u64::try_from(args.rare_sessions.min(args.sessions)).unwrap_or(u64::MAX),
        "the rare search found {} hits, not one per marked session",
        rare.hits
    );

    let mut report = RunReport::new(
        "search",
        vec![
            ("sessions", json!(args.sessions)),
            ("entries_per_session", json!(args.entries_per_session)),
            ("rare_sessions", json!(args.rare_sessions)),
            ("common", json!(args.common)),
            ("repeat", json!(args.repeat)),
            ("server", json!(server.describe())),
        ],
    );
    report.push(
        "entries",
        "entries stored",
        Unit::Count,
        report::approx(entries),
    );
    report.push(
        "encoded_entry_bytes",
        "encoded entry bytes",
        Unit::Count,
        report::approx(bytes),
    );
    report.push(
        "load_seconds",
        "appending them",
        Unit::Seconds,
        load_seconds,
    );
    report.push(
        "settle_seconds",
        "sealing after the last end",
        Unit::Seconds,
        settled.as_secs_f64(),
    );
    for (name, timed) in [("common", common), ("rare", rare)] {
        push_search(&mut report, name, &timed);
    }
    Ok(report)
}

fn push_search(report: &mut RunReport, name: &str, timed: &Timed) {
    let label = |what: &str| format!("{name} search: {what}");
    report.push(
        &format!("{name}_seconds"),
        &label("median time"),
        Unit::Seconds,
        timed.seconds,
    );
    report.push(
        &format!("{name}_hits"),
        &label("hits"),
        Unit::Count,
        report::approx(timed.hits),
    );
    report.push(
        &format!("{name}_entries_scanned"),
        &label("entries examined"),
        Unit::Count,
        report::approx(timed.summary.entries_scanned),
    );
    report.push(
        &format!("{name}_sessions_scanned"),
        &label("sessions examined"),
        Unit::Count,
        report::approx(timed.summary.sessions_scanned),
    );
    if let Some(cpu) = timed.server_cpu_seconds {
        report.push(
            &format!("{name}_server_cpu_seconds"),
            &label("server CPU time per search"),
            Unit::Seconds,
            cpu,
        );
    }
    let megabytes = report::approx(timed.summary.bytes_scanned) / 1e6;
    report.push(
        &format!("{name}_mb_per_second"),
        &label("encoded MB examined per second"),
        Unit::MegabytesPerSecond,
        megabytes / timed.seconds.max(1e-9),
    );
}
