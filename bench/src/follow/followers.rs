//! The followers of a live run: each on its own Follow stream, a hundred
//! streams to a connection. A follower times every producer entry
//! (receive time minus the stamp the producer put on it), checks that its
//! session's seqs arrive from 1 with no gap and no duplicate, and finishes
//! on `ended`; the run then checks each got every entry.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use sessionlog::client::Client;
use sessionlog::pb;
use sessionlog::pb::follow_response::Event;
use tokio::task::JoinSet;
use tonic::Streaming;

use super::{FollowArgs, LOGGER};
use crate::latency::Latency;
use crate::local::ServerUnderTest;
use crate::workload::within;

/// Follow streams per HTTP/2 connection: a few sockets rather than one per
/// follower, and well under the streams a connection may carry at once.
const FOLLOWERS_PER_CONNECTION: usize = 100;
/// How long followers may take to connect and catch up before the
/// producer starts.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// What one follower received, once its stream ended.
#[derive(Debug)]
pub(super) struct Received {
    pub(super) follower: usize,
    pub(super) session: usize,
    /// The producer's entries (the end entry not counted).
    pub(super) entries: u64,
}

/// The running followers of one run.
#[derive(Debug)]
pub(super) struct Followers {
    tasks: JoinSet<anyhow::Result<Received>>,
    /// One histogram per connection: a handful of locks, not one histogram
    /// per follower.
    latencies: Vec<Arc<Mutex<Latency>>>,
    /// Entries delivered to all followers so far, to say how far a drain got.
    delivered: Arc<AtomicU64>,
}

impl Followers {
    /// Opens every follower's stream and returns once all are caught up
    /// (the sessions are empty, so live entries come next).
    pub(super) async fn start(
        args: &FollowArgs,
        server: &ServerUnderTest,
        sessions: &[String],
    ) -> anyhow::Result<Self> {
        let mut followers = Self {
            tasks: JoinSet::new(),
            latencies: Vec::new(),
            delivered: Arc::new(AtomicU64::new(0)),
        };
        let mut ready = Vec::with_capacity(args.followers);
        for first in (0..args.followers).step_by(FOLLOWERS_PER_CONNECTION) {
            let mut client = server.connect().await?.sessions();
            let latency = Arc::new(Mutex::new(Latency::new()));
            followers.latencies.push(latency.clone());
            for follower in first..args.followers.min(first + FOLLOWERS_PER_CONNECTION) {
                let session = follower % sessions.len();
                let events = open(&mut client, &sessions[session], args.max_batch).await?;
                let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
                ready.push(ready_rx);
                let watch = Follower {
                    follower,
                    session,
                    latency: latency.clone(),
                    delivered: followers.delivered.clone(),
                };
                followers.tasks.spawn(watch.receive(events, ready_tx));
            }
        }
        let ready = tokio::time::timeout(READY_TIMEOUT, futures::future::try_join_all(ready))
            .await
            .map_err(|_| {
                anyhow::anyhow!("the followers were not caught up within {READY_TIMEOUT:?}")
            })?
            .map_err(|_| anyhow::anyhow!("a follower stopped"));
        if let Err(stopped) = ready {
            return Err(first_error(&mut followers.tasks).await.unwrap_or(stopped));
        }
        Ok(followers)
    }

    /// Waits for every follower to finish; fails with what is missing
    /// when they do not within `timeout`, or with the first follower error.
    /// `expected` is how many entries all followers should get in all.
    pub(super) async fn drain(
        mut self,
        timeout: Duration,
        expected: u64,
    ) -> anyhow::Result<(Vec<Received>, Latency)> {
        let total = self.tasks.len();
        let mut received = Vec::with_capacity(total);
        let drained = tokio::time::timeout(timeout, async {
            while let Some(done) = self.tasks.join_next().await {
                received.push(done.context("a follower failed")??);
            }
            anyhow::Ok(())
        })
        .await;
        match drained {
            Ok(result) => result?,
            Err(_) => anyhow::bail!(
                "{} of {total} followers did not receive every entry and `ended` within \
                 {timeout:?} after the producer stopped: {} of {expected} entries delivered",
                total - received.len(),
                self.delivered.load(Ordering::Relaxed),
            ),
        }
        let mut latency = Latency::new();
        for part in &self.latencies {
            latency.merge(&part.lock().unwrap_or_else(PoisonError::into_inner));
        }
        Ok((received, latency))
    }
}

/// The error of a follower that stopped before it caught up (the others
/// are stopped too).
async fn first_error(
    followers: &mut tokio::task::JoinSet<anyhow::Result<Received>>,
) -> Option<anyhow::Error> {
    followers.abort_all();
    while let Some(done) = followers.join_next().await {
        if let Ok(Err(err)) = done {
            return Some(err.context("a follower stopped before it caught up"));
        }
    }
    None
}

pub(super) async fn open(
    client: &mut Client,
    session_id: &str,
    max_batch: u32,
) -> anyhow::Result<Streaming<pb::FollowResponse>> {
    let request = pb::FollowRequest {
        session_id: session_id.to_owned(),
        max_batch,
        ..Default::default()
    };
    within(
        || format!("cannot follow session `{session_id}`"),
        client.follow(request),
    )
    .await
}

/// One follower's view of its stream.
#[derive(Debug)]
struct Follower {
    follower: usize,
    session: usize,
    latency: Arc<Mutex<Latency>>,
    /// Entries delivered to every follower so far, to say how far a drain got.
    delivered: Arc<AtomicU64>,
}

impl Follower {
    /// Receives until `ended`, checking the seqs and timing each entry.
    async fn receive(
        self,
        mut events: Streaming<pb::FollowResponse>,
        ready_tx: tokio::sync::oneshot::Sender<()>,
    ) -> anyhow::Result<Received> {
        let mut ready_tx = Some(ready_tx);
        let mut next_seq = 1;
        let mut entries = 0;
        let who = || format!("follower {} (session {})", self.follower, self.session);
        loop {
            let response = events
                .message()
                .await
                .with_context(|| format!("{} failed", who()))?
                .with_context(|| format!("{}: the stream closed before `ended`", who()))?;
            let received_at = SystemTime::now();
            match response.event {
                Some(Event::Batch(batch)) => {
                    let mut latency = self.latency.lock().unwrap_or_else(PoisonError::into_inner);
                    for entry in &batch.entries {
                        anyhow::ensure!(
                            entry.seq == next_seq,
                            "{}: expected seq {next_seq}, got {} ({})",
                            who(),
                            entry.seq,
                            if entry.seq > next_seq {
                                "a gap"
                            } else {
                                "a duplicate"
                            }
                        );
                        next_seq += 1;
                        if entry.logger != LOGGER {
                            continue;
                        }
                        entries += 1;
                        let sent = entry.timestamp.and_then(|at| SystemTime::try_from(at).ok());
                        if let Some(sent) = sent {
                            latency.record(received_at.duration_since(sent).unwrap_or_default());
                        }
                    }
                    let count = u64::try_from(batch.entries.len())?;
                    self.delivered.fetch_add(count, Ordering::Relaxed);
                }
                Some(Event::CaughtUp(_)) => {
                    if let Some(ready_tx) = ready_tx.take() {
                        // Nobody waits any more only when the run failed.
                        let _ = ready_tx.send(());
                    }
                }
                Some(Event::Ended(_)) => {
                    return Ok(Received {
                        follower: self.follower,
                        session: self.session,
                        entries,
                    });
                }
                Some(Event::Truncated(truncated)) => anyhow::bail!(
                    "{}: told entries before seq {} were pruned",
                    who(),
                    truncated.first_available_seq
                ),
                None => {}
            }
        }
    }
}

/// Every follower got exactly its session's entries.
pub(super) fn check_every_entry_arrived(
    received: &[Received],
    per_session: &[u64],
) -> anyhow::Result<()> {
    let short: Vec<String> = received
        .iter()
        .filter(|one| one.entries != per_session[one.session])
        .map(|one| {
            format!(
                "follower {} got {} of {}",
                one.follower, one.entries, per_session[one.session]
            )
        })
        .collect();
    anyhow::ensure!(
        short.is_empty(),
        "{} followers did not get every entry: {}",
        short.len(),
        short.iter().take(5).cloned().collect::<Vec<_>>().join("; ")
    );
    Ok(())
}
