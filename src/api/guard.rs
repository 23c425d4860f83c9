//! Two guards around every call. A panic in a handler fails that call with
//! `INTERNAL` while the server and every other call go on. And tonic's own
//! refusals of a request's frames get the contract's codes, with messages
//! that say what to change, wherever the status travels: in the response
//! headers (a unary call refused before its handler ran) or in the trailers
//! (a streaming call, whose handler meets the message after the response
//! began). An oversized message (tonic's `OUT_OF_RANGE`) and one that
//! decompresses past the limit become `RESOURCE_EXHAUSTED` naming the size,
//! the limit and the flag that sets it; a compressed message that does not
//! decompress (tonic's `INTERNAL`) is `INVALID_ARGUMENT`, the sender's
//! fault.

use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::FutureExt;
use futures::future::BoxFuture;
use http_body::Frame;
use tonic::Status;
use tonic::body::Body;
use tonic::codegen::http::{HeaderMap, Request, Response};
use tower::{Layer, Service};

/// How tonic words a message over `max_decoding_message_size`.
const TOO_LARGE: &str = "message length too large";
/// How tonic begins the status of a compressed message it could not
/// decompress, or that decompressed past `max_decoding_message_size`.
const DECOMPRESSING: &str = "Error decompressing:";

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

impl<S, RequestBody> Service<Request<RequestBody>> for Guard<S>
where
    S: Service<Request<RequestBody>, Response = Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
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

fn limit_status(response: Response<Body>) -> Response<Body> {
    let (mut parts, body) = response.into_parts();
    rewrite_refusal(&mut parts.headers);
    Response::from_parts(parts, Body::new(LimitTrailers { inner: body }))
}

/// Rewrites tonic's refusal of a request's frames in `headers`, if that
/// is what they carry; any other status stays as it is.
fn rewrite_refusal(headers: &mut HeaderMap) {
    let Some(status) = Status::from_header_map(headers) else {
        return;
    };
    let Some(contract) = contract_status(&status) else {
        return;
    };
    let mut rewritten = headers.clone();
    // `add_header` fails only on a message that is not a header value,
    // which percent-encoding rules out; keep tonic's status if it does.
    if contract.add_header(&mut rewritten).is_ok() {
        *headers = rewritten;
    }
}

/// The contract's status for one of tonic's refusals, `None` for any other.
fn contract_status(status: &Status) -> Option<Status> {
    let message = status.message();
    match status.code() {
        tonic::Code::OutOfRange if message.contains(TOO_LARGE) => Some(Status::resource_exhausted(
            format!("a request message is over the limit set by `--max-message-size`: {message}"),
        )),
        tonic::Code::ResourceExhausted if message.starts_with(DECOMPRESSING) => {
            Some(Status::resource_exhausted(format!(
                "a compressed request message decompresses past the limit set by \
                 `--max-message-size`: {message}"
            )))
        }
        tonic::Code::Internal if message.starts_with(DECOMPRESSING) => {
            Some(Status::invalid_argument(format!(
                "a compressed request message is corrupt: {message}"
            )))
        }
        _ => None,
    }
}

/// A response body whose trailers get the same rewrite as the headers.
struct LimitTrailers {
    inner: Body,
}

impl http_body::Body for LimitTrailers {
    type Data = tonic::codegen::Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(mut frame))) = polled {
            if let Some(trailers) = frame.trailers_mut() {
                rewrite_refusal(trailers);
            }
            return Poll::Ready(Some(Ok(frame)));
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body::Body as _;
    use tonic::Code;

    fn oversized() -> Status {
        Status::out_of_range(
            "Error, decoded message length too large: found 70000000 bytes, the limit is: 16777216 bytes",
        )
    }

    #[tokio::test]
    async fn a_panicking_handler_fails_its_call_with_internal() {
        let mut guarded = GuardLayer.layer(tower::service_fn(|_: Request<()>| async {
            if true {
                panic!("a bug");
            }
            Ok::<Response<Body>, std::convert::Infallible>(Response::default())
        }));
        let response = guarded.call(Request::new(())).await.expect("a response");
        let status = Status::from_header_map(response.headers()).expect("a status");
        assert_eq!(status.code(), Code::Internal);
    }

    #[tokio::test]
    async fn oversized_messages_become_resource_exhausted_naming_the_flag() {
        let mut guarded = GuardLayer.layer(tower::service_fn(|_: Request<()>| async {
            Ok::<_, std::convert::Infallible>(oversized().into_http::<Body>())
        }));
        let response = guarded.call(Request::new(())).await.expect("a response");
        let status = Status::from_header_map(response.headers()).expect("a status");
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert!(status.message().contains("`--max-message-size`"));
        assert!(status.message().contains("found 70000000 bytes"));
    }

    #[tokio::test]
    async fn oversized_messages_in_the_trailers_become_resource_exhausted() {
        let mut guarded = GuardLayer.layer(tower::service_fn(|_: Request<()>| async {
            let mut trailers = HeaderMap::new();
            oversized().add_header(&mut trailers).expect("headers");
            Ok::<_, std::convert::Infallible>(Response::new(Body::new(TrailersOnly(Some(
                trailers,
            )))))
        }));
        let response = guarded.call(Request::new(())).await.expect("a response");
        let mut body = response.into_body();
        let frame = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx))
            .await
            .expect("a frame")
            .expect("no error");
        let trailers = frame.into_trailers().expect("trailers");
        let status = Status::from_header_map(&trailers).expect("a status");
        assert_eq!(status.code(), Code::ResourceExhausted);
    }

    /// A body that is only trailers, as a stream that failed at once.
    struct TrailersOnly(Option<HeaderMap>);

    impl http_body::Body for TrailersOnly {
        type Data = tonic::codegen::Bytes;
        type Error = Status;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
            Poll::Ready(self.0.take().map(|trailers| Ok(Frame::trailers(trailers))))
        }
    }

    #[tokio::test]
    async fn decompression_failures_become_contract_codes() {
        let cases = [
            (
                Status::resource_exhausted(
                    "Error decompressing: size limit, of 4194304 bytes, exceeded while decompressing message",
                ),
                Code::ResourceExhausted,
                "`--max-message-size`",
            ),
            (
                Status::internal(
                    "Error decompressing: corrupt deflate stream, while sending request",
                ),
                Code::InvalidArgument,
                "corrupt deflate stream",
            ),
        ];
        for (refusal, code, says) in cases {
            let mut guarded = GuardLayer.layer(tower::service_fn(move |_: Request<()>| {
                let refusal = refusal.clone();
                async move { Ok::<_, std::convert::Infallible>(refusal.into_http::<Body>()) }
            }));
            let response = guarded.call(Request::new(())).await.expect("a response");
            let status = Status::from_header_map(response.headers()).expect("a status");
            assert_eq!(status.code(), code);
            assert!(status.message().contains(says), "{status:?}");
        }
    }

    #[tokio::test]
    async fn other_internal_statuses_stay() {
        let mut guarded = GuardLayer.layer(tower::service_fn(|_: Request<()>| async {
            Ok::<_, std::convert::Infallible>(Status::internal("a bug").into_http::<Body>())
        }));
        let response = guarded.call(Request::new(())).await.expect("a response");
        let status = Status::from_header_map(response.headers()).expect("a status");
        assert_eq!(status.code(), Code::Internal);
        assert_eq!(status.message(), "a bug");
    }

    #[tokio::test]
    async fn other_out_of_range_statuses_stay() {
        let mut guarded = GuardLayer.layer(tower::service_fn(|_: Request<()>| async {
            Ok::<_, std::convert::Infallible>(Status::out_of_range("cursor").into_http::<Body>())
        }));
        let response = guarded.call(Request::new(())).await.expect("a response");
        let status = Status::from_header_map(response.headers()).expect("a status");
        assert_eq!(status.code(), Code::OutOfRange);
        assert_eq!(status.message(), "cursor");
    }
}
