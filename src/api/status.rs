//! The one mapping from errors to gRPC statuses. Every variant is named (no
//! `_` arm), so a new error forces a decision here. Internal failures are
//! logged with their cause; the client gets a short message without paths.

use tonic::Status;

use crate::sessions::SessionError;
use crate::store::StoreError;

use super::convert::RequestError;

impl From<SessionError> for Status {
    fn from(err: SessionError) -> Self {
        match err {
            SessionError::NotFound { .. } | SessionError::Deleted { .. } => {
                Status::not_found(err.to_string())
            }
            SessionError::ShuttingDown | SessionError::WatcherLagged { .. } => {
                Status::unavailable(err.to_string())
            }
            SessionError::AlreadyExists { .. } => Status::already_exists(err.to_string()),
            SessionError::Ended { .. } | SessionError::Active { .. } => {
                Status::failed_precondition(err.to_string())
            }
            SessionError::SeqMismatch { .. } => Status::aborted(err.to_string()),
            SessionError::SeqsExhausted { .. } => Status::resource_exhausted(err.to_string()),
            SessionError::Store(store) => store_status(&store),
            SessionError::TaskFailed { .. } => {
                log_internal(&err);
                Status::internal("an internal task failed; see the server log")
            }
        }
    }
}

impl From<RequestError> for Status {
    fn from(err: RequestError) -> Self {
        match err {
            RequestError::Invalid { .. } => Status::invalid_argument(err.to_string()),
            RequestError::OverLimit { .. } => Status::resource_exhausted(err.to_string()),
        }
    }
}

fn store_status(err: &StoreError) -> Status {
    if !matches!(err, StoreError::LogDropped) {
        log_internal(err);
    }
    match err {
        StoreError::LogDropped => {
            Status::not_found("the session was deleted while this call read it")
        }
        StoreError::Io(_) => {
            Status::unavailable("the store could not complete the write or read; retry later")
        }
        StoreError::Corrupt { .. } => {
            Status::internal("stored data is corrupt; see the server log")
        }
        StoreError::Engine(_)
        | StoreError::DataDir { .. }
        | StoreError::Foreign { .. }
        | StoreError::Locked { .. } => {
            Status::internal("the storage engine failed; see the server log")
        }
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
    use tonic::Code;

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
            assert_eq!(Status::from(err).code(), code);
        }
    }

    #[test]
    fn internal_messages_do_not_leak_details() {
        let err = SessionError::Store(StoreError::Io(std::io::Error::other("/secret/path")));
        assert!(!Status::from(err).message().contains("/secret/path"));
    }
}
