//! Measurements behind sealing's choices (docs/performance.md, "Sealed
//! blocks"): codecs and levels, run sizes, a dictionary, a data dir's
//! bytes before and after sealing, and catch-up reads from sealed logs.
//! Ignored by default; run in release on real log text:
//!
//! ```text
//! SEAL_CORPUS=/var/log/dpkg.log:/var/log/apt/term.log \
//!   cargo test --release --lib store::seal_measure -- --ignored --nocapture
//! ```

use std::time::{Duration, Instant, SystemTime};

use super::block;
use super::schema::{Level, LogCounters, StoredEntry};
use super::seal::SEAL_RUN_BYTES;
use super::{EntryFilter, NewEntry, ScanLimits, SealOutcome, SealTarget, Store, StoreOptions};

/// The corpus's lines, each stored as an entry's message.
fn corpus() -> Vec<String> {
    let paths = std::env::var("SEAL_CORPUS")
        .unwrap_or_else(|_| "/var/log/dpkg.log:/var/log/apt/term.log".to_owned());
    let mut lines = Vec::new();
    for path in paths.split(':').filter(|path| !path.is_empty()) {
        let bytes = std::fs::read(path).unwrap_or_else(|err| panic!("{path}: {err}"));
        lines.extend(
            String::from_utf8_lossy(&bytes)
                .lines()
                .filter(|line| !line.trim().is_empty())
                .map(str::to_owned),
        );
    }
    assert!(!lines.is_empty(), "an empty corpus");
    lines
}

fn entry(line: &str) -> NewEntry {
    NewEntry::Decoded(StoredEntry {
        level: Level::Info as i32,
        logger: "host.packages".to_owned(),
        message: line.to_owned(),
        ..StoredEntry::default()
    })
}

/// The corpus as encoded entries packed into runs of about `run_bytes`.
fn runs(lines: &[String], run_bytes: usize) -> Vec<Vec<u8>> {
    let now = SystemTime::now();
    let mut runs = vec![Vec::new()];
    for (seq, line) in (1u64..).zip(lines) {
        let bytes = entry(line).encode(seq, now);
        let last = runs.last_mut().expect("one run");
        if !last.is_empty() && last.len() + block::pushed_len(bytes.len()) > run_bytes {
            runs.push(Vec::new());
        }
        block::push(runs.last_mut().expect("one run"), &bytes);
    }
    runs
}

fn mib_per_s(bytes: usize, took: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / took.as_secs_f64()
}

/// Compresses and decompresses every run `rounds` times with `codec`:
/// (ratio, compress MiB/s, decompress MiB/s, largest compressed run).
fn codec(
    runs: &[Vec<u8>],
    rounds: usize,
    compress: impl Fn(&[u8]) -> Vec<u8>,
    decompress: impl Fn(&[u8], usize) -> Vec<u8>,
) -> (f64, f64, f64, usize) {
    let raw: usize = runs.iter().map(Vec::len).sum();
    let started = Instant::now();
    let mut packed = Vec::new();
    for _ in 0..rounds {
        packed = runs.iter().map(|run| compress(run)).collect::<Vec<_>>();
    }
    let compress_took = started.elapsed();
    let started = Instant::now();
    for _ in 0..rounds {
        for (run, frame) in runs.iter().zip(&packed) {
            assert_eq!(decompress(frame, run.len()).len(), run.len());
        }
    }
    let decompress_took = started.elapsed();
    let compressed: usize = packed.iter().map(Vec::len).sum();
    let largest = packed.iter().map(Vec::len).max().unwrap_or(0);
    (
        raw as f64 / compressed as f64,
        mib_per_s(raw * rounds, compress_took),
        mib_per_s(raw * rounds, decompress_took),
        largest,
    )
}

fn zstd_at(level: i32) -> impl Fn(&[u8]) -> Vec<u8> {
    move |run| zstd::bulk::compress(run, level).expect("compresses")
}

fn zstd_out(frame: &[u8], len: usize) -> Vec<u8> {
    zstd::bulk::decompress(frame, len).expect("decompresses")
}

/// The sum of the file sizes under `dir`, and the bytes allocated to them
/// (sled's file can have holes).
pub(crate) fn dir_bytes(dir: &std::path::Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let (mut size, mut allocated) = (0, 0);
    for entry in std::fs::read_dir(dir).expect("a dir").flatten() {
        let meta = entry.metadata().expect("metadata");
        if meta.is_dir() {
            let (inner_size, inner_allocated) = dir_bytes(&entry.path());
            size += inner_size;
            allocated += inner_allocated;
        } else {
            size += meta.len();
            allocated += meta.blocks() * 512;
        }
    }
    (size, allocated)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

/// "`size` MiB (`ratio`x the entries), `allocated` MiB allocated".
fn disk(dir: &std::path::Path, entries_bytes: u64) -> String {
    let (size, allocated) = dir_bytes(dir);
    format!(
        "{:.1} MiB ({:.2}x the entries), {:.1} MiB allocated",
        mib(size),
        size as f64 / entries_bytes as f64,
        mib(allocated)
    )
}

#[test]
#[ignore = "a measurement: run in release with --ignored --nocapture"]
fn measure_sealing() {
    let lines = corpus();
    let encoded: usize = runs(&lines, usize::MAX)[0].len();
    println!(
        "corpus: {} lines, {} KiB of encoded entries",
        lines.len(),
        encoded >> 10
    );

    println!("\n== codecs, runs of {} KiB", SEAL_RUN_BYTES >> 10);
    let sealed_runs = runs(&lines, SEAL_RUN_BYTES);
    let rounds = 5;
    for level in [1, 3, 9, 19] {
        let (ratio, c, d, largest) = codec(&sealed_runs, rounds, zstd_at(level), zstd_out);
        println!(
            "zstd {level:>2}: ratio {ratio:5.2}, compress {c:7.1} MiB/s, decompress {d:7.1} MiB/s, largest {largest} B"
        );
    }
    let (ratio, c, d, largest) = codec(&sealed_runs, rounds, lz4_flex::compress, |frame, len| {
        lz4_flex::decompress(frame, len).expect("decompresses")
    });
    println!(
        "lz4_flex: ratio {ratio:5.2}, compress {c:7.1} MiB/s, decompress {d:7.1} MiB/s, largest {largest} B"
    );

    println!("\n== run size, zstd {}", block::SEAL_LEVEL);
    for kib in [7usize, 16, 32, 64, 128, 256] {
        let sized = runs(&lines, kib << 10);
        let (ratio, _, d, largest) = codec(&sized, 1, zstd_at(block::SEAL_LEVEL), zstd_out);
        println!(
            "{kib:>3} KiB runs: ratio {ratio:5.2}, decompress {d:7.1} MiB/s, largest {largest} B"
        );
    }

    println!("\n== dictionary (trained on the first half, used on the second), zstd 3");
    let (train, test) = sealed_runs.split_at(sealed_runs.len() / 2);
    let samples: Vec<&[u8]> = train.iter().flat_map(|run| run.chunks(4096)).collect();
    for dict_kib in [16usize, 64] {
        let Ok(dictionary) = zstd::dict::from_samples(&samples, dict_kib << 10) else {
            println!("{dict_kib} KiB dictionary: training failed");
            continue;
        };
        let mut compressor =
            zstd::bulk::Compressor::with_dictionary(3, &dictionary).expect("compressor");
        let mut decompressor =
            zstd::bulk::Decompressor::with_dictionary(&dictionary).expect("decompressor");
        let packed: Vec<Vec<u8>> = test
            .iter()
            .map(|run| compressor.compress(run).expect("compresses"))
            .collect();
        for (run, frame) in test.iter().zip(&packed) {
            let out = decompressor
                .decompress(frame, run.len())
                .expect("decompresses");
            assert_eq!(&out, run);
        }
        let plain: usize = test.iter().map(|run| zstd_at(3)(run).len()).sum();
        let with: usize = packed.iter().map(Vec::len).sum();
        let raw: usize = test.iter().map(Vec::len).sum();
        println!(
            "{dict_kib} KiB dictionary: ratio {:.2} with, {:.2} without",
            raw as f64 / with as f64,
            raw as f64 / plain as f64
        );
    }

    let sessions: usize = std::env::var("SEAL_SESSIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20);
    println!("\n== a data dir of {sessions} ended sessions of the corpus, batches of 100");
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(&StoreOptions {
        path: dir.path().join("data"),
        cache_bytes: 256 << 20,
    })
    .expect("store");
    let ids: Vec<String> = (0..sessions).map(|n| format!("s{n}")).collect();
    let mut last = Vec::new();
    let started = Instant::now();
    for id in &ids {
        let log = store.open_log(id).expect("log");
        let mut counters = LogCounters::default();
        for batch in lines.chunks(100) {
            counters = log
                .append(
                    &counters,
                    batch.iter().map(|line| entry(line)).collect(),
                    None,
                    SystemTime::now(),
                )
                .expect("append");
        }
        last.push(counters);
    }
    store.flush().expect("flush");
    let entries_bytes: u64 = last.iter().map(|counters| counters.size_bytes).sum();
    println!(
        "written in {:.1?}: {} MiB of entries; on disk {}",
        started.elapsed(),
        entries_bytes >> 20,
        disk(&dir.path().join("data"), entries_bytes)
    );
    let catch_up = |label: &str, page_entries: usize| {
        let started = Instant::now();
        let mut read = 0usize;
        for (id, counters) in ids.iter().zip(&last) {
            let log = store.open_log(id).expect("log");
            let mut cursor = 0;
            while cursor < counters.last_seq {
                let page = log
                    .page_forward_raw(
                        cursor,
                        counters.last_seq,
                        &EntryFilter::default(),
                        ScanLimits {
                            max_entries: page_entries,
                            max_scanned: 10_000,
                            max_bytes: 4 << 20,
                        },
                    )
                    .expect("page");
                read += page.entries.len();
                cursor = page.cursor;
            }
        }
        let took = started.elapsed();
        println!(
            "catch-up ({label}, pages of {page_entries}): {read} entries in {took:.1?}, {:.0} entries/s",
            read as f64 / took.as_secs_f64()
        );
    };
    for page_entries in [1000, 500, 50] {
        catch_up("unsealed", page_entries);
    }

    let started = Instant::now();
    let (mut steps, mut before, mut after) = (0, 0, 0);
    for (id, counters) in ids.iter().zip(&last) {
        let target = SealTarget {
            through_seq: counters.last_seq,
            size_bytes: counters.size_bytes,
            min_unsealed: 1,
        };
        while let SealOutcome::Step(step) = store.seal_step(id, target, || true).expect("seal") {
            steps += 1;
            before += step.bytes_before;
            after += step.bytes_after;
        }
    }
    let took = started.elapsed();
    println!(
        "sealed in {took:.1?} ({:.1} MiB/s of entries): {steps} steps, block values {} KiB -> {} KiB ({:.2}x)",
        entries_bytes as f64 / (1 << 20) as f64 / took.as_secs_f64(),
        before >> 10,
        after >> 10,
        before as f64 / after.max(1) as f64
    );
    store.flush().expect("flush");
    println!(
        "on disk after sealing: {}",
        disk(&dir.path().join("data"), entries_bytes)
    );
    for page_entries in [1000, 500, 50] {
        catch_up("sealed", page_entries);
    }
    drop(store);
    let store = Store::open(&StoreOptions {
        path: dir.path().join("data"),
        cache_bytes: 256 << 20,
    })
    .expect("store");
    store.flush().expect("flush");
    println!(
        "on disk after a restart: {}",
        disk(&dir.path().join("data"), entries_bytes)
    );

    drop(store);

    println!("\n== the same sessions, each sealed as soon as it ends (as the server does)");
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(&StoreOptions {
        path: dir.path().join("data"),
        cache_bytes: 256 << 20,
    })
    .expect("store");
    let started = Instant::now();
    for id in &ids {
        let log = store.open_log(id).expect("log");
        let mut counters = LogCounters::default();
        for batch in lines.chunks(100) {
            counters = log
                .append(
                    &counters,
                    batch.iter().map(|line| entry(line)).collect(),
                    None,
                    SystemTime::now(),
                )
                .expect("append");
        }
        let target = SealTarget {
            through_seq: counters.last_seq,
            size_bytes: counters.size_bytes,
            min_unsealed: 1,
        };
        while let SealOutcome::Step(_) = store.seal_step(id, target, || true).expect("seal") {}
        store.flush().expect("flush");
    }
    println!(
        "written and sealed in {:.1?}: on disk {}",
        started.elapsed(),
        disk(&dir.path().join("data"), entries_bytes)
    );
}
