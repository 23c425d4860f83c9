//! The one mapping from errors to gRPC statuses: which contract code a
//! domain error gets is decided in `edge::failure`; here each code becomes
//! its tonic `Code` (every one named, no `_` arm), and a refusal where
//! waiting helps carries a `RetryInfo`.

use tonic::Status;
use tonic_types::{ErrorDetails, StatusExt};

use crate::edge::{Code, Failure, RequestError};
use crate::sessions::SessionError;

impl From<Failure> for Status {
    fn from(failure: Failure) -> Self {
        let code = match failure.code {
            Code::InvalidArgument => tonic::Code::InvalidArgument,
            Code::Unauthenticated => tonic::Code::Unauthenticated,
            Code::NotFound => tonic::Code::NotFound,
            Code::AlreadyExists => tonic::Code::AlreadyExists,
            Code::FailedPrecondition => tonic::Code::FailedPrecondition,
            Code::Aborted => tonic::Code::Aborted,
            Code::ResourceExhausted => tonic::Code::ResourceExhausted,
            Code::Unavailable => tonic::Code::Unavailable,
            Code::DataLoss => tonic::Code::DataLoss,
            Code::Internal => tonic::Code::Internal,
        };
        match failure.retry_after {
            Some(delay) => Status::with_error_details(
                code,
                failure.message,
                ErrorDetails::with_retry_info(Some(delay)),
            ),
            None => Status::new(code, failure.message),
        }
    }
}

impl From<SessionError> for Status {
    fn from(err: SessionError) -> Self {
        Failure::from(err).into()
    }
}

impl From<RequestError> for Status {
    fn from(err: RequestError) -> Self {
        Failure::from(err).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edge::error::STREAM_RETRY_AFTER;
    use crate::store::StoreError;

    #[test]
    fn session_errors_map_to_the_contract_codes() {
        let not_found = SessionError::NotFound {
            session_id: "s".into(),
        };
        assert_eq!(Status::from(not_found).code(), tonic::Code::NotFound);
        let io = SessionError::Store(StoreError::Io(std::io::Error::other("/secret/path")));
        let status = Status::from(io);
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert!(!status.message().contains("/secret/path"));
    }

    #[test]
    fn stream_refusals_carry_retry_info() {
        let status = Status::from(RequestError::TooManyStreams {
            reason: "busy".into(),
        });
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        let details = status.get_error_details();
        assert_eq!(
            details.retry_info().and_then(|info| info.retry_delay),
            Some(STREAM_RETRY_AFTER)
        );
    }
}
