//! What a failed request tells its client, whichever edge it came in by: a
//! [`Code`] (the contract's names) and a message a person can act on. The
//! choice of code for every domain error is made here, once, with every
//! variant named (no `_` arm), so a new error forces a decision; each edge
//! then maps `Code` to its protocol in one place (`api/status.rs`,
//! `http/error.rs`). Internal failures are logged here with their source
//! chain; the client gets a short message without file paths.

use std::time::Duration;

use crate::sessions::SessionError;
use crate::store::StoreError;

use super::error::{RequestError, STREAM_RETRY_AFTER};

/// The contract's error codes that the rules and the edges produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    InvalidArgument,
    Unauthenticated,
    NotFound,
    AlreadyExists,
    FailedPrecondition,
    Aborted,
    ResourceExhausted,
    Unavailable,
    /// Stored data that cannot be served: a session whose log is damaged.
    DataLoss,
    Internal,
}

impl Code {
    /// The name as the contract spells it (`NOT_FOUND`).
    pub fn name(self) -> &'static str {
        match self {
            Self::InvalidArgument => "INVALID_ARGUMENT",
            Self::Unauthenticated => "UNAUTHENTICATED",
            Self::NotFound => "NOT_FOUND",
            Self::AlreadyExists => "ALREADY_EXISTS",
            Self::FailedPrecondition => "FAILED_PRECONDITION",
            Self::Aborted => "ABORTED",
            Self::ResourceExhausted => "RESOURCE_EXHAUSTED",
            Self::Unavailable => "UNAVAILABLE",
            Self::DataLoss => "DATA_LOSS",
            Self::Internal => "INTERNAL",
        }
    }
}

/// A failure as a client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: Code,
    pub message: String,
    /// Set where waiting this long may help (too many streams).
    pub retry_after: Option<Duration>,
}

impl Failure {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after: None,
        }
    }
}

impl Failure {
    /// Whether the same request may succeed when sent again later: the
    /// store or the server could not take it just now (`UNAVAILABLE`), it
    /// lost a race (`ABORTED`), or a limit says when to come back. These
    /// are the codes an OTLP exporter retries; every other failure is for
    /// good, and an edge that must say which (OTLP intake) goes by this.
    pub fn retryable(&self) -> bool {
        match self.code {
            Code::Unavailable | Code::Aborted => true,
            Code::ResourceExhausted => self.retry_after.is_some(),
            Code::InvalidArgument
            | Code::Unauthenticated
            | Code::NotFound
            | Code::AlreadyExists
            | Code::FailedPrecondition
            | Code::DataLoss
            | Code::Internal => false,
        }
    }
}

impl From<SessionError> for Failure {
    fn from(err: SessionError) -> Self {
        let code = match err {
            SessionError::NotFound { .. } | SessionError::Deleted { .. } => Code::NotFound,
            SessionError::ShuttingDown | SessionError::WatcherLagged { .. } => Code::Unavailable,
            SessionError::AlreadyExists { .. } => Code::AlreadyExists,
            SessionError::Ended { .. } | SessionError::Active { .. } => Code::FailedPrecondition,
            SessionError::SeqMismatch { .. } => Code::Aborted,
            SessionError::SeqsExhausted { .. } | SessionError::MetadataRefused { .. } => {
                Code::ResourceExhausted
            }
            // Logged once, when the check found it; the message names the
            // session and what is wrong (no paths: the check reports
            // counters, seqs and decode errors).
            SessionError::Damaged { .. } => Code::DataLoss,
            SessionError::Store(store) => return store_failure(&store),
        };
        Self::new(code, err.to_string())
    }
}

impl From<RequestError> for Failure {
    fn from(err: RequestError) -> Self {
        match err {
            RequestError::Invalid { .. } => Self::new(Code::InvalidArgument, err.to_string()),
            RequestError::OverLimit { .. } => Self::new(Code::ResourceExhausted, err.to_string()),
            RequestError::TooManyStreams { .. } => Self {
                retry_after: Some(STREAM_RETRY_AFTER),
                ..Self::new(Code::ResourceExhausted, err.to_string())
            },
        }
    }
}

fn store_failure(err: &StoreError) -> Failure {
    // A failed store was logged once, when it failed; each call refused
    // since adds nothing.
    if !matches!(
        err,
        StoreError::LogDropped | StoreError::Failed { .. } | StoreError::Stalled { .. }
    ) {
        log_internal(err);
    }
    match err {
        StoreError::LogDropped => Failure::new(
            Code::NotFound,
            "the session was deleted while this call read it",
        ),
        StoreError::Io(_) => Failure::new(
            Code::Unavailable,
            "the store could not complete the write or read; retry later",
        ),
        StoreError::Corrupt { .. } => {
            Failure::new(Code::Internal, "stored data is corrupt; see the server log")
        }
        StoreError::Engine(_)
        | StoreError::DataDir { .. }
        | StoreError::Foreign { .. }
        | StoreError::Locked { .. } => Failure::new(
            Code::Internal,
            "the storage engine failed; see the server log",
        ),
        StoreError::Failed { .. } => Failure::new(
            Code::Unavailable,
            "the server's storage failed and takes no writes until the server is restarted; \
             retry later or against another instance",
        ),
        StoreError::Stalled { .. } => Failure::new(
            Code::Unavailable,
            "the server's storage has a flush that has not finished in time and takes no \
             writes until it does; retry shortly with the same batch id",
        ),
        StoreError::FlushTimedOut { .. } => Failure::new(
            Code::Unavailable,
            "the write was not confirmed on disk in time; retry later with the same batch id",
        ),
        StoreError::TaskFailed { .. } => Failure::new(
            Code::Internal,
            "an internal task failed; see the server log",
        ),
    }
}

fn log_internal(err: &dyn std::error::Error) {
    let mut chain = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        chain.push_str(": ");
        chain.push_str(&cause.to_string());
        source = cause.source();
    }
    tracing::error!(error = %chain, "request failed inside the server");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_errors_map_to_the_contract_codes() {
        let id = || "s".to_owned();
        let cases = [
            (SessionError::NotFound { session_id: id() }, Code::NotFound),
            (
                SessionError::AlreadyExists { session_id: id() },
                Code::AlreadyExists,
            ),
            (
                SessionError::Ended { session_id: id() },
                Code::FailedPrecondition,
            ),
            (
                SessionError::Active { session_id: id() },
                Code::FailedPrecondition,
            ),
            (
                SessionError::SeqMismatch {
                    session_id: id(),
                    expected: 1,
                    actual: 2,
                },
                Code::Aborted,
            ),
            (SessionError::ShuttingDown, Code::Unavailable),
            (
                SessionError::Damaged {
                    session_id: id(),
                    what: "its last block does not decode".into(),
                },
                Code::DataLoss,
            ),
            (
                SessionError::Store(StoreError::Io(std::io::Error::other("disk"))),
                Code::Unavailable,
            ),
            (
                SessionError::Store(StoreError::Corrupt { detail: "x".into() }),
                Code::Internal,
            ),
        ];
        for (err, code) in cases {
            assert_eq!(Failure::from(err).code, code);
        }
    }

    #[test]
    fn internal_messages_do_not_leak_details() {
        let err = SessionError::Store(StoreError::Io(std::io::Error::other("/secret/path")));
        assert!(!Failure::from(err).message.contains("/secret/path"));
    }

    #[test]
    fn only_failures_a_retry_can_cure_are_retryable() {
        let retryable = |err: SessionError| Failure::from(err).retryable();
        assert!(retryable(SessionError::ShuttingDown));
        assert!(retryable(SessionError::Store(StoreError::Io(
            std::io::Error::other("disk")
        ))));
        assert!(!retryable(SessionError::Store(StoreError::Corrupt {
            detail: "x".into()
        })));
        assert!(!retryable(SessionError::Ended {
            session_id: "s".into()
        }));
        assert!(
            Failure::from(RequestError::TooManyStreams {
                reason: "busy".into()
            })
            .retryable()
        );
        assert!(
            !Failure::from(RequestError::OverLimit {
                field: "x",
                reason: "big".into()
            })
            .retryable()
        );
    }

    #[test]
    fn only_stream_refusals_say_when_to_retry() {
        let busy = Failure::from(RequestError::TooManyStreams {
            reason: "busy".into(),
        });
        assert_eq!(busy.code, Code::ResourceExhausted);
        assert_eq!(busy.retry_after, Some(STREAM_RETRY_AFTER));
        let over = Failure::from(RequestError::OverLimit {
            field: "x",
            reason: "big".into(),
        });
        assert_eq!(over.retry_after, None);
    }
}
