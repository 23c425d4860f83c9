//! `bench follow`: `--followers` Follow streams spread over `--sessions`,
//! then one producer appending `--rate` entries/s in total, each entry
//! stamped with its send time. Every follower records receive time minus
//! that stamp, and checks that its session's seqs arrive from 1 with no gap
//! and no duplicate. When the producer stops the sessions are ended, and
//! each follower must have every entry and the `ended` event within
//! `--drain-timeout`: anything missing fails the bench.
//! `--catch-up N`: N entries first, then one follower reads them from the
//! start; reports the rate until `caught_up`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use serde_json::{Value, json};
use tokio::time::Instant;
use tonic::Streaming;

use super::local::ServerUnderTest;
use super::report::{self, Latency, ResourceUse, RunReport, Unit};
use super::workload::{self, within};
use super::{OutputArgs, TargetArgs, at_least_one};
use crate::client::Client;
use crate::pb;
use crate::pb::follow_response::Event;
use crate::units::{parse_duration, parse_size};

/// The logger of the producer's entries (the end entry has another).
const LOGGER: &str = "bench.follow";
/// Follow streams per HTTP/2 connection: a few sockets rather than one per
/// follower, and well under the streams a connection may carry at once.
const FOLLOWERS_PER_CONNECTION: usize = 100;
/// How often the producer sends what is due.
const PRODUCER_TICK: Duration = Duration::from_millis(1);
/// Appends that fill the history a catch-up reads.
const CATCH_UP_BATCH: usize = 1_000;
/// How long followers may take to connect and catch up before the
/// producer starts, and the longest wait for one event while catching up.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

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
    /// The most entries in one append: every millisecond the producer sends
    /// the entries due by then, in appends of at most this many.
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
        Some(entries) => catch_up(args, &server, entries).await,
        None => live(args, &server).await,
    };
    let stopped = server.stop().await;
    let report = measured?;
    stopped?;
    Ok(report)
}

/// What one follower received, once its stream ended.
#[derive(Debug)]
struct Received {
    follower: usize,
    session: usize,
    /// The producer's entries (the end entry not counted).
    entries: u64,
}

async fn live(args: &FollowArgs, server: &ServerUnderTest) -> anyhow::Result<RunReport> {
    let mut producer = server.connect().await?.sessions();
    let sessions = workload::start_sessions(&mut producer, args.sessions, "follow").await?;
    let delivered = Arc::new(AtomicU64::new(0));
    let mut followers = tokio::task::JoinSet::new();
    let mut ready = Vec::with_capacity(args.followers);
    let mut latencies = Vec::new();
    for first in (0..args.followers).step_by(FOLLOWERS_PER_CONNECTION) {
        let mut client = server.connect().await?.sessions();
        // One histogram per connection: a handful of locks, not one
        // histogram per follower.
        let latency = Arc::new(Mutex::new(Latency::new()));
        latencies.push(latency.clone());
        for follower in first..args.followers.min(first + FOLLOWERS_PER_CONNECTION) {
            let session = follower % sessions.len();
            let events = open(&mut client, &sessions[session], args.max_batch).await?;
            let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
            ready.push(ready_rx);
            let watch = Follower {
                follower,
                session,
                latency: latency.clone(),
                delivered: delivered.clone(),
            };
            followers.spawn(watch.receive(events, ready_tx));
        }
    }
    let ready = tokio::time::timeout(READY_TIMEOUT, futures::future::try_join_all(ready))
        .await
        .map_err(|_| anyhow::anyhow!("the followers were not caught up within {READY_TIMEOUT:?}"))?
        .map_err(|_| anyhow::anyhow!("a follower stopped"));
    if let Err(stopped) = ready {
        return Err(first_error(&mut followers).await.unwrap_or(stopped));
    }

    let server_before = server.sample()?;
    let started = Instant::now();
    let produced = produce(args, &mut producer, &sessions).await?;
    let elapsed = started.elapsed();
    let server_after = server.sample()?;
    workload::end_sessions(&mut producer, &sessions).await?;

    let received = drain(args, followers, &delivered, &produced).await?;
    check_every_entry_arrived(&received, &produced.per_session)?;
    if !server.is_local() {
        workload::delete_sessions(&mut producer, &sessions).await?;
    }

    let mut latency = Latency::new();
    for part in &latencies {
        latency.merge(&part.lock().unwrap_or_else(PoisonError::into_inner));
    }
    let appended = produced.total();
    let expected: u64 = received
        .iter()
        .map(|one| produced.per_session[one.session])
        .sum();
    let delivered = received.iter().map(|one| one.entries).sum::<u64>();
    let mut report = RunReport::new("follow", params(args, server));
    report
        .figures
        .extend(latency.figures("latency", "append-to-receive"));
    report.push(
        "producer_entries_per_second",
        "producer entries/s (achieved)",
        Unit::PerSecond,
        report::per_second(appended, elapsed),
    );
    report.push(
        "deliveries_per_second",
        "entries delivered/s, all followers",
        Unit::PerSecond,
        report::per_second(delivered, elapsed),
    );
    report.push(
        "appended",
        "entries appended",
        Unit::Count,
        report::approx(appended),
    );
    report.push(
        "delivered",
        "entries delivered",
        Unit::Count,
        report::approx(delivered),
    );
    report.push(
        "expected_delivered",
        "deliveries expected",
        Unit::Count,
        report::approx(expected),
    );
    report.push(
        "followers",
        "followers",
        Unit::Count,
        report::approx(received.len().try_into()?),
    );
    report.figures.extend(
        produced
            .latency
            .figures("append", "producer append latency"),
    );
    report::push_cpu_and_memory(
        &mut report,
        appended,
        elapsed,
        ResourceUse {
            before: server_before,
            after: server_after,
        },
        server.idle(),
        ResourceUse {
            before: None,
            after: None,
        },
    );
    if args.followers == 100 && args.rate == 2_000 && args.sessions == 1 {
        report.references = report::REDIS_FOLLOW.to_vec();
    }
    Ok(report)
}

/// The error of a follower that stopped before it caught up (the others
/// are stopped too).
async fn first_error(
    followers: &mut tokio::task::JoinSet<anyhow::Result<Received>>,
) -> Option<anyhow::Error> {
    followers.abort_all();
    while let Some(done) = followers.join_next().await {
        if let Ok(Err(err)) = done {
            return Some(err.context("a follower stopped before it caught up"));
        }
    }
    None
}

async fn open(
    client: &mut Client,
    session_id: &str,
    max_batch: u32,
) -> anyhow::Result<Streaming<pb::FollowResponse>> {
    let request = pb::FollowRequest {
        session_id: session_id.to_owned(),
        max_batch,
        ..Default::default()
    };
    within(
        || format!("cannot follow session `{session_id}`"),
        client.follow(request),
    )
    .await
}

/// One follower's view of its stream.
#[derive(Debug)]
struct Follower {
    follower: usize,
    session: usize,
    latency: Arc<Mutex<Latency>>,
    /// Entries delivered to every follower so far, to say how far a drain got.
    delivered: Arc<AtomicU64>,
}

impl Follower {
    /// Receives until `ended`, checking the seqs and timing each entry.
    async fn receive(
        self,
        mut events: Streaming<pb::FollowResponse>,
        ready_tx: tokio::sync::oneshot::Sender<()>,
    ) -> anyhow::Result<Received> {
        let mut ready_tx = Some(ready_tx);
        let mut next_seq = 1;
        let mut entries = 0;
        let who = || format!("follower {} (session {})", self.follower, self.session);
        loop {
            let response = events
                .message()
                .await
                .with_context(|| format!("{} failed", who()))?
                .with_context(|| format!("{}: the stream closed before `ended`", who()))?;
            let received_at = SystemTime::now();
            match response.event {
                Some(Event::Batch(batch)) => {
                    let mut latency = self.latency.lock().unwrap_or_else(PoisonError::into_inner);
                    for entry in &batch.entries {
                        anyhow::ensure!(
                            entry.seq == next_seq,
                            "{}: expected seq {next_seq}, got {} ({})",
                            who(),
                            entry.seq,
                            if entry.seq > next_seq {
                                "a gap"
                            } else {
                                "a duplicate"
                            }
                        );
                        next_seq += 1;
                        if entry.logger != LOGGER {
                            continue;
                        }
                        entries += 1;
                        let sent = entry.timestamp.and_then(|at| SystemTime::try_from(at).ok());
                        if let Some(sent) = sent {
                            latency.record(received_at.duration_since(sent).unwrap_or_default());
                        }
                    }
                    let count = u64::try_from(batch.entries.len())?;
                    self.delivered.fetch_add(count, Ordering::Relaxed);
                }
                Some(Event::CaughtUp(_)) => {
                    if let Some(ready_tx) = ready_tx.take() {
                        // Nobody waits any more only when the run failed.
                        let _ = ready_tx.send(());
                    }
                }
                Some(Event::Ended(_)) => {
                    return Ok(Received {
                        follower: self.follower,
                        session: self.session,
                        entries,
                    });
                }
                Some(Event::Truncated(truncated)) => anyhow::bail!(
                    "{}: told entries before seq {} were pruned",
                    who(),
                    truncated.first_available_seq
                ),
                None => {}
            }
        }
    }
}

/// What the producer appended.
#[derive(Debug)]
struct Produced {
    per_session: Vec<u64>,
    latency: Latency,
}

impl Produced {
    fn total(&self) -> u64 {
        self.per_session.iter().sum()
    }
}

/// Appends at `--rate` until `--duration` or `--count`: every tick, the
/// entries due by then (rate x elapsed, less those sent), in appends of at
/// most `--batch`, each to the next session. Entries carry the time their
/// append was sent. A producer that falls behind sends more per tick, so
/// the achieved rate in the report says whether it kept up.
async fn produce(
    args: &FollowArgs,
    producer: &mut Client,
    sessions: &[String],
) -> anyhow::Result<Produced> {
    let template = workload::entries(args.batch, args.entry_size()?, LOGGER);
    let limit = match args.count {
        Some(count) => count,
        None => due(args.rate, args.duration),
    };
    let mut produced = Produced {
        per_session: vec![0; sessions.len()],
        latency: Latency::new(),
    };
    let mut sent = 0;
    let mut next_session = 0;
    let mut ticks = tokio::time::interval(PRODUCER_TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = Instant::now();
    while sent < limit {
        ticks.tick().await;
        let mut owed = due(args.rate, started.elapsed()).min(limit) - sent;
        while owed > 0 {
            let size = usize::try_from(owed)
                .unwrap_or(usize::MAX)
                .min(template.len());
            let session = next_session % sessions.len();
            next_session += 1;
            let stamp = prost_types::Timestamp::from(SystemTime::now());
            let mut entries = template[..size].to_vec();
            for entry in &mut entries {
                entry.timestamp = Some(stamp);
            }
            let request = pb::AppendRequest {
                session_id: sessions[session].clone(),
                entries,
                ..Default::default()
            };
            let append_started = Instant::now();
            within(
                || format!("append to session `{}` failed", sessions[session]),
                producer.append(request),
            )
            .await?;
            produced.latency.record(append_started.elapsed());
            let size = u64::try_from(size)?;
            produced.per_session[session] += size;
            sent += size;
            owed -= size;
        }
    }
    Ok(produced)
}

/// Entries due after `elapsed` at `rate` per second.
fn due(rate: u64, elapsed: Duration) -> u64 {
    let due = u128::from(rate) * elapsed.as_micros() / 1_000_000;
    u64::try_from(due).unwrap_or(u64::MAX)
}

/// Waits for every follower to finish; fails with what is missing when
/// they do not within the drain timeout, or on the first follower error.
async fn drain(
    args: &FollowArgs,
    mut followers: tokio::task::JoinSet<anyhow::Result<Received>>,
    delivered: &AtomicU64,
    produced: &Produced,
) -> anyhow::Result<Vec<Received>> {
    let total = followers.len();
    let mut received = Vec::with_capacity(total);
    let drained = tokio::time::timeout(args.drain_timeout, async {
        while let Some(done) = followers.join_next().await {
            received.push(done.context("a follower failed")??);
        }
        anyhow::Ok(())
    })
    .await;
    match drained {
        Ok(result) => result.map(|()| received),
        Err(_) => {
            let expected: u64 = (0..args.followers)
                .map(|follower| produced.per_session[follower % produced.per_session.len()])
                .sum();
            anyhow::bail!(
                "{} of {total} followers did not receive every entry and `ended` within {:?} \
                 after the producer stopped: {} of {expected} entries delivered",
                total - received.len(),
                args.drain_timeout,
                delivered.load(Ordering::Relaxed),
            )
        }
    }
}

/// Every follower got exactly its session's entries.
fn check_every_entry_arrived(received: &[Received], per_session: &[u64]) -> anyhow::Result<()> {
    let short: Vec<String> = received
        .iter()
        .filter(|one| one.entries != per_session[one.session])
        .map(|one| {
            format!(
                "follower {} got {} of {}",
                one.follower, one.entries, per_session[one.session]
            )
        })
        .collect();
    anyhow::ensure!(
        short.is_empty(),
        "{} followers did not get every entry: {}",
        short.len(),
        short.iter().take(5).cloned().collect::<Vec<_>>().join("; ")
    );
    Ok(())
}

fn params(args: &FollowArgs, server: &ServerUnderTest) -> Vec<(&'static str, Value)> {
    let mut params = vec![
        ("followers", json!(args.followers)),
        ("sessions", json!(args.sessions)),
        ("rate", json!(args.rate)),
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

/// Fills one session with `entries`, then reads it from the start with
/// one follower until `caught_up`, checking every seq on the way.
async fn catch_up(
    args: &FollowArgs,
    server: &ServerUnderTest,
    entries: u64,
) -> anyhow::Result<RunReport> {
    let mut client = server.connect().await?.sessions();
    let sessions = workload::start_sessions(&mut client, 1, "catch-up").await?;
    let session_id = &sessions[0];
    let template = workload::entries(CATCH_UP_BATCH, args.entry_size()?, LOGGER);
    let mut appended = 0;
    while appended < entries {
        let size = usize::try_from(entries - appended)
            .unwrap_or(usize::MAX)
            .min(template.len());
        let request = pb::AppendRequest {
            session_id: session_id.clone(),
            entries: template[..size].to_vec(),
            ..Default::default()
        };
        within(
            || format!("append to session `{session_id}` failed"),
            client.append(request),
        )
        .await?;
        appended += u64::try_from(size)?;
    }

    let server_before = server.sample()?;
    let started = Instant::now();
    let mut events = open(&mut client, session_id, args.max_batch).await?;
    let mut next_seq = 1;
    loop {
        let response = tokio::time::timeout(READY_TIMEOUT, events.message())
            .await
            .map_err(|_| {
                anyhow::anyhow!("the catch-up follower got nothing for {READY_TIMEOUT:?}")
            })?
            .context("the catch-up follower failed")?
            .context("the catch-up stream closed before `caught_up`")?;
        match response.event {
            Some(Event::Batch(batch)) => {
                for entry in &batch.entries {
                    anyhow::ensure!(
                        entry.seq == next_seq,
                        "catch-up: expected seq {next_seq}, got {}",
                        entry.seq
                    );
                    next_seq += 1;
                }
            }
            Some(Event::CaughtUp(_)) => break,
            Some(Event::Ended(_) | Event::Truncated(_)) | None => {}
        }
    }
    let elapsed = started.elapsed();
    let server_after = server.sample()?;
    drop(events);
    let read = next_seq - 1;
    anyhow::ensure!(
        read == entries,
        "the catch-up follower read {read} of {entries} entries before `caught_up`"
    );
    if !server.is_local() {
        workload::delete_sessions(&mut client, &sessions).await?;
    }

    let mut params = vec![
        ("entries", json!(entries)),
        ("entry_size", json!(args.entry_size)),
        ("max_batch", json!(args.max_batch)),
        ("fsync", json!(args.target.engine.fsync_name())),
    ];
    params.push(("server", json!(server.describe())));
    let mut report = RunReport::new("catch-up", params);
    report.push(
        "catch_up_entries_per_second",
        "history read, entries/s",
        Unit::PerSecond,
        report::per_second(read, elapsed),
    );
    report.push("entries", "entries read", Unit::Count, report::approx(read));
    report.push(
        "elapsed_seconds",
        "until caught up",
        Unit::Seconds,
        elapsed.as_secs_f64(),
    );
    report::push_cpu_and_memory(
        &mut report,
        read,
        elapsed,
        ResourceUse {
            before: server_before,
            after: server_after,
        },
        server.idle(),
        ResourceUse {
            before: None,
            after: None,
        },
    );
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_fall_due_at_the_rate() {
        assert_eq!(due(2_000, Duration::from_millis(1)), 2);
        assert_eq!(due(200, Duration::from_millis(4)), 0);
        assert_eq!(due(200, Duration::from_millis(5)), 1);
        assert_eq!(due(2_000, Duration::from_secs(10)), 20_000);
    }
}
