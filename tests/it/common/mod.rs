//! Helpers of the in-process suite: `TestServer` and the everyday calls
//! (shared with the real-binary suite), requests built the way most tests
//! send them, and follow and HTTP clients.

#[path = "../../shared/access.rs"]
pub(crate) mod access;
pub(crate) mod follow;
#[path = "../../shared/http.rs"]
pub(crate) mod http;
pub(crate) mod own_process;
pub(crate) mod request;
#[path = "../../shared/rpc.rs"]
mod rpc;
#[path = "../../shared/test_server.rs"]
mod test_server;

pub(crate) use rpc::{append, end_session, entry, get_session, read_all, start_session};
/// Re-exported so that the suite names the storage internals in one place.
pub(crate) use sessionlog::server::FsyncPolicy;
pub(crate) use test_server::{Client, TestServer, settings};

use sessionlog::pb;

/// Runs `call` on a task of its own with `server`'s next flush held for
/// `hold` after its sync, and returns once that sync is done: what the test
/// does next happens between the flush's sync and its return.
pub(crate) async fn spawn_with_held_flush<T: Send + 'static>(
    server: &TestServer,
    hold: std::time::Duration,
    call: impl std::future::Future<Output = T> + Send + 'static,
) -> tokio::task::JoinHandle<T> {
    let synced_before = server.sessions.sync_count();
    server.sessions.hold_next_flush(hold);
    let task = tokio::spawn(call);
    while server.sessions.sync_count() == synced_before {
        tokio::task::yield_now().await;
    }
    task
}

/// Asserts that `result` failed with `code`; returns the status.
#[track_caller]
pub(crate) fn expect_code<T: std::fmt::Debug>(
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

/// Appends `entries` as one batch and returns the whole response.
pub(crate) async fn append_entries(
    client: &mut Client,
    session_id: &str,
    entries: Vec<pb::LogEntry>,
) -> pb::AppendResponse {
    client
        .append(request::append(session_id, entries))
        .await
        .expect("append")
        .into_inner()
}

/// Appends `messages` as one batch under `batch_id`; returns the response.
pub(crate) async fn append_with_batch_id(
    client: &mut Client,
    session_id: &str,
    batch_id: &str,
    messages: &[&str],
) -> pb::AppendResponse {
    client
        .append(pb::AppendRequest {
            batch_id: batch_id.to_owned(),
            ..request::append(session_id, messages.iter().map(|m| entry(*m)).collect())
        })
        .await
        .expect("append with batch id")
        .into_inner()
}

/// The messages of `entries`, in order.
pub(crate) fn messages(entries: &[pb::LogEntry]) -> Vec<&str> {
    entries.iter().map(|e| e.message.as_str()).collect()
}

/// The seqs of `entries`, in order.
pub(crate) fn seqs(entries: &[pb::LogEntry]) -> Vec<u64> {
    entries.iter().map(|e| e.seq).collect()
}

/// Opens the sled database in `dir` directly, as the store opens it (no
/// flusher thread of its own), for a test that inspects or prepares what
/// the store wrote.
pub(crate) fn open_sled(dir: &std::path::Path) -> sled::Db {
    // sled lets go of its file lock when the last of its threads is done
    // with the database, which can be a moment after the `Db` was dropped
    // here (the store waits for the lock the same way, see `data_dir`).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match sled::Config::new().path(dir).flush_every_ms(None).open() {
            Ok(db) => return db,
            // sled reports the busy lock as an I/O error of kind `Other`
            // that names it.
            Err(sled::Error::Io(err))
                if err.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(err) => panic!("sled opens: {err}"),
        }
    }
}
