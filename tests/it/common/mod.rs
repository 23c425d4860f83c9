//! `TestServer`: the real server on an ephemeral loopback port, bound before
//! it serves (no sleeps, no fixed ports), and a connected generated client.
#![allow(dead_code, unreachable_pub)]

#[path = "../../shared/access.rs"]
pub mod access;
pub mod follow;
pub mod http;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sessionlog::config::ListenAddr;
use sessionlog::pb;
use sessionlog::pb::session_log_client::SessionLogClient;
use sessionlog::server::{Listener, Server, ServerSettings};
use sessionlog::sessions::SessionManager;
use sessionlog::store::StoreOptions;
use sessionlog::store::durability::FsyncPolicy;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

pub type Client = SessionLogClient<Channel>;

/// A running server; `shutdown().await` stops it and checks it stopped cleanly.
pub struct TestServer {
    pub addr: SocketAddr,
    /// The `--http-listen` address, when started with one.
    pub http_addr: Option<SocketAddr>,
    pub data_dir: PathBuf,
    /// The rules inside the server, for white-box checks (follower counts).
    pub sessions: SessionManager,
    shutdown_tx: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
    _owned_dir: Option<tempfile::TempDir>,
}

impl TestServer {
    /// A server on a fresh temporary data dir.
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut server = Self::start_in(dir.path(), FsyncPolicy::Never).await;
        server._owned_dir = Some(dir);
        server
    }

    /// A server on a fresh temporary data dir, with settings changed by
    /// `configure`.
    pub async fn start_configured(configure: impl FnOnce(&mut ServerSettings)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut settings = settings(dir.path(), FsyncPolicy::Never);
        configure(&mut settings);
        let mut server = Self::start_with(settings).await;
        server._owned_dir = Some(dir);
        server
    }

    /// A server on `data_dir` (kept after shutdown, for restart tests).
    pub async fn start_in(data_dir: &Path, fsync: FsyncPolicy) -> Self {
        Self::start_with(settings(data_dir, fsync)).await
    }

    /// A server with these settings.
    pub async fn start_with(settings: ServerSettings) -> Self {
        Self::start_at(settings, "127.0.0.1:0").await
    }

    /// A server with these settings on this loopback address.
    pub async fn start_at(settings: ServerSettings, addr: &str) -> Self {
        Self::launch(settings, addr, false).await
    }

    /// A server on a fresh temporary data dir that also serves the HTTP
    /// edge (`--http-listen`) on another ephemeral loopback port, with
    /// settings changed by `configure`.
    pub async fn start_http(configure: impl FnOnce(&mut ServerSettings)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut settings = settings(dir.path(), FsyncPolicy::Never);
        configure(&mut settings);
        let mut server = Self::launch(settings, "127.0.0.1:0", true).await;
        server._owned_dir = Some(dir);
        server
    }

    async fn launch(settings: ServerSettings, addr: &str, http: bool) -> Self {
        let data_dir = settings.store.path.clone();
        let listener = Listener::bind(&ListenAddr::Tcp(addr.into()))
            .await
            .expect("bind loopback");
        let Listener::Tcp(tcp) = &listener else {
            unreachable!("bound a tcp address")
        };
        let addr = tcp.local_addr().expect("local addr");
        let mut server = Server::open(settings).await.expect("open the server");
        let mut http_addr = None;
        if http {
            let http_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind loopback for http");
            http_addr = Some(http_listener.local_addr().expect("local addr"));
            server = server.with_http(http_listener);
        }
        let sessions = server.sessions().clone();
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(vec![listener], async {
            let _ = shutdown_rx.await;
        }));
        Self {
            addr,
            http_addr,
            data_dir,
            sessions,
            shutdown_tx: Some(shutdown_tx),
            task,
            _owned_dir: None,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A generated client connected to this server.
    pub async fn client(&self) -> Client {
        SessionLogClient::connect(self.url())
            .await
            .expect("connect")
    }

    /// Stops the server and returns how its shutdown went.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(shutdown_tx) = self.shutdown_tx.take() {
            let _ = shutdown_tx.send(());
        }
        let task = &mut self.task;
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("shutdown finishes in time")
            .expect("server task")
    }

    /// Stops the server and asserts that it shut down cleanly.
    pub async fn shutdown(mut self) {
        if let Some(shutdown_tx) = self.shutdown_tx.take() {
            let _ = shutdown_tx.send(());
        }
        let task = &mut self.task;
        let finished = tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("shutdown finishes in time");
        finished
            .expect("server task")
            .expect("server stopped cleanly");
    }
}

/// Test settings: a small cache, a short grace period, defaults otherwise.
pub fn settings(data_dir: &Path, fsync: FsyncPolicy) -> ServerSettings {
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

/// Starts a session with this app name and returns its id.
pub async fn start_session(client: &mut Client, app_name: &str) -> String {
    client
        .start_session(pb::StartSessionRequest {
            app_name: app_name.to_owned(),
            ..Default::default()
        })
        .await
        .expect("start session")
        .into_inner()
        .id
}

/// An entry with this message at info level.
pub fn entry(message: impl Into<String>) -> pb::LogEntry {
    pb::LogEntry {
        level: pb::Level::Info.into(),
        logger: "test".to_owned(),
        message: message.into(),
        ..Default::default()
    }
}

/// Appends `messages` as one batch; returns (first_seq, last_seq).
pub async fn append(client: &mut Client, session_id: &str, messages: &[&str]) -> (u64, u64) {
    let response = client
        .append(pb::AppendRequest {
            session_id: session_id.to_owned(),
            entries: messages.iter().map(|m| entry(*m)).collect(),
            ..Default::default()
        })
        .await
        .expect("append")
        .into_inner();
    (response.first_seq, response.last_seq)
}

/// Every entry of a session, paging with `Read`.
pub async fn read_all(client: &mut Client, session_id: &str) -> Vec<pb::LogEntry> {
    let mut entries = Vec::new();
    let mut after_seq = 0;
    loop {
        let page = client
            .read(pb::ReadRequest {
                session_id: session_id.to_owned(),
                after_seq,
                ..Default::default()
            })
            .await
            .expect("read")
            .into_inner();
        let done = page.next_cursor == after_seq
            || page.next_cursor >= page.last_seq && page.entries.is_empty();
        entries.extend(page.entries);
        if done || page.next_cursor >= page.last_seq {
            return entries;
        }
        after_seq = page.next_cursor;
    }
}

/// Asserts that `result` failed with `code`; returns the status.
#[track_caller]
pub fn expect_code<T: std::fmt::Debug>(
    result: Result<tonic::Response<T>, tonic::Status>,
    code: tonic::Code,
) -> tonic::Status {
    match result {
        Ok(response) => panic!("expected {code:?}, got OK: {:?}", response.into_inner()),
        Err(status) => {
            assert_eq!(status.code(), code, "unexpected status: {status:?}");
            status
        }
    }
}

/// The session as `GetSession` returns it now.
pub async fn get_session(client: &mut Client, session_id: &str) -> pb::Session {
    client
        .get_session(pb::GetSessionRequest {
            session_id: session_id.to_owned(),
        })
        .await
        .expect("get session")
        .into_inner()
}

/// Appends `entries` as one batch and returns the whole response.
pub async fn append_entries(
    client: &mut Client,
    session_id: &str,
    entries: Vec<pb::LogEntry>,
) -> pb::AppendResponse {
    client
        .append(pb::AppendRequest {
            session_id: session_id.to_owned(),
            entries,
            ..Default::default()
        })
        .await
        .expect("append")
        .into_inner()
}

/// Appends `messages` as one batch under `batch_id`; returns the response.
pub async fn append_with_batch_id(
    client: &mut Client,
    session_id: &str,
    batch_id: &str,
    messages: &[&str],
) -> pb::AppendResponse {
    client
        .append(pb::AppendRequest {
            session_id: session_id.to_owned(),
            entries: messages.iter().map(|m| entry(*m)).collect(),
            batch_id: batch_id.to_owned(),
            ..Default::default()
        })
        .await
        .expect("append with batch id")
        .into_inner()
}

/// Ends a session with `reason`; returns the ended session.
pub async fn end_session(client: &mut Client, session_id: &str, reason: &str) -> pb::Session {
    client
        .end_session(pb::EndSessionRequest {
            session_id: session_id.to_owned(),
            reason: reason.to_owned(),
        })
        .await
        .expect("end session")
        .into_inner()
}

/// The messages of `entries`, in order.
pub fn messages(entries: &[pb::LogEntry]) -> Vec<&str> {
    entries.iter().map(|e| e.message.as_str()).collect()
}

/// The seqs of `entries`, in order.
pub fn seqs(entries: &[pb::LogEntry]) -> Vec<u64> {
    entries.iter().map(|e| e.seq).collect()
}
