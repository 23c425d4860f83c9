//! A rough ingest figure: one client appending batches of 1,000 entries of
//! about 200 bytes in a loop. `cargo run --release --example append_loop --
//! http://127.0.0.1:50051 [batches]` against a running server. The real
//! benchmark (`sessionlog bench`) is its own piece of work.

use std::time::{Duration, Instant};

use sessionlog::client::Connection;
use sessionlog::pb;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let server = args
        .next()
        .unwrap_or_else(|| sessionlog::client::DEFAULT_SERVER.to_owned());
    let batches: usize = args.next().map_or(Ok(200), |text| text.parse())?;
    let mut client = Connection::connect(&server, None).await?.sessions();
    let session = client
        .start_session(pb::StartSessionRequest {
            app_name: "append_loop".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let message = "x".repeat(160);
    let batch: Vec<pb::LogEntry> = (0..1_000)
        .map(|i| pb::LogEntry {
            level: pb::Level::Info.into(),
            logger: "bench.append".into(),
            message: format!("{i:06} {message}"),
            ..Default::default()
        })
        .collect();
    let mut latencies = Vec::with_capacity(batches);
    let started = Instant::now();
    for _ in 0..batches {
        let sent = Instant::now();
        client
            .append(pb::AppendRequest {
                session_id: session.id.clone(),
                entries: batch.clone(),
                ..Default::default()
            })
            .await?;
        latencies.push(sent.elapsed());
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let entries = batches * 1_000;
    let per_second = entries as f64 / elapsed.as_secs_f64();
    println!(
        "{entries} entries in {:.2}s: {per_second:.0} entries/s; append p50 {:?} p99 {:?}",
        elapsed.as_secs_f64(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
    );
    Ok(())
}

fn percentile(sorted: &[Duration], quantile: f64) -> Duration {
    let last = sorted.len().saturating_sub(1);
    let index = ((last as f64) * quantile).round() as usize;
    sorted.get(index).copied().unwrap_or_default()
}
