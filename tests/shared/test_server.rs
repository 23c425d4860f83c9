//! `TestServer`: the real server inside the test process, on a loopback
//! port bound before it serves (no sleeps, no fixed ports), and generated
//! clients connected to it. The in-process suite tests it directly; the
//! real-binary suite uses it as the server its child processes talk to.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sessionlog::pb::session_log_client::SessionLogClient;
use sessionlog::server::{
    FsyncPolicy, ListenAddr, Listener, Listeners, Server, ServerSettings, StoreOptions,
};
use sessionlog::testing::SessionManager;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

pub(crate) type Client = SessionLogClient<Channel>;

/// A change to the settings, made before the server opens.
type Configure<'a> = Box<dyn FnOnce(&mut ServerSettings) + 'a>;

/// A running server; `shutdown().await` stops it and checks it stopped
/// cleanly.
pub(crate) struct TestServer {
    pub(crate) addr: SocketAddr,
    /// The HTTP edge's address, when built with `http()`.
    pub(crate) http_addr: Option<SocketAddr>,
    /// `/metrics` and `/healthz`, when built with `metrics()`.
    pub(crate) metrics_addr: Option<SocketAddr>,
    /// The rules inside the server, for white-box checks (follower counts,
    /// liveness and retention passes run on demand).
    pub(crate) sessions: SessionManager,
    shutdown_tx: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<()>>,
    /// The data dir when the test did not choose one; it must outlive the
    /// server task.
    temp_dir: Option<tempfile::TempDir>,
}

/// How to start a [`TestServer`]. Unless told otherwise: a fresh temporary
/// data dir (gone after the test), `FsyncPolicy::Never`, gRPC only, on an
/// ephemeral port of `127.0.0.1`, and the test [`settings`].
pub(crate) struct TestServerBuilder<'a> {
    data_dir: Option<PathBuf>,
    fsync: FsyncPolicy,
    http: bool,
    metrics: bool,
    addr: SocketAddr,
    configure: Vec<Configure<'a>>,
}

impl TestServer {
    /// A server with every default of the builder.
    pub(crate) async fn start() -> Self {
        Self::builder().start().await
    }

    pub(crate) fn builder<'a>() -> TestServerBuilder<'a> {
        TestServerBuilder {
            data_dir: None,
            fsync: FsyncPolicy::Never,
            http: false,
            metrics: false,
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            configure: Vec::new(),
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A generated client connected to this server.
    pub(crate) async fn client(&self) -> Client {
        SessionLogClient::connect(self.url())
            .await
            .expect("connect")
    }

    /// Stops the server and returns how its shutdown went; fails the test
    /// when it takes over 30 s.
    pub(crate) async fn stop(self) -> anyhow::Result<()> {
        let Self {
            shutdown_tx,
            task,
            temp_dir,
            ..
        } = self;
        let _ = shutdown_tx.send(());
        let stopped = tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("shutdown finishes in time")
            .expect("server task");
        drop(temp_dir);
        stopped
    }

    /// Stops the server and asserts that it shut down cleanly.
    pub(crate) async fn shutdown(self) {
        self.stop().await.expect("server stopped cleanly");
    }
}

impl<'a> TestServerBuilder<'a> {
    /// Serves from `data_dir`, which stays after the server stops (for
    /// restart tests).
    pub(crate) fn data_dir(mut self, data_dir: &Path) -> Self {
        self.data_dir = Some(data_dir.to_path_buf());
        self
    }

    pub(crate) fn fsync(mut self, fsync: FsyncPolicy) -> Self {
        self.fsync = fsync;
        self
    }

    /// Also serves the HTTP edge (`--http-listen`), on another ephemeral
    /// loopback port: `TestServer::http_addr`.
    pub(crate) fn http(mut self) -> Self {
        self.http = true;
        self
    }

    /// Also serves `/metrics` (`--metrics-listen`), on another ephemeral
    /// loopback port: `TestServer::metrics_addr`.
    pub(crate) fn metrics(mut self) -> Self {
        self.metrics = true;
        self
    }

    /// Listens on `addr` instead of an ephemeral port.
    pub(crate) fn addr(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// Changes the settings once the data dir and fsync policy are in
    /// them; changes apply in the order given.
    pub(crate) fn configure(mut self, configure: impl FnOnce(&mut ServerSettings) + 'a) -> Self {
        self.configure.push(Box::new(configure));
        self
    }

    /// Binds the listeners, opens the server and serves it on a task.
    pub(crate) async fn start(self) -> TestServer {
        let (temp_dir, data_dir) = match self.data_dir {
            Some(data_dir) => (None, data_dir),
            None => {
                let temp_dir = tempfile::tempdir().expect("temp dir");
                let data_dir = temp_dir.path().to_path_buf();
                (Some(temp_dir), data_dir)
            }
        };
        let mut settings = settings(&data_dir, self.fsync);
        for configure in self.configure {
            configure(&mut settings);
        }
        let listener = Listener::bind(&ListenAddr::Tcp(self.addr.to_string()))
            .await
            .expect("bind loopback");
        let Listener::Tcp(tcp) = &listener else {
            unreachable!("bound a tcp address")
        };
        let addr = tcp.local_addr().expect("local addr");
        let mut listeners = Listeners::grpc(vec![listener]);
        let mut http_addr = None;
        if self.http {
            let http_listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .await
                .expect("bind loopback for http");
            http_addr = Some(http_listener.local_addr().expect("local addr"));
            listeners.http = Some(http_listener);
        }
        let mut metrics_addr = None;
        if self.metrics {
            let metrics_listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .await
                .expect("bind loopback for metrics");
            metrics_addr = Some(metrics_listener.local_addr().expect("local addr"));
            listeners.metrics = Some(metrics_listener);
        }
        let server = Server::open(settings, listeners)
            .await
            .expect("open the server");
        let sessions = server.sessions().clone();
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(async {
            let _ = shutdown_rx.await;
        }));
        TestServer {
            addr,
            http_addr,
            metrics_addr,
            sessions,
            shutdown_tx,
            task,
            temp_dir,
        }
    }
}

/// Test settings: a small cache, a short grace period, defaults otherwise.
pub(crate) fn settings(data_dir: &Path, fsync: FsyncPolicy) -> ServerSettings {
    let mut settings = ServerSettings::new(
        StoreOptions {
            path: data_dir.to_path_buf(),
            cache_bytes: 16 << 20,
        },
        fsync,
    );
    settings.shutdown_grace = Duration::from_secs(5);
    settings
}
