//! `store`: the storage baseline. The entries `ingest` sends, encoded
//! once, written straight into a temporary sled database opened the way the
//! server opens its store (page cache, high-throughput mode, no background
//! flusher), one key per entry (the seq, big-endian) in one tree per
//! session, one `apply_batch` per batch, from `--concurrency` threads.
//! Flushed like the server's `--fsync`: every `--flush-interval` from a
//! thread of its own, after every batch, or never. No gRPC, no rules.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::Context as _;
use prost::Message as _;
use sessionlog::config::FsyncMode;
use tokio::time::Instant;

use super::latency::Totals;
use super::local;
use super::reference;
use super::report::{self, ResourceUse, RunReport, Unit};
use super::workload::{self, StopRule};
use super::{EngineArgs, LoadArgs, OutputArgs};

#[derive(Debug, clap::Args)]
pub(super) struct StoreArgs {
    #[command(flatten)]
    load: LoadArgs,
    #[command(flatten)]
    engine: EngineArgs,
    #[command(flatten)]
    output: OutputArgs,
}

pub(super) async fn run(args: StoreArgs) -> anyhow::Result<()> {
    super::repeat(&args.output, || measure(&args.load, &args.engine)).await
}

/// One run of the baseline, on the blocking pool: sled blocks.
pub(super) async fn measure(load: &LoadArgs, engine: &EngineArgs) -> anyhow::Result<RunReport> {
    let (load, engine) = (load.clone(), engine.clone());
    tokio::task::spawn_blocking(move || measure_blocking(&load, &engine))
        .await
        .context("the store bench stopped")?
}

/// One session's tree and its next seq.
struct Log {
    tree: sled::Tree,
    next_seq: AtomicU64,
}

/// What every writer thread shares.
struct Shared {
    db: sled::Db,
    logs: Vec<Log>,
    values: Vec<sled::IVec>,
    prefix_bytes: Vec<u64>,
    flush_every_batch: bool,
}

fn measure_blocking(load: &LoadArgs, engine: &EngineArgs) -> anyhow::Result<RunReport> {
    let dir = local::temp_dir(engine.temp_dir.as_deref())?;
    let db = sled::Config::new()
        .path(dir.path().join("db"))
        .cache_capacity(engine.cache_size)
        .flush_every_ms(None)
        .mode(sled::Mode::HighThroughput)
        .open()
        .context("cannot open a sled database for the baseline")?;
    let logs = (0..load.sessions)
        .map(|index| {
            Ok(Log {
                tree: db.open_tree(format!("log/bench-{index}"))?,
                next_seq: AtomicU64::new(1),
            })
        })
        .collect::<Result<Vec<_>, sled::Error>>()?;
    let template = workload::entries(load.batch, load.entry_size()?, "bench.store");
    let prefix_bytes = std::iter::once(0)
        .chain((1..=template.len()).map(|n| workload::payload_bytes(&template[..n])))
        .collect();
    let shared = Shared {
        db,
        logs,
        // Encoded once: the baseline measures sled, not the encoder.
        values: template
            .iter()
            .map(|entry| sled::IVec::from(entry.encode_to_vec()))
            .collect(),
        prefix_bytes,
        flush_every_batch: engine.fsync == FsyncMode::Always,
    };
    let (stop_flusher_tx, stop_flusher_rx) = mpsc::channel::<()>();
    let flusher = match engine.fsync {
        FsyncMode::Interval => {
            let db = shared.db.clone();
            let period = engine.flush_interval;
            Some(std::thread::spawn(move || {
                flush_every(&db, period, &stop_flusher_rx)
            }))
        }
        FsyncMode::Always | FsyncMode::Never => None,
    };

    let measured = (|| {
        let mut warmup_entries = 0;
        if !load.warmup.is_zero() {
            let warm = phase(
                &shared,
                load.concurrency,
                &StopRule::Deadline(Instant::now() + load.warmup),
            )?;
            warmup_entries = warm.entries;
        }
        let before = local::sample(std::process::id()).ok();
        let started = Instant::now();
        let totals = phase(
            &shared,
            load.concurrency,
            &StopRule::new(load.duration, load.count),
        )?;
        let elapsed = started.elapsed();
        let after = local::sample(std::process::id()).ok();
        anyhow::Ok((
            warmup_entries,
            totals,
            elapsed,
            ResourceUse { before, after },
        ))
    })();
    drop(stop_flusher_tx);
    if let Some(flusher) = flusher {
        flusher
            .join()
            .map_err(|_| anyhow::anyhow!("the store flusher panicked"))??;
    }
    let (warmup_entries, totals, elapsed, own_use) = measured?;
    shared.db.flush().context("the final flush failed")?;
    let stored: u64 = shared
        .logs
        .iter()
        .map(|log| log.tree.len())
        .sum::<usize>()
        .try_into()?;
    anyhow::ensure!(
        stored == warmup_entries + totals.entries,
        "sled holds {stored} entries, {} were written",
        warmup_entries + totals.entries
    );
    Ok(report(
        load,
        engine,
        &totals,
        elapsed,
        warmup_entries,
        own_use,
    ))
}

fn report(
    load: &LoadArgs,
    engine: &EngineArgs,
    totals: &Totals,
    elapsed: Duration,
    warmup_entries: u64,
    own_use: ResourceUse,
) -> RunReport {
    let mut report = RunReport::new("store", load.params(engine));
    report.push_throughput(totals.entries, totals.bytes, elapsed);
    report
        .figures
        .extend(totals.latency.figures("batch", "apply_batch latency"));
    if let (Some(before), Some(after)) = (own_use.before, own_use.after) {
        report.push(
            "cpu_us_per_entry",
            "CPU per entry (this process)",
            Unit::CpuMicros,
            (after.cpu_seconds - before.cpu_seconds) * 1e6 / report::approx(totals.entries.max(1)),
        );
    }
    report.push(
        "entries",
        "entries",
        Unit::Count,
        report::approx(totals.entries),
    );
    report.push(
        "warmup_entries",
        "entries in the warm-up",
        Unit::Count,
        report::approx(warmup_entries),
    );
    report.push(
        "elapsed_seconds",
        "measured for",
        Unit::Seconds,
        elapsed.as_secs_f64(),
    );
    if load.is_reference_shape() && engine.fsync != FsyncMode::Always {
        report.references = reference::RAW_SLED.to_vec();
    }
    report
}

/// Runs `concurrency` writer threads until `stop`.
fn phase(shared: &Shared, concurrency: usize, stop: &StopRule) -> anyhow::Result<Totals> {
    std::thread::scope(|scope| {
        let writers: Vec<_> = (0..concurrency)
            .map(|index| scope.spawn(move || write(shared, stop, index)))
            .collect();
        let mut totals = Totals::new();
        for writer in writers {
            let part = writer
                .join()
                .map_err(|_| anyhow::anyhow!("a store writer panicked"))??;
            totals.add(&part);
        }
        Ok(totals)
    })
}

/// One writer: batches to the trees in turn. Seqs are claimed per tree, so
/// writers sharing a tree never write the same key.
fn write(shared: &Shared, stop: &StopRule, first_log: usize) -> anyhow::Result<Totals> {
    let mut totals = Totals::new();
    let mut next_log = first_log;
    loop {
        let size = stop.claim(shared.values.len());
        if size == 0 {
            return Ok(totals);
        }
        let log = &shared.logs[next_log % shared.logs.len()];
        next_log += 1;
        let count = u64::try_from(size)?;
        let first_seq = log.next_seq.fetch_add(count, Ordering::Relaxed);
        let mut batch = sled::Batch::default();
        for (seq, value) in (first_seq..).zip(&shared.values[..size]) {
            batch.insert(&seq.to_be_bytes(), value.clone());
        }
        let started = Instant::now();
        log.tree
            .apply_batch(batch)
            .context("sled refused a batch")?;
        if shared.flush_every_batch {
            shared.db.flush().context("a flush failed")?;
        }
        totals.latency.record(started.elapsed());
        totals.entries += count;
        totals.bytes += shared.prefix_bytes[size];
        totals.appends += 1;
    }
}

/// Flushes every `period` until the sender of `stop_rx` is dropped.
fn flush_every(
    db: &sled::Db,
    period: Duration,
    stop_rx: &mpsc::Receiver<()>,
) -> anyhow::Result<()> {
    while let Err(mpsc::RecvTimeoutError::Timeout) = stop_rx.recv_timeout(period) {
        db.flush().context("a periodic flush failed")?;
    }
    Ok(())
}
