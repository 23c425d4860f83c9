//! Append-to-follower latency: F followers of one session while a producer
//! appends at about R entries/s (batches of 10). Each entry carries its send
//! time; followers record receive time minus send time. `cargo run
//! --release --example follow_latency -- http://127.0.0.1:50051 [followers]
//! [entries_per_second] [seconds]` against a running server.

use std::time::{Duration, SystemTime};

use futures::StreamExt;
use sessionlog::client::Connection;
use sessionlog::pb;
use sessionlog::pb::follow_response::Event;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let server = args
        .next()
        .unwrap_or_else(|| sessionlog::client::DEFAULT_SERVER.to_owned());
    let followers: usize = args.next().map_or(Ok(1), |text| text.parse())?;
    let rate: u64 = args.next().map_or(Ok(10_000), |text| text.parse())?;
    let seconds: u64 = args.next().map_or(Ok(5), |text| text.parse())?;
    let connection = Connection::connect(&server, None).await?;
    let mut producer = connection.sessions();
    let session_id = producer
        .start_session(pb::StartSessionRequest {
            app_name: "follow_latency".into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .id;
    let mut tasks = tokio::task::JoinSet::new();
    let mut ready = Vec::new();
    for index in 0..followers {
        // Spread followers over connections, 100 streams per connection.
        let connection = if index % 100 == 0 {
            Connection::connect(&server, None).await?
        } else {
            connection.clone()
        };
        let mut client = connection.sessions();
        let mut events = client
            .follow(pb::FollowRequest {
                session_id: session_id.clone(),
                ..Default::default()
            })
            .await?
            .into_inner();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        ready.push(ready_rx);
        tasks.spawn(async move {
            let mut ready_tx = Some(ready_tx);
            let mut latencies = Vec::new();
            while let Some(Ok(response)) = events.next().await {
                let received = SystemTime::now();
                match response.event {
                    Some(Event::CaughtUp(_)) => {
                        if let Some(ready_tx) = ready_tx.take() {
                            let _ = ready_tx.send(());
                        }
                    }
                    Some(Event::Batch(batch)) => {
                        for entry in batch
                            .entries
                            .into_iter()
                            .filter(|entry| entry.logger == "bench.follow")
                        {
                            if let Some(sent) =
                                entry.timestamp.and_then(|at| SystemTime::try_from(at).ok())
                            {
                                latencies.push(received.duration_since(sent).unwrap_or_default());
                            }
                        }
                    }
                    Some(Event::Ended(_)) => break,
                    _ => {}
                }
            }
            latencies
        });
    }
    for ready_rx in ready {
        ready_rx.await?;
    }
    let batch_size = 10;
    let period = Duration::from_secs_f64(batch_size as f64 / rate as f64);
    let mut ticks = tokio::time::interval(period);
    let batches = rate * seconds / batch_size;
    for _ in 0..batches {
        ticks.tick().await;
        let now = SystemTime::now();
        let entries = (0..batch_size)
            .map(|i| pb::LogEntry {
                timestamp: Some(now.into()),
                level: pb::Level::Info.into(),
                logger: "bench.follow".into(),
                message: format!("entry {i} {}", "y".repeat(150)),
                ..Default::default()
            })
            .collect();
        producer
            .append(pb::AppendRequest {
                session_id: session_id.clone(),
                entries,
                ..Default::default()
            })
            .await?;
    }
    producer
        .end_session(pb::EndSessionRequest {
            session_id: session_id.clone(),
            reason: "done".into(),
        })
        .await?;
    let mut all = Vec::new();
    while let Some(latencies) = tasks.join_next().await {
        all.extend(latencies?);
    }
    all.sort();
    let expected = usize::try_from(batches * batch_size)? * followers;
    println!(
        "{followers} followers, {rate} entries/s for {seconds}s: {} of {expected} delivered; p50 {:?} p99 {:?} max {:?}",
        all.len(),
        percentile(&all, 0.50),
        percentile(&all, 0.99),
        all.last().copied().unwrap_or_default(),
    );
    Ok(())
}

fn percentile(sorted: &[Duration], quantile: f64) -> Duration {
    let last = sorted.len().saturating_sub(1);
    let index = ((last as f64) * quantile).round() as usize;
    sorted.get(index).copied().unwrap_or_default()
}
