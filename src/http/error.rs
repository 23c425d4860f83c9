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
        Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
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
        ];
        for (code, status) in cases {
            assert_eq!(http_status(code).as_u16(), status, "{code:?}");
        }
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
