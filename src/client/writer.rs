//! A buffered, batching writer for one session. Producers hand entries to a
//! bounded buffer: `try_write` never waits (a full buffer drops the entry
//! and counts it), `write` waits for room. One background task sends them
//! in order, as batches of up to `max_batch` entries and `max_batch_bytes`
//! encoded bytes, or whatever arrived within `linger`, each with a batch id, so a retry after a lost answer
//! is stored once. A batch that cannot be stored stops the writer: storing
//! later ones would leave a gap in the order the producer wrote.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prost::Message as _;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::{Code, Status};

use super::Client;
use crate::pb;

/// How a writer batches and retries.
#[derive(Debug, Clone, Copy)]
pub struct WriterOptions {
    /// Entries buffered before `try_write` drops and `write` waits.
    pub capacity: usize,
    /// The most entries in one batch.
    pub max_batch: usize,
    /// The most encoded entry bytes in one batch (a single larger entry
    /// still goes alone): far under the server's `--max-message-size`, so
    /// a run of large lines never makes a request the server refuses.
    pub max_batch_bytes: usize,
    /// How long the first entry of a batch waits for company.
    pub linger: Duration,
    /// Give up on a batch the server has been unavailable for this long
    /// (`None`: keep retrying until `close`'s deadline).
    pub give_up_after: Option<Duration>,
}

impl Default for WriterOptions {
    fn default() -> Self {
        Self {
            capacity: 10_000,
            max_batch: 500,
            max_batch_bytes: 4 << 20,
            linger: Duration::from_millis(50),
            give_up_after: None,
        }
    }
}

/// Which session the entries go to.
#[derive(Debug, Clone)]
pub enum Target {
    /// A session that exists.
    Existing(String),
    /// Start this session first (retried like a batch). With an id set, a
    /// retry that finds it existing carries on.
    Start(pb::StartSessionRequest),
}

/// What a closed writer did.
#[derive(Debug, Clone, Default)]
pub struct WriterReport {
    /// The session, once started or given.
    pub session_id: Option<String>,
    /// Entries the server stored.
    pub stored: u64,
    /// Entries `try_write` dropped because the buffer was full.
    pub dropped: u64,
    /// Entries accepted into the buffer but never stored (the server
    /// refused them, was unavailable past the deadline, or an earlier
    /// batch failed).
    pub lost: u64,
    /// The last seq stored.
    pub last_seq: u64,
    /// Why the writer stopped early, if it did.
    pub error: Option<Status>,
}

/// The writer stopped: a batch could not be stored.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the log writer stopped: {0}")]
pub struct WriterStopped(pub Status);

/// The producer side, cheap to clone and usable from any thread.
#[derive(Debug, Clone)]
pub struct WriterHandle {
    entries_tx: mpsc::Sender<pb::LogEntry>,
    dropped: Arc<AtomicU64>,
    failure: Arc<OnceLock<Status>>,
}

impl WriterHandle {
    /// Buffers `entry` without waiting; false (and counted) when the buffer
    /// is full or the writer stopped.
    pub fn try_write(&self, entry: pb::LogEntry) -> bool {
        let queued = self.entries_tx.try_send(entry).is_ok();
        if !queued {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        queued
    }

    /// Buffers `entry`, waiting for room.
    pub async fn write(&self, entry: pb::LogEntry) -> Result<(), WriterStopped> {
        self.entries_tx
            .send(entry)
            .await
            .map_err(|_| self.stopped())
    }

    fn stopped(&self) -> WriterStopped {
        WriterStopped(
            self.failure
                .get()
                .cloned()
                .unwrap_or_else(|| Status::cancelled("the log writer was closed")),
        )
    }
}

/// A writer: the producer handle and its background task.
#[derive(Debug)]
pub struct LogWriter {
    handle: WriterHandle,
    session_rx: watch::Receiver<Option<String>>,
    closing: CancellationToken,
    deadline: CancellationToken,
    task: JoinHandle<WriterReport>,
}

impl LogWriter {
    /// Spawns the sending task on the current Tokio runtime.
    pub fn spawn(client: Client, target: Target, options: WriterOptions) -> Self {
        let (entries_tx, entries_rx) = mpsc::channel(options.capacity.max(1));
        let (session_tx, session_rx) = watch::channel(match &target {
            Target::Existing(id) => Some(id.clone()),
            Target::Start(_) => None,
        });
        let handle = WriterHandle {
            entries_tx,
            dropped: Arc::default(),
            failure: Arc::default(),
        };
        let closing = CancellationToken::new();
        let deadline = CancellationToken::new();
        let sender = Sender {
            client,
            options,
            entries_rx,
            held: None,
            closing: closing.clone(),
            deadline: deadline.clone(),
            failure: handle.failure.clone(),
            report: WriterReport::default(),
        };
        let task = tokio::spawn(sender.run(target, session_tx));
        Self {
            handle,
            session_rx,
            closing,
            deadline,
            task,
        }
    }

    /// A producer handle.
    pub fn handle(&self) -> WriterHandle {
        self.handle.clone()
    }

    /// See [`WriterHandle::try_write`].
    pub fn try_write(&self, entry: pb::LogEntry) -> bool {
        self.handle.try_write(entry)
    }

    /// See [`WriterHandle::write`].
    pub async fn write(&self, entry: pb::LogEntry) -> Result<(), WriterStopped> {
        self.handle.write(entry).await
    }

    /// The session id: at once for an existing session, else when started
    /// (`None` if it could not be).
    pub async fn session_id(&self) -> Option<String> {
        let mut session_rx = self.session_rx.clone();
        let started = session_rx.wait_for(Option::is_some).await;
        started.ok().and_then(|id| id.clone())
    }

    /// Sends what is buffered and stops; handles still held elsewhere (a
    /// global tracing layer, say) get `false` from then on. After
    /// `deadline`, retries stop and what is unsent counts as lost.
    pub async fn close(self, deadline: Duration) -> WriterReport {
        let Self {
            handle,
            closing,
            deadline: cancel,
            task,
            ..
        } = self;
        let dropped = handle.dropped.clone();
        drop(handle);
        closing.cancel();
        let timer = tokio::spawn({
            let cancel = cancel.clone();
            async move {
                tokio::time::sleep(deadline).await;
                cancel.cancel();
            }
        });
        let mut report = task.await.unwrap_or_else(|join| WriterReport {
            error: Some(Status::internal(format!(
                "the log writer task failed: {join}"
            ))),
            ..WriterReport::default()
        });
        timer.abort();
        report.dropped = dropped.load(Ordering::Relaxed);
        report
    }
}

struct Sender {
    client: Client,
    options: WriterOptions,
    entries_rx: mpsc::Receiver<pb::LogEntry>,
    /// An entry that did not fit the last batch's bytes: the next batch's
    /// first.
    held: Option<pb::LogEntry>,
    /// Set by `close`: send what is buffered, then stop.
    closing: CancellationToken,
    deadline: CancellationToken,
    failure: Arc<OnceLock<Status>>,
    report: WriterReport,
}

impl Sender {
    async fn run(
        mut self,
        target: Target,
        session_tx: watch::Sender<Option<String>>,
    ) -> WriterReport {
        let session_id = match target {
            Target::Existing(id) => id,
            Target::Start(request) => match self.start(request).await {
                Ok(id) => {
                    session_tx.send_replace(Some(id.clone()));
                    id
                }
                Err(status) => return self.stop(status).await,
            },
        };
        self.report.session_id = Some(session_id.clone());
        while let Some(first) = self.next_entry().await {
            let batch = self.gather(first).await;
            let count = batch.len() as u64;
            let request = pb::AppendRequest {
                session_id: session_id.clone(),
                entries: batch,
                expected_last_seq: None,
                batch_id: ulid::Ulid::generate().to_string(),
            };
            let sent = self
                .retry(|| {
                    let mut client = self.client.clone();
                    let request = request.clone();
                    async move { client.append(request).await }
                })
                .await;
            match sent {
                Ok(response) => {
                    self.report.stored += count;
                    self.report.last_seq = response.last_seq;
                }
                Err(status) => {
                    self.report.lost += count;
                    return self.stop(status).await;
                }
            }
        }
        // Whatever a lingering handle slipped in after the last batch.
        self.entries_rx.close();
        while self.entries_rx.try_recv().is_ok() {
            self.report.lost += 1;
        }
        self.report
    }

    /// The next buffered entry; once closing, only what is already buffered.
    async fn next_entry(&mut self) -> Option<pb::LogEntry> {
        if let Some(held) = self.held.take() {
            return Some(held);
        }
        tokio::select! {
            biased;
            entry = self.entries_rx.recv() => entry,
            () = self.closing.cancelled() => self.entries_rx.try_recv().ok(),
        }
    }

    /// The first entry, then whatever arrives within `linger`, up to
    /// `max_batch` entries and `max_batch_bytes`; an entry that would pass
    /// the bytes is held for the next batch.
    async fn gather(&mut self, first: pb::LogEntry) -> Vec<pb::LogEntry> {
        let deadline = Instant::now() + self.options.linger;
        let mut bytes = first.encoded_len();
        let mut batch = vec![first];
        while batch.len() < self.options.max_batch.max(1) {
            match tokio::time::timeout_at(deadline, self.entries_rx.recv()).await {
                Ok(Some(entry)) => {
                    bytes += entry.encoded_len();
                    if bytes > self.options.max_batch_bytes {
                        self.held = Some(entry);
                        break;
                    }
                    batch.push(entry);
                }
                Ok(None) | Err(_) => break,
            }
        }
        batch
    }

    async fn start(&self, request: pb::StartSessionRequest) -> Result<String, Status> {
        let chosen_id = request.session_id.clone();
        let started = self
            .retry(|| {
                let mut client = self.client.clone();
                let request = request.clone();
                async move { client.start_session(request).await }
            })
            .await;
        match started {
            Ok(session) => Ok(session.id),
            // An earlier attempt got through, but its answer did not.
            Err(status) if status.code() == Code::AlreadyExists && !chosen_id.is_empty() => {
                Ok(chosen_id)
            }
            Err(status) => Err(status),
        }
    }

    /// Calls `call` until it succeeds, fails for good, `give_up_after`
    /// passes, or the close deadline does.
    async fn retry<T, F, Fut>(&self, mut call: F) -> Result<T, Status>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let started = Instant::now();
        let mut backoff = Duration::from_millis(100);
        loop {
            let status = match call().await {
                Ok(response) => return Ok(response.into_inner()),
                Err(status) if is_transient(&status) => status,
                Err(status) => return Err(status),
            };
            if self
                .options
                .give_up_after
                .is_some_and(|limit| started.elapsed() >= limit)
            {
                return Err(status);
            }
            let jitter = backoff.mul_f64(rand::random_range(0.0..0.5));
            tokio::select! {
                () = tokio::time::sleep(backoff + jitter) => {}
                () = self.deadline.cancelled() => return Err(status),
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    /// Records `status`, refuses further writes, and counts what is still
    /// buffered as lost.
    async fn stop(mut self, status: Status) -> WriterReport {
        let _ = self.failure.set(status.clone());
        self.entries_rx.close();
        while self.entries_rx.recv().await.is_some() {
            self.report.lost += 1;
        }
        self.report.error = Some(status);
        self.report
    }
}

/// Failures a retry may fix. A batch id makes retrying an append safe.
pub(super) fn is_transient(status: &Status) -> bool {
    matches!(
        status.code(),
        // Unknown is how a connection cut mid-call surfaces.
        Code::Unavailable | Code::Unknown | Code::DeadlineExceeded | Code::Cancelled
    ) || is_graceful_go_away(status)
}

/// A server that shuts down gracefully sends GOAWAY with NO_ERROR; a call
/// caught by it reaches us as `Internal`, as tonic maps every h2 reason but
/// a few. gRPC's own clients call that UNAVAILABLE: the server is going
/// away, not broken.
fn is_graceful_go_away(status: &Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(err) = source {
        if let Some(h2) = err.downcast_ref::<h2::Error>() {
            return h2.is_go_away() && h2.reason() == Some(h2::Reason::NO_ERROR);
        }
        source = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The error an h2 client gets for a request that crossed the server's
    /// GOAWAY (NO_ERROR), over an in-memory connection.
    async fn go_away_error() -> h2::Error {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let server = tokio::spawn(async move {
            let mut connection = h2::server::handshake(server_io)
                .await
                .expect("server handshake");
            // Going away before taking any stream: the client's request is
            // one the server says it never processed.
            connection.abrupt_shutdown(h2::Reason::NO_ERROR);
            while connection.accept().await.is_some() {}
        });
        let (mut sender, connection) = h2::client::handshake(client_io)
            .await
            .expect("client handshake");
        tokio::spawn(connection);
        let request = tonic::codegen::http::Request::post("http://localhost/x")
            .body(())
            .expect("request");
        let (response, _body) = sender.send_request(request, false).expect("sent");
        let err = response.await.expect_err("the server went away");
        server.abort();
        err
    }

    #[tokio::test]
    async fn a_graceful_go_away_is_transient_and_other_internal_errors_are_not() {
        let err = go_away_error().await;
        assert!(err.is_go_away(), "{err:?}");
        let status = Status::from_error(Box::new(err));
        assert_eq!(
            status.code(),
            Code::Internal,
            "tonic's mapping, which this undoes"
        );
        assert!(is_transient(&status));
        // A stream reset with the same reason is not a GOAWAY.
        let reset = Status::from_error(Box::new(h2::Error::from(h2::Reason::NO_ERROR)));
        assert!(!is_transient(&reset));
        assert!(!is_transient(&Status::internal("broken")));
        assert!(is_transient(&Status::unavailable("restarting")));
    }
}
