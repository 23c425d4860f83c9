//! The producer of a live run: appends at a steady rate, each entry
//! stamped with the time its append was sent. Two paces: `tick` sends what
//! is due every millisecond, several entries to an append when more than
//! one is due; `per-entry` sends every entry as its own one-entry append at
//! its due time, one after the other, as a program that calls `Append` per
//! log line does.

use std::time::{Duration, SystemTime};

use sessionlog::client::Client;
use sessionlog::pb;
use tokio::time::Instant;

use super::{FollowArgs, LOGGER};
use crate::latency::Latency;
use crate::workload::{self, within};

/// How often the `tick` producer sends what is due.
const PRODUCER_TICK: Duration = Duration::from_millis(1);

/// How the producer turns its rate into appends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum Pace {
    /// Every millisecond, the entries due by then, in appends of at most
    /// `--batch` (at 2,000/s two entries to an append, more once an
    /// append takes over 1 ms).
    Tick,
    /// Every entry its own one-entry append at its due time, sent after
    /// the answer to the last; behind schedule, the next goes at once,
    /// still alone.
    PerEntry,
}

impl Pace {
    pub(super) fn name(self) -> &'static str {
        match self {
            Self::Tick => "tick",
            Self::PerEntry => "per-entry",
        }
    }
}

/// What the producer appended.
#[derive(Debug)]
pub(super) struct Produced {
    pub(super) per_session: Vec<u64>,
    /// `Append` calls made.
    pub(super) appends: u64,
    pub(super) latency: Latency,
    /// How late each append went against the schedule (its first entry's
    /// due time): append-to-receive starts at the actual send, so a
    /// producer that cannot keep up shows here, not there.
    pub(super) lag: Latency,
}

impl Produced {
    pub(super) fn total(&self) -> u64 {
        self.per_session.iter().sum()
    }
}

/// Appends at `--rate` until `--duration` or `--count`, as `--pace` says,
/// each append to the next session. Entries carry the time their append
/// was sent. A producer that falls behind does not wait, so the achieved
/// rate in the report says whether it kept up.
pub(super) async fn produce(
    args: &FollowArgs,
    producer: &mut Client,
    sessions: &[String],
) -> anyhow::Result<Produced> {
    let limit = match args.count {
        Some(count) => count,
        None => due(args.rate, args.duration),
    };
    let mut appender = Appender {
        producer,
        sessions,
        template: workload::entries(args.batch, args.entry_size()?, LOGGER),
        next_session: 0,
        produced: Produced {
            per_session: vec![0; sessions.len()],
            appends: 0,
            latency: Latency::new(),
            lag: Latency::new(),
        },
    };
    match args.pace {
        Pace::Tick => by_tick(&mut appender, args.rate, limit).await?,
        Pace::PerEntry => per_entry(&mut appender, args.rate, limit).await?,
    }
    Ok(appender.produced)
}

/// Every tick, the entries due by then (rate x elapsed, less those sent),
/// in appends of at most the template's length. Behind schedule, a tick
/// sends more.
async fn by_tick(appender: &mut Appender<'_>, rate: u64, limit: u64) -> anyhow::Result<()> {
    let mut sent = 0;
    let mut ticks = tokio::time::interval(PRODUCER_TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = Instant::now();
    while sent < limit {
        ticks.tick().await;
        let mut owed = due(rate, started.elapsed()).min(limit) - sent;
        while owed > 0 {
            let size = usize::try_from(owed)
                .unwrap_or(usize::MAX)
                .min(appender.template.len());
            appender
                .append(size, started + send_at(rate, sent + 1))
                .await?;
            let size = u64::try_from(size)?;
            sent += size;
            owed -= size;
        }
    }
    Ok(())
}

/// Entry n (from 1) goes alone at `send_at(rate, n)` after the start, or
/// as soon as the append before it is answered if that is later. The
/// runtime's timer wakes to the millisecond, so due times closer than that
/// are sent back to back, each still its own append.
async fn per_entry(appender: &mut Appender<'_>, rate: u64, limit: u64) -> anyhow::Result<()> {
    let started = Instant::now();
    for n in 1..=limit {
        let at = started + send_at(rate, n);
        if at > Instant::now() {
            tokio::time::sleep_until(at).await;
        }
        appender.append(1, at).await?;
    }
    Ok(())
}

/// Sends appends of the template's first entries, each to the next
/// session, and counts them and how late they went.
struct Appender<'a> {
    producer: &'a mut Client,
    sessions: &'a [String],
    template: Vec<pb::LogEntry>,
    next_session: usize,
    produced: Produced,
}

impl Appender<'_> {
    /// `due`: when the append's first entry fell due.
    async fn append(&mut self, size: usize, due: Instant) -> anyhow::Result<()> {
        self.produced
            .lag
            .record(Instant::now().saturating_duration_since(due));
        let session = self.next_session % self.sessions.len();
        self.next_session += 1;
        let stamp = prost_types::Timestamp::from(SystemTime::now());
        let mut entries = self.template[..size].to_vec();
        for entry in &mut entries {
            entry.timestamp = Some(stamp);
        }
        let session_id = &self.sessions[session];
        let request = pb::AppendRequest {
            session_id: session_id.clone(),
            entries,
            ..Default::default()
        };
        let append_started = Instant::now();
        within(
            || format!("append to session `{session_id}` failed"),
            self.producer.append(request),
        )
        .await?;
        self.produced.latency.record(append_started.elapsed());
        self.produced.per_session[session] += u64::try_from(size)?;
        self.produced.appends += 1;
        Ok(())
    }
}

/// Entries due after `elapsed` at `rate` per second.
fn due(rate: u64, elapsed: Duration) -> u64 {
    let due = u128::from(rate) * elapsed.as_micros() / 1_000_000;
    u64::try_from(due).unwrap_or(u64::MAX)
}

/// When entry `n` (from 1) falls due at `rate` per second: the first
/// microsecond at which `due` counts it, so both paces keep one schedule.
fn send_at(rate: u64, n: u64) -> Duration {
    let micros = (u128::from(n) * 1_000_000).div_ceil(u128::from(rate.max(1)));
    Duration::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
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

    #[test]
    fn each_entry_is_sent_when_it_falls_due() {
        assert_eq!(send_at(2_000, 1), Duration::from_micros(500));
        assert_eq!(send_at(2_000, 2_000), Duration::from_secs(1));
        assert_eq!(send_at(3, 1), Duration::from_micros(333_334));
        for rate in [1, 3, 7, 200, 2_000, 30_001] {
            for n in (1..5_000).step_by(37) {
                let at = send_at(rate, n);
                assert_eq!(due(rate, at), n, "rate {rate}: entry {n} is due at {at:?}");
                let just_before = at - Duration::from_micros(1);
                assert_eq!(due(rate, just_before), n - 1, "rate {rate}, entry {n}");
            }
        }
    }

    #[test]
    fn send_times_step_evenly_through_a_run() {
        // 2,000/s for 5 s: the last of 10,000 entries at exactly 5 s, and
        // no two due at the same instant.
        let limit = due(2_000, Duration::from_secs(5));
        assert_eq!(send_at(2_000, limit), Duration::from_secs(5));
        let times: Vec<Duration> = (1..=limit).map(|n| send_at(2_000, n)).collect();
        assert!(
            times
                .windows(2)
                .all(|pair| pair[1] - pair[0] == Duration::from_micros(500))
        );
    }
}
