//! `sessionlog grep`: `Search` across sessions, one line per hit
//! (`SESSION SEQ TIME LEVEL LOGGER: MESSAGE`, or JSON lines with
//! `--json`), newest session first. When more entries match than the
//! limit, stderr says so.

use std::time::SystemTime;

use anyhow::Context as _;

use super::commands::{connect, print_line};
use super::print;
use super::{ClientArgs, LevelArg};
use crate::display::time_from_text;
use crate::pb;

#[derive(Debug, clap::Args)]
pub(super) struct GrepArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// The text to find in messages (ANSI colours removed first).
    text: String,
    /// TEXT is a regular expression (Rust `regex` syntax).
    #[arg(long)]
    regex: bool,
    /// Ignore case.
    #[arg(short = 'i', long)]
    ignore_case: bool,
    /// Only sessions of this app.
    #[arg(long)]
    app: Option<String>,
    /// Only sessions of this job.
    #[arg(long)]
    job: Option<String>,
    /// Only sessions in this state.
    #[arg(long, value_enum, default_value = "all")]
    state: super::commands::StateArg,
    /// Only entries at this level or above.
    #[arg(long, value_enum)]
    level: Option<LevelArg>,
    /// Only entries whose logger starts with this (repeatable).
    #[arg(long = "logger")]
    loggers: Vec<String>,
    /// Only entries at or after this time: RFC 3339 (UTC) or a duration ago (`1h`).
    #[arg(long)]
    since: Option<String>,
    /// Only entries before this time: RFC 3339 (UTC) or a duration ago.
    #[arg(long)]
    until: Option<String>,
    /// At most this many hits (server default 1,000, at most 100,000).
    #[arg(long, default_value_t = 0)]
    limit: u32,
}

impl GrepArgs {
    fn request(&self, now: SystemTime) -> anyhow::Result<pb::SearchRequest> {
        let time = |text: &Option<String>, flag: &str| -> anyhow::Result<_> {
            text.as_deref()
                .map(|text| {
                    time_from_text(text, now)
                        .map(prost_types::Timestamp::from)
                        .map_err(|err| anyhow::anyhow!("--{flag} {err}"))
                })
                .transpose()
        };
        let (contains, regex) = if self.regex {
            (String::new(), self.text.clone())
        } else {
            (self.text.clone(), String::new())
        };
        Ok(pb::SearchRequest {
            state: self.state.to_pb().into(),
            app_name: self.app.clone().unwrap_or_default(),
            job_id: self.job.clone().unwrap_or_default(),
            parent_session_id: String::new(),
            since: time(&self.since, "since")?,
            until: time(&self.until, "until")?,
            filter: Some(pb::LogFilter {
                min_level: self
                    .level
                    .map_or(pb::Level::Unspecified, pb::Level::from)
                    .into(),
                logger_prefixes: self.loggers.clone(),
                contains,
                ignore_case: self.ignore_case,
                regex,
            }),
            limit: self.limit,
        })
    }
}

pub(super) async fn grep(args: GrepArgs) -> anyhow::Result<()> {
    let request = args.request(SystemTime::now())?;
    let mut client = connect(&args.client).await?;
    let mut responses = client.search(request).await?.into_inner();
    let mut summary = None;
    while let Some(response) = responses.message().await? {
        for hit in &response.hits {
            let Some(entry) = &hit.entry else { continue };
            if args.client.json {
                print_line(&print::hit_json(&hit.session_id, entry).to_string())?;
            } else {
                print_line(&print::hit_text(&hit.session_id, entry))?;
            }
        }
        summary = response.summary.or(summary);
    }
    let summary = summary.context("the search ended without its summary")?;
    if summary.limit_reached {
        eprintln!("more entries match; raise --limit (at most 100000) or narrow the search");
    }
    Ok(())
}
