//! Wires the layers on listeners and owns shutdown: open the store, load the
//! sessions, serve every listener, and on the shutdown signal report
//! NOT_SERVING, stop accepting, end open follow and watch streams (gRPC and
//! SSE), let open calls drain for the grace period, stop the flusher and
//! flush sled.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use std::os::unix::fs::PermissionsExt;

use anyhow::Context as _;
use futures::StreamExt;
use tokio::net::{TcpListener, UnixListener};
use tokio_stream::wrappers::{TcpListenerStream, UnixListenerStream};
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::api::{GuardLayer, Limits, SessionLogService, TokenAuth};
use crate::config::{ListenAddr, ServeConfig};
use crate::edge::StreamCounter;
use crate::forward::{self, ForwardSettings};
use crate::http::{self, HttpEdge};
use crate::metrics;
use crate::otlp::OtlpIntake;
use crate::pb::otlp_logs::logs_service_server::LogsServiceServer;
use crate::pb::session_log_server::SessionLogServer;
use crate::sessions::{RetentionPolicy, SessionManager};
use crate::store::durability::{Durability, FsyncPolicy};
use crate::store::{Store, StoreOptions};

/// Unix sockets are owner and group only unless configured otherwise.
pub const DEFAULT_UNIX_SOCKET_MODE: u32 = 0o660;

/// The gRPC name health reports for the main service.
pub const SERVICE_NAME: &str = "sessionlog.v1.SessionLog";

/// What `serve` needs besides its listeners.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub store: StoreOptions,
    pub fsync: FsyncPolicy,
    pub shutdown_grace: Duration,
    pub liveness_interval: Duration,
    /// The lease of sessions an OTLP export starts; `None`: no lease.
    pub otlp_lease: Option<Duration>,
    pub retention: RetentionPolicy,
    pub retention_interval: Duration,
    pub limits: Limits,
    /// Bearer tokens, one per line; `None` serves without tokens.
    pub auth_token_file: Option<PathBuf>,
    /// The mode of Unix sockets this server creates.
    pub unix_socket_mode: u32,
    /// TLS for TCP listeners; `None` serves plaintext.
    pub tls: Option<TlsFiles>,
    /// OTLP endpoints every entry is forwarded to (none by default).
    pub forward: ForwardSettings,
    /// How often an idle SSE stream of the HTTP edge gets a comment.
    pub sse_keep_alive: Duration,
}

/// PEM files for TLS.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// When set, clients must present a certificate signed by this CA.
    pub client_ca: Option<PathBuf>,
}

impl TlsFiles {
    /// Reads the files into tonic's TLS settings.
    fn load(&self) -> anyhow::Result<ServerTlsConfig> {
        let read = |path: &Path, what: &str| {
            std::fs::read(path)
                .with_context(|| format!("cannot read the {what} {}", path.display()))
        };
        let identity = Identity::from_pem(
            read(&self.cert, "TLS certificate")?,
            read(&self.key, "TLS key")?,
        );
        let mut config = ServerTlsConfig::new().identity(identity);
        if let Some(client_ca) = &self.client_ca {
            config = config.client_ca_root(Certificate::from_pem(read(client_ca, "client CA")?));
        }
        Ok(config)
    }
}

impl ServerSettings {
    /// Settings with the `serve` defaults for everything but the store.
    pub fn new(store: StoreOptions, fsync: FsyncPolicy) -> Self {
        Self {
            store,
            fsync,
            shutdown_grace: Duration::from_secs(10),
            liveness_interval: Duration::from_secs(5),
            otlp_lease: Some(Duration::from_secs(600)),
            retention: RetentionPolicy::default(),
            retention_interval: Duration::from_secs(60),
            limits: Limits::default(),
            auth_token_file: None,
            unix_socket_mode: DEFAULT_UNIX_SOCKET_MODE,
            tls: None,
            forward: ForwardSettings::default(),
            sse_keep_alive: http::DEFAULT_KEEP_ALIVE,
        }
    }
}

impl From<&ServeConfig> for ServerSettings {
    fn from(config: &ServeConfig) -> Self {
        Self {
            store: config.store_options(),
            fsync: config.fsync_policy(),
            shutdown_grace: config.shutdown_grace,
            liveness_interval: config.liveness_interval,
            otlp_lease: Some(config.otlp_lease).filter(|lease| !lease.is_zero()),
            retention: config.retention_policy(),
            retention_interval: config.retention_interval,
            limits: config.limits(),
            auth_token_file: config.auth_token_file.clone(),
            unix_socket_mode: config.unix_socket_mode,
            tls: config.tls_files(),
            forward: config.forward_settings(),
            sse_keep_alive: http::DEFAULT_KEEP_ALIVE,
        }
    }
}

/// A bound listener: bind first (port 0 works), then serve.
#[derive(Debug)]
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

impl Listener {
    /// Binds `addr`. A Unix socket path left by a dead server is replaced;
    /// one a live server answers on is not.
    pub async fn bind(addr: &ListenAddr) -> anyhow::Result<Self> {
        Self::bind_with_mode(addr, DEFAULT_UNIX_SOCKET_MODE).await
    }

    /// Binds `addr`; a Unix socket gets `unix_mode` (e.g. `0o660`: owner
    /// and group may connect, others may not).
    pub async fn bind_with_mode(addr: &ListenAddr, unix_mode: u32) -> anyhow::Result<Self> {
        match addr {
            ListenAddr::Tcp(host_port) => {
                let listener = TcpListener::bind(host_port)
                    .await
                    .with_context(|| format!("cannot listen on {host_port}"))?;
                Ok(Self::Tcp(listener))
            }
            ListenAddr::Unix(path) => {
                remove_stale_socket(path).await?;
                let listener = UnixListener::bind(path)
                    .with_context(|| format!("cannot listen on unix:{}", path.display()))?;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(unix_mode))
                    .with_context(|| format!("cannot set the mode of unix:{}", path.display()))?;
                Ok(Self::Unix(listener, path.clone()))
            }
        }
    }

    /// Where this listener accepts, for logs and for tests.
    pub fn local_addr(&self) -> String {
        match self {
            Self::Tcp(listener) => listener.local_addr().map_or_else(
                |err| format!("tcp (unknown: {err})"),
                |addr| addr.to_string(),
            ),
            Self::Unix(_, path) => format!("unix:{}", path.display()),
        }
    }
}

async fn remove_stale_socket(path: &Path) -> anyhow::Result<()> {
    if tokio::fs::symlink_metadata(path).await.is_err() {
        return Ok(());
    }
    if tokio::net::UnixStream::connect(path).await.is_ok() {
        anyhow::bail!("unix:{} is in use by a running server", path.display());
    }
    tokio::fs::remove_file(path)
        .await
        .with_context(|| format!("cannot replace the stale socket {}", path.display()))
}

/// An opened store with its sessions loaded, ready to serve.
#[derive(Debug)]
pub struct Server {
    store: Store,
    durability: Durability,
    flusher: Option<tokio::task::JoinHandle<()>>,
    sessions: SessionManager,
    auth: TokenAuth,
    tls: Option<ServerTlsConfig>,
    settings: ServerSettings,
    metrics_listener: Option<TcpListener>,
    http_listener: Option<TcpListener>,
}

impl Server {
    /// Opens the store and loads every session.
    pub async fn open(settings: ServerSettings) -> anyhow::Result<Self> {
        let store_options = settings.store.clone();
        let store = tokio::task::spawn_blocking(move || Store::open(&store_options))
            .await?
            .with_context(|| {
                format!("cannot open the store in {}", settings.store.path.display())
            })?;
        let (durability, flusher) = Durability::start(store.clone(), settings.fsync);
        let loader_store = store.clone();
        let loader_durability = durability.clone();
        let sessions = tokio::task::spawn_blocking(move || {
            SessionManager::load(loader_store, loader_durability)
        })
        .await?
        .context("cannot load the stored sessions")?;
        tracing::info!(sessions = sessions.session_count(), "store open");
        let auth = match &settings.auth_token_file {
            Some(path) => TokenAuth::load(path)?,
            None => TokenAuth::disabled(),
        };
        let tls = settings.tls.as_ref().map(TlsFiles::load).transpose()?;
        Ok(Self {
            auth,
            tls,
            store,
            durability,
            flusher,
            sessions,
            settings,
            metrics_listener: None,
            http_listener: None,
        })
    }

    /// Also serves `/metrics` and `/healthz` over HTTP on `listener`.
    pub fn with_metrics(mut self, listener: TcpListener) -> Self {
        self.metrics_listener = Some(listener);
        self
    }

    /// Also serves the HTTP read API, SSE streams and the web console on
    /// `listener` (see `http`).
    pub fn with_http(mut self, listener: TcpListener) -> Self {
        self.http_listener = Some(listener);
        self
    }

    /// The rules behind the API (for tests and in-process users).
    pub fn sessions(&self) -> &SessionManager {
        &self.sessions
    }

    /// Serves every listener until `shutdown` completes, then shuts down in
    /// order (see the module doc). Returns once sled is flushed.
    pub async fn serve(
        mut self,
        listeners: Vec<Listener>,
        shutdown: impl Future<Output = ()> + Send,
    ) -> anyhow::Result<()> {
        let (health, health_service) = tonic_health::server::health_reporter();
        // Health answers without a token (probes carry none); the rest do not.
        let auth = self.auth.clone();
        // One count of open streams for gRPC and SSE: --max-streams bounds both.
        let limits = Arc::new(self.settings.limits.clone());
        let streams = Arc::new(StreamCounter::default());
        let api = SessionLogServer::new(SessionLogService::with_streams(
            self.sessions.clone(),
            limits.clone(),
            streams.clone(),
        ))
        .max_decoding_message_size(self.settings.limits.max_message_bytes);
        let otlp = LogsServiceServer::new(OtlpIntake::new(
            self.sessions.clone(),
            self.settings.limits.clone(),
            self.settings.otlp_lease,
        ))
        .max_decoding_message_size(self.settings.limits.max_message_bytes);
        let routes = Routes::new(health_service)
            .add_service(InterceptedService::new(
                reflection().build_v1()?,
                auth.clone(),
            ))
            .add_service(InterceptedService::new(
                reflection().build_v1alpha()?,
                auth.clone(),
            ))
            .add_service(InterceptedService::new(api, auth.clone()))
            .add_service(InterceptedService::new(otlp, auth));
        set_health(&health, ServingStatus::Serving).await;

        let stop_accepting = CancellationToken::new();
        let mut servers = tokio::task::JoinSet::new();
        for listener in listeners {
            tracing::info!(listen = %listener.local_addr(), "serving");
            let mut builder = tonic::transport::Server::builder();
            // TLS guards the network; a Unix socket is guarded by its mode.
            if let (Some(tls), Listener::Tcp(_)) = (&self.tls, &listener) {
                builder = builder
                    .tls_config(tls.clone())
                    .context("the TLS settings are not usable")?;
            }
            let server = builder.layer(GuardLayer).add_routes(routes.clone());
            let stop = stop_accepting.clone().cancelled_owned();
            match listener {
                Listener::Tcp(listener) => {
                    let incoming = TcpListenerStream::new(listener).map(|accepted| {
                        let stream = accepted?;
                        // Small frames (a follower's batch) must not wait for Nagle.
                        stream.set_nodelay(true)?;
                        Ok::<_, std::io::Error>(stream)
                    });
                    servers.spawn(server.serve_with_incoming_shutdown(incoming, stop));
                }
                Listener::Unix(listener, _) => {
                    let incoming = UnixListenerStream::new(listener);
                    servers.spawn(server.serve_with_incoming_shutdown(incoming, stop));
                }
            }
        }

        let housekeeping = CancellationToken::new();
        let mut chores = self.spawn_housekeeping(&housekeeping);
        chores.extend(forward::start(
            &self.sessions,
            &self.store,
            &self.settings.forward,
            &housekeeping,
        )?);
        let not_serving = CancellationToken::new();
        let stop_metrics = CancellationToken::new();
        let metrics_server = self.metrics_listener.take().map(|listener| {
            tracing::info!(listen = %display_addr(&listener), "serving metrics");
            let sessions = self.sessions.clone();
            let store = self.store.clone();
            let snapshot = move || {
                let (active, ended) = sessions.state_counts();
                metrics::Snapshot {
                    active,
                    ended,
                    followers: *sessions.followers().borrow(),
                    store_bytes: store.size_on_disk().ok(),
                }
            };
            tokio::spawn(metrics::serve(
                listener,
                snapshot,
                not_serving.clone(),
                stop_metrics.clone(),
            ))
        });

        let stop_http = CancellationToken::new();
        let mut http_server = self.http_listener.take().map(|listener| {
            tracing::info!(listen = %display_addr(&listener), "serving http");
            let edge = HttpEdge::new(self.sessions.clone(), limits, streams, self.auth.clone())
                .with_keep_alive(self.settings.sse_keep_alive);
            tokio::spawn(http::serve(listener, edge.router(), stop_http.clone()))
        });

        shutdown.await;
        tracing::info!(grace = ?self.settings.shutdown_grace, "shutting down");
        housekeeping.cancel();
        for chore in chores {
            let _ = chore.await;
        }
        set_health(&health, ServingStatus::NotServing).await;
        not_serving.cancel();
        stop_accepting.cancel();
        stop_http.cancel();
        // Follow and watch streams (gRPC and SSE) never end by themselves;
        // end them now so the drain below waits only for calls that finish.
        self.sessions.begin_shutdown();
        let drained = tokio::time::timeout(self.settings.shutdown_grace, async {
            while let Some(finished) = servers.join_next().await {
                match finished {
                    Ok(Ok(())) => {}
                    Ok(Err(err)) => tracing::error!(error = %err, "a listener failed"),
                    Err(join) => tracing::error!(error = %join, "a listener task failed"),
                }
            }
            if let Some(http_server) = http_server.as_mut() {
                match http_server.await {
                    Ok(Ok(())) => {}
                    Ok(Err(err)) => tracing::error!(error = %err, "the http server failed"),
                    Err(join) => tracing::error!(error = %join, "the http server task failed"),
                }
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!("open calls did not finish within the grace period; closing them");
            servers.shutdown().await;
            if let Some(http_server) = http_server {
                http_server.abort();
            }
        }
        stop_metrics.cancel();
        if let Some(metrics_server) = metrics_server {
            match metrics_server.await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => tracing::error!(error = %err, "the metrics server failed"),
                Err(join) => tracing::error!(error = %join, "the metrics server task failed"),
            }
        }
        self.durability.stop();
        if let Some(flusher) = self.flusher {
            let _ = flusher.await;
        }
        // Only after every call finished: a call cut off by the grace period
        // may still be running on its connection's task. Without the saved
        // counters, start-up only gets slower: it reads them from the logs.
        if drained.is_ok() {
            let sessions = self.sessions.clone();
            match tokio::task::spawn_blocking(move || sessions.save_shutdown_counters()).await {
                Ok(Ok(saved)) => {
                    tracing::debug!(sessions = saved, "saved the active sessions' counters");
                }
                Ok(Err(err)) => {
                    tracing::warn!(error = %err, "could not save the active sessions' counters");
                }
                Err(join) => {
                    tracing::warn!(error = %join, "saving the active sessions' counters failed");
                }
            }
        }
        let store = self.store;
        tokio::task::spawn_blocking(move || store.flush())
            .await?
            .context("the final flush failed")?;
        tracing::info!("stopped");
        Ok(())
    }
}

impl Server {
    /// The liveness task, and the retention task when a limit is set.
    fn spawn_housekeeping(&self, stop: &CancellationToken) -> Vec<tokio::task::JoinHandle<()>> {
        let mut chores = Vec::new();
        let sessions = self.sessions.clone();
        chores.push(tokio::spawn(every(
            self.settings.liveness_interval,
            stop.clone(),
            move || {
                let sessions = sessions.clone();
                async move {
                    sessions.check_liveness().await;
                }
            },
        )));
        if let Some(path) = &self.settings.auth_token_file {
            chores.push(tokio::spawn(
                self.auth.clone().watch(path.clone(), stop.clone()),
            ));
        }
        let retention = self.settings.retention;
        if !retention.is_unlimited() {
            let sessions = self.sessions.clone();
            chores.push(tokio::spawn(every(
                self.settings.retention_interval,
                stop.clone(),
                move || {
                    let sessions = sessions.clone();
                    async move {
                        sessions.enforce_retention(retention).await;
                    }
                },
            )));
        }
        chores
    }
}

/// Runs `chore` every `period` until `stop`.
async fn every<F, Fut>(period: Duration, stop: CancellationToken, chore: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => chore().await,
            () = stop.cancelled() => return,
        }
    }
}

/// The HTTP listeners besides the gRPC ones: `--metrics-listen` and
/// `--http-listen`.
#[derive(Debug, Default)]
pub struct HttpListeners {
    pub metrics: Option<TcpListener>,
    pub http: Option<TcpListener>,
}

/// Opens the store and serves until `shutdown` (see [`Server`]).
pub async fn serve(
    listeners: Vec<Listener>,
    http_listeners: HttpListeners,
    settings: ServerSettings,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let mut server = Server::open(settings).await?;
    if let Some(listener) = http_listeners.metrics {
        server = server.with_metrics(listener);
    }
    if let Some(listener) = http_listeners.http {
        server = server.with_http(listener);
    }
    server.serve(listeners, shutdown).await
}

fn display_addr(listener: &TcpListener) -> String {
    listener
        .local_addr()
        .map_or_else(|err| format!("(unknown: {err})"), |addr| addr.to_string())
}

async fn set_health(health: &HealthReporter, status: ServingStatus) {
    health.set_service_status("", status).await;
    health.set_service_status(SERVICE_NAME, status).await;
}

/// Reflection over our protos and the health service's.
fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
}
