//! `sessionlog-bench` end to end: the real binary starts its own local
//! server for `ingest` and `follow` (the `sessionlog` binary beside it), and
//! its `--json` figures add up (every appended entry stored, every follower
//! given every entry); a server that is not there, or a server binary that
//! is not there, fails the bench with a clear message.
//!
//! Cargo builds `sessionlog` for this crate's tests only when the run
//! includes the product crate (`cargo test --workspace`, or the product's
//! `cargo test` first); `server_bin` says so when it is missing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_sessionlog-bench");

/// The `sessionlog` binary of the same build: beside the bench binary in
/// `target/<profile>/`, where the bench itself looks first.
fn server_bin() -> PathBuf {
    let server =
        Path::new(BIN).with_file_name(format!("sessionlog{}", std::env::consts::EXE_SUFFIX));
    assert!(
        server.is_file(),
        "{} is missing: build it first with `cargo build --bin sessionlog` \
         (`cargo test --workspace` does)",
        server.display()
    );
    server
}

struct Output {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

async fn bench(args: &[&str]) -> Output {
    server_bin();
    // The default lookup is under test, not a binary named by the caller's
    // environment.
    run(Command::new(BIN).args(args).env_remove("SESSIONLOG_BIN")).await
}

async fn run(command: &mut Command) -> Output {
    let output = tokio::time::timeout(
        Duration::from_secs(120),
        command.kill_on_drop(true).output(),
    )
    .await
    .expect("the bench finishes within 120s")
    .expect("run sessionlog-bench");
    Output {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The JSON objects printed, one per line.
fn objects(output: &Output) -> Vec<Value> {
    assert_eq!(output.code, Some(0), "stderr: {}", output.stderr);
    output
        .stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON object per line"))
        .collect()
}

fn number(object: &Value, key: &str) -> f64 {
    object[key]
        .as_f64()
        .unwrap_or_else(|| panic!("`{key}` is a number in {object}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_stores_every_entry_it_counts() {
    let output = bench(&[
        "ingest",
        "--json",
        "--runs",
        "2",
        "--sessions",
        "2",
        "--batch",
        "50",
        "--concurrency",
        "3",
        "--count",
        "1000",
        "--warmup",
        "200ms",
        "--fsync",
        "always",
    ])
    .await;
    let objects = objects(&output);
    assert_eq!(
        objects.len(),
        3,
        "two runs and a summary: {}",
        output.stdout
    );
    for run in &objects[..2] {
        assert_eq!(run["bench"], "ingest");
        assert_eq!(number(run, "entries"), 1_000.0);
        assert_eq!(
            number(run, "stored_entries"),
            number(run, "warmup_entries") + number(run, "entries")
        );
        assert_eq!(number(run, "appends"), 20.0);
        assert!(number(run, "entries_per_second") > 0.0);
        assert!(number(run, "append_p99_us") >= number(run, "append_p50_us"));
        // The local server's pid is known, so its CPU and memory are read.
        assert!(number(run, "server_peak_rss_mib") > 0.0);
        // 50 entries to an append: the same CPU over a fiftieth as many.
        let per_entry = number(run, "server_cpu_us_per_entry");
        let per_append = number(run, "server_cpu_us_per_append");
        assert!(
            (per_append - 50.0 * per_entry).abs() <= 1e-9 * per_append.max(1.0),
            "per append {per_append}, per entry {per_entry}"
        );
    }
    let summary = &objects[2];
    assert_eq!(summary["summary"], true);
    assert_eq!(summary["median"]["entries"], 1_000);
    assert!(
        summary["min"]["entries_per_second"].as_f64()
            <= summary["max"]["entries_per_second"].as_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floor_times_calls_that_touch_no_store() {
    let output = bench(&[
        "floor",
        "--json",
        "--concurrency",
        "3",
        "--duration",
        "300ms",
        "--warmup",
        "100ms",
    ])
    .await;
    let objects = objects(&output);
    assert_eq!(objects.len(), 1, "one run: {}", output.stdout);
    let run = &objects[0];
    assert_eq!(run["bench"], "floor");
    let calls = number(run, "calls");
    assert!(calls > 0.0, "{run}");
    let rate = number(run, "calls_per_second") * number(run, "elapsed_seconds");
    assert!(
        (rate - calls).abs() <= 1.0,
        "calls/s x seconds {rate} against {calls}"
    );
    assert!(number(run, "call_p99_us") >= number(run, "call_p50_us"));
    assert!(number(run, "server_cpu_us_per_call") > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_with_a_baseline_reports_the_ratio_to_sled() {
    let output = bench(&[
        "ingest",
        "--json",
        "--baseline",
        "--batch",
        "1000",
        "--count",
        "4000",
        "--warmup",
        "0s",
    ])
    .await;
    let run = &objects(&output)[0];
    assert!(number(run, "store_entries_per_second") > 0.0);
    let ratio = number(run, "ratio_to_store");
    let expected = number(run, "entries_per_second") / number(run, "store_entries_per_second");
    assert!((ratio - expected).abs() < 1e-9 * expected.max(1.0));
    // Batches of 1,000 ~200-byte entries under `--fsync interval`: the
    // shape the Redis figures were measured with.
    assert_eq!(run["references"][0]["value"], 170_000.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_delivers_every_entry_to_every_follower() {
    let output = bench(&[
        "follow",
        "--json",
        "--followers",
        "4",
        "--rate",
        "400",
        "--count",
        "200",
        "--batch",
        "5",
    ])
    .await;
    let run = &objects(&output)[0];
    assert_eq!(run["bench"], "follow");
    assert_eq!(run["params"]["pace"], "tick");
    assert_eq!(number(run, "appended"), 200.0);
    // Appends of at most 5: at least 40 of them.
    assert!(number(run, "appends") >= 40.0);
    assert_eq!(number(run, "delivered"), 4.0 * 200.0);
    assert_eq!(number(run, "expected_delivered"), 4.0 * 200.0);
    assert!(number(run, "latency_max_us") >= number(run, "latency_p50_us"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_per_entry_sends_every_entry_as_its_own_append() {
    let output = bench(&[
        "follow",
        "--json",
        "--followers",
        "3",
        "--rate",
        "2000",
        "--count",
        "150",
        "--pace",
        "per-entry",
    ])
    .await;
    let run = &objects(&output)[0];
    assert_eq!(run["params"]["pace"], "per-entry");
    assert_eq!(number(run, "appended"), 150.0);
    assert_eq!(number(run, "appends"), 150.0);
    assert_eq!(number(run, "delivered"), 3.0 * 150.0);
    let per_append = number(run, "server_cpu_us_per_append");
    let per_delivered = number(run, "server_cpu_us_per_delivered");
    // One entry to an append, three deliveries of each.
    assert!(
        (per_append - number(run, "server_cpu_us_per_entry")).abs() <= 1e-9 * per_append.max(1.0)
    );
    assert!((per_append - 3.0 * per_delivered).abs() <= 1e-9 * per_append.max(1.0));
    assert!(number(run, "producer_appends_per_second") > 0.0);
    assert!(number(run, "producer_lag_max_us") >= number(run, "producer_lag_p50_us"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_spreads_followers_over_sessions() {
    let output = bench(&[
        "follow",
        "--json",
        "--followers",
        "5",
        "--sessions",
        "2",
        "--rate",
        "1000",
        "--count",
        "300",
        "--batch",
        "1",
    ])
    .await;
    let run = &objects(&output)[0];
    assert_eq!(number(run, "appended"), 300.0);
    // Appends of one entry alternate between the sessions: 150 each, and
    // followers 0, 2, 4 watch the first, 1 and 3 the second.
    assert_eq!(number(run, "delivered"), 5.0 * 150.0);
    assert_eq!(number(run, "expected_delivered"), 5.0 * 150.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_up_reads_the_whole_history() {
    let output = bench(&[
        "follow",
        "--json",
        "--catch-up",
        "3000",
        "--max-batch",
        "256",
    ])
    .await;
    let run = &objects(&output)[0];
    assert_eq!(run["bench"], "catch-up");
    assert_eq!(number(run, "entries"), 3_000.0);
    assert!(number(run, "catch_up_entries_per_second") > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_writes_the_count_into_sled() {
    let output = bench(&["store", "--json", "--count", "5000", "--warmup", "0s"]).await;
    let run = &objects(&output)[0];
    assert_eq!(run["bench"], "store");
    assert_eq!(number(run, "entries"), 5_000.0);
    assert_eq!(number(run, "warmup_entries"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_is_not_there_fails_the_bench() {
    // A port that was free a moment ago: nothing listens on it.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address").port()
    };
    let server = format!("http://127.0.0.1:{port}");
    let output = bench(&["ingest", "--server", &server, "--count", "10"]).await;
    assert_ne!(output.code, Some(0));
    assert!(output.stdout.is_empty(), "{}", output.stdout);
    assert!(
        output
            .stderr
            .starts_with("error: cannot connect to http://127.0.0.1:"),
        "{}",
        output.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_binary_that_is_not_there_names_the_flag() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("sessionlog");
    let output = run(Command::new(BIN)
        .args(["ingest", "--count", "10"])
        .env("SESSIONLOG_BIN", &missing))
    .await;
    assert_ne!(output.code, Some(0));
    assert!(output.stdout.is_empty(), "{}", output.stdout);
    assert!(
        output
            .stderr
            .starts_with("error: cannot start a local server with `")
            && output.stderr.contains("--server-bin"),
        "{}",
        output.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_binary_can_be_named() {
    let output = run(Command::new(BIN)
        .args(["ingest", "--json", "--batch", "10", "--count", "100"])
        .args(["--warmup", "0s", "--server-bin"])
        .arg(server_bin())
        .env_remove("SESSIONLOG_BIN"))
    .await;
    let run = &objects(&output)[0];
    assert_eq!(number(run, "entries"), 100.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_server_binary_the_error_names_the_flag() {
    // The bench binary alone in a directory, and nothing on PATH: a hard
    // link, since the bench looks beside its resolved path and a symlink
    // would resolve back to target/. Made beside the original, on the
    // same filesystem.
    let target_dir = Path::new(BIN)
        .parent()
        .expect("the bench binary's directory");
    let dir = tempfile::tempdir_in(target_dir).expect("temp dir");
    let alone = dir.path().join("sessionlog-bench");
    std::fs::hard_link(BIN, &alone).expect("hard link to the bench binary");
    let output = run(Command::new(&alone)
        .args(["ingest", "--count", "10"])
        .env("PATH", dir.path())
        .env_remove("SESSIONLOG_BIN"))
    .await;
    assert_ne!(output.code, Some(0));
    assert!(
        output
            .stderr
            .starts_with("error: cannot find the `sessionlog` binary in ")
            && output.stderr.contains("--server-bin PATH"),
        "{}",
        output.stderr
    );
}

/// The log corpus `footprint` appends (bench/corpus/): its `*.log` and
/// `*.jsonl` files, as (name, text).
fn corpus() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("bench/corpus/ is there")
        .map(|item| item.expect("a corpus file").path())
        .filter(|path| {
            path.extension()
                .is_some_and(|extension| extension == "log" || extension == "jsonl")
        })
        .map(|path| {
            let name = path
                .file_name()
                .expect("a name")
                .to_string_lossy()
                .into_owned();
            let text = std::fs::read_to_string(&path).expect("corpus files are UTF-8 text");
            (name, text)
        })
        .collect();
    files.sort();
    files
}

#[test]
fn the_corpus_is_real_log_text() {
    let files = corpus();
    assert!(files.len() >= 6, "several kinds of log: {files:?}");
    let total: usize = files.iter().map(|(_, text)| text.len()).sum();
    assert!(
        (2_000_000..=8_000_000).contains(&total),
        "a few MB of text, not {total} bytes"
    );
    let mut distinct = std::collections::HashSet::new();
    let mut lines = 0;
    for (name, text) in &files {
        assert!(text.len() >= 5_000, "{name} is {} bytes", text.len());
        for line in text.lines() {
            lines += 1;
            distinct.insert(line);
        }
    }
    // Logs repeat themselves, but not one line over and over.
    assert!(
        distinct.len() * 2 >= lines && distinct.len() >= 10_000,
        "{} distinct lines of {lines}",
        distinct.len()
    );
    // Random bytes do not compress and one repeated line compresses far
    // beyond what logs do; real text lands in between.
    let all: Vec<u8> = files
        .iter()
        .flat_map(|(_, text)| text.as_bytes().iter().copied())
        .collect();
    let compressed = zstd::encode_all(all.as_slice(), 3).expect("zstd");
    let ratio = all.len() as f64 / compressed.len() as f64;
    assert!((3.0..=30.0).contains(&ratio), "zstd -3 ratio {ratio:.1}");
    // Each file says where it came from.
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/README.md"))
            .expect("bench/corpus/README.md");
    for (name, _) in &files {
        assert!(
            readme.contains(&format!("`{name}`")),
            "README.md names {name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn footprint_appends_the_corpus_and_measures_the_data_dir() {
    let output = bench(&[
        "footprint",
        "--json",
        "--sessions",
        "40",
        "--concurrency",
        "2",
    ])
    .await;
    let run = &objects(&output)[0];
    assert_eq!(run["bench"], "footprint");
    // One entry per non-empty line, the line as the message.
    let lines: Vec<String> = corpus()
        .iter()
        .flat_map(|(_, text)| text.lines().map(str::to_owned).collect::<Vec<_>>())
        .filter(|line| !line.trim().is_empty())
        .collect();
    assert_eq!(number(run, "entries"), lines.len() as f64);
    let raw: usize = lines.iter().map(String::len).sum();
    assert_eq!(number(run, "raw_message_bytes"), raw as f64);
    let encoded = number(run, "encoded_entry_bytes");
    assert!(encoded > raw as f64, "a protobuf entry wraps its message");
    // The headline is what the filesystem allocated; the file sizes
    // (with sled's punched holes) are beside it.
    let allocated = number(run, "disk_allocated_bytes");
    let file_bytes = number(run, "disk_bytes");
    assert!(allocated > 0.0 && file_bytes > 0.0);
    let per_encoded = number(run, "disk_per_encoded_byte");
    assert!((per_encoded - allocated / encoded).abs() <= 1e-9 * per_encoded);
    let per_raw = number(run, "disk_per_raw_byte");
    assert!((per_raw - allocated / raw as f64).abs() <= 1e-9 * per_raw);
    let file_per_encoded = number(run, "file_size_per_encoded_byte");
    assert!((file_per_encoded - file_bytes / encoded).abs() <= 1e-9 * file_per_encoded);
    assert!(number(run, "entries_per_second") > 0.0);
    // Held against issue 20's target of 0.25 disk bytes per encoded byte.
    assert_eq!(run["references"][0]["value"], 0.25);
    assert_eq!(run["references"][0]["target"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_scans_every_sealed_session_and_finds_the_marker() {
    let output = bench(&[
        "search",
        "--json",
        "--sessions",
        "20",
        "--entries-per-session",
        "30",
        "--repeat",
        "1",
        "--concurrency",
        "2",
    ])
    .await;
    let run = &objects(&output)[0];
    assert_eq!(run["bench"], "search");
    assert_eq!(number(run, "entries"), 600.0);
    // Every entry, the 5 markers and the 20 end entries are examined.
    for search in ["common", "rare"] {
        assert_eq!(number(run, &format!("{search}_entries_scanned")), 625.0);
        assert_eq!(number(run, &format!("{search}_sessions_scanned")), 20.0);
        assert!(number(run, &format!("{search}_mb_per_second")) > 0.0);
    }
    assert_eq!(number(run, "rare_hits"), 5.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_keeps_starting_and_pruning_sessions_and_samples_the_data_dir() {
    let output = bench(&[
        "churn",
        "--json",
        "--duration",
        "3s",
        "--retained",
        "20",
        "--entries-per-session",
        "50",
        "--sample-every",
        "250ms",
    ])
    .await;
    let run = &objects(&output)[0];
    assert_eq!(run["bench"], "churn");
    let started = number(run, "sessions_started");
    let pruned = number(run, "sessions_pruned");
    let retained = number(run, "sessions_retained");
    // Many more sessions went through than the server keeps: retention
    // pruned them while the run went on.
    assert!(started > 40.0 && pruned > 0.0 && retained > 0.0, "{run}");
    assert_eq!(started, pruned + retained);
    assert_eq!(number(run, "entries"), started * 50.0);
    // One line on stderr per sample.
    assert!(
        output
            .stderr
            .lines()
            .filter(|line| line.starts_with("churn "))
            .count()
            >= 4,
        "stderr: {}",
        output.stderr
    );
    // The ratios are the data dir over the compressed data retained: a
    // data dir no smaller than the end's, over the end's compressed bytes.
    let compressed = number(run, "compressed_retained_bytes");
    let seal = number(run, "seal_ratio");
    assert!(seal > 0.0 && seal < 1.0, "the corpus compresses: {seal}");
    assert!((compressed - number(run, "retained_encoded_bytes") * seal).abs() <= 1e-6 * compressed);
    let last = number(run, "allocated_per_compressed_last");
    assert!(
        (last - number(run, "disk_allocated_bytes") / compressed).abs() <= 1e-9 * last,
        "{run}"
    );
    let max = number(run, "allocated_per_compressed_max");
    assert!(max >= last && number(run, "disk_per_compressed_max") > 0.0);
    assert!(number(run, "max_disk_allocated_bytes") >= number(run, "disk_allocated_bytes"));
    assert_eq!(
        number(run, "within_2x"),
        if max <= 2.0 && number(run, "disk_per_compressed_max") <= 2.0 {
            1.0
        } else {
            0.0
        }
    );
    assert!(number(run, "server_peak_rss_mib") > 0.0);
    // Held against issue 20's target of 2x under churn.
    assert_eq!(run["references"][0]["value"], 2.0);
    assert_eq!(run["references"][0]["target"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_restarts_with_retention_and_times_the_first_pass() {
    let output = bench(&[
        "prune",
        "--json",
        "--sessions",
        "200",
        "--entries-per-session",
        "5",
        "--prune",
        "50",
        "--concurrency",
        "2",
    ])
    .await;
    let run = &objects(&output)[0];
    assert_eq!(run["bench"], "prune");
    assert_eq!(number(run, "entries"), 1_000.0);
    // The bench fails unless exactly these went and stayed.
    assert_eq!(number(run, "sessions_pruned"), 50.0);
    assert_eq!(number(run, "sessions_remaining"), 150.0);
    assert_eq!(run["params"]["retention_max_sessions"], 150);
    let observed = number(run, "prune_seconds");
    assert!(observed > 0.0 && observed < 60.0, "{run}");
    // By the server's clock, the last pruned line comes after the first.
    assert!(number(run, "prune_log_seconds") >= number(run, "pruned_lines_seconds"));
    assert!(number(run, "restart_seconds") > 0.0);
    // The ended sessions' log check starts at SERVING, beside the pass.
    assert!(number(run, "log_check_seconds") >= 0.0);
    assert!(number(run, "disk_allocated_bytes_before") > 0.0);
    assert!(number(run, "disk_allocated_bytes_after") > 0.0);
    assert!(number(run, "server_peak_rss_mib") > 0.0);
    // Issue 20's target is for 2,500 of 10,000 sessions: not held
    // against another shape.
    assert_eq!(run["references"].as_array().map(Vec::len), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_wants_fewer_sessions_pruned_than_stored() {
    let output = bench(&["prune", "--sessions", "10", "--prune", "10"]).await;
    assert_eq!(output.code, Some(1));
    assert!(
        output
            .stderr
            .contains("--prune 10 must be less than --sessions 10"),
        "stderr: {}",
        output.stderr
    );
}
