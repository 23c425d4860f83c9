//! The client subcommands: each builds one request, calls, prints.

use std::io::Write as _;
use std::time::Duration;

use anyhow::Context as _;
use prost_types::value::Kind;
use tokio::io::AsyncBufReadExt as _;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;

use super::print;
use super::terminal::Escapes;
use super::{ClientArgs, LevelArg, parse_lease};
use crate::client::{Client, LogWriter, WriterOptions, WriterTarget};

/// How long `append` keeps retrying while the server is unavailable.
const APPEND_GIVE_UP: Duration = Duration::from_secs(10);
use crate::pb;

pub(super) async fn connect(args: &ClientArgs) -> anyhow::Result<Client> {
    Ok(args.connect().await?.sessions())
}

/// Writes one line to stdout. A closed pipe (`| head`) ends the command
/// quietly, as for other Unix tools.
pub(super) fn print_line(line: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{line}") {
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        written => written.context("cannot write to stdout"),
    }
}

fn print_session(args: &ClientArgs, session: &pb::Session) -> anyhow::Result<()> {
    if args.json {
        print_line(&print::session_json(session).to_string())
    } else {
        print_line(&print::session_text(session))
    }
}

pub(super) async fn health(args: &ClientArgs) -> anyhow::Result<()> {
    let connection = args.connect().await?;
    let response = connection
        .health()
        .check(HealthCheckRequest {
            service: crate::server::SERVICE_NAME.to_owned(),
        })
        .await?
        .into_inner();
    let status = response.status();
    if args.json {
        print_line(&serde_json::json!({ "status": status.as_str_name() }).to_string())?;
    } else {
        print_line(status.as_str_name())?;
    }
    anyhow::ensure!(
        status == ServingStatus::Serving,
        "the server is {}",
        status.as_str_name()
    );
    Ok(())
}

#[derive(Debug, clap::Args)]
pub(super) struct StartArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// The session id (generated when omitted).
    #[arg(long)]
    id: Option<String>,
    #[arg(long)]
    app: Option<String>,
    #[arg(long)]
    mode: Option<String>,
    #[arg(long)]
    platform: Option<String>,
    /// The client process id, for process liveness.
    #[arg(long)]
    pid: Option<u32>,
    /// The parent session id.
    #[arg(long)]
    parent: Option<String>,
    #[arg(long)]
    job: Option<String>,
    /// Metadata as key=value; repeatable.
    #[arg(long = "meta", value_parser = parse_meta)]
    meta: Vec<(String, String)>,
    /// A lease: the session ends when nothing renews it for this long.
    #[arg(long, value_parser = parse_lease)]
    lease: Option<prost_types::Duration>,
}

fn parse_meta(text: &str) -> Result<(String, String), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not key=value"))?;
    Ok((key.to_owned(), value.to_owned()))
}

pub(super) async fn start(args: StartArgs) -> anyhow::Result<()> {
    let mut client = connect(&args.client).await?;
    let metadata = (!args.meta.is_empty()).then(|| prost_types::Struct {
        fields: args
            .meta
            .into_iter()
            .map(|(key, value)| {
                let value = prost_types::Value {
                    kind: Some(Kind::StringValue(value)),
                };
                (key, value)
            })
            .collect(),
    });
    let session = client
        .start_session(pb::StartSessionRequest {
            session_id: args.id.unwrap_or_default(),
            app_name: args.app.unwrap_or_default(),
            mode: args.mode.unwrap_or_default(),
            platform: args.platform.unwrap_or_default(),
            client_pid: args.pid.unwrap_or_default(),
            parent_session_id: args.parent.unwrap_or_default(),
            job_id: args.job.unwrap_or_default(),
            metadata,
            lease_ttl: args.lease,
        })
        .await?
        .into_inner();
    if args.client.json {
        print_line(&print::session_json(&session).to_string())
    } else {
        print_line(&session.id)
    }
}

#[derive(Debug, clap::Args)]
pub(super) struct AppendArgs {
    #[command(flatten)]
    client: ClientArgs,
    session_id: String,
    /// The level of every entry.
    #[arg(long, value_enum, default_value = "info")]
    level: LevelArg,
    /// The logger of every entry.
    #[arg(long, default_value = "stdin")]
    logger: String,
}

pub(super) async fn append(args: AppendArgs) -> anyhow::Result<()> {
    let level = pb::Level::from(args.level);
    let options = WriterOptions {
        // A pipe of lines has nobody to drop them for: wait for room, and
        // fail rather than hang when the server stays away.
        give_up_after: Some(APPEND_GIVE_UP),
        ..WriterOptions::default()
    };
    let session_id = args.session_id;
    let mut client = connect(&args.client).await?;
    let writer = LogWriter::spawn(
        client.clone(),
        WriterTarget::Existing(session_id.clone()),
        options,
    );
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut stopped = None;
    while let Some(line) = lines.next_line().await.context("cannot read stdin")? {
        let entry = pb::LogEntry {
            level: level.into(),
            logger: args.logger.clone(),
            message: line,
            ..Default::default()
        };
        if let Err(err) = writer.write(entry).await {
            stopped = Some(err);
            break;
        }
    }
    let report = writer.close(APPEND_GIVE_UP).await;
    if let Some(status) = report.error.or(stopped.map(|err| err.0)) {
        let status = crate::display::status_text(&status);
        // The writer knows a seq only from its own appends; with none
        // stored it has none to tell.
        if report.stored == 0 {
            anyhow::bail!("no entries stored, {} not: {status}", report.lost);
        }
        anyhow::bail!(
            "{} entries stored (last seq {}), {} not: {status}",
            report.stored,
            report.last_seq,
            report.lost
        );
    }
    let last_seq = if report.stored == 0 {
        // Nothing appended (empty input): the session's own last seq.
        client
            .get_session(pb::GetSessionRequest {
                session_id: session_id.clone(),
            })
            .await?
            .into_inner()
            .last_seq
    } else {
        report.last_seq
    };
    let line = if args.client.json {
        serde_json::json!({ "stored": report.stored, "last_seq": last_seq }).to_string()
    } else {
        format!("appended {} entries, last seq {last_seq}", report.stored)
    };
    print_line(&line)
}

#[derive(Debug, clap::Args)]
pub(super) struct EndArgs {
    #[command(flatten)]
    client: ClientArgs,
    session_id: String,
    /// Why the session ended.
    #[arg(long, default_value = "")]
    reason: String,
}

pub(super) async fn end(args: EndArgs) -> anyhow::Result<()> {
    let mut client = connect(&args.client).await?;
    let session = client
        .end_session(pb::EndSessionRequest {
            session_id: args.session_id,
            reason: args.reason,
        })
        .await?
        .into_inner();
    print_session(&args.client, &session)
}

/// `ls --state` and `grep --state` values.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(super) enum StateArg {
    Active,
    Ended,
    All,
}

impl StateArg {
    pub(super) fn to_pb(self) -> pb::SessionState {
        match self {
            Self::Active => pb::SessionState::Active,
            Self::Ended => pb::SessionState::Ended,
            Self::All => pb::SessionState::Unspecified,
        }
    }
}

#[derive(Debug, clap::Args)]
pub(super) struct ListArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[arg(long, value_enum, default_value = "all")]
    state: StateArg,
    #[arg(long)]
    app: Option<String>,
    #[arg(long)]
    job: Option<String>,
}

pub(super) async fn list(args: ListArgs) -> anyhow::Result<()> {
    let mut client = connect(&args.client).await?;
    let state = args.state.to_pb();
    if !args.client.json {
        print_line(print::SESSION_HEADER)?;
    }
    let mut page_token = String::new();
    loop {
        let page = client
            .list_sessions(pb::ListSessionsRequest {
                state: state.into(),
                app_name: args.app.clone().unwrap_or_default(),
                job_id: args.job.clone().unwrap_or_default(),
                parent_session_id: String::new(),
                page_size: 1_000,
                page_token,
            })
            .await?
            .into_inner();
        for session in &page.sessions {
            if args.client.json {
                print_line(&print::session_json(session).to_string())?;
            } else {
                print_line(&print::session_row(session))?;
            }
        }
        if page.next_page_token.is_empty() {
            return Ok(());
        }
        page_token = page.next_page_token;
    }
}

#[derive(Debug, clap::Args)]
pub(super) struct ShowArgs {
    #[command(flatten)]
    client: ClientArgs,
    session_id: String,
}

pub(super) async fn show(args: ShowArgs) -> anyhow::Result<()> {
    let mut client = connect(&args.client).await?;
    let session = client
        .get_session(pb::GetSessionRequest {
            session_id: args.session_id,
        })
        .await?
        .into_inner();
    print_session(&args.client, &session)
}

#[derive(Debug, clap::Args)]
pub(super) struct ReadArgs {
    #[command(flatten)]
    client: ClientArgs,
    session_id: String,
    /// Entries after this seq.
    #[arg(long, default_value_t = 0)]
    after: u64,
    /// At most this many entries (server default 1,000).
    #[arg(long, default_value_t = 0)]
    limit: u32,
    /// The last N entries instead.
    #[arg(long, default_value_t = 0, conflicts_with = "all")]
    tail: u32,
    /// Every entry up to the session's last one as of the first page,
    /// page after page (--limit entries each).
    #[arg(long)]
    all: bool,
}

pub(super) async fn read(args: ReadArgs) -> anyhow::Result<()> {
    let mut client = connect(&args.client).await?;
    let mut after_seq = args.after;
    let mut through_seq = None;
    loop {
        let page = client
            .read(pb::ReadRequest {
                session_id: args.session_id.clone(),
                after_seq,
                limit: args.limit,
                filter: None,
                tail: args.tail,
            })
            .await?
            .into_inner();
        let last = *through_seq.get_or_insert(page.last_seq);
        for entry in page.entries.iter().filter(|entry| entry.seq <= last) {
            if args.client.json {
                print_line(&print::entry_json(entry).to_string())?;
            } else {
                print_line(&print::entry_text(entry, Escapes::None))?;
            }
        }
        // A cursor that does not move has nothing more to give.
        if !args.all || page.next_cursor >= last || page.next_cursor <= after_seq {
            return Ok(());
        }
        after_seq = page.next_cursor;
    }
}
