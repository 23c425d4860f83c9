//! Sends lines as log entries in batches: a batch goes out when it is full or
//! when its first line has waited `linger`. Each batch has a batch id, so a
//! retry after a transient failure never stores it twice.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tonic::Code;

use super::Client;
use crate::pb;

/// How lines are grouped.
#[derive(Debug, Clone, Copy)]
pub struct BatchOptions {
    pub max_entries: usize,
    pub linger: Duration,
    /// Attempts per batch when the server is unavailable.
    pub attempts: u32,
}

impl Default for BatchOptions {
    fn default() -> Self {
        Self {
            max_entries: 500,
            linger: Duration::from_millis(50),
            attempts: 5,
        }
    }
}

/// Appends entries from a channel to one session.
#[derive(Debug)]
pub struct BatchAppender {
    client: Client,
    session_id: String,
    options: BatchOptions,
}

impl BatchAppender {
    pub fn new(client: Client, session_id: String, options: BatchOptions) -> Self {
        Self {
            client,
            session_id,
            options,
        }
    }

    /// Sends everything `entries_rx` yields until it closes; calls
    /// `on_batch` with each stored batch's response.
    pub async fn run(
        mut self,
        mut entries_rx: mpsc::Receiver<pb::LogEntry>,
        mut on_batch: impl FnMut(&pb::AppendResponse, usize),
    ) -> Result<(), tonic::Status> {
        while let Some(first) = entries_rx.recv().await {
            let deadline = Instant::now() + self.options.linger;
            let mut batch = vec![first];
            while batch.len() < self.options.max_entries {
                match tokio::time::timeout_at(deadline, entries_rx.recv()).await {
                    Ok(Some(entry)) => batch.push(entry),
                    Ok(None) | Err(_) => break,
                }
            }
            let count = batch.len();
            let response = self.send(batch).await?;
            on_batch(&response, count);
        }
        Ok(())
    }

    async fn send(
        &mut self,
        entries: Vec<pb::LogEntry>,
    ) -> Result<pb::AppendResponse, tonic::Status> {
        let request = pb::AppendRequest {
            session_id: self.session_id.clone(),
            entries,
            expected_last_seq: None,
            batch_id: ulid::Ulid::generate().to_string(),
        };
        let mut backoff = Duration::from_millis(100);
        let mut attempt = 1;
        loop {
            match self.client.append(request.clone()).await {
                Ok(response) => return Ok(response.into_inner()),
                Err(status)
                    if status.code() == Code::Unavailable && attempt < self.options.attempts =>
                {
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                    attempt += 1;
                }
                Err(status) => return Err(status),
            }
        }
    }
}
