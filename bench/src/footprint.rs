//! `footprint`: what real log text costs on disk. The corpus (real build,
//! test, service, package-manager and JSON logs in `bench/corpus/`, see its
//! README) is cut into contiguous runs of lines, one run per session (or,
//! with `--entries-per-session`, each session reads that many lines on from
//! its own place in the corpus, wrapping at the end), and appended one
//! entry per line in batches; the sessions are ended, the server seals
//! them (the bench waits until its metrics say it is done), it is stopped
//! cleanly (its last flush), and its data dir is measured. Reports the
//! disk blocks allocated per encoded entry byte (the protobuf
//! size of the `LogEntry` messages sent) and per raw message byte, beside
//! the ingest rate. Always a fresh local server: the data dir must be ours
//! to measure.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::Context as _;
use serde_json::json;
use sessionlog::client::Client;
use sessionlog::pb;
use tokio::time::Instant;

use super::latency::Totals;
use super::local::{self, ServerUnderTest};
use super::reference;
use super::report::{self, ResourceUse, RunReport, Unit};
use super::workload::{self, within};
use super::{EngineArgs, OutputArgs, TargetArgs};

/// The longest the server may take to seal the ended sessions.
const SETTLE_LIMIT: std::time::Duration = std::time::Duration::from_secs(300);

/// The corpus as this crate ships it.
pub(super) const CORPUS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/corpus");

#[derive(Debug, clap::Args)]
pub(super) struct FootprintArgs {
    /// The `sessionlog` binary the local server runs (default: the one
    /// beside this program, else `sessionlog` on PATH).
    #[arg(long, env = "SESSIONLOG_BIN", value_name = "PATH")]
    server_bin: Option<PathBuf>,
    #[command(flatten)]
    engine: EngineArgs,
    /// The directory of log files (`*.log`, `*.jsonl`) to append, one
    /// entry per non-empty line (default: the corpus this bench was built
    /// with).
    #[arg(long, default_value = CORPUS_DIR)]
    corpus: PathBuf,
    /// Sessions the corpus is spread over: each gets a contiguous run of
    /// lines, as a program's session would.
    #[arg(long, default_value_t = 1_000, value_parser = super::at_least_one())]
    sessions: usize,
    /// Append the corpus this many times, each time into `--sessions` new
    /// sessions: a larger store of the same shape.
    #[arg(long, default_value_t = 1, value_parser = super::at_least_one())]
    passes: usize,
    /// Each session gets this many lines instead of its share of the
    /// corpus: the lines from its share's start on, wrapping at the end
    /// (longer sessions of the same text; no line is repeated within a
    /// session while this is at most the corpus).
    #[arg(long, value_parser = super::at_least_one())]
    entries_per_session: Option<usize>,
    /// Entries per append.
    #[arg(long, default_value_t = 100, value_parser = super::at_least_one())]
    batch: usize,
    /// Clients appending at once, each to its own sessions in turn.
    #[arg(long, default_value_t = 4, value_parser = super::at_least_one())]
    concurrency: usize,
    #[command(flatten)]
    output: OutputArgs,
}

pub(super) async fn run(args: FootprintArgs) -> anyhow::Result<()> {
    let corpus = Arc::new(Corpus::load(&args.corpus)?);
    anyhow::ensure!(
        !corpus.lines.is_empty(),
        "{} holds no log lines (*.log or *.jsonl files)",
        args.corpus.display()
    );
    super::repeat(&args.output, || one_run(&args, corpus.clone())).await
}

/// One line of the corpus and where it came from.
#[derive(Debug)]
pub(super) struct Line {
    text: String,
    /// The file's name without its extension (`postgresql`, `dpkg`).
    kind: Arc<str>,
}

/// Every non-empty line of the corpus files, files in name order.
#[derive(Debug)]
pub(super) struct Corpus {
    pub(super) lines: Vec<Line>,
    pub(super) files: usize,
    pub(super) bytes: u64,
}

impl Corpus {
    pub(super) fn load(dir: &Path) -> anyhow::Result<Self> {
        let mut paths = Vec::new();
        for item in std::fs::read_dir(dir)
            .with_context(|| format!("cannot read the corpus directory {}", dir.display()))?
        {
            let path = item
                .with_context(|| format!("cannot list {}", dir.display()))?
                .path();
            let is_log = path
                .extension()
                .is_some_and(|extension| extension == "log" || extension == "jsonl");
            if is_log && path.is_file() {
                paths.push(path);
            }
        }
        paths.sort();
        let mut corpus = Self {
            lines: Vec::new(),
            files: paths.len(),
            bytes: 0,
        };
        for path in &paths {
            let raw =
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            corpus.bytes += u64::try_from(raw.len()).unwrap_or(u64::MAX);
            let kind: Arc<str> = path
                .file_stem()
                .map_or_else(|| "corpus".into(), |stem| stem.to_string_lossy().into());
            // Logs are not always clean UTF-8 (a terminal's output): the
            // odd byte becomes U+FFFD rather than failing the bench.
            let text = String::from_utf8_lossy(&raw);
            corpus.lines.extend(
                text.lines()
                    .filter(|line| !line.trim().is_empty())
                    .map(|line| Line {
                        text: line.to_owned(),
                        kind: kind.clone(),
                    }),
            );
        }
        Ok(corpus)
    }

    /// Session `index` of `sessions` (counted over every pass): its
    /// contiguous share of the lines, or `per_session` lines from the
    /// share's start on, wrapping at the corpus's end.
    pub(super) fn share(
        &self,
        index: usize,
        sessions: usize,
        per_session: Option<usize>,
    ) -> Vec<&Line> {
        let total = self.lines.len();
        let index = index % sessions;
        let start = index * total / sessions;
        match per_session {
            None => self.lines[start..(index + 1) * total / sessions]
                .iter()
                .collect(),
            Some(count) => (0..count)
                .map(|offset| &self.lines[(start + offset) % total])
                .collect(),
        }
    }
}

/// The entry a line becomes: the line is the message; the level is read
/// from the line where it says one, and the logger is a JSON line's
/// `target` (or `logger`), else the file it came from.
pub(super) fn entry(line: &Line, now: SystemTime) -> pb::LogEntry {
    let json = line
        .text
        .starts_with('{')
        .then(|| serde_json::from_str::<serde_json::Value>(&line.text).ok())
        .flatten();
    let field = |name: &str| {
        json.as_ref()
            .and_then(|object| object.get(name))
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
    };
    let level = field("level").map_or_else(|| level_in_text(&line.text), |name| level_named(&name));
    let logger = field("target")
        .or_else(|| field("logger"))
        .unwrap_or_else(|| line.kind.to_string());
    pb::LogEntry {
        timestamp: Some(now.into()),
        level: level.into(),
        logger,
        message: line.text.clone(),
        ..Default::default()
    }
}

fn level_named(name: &str) -> pb::Level {
    match name.to_ascii_lowercase().as_str() {
        "trace" => pb::Level::Trace,
        "debug" | "verbose" | "silly" => pb::Level::Debug,
        "warn" | "warning" => pb::Level::Warn,
        "error" | "err" => pb::Level::Error,
        "fatal" | "critical" | "panic" => pb::Level::Critical,
        _ => pb::Level::Info,
    }
}

/// The level a plain-text line shows: PostgreSQL's `ERROR:`, cargo's
/// `warning:`, npm's `npm verbose`, and the like. Info otherwise.
fn level_in_text(text: &str) -> pb::Level {
    const MARKS: [(&str, pb::Level); 9] = [
        ("FATAL:", pb::Level::Critical),
        ("PANIC:", pb::Level::Critical),
        ("ERROR:", pb::Level::Error),
        ("error:", pb::Level::Error),
        ("error[", pb::Level::Error),
        ("WARNING:", pb::Level::Warn),
        ("warning:", pb::Level::Warn),
        ("DEBUG", pb::Level::Debug),
        ("npm verbose", pb::Level::Debug),
    ];
    MARKS
        .iter()
        .find(|(mark, _)| text.contains(mark))
        .map_or(pb::Level::Info, |&(_, level)| level)
}

async fn one_run(args: &FootprintArgs, corpus: Arc<Corpus>) -> anyhow::Result<RunReport> {
    let target = TargetArgs::local(args.server_bin.clone(), args.engine.clone());
    let server = ServerUnderTest::start(&target).await?;
    let measured = measure(args, &corpus, &server).await;
    // A clean stop is the server's last flush: what is on disk then is
    // what the sessions take at rest.
    let stopped = server.stop_keeping_data().await;
    let mut report = measured?;
    let data_dir = stopped?.context("a local server has a data dir")?;
    let disk = DiskUse::of(&data_dir.path().join("data"))?;
    push_disk(&mut report, disk);
    Ok(report)
}

/// Appends `lines` to `session_id` as one batch, one entry per line, and
/// checks the answer: exactly those entries stored, not a duplicate.
pub(super) async fn append_lines(
    client: &mut Client,
    session_id: &str,
    lines: &[&Line],
    totals: &mut Totals,
) -> anyhow::Result<()> {
    let now = SystemTime::now();
    let entries: Vec<pb::LogEntry> = lines.iter().map(|line| entry(line, now)).collect();
    let bytes = workload::payload_bytes(&entries);
    let count = u64::try_from(entries.len()).context("batch size")?;
    let request = pb::AppendRequest {
        session_id: session_id.to_owned(),
        entries,
        ..Default::default()
    };
    let sent = Instant::now();
    let answer = within(
        || format!("append to session `{session_id}` failed"),
        client.append(request),
    )
    .await?;
    totals.latency.record(sent.elapsed());
    let stored = (answer.last_seq + 1).saturating_sub(answer.first_seq);
    anyhow::ensure!(
        stored == count && !answer.duplicate,
        "an append of {count} entries to `{session_id}` was answered with seqs {}..={}",
        answer.first_seq,
        answer.last_seq
    );
    totals.entries += count;
    totals.bytes += bytes;
    totals.appends += 1;
    Ok(())
}

/// One client's sessions, appended one after the other.
pub(super) async fn client_appends(
    mut client: Client,
    corpus: Arc<Corpus>,
    sessions: Vec<(String, usize)>,
    total_sessions: usize,
    per_session: Option<usize>,
    batch: usize,
) -> anyhow::Result<Totals> {
    let mut totals = Totals::new();
    for (session_id, index) in sessions {
        for lines in corpus
            .share(index, total_sessions, per_session)
            .chunks(batch)
        {
            append_lines(&mut client, &session_id, lines, &mut totals).await?;
        }
    }
    Ok(totals)
}

async fn measure(
    args: &FootprintArgs,
    corpus: &Arc<Corpus>,
    server: &ServerUnderTest,
) -> anyhow::Result<RunReport> {
    let mut control = server.connect().await?.sessions();
    let session_count = args
        .sessions
        .checked_mul(args.passes)
        .context("--sessions x --passes is too large")?;
    let sessions = workload::start_sessions(&mut control, session_count, "footprint").await?;
    let mut shares: Vec<Vec<(String, usize)>> = vec![Vec::new(); args.concurrency];
    for (index, session_id) in sessions.iter().enumerate() {
        shares[index % args.concurrency].push((session_id.clone(), index));
    }
    let mut clients = Vec::with_capacity(args.concurrency);
    for _ in 0..args.concurrency {
        clients.push(server.connect().await?.sessions());
    }

    let server_before = server.sample()?;
    let client_before = local::sample(std::process::id()).ok();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (client, share) in clients.into_iter().zip(shares) {
        tasks.spawn(client_appends(
            client,
            corpus.clone(),
            share,
            args.sessions,
            args.entries_per_session,
            args.batch,
        ));
    }
    let mut totals = Totals::new();
    while let Some(done) = tasks.join_next().await {
        totals.add(&done.context("a footprint client failed")??);
    }
    let elapsed = started.elapsed();
    let server_after = server.sample()?;
    let client_after = local::sample(std::process::id()).ok();

    let stored = workload::stored_entries(&mut control, &sessions).await?;
    anyhow::ensure!(
        stored == totals.entries,
        "the server holds {stored} entries in the bench sessions, but {} appends were acknowledged",
        totals.entries
    );
    workload::end_sessions(&mut control, &sessions).await?;
    // Ended sessions are what the disk target is about: measured once the
    // server has sealed them and collected the space that freed.
    let settled = server.wait_settled(SETTLE_LIMIT).await?;
    // What sled counts live in its log: the floor under the data dir,
    // the rest being dead space it has not reused yet.
    let live_bytes = match server.metrics_text().await? {
        Some(text) => local::metric(&text, "sessionlog_store_live_bytes")?,
        None => anyhow::bail!("the local server has not named its metrics listener"),
    };

    let mut report = RunReport::new(
        "footprint",
        vec![
            ("corpus", json!(args.corpus.display().to_string())),
            ("corpus_files", json!(corpus.files)),
            ("sessions", json!(args.sessions)),
            ("passes", json!(args.passes)),
            ("entries_per_session", json!(args.entries_per_session)),
            ("batch", json!(args.batch)),
            ("concurrency", json!(args.concurrency)),
            ("fsync", json!(args.engine.fsync_name())),
            ("server", json!(server.describe())),
        ],
    );
    let raw_bytes: u64 = (0..session_count)
        .flat_map(|index| corpus.share(index, args.sessions, args.entries_per_session))
        .map(|line| u64::try_from(line.text.len()).unwrap_or(u64::MAX))
        .sum();
    report.push(
        "entries",
        "entries (a corpus line each)",
        Unit::Count,
        report::approx(totals.entries),
    );
    report.push(
        "corpus_bytes",
        "corpus file bytes",
        Unit::Count,
        report::approx(corpus.bytes),
    );
    report.push(
        "raw_message_bytes",
        "raw message bytes",
        Unit::Count,
        report::approx(raw_bytes),
    );
    report.push(
        "encoded_entry_bytes",
        "encoded entry bytes (protobuf)",
        Unit::Count,
        report::approx(totals.bytes),
    );
    report.push_throughput(totals.entries, totals.bytes, elapsed);
    report.push(
        "live_bytes",
        "sled's live bytes, settled",
        Unit::Count,
        live_bytes,
    );
    if totals.bytes > 0 {
        report.push(
            "live_per_encoded_byte",
            "sled's live bytes / encoded entry byte",
            Unit::Ratio,
            live_bytes / report::approx(totals.bytes),
        );
    }
    report.push(
        "settle_seconds",
        "sealing and collection after the last end",
        Unit::Seconds,
        settled.as_secs_f64(),
    );
    report
        .figures
        .extend(totals.latency.figures("append", "append latency"));
    report::push_cpu_and_memory(
        &mut report,
        totals.entries,
        elapsed,
        ResourceUse {
            before: server_before,
            after: server_after,
        },
        server.idle(),
        ResourceUse {
            before: client_before,
            after: client_after,
        },
    );
    report.push(
        "appends",
        "appends",
        Unit::Count,
        report::approx(totals.appends),
    );
    report.references = reference::STORAGE_TARGET.to_vec();
    Ok(report)
}

/// What a directory takes on disk: its files' sizes (as `du -sb` adds
/// them up) and the blocks the filesystem gave them (as `du -s`, which
/// counts holes in sparse files as nothing and the tail of the last block
/// as used).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct DiskUse {
    pub(super) file_bytes: u64,
    pub(super) allocated_bytes: u64,
    pub(super) files: u64,
}

impl DiskUse {
    /// A file or directory removed while the walk is under way (a
    /// running server drops segment files) counts as nothing.
    pub(super) fn of(dir: &Path) -> anyhow::Result<Self> {
        use std::os::unix::fs::MetadataExt as _;
        let mut total = Self::default();
        let mut pending = vec![dir.to_owned()];
        let gone = |err: &std::io::Error| err.kind() == std::io::ErrorKind::NotFound;
        let mut top = true;
        while let Some(dir) = pending.pop() {
            let items = match std::fs::read_dir(&dir) {
                Err(err) if gone(&err) && !top => continue,
                items => {
                    items.with_context(|| format!("cannot read the data dir {}", dir.display()))?
                }
            };
            top = false;
            for item in items {
                let item = item.with_context(|| format!("cannot list {}", dir.display()))?;
                let metadata = match item.metadata() {
                    Err(err) if gone(&err) => continue,
                    metadata => metadata
                        .with_context(|| format!("cannot stat {}", item.path().display()))?,
                };
                if metadata.is_dir() {
                    pending.push(item.path());
                } else {
                    total.file_bytes += metadata.len();
                    // st_blocks is in 512-byte units whatever the block size.
                    total.allocated_bytes += metadata.blocks() * 512;
                    total.files += 1;
                }
            }
        }
        Ok(total)
    }
}

/// The data dir's size and its ratios to what went in. The headline
/// figures divide the blocks the filesystem gave it (`du -s`: what fills a
/// volume); sled's file keeps the size of its largest extent with holes
/// punched where segments are free, so the file sizes (`du -sb`) are
/// beside them.
fn push_disk(report: &mut RunReport, disk: DiskUse) {
    let per = |bytes: u64, key: &str| {
        let of = report.value(key).unwrap_or(0.0);
        if of > 0.0 {
            report::approx(bytes) / of
        } else {
            0.0
        }
    };
    let figures = [
        (
            "disk_per_encoded_byte",
            "disk (allocated) / encoded entry byte",
            per(disk.allocated_bytes, "encoded_entry_bytes"),
        ),
        (
            "disk_per_raw_byte",
            "disk (allocated) / raw message byte",
            per(disk.allocated_bytes, "raw_message_bytes"),
        ),
        (
            "file_size_per_encoded_byte",
            "file sizes / encoded entry byte",
            per(disk.file_bytes, "encoded_entry_bytes"),
        ),
    ];
    report.push(
        "disk_bytes",
        "data dir, file sizes (du -sb)",
        Unit::Count,
        report::approx(disk.file_bytes),
    );
    report.push(
        "disk_allocated_bytes",
        "data dir, allocated blocks (du)",
        Unit::Count,
        report::approx(disk.allocated_bytes),
    );
    report.push(
        "disk_files",
        "data dir files",
        Unit::Count,
        report::approx(disk.files),
    );
    for (key, label, value) in figures {
        report.push(key, label, Unit::Ratio, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str, kind: &str) -> Line {
        Line {
            text: text.to_owned(),
            kind: kind.into(),
        }
    }

    #[test]
    fn levels_and_loggers_come_from_the_line() {
        let now = SystemTime::now();
        let pg = entry(
            &line(
                "2026-12-03 14:53:02.120 UTC [11752] postgres@bench ERROR:  relation \"missing_table\" does not exist",
                "postgresql",
            ),
            now,
        );
        assert_eq!(pg.level(), pb::Level::Error);
        assert_eq!(pg.logger, "postgresql");
        let json = entry(
            &line(
                r#"{"timestamp":"t","level":"DEBUG","fields":{"message":"x"},"target":"sled::meta"}"#,
                "sessionlog-server",
            ),
            now,
        );
        assert_eq!(json.level(), pb::Level::Debug);
        assert_eq!(json.logger, "sled::meta");
        let plain = entry(
            &line("2025-06-24 14:36:25 startup archives unpack", "dpkg"),
            now,
        );
        assert_eq!(plain.level(), pb::Level::Info);
        assert_eq!(plain.message, "2025-06-24 14:36:25 startup archives unpack");
    }

    #[test]
    fn the_shares_cover_every_line_once() {
        let corpus = Corpus {
            lines: (0..10).map(|n| line(&n.to_string(), "x")).collect(),
            files: 1,
            bytes: 0,
        };
        let shares: Vec<usize> = (0..3)
            .map(|index| corpus.share(index, 3, None).len())
            .collect();
        assert_eq!(shares, [3, 3, 4]);
        // More sessions than lines: some sessions get none.
        let total: usize = (0..15)
            .map(|index| corpus.share(index, 15, None).len())
            .sum();
        assert_eq!(total, 10);
    }

    #[test]
    fn longer_sessions_read_on_from_their_share_and_wrap() {
        let corpus = Corpus {
            lines: (0..10).map(|n| line(&n.to_string(), "x")).collect(),
            files: 1,
            bytes: 0,
        };
        let texts = |index| -> Vec<String> {
            corpus
                .share(index, 3, Some(5))
                .iter()
                .map(|line| line.text.clone())
                .collect()
        };
        assert_eq!(texts(0), ["0", "1", "2", "3", "4"]);
        assert_eq!(texts(2), ["6", "7", "8", "9", "0"]);
    }
}
