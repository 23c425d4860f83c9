//! Internals exposed to the integration tests, the examples and the fuzz
//! targets (the `testing` feature, which the crate's own dev-dependency
//! turns on); not a stable API.

pub use crate::sessions::{AppendBatch, PruneReason, SessionManager};
pub use crate::store::schema::{LogCounters, State, StoredEntry, StoredSession};
pub use crate::store::{NewEntry, Store, decode_entry};

/// The Prometheus text `/metrics` would serve now (with no session counts).
pub fn metrics_text() -> String {
    crate::metrics::get().render(&Default::default())
}
