//! `bench follow`: `--followers` Follow streams spread over `--sessions`,
//! then one producer appending `--rate` entries/s in total, each entry
//! stamped with its send time: by default what is due every millisecond in
//! one append, with `--pace per-entry` every entry its own append. Every
//! follower records receive time minus that stamp, and checks that its
//! session's seqs arrive from 1 with no gap and no duplicate. When the
//! producer stops the sessions are ended, and each follower must have
//! every entry and the `ended` event within `--drain-timeout`: anything
//! missing fails the bench. The server's CPU is counted from the first
//! append until every follower has its last entry.
//! `--catch-up N`: N entries first, then one follower reads them from the
//! start; reports the rate until `caught_up`.

mod catch_up;
mod followers;
mod producer;

use std::time::Duration;

use serde_json::{Value, json};
use sessionlog::units::{parse_duration, parse_size};
use tokio::time::Instant;

use super::local::ServerUnderTest;
use super::reference;
use super::report::{self, ResourceUse, RunReport, Unit};
use super::workload;
use super::{OutputArgs, TargetArgs, at_least_one};
use followers::Followers;
use producer::Pace;

/// The logger of the producer's entries (the end entry has another).
const LOGGER: &str = "bench.follow";

#[derive(Debug, clap::Args)]
pub(super) struct FollowArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Follow streams, spread over the sessions in turn.
    #[arg(long, default_value_t = 100, value_parser = at_least_one())]
    followers: usize,
    /// Sessions the producer appends to, in turn.
    #[arg(long, default_value_t = 1, value_parser = at_least_one())]
    sessions: usize,
    /// Entries per second the producer appends, over all sessions.
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(1..))]
    rate: u64,
    /// How the producer turns --rate into appends: `tick` sends the
    /// entries due every millisecond together (at 2,000/s two to an
    /// append, more once an append takes over 1 ms); `per-entry` sends
    /// every entry as its own one-entry append at its due time, each after
    /// the last one's answer, and never batches when behind, as a program
    /// calling Append per log line does.
    #[arg(long, value_enum, default_value_t = Pace::Tick)]
    pace: Pace,
    /// The most entries in one append: every millisecond the producer sends
    /// the entries due by then, in appends of at most this many (`tick`
    /// pace only).
    #[arg(long, default_value_t = 100, value_parser = at_least_one())]
    batch: usize,
    /// The encoded size of one entry, roughly (at least about 150 bytes).
    #[arg(long, default_value = "200", value_parser = parse_size)]
    entry_size: u64,
    /// How long the producer appends.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Instead of --duration: the producer stops after this many entries.
    #[arg(long)]
    count: Option<u64>,
    /// After the producer stops and the sessions end, how long followers
    /// may take to receive the rest and `ended`.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    drain_timeout: Duration,
    /// At most this many entries per Follow batch (0: the server's default).
    #[arg(long, default_value_t = 0)]
    max_batch: u32,
    /// Instead of live followers: append this many entries, then time one
    /// follower reading them from the start until it is caught up.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    catch_up: Option<u64>,
    #[command(flatten)]
    output: OutputArgs,
}

impl FollowArgs {
    fn entry_size(&self) -> anyhow::Result<usize> {
        usize::try_from(self.entry_size)
            .map_err(|_| anyhow::anyhow!("--entry-size {} is too large", self.entry_size))
    }
}

pub(super) async fn run(args: FollowArgs) -> anyhow::Result<()> {
    super::repeat(&args.output, || one_run(&args)).await
}

async fn one_run(args: &FollowArgs) -> anyhow::Result<RunReport> {
    let server = ServerUnderTest::start(&args.target).await?;
    let measured = match args.catch_up {
        Some(entries) => catch_up::catch_up(args, &server, entries).await,
        None => live(args, &server).await,
    };
    let stopped = server.stop().await;
    let report = measured?;
    stopped?;
    Ok(report)
}

async fn live(args: &FollowArgs, server: &ServerUnderTest) -> anyhow::Result<RunReport> {
    let mut producer = server.connect().await?.sessions();
    let sessions = workload::start_sessions(&mut producer, args.sessions, "follow").await?;
    let followers = Followers::start(args, server, &sessions).await?;
    let server_before = server.sample()?;
    let started = Instant::now();
    let produced = producer::produce(args, &mut producer, &sessions).await?;
    let producing = started.elapsed();
    workload::end_sessions(&mut producer, &sessions).await?;
    let expected: u64 = (0..args.followers)
        .map(|follower| produced.per_session[follower % sessions.len()])
        .sum();
    let (received, latency) = followers.drain(args.drain_timeout, expected).await?;
    // The server's CPU counts until the last follower has everything, so
    // the work on a backlog left when the producer stops is counted too.
    let elapsed = started.elapsed();
    let server_after = server.sample()?;
    followers::check_every_entry_arrived(&received, &produced.per_session)?;
    if !server.is_local() {
        workload::delete_sessions(&mut producer, &sessions).await?;
    }
    let delivered = received.iter().map(|one| one.entries).sum::<u64>();
    let mut report = RunReport::new("follow", params(args, server));
    report
        .figures
        .extend(latency.figures("latency", "append-to-receive"));
    let appended = produced.total();
    let counts = [
        (
            "producer_entries_per_second",
            "producer entries/s (achieved)",
            Unit::PerSecond,
            report::per_second(appended, producing),
        ),
        (
            "producer_appends_per_second",
            "producer appends/s (achieved)",
            Unit::PerSecond,
            report::per_second(produced.appends, producing),
        ),
        (
            "deliveries_per_second",
            "entries delivered/s, all followers",
            Unit::PerSecond,
            report::per_second(delivered, elapsed),
        ),
        (
            "appended",
            "entries appended",
            Unit::Count,
            report::approx(appended),
        ),
        (
            "appends",
            "appends",
            Unit::Count,
            report::approx(produced.appends),
        ),
        (
            "delivered",
            "entries delivered",
            Unit::Count,
            report::approx(delivered),
        ),
        (
            "expected_delivered",
            "deliveries expected",
            Unit::Count,
            report::approx(expected),
        ),
        (
            "followers",
            "followers",
            Unit::Count,
            report::approx(u64::try_from(received.len())?),
        ),
        (
            "producer_seconds",
            "producer appended for",
            Unit::Seconds,
            producing.as_secs_f64(),
        ),
        (
            "elapsed_seconds",
            "until every follower had all",
            Unit::Seconds,
            elapsed.as_secs_f64(),
        ),
    ];
    for (key, label, unit, value) in counts {
        report.push(key, label, unit, value);
    }
    report.figures.extend(
        produced
            .latency
            .figures("append", "producer append latency"),
    );
    report.figures.extend(
        produced
            .lag
            .figures("producer_lag", "producer behind schedule"),
    );
    let server_use = ResourceUse {
        before: server_before,
        after: server_after,
    };
    let no_client = ResourceUse {
        before: None,
        after: None,
    };
    report::push_cpu_and_memory(
        &mut report,
        appended,
        elapsed,
        server_use,
        server.idle(),
        no_client,
    );
    report::push_cpu_per(
        &mut report,
        server_use,
        [
            (
                "server_cpu_us_per_append",
                "server CPU per append",
                produced.appends,
            ),
            (
                "server_cpu_us_per_delivered",
                "server CPU per delivered entry",
                delivered,
            ),
        ],
    );
    if args.followers == 100 && args.rate == 2_000 && args.sessions == 1 {
        report.references = match args.pace {
            Pace::Tick => reference::REDIS_FOLLOW.to_vec(),
            Pace::PerEntry => reference::REDIS_FOLLOW_PER_ENTRY.to_vec(),
        };
    }
    Ok(report)
}

fn params(args: &FollowArgs, server: &ServerUnderTest) -> Vec<(&'static str, Value)> {
    let mut params = vec![
        ("followers", json!(args.followers)),
        ("sessions", json!(args.sessions)),
        ("rate", json!(args.rate)),
        ("pace", json!(args.pace.name())),
        ("batch", json!(args.batch)),
        ("entry_size", json!(args.entry_size)),
        ("fsync", json!(args.target.engine.fsync_name())),
    ];
    match args.count {
        Some(count) => params.push(("count", json!(count))),
        None => params.push(("duration_seconds", json!(args.duration.as_secs_f64()))),
    }
    params.push(("server", json!(server.describe())));
    params
}
