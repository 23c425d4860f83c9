//! Wires the layers on listeners and owns shutdown. `Server::open` does
//! everything that can fail (tokens, TLS, reflection, the store and its
//! sessions, forwarding targets), so a bad setting stops the process before
//! anything reports SERVING. `Server::serve` then serves every listener
//! (and starts checking the ended sessions' logs, see `sessions::check`),
//! and on the shutdown signal reports NOT_SERVING, stops accepting, ends
//! open follow and watch streams (gRPC, SSE, `Health.Watch`), lets open calls drain for
//! the grace period, stops the flusher, saves the active sessions' counters
//! and flushes sled.

mod listener;
mod settings;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic::service::interceptor::InterceptedService;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::api::{GuardLayer, OtlpService, SessionLogService, TokenAuth, health_service};
use crate::connections::{self, ListenerGate};
use crate::edge::StreamCounter;
use crate::forward::{self, Forwarding};
use crate::http::{self, HttpEdge};
use crate::metrics;
use crate::otlp::OtlpIntake;
use crate::pb::otlp_intake::logs_service_server::LogsServiceServer;
use crate::pb::session_log_server::SessionLogServer;
use crate::sessions::SessionManager;
use crate::store::durability::Durability;
use crate::store::{Store, StoreFailure};

pub use listener::{ListenAddr, Listener, Listeners, SocketFile};
pub use settings::{DEFAULT_UNIX_SOCKET_MODE, ServerSettings, TlsFiles};
// The types `ServerSettings` is made of.
pub use crate::connections::ConnectionSettings;
pub use crate::edge::Limits;
pub use crate::forward::{ForwardCompression, ForwardSettings};
pub use crate::sessions::RetentionPolicy;
pub use crate::store::durability::FsyncPolicy;
pub use crate::store::{ForeignOwner, StoreOptions};

/// A generated gRPC server that takes gzip and zstd requests (the
/// OpenTelemetry Collector's exporter gzips by default) and compresses its
/// answers with the first of them that the client's `grpc-accept-encoding`
/// lists, uncompressed when it lists neither. Each generated server is its
/// own type with the same methods, hence a macro.
macro_rules! compressed {
    ($server:expr) => {
        $server
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
            .accept_compressed(tonic::codec::CompressionEncoding::Zstd)
            .send_compressed(tonic::codec::CompressionEncoding::Gzip)
            .send_compressed(tonic::codec::CompressionEncoding::Zstd)
    };
}

/// The gRPC name health reports for the main service.
pub const SERVICE_NAME: &str = "sessionlog.v1.SessionLog";

/// A server with everything that can fail done: listeners bound, TLS
/// loaded, store open, sessions loaded, forwarding targets checked.
#[derive(Debug)]
pub struct Server {
    store: Store,
    durability: Durability,
    flusher: Option<JoinHandle<()>>,
    sessions: SessionManager,
    auth: TokenAuth,
    settings: ServerSettings,
    /// Each gRPC listener with its transport (TLS on TCP when configured).
    grpc: Vec<(tonic::transport::Server, Listener)>,
    routes: Routes,
    streams: Arc<StreamCounter>,
    metrics_listener: Option<TcpListener>,
    http_listener: Option<TcpListener>,
    /// The cap on open connections of each listener.
    max_connections: usize,
    forwarding: Forwarding,
    otlp_intake: OtlpIntake,
}

impl Server {
    /// Does everything that can fail, in an order that leaves nothing
    /// running on failure: tokens, TLS and reflection first, then the store
    /// and its sessions, then the forwarding targets (which read their
    /// cursors from the store).
    pub async fn open(settings: ServerSettings, listeners: Listeners) -> anyhow::Result<Self> {
        let auth = match &settings.auth_token_file {
            Some(path) => TokenAuth::load(path)?,
            None => TokenAuth::disabled(),
        };
        let tls = settings.tls.as_ref().map(TlsFiles::load).transpose()?;
        let max_connections = max_connections(&settings.connections, &listeners);
        let keepalive = &settings.connections;
        let mut grpc = Vec::with_capacity(listeners.grpc.len());
        for listener in listeners.grpc {
            let mut transport = tonic::transport::Server::builder()
                .http2_keepalive_interval(keepalive.http2_keepalive_interval)
                .http2_keepalive_timeout(Some(keepalive.http2_keepalive_timeout));
            // TLS guards the network; a Unix socket is guarded by its mode.
            if let (Some(tls), Listener::Tcp(_)) = (&tls, &listener) {
                transport = transport
                    .tls_config(tls.clone().timeout(keepalive.handshake_timeout))
                    .context("the TLS settings are not usable")?;
            }
            grpc.push((transport, listener));
        }
        let reflection_v1 = compressed!(reflection().build_v1()?);
        let reflection_v1alpha = compressed!(reflection().build_v1alpha()?);

        let (store, durability, flusher, sessions) = open_store(&settings).await?;
        sessions
            .start_sealer(settings.seal_active_after)
            .context("cannot start the sealer")?;
        // Reads each target's cursors from the store.
        let prepared = {
            let (sessions, store, forward) =
                (sessions.clone(), store.clone(), settings.forward.clone());
            crate::store::blocking(move || forward::prepare(&sessions, &store, &forward)).await
        };
        let forwarding = match prepared {
            Ok(forwarding) => forwarding,
            Err(err) => {
                durability.stop();
                if let Some(flusher) = flusher {
                    let _ = flusher.await;
                }
                return Err(err);
            }
        };

        // One count of open streams for gRPC and SSE: --max-streams bounds both.
        let streams = Arc::new(StreamCounter::default());
        let limits = &settings.limits;
        let api = compressed!(SessionLogServer::new(SessionLogService::with_streams(
            sessions.clone(),
            Arc::new(limits.clone()),
            streams.clone(),
        )))
        .max_decoding_message_size(limits.max_message_bytes);
        // One intake behind gRPC's `LogsService` and HTTP's `/v1/logs`.
        let otlp_intake = OtlpIntake::new(sessions.clone(), limits.clone(), settings.otlp_lease)
            .with_session_keys(settings.otlp_session_from.clone());
        let otlp = compressed!(LogsServiceServer::new(OtlpService::new(
            otlp_intake.clone()
        )))
        .max_decoding_message_size(limits.max_message_bytes);
        // Health answers without a token (probes carry none); the rest do not.
        let routes = Routes::default()
            .add_service(InterceptedService::new(reflection_v1, auth.clone()))
            .add_service(InterceptedService::new(reflection_v1alpha, auth.clone()))
            .add_service(InterceptedService::new(api, auth.clone()))
            .add_service(InterceptedService::new(otlp, auth.clone()));
        Ok(Self {
            store,
            durability,
            flusher,
            sessions,
            auth,
            settings,
            grpc,
            routes,
            streams,
            metrics_listener: listeners.metrics,
            http_listener: listeners.http,
            max_connections,
            forwarding,
            otlp_intake,
        })
    }

    /// The rules behind the API, for white-box tests.
    #[cfg(feature = "testing")]
    pub fn sessions(&self) -> &SessionManager {
        &self.sessions
    }

    /// Serves every listener until `shutdown` completes, then shuts down in
    /// order (see the module doc). Returns once sled is flushed.
    pub async fn serve(mut self, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
        let health = HealthReporter::new();
        // Ends open Health.Watch streams, with Follow and WatchSessions.
        let end_health_watches = CancellationToken::new();
        let health_service =
            compressed!(health_service(health.clone(), end_health_watches.clone()));
        let routes = self.routes.clone().add_service(health_service);
        // Nothing from here on can fail: report SERVING before the first
        // connection is accepted, so no client sees the service unknown.
        set_health(&health, ServingStatus::Serving).await;
        // The ended sessions' logs are checked from now on, off the path to
        // SERVING; a read that gets to one first checks it itself. Started
        // before anything serves, so every ended session is walked, and
        // after the sealer, which the check hands each log on to.
        if let Err(err) = self.sessions.start_log_check() {
            tracing::warn!(error = %err, "cannot start the log check; logs are checked when read");
        }
        let store_health = tokio::spawn(report_store_health(
            self.store.health().clone(),
            health.clone(),
        ));
        let stop_accepting = CancellationToken::new();
        let mut servers = JoinSet::new();
        // Removed when dropped, after the drain and the final flush.
        let mut socket_files = Vec::new();
        for (transport, listener) in std::mem::take(&mut self.grpc) {
            tracing::info!(listen = %listener.local_addr(), "serving");
            let server = transport.layer(GuardLayer).add_routes(routes.clone());
            let stop = stop_accepting.clone().cancelled_owned();
            let gate = ListenerGate::new(listener.local_addr(), self.max_connections);
            let settings = self.settings.connections.clone();
            match listener {
                Listener::Tcp(listener) => {
                    let incoming = connections::incoming(listener, gate, settings);
                    servers.spawn(server.serve_with_incoming_shutdown(incoming, stop));
                }
                Listener::Unix(listener, socket_file) => {
                    socket_files.push(socket_file);
                    let incoming = connections::incoming(listener, gate, settings);
                    servers.spawn(server.serve_with_incoming_shutdown(incoming, stop));
                }
            }
        }
        let housekeeping = CancellationToken::new();
        let mut chores = self.spawn_housekeeping(&housekeeping);
        chores.extend(std::mem::take(&mut self.forwarding).start(&housekeeping));
        let not_serving = CancellationToken::new();
        let stop_metrics = CancellationToken::new();
        let metrics_server = self.spawn_metrics(&not_serving, &stop_metrics);
        let stop_http = CancellationToken::new();
        let http_server = self.spawn_http(&stop_http);

        shutdown.await;
        tracing::info!(grace = ?self.settings.shutdown_grace, "shutting down");
        store_health.abort();
        // Probes learn first, so traffic moves away while the rest stops.
        set_health(&health, ServingStatus::NotServing).await;
        not_serving.cancel();
        housekeeping.cancel();
        // A chore stuck in a store call that cannot finish (a failed
        // store) must not hold shutdown: it gets the grace period.
        let chores_done = tokio::time::timeout(self.settings.shutdown_grace, async {
            for chore in &mut chores {
                let _ = chore.await;
            }
        })
        .await;
        if chores_done.is_err() {
            tracing::warn!("background tasks did not stop within the grace period; leaving them");
            for chore in &chores {
                chore.abort();
            }
        }
        stop_accepting.cancel();
        stop_http.cancel();
        // Follow and watch streams (gRPC, SSE, Health.Watch) never end by themselves;
        // end them now so the drain below waits only for calls that finish.
        self.sessions.begin_shutdown();
        end_health_watches.cancel();
        let drained = drain(servers, http_server, self.settings.shutdown_grace).await;
        stop_metrics.cancel();
        if let Some(mut metrics_server) = metrics_server {
            match tokio::time::timeout(self.settings.shutdown_grace, &mut metrics_server).await {
                Ok(finished) => report("the metrics server", finished),
                Err(_) => metrics_server.abort(),
            }
        }
        let closed = self.close(drained).await;
        drop(socket_files);
        closed
    }

    /// `/metrics` and `/healthz`, when a listener was given.
    fn spawn_metrics(
        &mut self,
        not_serving: &CancellationToken,
        stop: &CancellationToken,
    ) -> Option<JoinHandle<std::io::Result<()>>> {
        let listener = self.metrics_listener.take()?;
        tracing::info!(listen = %listener::display_addr(&listener), "serving metrics");
        let sessions = self.sessions.clone();
        let store = self.store.clone();
        let snapshot = move || {
            let (active, ended) = sessions.state_counts();
            let backlog = sessions.seal_backlog();
            metrics::Snapshot {
                active,
                ended,
                followers: *sessions.followers().borrow(),
                store_bytes: store.size_on_disk().ok(),
                seal_backlog: backlog.sessions,
                reclaiming: backlog.reclaiming,
                damaged_sessions: sessions.damaged_count(),
                segments: segment_usage(&store),
            }
        };
        let store_health = self.store.health().clone();
        let trouble = move || {
            store_health.failure().map(|failure| match failure {
                StoreFailure::Failed(reason) => format!("the store failed: {reason}"),
                StoreFailure::Stalled(reason) => format!("the store stalled: {reason}"),
            })
        };
        let router = metrics::router(snapshot, not_serving.clone(), trouble);
        Some(self.spawn_router(listener, router, stop))
    }

    /// The HTTP edge, when a listener was given.
    fn spawn_http(&mut self, stop: &CancellationToken) -> Option<JoinHandle<std::io::Result<()>>> {
        let listener = self.http_listener.take()?;
        tracing::info!(listen = %listener::display_addr(&listener), "serving http");
        let edge = HttpEdge::new(
            self.sessions.clone(),
            Arc::new(self.settings.limits.clone()),
            self.streams.clone(),
            self.auth.clone(),
        )
        .with_keep_alive(self.settings.sse_keep_alive)
        .with_otlp(self.otlp_intake.clone())
        .with_allowed_hosts(http::AllowedHosts::new(
            listener.local_addr().ok().map(|addr| addr.ip()),
            &self.settings.http_allowed_hosts,
        ));
        Some(self.spawn_router(listener, edge.router(), stop))
    }

    /// Serves `router` on `listener` under the connection settings until
    /// `stop`.
    fn spawn_router(
        &self,
        listener: TcpListener,
        router: axum::Router,
        stop: &CancellationToken,
    ) -> JoinHandle<std::io::Result<()>> {
        let gate = ListenerGate::new(listener::display_addr(&listener), self.max_connections);
        let settings = self.settings.connections.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let incoming = connections::incoming(listener, gate, settings.clone());
            connections::serve_http(incoming, router, &settings, stop).await
        })
    }

    /// After the drain: stops the flusher, saves the active sessions'
    /// counters (only when every call finished: a call cut off by the grace
    /// period may still be running on its connection's task), and flushes.
    /// Each step is bounded by the flush timeout; a store that failed is
    /// not flushed (sled's flush would never return) and the error says so.
    async fn close(self, drained: bool) -> anyhow::Result<()> {
        let timeout = self.settings.flush_timeout;
        // A seal step lands whole or not at all, and one in progress is
        // short, as is a reclaimer's turn; either stuck in sled is left
        // behind like a flusher.
        let sessions = self.sessions.clone();
        let stopping = tokio::task::spawn_blocking(move || sessions.stop_sealer());
        if tokio::time::timeout(timeout, stopping).await.is_err() {
            tracing::warn!("the sealer and reclaimer did not stop in time; leaving them");
        }
        // Before the counters are saved: it holds a session's lock while it
        // checks one, and none are saved while any is held.
        let sessions = self.sessions.clone();
        let stopping = tokio::task::spawn_blocking(move || sessions.stop_log_check());
        if tokio::time::timeout(timeout, stopping).await.is_err() {
            tracing::warn!("the log check did not stop in time; leaving it");
        }
        self.durability.stop();
        if let Some(flusher) = self.flusher {
            // The flusher's last flush is bounded by the same timeout.
            if tokio::time::timeout(timeout.saturating_mul(2), flusher)
                .await
                .is_err()
            {
                tracing::warn!("the flusher did not stop in time; leaving it");
            }
        }
        if let Some(failure) = self.store.health().failure() {
            // A wedged sled would wait forever in its own shutdown flush
            // when dropped: then keep a handle so it never is in-process.
            let store = self.store.clone();
            let droppable = tokio::task::spawn_blocking(move || {
                store.can_drop_after_failure(Duration::from_secs(1))
            })
            .await
            .unwrap_or(false);
            if !droppable {
                std::mem::forget(self.store.clone());
            }
            let what = match failure {
                StoreFailure::Failed(_) => "the store failed while serving",
                StoreFailure::Stalled(_) => "a flush was stuck at shutdown",
            };
            anyhow::bail!(
                "{what} ({}); the final flush was skipped; acknowledged entries are on disk",
                failure.reason()
            );
        }
        // Without the saved counters, start-up only gets slower: it reads
        // them from the logs.
        if drained {
            let sessions = self.sessions.clone();
            let saving = tokio::task::spawn_blocking(move || sessions.save_shutdown_counters());
            match tokio::time::timeout(timeout, saving).await {
                Ok(Ok(Ok(saved))) => {
                    tracing::debug!(sessions = saved, "saved the active sessions' counters");
                }
                Ok(Ok(Err(err))) => {
                    tracing::warn!(error = %err, "could not save the active sessions' counters");
                }
                Ok(Err(join)) => {
                    tracing::warn!(error = %join, "saving the active sessions' counters failed");
                }
                Err(_) => {
                    tracing::warn!("saving the active sessions' counters timed out");
                }
            }
        }
        let store = self.store.clone();
        let flushing = tokio::task::spawn_blocking(move || {
            store.flush()?;
            // Space not given back now is at the next start; a failure
            // here must not cost the clean-shutdown mark.
            if let Err(err) = store.give_back_free_segments() {
                tracing::warn!(error = %err, "giving sled's free segments back at shutdown failed");
            }
            store.record_clean_shutdown()
        });
        let flushed = match tokio::time::timeout(timeout, flushing).await {
            Ok(joined) => joined?.context("the final flush failed"),
            Err(_) => Err(anyhow::anyhow!(
                "the final flush did not finish within {timeout:?} (--flush-timeout)"
            )),
        };
        if flushed.is_err() {
            std::mem::forget(self.store);
        }
        flushed?;
        tracing::info!("stopped");
        Ok(())
    }
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

/// Reports NOT_SERVING, with one error line, when the store fails or
/// stalls, and SERVING again if a stall clears.
async fn report_store_health(store: crate::store::StoreHealth, health: HealthReporter) {
    loop {
        store.unhealthy().await;
        set_health(&health, ServingStatus::NotServing).await;
        store.healthy().await;
        set_health(&health, ServingStatus::Serving).await;
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

/// The cap per listener: the one given, or one that leaves descriptors
/// for the store whatever the listeners' connections (raising the soft
/// open-file limit first).
fn max_connections(settings: &ConnectionSettings, listeners: &Listeners) -> usize {
    let open_files = connections::raise_open_file_limit();
    let count = listeners.grpc.len()
        + usize::from(listeners.http.is_some())
        + usize::from(listeners.metrics.is_some());
    let max_connections = settings
        .max_connections
        .unwrap_or_else(|| connections::default_max_connections(open_files, count));
    tracing::info!(open_files, max_connections, "connections per listener");
    max_connections
}

/// Opens the store, starts its flusher and loads every session.
async fn open_store(
    settings: &ServerSettings,
) -> anyhow::Result<(Store, Durability, Option<JoinHandle<()>>, SessionManager)> {
    let store_options = settings.store.clone();
    let foreign = settings.foreign_store_owner;
    let opening = std::time::Instant::now();
    let store = tokio::task::spawn_blocking(move || {
        crate::store::without_panics(&store_options.path, || {
            Store::open_with(&store_options, foreign)
        })
    })
    .await?
    .with_context(|| format!("cannot open the store in {}", settings.store.path.display()))?;
    let (durability, flusher) =
        Durability::start(store.clone(), settings.fsync, settings.flush_timeout);
    let loader_store = store.clone();
    let loader_durability = durability.clone();
    let dir = settings.store.path.clone();
    let opened_in = opening.elapsed();
    let loading = std::time::Instant::now();
    let loaded = tokio::task::spawn_blocking(move || {
        let mut loaded = None;
        crate::store::without_panics(&dir, || {
            loaded = Some(SessionManager::load(loader_store, loader_durability));
            Ok(())
        })
        .map_err(crate::sessions::SessionError::from)?;
        loaded.expect("set when `without_panics` returns Ok")
    })
    .await;
    let sessions = match loaded {
        Ok(Ok(sessions)) => Ok(sessions),
        Ok(Err(err)) => Err(anyhow::Error::new(err).context("cannot load the stored sessions")),
        Err(join) => Err(anyhow::Error::new(join).context("loading the stored sessions failed")),
    };
    match sessions {
        Ok(sessions) => {
            // Start-up time is mostly these two: sled's recovery, then
            // reading every session's record and checking the active
            // sessions' logs (ended ones are checked after SERVING).
            tracing::info!(
                sessions = sessions.session_count(),
                sled_open_ms = opened_in.as_millis() as u64,
                sessions_load_ms = loading.elapsed().as_millis() as u64,
                "store open"
            );
            Ok((store, durability, flusher, sessions))
        }
        Err(err) => {
            durability.stop();
            if let Some(flusher) = flusher {
                let _ = flusher.await;
            }
            Err(err)
        }
    }
}

/// Waits up to `grace` for every listener's open calls to finish; after
/// that, closes them. Whether they all finished in time.
async fn drain(
    mut servers: JoinSet<Result<(), tonic::transport::Error>>,
    mut http_server: Option<JoinHandle<std::io::Result<()>>>,
    grace: Duration,
) -> bool {
    let drained = tokio::time::timeout(grace, async {
        while let Some(finished) = servers.join_next().await {
            report("a listener", finished);
        }
        if let Some(http_server) = http_server.as_mut() {
            report("the http server", http_server.await);
        }
    })
    .await
    .is_ok();
    if !drained {
        tracing::warn!("open calls did not finish within the grace period; closing them");
        servers.shutdown().await;
        if let Some(http_server) = http_server {
            http_server.abort();
        }
    }
    drained
}

/// Logs how a server task ended, if not well.
fn report<E: std::fmt::Display>(
    what: &str,
    finished: Result<Result<(), E>, tokio::task::JoinError>,
) {
    match finished {
        Ok(Ok(())) => {}
        Ok(Err(err)) => tracing::error!(error = %err, "{what} failed"),
        Err(join) => tracing::error!(error = %join, "{what} task failed"),
    }
}

/// Opens the server on `listeners` and serves until `shutdown` (see
/// [`Server`]).
pub async fn serve(
    listeners: Listeners,
    settings: ServerSettings,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    Server::open(settings, listeners)
        .await?
        .serve(shutdown)
        .await
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

/// The store's segment usage as the metrics report it.
fn segment_usage(store: &Store) -> metrics::SegmentUsage {
    let usage = store.segment_usage();
    metrics::SegmentUsage {
        free: usage.free,
        active: usage.active,
        inactive: usage.inactive,
        draining: usage.draining,
        live_bytes: usage.live_bytes,
    }
}
