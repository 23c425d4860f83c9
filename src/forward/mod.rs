//! Forwarding: every session's start, entries and end exported as OTLP log
//! records to one or more OpenTelemetry endpoints (a Collector, another
//! sessionlog), at least once and in order per session. The store is the
//! buffer: each target has a cursor per session in the `forward` tree that
//! moves only after the target acknowledged an export, so a restart or an
//! outage resumes where the target last answered, and what may arrive twice
//! is at most the one export in flight. Appends and followers never wait
//! for a target.

mod forwarder;
mod http;
mod retry;
mod target;

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::sessions::SessionManager;
use crate::store::Store;

pub(crate) use target::parse_header;

/// Where and how to forward.
#[derive(Debug, Clone, Default)]
pub struct ForwardSettings {
    /// OTLP endpoints: `http(s)://host:port` (OTLP/gRPC), or with a path,
    /// `http(s)://host:port/v1/logs` (OTLP/HTTP).
    pub targets: Vec<String>,
    /// Sent with every export (e.g. `authorization`).
    pub headers: Vec<(String, String)>,
    /// The most records in one export.
    pub max_records: usize,
    /// How long new records gather before a partial export goes.
    pub linger: Duration,
    /// For `https://` targets: a PEM CA instead of the system roots.
    pub ca_file: Option<std::path::PathBuf>,
    /// For targets that require client certificates: a PEM certificate
    /// and its key.
    pub cert_file: Option<std::path::PathBuf>,
    pub key_file: Option<std::path::PathBuf>,
    /// How each export is compressed (gzip unless told otherwise, as the
    /// OpenTelemetry Collector's exporter does).
    pub compression: ForwardCompression,
}

/// `--forward-compression` values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ForwardCompression {
    #[default]
    Gzip,
    Zstd,
    None,
}

impl ForwardCompression {
    /// tonic's encoding, `None` for uncompressed exports.
    fn encoding(self) -> Option<tonic::codec::CompressionEncoding> {
        match self {
            Self::Gzip => Some(tonic::codec::CompressionEncoding::Gzip),
            Self::Zstd => Some(tonic::codec::CompressionEncoding::Zstd),
            Self::None => None,
        }
    }
}

/// Which ended sessions each target has acknowledged to the end: retention
/// keeps an ended session until every target has it.
#[derive(Debug, Default)]
pub(crate) struct Handed {
    done: std::sync::Mutex<std::collections::HashMap<String, usize>>,
}

impl Handed {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, usize>> {
        self.done
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// One more target has all of `session_id`.
    pub(crate) fn add(&self, session_id: &str) {
        *self.lock().entry(session_id.to_owned()).or_default() += 1;
    }

    /// `session_id` is gone from the store.
    pub(crate) fn forget(&self, session_id: &str) {
        self.lock().remove(session_id);
    }

    fn count(&self, session_id: &str) -> usize {
        self.lock().get(session_id).copied().unwrap_or(0)
    }
}

/// Starts one forwarder per target; they stop when `stop` is cancelled.
/// The forwarders of every `--forward-otlp` target, checked and holding
/// their cursors, not yet running.
#[derive(Default)]
pub(crate) struct Forwarding {
    /// Each target's URL (for the log) and its forwarder.
    forwarders: Vec<(String, forwarder::Forwarder)>,
}

impl std::fmt::Debug for Forwarding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let urls: Vec<&str> = self
            .forwarders
            .iter()
            .map(|(url, _)| url.as_str())
            .collect();
        f.debug_struct("Forwarding")
            .field("targets", &urls)
            .finish()
    }
}

/// Checks every target (URL, headers, TLS files) and reads its cursors;
/// from here on, retention keeps an ended session until every target has
/// acknowledged its end. Everything that can fail is here, so a bad flag
/// stops the server before it reports SERVING.
pub(crate) fn prepare(
    sessions: &SessionManager,
    store: &Store,
    settings: &ForwardSettings,
) -> anyhow::Result<Forwarding> {
    if settings.targets.is_empty() {
        return Ok(Forwarding::default());
    }
    let tls = crate::client::ClientTls {
        ca_file: settings.ca_file.clone(),
        cert_file: settings.cert_file.clone(),
        key_file: settings.key_file.clone(),
    };
    let targets = settings
        .targets
        .iter()
        .map(|url| target::Target::new(url, &settings.headers, &tls, settings.compression))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let handed = std::sync::Arc::new(Handed::default());
    let forwarders = targets
        .into_iter()
        .map(|target| {
            let url = target.url.clone();
            let forwarder = forwarder::Forwarder::new(
                target,
                sessions.clone(),
                store.clone(),
                settings.max_records.max(1),
                settings.linger,
                handed.clone(),
            )?;
            Ok((url, forwarder))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let count = forwarders.len();
    sessions.set_prune_guard(std::sync::Arc::new(move |session_id: &str| {
        handed.count(session_id) >= count
    }));
    Ok(Forwarding { forwarders })
}

impl Forwarding {
    /// Runs each forwarder on its own task until `stop`.
    pub(crate) fn start(self, stop: &CancellationToken) -> Vec<JoinHandle<()>> {
        self.forwarders
            .into_iter()
            .map(|(url, forwarder)| {
                tracing::info!(target = %url, protocol = forwarder.protocol(), "forwarding to an OTLP endpoint");
                tokio::spawn(forwarder.run(stop.clone()))
            })
            .collect()
    }
}
