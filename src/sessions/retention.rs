//! Retention: ended sessions are pruned by age, by count and by total
//! bytes, oldest `ended_at` first. Active sessions are never pruned, even
//! when they alone exceed a limit. An ended session not yet handed on to
//! every forwarding target is kept, unless the store is over `max_bytes`:
//! then it goes too, and the loss is logged and counted. A session whose
//! log was found damaged is never handed on, so it is not kept for that.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use super::{SessionError, SessionManager};

/// How many sessions one deletion batch takes (see `enforce_retention`).
const PRUNE_BATCH: usize = 256;

/// Limits on what is kept; `None` does not limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Prune sessions that ended longer ago than this.
    pub max_age: Option<Duration>,
    /// Keep at most this many sessions, counting active ones.
    pub max_sessions: Option<usize>,
    /// Keep the sum of all sessions' `size_bytes` at most this.
    pub max_bytes: Option<u64>,
}

impl RetentionPolicy {
    pub fn is_unlimited(&self) -> bool {
        *self == Self::default()
    }
}

/// Why a session was pruned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PruneReason {
    Age,
    Count,
    Bytes,
}

impl PruneReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Age => "max age",
            Self::Count => "max sessions",
            Self::Bytes => "max bytes",
        }
    }
}

impl SessionManager {
    /// Prunes what `policy` does not keep; returns the pruned ids, oldest
    /// first, with the limit that pruned each.
    pub async fn enforce_retention(&self, policy: RetentionPolicy) -> Vec<(String, PruneReason)> {
        if policy.is_unlimited() {
            return Vec::new();
        }
        let now = SystemTime::now();
        let mut count = 0usize;
        let mut bytes = 0u64;
        let mut ended = Vec::new();
        for handle in self.sessions_read().values() {
            let Ok(view) = handle.view() else { continue };
            count += 1;
            bytes = bytes.saturating_add(view.counters.size_bytes);
            if !view.is_active() {
                let ended_at = view
                    .record
                    .ended_at
                    .and_then(|at| SystemTime::try_from(at).ok())
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                ended.push((
                    ended_at,
                    view.record.id,
                    view.counters.size_bytes,
                    handle.is_damaged(),
                ));
            }
        }
        ended.sort();
        // Decided first, deleted in batches: each batch is one hop to the
        // blocking pool and one store write, and holds the lifecycle lock
        // (starts wait) only for its own sessions.
        let mut plan = Vec::new();
        for (ended_at, id, size_bytes, damaged) in ended {
            let too_old = policy
                .max_age
                .is_some_and(|max_age| now.duration_since(ended_at).is_ok_and(|age| age > max_age));
            let over_bytes = policy.max_bytes.is_some_and(|max| bytes > max);
            let reason = if too_old {
                PruneReason::Age
            } else if policy.max_sessions.is_some_and(|max| count > max) {
                PruneReason::Count
            } else if over_bytes {
                PruneReason::Bytes
            } else {
                // Younger sessions are not older, and count and bytes only fell.
                break;
            };
            if !damaged && !self.may_prune(&id) {
                if !over_bytes {
                    // Kept for its forwarding targets; younger ones may go.
                    continue;
                }
                tracing::warn!(
                    session_id = %id,
                    "pruning a session not yet forwarded everywhere: the store is over --retention-max-bytes"
                );
                crate::metrics::get().pruned_unforwarded();
            }
            count -= 1;
            bytes = bytes.saturating_sub(size_bytes);
            plan.push((id, reason));
        }
        let mut pruned = Vec::with_capacity(plan.len());
        for batch in plan.chunks(PRUNE_BATCH) {
            let reasons: HashMap<&str, PruneReason> = batch
                .iter()
                .map(|(id, reason)| (id.as_str(), *reason))
                .collect();
            let outcome = self
                .delete_ended(batch.iter().map(|(id, _)| id.clone()).collect())
                .await;
            for (id, err) in &outcome.skipped {
                if !matches!(err, SessionError::NotFound { .. }) {
                    tracing::warn!(session_id = %id, error = %err, "retention could not prune a session");
                }
            }
            if let Some(err) = &outcome.failed {
                tracing::warn!(
                    sessions = outcome.deleted.len(),
                    error = %err,
                    "retention could not prune sessions from the store; they come back at the next start"
                );
                continue;
            }
            for id in outcome.deleted {
                let reason = reasons
                    .get(id.as_str())
                    .copied()
                    .unwrap_or(PruneReason::Count);
                tracing::info!(session_id = %id, reason = reason.as_str(), "pruned session");
                crate::metrics::get().pruned(reason.as_str());
                pruned.push((id, reason));
            }
        }
        pruned
    }
}
