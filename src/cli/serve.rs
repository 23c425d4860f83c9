//! `sessionlog serve`: logging set-up, listeners, signals.

use std::io::IsTerminal as _;

use anyhow::Context as _;
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, ServeConfig};
use crate::server::{Listener, Listeners, ServerSettings, serve};

pub(super) async fn run(config: ServeConfig) -> anyhow::Result<()> {
    init_logging(config.log_format);
    let shutdown = shutdown_signal()?;
    let mut grpc = Vec::with_capacity(config.listen.len());
    for addr in &config.listen {
        grpc.push(Listener::bind_with_mode(addr, config.unix_socket_mode).await?);
    }
    let listeners = Listeners {
        grpc,
        metrics: bind_http(config.metrics_listen, "metrics").await?,
        http: bind_http(config.http_listen, "the http console").await?,
    };
    serve(listeners, ServerSettings::from(&config), shutdown).await
}

async fn bind_http(
    addr: Option<std::net::SocketAddr>,
    what: &str,
) -> anyhow::Result<Option<tokio::net::TcpListener>> {
    let Some(addr) = addr else { return Ok(None) };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for {what}"))?;
    Ok(Some(listener))
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only for a person at a terminal: in a file, a journal or a
    // pipe to a log shipper the escape codes are noise. NO_COLOR turns
    // them off anywhere.
    let colours = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colours)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// A future that completes on SIGTERM or SIGINT. The handlers are installed
/// here, before anything listens, not when the future is first polled: a
/// SIGTERM that arrives right after "serving" must start the graceful
/// shutdown, not kill the process with the default action.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM received"),
            _ = interrupt.recv() => tracing::info!("SIGINT received"),
        }
    })
}
