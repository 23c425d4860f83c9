//! The producer of a live run: appends at a steady rate, each entry
//! stamped with the time its append was sent.

use std::time::{Duration, SystemTime};

use sessionlog::client::Client;
use sessionlog::pb;
use tokio::time::Instant;

use super::{FollowArgs, LOGGER};
use crate::latency::Latency;
use crate::workload::{self, within};

/// How often the producer sends what is due.
const PRODUCER_TICK: Duration = Duration::from_millis(1);

/// What the producer appended.
#[derive(Debug)]
pub(super) struct Produced {
    pub(super) per_session: Vec<u64>,
    pub(super) latency: Latency,
}

impl Produced {
    pub(super) fn total(&self) -> u64 {
        self.per_session.iter().sum()
    }
}

/// Appends at `--rate` until `--duration` or `--count`: every tick, the
/// entries due by then (rate x elapsed, less those sent), in appends of at
/// most `--batch`, each to the next session. Entries carry the time their
/// append was sent. A producer that falls behind sends more per tick, so
/// the achieved rate in the report says whether it kept up.
pub(super) async fn produce(
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
