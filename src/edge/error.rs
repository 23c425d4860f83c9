//! The error of a request refused before any work is done, whichever edge
//! it came in by; `failure` decides what each variant tells the client.

use std::time::Duration;

/// How long a client refused for too many open streams should wait.
pub(crate) const STREAM_RETRY_AFTER: Duration = Duration::from_secs(1);

/// A request the server refuses before doing any work.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("`{field}` {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("`{field}` is over the limit: {reason}")]
    OverLimit { field: &'static str, reason: String },
    /// Too many open streams; waiting [`STREAM_RETRY_AFTER`] may help.
    #[error("{reason}")]
    TooManyStreams { reason: String },
}

pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> RequestError {
    RequestError::Invalid {
        field,
        reason: reason.into(),
    }
}
