//! `bench ingest`: `--concurrency` clients, each appending one batch at a
//! time (the next after the answer) to the sessions in turn, for a
//! duration or a count of entries, after a warm-up that is not counted.
//! Reports entries/s, MB/s, append latency, the server's CPU per entry and
//! per append, and memory; with `--baseline`, also raw sled's rate for the same entries.

use std::sync::Arc;
use std::time::SystemTime;

use anyhow::Context as _;
use serde_json::{Value, json};
use sessionlog::client::Client;
use sessionlog::config::FsyncMode;
use sessionlog::pb;
use tokio::time::Instant;

use super::latency::Totals;
use super::local::{self, ServerUnderTest};
use super::reference;
use super::report::{self, ResourceUse, RunReport, Unit};
use super::workload::{self, StopRule, within};
use super::{LoadArgs, OutputArgs, TargetArgs};

/// The logger of ingest entries.
const LOGGER: &str = "bench.ingest";

#[derive(Debug, clap::Args)]
pub(super) struct IngestArgs {
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    load: LoadArgs,
    /// HTTP/2 connections the clients are spread over (default and most:
    /// one per client, as separate programs would have).
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    connections: Option<usize>,
    /// First write the same entries straight into sled (as `store`
    /// does) and report the service's rate as a ratio of that.
    #[arg(long)]
    baseline: bool,
    /// With --server: leave the bench's sessions there, ended, to measure
    /// what a store of retained sessions costs afterwards (start-up,
    /// memory, disk).
    #[arg(long, requires = "server")]
    keep_sessions: bool,
    #[command(flatten)]
    output: OutputArgs,
}

pub(super) async fn run(args: IngestArgs) -> anyhow::Result<()> {
    super::repeat(&args.output, || one_run(&args)).await
}

async fn one_run(args: &IngestArgs) -> anyhow::Result<RunReport> {
    let baseline = match args.baseline {
        true => Some(super::store::measure(&args.load, &args.target.engine).await?),
        false => None,
    };
    let server = ServerUnderTest::start(&args.target).await?;
    let measured = measure(args, &server).await;
    let stopped = server.stop().await;
    let mut report = measured?;
    stopped?;
    if let Some(baseline) = baseline {
        let store_rate = baseline.value("entries_per_second").unwrap_or(0.0);
        report.push(
            "store_entries_per_second",
            "raw sled, same entries",
            Unit::PerSecond,
            store_rate,
        );
        let ours = report.value("entries_per_second").unwrap_or(0.0);
        if store_rate > 0.0 {
            report.push(
                "ratio_to_store",
                "service / raw sled",
                Unit::Ratio,
                ours / store_rate,
            );
        }
    }
    Ok(report)
}

/// One client: its channel, and where its next append goes.
#[derive(Debug)]
struct Worker {
    client: Client,
    sessions: Arc<[String]>,
    template: Arc<[pb::LogEntry]>,
    /// `prefix_bytes[n]`: the encoded size of the template's first n entries.
    prefix_bytes: Arc<[u64]>,
    next_session: usize,
}

impl Worker {
    /// Appends until `stop` says the phase is over.
    async fn run(mut self, stop: StopRule) -> anyhow::Result<(Self, Totals)> {
        let mut totals = Totals::new();
        loop {
            let size = stop.claim(self.template.len());
            if size == 0 {
                return Ok((self, totals));
            }
            let session_id = &self.sessions[self.next_session % self.sessions.len()];
            self.next_session += 1;
            let stamp = prost_types::Timestamp::from(SystemTime::now());
            let mut entries = self.template[..size].to_vec();
            for entry in &mut entries {
                entry.timestamp = Some(stamp);
            }
            let request = pb::AppendRequest {
                session_id: session_id.clone(),
                entries,
                ..Default::default()
            };
            let sent = Instant::now();
            let answer = within(
                || format!("append to session `{session_id}` failed"),
                self.client.append(request),
            )
            .await?;
            totals.latency.record(sent.elapsed());
            let stored = (answer.last_seq + 1).saturating_sub(answer.first_seq);
            let size = u64::try_from(size).context("batch size")?;
            anyhow::ensure!(
                stored == size && !answer.duplicate,
                "an append of {size} entries to `{session_id}` was answered with seqs {}..={}",
                answer.first_seq,
                answer.last_seq
            );
            totals.entries += size;
            totals.bytes += self.prefix_bytes[usize::try_from(size)?];
            totals.appends += 1;
        }
    }
}

/// Runs every worker until `stop`; gives the workers back for the next
/// phase. The first failure ends the phase (the others are dropped).
async fn phase(workers: Vec<Worker>, stop: &StopRule) -> anyhow::Result<(Vec<Worker>, Totals)> {
    let mut tasks = tokio::task::JoinSet::new();
    for worker in workers {
        tasks.spawn(worker.run(stop.clone()));
    }
    let mut back = Vec::with_capacity(tasks.len());
    let mut totals = Totals::new();
    while let Some(done) = tasks.join_next().await {
        let (worker, part) = done.context("an ingest client failed")??;
        totals.add(&part);
        back.push(worker);
    }
    Ok((back, totals))
}

async fn measure(args: &IngestArgs, server: &ServerUnderTest) -> anyhow::Result<RunReport> {
    let load = &args.load;
    let connection_count = args
        .connections
        .unwrap_or(load.concurrency)
        .min(load.concurrency);
    let mut connections = Vec::with_capacity(connection_count);
    for _ in 0..connection_count {
        connections.push(server.connect().await?);
    }
    let mut control = connections[0].sessions();
    let sessions: Arc<[String]> = workload::start_sessions(&mut control, load.sessions, "ingest")
        .await?
        .into();
    let template: Arc<[pb::LogEntry]> =
        workload::entries(load.batch, load.entry_size()?, LOGGER).into();
    let prefix_bytes: Arc<[u64]> = std::iter::once(0)
        .chain((1..=template.len()).map(|n| workload::payload_bytes(&template[..n])))
        .collect();
    let mut workers: Vec<Worker> = (0..load.concurrency)
        .map(|index| Worker {
            client: connections[index % connection_count].sessions(),
            sessions: sessions.clone(),
            template: template.clone(),
            prefix_bytes: prefix_bytes.clone(),
            next_session: index,
        })
        .collect();

    let mut warmup_entries = 0;
    if !load.warmup.is_zero() {
        let (back, warm) =
            phase(workers, &StopRule::Deadline(Instant::now() + load.warmup)).await?;
        workers = back;
        warmup_entries = warm.entries;
    }
    let server_before = server.sample()?;
    let client_before = local::sample(std::process::id()).ok();
    let started = Instant::now();
    let (workers, totals) = phase(workers, &StopRule::new(load.duration, load.count)).await?;
    let elapsed = started.elapsed();
    let server_after = server.sample()?;
    let client_after = local::sample(std::process::id()).ok();
    drop(workers);

    let stored = workload::stored_entries(&mut control, &sessions).await?;
    anyhow::ensure!(
        stored == warmup_entries + totals.entries,
        "the server holds {stored} entries in the bench sessions, but {} appends were acknowledged",
        warmup_entries + totals.entries
    );
    if args.keep_sessions {
        workload::end_sessions(&mut control, &sessions).await?;
    } else if !server.is_local() {
        workload::delete_sessions(&mut control, &sessions).await?;
    }

    let mut report = RunReport::new("ingest", params(args, connection_count, server));
    report.push_throughput(totals.entries, totals.bytes, elapsed);
    report
        .figures
        .extend(totals.latency.figures("append", "append latency"));
    report::push_cpu_and_memory(
        &mut report,
        totals.entries,
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
    report::push_cpu_per(
        &mut report,
        ResourceUse {
            before: server_before,
            after: server_after,
        },
        [(
            "server_cpu_us_per_append",
            "server CPU per append",
            totals.appends,
        )],
    );
    report.push(
        "entries",
        "entries",
        Unit::Count,
        report::approx(totals.entries),
    );
    report.push(
        "appends",
        "appends",
        Unit::Count,
        report::approx(totals.appends),
    );
    report.push(
        "warmup_entries",
        "entries in the warm-up",
        Unit::Count,
        report::approx(warmup_entries),
    );
    report.push(
        "stored_entries",
        "entries the server holds",
        Unit::Count,
        report::approx(stored),
    );
    report.push(
        "elapsed_seconds",
        "measured for",
        Unit::Seconds,
        elapsed.as_secs_f64(),
    );
    if load.is_reference_shape() {
        report.references = match args.target.engine.fsync {
            FsyncMode::Interval => reference::REDIS_EVERYSEC.to_vec(),
            FsyncMode::Always => reference::REDIS_ALWAYS.to_vec(),
            FsyncMode::Never => Vec::new(),
        };
    } else if load.batch == 1
        && load.concurrency == 16
        && args.target.engine.fsync == FsyncMode::Interval
    {
        report.references = reference::REDIS_XADD_16.to_vec();
    }
    Ok(report)
}

fn params(
    args: &IngestArgs,
    connections: usize,
    server: &ServerUnderTest,
) -> Vec<(&'static str, Value)> {
    let mut params = args.load.params(&args.target.engine);
    params.push(("connections", json!(connections)));
    params.push(("server", json!(server.describe())));
    params
}
