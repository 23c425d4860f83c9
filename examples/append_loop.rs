//! A rough ingest figure: W clients (one connection each) appending batches
//! of B entries of about 200 bytes to one session in a loop. `cargo run
//! --release --example append_loop -- http://127.0.0.1:50051 [batches per
//! writer] [writers] [batch size]` against a running server. The real
//! benchmark is `sessionlog-bench` (the `bench/` crate).

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
    let writers: usize = args.next().map_or(Ok(1), |text| text.parse())?;
    let batch_size: usize = args.next().map_or(Ok(1_000), |text| text.parse())?;
    let mut client = Connection::connect(&server, None).await?.sessions();
    let session_id = client
        .start_session(pb::StartSessionRequest {
            app_name: "append_loop".into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .id;
    let message = "x".repeat(160);
    let batch: Vec<pb::LogEntry> = (0..batch_size)
        .map(|i| pb::LogEntry {
            level: pb::Level::Info.into(),
            logger: "bench.append".into(),
            message: format!("{i:06} {message}"),
            ..Default::default()
        })
        .collect();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..writers {
        let mut client = Connection::connect(&server, None).await?.sessions();
        let session_id = session_id.clone();
        let batch = batch.clone();
        tasks.spawn(async move {
            let mut latencies = Vec::with_capacity(batches);
            for _ in 0..batches {
                let sent = Instant::now();
                client
                    .append(pb::AppendRequest {
                        session_id: session_id.clone(),
                        entries: batch.clone(),
                        ..Default::default()
                    })
                    .await?;
                latencies.push(sent.elapsed());
            }
            Ok::<_, tonic::Status>(latencies)
        });
    }
    let mut latencies = Vec::new();
    while let Some(done) = tasks.join_next().await {
        latencies.extend(done??);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let appends = batches * writers;
    let entries = appends * batch_size;
    println!(
        "{writers} writers x {batches} appends of {batch_size}: {:.0} appends/s, {:.0} entries/s; append p50 {:?} p99 {:?}",
        appends as f64 / elapsed.as_secs_f64(),
        entries as f64 / elapsed.as_secs_f64(),
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
