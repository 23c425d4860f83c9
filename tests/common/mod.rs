//! `TestServer`: the real server on an ephemeral loopback port, bound before
//! it serves (no sleeps, no fixed ports), and a connected generated client.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sessionlog::config::ListenAddr;
use sessionlog::pb;
use sessionlog::pb::session_log_client::SessionLogClient;
use sessionlog::server::{Listener, ServerSettings, serve};
use sessionlog::store::StoreOptions;
use sessionlog::store::durability::FsyncPolicy;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

pub type Client = SessionLogClient<Channel>;

/// A running server; `shutdown().await` stops it and checks it stopped cleanly.
pub struct TestServer {
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
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

    /// A server on `data_dir` (kept after shutdown, for restart tests).
    pub async fn start_in(data_dir: &Path, fsync: FsyncPolicy) -> Self {
        let listener = Listener::bind(&ListenAddr::Tcp("127.0.0.1:0".into()))
            .await
            .expect("bind loopback");
        let Listener::Tcp(tcp) = &listener else {
            unreachable!("bound a tcp address")
        };
        let addr = tcp.local_addr().expect("local addr");
        let settings = ServerSettings {
            store: StoreOptions {
                path: data_dir.to_path_buf(),
                cache_bytes: 16 << 20,
            },
            fsync,
            shutdown_grace: Duration::from_secs(5),
        };
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(vec![listener], settings, async {
            let _ = shutdown_rx.await;
        }));
        Self {
            addr,
            data_dir: data_dir.to_path_buf(),
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
