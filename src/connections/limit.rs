//! Descriptors: the open-file limit raised once at start-up, the default
//! connection cap derived from it, and one listener's count of open
//! connections.

use std::sync::Arc;

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Descriptors kept out of every connection cap when the limit allows:
/// sled's files (a blob file per large entry among them), the token and
/// TLS files, forwarding connections, `/proc` reads of watched clients.
const RESERVED_DESCRIPTORS: u64 = 256;

/// Raises the soft open-file limit to the hard one (a process may always
/// do that) and returns the soft limit in force afterwards.
pub(crate) fn raise_open_file_limit() -> u64 {
    let limit = getrlimit(Resource::Nofile);
    let Some(current) = limit.current else {
        return u64::MAX;
    };
    if limit.maximum.is_none_or(|maximum| maximum > current) {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => return limit.maximum.unwrap_or(u64::MAX),
            Err(err) => {
                tracing::debug!(error = %err, current, "cannot raise the open-file limit");
            }
        }
    }
    current
}

/// The cap per listener when none is given: the descriptors under
/// `open_files` less a reserve, shared evenly by `listeners`, so that
/// connections on all of them together never take the reserve. At least
/// one connection per listener.
pub(crate) fn default_max_connections(open_files: u64, listeners: usize) -> usize {
    let reserve = RESERVED_DESCRIPTORS.min(open_files / 2);
    let listeners = u64::try_from(listeners.max(1)).unwrap_or(u64::MAX);
    let each = open_files.saturating_sub(reserve) / listeners;
    usize::try_from(each).unwrap_or(usize::MAX).max(1)
}

/// One listener's open connections: a permit each, held by the connection
/// until it closes.
#[derive(Debug, Clone)]
pub(crate) struct ListenerGate {
    name: Arc<str>,
    open: Arc<Semaphore>,
    max_connections: usize,
}

impl ListenerGate {
    /// A gate letting in at most `max_connections` at once.
    pub(crate) fn new(name: impl Into<Arc<str>>, max_connections: usize) -> Self {
        let max_connections = max_connections.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            name: name.into(),
            open: Arc::new(Semaphore::new(max_connections)),
            max_connections,
        }
    }

    /// A permit for one more connection, or `None` at the cap.
    pub(super) fn admit(&self) -> Option<OwnedSemaphorePermit> {
        let permit = self.open.clone().try_acquire_owned().ok();
        if permit.is_none() {
            tracing::debug!(
                listen = %self.name,
                max_connections = self.max_connections,
                "too many connections; closed a new one"
            );
            crate::metrics::get().connection_refused();
        }
        permit
    }

    /// Where this gate's listener accepts, for logs.
    pub(super) fn name(&self) -> &str {
        &self.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_cap_leaves_a_reserve_on_every_limit() {
        assert_eq!(default_max_connections(1_024, 1), 768);
        assert_eq!(default_max_connections(1_024, 2), 384);
        assert_eq!(default_max_connections(300, 1), 150);
        assert_eq!(default_max_connections(1, 3), 1);
    }

    #[test]
    fn a_gate_admits_up_to_its_cap_and_again_after_a_close() {
        let gate = ListenerGate::new("test", 2);
        let first = gate.admit().expect("first");
        let _second = gate.admit().expect("second");
        assert!(gate.admit().is_none());
        drop(first);
        assert!(gate.admit().is_some());
    }
}
