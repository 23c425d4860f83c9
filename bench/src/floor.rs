//! `floor`: what one small call costs the server before any storage work.
//! Concurrent clients, one connection each, call `GetSession` in a loop:
//! a unary call answered from memory, as small as a single-entry `Append`
//! on the wire. Its server CPU per call is the floor under the cost of a
//! small append (gRPC, HTTP/2, TCP and the runtime); the rest of an
//! append's cost is the store's.

use std::time::{Duration, Instant};

use sessionlog::client::Client;
use sessionlog::pb;
use sessionlog::units::parse_duration;

use super::latency::Latency;
use super::local::{self, ServerUnderTest};
use super::report::{self, ResourceUse, RunReport, Unit};
use super::workload::{self, within};
use super::{OutputArgs, TargetArgs};

#[derive(Debug, clap::Args)]
pub(super) struct FloorArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Clients calling at once, each on its own connection, each waiting
    /// for an answer before its next call.
    #[arg(long, default_value_t = 16, value_parser = super::at_least_one())]
    concurrency: usize,
    /// How long to measure.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    duration: Duration,
    /// Calls before measuring, not counted.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    warmup: Duration,
    #[command(flatten)]
    output: OutputArgs,
}

pub(super) async fn run(args: FloorArgs) -> anyhow::Result<()> {
    super::repeat(&args.output, || one_run(&args)).await
}

async fn one_run(args: &FloorArgs) -> anyhow::Result<RunReport> {
    let server = ServerUnderTest::start(&args.target).await?;
    let measured = measure(args, &server).await;
    let stopped = server.stop().await;
    let report = measured?;
    stopped?;
    Ok(report)
}

/// Calls until `deadline`; returns the client, the calls and their latency.
async fn calls(
    mut client: Client,
    session_id: String,
    deadline: Instant,
) -> anyhow::Result<(Client, u64, Latency)> {
    let mut latency = Latency::new();
    let mut count = 0;
    while Instant::now() < deadline {
        let sent = Instant::now();
        let request = pb::GetSessionRequest {
            session_id: session_id.clone(),
        };
        within(
            || format!("GetSession of `{session_id}` failed"),
            client.get_session(request),
        )
        .await?;
        latency.record(sent.elapsed());
        count += 1;
    }
    Ok((client, count, latency))
}

/// Runs every client until `deadline`; gives the clients back.
async fn phase(
    clients: Vec<(Client, String)>,
    deadline: Instant,
) -> anyhow::Result<(Vec<(Client, String)>, u64, Latency)> {
    let mut tasks = tokio::task::JoinSet::new();
    for (client, session_id) in clients {
        tasks.spawn(async move {
            let (client, count, latency) = calls(client, session_id.clone(), deadline).await?;
            anyhow::Ok((client, session_id, count, latency))
        });
    }
    let (mut back, mut total, mut latency) = (Vec::new(), 0, Latency::new());
    while let Some(done) = tasks.join_next().await {
        let (client, session_id, count, part) = done??;
        back.push((client, session_id));
        total += count;
        latency.merge(&part);
    }
    Ok((back, total, latency))
}

async fn measure(args: &FloorArgs, server: &ServerUnderTest) -> anyhow::Result<RunReport> {
    let mut control = server.connect().await?.sessions();
    let sessions = workload::start_sessions(&mut control, args.concurrency, "floor").await?;
    let mut clients = Vec::with_capacity(args.concurrency);
    for session_id in &sessions {
        clients.push((server.connect().await?.sessions(), session_id.clone()));
    }
    if !args.warmup.is_zero() {
        clients = phase(clients, Instant::now() + args.warmup).await?.0;
    }
    let server_before = server.sample()?;
    let client_before = local::sample(std::process::id()).ok();
    let started = Instant::now();
    let (clients, total, latency) = phase(clients, started + args.duration).await?;
    let elapsed = started.elapsed();
    let server_after = server.sample()?;
    let client_after = local::sample(std::process::id()).ok();
    drop(clients);
    if !server.is_local() {
        workload::delete_sessions(&mut control, &sessions).await?;
    }

    let mut report = RunReport::new(
        "floor",
        vec![
            ("concurrency", serde_json::json!(args.concurrency)),
            (
                "duration_seconds",
                serde_json::json!(args.duration.as_secs_f64()),
            ),
            ("server", serde_json::json!(server.describe())),
        ],
    );
    report.push(
        "calls_per_second",
        "GetSession calls/s",
        Unit::PerSecond,
        report::approx(total) / elapsed.as_secs_f64(),
    );
    report
        .figures
        .extend(latency.figures("call", "call latency"));
    let server_use = ResourceUse {
        before: server_before,
        after: server_after,
    };
    report::push_cpu_per(
        &mut report,
        server_use,
        [("server_cpu_us_per_call", "server CPU per call", total)],
    );
    report::push_cpu_per(
        &mut report,
        ResourceUse {
            before: client_before,
            after: client_after,
        },
        [("client_cpu_us_per_call", "bench client CPU per call", total)],
    );
    report.push("calls", "calls", Unit::Count, report::approx(total));
    report.push(
        "elapsed_seconds",
        "measured for",
        Unit::Seconds,
        elapsed.as_secs_f64(),
    );
    Ok(report)
}
