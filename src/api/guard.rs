//! Two guards around every call. A panic in a handler fails that call with
//! `INTERNAL` while the server and every other call go on. And tonic's own
//! refusal of an oversized message (`OUT_OF_RANGE`) becomes
//! `RESOURCE_EXHAUSTED`, the contract's code for a limit; its message names
//! the size and the limit.

use std::panic::AssertUnwindSafe;
use std::task::{Context, Poll};

use futures::FutureExt;
use futures::future::BoxFuture;
use tonic::Status;
use tonic::codegen::http::{HeaderValue, Request, Response};
use tower::{Layer, Service};

const GRPC_STATUS: &str = "grpc-status";
const OUT_OF_RANGE: &str = "11";
const RESOURCE_EXHAUSTED: &str = "8";
/// How tonic words a message over `max_decoding_message_size`.
const TOO_LARGE: &str = "message length too large";

/// Wraps a service in the guards.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct GuardLayer;

impl<S> Layer<S> for GuardLayer {
    type Service = Guard<S>;

    fn layer(&self, inner: S) -> Guard<S> {
        Guard { inner }
    }
}

/// The guarded service.
#[derive(Debug, Clone)]
pub(crate) struct Guard<S> {
    inner: S,
}

impl<S, RequestBody, ResponseBody> Service<Request<RequestBody>> for Guard<S>
where
    S: Service<Request<RequestBody>, Response = Response<ResponseBody>>,
    S::Future: Send + 'static,
    ResponseBody: Default + Send + 'static,
{
    type Response = Response<ResponseBody>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<RequestBody>) -> Self::Future {
        let path = request.uri().path().to_owned();
        let called = std::panic::catch_unwind(AssertUnwindSafe(|| self.inner.call(request)));
        Box::pin(async move {
            let outcome = match called {
                Ok(future) => AssertUnwindSafe(future).catch_unwind().await,
                Err(panic) => Err(panic),
            };
            match outcome {
                Ok(Ok(response)) => Ok(limit_status(response)),
                Ok(Err(err)) => Err(err),
                Err(_) => {
                    tracing::error!(call = %path, "a handler panicked; only this call failed");
                    Ok(
                        Status::internal("the server failed on this call; its log says more")
                            .into_http(),
                    )
                }
            }
        })
    }
}

fn limit_status<B>(mut response: Response<B>) -> Response<B> {
    let headers = response.headers();
    let oversized = headers
        .get(GRPC_STATUS)
        .is_some_and(|code| code == OUT_OF_RANGE)
        && headers
            .get("grpc-message")
            .and_then(|message| message.to_str().ok())
            .is_some_and(|message| {
                message.contains("message%20length%20too%20large") || message.contains(TOO_LARGE)
            });
    if oversized {
        response
            .headers_mut()
            .insert(GRPC_STATUS, HeaderValue::from_static(RESOURCE_EXHAUSTED));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    fn status_of(response: &Response<tonic::body::Body>) -> Option<String> {
        response
            .headers()
            .get(GRPC_STATUS)
            .and_then(|code| code.to_str().ok())
            .map(str::to_owned)
    }

    #[tokio::test]
    async fn a_panicking_handler_fails_its_call_with_internal() {
        let mut guarded = GuardLayer.layer(tower::service_fn(|_: Request<()>| async {
            if true {
                panic!("a bug");
            }
            Ok::<Response<tonic::body::Body>, std::convert::Infallible>(Response::default())
        }));
        let response = guarded.call(Request::new(())).await.expect("a response");
        assert_eq!(
            status_of(&response),
            Some((Code::Internal as i32).to_string())
        );
    }

    #[tokio::test]
    async fn oversized_messages_become_resource_exhausted() {
        let mut guarded = GuardLayer.layer(tower::service_fn(|_: Request<()>| async {
            let status = Status::out_of_range(
                "Error, decoded message length too large: found 70000000 bytes, the limit is: 16777216 bytes",
            );
            Ok::<_, std::convert::Infallible>(status.into_http::<tonic::body::Body>())
        }));
        let response = guarded.call(Request::new(())).await.expect("a response");
        assert_eq!(status_of(&response).as_deref(), Some(RESOURCE_EXHAUSTED));
    }

    #[tokio::test]
    async fn other_out_of_range_statuses_stay() {
        let mut guarded = GuardLayer.layer(tower::service_fn(|_: Request<()>| async {
            Ok::<_, std::convert::Infallible>(
                Status::out_of_range("cursor").into_http::<tonic::body::Body>(),
            )
        }));
        let response = guarded.call(Request::new(())).await.expect("a response");
        assert_eq!(status_of(&response).as_deref(), Some(OUT_OF_RANGE));
    }
}
