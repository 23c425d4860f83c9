//! The Rust client API across server restarts: `follow` resumes from its
//! cursor with no gap and no duplicate, and `LogWriter` stores every entry
//! once, in order, whether the server restarts midway or starts late.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt as _;
use sessionlog::client::{
    self, ClientTls, Connection, FollowItem, FollowOptions, LogWriter, WriterOptions, WriterTarget,
};
use sessionlog::pb;
use sessionlog::server::{ListenAddr, Listener, Listeners, Server};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::common;
use crate::common::FsyncPolicy;
use crate::common::request;

/// The server on a Unix socket, so a restart keeps the address.
struct SocketServer {
    shutdown_tx: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl SocketServer {
    async fn start(data_dir: &Path, socket: &Path) -> Self {
        let listener = Listener::bind(&ListenAddr::Unix(socket.to_path_buf()))
            .await
            .expect("bind the socket");
        let server = Server::open(
            common::settings(data_dir, FsyncPolicy::Never),
            Listeners::grpc(vec![listener]),
        )
        .await
        .expect("open");
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(async {
            let _ = shutdown_rx.await;
        }));
        Self { shutdown_tx, task }
    }

    async fn stop(self) {
        let _ = self.shutdown_tx.send(());
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("stops in time")
            .expect("server task")
            .expect("clean stop");
    }
}

fn paths(dir: &Path) -> (PathBuf, PathBuf, String) {
    let socket = dir.join("sessionlog.sock");
    let url = format!("unix:{}", socket.display());
    (dir.join("data"), socket, url)
}

/// The generated client without interceptors, as the common helpers take.
async fn plain_client(url: &str) -> common::Client {
    let connection = Connection::connect(url, None).await.expect("connect");
    pb::session_log_client::SessionLogClient::new(connection.channel())
}

fn entry(message: String) -> pb::LogEntry {
    pb::LogEntry {
        level: pb::Level::Info.into(),
        message,
        ..Default::default()
    }
}

async fn append_numbered(url: &str, session_id: &str, range: std::ops::RangeInclusive<u32>) {
    let mut client = Connection::connect(url, None)
        .await
        .expect("connect")
        .sessions();
    let numbers: Vec<u32> = range.collect();
    for chunk in numbers.chunks(10) {
        client
            .append(pb::AppendRequest {
                session_id: session_id.to_owned(),
                entries: chunk.iter().map(|n| entry(format!("line {n}"))).collect(),
                expected_last_seq: None,
                batch_id: String::new(),
            })
            .await
            .expect("append");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_resumes_across_a_server_restart_without_gap_or_duplicate() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (data, socket, url) = paths(dir.path());
    let server = SocketServer::start(&data, &socket).await;
    let connection = Connection::connect(&url, None).await.expect("connect");
    let session_id = connection
        .sessions()
        .start_session(pb::StartSessionRequest::default())
        .await
        .expect("start")
        .into_inner()
        .id;
    append_numbered(&url, &session_id, 1..=50).await;

    let mut items = Box::pin(client::follow(
        connection.clone(),
        session_id.clone(),
        FollowOptions::default(),
    ));
    let mut seqs = Vec::new();
    let mut messages = Vec::new();
    while seqs.len() < 50 {
        if let FollowItem::Entries { entries, .. } =
            items.next().await.expect("open").expect("item")
        {
            seqs.extend(entries.iter().map(|e| e.seq));
            messages.extend(entries.into_iter().map(|e| e.message));
        }
    }

    server.stop().await;
    let server = SocketServer::start(&data, &socket).await;
    append_numbered(&url, &session_id, 51..=100).await;
    connection
        .sessions()
        .end_session(request::end(&session_id, "done"))
        .await
        .expect("end");

    let mut reconnects = 0;
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(item) = items.next().await {
            match item.expect("no permanent error") {
                FollowItem::Entries { entries, .. } => {
                    seqs.extend(entries.iter().map(|e| e.seq));
                    messages.extend(entries.into_iter().map(|e| e.message));
                }
                FollowItem::Reconnecting { after_seq, .. } => {
                    assert_eq!(after_seq, 50, "resumes from the last cursor");
                    reconnects += 1;
                }
                FollowItem::Ended(session) => return Some(session.end_reason),
                FollowItem::CaughtUp { .. } | FollowItem::Truncated { .. } => {}
            }
        }
        None
    })
    .await
    .expect("the stream ends after the session does");
    assert_eq!(ended.as_deref(), Some("done"));
    assert!(reconnects >= 1, "the restart was noticed");
    assert_eq!(
        seqs,
        (1..=101).collect::<Vec<u64>>(),
        "no gap, no duplicate"
    );
    let expected: Vec<String> = (1..=100).map(|n| format!("line {n}")).collect();
    assert_eq!(&messages[..100], expected.as_slice());
    assert!(items.next().await.is_none(), "nothing after the end");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_stores_every_entry_once_in_order_across_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (data, socket, url) = paths(dir.path());
    let server = SocketServer::start(&data, &socket).await;
    let connection =
        Connection::connect_lazy(&url, None, &ClientTls::default()).expect("connection");
    let writer = LogWriter::spawn(
        connection.sessions(),
        WriterTarget::Start(request::start("writer-1")),
        WriterOptions {
            capacity: 100,
            max_batch: 50,
            linger: Duration::from_millis(5),
            ..WriterOptions::default()
        },
    );
    for n in 1..=1_500u32 {
        writer
            .write(entry(format!("entry {n}")))
            .await
            .expect("write");
    }
    server.stop().await;
    // Writes wait (the buffer is small) while the server is away.
    let producer = {
        let handle = writer.handle();
        tokio::spawn(async move {
            for n in 1_501..=3_000u32 {
                handle
                    .write(entry(format!("entry {n}")))
                    .await
                    .expect("write");
            }
        })
    };
    let server = SocketServer::start(&data, &socket).await;
    producer.await.expect("producer");
    let report = writer.close(Duration::from_secs(30)).await;
    assert!(report.error.is_none(), "{report:?}");
    assert_eq!((report.stored, report.dropped, report.lost), (3_000, 0, 0));
    assert_eq!(report.last_seq, 3_000);

    let mut client = plain_client(&url).await;
    let entries = common::read_all(&mut client, "writer-1").await;
    let expected: Vec<String> = (1..=3_000).map(|n| format!("entry {n}")).collect();
    let got: Vec<String> = entries.into_iter().map(|e| e.message).collect();
    assert_eq!(got, expected);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_started_before_its_server_sends_once_it_is_up() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (data, socket, url) = paths(dir.path());
    let connection =
        Connection::connect_lazy(&url, None, &ClientTls::default()).expect("connection");
    let writer = LogWriter::spawn(
        connection.sessions(),
        WriterTarget::Start(pb::StartSessionRequest {
            app_name: "early".into(),
            ..Default::default()
        }),
        WriterOptions::default(),
    );
    for n in 1..=200u32 {
        assert!(
            writer.try_write(entry(format!("early {n}"))),
            "room in the buffer"
        );
    }
    let server = SocketServer::start(&data, &socket).await;
    let session_id = writer
        .session_id()
        .await
        .expect("started once the server is up");
    let report = writer.close(Duration::from_secs(30)).await;
    assert_eq!((report.stored, report.dropped, report.lost), (200, 0, 0));
    let mut client = plain_client(&url).await;
    let entries = common::read_all(&mut client, &session_id).await;
    assert_eq!(common::seqs(&entries), (1..=200).collect::<Vec<u64>>());
    assert_eq!(entries[199].message, "early 200");
    server.stop().await;
}

/// A run of large lines is split by bytes as well as by count, so no batch
/// passes what the server takes in one message (here 5 MiB: twenty
/// 600 KB entries in one batch would be 12 MB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_splits_batches_of_large_entries_by_bytes() {
    let server = common::TestServer::builder()
        .configure(|settings| settings.limits.max_message_bytes = 5 << 20)
        .start()
        .await;
    let connection = Connection::connect(&server.url(), None)
        .await
        .expect("connect");
    let writer = LogWriter::spawn(
        connection.sessions(),
        WriterTarget::Start(request::start("large-lines")),
        WriterOptions {
            linger: Duration::from_millis(200),
            ..WriterOptions::default()
        },
    );
    let line = "y".repeat(600_000);
    for n in 0..20u32 {
        writer
            .write(entry(format!("{n} {line}")))
            .await
            .expect("write");
    }
    let report = writer.close(Duration::from_secs(30)).await;
    assert!(report.error.is_none(), "{report:?}");
    assert_eq!((report.stored, report.last_seq), (20, 20));
    let mut client = server.client().await;
    let entries = common::read_all(&mut client, "large-lines").await;
    let firsts: Vec<u32> = entries
        .iter()
        .filter_map(|entry| entry.message.split(' ').next()?.parse().ok())
        .collect();
    assert_eq!(firsts, (0..20).collect::<Vec<_>>());
    server.shutdown().await;
}
