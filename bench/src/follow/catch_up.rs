//! `bench follow --catch-up N`: fills one session with N entries, then
//! times one follower reading them from the start until `caught_up`,
//! checking every seq on the way.

use std::time::Duration;

use anyhow::Context as _;
use serde_json::json;
use sessionlog::pb;
use sessionlog::pb::follow_response::Event;
use tokio::time::Instant;

use super::followers::open;
use super::{FollowArgs, LOGGER};
use crate::local::ServerUnderTest;
use crate::report::{self, ResourceUse, RunReport, Unit};
use crate::workload::{self, within};

/// Appends that fill the history.
const CATCH_UP_BATCH: usize = 1_000;
/// The longest wait for one event while catching up.
const EVENT_TIMEOUT: Duration = Duration::from_secs(30);

/// Fills one session with `entries`, then reads it from the start with
/// one follower until `caught_up`, checking every seq on the way.
pub(super) async fn catch_up(
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
        let response = tokio::time::timeout(EVENT_TIMEOUT, events.message())
            .await
            .map_err(|_| {
                anyhow::anyhow!("the catch-up follower got nothing for {EVENT_TIMEOUT:?}")
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
