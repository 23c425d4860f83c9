//! `sessionlog tail` and `sessionlog watch`: print entries or session events
//! as they happen. `tail -f` reconnects after transient errors and resumes
//! from the last cursor it printed, so nothing is shown twice or skipped.

use std::io::IsTerminal as _;

use futures::StreamExt as _;

use super::commands::{connect, print_line};
use super::print;
use super::terminal::{self, Escapes, safe};
use super::{ClientArgs, LevelArg};
use crate::client::{self, FollowItem, FollowOptions};
use crate::pb;

#[derive(Debug, clap::Args)]
pub(super) struct TailArgs {
    #[command(flatten)]
    client: ClientArgs,
    session_id: String,
    /// Keep following live entries until the session ends.
    #[arg(short = 'f', long)]
    follow: bool,
    /// Entries after this seq.
    #[arg(long, default_value_t = 0)]
    after: u64,
    /// Start with the last N entries.
    #[arg(long, default_value_t = 0)]
    tail: u32,
    /// Entries at this level or above.
    #[arg(long, value_enum)]
    level: Option<LevelArg>,
    /// Entries whose logger starts with this; repeatable.
    #[arg(long = "logger")]
    loggers: Vec<String>,
    /// Entries whose message contains this text.
    #[arg(long)]
    grep: Option<String>,
    /// Colour by level, and let the colour codes in entries through (never
    /// other terminal controls): `auto` does on a terminal.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto)]
    color: ColorChoice,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ColorChoice {
    Auto,
    Always,
    Never,
}

impl TailArgs {
    fn filter(&self) -> pb::LogFilter {
        pb::LogFilter {
            min_level: self
                .level
                .map(pb::Level::from)
                .unwrap_or(pb::Level::Unspecified)
                .into(),
            logger_prefixes: self.loggers.clone(),
            contains: self.grep.clone().unwrap_or_default(),
            ..pb::LogFilter::default()
        }
    }
}

struct Printer {
    json: bool,
    color: bool,
}

impl Printer {
    fn entry(&self, entry: &pb::LogEntry) -> anyhow::Result<()> {
        if self.json {
            return print_line(&print::entry_json(entry).to_string());
        }
        if !self.color {
            return print_line(&print::entry_text(entry, Escapes::None));
        }
        let line = print::entry_text(entry, Escapes::Colours);
        let color = match pb::Level::try_from(entry.level) {
            Ok(pb::Level::Trace | pb::Level::Debug) => "2",
            Ok(pb::Level::Warn) => "33",
            Ok(pb::Level::Error) => "31",
            Ok(pb::Level::Critical) => "1;31",
            _ => "0",
        };
        print_line(&format!("\x1b[{color}m{line}{}", terminal::RESET))
    }
}

pub(super) async fn tail(args: TailArgs) -> anyhow::Result<()> {
    let printer = Printer {
        json: args.client.json,
        color: !args.client.json
            && match args.color {
                ColorChoice::Always => true,
                ColorChoice::Never => false,
                ColorChoice::Auto => std::io::stdout().is_terminal(),
            },
    };
    if args.follow {
        return follow(&args, &printer).await;
    }
    let mut client = connect(&args.client).await?;
    let mut after_seq = args.after;
    let mut tail = args.tail;
    loop {
        let page = client
            .read(pb::ReadRequest {
                session_id: args.session_id.clone(),
                after_seq,
                limit: 0,
                filter: Some(args.filter()),
                tail,
            })
            .await?
            .into_inner();
        for entry in &page.entries {
            printer.entry(entry)?;
        }
        if page.next_cursor >= page.last_seq || page.next_cursor == after_seq {
            return Ok(());
        }
        after_seq = page.next_cursor;
        tail = 0;
    }
}

/// Follows until the session ends, reconnecting from the last cursor.
async fn follow(args: &TailArgs, printer: &Printer) -> anyhow::Result<()> {
    let connection = args.client.connect().await?;
    let options = FollowOptions {
        after_seq: args.after,
        tail: args.tail,
        filter: Some(args.filter()),
        max_batch: 0,
    };
    let mut items = std::pin::pin!(client::follow(connection, &args.session_id, options));
    while let Some(item) = items.next().await {
        match item? {
            FollowItem::Entries { entries, .. } => {
                for entry in &entries {
                    printer.entry(entry)?;
                }
            }
            FollowItem::CaughtUp { .. } => {}
            FollowItem::Truncated {
                first_available_seq,
            } => eprintln!(
                "sessionlog: entries up to seq {} were pruned; continuing from there",
                first_available_seq.saturating_sub(1)
            ),
            FollowItem::Reconnecting { after_seq, error } => eprintln!(
                "sessionlog: connection lost ({}); resuming after seq {after_seq}",
                safe(&crate::display::status_text(&error), Escapes::None)
            ),
            FollowItem::Ended(session) => {
                if !printer.json {
                    eprintln!(
                        "sessionlog: session ended ({})",
                        safe(&session.end_reason, Escapes::None)
                    );
                }
                return Ok(());
            }
        }
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
pub(super) struct WatchArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// First list the existing sessions.
    #[arg(long)]
    existing: bool,
    #[arg(long)]
    app: Option<String>,
    #[arg(long)]
    job: Option<String>,
}

pub(super) async fn watch(args: WatchArgs) -> anyhow::Result<()> {
    let mut client = connect(&args.client).await?;
    let mut events = client
        .watch_sessions(pb::WatchSessionsRequest {
            include_existing: args.existing,
            state: pb::SessionState::Unspecified.into(),
            app_name: args.app.clone().unwrap_or_default(),
            job_id: args.job.clone().unwrap_or_default(),
        })
        .await?
        .into_inner();
    while let Some(event) = events.next().await {
        let event = event?;
        let kind = event
            .kind()
            .as_str_name()
            .trim_start_matches("KIND_")
            .to_lowercase();
        match (&event.session, args.client.json) {
            (Some(session), true) => print_line(
                &serde_json::json!({ "kind": kind, "session": print::session_json(session) })
                    .to_string(),
            )?,
            (Some(session), false) => {
                print_line(&format!("{kind:<9} {}", print::session_row(session)))?
            }
            (None, true) => print_line(&serde_json::json!({ "kind": kind }).to_string())?,
            (None, false) => {}
        }
    }
    Ok(())
}
