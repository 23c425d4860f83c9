//! Whether the store still takes writes. sled 0.34 cannot go on after a
//! failed write: a blob file it cannot create (EMFILE, ENOSPC, EIO) leaves
//! its current I/O buffer with a writer that never finishes, so every later
//! flush waits for good (`make_stable_inner`) and writes spin once that
//! buffer fills, holding sled's process-wide write lock; a failed log write
//! sets an error that sled returns for all I/O until it is reopened. So the
//! first write that fails with an I/O error marks the store failed, once,
//! with one error line: from then on no write or flush reaches sled, each
//! fails at once with `StoreError::Failed`, and the server reports
//! NOT_SERVING until it is restarted. A flush that does not return within
//! the store's timeout marks it stalled instead, which clears if that flush
//! later returns.

use std::sync::Arc;

use tokio::sync::watch;

use super::StoreError;

/// Why the store takes no writes, when it does not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// A write failed: sled cannot go on until the process restarts.
    Failed(Arc<str>),
    /// A flush has not returned within the timeout; clears if it does.
    Stalled(Arc<str>),
}

impl Failure {
    pub fn reason(&self) -> &str {
        match self {
            Self::Failed(reason) | Self::Stalled(reason) => reason,
        }
    }
}

/// The store's health, shared by every clone of the store.
#[derive(Debug, Clone)]
pub struct StoreHealth {
    state: Arc<watch::Sender<Option<Failure>>>,
}

impl Default for StoreHealth {
    fn default() -> Self {
        Self {
            state: Arc::new(watch::Sender::new(None)),
        }
    }
}

impl StoreHealth {
    /// `Ok` while writes may go to sled.
    pub fn check(&self) -> Result<(), StoreError> {
        match &*self.state.borrow() {
            None => Ok(()),
            Some(Failure::Failed(reason)) => Err(StoreError::Failed {
                reason: reason.to_string(),
            }),
            Some(Failure::Stalled(reason)) => Err(StoreError::Stalled {
                reason: reason.to_string(),
            }),
        }
    }

    /// The current failure, if any.
    pub fn failure(&self) -> Option<Failure> {
        self.state.borrow().clone()
    }

    /// Passes `result` through; an I/O or engine error from a write marks
    /// the store failed for good (see the module doc).
    pub fn after_write<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if let Err(err @ (StoreError::Io(_) | StoreError::Engine(_))) = &result {
            self.fail(err.to_string());
        }
        result
    }

    /// Marks the store failed; the first failure is kept and logged.
    pub fn fail(&self, reason: String) {
        let changed = self.state.send_if_modified(|state| match state {
            Some(Failure::Failed(_)) => false,
            _ => {
                *state = Some(Failure::Failed(reason.clone().into()));
                true
            }
        });
        if changed {
            tracing::error!(
                error = %reason,
                "the store failed: it takes no more writes and the server reports NOT_SERVING; \
                 acknowledged entries are on disk; restart the server once the cause is fixed"
            );
        }
    }

    /// Marks the store stalled, unless it has failed already.
    pub fn stall(&self, reason: String) {
        let changed = self.state.send_if_modified(|state| match state {
            None => {
                *state = Some(Failure::Stalled(reason.clone().into()));
                true
            }
            Some(_) => false,
        });
        if changed {
            tracing::error!(error = %reason, "the store stalled: writes fail until the flush returns");
        }
    }

    /// Clears a stall (a failure stays).
    pub fn unstall(&self) {
        let changed = self.state.send_if_modified(|state| match state {
            Some(Failure::Stalled(_)) => {
                *state = None;
                true
            }
            _ => false,
        });
        if changed {
            tracing::warn!("the stalled flush returned; the store takes writes again");
        }
    }

    /// Completes when the store is failed or stalled.
    pub async fn unhealthy(&self) {
        let mut state = self.state.subscribe();
        let _ = state.wait_for(Option::is_some).await;
    }

    /// Completes when the store is healthy again.
    pub async fn healthy(&self) {
        let mut state = self.state.subscribe();
        let _ = state.wait_for(Option::is_none).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_stays_and_a_stall_clears() {
        let health = StoreHealth::default();
        assert!(health.check().is_ok());
        health.stall("slow".to_owned());
        assert!(health.check().is_err());
        health.unstall();
        assert!(health.check().is_ok());
        let io = StoreError::Io(std::io::Error::other("no space"));
        assert!(health.after_write::<()>(Err(io)).is_err());
        health.unstall();
        health.stall("slow".to_owned());
        let err = health.check().expect_err("failed");
        assert!(err.to_string().contains("no space"), "{err}");
    }

    #[test]
    fn errors_that_are_not_io_do_not_fail_the_store() {
        let health = StoreHealth::default();
        let corrupt = StoreError::Corrupt {
            detail: "x".to_owned(),
        };
        assert!(health.after_write::<()>(Err(corrupt)).is_err());
        assert!(health.check().is_ok());
    }
}
