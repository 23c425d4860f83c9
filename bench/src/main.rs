//! `sessionlog-bench`: measures a sessionlog deployment the way it is
//! used. `ingest` appends batches from concurrent clients, `follow` times
//! append-to-receive for many followers (and `--catch-up` a history read),
//! `store` writes the same entries straight into sled as the storage
//! baseline, `floor` times small calls that touch no store, `footprint`
//! measures the disk real log text takes, `search` how fast `Search` scans it,
//! `churn` the disk kept while retention prunes sessions that come and go,
//! `prune` how long a restarted server's retention takes to prune a quarter
//! of its sessions.
//! Unless `--server` names one, every run gets a fresh local
//! server (the `sessionlog` binary's `serve`, found as `local` says) in a
//! temporary directory, so its CPU and memory are read from /proc. Owns the
//! bench's flags and its runs; uses only the product's public client
//! surface (`client`, `pb`, `config::FsyncMode`, `units`), never the
//! server's code.

mod churn;
mod figures;
mod floor;
mod follow;
mod footprint;
mod ingest;
mod latency;
mod local;
mod prune;
mod reference;
mod report;
mod search;
mod store;
mod workload;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser as _;
use serde_json::{Value, json};
use sessionlog::config::FsyncMode;
use sessionlog::units::{parse_duration, parse_size};

// The same allocator as the server: `store` runs sled in this process, and
// the bench's own CPU per entry is compared with the server's.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Measure a sessionlog server (by default a fresh local one) or the raw
/// store: ingest rate and latency, follow latency, the sled baseline.
#[derive(Debug, clap::Parser)]
#[command(name = "sessionlog-bench", version)]
struct Cli {
    #[command(subcommand)]
    workload: Workload,
}

#[derive(Debug, clap::Subcommand)]
enum Workload {
    /// Append batches from concurrent clients: entries/s, MB/s, append
    /// latency p50/p99/p99.9, server CPU per entry and memory.
    Ingest(ingest::IngestArgs),
    /// Followers of live sessions while a producer appends at a fixed rate:
    /// append-to-receive latency, and a check that every entry arrived
    /// once, in order. `--catch-up N`: the rate one follower reads history.
    Follow(follow::FollowArgs),
    /// The storage baseline: the same entries written straight into a
    /// temporary sled database, one key per entry, no server.
    Store(store::StoreArgs),
    /// The floor under a small append: `GetSession` calls (answered from
    /// memory) from concurrent clients: calls/s, latency, server CPU per
    /// call.
    Floor(floor::FloorArgs),
    /// Real log text on disk: the corpus in `bench/corpus/` appended one
    /// entry per line over many sessions, which are ended; the server is
    /// stopped and its data dir measured against the bytes sent.
    Footprint(footprint::FootprintArgs),
    /// Search speed: the corpus over many sessions, sealed; a common and
    /// a rare term searched across all of them: seconds and MB/s examined.
    Search(search::SearchArgs),
    /// Sessions started, filled with corpus lines and ended for the whole
    /// run while the server's retention prunes the oldest: the data dir
    /// sampled against the compressed data retained.
    Churn(churn::ChurnArgs),
    /// Sessions filled with corpus lines and ended, the server restarted
    /// with retention keeping fewer: the time from SERVING until its first
    /// pass has pruned the rest, and the data dir before and after.
    Prune(prune::PruneArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.workload)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", error_text(&err));
            ExitCode::FAILURE
        }
    }
}

async fn run(workload: Workload) -> anyhow::Result<()> {
    let workload = async move {
        match workload {
            Workload::Ingest(args) => ingest::run(args).await,
            Workload::Follow(args) => follow::run(args).await,
            Workload::Store(args) => store::run(args).await,
            Workload::Floor(args) => floor::run(args).await,
            Workload::Footprint(args) => footprint::run(args).await,
            Workload::Search(args) => search::run(args).await,
            Workload::Churn(args) => churn::run(args).await,
            Workload::Prune(args) => prune::run(args).await,
        }
    };
    // Ctrl-C drops the run instead of ending the process where it stands,
    // so a local server is stopped and its temporary database removed.
    tokio::select! {
        result = workload => result,
        interrupted = tokio::signal::ctrl_c() => {
            interrupted.context("cannot watch for Ctrl-C")?;
            anyhow::bail!("interrupted; the run's local server and temporary files are removed")
        }
    }
}

/// A status as `code: message`, as the `sessionlog` client commands print
/// it; other errors with their causes.
fn error_text(err: &anyhow::Error) -> String {
    if let Some(status) = err.downcast_ref::<tonic::Status>() {
        return format!("{:?}: {}", status.code(), status.message());
    }
    format!("{err:#}")
}

/// The server under test.
#[derive(Debug, Clone, clap::Args)]
struct TargetArgs {
    /// Bench this running server (http://host:port, https://host:port or
    /// unix:/path) instead of a fresh local one. Not read from
    /// SESSIONLOG_SERVER: load goes only where it is explicitly sent.
    #[arg(long)]
    server: Option<String>,
    /// With --server on this host: its process id, for CPU and memory figures.
    #[arg(long, requires = "server")]
    server_pid: Option<u32>,
    /// With --server: a file whose first line is the bearer token.
    #[arg(long, requires = "server")]
    token_file: Option<PathBuf>,
    /// The `sessionlog` binary a local server runs (default: the one beside
    /// this program, else `sessionlog` on PATH). Unused with --server.
    #[arg(long, env = "SESSIONLOG_BIN", value_name = "PATH")]
    server_bin: Option<PathBuf>,
    #[command(flatten)]
    engine: EngineArgs,
}

impl TargetArgs {
    /// A fresh local server running `server_bin`, for the workloads that
    /// need one (they restart it or measure its data dir).
    fn local(server_bin: Option<PathBuf>, engine: EngineArgs) -> Self {
        Self {
            server: None,
            server_pid: None,
            token_file: None,
            server_bin,
            engine,
        }
    }
}

/// How the server under test (or the raw store) keeps its data.
#[derive(Debug, Clone, clap::Args)]
struct EngineArgs {
    /// When the server under test flushes (its `serve --fsync`): always,
    /// interval or never. `store` flushes sled the same way. With
    /// --server, say what that server runs with: it is reported, and picks
    /// the reference figure.
    #[arg(long, value_enum, default_value_t = FsyncMode::Interval)]
    fsync: FsyncMode,
    /// The flush period for --fsync interval.
    #[arg(long, default_value = "200ms", value_parser = parse_duration)]
    flush_interval: Duration,
    /// sled's page cache (the local server's --cache-size).
    #[arg(long, default_value = "16MiB", value_parser = parse_size)]
    cache_size: u64,
    /// Where each run's temporary database directory is made (default: the
    /// system's temporary directory). Use the disk you deploy on: on tmpfs
    /// a flush costs nothing.
    #[arg(long)]
    temp_dir: Option<PathBuf>,
}

impl EngineArgs {
    fn fsync_name(&self) -> &'static str {
        match self.fsync {
            FsyncMode::Always => "always",
            FsyncMode::Interval => "interval",
            FsyncMode::Never => "never",
        }
    }
}

/// The shape of an append load (`ingest` and `store`).
#[derive(Debug, Clone, clap::Args)]
struct LoadArgs {
    /// Sessions the appends are spread over, in turn.
    #[arg(long, default_value_t = 4, value_parser = at_least_one())]
    sessions: usize,
    /// Entries per append.
    #[arg(long, default_value_t = 1_000, value_parser = at_least_one())]
    batch: usize,
    /// The encoded size of one entry, roughly: the message is padded to it
    /// (entries without padding take about 150 bytes).
    #[arg(long, default_value = "200", value_parser = parse_size)]
    entry_size: u64,
    /// Clients (for `store`: threads) appending at once; each waits for an
    /// append's answer before sending its next (`--batch 1 --concurrency 16`: single-entry appends
    /// from 16 clients).
    #[arg(long, default_value_t = 4, value_parser = at_least_one())]
    concurrency: usize,
    /// How long to measure.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Instead of --duration: measure this many entries.
    #[arg(long)]
    count: Option<u64>,
    /// Load before measuring, not counted (connections, caches, the
    /// store's first segments).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    warmup: Duration,
}

impl LoadArgs {
    fn entry_size(&self) -> anyhow::Result<usize> {
        usize::try_from(self.entry_size)
            .map_err(|_| anyhow::anyhow!("--entry-size {} is too large", self.entry_size))
    }

    /// Batches of 1,000 entries of about 200 bytes: the shape the reference
    /// figures were measured with.
    fn is_reference_shape(&self) -> bool {
        self.batch == 1_000 && (150..=250).contains(&self.entry_size)
    }

    fn params(&self, engine: &EngineArgs) -> Vec<(&'static str, Value)> {
        let mut params = vec![
            ("sessions", json!(self.sessions)),
            ("batch", json!(self.batch)),
            ("entry_size", json!(self.entry_size)),
            ("concurrency", json!(self.concurrency)),
            ("fsync", json!(engine.fsync_name())),
        ];
        match self.count {
            Some(count) => params.push(("count", json!(count))),
            None => params.push(("duration_seconds", json!(self.duration.as_secs_f64()))),
        }
        params.push(("warmup_seconds", json!(self.warmup.as_secs_f64())));
        params
    }
}

/// How results are printed.
#[derive(Debug, Clone, clap::Args)]
struct OutputArgs {
    /// Repeat the run this many times (each with a fresh server and
    /// database) and also print each figure's median [min..max].
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    runs: u32,
    /// Print one JSON object per run, then one with `"summary": true` and
    /// `median`, `min` and `max` of each figure when there were several.
    #[arg(long)]
    json: bool,
}

fn at_least_one() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::<usize>::new().range(1..)
}

/// Runs `one_run` `--runs` times, printing each run as it ends and the
/// summary after the last.
async fn repeat<F, Fut>(output: &OutputArgs, mut one_run: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<report::RunReport>>,
{
    let mut reports = Vec::new();
    for run in 1..=output.runs {
        let report = one_run().await?;
        report::print_run(&report, run, output.runs, output.json)?;
        reports.push(report);
    }
    if reports.len() > 1 {
        report::print_summary(&reports, output.json)?;
    }
    Ok(())
}
