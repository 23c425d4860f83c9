//! The one mapping from errors to HTTP statuses. Which contract code an
//! error gets is decided in `edge::failure`; here every code becomes an
//! HTTP status (each named, no `_` arm) and a JSON body
//! `{"error": {"code": "NOT_FOUND", "message": "..."}}`. Refusals where
//! waiting helps carry `Retry-After`; 401s carry `WWW-Authenticate`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::edge::{Code, Failure, RequestError};
use crate::sessions::SessionError;

/// A failed HTTP request.
#[derive(Debug)]
pub(super) struct HttpError(pub(super) Failure);

impl From<Failure> for HttpError {
    fn from(failure: Failure) -> Self {
        Self(failure)
    }
}

impl From<SessionError> for HttpError {
    fn from(err: SessionError) -> Self {
        Self(err.into())
    }
}

impl From<RequestError> for HttpError {
    fn from(err: RequestError) -> Self {
        Self(err.into())
    }
}

/// The JSON body of an error, also the data of an SSE `stream_error`.
#[derive(Debug, Serialize)]
pub(super) struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Debug, Serialize)]
struct ErrorDetail<'a> {
    code: &'static str,
    message: &'a str,
}

impl<'a> ErrorBody<'a> {
    pub(super) fn new(failure: &'a Failure) -> Self {
        Self {
            error: ErrorDetail {
                code: failure.code.name(),
                message: &failure.message,
            },
        }
    }
}

/// The HTTP status for a contract code, as Google's API design maps them.
pub(super) fn http_status(code: Code) -> StatusCode {
    match code {
        Code::InvalidArgument | Code::FailedPrecondition => StatusCode::BAD_REQUEST,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DataLoss | Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let failure = self.0;
        let body = serde_json::to_string(&ErrorBody::new(&failure))
            .unwrap_or_else(|_| r#"{"error":{"code":"INTERNAL","message":""}}"#.to_owned());
        let mut response = (
            http_status(failure.code),
            [(header::CONTENT_TYPE, super::json::CONTENT_TYPE)],
            body,
        )
            .into_response();
        let headers = response.headers_mut();
        if let Some(delay) = failure.retry_after {
            headers.insert(
                header::RETRY_AFTER,
                HeaderValue::from(delay.as_secs().max(1)),
            );
        }
        if failure.code == Code::Unauthenticated {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"sessionlog\""),
            );
        }
        response
    }
}

/// The HTTP status of a failed OTLP/HTTP export (`POST /v1/logs`), as
/// the OTLP specification has exporters read it: whatever a retry may cure
/// is 503 (with `Retry-After`), which exporters retry; a limit no retry
/// passes is 413; the rest are 4xx/500, which they drop.
pub(super) fn otlp_status(failure: &Failure) -> StatusCode {
    if failure.retryable() {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    match failure.code {
        Code::InvalidArgument | Code::FailedPrecondition => StatusCode::BAD_REQUEST,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists => StatusCode::CONFLICT,
        Code::ResourceExhausted => StatusCode::PAYLOAD_TOO_LARGE,
        Code::Aborted | Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DataLoss | Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The `Retry-After` of an OTLP/HTTP refusal: the failure's own delay, or
/// one second for any 503 or 429 (the exporter backs off from there).
pub(super) fn retry_after_seconds(failure: &Failure, status: StatusCode) -> Option<u64> {
    match failure.retry_after {
        Some(delay) => Some(delay.as_secs().max(1)),
        None => matches!(
            status,
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS
        )
        .then_some(1),
    }
}

/// The `google.rpc.Code` number of a contract code, for the
/// `google.rpc.Status` body of a failed OTLP/HTTP export.
pub(super) fn grpc_code_number(code: Code) -> i32 {
    match code {
        Code::InvalidArgument => 3,
        Code::NotFound => 5,
        Code::AlreadyExists => 6,
        Code::ResourceExhausted => 8,
        Code::FailedPrecondition => 9,
        Code::Aborted => 10,
        Code::Internal => 13,
        Code::Unavailable => 14,
        Code::DataLoss => 15,
        Code::Unauthenticated => 16,
    }
}

/// A request for a host this server does not answer for (`Host` check):
/// 421 Misdirected Request, with the error body of `INVALID_ARGUMENT`.
pub(super) fn misdirected(message: String) -> Response {
    let mut response = HttpError(Failure::new(Code::InvalidArgument, message)).into_response();
    *response.status_mut() = StatusCode::MISDIRECTED_REQUEST;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_http_statuses() {
        let cases = [
            (Code::InvalidArgument, 400),
            (Code::Unauthenticated, 401),
            (Code::NotFound, 404),
            (Code::ResourceExhausted, 429),
            (Code::Unavailable, 503),
            (Code::Internal, 500),
            (Code::DataLoss, 500),
        ];
        for (code, status) in cases {
            assert_eq!(http_status(code).as_u16(), status, "{code:?}");
        }
    }

    #[test]
    fn otlp_refusals_say_whether_to_retry() {
        let unavailable = Failure::new(Code::Unavailable, "disk");
        assert_eq!(otlp_status(&unavailable), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            retry_after_seconds(&unavailable, StatusCode::SERVICE_UNAVAILABLE),
            Some(1)
        );
        let over = Failure::new(Code::ResourceExhausted, "too many records");
        assert_eq!(otlp_status(&over), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            retry_after_seconds(&over, StatusCode::PAYLOAD_TOO_LARGE),
            None
        );
        let busy = HttpError::from(RequestError::TooManyStreams {
            reason: "busy".into(),
        })
        .0;
        assert_eq!(otlp_status(&busy), StatusCode::SERVICE_UNAVAILABLE);
        let bad = Failure::new(Code::InvalidArgument, "not protobuf");
        assert_eq!(otlp_status(&bad), StatusCode::BAD_REQUEST);
        assert_eq!(grpc_code_number(Code::Unavailable), 14);
    }

    #[test]
    fn stream_refusals_say_when_to_retry() {
        let refused = HttpError::from(RequestError::TooManyStreams {
            reason: "busy".into(),
        })
        .into_response();
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.headers()[header::RETRY_AFTER], "1");
    }
}
