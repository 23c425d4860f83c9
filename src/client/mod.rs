//! The Rust client: connects to `http://host:port`, `https://host:port`
//! (TLS, optionally with a client certificate) or `unix:/path`, and adds
//! `authorization: Bearer <token>` to every call when given a token file.
//!
//! - [`Connection`]: the generated client ([`Connection::sessions`]) and
//!   the OTLP and health services on one channel.
//! - [`LogWriter`]: a buffered, batching writer for one session;
//!   `try_write` never waits, `write` waits for room; entries are stored
//!   once each, in order, through retries and server restarts.
//! - [`follow()`]: a session's entries as a `Stream` that reconnects from
//!   its cursor after transient errors and ends with the session.
//!
//! Start a session, write to it, end it, and read it back live (this
//! example runs as a test, against a server started in the hidden lines):
//!
//! ```
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() -> anyhow::Result<()> {
//! # use sessionlog::server::{Listener, Listeners, Server, ServerSettings};
//! # let dir = tempfile::tempdir()?;
//! # let store = sessionlog::server::StoreOptions { path: dir.path().join("data"), cache_bytes: 8 << 20 };
//! # let settings = ServerSettings::new(store, sessionlog::server::FsyncPolicy::Never);
//! # let listener = Listener::bind(&sessionlog::server::ListenAddr::Tcp("127.0.0.1:0".into())).await?;
//! # let server_url = format!("http://{}", listener.local_addr());
//! # let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
//! # let server = Server::open(settings, Listeners::grpc(vec![listener])).await?;
//! # let serving = tokio::spawn(server.serve(async {
//! #     let _ = stop_rx.await;
//! # }));
//! use std::time::Duration;
//!
//! use futures::StreamExt as _;
//! use sessionlog::client::{Connection, FollowItem, FollowOptions, LogWriter, WriterOptions, WriterTarget};
//! use sessionlog::pb;
//!
//! let connection = Connection::connect(&server_url, None).await?;
//! let start = pb::StartSessionRequest { app_name: "docs".into(), ..Default::default() };
//! let writer = LogWriter::spawn(connection.sessions(), WriterTarget::Start(start), WriterOptions::default());
//! for step in ["fetch", "build", "test"] {
//!     writer
//!         .write(pb::LogEntry {
//!             level: pb::Level::Info.into(),
//!             message: format!("{step} done"),
//!             ..Default::default()
//!         })
//!         .await?;
//! }
//! let session_id = writer.session_id().await.expect("the session started");
//! let report = writer.close(Duration::from_secs(5)).await;
//! assert_eq!((report.stored, report.dropped, report.lost), (3, 0, 0));
//! connection
//!     .sessions()
//!     .end_session(pb::EndSessionRequest { session_id: session_id.clone(), reason: "finished".into() })
//!     .await?;
//!
//! let mut messages = Vec::new();
//! let mut items = std::pin::pin!(sessionlog::client::follow(connection, &session_id, FollowOptions::default()));
//! while let Some(item) = items.next().await {
//!     match item? {
//!         FollowItem::Entries { entries, .. } => messages.extend(entries.into_iter().map(|e| e.message)),
//!         FollowItem::Ended(session) => assert_eq!(session.end_reason, "finished"),
//!         _ => {}
//!     }
//! }
//! assert_eq!(messages[..3], ["fetch done", "build done", "test done"]);
//! # let _ = stop_tx.send(());
//! # serving.await??;
//! # Ok(())
//! # }
//! ```

mod follow;
mod writer;

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use hyper_util::rt::TokioIo;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Request, Status};
use tonic_health::pb::health_client::HealthClient;

use crate::pb::otlp_logs::logs_service_client::LogsServiceClient;
use crate::pb::session_log_client::SessionLogClient;

pub use follow::{FollowItem, FollowOptions, follow};
pub use writer::{
    LogWriter, Target as WriterTarget, WriterHandle, WriterOptions, WriterReport, WriterStopped,
};

/// The default `--server`.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:50051";

/// Adds the bearer token, when there is one, to each request.
#[derive(Debug, Clone, Default)]
pub struct BearerToken(Option<MetadataValue<Ascii>>);

impl Interceptor for BearerToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(token) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", token.clone());
        }
        Ok(request)
    }
}

/// The generated client with the token interceptor.
pub type Client = SessionLogClient<InterceptedService<Channel, BearerToken>>;

/// An open channel to a server.
#[derive(Debug, Clone)]
pub struct Connection {
    channel: Channel,
    token: BearerToken,
}

impl Connection {
    /// Connects to `server` (`http://`, `https://` with the system's roots,
    /// or `unix:`), reading the token from `token_file` (first non-empty
    /// line) when given.
    pub async fn connect(server: &str, token_file: Option<&Path>) -> anyhow::Result<Self> {
        Self::connect_with(server, token_file, &ClientTls::default()).await
    }

    /// Like `connect`, with TLS files for `https://` servers.
    pub async fn connect_with(
        server: &str,
        token_file: Option<&Path>,
        tls: &ClientTls,
    ) -> anyhow::Result<Self> {
        let token = bearer_token(token_file)?;
        let channel = match target(server, tls)? {
            Target::Tcp(endpoint) => endpoint.connect().await,
            Target::Unix(path) => {
                unix_endpoint()
                    .connect_with_connector(unix_connector(path))
                    .await
            }
        }
        .with_context(|| format!("cannot connect to {server}"))?;
        Ok(Self { channel, token })
    }

    /// Like `connect_with`, but without waiting for the server: the first
    /// call connects, and calls fail with UNAVAILABLE while it is down. For
    /// producers that must start whether or not the server is up.
    pub fn connect_lazy(
        server: &str,
        token_file: Option<&Path>,
        tls: &ClientTls,
    ) -> anyhow::Result<Self> {
        let token = bearer_token(token_file)?;
        let channel = match target(server, tls)? {
            Target::Tcp(endpoint) => endpoint.connect_lazy(),
            Target::Unix(path) => unix_endpoint().connect_with_connector_lazy(unix_connector(path)),
        };
        Ok(Self { channel, token })
    }

    /// The sessionlog API.
    pub fn sessions(&self) -> Client {
        SessionLogClient::with_interceptor(self.channel.clone(), self.token.clone())
    }

    /// The channel itself, for other services or clients without the token.
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// The OTLP logs service the server also serves.
    pub fn otlp_logs(&self) -> LogsServiceClient<InterceptedService<Channel, BearerToken>> {
        LogsServiceClient::with_interceptor(self.channel.clone(), self.token.clone())
    }

    /// The standard health service.
    pub fn health(&self) -> HealthClient<InterceptedService<Channel, BearerToken>> {
        HealthClient::with_interceptor(self.channel.clone(), self.token.clone())
    }
}

/// TLS files for `https://` servers; without a CA file the system's roots
/// are trusted.
#[derive(Debug, Clone, Default)]
pub struct ClientTls {
    pub ca_file: Option<PathBuf>,
    /// A client certificate (with `key_file`), for servers that require one.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

impl ClientTls {
    fn config(&self) -> anyhow::Result<ClientTlsConfig> {
        let read = |path: &Path| {
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
        };
        let mut config = ClientTlsConfig::new();
        config = match &self.ca_file {
            Some(ca_file) => config.ca_certificate(Certificate::from_pem(read(ca_file)?)),
            None => config.with_native_roots(),
        };
        match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => {
                config = config.identity(Identity::from_pem(read(cert)?, read(key)?))
            }
            (None, None) => {}
            _ => anyhow::bail!("a client certificate needs both --cert-file and --key-file"),
        }
        Ok(config)
    }
}

enum Target {
    Tcp(Box<Endpoint>),
    Unix(PathBuf),
}

fn target(server: &str, tls: &ClientTls) -> anyhow::Result<Target> {
    if let Some(path) = server.strip_prefix("unix:") {
        return Ok(Target::Unix(PathBuf::from(path)));
    }
    if !server.starts_with("http://") && !server.starts_with("https://") {
        anyhow::bail!("`{server}` is not http://host:port, https://host:port or unix:/path");
    }
    let mut endpoint = Endpoint::from_shared(server.to_owned())
        .with_context(|| format!("`{server}` is not a server URL"))?
        .tcp_nodelay(true);
    if server.starts_with("https://") {
        endpoint = endpoint
            .tls_config(tls.config()?)
            .context("the TLS settings are not usable")?;
    }
    Ok(Target::Tcp(Box::new(endpoint)))
}

/// The URI is required by the API but unused: the connector dials the socket.
fn unix_endpoint() -> Endpoint {
    Endpoint::from_static("http://localhost")
}

fn unix_connector(
    path: PathBuf,
) -> impl tower::Service<
    tonic::transport::Uri,
    Response = TokioIo<tokio::net::UnixStream>,
    Error = std::io::Error,
    Future = impl Future<Output = std::io::Result<TokioIo<tokio::net::UnixStream>>> + Send,
> + Clone
+ Send
+ 'static {
    tower::service_fn(move |_| {
        let path = path.clone();
        async move { Ok(TokioIo::new(tokio::net::UnixStream::connect(path).await?)) }
    })
}

fn bearer_token(token_file: Option<&Path>) -> anyhow::Result<BearerToken> {
    Ok(match token_file {
        Some(path) => BearerToken(Some(read_token(path)?)),
        None => BearerToken::default(),
    })
}

fn read_token(path: &Path) -> anyhow::Result<MetadataValue<Ascii>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the token file {}", path.display()))?;
    let token = text
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .with_context(|| format!("the token file {} is empty", path.display()))?;
    format!("Bearer {token}")
        .parse()
        .with_context(|| format!("the token in {} is not printable ASCII", path.display()))
}
