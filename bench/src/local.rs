//! The server under test: a fresh local `sessionlog serve` on `127.0.0.1:0`
//! in a temporary data directory, or a running server named by `--server`.
//! The local server's binary is `--server-bin` (SESSIONLOG_BIN), else the
//! `sessionlog` beside this program (where cargo builds both), else the
//! first on PATH. Reads a server process's CPU time and memory from
//! `/proc/<pid>/stat` and `/proc/<pid>/status` when its pid is known, and a
//! local server's metrics and the log lines a workload asks it to watch.

use std::collections::{HashMap, VecDeque};
use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use sessionlog::client::{ClientTls, Connection};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, ChildStderr};
use tokio::time::Instant;

use super::{EngineArgs, TargetArgs};

/// How long a local server may take to start serving.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long it may take to stop after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Server log lines kept to explain a failure.
const KEPT_LOG_LINES: usize = 20;

/// A server process's resource use at one moment.
#[derive(Debug, Clone, Copy)]
pub(super) struct ProcessSample {
    /// User plus system CPU time since the process started.
    pub(super) cpu_seconds: f64,
    /// Resident memory now (VmRSS).
    pub(super) rss_bytes: u64,
    /// The most resident memory so far (VmHWM).
    pub(super) peak_rss_bytes: u64,
}

/// Reads `pid`'s CPU time and memory.
pub(super) fn sample(pid: u32) -> anyhow::Result<ProcessSample> {
    let stat_path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&stat_path)
        .with_context(|| format!("cannot read {stat_path} (is process {pid} on this host?)"))?;
    let ticks =
        cpu_ticks(&stat).with_context(|| format!("{stat_path} is not in the usual form"))?;
    let status_path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&status_path)
        .with_context(|| format!("cannot read {status_path}"))?;
    let kib = |field| {
        status_kib(&status, field).with_context(|| format!("{status_path} has no `{field}` line"))
    };
    Ok(ProcessSample {
        cpu_seconds: super::figures::approx(ticks) / super::figures::approx(ticks_per_second()),
        rss_bytes: kib("VmRSS")? * 1024,
        peak_rss_bytes: kib("VmHWM")? * 1024,
    })
}

/// utime + stime: fields 14 and 15 of `/proc/<pid>/stat`, counted after
/// the command name, which is in parentheses and may hold spaces.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let (_, after_name) = stat.rsplit_once(')')?;
    let mut fields = after_name.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(user + system)
}

/// A `Name:   1234 kB` line of `/proc/<pid>/status`.
fn status_kib(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let value = line.strip_prefix(field)?.strip_prefix(':')?;
        value.split_whitespace().next()?.parse().ok()
    })
}

fn ticks_per_second() -> u64 {
    rustix::param::clock_ticks_per_second().max(1)
}

/// How often a watched message came in a local server's log, and the
/// server's own timestamps of its first and last line.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct LogMark {
    pub(super) count: u64,
    pub(super) first: Option<SystemTime>,
    pub(super) last: Option<SystemTime>,
}

impl LogMark {
    fn add(&mut self, at: Option<SystemTime>) {
        self.count += 1;
        if self.first.is_none() {
            self.first = at;
        }
        self.last = at;
    }
}

/// The messages a workload asked to watch, by message. Only those: a
/// server that puts values in its messages would grow an all-message map
/// for as long as it runs.
type LogMarks = Arc<Mutex<HashMap<String, LogMark>>>;

/// A local server this bench started, and everything that goes with it.
#[derive(Debug)]
struct LocalServer {
    child: Child,
    pid: u32,
    log_tail: Arc<Mutex<VecDeque<String>>>,
    /// Its `/metrics` listener's address, once its log has named it.
    metrics: Arc<Mutex<Option<String>>>,
    marks: LogMarks,
    /// When the process was spawned, and when this bench read its
    /// `serving` line (what "ready" means here).
    spawned_at: Instant,
    served_at: Instant,
    /// Removed on drop, after the child (declared first) is gone; `stop`
    /// hands it over instead.
    data_dir: tempfile::TempDir,
}

/// Where the load goes, and how to watch the process serving it.
#[derive(Debug)]
pub(super) struct ServerUnderTest {
    url: String,
    token_file: Option<PathBuf>,
    pid: Option<u32>,
    local: Option<LocalServer>,
    /// Right after start-up (local servers only).
    idle: Option<ProcessSample>,
}

impl ServerUnderTest {
    /// Starts a local server, or takes the one `--server` names.
    pub(super) async fn start(target: &TargetArgs) -> anyhow::Result<Self> {
        Self::start_with(target, &[]).await
    }

    /// As `start`, with `server_args` added to a local server's `serve`
    /// flags (a workload's own settings, such as retention); unused with
    /// `--server`.
    pub(super) async fn start_with(
        target: &TargetArgs,
        server_args: &[String],
    ) -> anyhow::Result<Self> {
        if let Some(url) = &target.server {
            return Ok(Self {
                url: url.clone(),
                token_file: target.token_file.clone(),
                pid: target.server_pid,
                local: None,
                idle: None,
            });
        }
        let program = server_program(target.server_bin.as_deref())?;
        let data_dir = temp_dir(target.engine.temp_dir.as_deref())?;
        let local =
            LocalServer::start(&program, &target.engine, data_dir, server_args, &[]).await?;
        let (url, pid) = (local.url.clone(), local.server.pid);
        // A moment for start-up allocations to settle before "idle" is read.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let idle = sample(pid).ok();
        Ok(Self {
            url,
            token_file: None,
            pid: Some(pid),
            local: Some(local.server),
            idle,
        })
    }

    /// Starts a local server again on the database a stopped one left
    /// (`stop_keeping_data`), with `server_args` added to its `serve`
    /// flags, counting the log lines whose message is one of `watched`
    /// (see `log_mark`). Returns as soon as the `serving` line is read: no
    /// pause for an idle sample, so what the server does right after
    /// start-up can be timed from `served_at`.
    pub(super) async fn restart_in(
        target: &TargetArgs,
        data_dir: tempfile::TempDir,
        server_args: &[String],
        watched: &[&str],
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(
            target.server.is_none(),
            "only a local server is started again on its data dir"
        );
        let program = server_program(target.server_bin.as_deref())?;
        let local =
            LocalServer::start(&program, &target.engine, data_dir, server_args, watched).await?;
        Ok(Self {
            url: local.url,
            token_file: None,
            pid: Some(local.server.pid),
            local: Some(local.server),
            idle: None,
        })
    }

    pub(super) async fn connect(&self) -> anyhow::Result<Connection> {
        Connection::connect_with(&self.url, self.token_file.as_deref(), &ClientTls::default()).await
    }

    /// The server's CPU and memory now, when its pid is known.
    pub(super) fn sample(&self) -> anyhow::Result<Option<ProcessSample>> {
        self.pid.map(sample).transpose()
    }

    /// Resident memory right after a local server started.
    pub(super) fn idle(&self) -> Option<ProcessSample> {
        self.idle
    }

    /// Waits until a local server's sealer has nothing left to do (its
    /// metrics read no session waiting to be sealed and no dead space
    /// being relocated, twice in a row), for at most `limit`; returns how
    /// long that took.
    pub(super) async fn wait_settled(&self, limit: Duration) -> anyhow::Result<Duration> {
        let started = tokio::time::Instant::now();
        let mut quiet = 0;
        while quiet < 2 {
            anyhow::ensure!(
                started.elapsed() < limit,
                "the local server was still sealing or relocating after {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
            let Some(text) = self.metrics_text().await? else {
                continue;
            };
            let [sessions, reclaiming] = [
                "sessionlog_seal_backlog_sessions",
                "sessionlog_store_reclaiming",
            ]
            .map(|name| metric(&text, name));
            let idle = sessions? == 0.0 && reclaiming? == 0.0;
            quiet = if idle { quiet + 1 } else { 0 };
        }
        Ok(started.elapsed())
    }

    /// A local server's `/metrics` text, or `None` while its log has not
    /// named the metrics listener yet.
    pub(super) async fn metrics_text(&self) -> anyhow::Result<Option<String>> {
        let local = self
            .local
            .as_ref()
            .context("only a local server's metrics are read")?;
        let address = local
            .metrics
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let Some(address) = address else {
            return Ok(None);
        };
        let text = tokio::time::timeout(Duration::from_secs(5), http_get(&address, "/metrics"))
            .await
            .map_err(|_| {
                anyhow::anyhow!("the local server's /metrics did not answer within 5 s")
            })??;
        Ok(Some(text))
    }

    /// When this bench read a local server's `serving` line.
    pub(super) fn served_at(&self) -> Option<Instant> {
        self.local.as_ref().map(|local| local.served_at)
    }

    /// A local server's start-up: from spawning it to reading its
    /// `serving` line (sled's recovery and loading the sessions).
    pub(super) fn startup(&self) -> Option<Duration> {
        self.local
            .as_ref()
            .map(|local| local.served_at - local.spawned_at)
    }

    /// The lines so far whose message is `message`, one of those
    /// `restart_in` was asked to watch.
    pub(super) fn log_mark(&self, message: &str) -> Option<LogMark> {
        let local = self.local.as_ref()?;
        let marks = local.marks.lock().unwrap_or_else(PoisonError::into_inner);
        marks.get(message).copied()
    }

    /// A local server's database directory, while it runs.
    pub(super) fn data_dir(&self) -> Option<PathBuf> {
        self.local
            .as_ref()
            .map(|local| local.data_dir.path().join("data"))
    }

    /// Whether the server (and its data) goes away after the run.
    pub(super) fn is_local(&self) -> bool {
        self.local.is_some()
    }

    /// `local` or the URL, for the report.
    pub(super) fn describe(&self) -> String {
        if self.local.is_some() {
            "local".to_owned()
        } else {
            self.url.clone()
        }
    }

    /// Stops a local server with SIGTERM and requires a clean exit.
    pub(super) async fn stop(self) -> anyhow::Result<()> {
        self.stop_keeping_data().await.map(drop)
    }

    /// As `stop`, but hands over a local server's temporary directory (its
    /// database is `data` in it) instead of removing it, to be measured.
    pub(super) async fn stop_keeping_data(self) -> anyhow::Result<Option<tempfile::TempDir>> {
        match self.local {
            Some(local) => local.stop().await.map(Some),
            None => Ok(None),
        }
    }
}

struct Started {
    server: LocalServer,
    url: String,
}

impl LocalServer {
    async fn start(
        program: &Path,
        engine: &EngineArgs,
        data_dir: tempfile::TempDir,
        server_args: &[String],
        watched: &[&str],
    ) -> anyhow::Result<Started> {
        let mut command = tokio::process::Command::new(program);
        command
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--log-format", "json"])
            .args(["--metrics-listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(data_dir.path().join("data"))
            .args(["--fsync", engine.fsync_name()])
            .arg("--flush-interval")
            .arg(humantime::format_duration(engine.flush_interval).to_string())
            .args(["--cache-size", &engine.cache_size.to_string()])
            .args(server_args)
            // The "serving" line that names the port is logged at info.
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // The server under test is the one these flags describe, not one
        // shaped by whatever SESSIONLOG_* variables this shell has.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("SESSIONLOG_") {
                command.env_remove(name);
            }
        }
        let spawned_at = Instant::now();
        let mut child = command.spawn().with_context(|| {
            format!(
                "cannot start a local server with `{}` (set by --server-bin or SESSIONLOG_BIN)",
                program.display()
            )
        })?;
        let pid = child.id().context("the local server exited at once")?;
        let stderr = child.stderr.take().context("stderr is piped")?;
        let log_tail = Arc::new(Mutex::new(VecDeque::new()));
        let metrics = Arc::new(Mutex::new(None));
        let marks: LogMarks = Arc::new(Mutex::new(
            watched
                .iter()
                .map(|message| ((*message).to_owned(), LogMark::default()))
                .collect(),
        ));
        let log = ServerLog {
            tail: log_tail.clone(),
            metrics: metrics.clone(),
            marks: marks.clone(),
        };
        let listen = tokio::time::timeout(START_TIMEOUT, serving_address(stderr, log))
            .await
            .map_err(|_| anyhow::anyhow!("the local server did not start within {START_TIMEOUT:?}"))
            .and_then(|found| found);
        let server = Self {
            child,
            pid,
            log_tail,
            metrics,
            marks,
            spawned_at,
            served_at: Instant::now(),
            data_dir,
        };
        match listen {
            Ok(listen) => Ok(Started {
                url: format!("http://{listen}"),
                server,
            }),
            Err(err) => Err(err.context(format!(
                "the local server's log ends with:\n{}",
                server.log_text()
            ))),
        }
    }

    fn log_text(&self) -> String {
        let lines = self.log_tail.lock().unwrap_or_else(PoisonError::into_inner);
        lines.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// Stops the server; its directory outlives it only in the answer.
    async fn stop(mut self) -> anyhow::Result<tempfile::TempDir> {
        let pid = i32::try_from(self.pid)
            .ok()
            .and_then(rustix::process::Pid::from_raw)
            .context("the local server's pid is not valid")?;
        // It may have died already; `wait` below says how.
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let status = match tokio::time::timeout(STOP_TIMEOUT, self.child.wait()).await {
            Ok(status) => status.context("cannot wait for the local server")?,
            Err(_) => {
                self.child
                    .kill()
                    .await
                    .context("cannot kill the local server")?;
                anyhow::bail!(
                    "the local server did not stop within {STOP_TIMEOUT:?} of SIGTERM; killed it. Its log ends with:\n{}",
                    self.log_text()
                );
            }
        };
        anyhow::ensure!(
            status.success(),
            "the local server exited with {status}; its log ends with:\n{}",
            self.log_text()
        );
        Ok(self.data_dir)
    }
}

/// Where a local server's log lines go as they are read.
#[derive(Debug)]
struct ServerLog {
    /// The last lines, to explain a failure.
    tail: Arc<Mutex<VecDeque<String>>>,
    metrics: Arc<Mutex<Option<String>>>,
    marks: LogMarks,
}

impl ServerLog {
    /// Keeps `line`; returns the address when it is the `serving` line.
    fn keep(&self, line: &str) -> Option<String> {
        let parsed = LogLine::parse(line);
        if let Some(parsed) = &parsed {
            if let Some(mark) = self
                .marks
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get_mut(&parsed.message)
            {
                mark.add(parsed.timestamp);
            }
            if parsed.message == "serving metrics"
                && let Some(address) = &parsed.listen
            {
                *self.metrics.lock().unwrap_or_else(PoisonError::into_inner) =
                    Some(address.clone());
            }
        }
        let mut tail = self.tail.lock().unwrap_or_else(PoisonError::into_inner);
        if tail.len() == KEPT_LOG_LINES {
            tail.pop_front();
        }
        tail.push_back(line.to_owned());
        parsed
            .filter(|parsed| parsed.message == "serving")
            .and_then(|parsed| parsed.listen)
    }
}

/// Reads the JSON log until the `serving` line and returns its address;
/// then keeps draining the log (a full pipe would stall the server),
/// remembering the last lines.
async fn serving_address(stderr: ChildStderr, log: ServerLog) -> anyhow::Result<String> {
    let mut lines = BufReader::new(stderr).lines();
    loop {
        let line = lines
            .next_line()
            .await
            .context("cannot read the local server's log")?
            .context("the local server exited before it served")?;
        if let Some(listen) = log.keep(&line) {
            tokio::spawn(async move {
                while let Ok(Some(line)) = lines.next_line().await {
                    log.keep(&line);
                }
            });
            return Ok(listen);
        }
    }
}

/// What the bench reads from one JSON log line.
#[derive(Debug, PartialEq)]
struct LogLine {
    message: String,
    /// Its `listen` field (`serving`, `serving metrics`).
    listen: Option<String>,
    /// When the server logged it, by its own clock (RFC 3339, UTC).
    timestamp: Option<SystemTime>,
}

impl LogLine {
    fn parse(line: &str) -> Option<Self> {
        let log: serde_json::Value = serde_json::from_str(line).ok()?;
        let fields = log.get("fields")?;
        Some(Self {
            message: fields.get("message")?.as_str()?.to_owned(),
            listen: fields
                .get("listen")
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned),
            timestamp: log
                .get("timestamp")
                .and_then(serde_json::Value::as_str)
                .and_then(|at| humantime::parse_rfc3339_weak(at).ok()),
        })
    }
}

/// The body of `GET path` from `address` over plain HTTP/1.0.
async fn http_get(address: &str, path: &str) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .with_context(|| format!("cannot reach the local server's metrics at {address}"))?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").as_bytes())
        .await?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await?;
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .context("the metrics answer has no body")?;
    anyhow::ensure!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "GET {path} answered {}",
        head.lines().next().unwrap_or_default()
    );
    Ok(body.to_owned())
}

/// An unlabelled metric of the local server's, by its exposed name.
pub(super) fn metric(text: &str, name: &str) -> anyhow::Result<f64> {
    gauge(text, name).with_context(|| {
        format!("the local server's metrics have no `{name}` (a server older than this bench?)")
    })
}

/// A metric of the local server's summed over its labels (a counter
/// family such as `sessionlog_pruned_sessions_total{reason}`); zero
/// while no label set has been counted, as such a family is then absent.
pub(super) fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            // A label value may hold spaces: the value follows the last `}`.
            let value = match rest.strip_prefix('{') {
                Some(labelled) => labelled.rsplit_once('}')?.1,
                None => rest.strip_prefix(' ')?,
            };
            value.split_whitespace().next()?.parse::<f64>().ok()
        })
        .sum()
}

/// The value of an unlabelled metric in Prometheus text.
fn gauge(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

/// The `sessionlog` binary a local server runs: `explicit` (--server-bin
/// or SESSIONLOG_BIN) as given, else the one beside this program, else the
/// first on PATH.
fn server_program(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(program) = explicit {
        return Ok(program.to_owned());
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_owned));
    find_server(beside.as_deref(), std::env::var_os("PATH").as_deref()).with_context(|| {
        let looked_in = beside.map_or_else(String::new, |dir| format!(" in {} or", dir.display()));
        format!(
            "cannot find the `sessionlog` binary{looked_in} on PATH to run a local server; \
             name it with --server-bin PATH (or SESSIONLOG_BIN), or bench a running server \
             with --server URL"
        )
    })
}

/// The first executable `sessionlog` in `beside`, then in the directories
/// of `path_var` (a PATH value).
fn find_server(beside: Option<&Path>, path_var: Option<&OsStr>) -> Option<PathBuf> {
    let name = format!("sessionlog{}", std::env::consts::EXE_SUFFIX);
    beside
        .map(Path::to_owned)
        .into_iter()
        .chain(path_var.into_iter().flat_map(std::env::split_paths))
        .map(|dir| dir.join(&name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path)
        .is_ok_and(|metadata| metadata.is_file() && metadata.permissions().mode() & 0o111 != 0)
}

/// A fresh directory for one run's database, removed when dropped.
pub(super) fn temp_dir(parent: Option<&Path>) -> anyhow::Result<tempfile::TempDir> {
    let mut builder = tempfile::Builder::new();
    builder.prefix("sessionlog-bench-");
    match parent {
        Some(parent) => builder
            .tempdir_in(parent)
            .with_context(|| format!("cannot make a directory in {}", parent.display())),
        None => builder
            .tempdir()
            .context("cannot make a temporary directory"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_read_after_the_command_name() {
        let stat = "4242 (a (weird) name) S 1 4242 4242 0 -1 4194560 500 0 0 0 \
                    170 30 0 0 20 0 4 0 123 456789 1234 18446744073709551615";
        assert_eq!(cpu_ticks(stat), Some(200));
        assert_eq!(cpu_ticks("garbage"), None);
    }

    #[test]
    fn status_lines_give_kib() {
        let status = "Name:\tsessionlog\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(status_kib(status, "VmHWM"), Some(20_480));
        assert_eq!(status_kib(status, "VmRSS"), Some(10_240));
        assert_eq!(status_kib(status, "VmSwap"), None);
    }

    #[test]
    fn this_process_can_be_sampled() {
        let now = sample(std::process::id()).expect("/proc of this process");
        assert!(now.rss_bytes > 0 && now.peak_rss_bytes >= now.rss_bytes);
    }

    /// An executable (or, with `mode` 0o644, a plain) file `sessionlog` in
    /// a new directory.
    fn dir_with_server(mode: u32) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sessionlog");
        std::fs::write(&path, "#!/bin/sh\n").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        dir
    }

    #[test]
    fn the_server_beside_this_program_comes_before_path() {
        let beside = dir_with_server(0o755);
        let on_path = dir_with_server(0o755);
        let path_var = std::env::join_paths([on_path.path()]).expect("PATH");
        assert_eq!(
            find_server(Some(beside.path()), Some(&path_var)),
            Some(beside.path().join("sessionlog"))
        );
        let empty = tempfile::tempdir().expect("temp dir");
        assert_eq!(
            find_server(Some(empty.path()), Some(&path_var)),
            Some(on_path.path().join("sessionlog"))
        );
    }

    #[test]
    fn a_server_that_cannot_run_is_not_found() {
        let not_executable = dir_with_server(0o644);
        let empty = tempfile::tempdir().expect("temp dir");
        let path_var = std::env::join_paths([empty.path(), not_executable.path()]).expect("PATH");
        assert_eq!(find_server(Some(empty.path()), Some(&path_var)), None);
        assert_eq!(find_server(None, None), None);
    }

    /// The address of a JSON log line whose message is `message`
    /// (`serving`, `serving metrics`).
    fn listen_line(line: &str, message: &str) -> Option<String> {
        LogLine::parse(line)
            .filter(|parsed| parsed.message == message)
            .and_then(|parsed| parsed.listen)
    }

    #[test]
    fn the_serving_lines_name_the_addresses() {
        let line = r#"{"timestamp":"t","level":"INFO","fields":{"message":"serving","listen":"127.0.0.1:4000"},"target":"sessionlog::server"}"#;
        assert_eq!(
            listen_line(line, "serving").as_deref(),
            Some("127.0.0.1:4000")
        );
        assert_eq!(listen_line(line, "serving metrics"), None);
        let metrics = r#"{"fields":{"message":"serving metrics","listen":"127.0.0.1:4001"}}"#;
        assert_eq!(
            listen_line(metrics, "serving metrics").as_deref(),
            Some("127.0.0.1:4001")
        );
        assert_eq!(
            listen_line(r#"{"fields":{"message":"store open"}}"#, "serving"),
            None
        );
        assert_eq!(listen_line("not json", "serving"), None);
    }

    #[test]
    fn labelled_counters_are_summed_and_absent_ones_are_zero() {
        let text = "# TYPE sessionlog_pruned_sessions counter\n\
                    sessionlog_pruned_sessions_total{reason=\"max sessions\"} 2400\n\
                    sessionlog_pruned_sessions_total{reason=\"max age\"} 100\n\
                    sessionlog_pruned_sessions_totally 7\n";
        assert_eq!(
            metric_sum(text, "sessionlog_pruned_sessions_total"),
            2_500.0
        );
        assert_eq!(
            metric_sum("# EOF\n", "sessionlog_pruned_sessions_total"),
            0.0
        );
        assert_eq!(
            metric_sum("sessionlog_followers 3\n", "sessionlog_followers"),
            3.0
        );
    }

    #[test]
    fn watched_lines_are_counted_with_the_servers_timestamps() {
        let log = ServerLog {
            tail: Arc::default(),
            metrics: Arc::default(),
            marks: Arc::new(Mutex::new(HashMap::from([(
                "pruned session".to_owned(),
                LogMark::default(),
            )]))),
        };
        let pruned =
            |at: &str| format!(r#"{{"timestamp":"{at}","fields":{{"message":"pruned session"}}}}"#);
        assert_eq!(log.keep(&pruned("2026-01-02T03:04:05.100000Z")), None);
        assert_eq!(log.keep(r#"{"fields":{"message":"store open"}}"#), None);
        log.keep(&pruned("2026-01-02T03:04:05.350000Z"));
        let marks = log.marks.lock().expect("not poisoned");
        let mark = marks["pruned session"];
        assert_eq!(mark.count, 2);
        let (first, last) = (mark.first.expect("first"), mark.last.expect("last"));
        assert_eq!(
            last.duration_since(first).expect("in order"),
            Duration::from_millis(250)
        );
        assert_eq!(marks.len(), 1, "unwatched messages are not kept");
    }

    #[test]
    fn gauges_are_read_by_their_whole_name() {
        let text = "# HELP x\nsessionlog_followers 1\nsessionlog_seal_backlog_sessions 0\n";
        assert_eq!(gauge(text, "sessionlog_followers"), Some(1.0));
        assert_eq!(gauge(text, "sessionlog_seal_backlog_sessions"), Some(0.0));
        assert_eq!(gauge(text, "sessionlog_seal_backlog"), None);
    }
}
