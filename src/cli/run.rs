//! `sessionlog run -- CMD [ARGS...]`: runs CMD as a session. Its output is
//! passed through as it arrives, byte for byte, and each line becomes an
//! entry (stdout at INFO, stderr at ERROR) in a bounded buffer that a
//! background writer sends in batches. The child never waits on the
//! server: when the buffer is full, lines are dropped from the log (never
//! from the terminal) and counted. SIGINT, SIGTERM, SIGHUP and SIGQUIT are
//! forwarded to CMD; its exit code is ours.

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt as _;
use std::process::{ExitCode, ExitStatus, Stdio};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::signal::unix::{SignalKind, signal};

use super::{ClientArgs, parse_lease};
use crate::client::{Client, LogWriter, WriterHandle, WriterOptions, WriterReport, WriterTarget};
use crate::pb;
use crate::units::parse_duration;

/// The variable that tells CMD (and any `sessionlog run` inside it) its
/// session; a nested run takes it as its parent.
pub(super) const SESSION_ID_ENV: &str = "SESSIONLOG_SESSION_ID";
/// Lines longer than this are split into several entries.
const MAX_LINE_BYTES: usize = 64 * 1024;
/// How long to keep reading CMD's pipes after it exits: a background
/// process it left behind may hold them open forever.
const PIPE_GRACE: Duration = Duration::from_secs(2);
/// The longest wait between batches.
const LINGER: Duration = Duration::from_millis(50);

#[derive(Debug, clap::Args)]
pub(super) struct RunArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// The session id (generated when omitted); CMD sees it as
    /// $SESSIONLOG_SESSION_ID.
    #[arg(long)]
    id: Option<String>,
    /// The app name (default: CMD's file name).
    #[arg(long)]
    app: Option<String>,
    #[arg(long)]
    job: Option<String>,
    /// The parent session (default: $SESSIONLOG_SESSION_ID, set by an
    /// enclosing `sessionlog run`).
    #[arg(long, env = SESSION_ID_ENV)]
    parent: Option<String>,
    /// A lease, renewed while CMD runs: if this `run` dies, the session
    /// ends when the lease lapses.
    #[arg(long, value_parser = parse_lease)]
    lease: Option<prost_types::Duration>,
    /// Lines buffered while the server is slow or away; more are dropped
    /// from the log (not from the output) and counted.
    #[arg(long, default_value_t = 10_000)]
    buffer: usize,
    /// How long to keep sending buffered lines after CMD exits.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    flush_timeout: Duration,
    /// The command and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<OsString>,
}

pub(super) async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let connection = args.client.connect_lazy()?;
    let session_id = args
        .id
        .clone()
        .unwrap_or_else(|| ulid::Ulid::generate().to_string());
    let (program, program_args) = args
        .command
        .split_first()
        .context("the command to run is missing")?;
    let mut child = tokio::process::Command::new(program)
        .args(program_args)
        .env(SESSION_ID_ENV, &session_id)
        .stdin(Stdio::inherit())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run `{}`", program.to_string_lossy()))?;
    let pid = child.id().context("the command exited before it started")?;

    let app_name = args.app.clone().unwrap_or_else(|| {
        std::path::Path::new(program)
            .file_name()
            .unwrap_or(program)
            .to_string_lossy()
            .into_owned()
    });
    let start = pb::StartSessionRequest {
        session_id: session_id.clone(),
        app_name,
        client_pid: pid,
        parent_session_id: args.parent.clone().unwrap_or_default(),
        job_id: args.job.clone().unwrap_or_default(),
        lease_ttl: args.lease,
        ..Default::default()
    };
    let options = WriterOptions {
        capacity: args.buffer,
        linger: LINGER,
        ..WriterOptions::default()
    };
    let writer = LogWriter::spawn(connection.sessions(), WriterTarget::Start(start), options);
    let stdout = child.stdout.take().context("stdout is piped")?;
    let stderr = child.stderr.take().context("stderr is piped")?;
    let mut pumps = tokio::task::JoinSet::new();
    pumps.spawn(pump(
        stdout,
        tokio::io::stdout(),
        writer.handle(),
        Stream::Stdout,
    ));
    pumps.spawn(pump(
        stderr,
        tokio::io::stderr(),
        writer.handle(),
        Stream::Stderr,
    ));
    let heartbeat = args.lease.and_then(|ttl| {
        let period = std::time::Duration::try_from(ttl).ok()? / 3;
        Some(tokio::spawn(heartbeats(
            connection.sessions(),
            session_id.clone(),
            period.max(Duration::from_millis(10)),
        )))
    });

    let status = wait_forwarding_signals(&mut child, pid).await?;
    let drained = tokio::time::timeout(PIPE_GRACE, async {
        while pumps.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        pumps.abort_all();
    }
    if let Some(heartbeat) = heartbeat {
        heartbeat.abort();
    }
    let report = writer.close(args.flush_timeout).await;
    let reason = end_reason(status);
    let ended = match &report.session_id {
        Some(id) => end(connection.sessions(), id, &reason, args.flush_timeout).await,
        None => Err(report
            .error
            .clone()
            .unwrap_or_else(|| tonic::Status::unavailable("the session was never started"))),
    };
    summarize(&report, ended.err());
    Ok(exit_code(status))
}

#[derive(Debug, Clone, Copy)]
enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn level(self) -> pb::Level {
        match self {
            Self::Stdout => pb::Level::Info,
            Self::Stderr => pb::Level::Error,
        }
    }

    fn logger(self) -> &'static str {
        match self {
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
        }
    }
}

/// Copies `input` to `output` as it arrives, and queues each line. A failed
/// write to `output` (a closed terminal) stops the copy, not the reading:
/// the child must never block on a full pipe.
async fn pump(
    mut input: impl AsyncRead + Unpin,
    mut output: impl AsyncWrite + Unpin,
    writer: WriterHandle,
    stream: Stream,
) {
    let mut chunk = vec![0u8; 16 * 1024];
    let mut line = Vec::new();
    let mut passing_through = true;
    loop {
        let read = match input.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        let bytes = &chunk[..read];
        if passing_through {
            passing_through = output.write_all(bytes).await.is_ok() && output.flush().await.is_ok();
        }
        for piece in bytes.split_inclusive(|byte| *byte == b'\n') {
            line.extend_from_slice(piece);
            if line.ends_with(b"\n") {
                queue(&writer, stream, &line);
                line.clear();
            }
            while line.len() >= MAX_LINE_BYTES {
                let rest = line.split_off(MAX_LINE_BYTES);
                queue(&writer, stream, &line);
                line = rest;
            }
        }
    }
    if !line.is_empty() {
        queue(&writer, stream, &line);
    }
}

fn queue(writer: &WriterHandle, stream: Stream, line: &[u8]) {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    writer.try_write(pb::LogEntry {
        timestamp: Some(SystemTime::now().into()),
        level: stream.level().into(),
        logger: stream.logger().to_owned(),
        message: String::from_utf8_lossy(line).into_owned(),
        ..Default::default()
    });
}

/// Waits for the child, passing on the signals a supervisor or a terminal
/// sends us.
async fn wait_forwarding_signals(
    child: &mut tokio::process::Child,
    pid: u32,
) -> anyhow::Result<ExitStatus> {
    let kinds = [
        (SignalKind::interrupt(), rustix::process::Signal::INT),
        (SignalKind::terminate(), rustix::process::Signal::TERM),
        (SignalKind::hangup(), rustix::process::Signal::HUP),
        (SignalKind::quit(), rustix::process::Signal::QUIT),
    ];
    let (forward_tx, mut forward_rx) = tokio::sync::mpsc::channel(8);
    let mut listeners = tokio::task::JoinSet::new();
    for (kind, signal_to_send) in kinds {
        let mut received = signal(kind).context("cannot listen for signals")?;
        let forward_tx = forward_tx.clone();
        listeners.spawn(async move {
            while received.recv().await.is_some() {
                if forward_tx.send(signal_to_send).await.is_err() {
                    break;
                }
            }
        });
    }
    let target = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .context("the child's pid is not valid")?;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status.context("cannot wait for the command")?,
            Some(signal_to_send) = forward_rx.recv() => {
                // The child may have exited a moment ago; nothing to do then.
                let _ = rustix::process::kill_process(target, signal_to_send);
            }
        }
    };
    listeners.abort_all();
    Ok(status)
}

async fn heartbeats(mut client: Client, session_id: String, period: Duration) {
    let mut ticks = tokio::time::interval(period);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        // A missed beat is retried at the next tick; appends renew too.
        let _ = client
            .heartbeat(pb::HeartbeatRequest {
                session_id: session_id.clone(),
            })
            .await;
    }
}

async fn end(
    mut client: Client,
    session_id: &str,
    reason: &str,
    within: Duration,
) -> Result<(), tonic::Status> {
    let request = pb::EndSessionRequest {
        session_id: session_id.to_owned(),
        reason: reason.to_owned(),
    };
    let deadline = tokio::time::Instant::now() + within;
    let mut backoff = Duration::from_millis(100);
    loop {
        match client.end_session(request.clone()).await {
            Ok(_) => return Ok(()),
            Err(status) if status.code() == tonic::Code::Unavailable => {
                if tokio::time::Instant::now() + backoff > deadline {
                    return Err(status);
                }
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
            Err(status) => return Err(status),
        }
    }
}

fn end_reason(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => "exited".to_owned(),
    }
}

/// CMD's exit code; 128 + N for a signal, as shells report it.
fn exit_code(status: ExitStatus) -> ExitCode {
    let code = match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => 1,
    };
    ExitCode::from(u8::try_from(code & 0xff).unwrap_or(1))
}

/// Says on stderr what did not reach the server; silent when all did.
fn summarize(report: &WriterReport, end_error: Option<tonic::Status>) {
    let missing = report.dropped + report.lost;
    if missing > 0 {
        let why = report.error.as_ref().map_or_else(
            || "the server was too slow or unavailable".to_owned(),
            crate::display::status_text,
        );
        eprintln!(
            "sessionlog: {missing} of {} lines were not stored ({why})",
            missing + report.stored
        );
    }
    if let Some(status) = end_error {
        eprintln!(
            "sessionlog: the session could not be ended ({})",
            crate::display::status_text(&status)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_statuses_become_reasons_and_codes() {
        let exited = ExitStatus::from_raw(3 << 8);
        assert_eq!(end_reason(exited), "exit code 3");
        assert_eq!(exit_code(exited), ExitCode::from(3));
        let killed = ExitStatus::from_raw(9);
        assert_eq!(end_reason(killed), "killed by signal 9");
        assert_eq!(exit_code(killed), ExitCode::from(137));
    }
}
