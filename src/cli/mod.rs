//! The command line: `serve` and the client subcommands (the load
//! generator is its own binary, `sessionlog-bench`). Client commands print
//! text, or JSON lines with `--json`, and fail with the error on stderr and
//! a non-zero exit.

mod commands;
mod grep;
mod print;
mod run;
mod serve;
mod tail;
mod terminal;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::ServeConfig;
use crate::pb;
use crate::units::parse_duration;

/// sessionlog: sessions of structured log entries over gRPC.
#[derive(Debug, Parser)]
#[command(name = "sessionlog", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    Serve(Box<ServeConfig>),
    /// Exit 0 when the server reports SERVING.
    Health(ClientArgs),
    /// Start a session and print its id.
    Start(commands::StartArgs),
    /// Append stdin, one entry per line, in batches.
    Append(commands::AppendArgs),
    /// End a session.
    End(commands::EndArgs),
    /// List sessions.
    Ls(commands::ListArgs),
    /// Show one session.
    Show(commands::ShowArgs),
    /// Print one page of entries (every page with --all).
    Read(commands::ReadArgs),
    /// Find entries across sessions, newest session first.
    Grep(grep::GrepArgs),
    /// Print entries; with -f, follow live ones until the session ends.
    Tail(tail::TailArgs),
    /// Print session events as they happen.
    Watch(tail::WatchArgs),
    /// Run a command as a session: its output is logged and passed through,
    /// and its exit code returned.
    Run(run::RunArgs),
}

/// Flags every client command shares.
#[derive(Debug, Clone, clap::Args)]
struct ClientArgs {
    /// The server: http://host:port, https://host:port or unix:/path.
    #[arg(long, env = "SESSIONLOG_SERVER", default_value = crate::client::DEFAULT_SERVER)]
    server: String,
    /// A file whose first line is the bearer token.
    #[arg(long, env = "SESSIONLOG_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// For https:// servers: the PEM CA to trust (default: the system's roots).
    #[arg(long, env = "SESSIONLOG_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// For servers that require client certificates: a PEM certificate.
    #[arg(long, env = "SESSIONLOG_CERT_FILE", requires = "key_file")]
    cert_file: Option<PathBuf>,
    /// The PEM private key of --cert-file.
    #[arg(long, env = "SESSIONLOG_KEY_FILE", requires = "cert_file")]
    key_file: Option<PathBuf>,
    /// Print JSON lines instead of text.
    #[arg(long)]
    json: bool,
}

impl ClientArgs {
    fn tls(&self) -> crate::client::ClientTls {
        crate::client::ClientTls {
            ca_file: self.ca_file.clone(),
            cert_file: self.cert_file.clone(),
            key_file: self.key_file.clone(),
        }
    }

    async fn connect(&self) -> anyhow::Result<crate::client::Connection> {
        crate::client::Connection::connect_with(
            &self.server,
            self.token_file.as_deref(),
            &self.tls(),
        )
        .await
    }

    /// A connection that is made on first use, for commands that must go
    /// on while the server is away.
    fn connect_lazy(&self) -> anyhow::Result<crate::client::Connection> {
        crate::client::Connection::connect_lazy(
            &self.server,
            self.token_file.as_deref(),
            &self.tls(),
        )
    }
}

/// Levels as typed on the command line.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LevelArg {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Critical,
}

impl From<LevelArg> for pb::Level {
    fn from(level: LevelArg) -> Self {
        match level {
            LevelArg::Trace => Self::Trace,
            LevelArg::Debug => Self::Debug,
            LevelArg::Info => Self::Info,
            LevelArg::Warn => Self::Warn,
            LevelArg::Error => Self::Error,
            LevelArg::Critical => Self::Critical,
        }
    }
}

fn parse_lease(text: &str) -> Result<prost_types::Duration, String> {
    let duration = parse_duration(text)?;
    prost_types::Duration::try_from(duration).map_err(|err| format!("`{text}`: {err}"))
}

/// How long exiting waits for blocking tasks still running.
const RUNTIME_SHUTDOWN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Parses the command line and runs it.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Run(args) => return run::run(args).await,
            Command::Serve(config) => serve::run(*config).await,
            Command::Health(client) => commands::health(&client).await,
            Command::Start(args) => commands::start(args).await,
            Command::Append(args) => commands::append(args).await,
            Command::End(args) => commands::end(args).await,
            Command::Ls(args) => commands::list(args).await,
            Command::Show(args) => commands::show(args).await,
            Command::Read(args) => commands::read(args).await,
            Command::Grep(args) => grep::grep(args).await,
            Command::Tail(args) => tail::tail(args).await,
            Command::Watch(args) => tail::watch(args).await,
        }
        .map(|()| ExitCode::SUCCESS)
    });
    // Dropping a runtime waits for every blocking task; one stuck in a
    // storage call that cannot finish (see `store::StoreHealth`) must not
    // keep the process from exiting.
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN_TIMEOUT);
    match result {
        Ok(code) => code,
        Err(err) => {
            // A status message can quote what a client stored.
            let text = error_text(&err);
            eprintln!("error: {}", terminal::safe(&text, terminal::Escapes::None));
            ExitCode::FAILURE
        }
    }
}

/// A status as `CODE: message`; other errors with their causes.
fn error_text(err: &anyhow::Error) -> String {
    if let Some(status) = err.downcast_ref::<tonic::Status>() {
        return crate::display::status_text(status);
    }
    format!("{err:#}")
}
