//! `grpc.health.v1.Health`: tonic-health's service, except that its
//! `Watch` streams end at shutdown like `Follow` and `WatchSessions`.
//! tonic-health's own never end while the process lives, so one open
//! `Watch` (a load balancer's, a sidecar's) held the drain for the whole
//! grace period and made every shutdown unclean. A watcher sees
//! `NOT_SERVING` before its stream ends, then `UNAVAILABLE`, which health
//! clients answer by watching again elsewhere or later.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::{Stream, StreamExt};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tonic::{Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_health::server::{HealthReporter, HealthService};

/// What a `Watch` stream's last status says.
const SHUTTING_DOWN: &str = "the server is shutting down; retry against another instance or later";

/// The health service: tonic-health's statuses, set through `reporter`;
/// `Watch` streams end once `shutdown` is cancelled.
pub(crate) fn health_service(
    reporter: HealthReporter,
    shutdown: CancellationToken,
) -> HealthServer<EndingHealth> {
    HealthServer::new(EndingHealth {
        inner: HealthService::from_health_reporter(reporter),
        shutdown,
    })
}

/// See the module doc.
#[derive(Debug)]
pub(crate) struct EndingHealth {
    inner: HealthService,
    shutdown: CancellationToken,
}

type Watch = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Health for EndingHealth {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        self.inner.check(request).await
    }

    type WatchStream = Watch;

    async fn watch(&self, request: Request<HealthCheckRequest>) -> Result<Response<Watch>, Status> {
        if self.shutdown.is_cancelled() {
            return Err(Status::unavailable(SHUTTING_DOWN));
        }
        let statuses = self.inner.watch(request).await?.into_inner();
        Ok(Response::new(ending(statuses, self.shutdown.clone())))
    }
}

/// `statuses` until `shutdown`; then `NOT_SERVING` unless that was the
/// last status sent, and `UNAVAILABLE`. A stream that ends by itself (its
/// service's status was cleared) just ends.
fn ending<S>(statuses: S, shutdown: CancellationToken) -> Watch
where
    S: Stream<Item = Result<HealthCheckResponse, Status>> + Send + Unpin + 'static,
{
    Box::pin(EndingWatch {
        statuses,
        shutdown: Box::pin(shutdown.cancelled_owned()),
        last: None,
        stage: Stage::Open,
    })
}

struct EndingWatch<S> {
    statuses: S,
    shutdown: Pin<Box<WaitForCancellationFutureOwned>>,
    /// The last status sent.
    last: Option<i32>,
    stage: Stage,
}

enum Stage {
    Open,
    /// Shutdown began: `NOT_SERVING` (unless sent last), then the status.
    Closing,
    Done,
}

impl<S> Stream for EndingWatch<S>
where
    S: Stream<Item = Result<HealthCheckResponse, Status>> + Unpin,
{
    type Item = Result<HealthCheckResponse, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            match this.stage {
                Stage::Open => match this.statuses.poll_next_unpin(cx) {
                    Poll::Ready(Some(sent)) => {
                        if let Ok(response) = &sent {
                            this.last = Some(response.status);
                        }
                        return Poll::Ready(Some(sent));
                    }
                    Poll::Ready(None) => this.stage = Stage::Done,
                    Poll::Pending => {
                        if this.shutdown.as_mut().poll(cx).is_pending() {
                            return Poll::Pending;
                        }
                        this.stage = Stage::Closing;
                    }
                },
                Stage::Closing => {
                    let not_serving = ServingStatus::NotServing as i32;
                    if this.last != Some(not_serving) {
                        this.last = Some(not_serving);
                        return Poll::Ready(Some(Ok(HealthCheckResponse {
                            status: not_serving,
                        })));
                    }
                    this.stage = Stage::Done;
                    return Poll::Ready(Some(Err(Status::unavailable(SHUTTING_DOWN))));
                }
                Stage::Done => return Poll::Ready(None),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: ServingStatus) -> Result<HealthCheckResponse, Status> {
        Ok(HealthCheckResponse {
            status: status as i32,
        })
    }

    /// What a watch sends once shut down, after `sent` went out.
    async fn farewell(sent: Vec<ServingStatus>) -> (Vec<i32>, Option<tonic::Code>) {
        let count = sent.len();
        let statuses =
            futures::stream::iter(sent.into_iter().map(response)).chain(futures::stream::pending());
        let shutdown = CancellationToken::new();
        let mut watch = ending(Box::pin(statuses), shutdown.clone());
        for _ in 0..count {
            watch.next().await.expect("a status").expect("ok");
        }
        shutdown.cancel();
        let mut after = Vec::new();
        while let Some(item) = watch.next().await {
            match item {
                Ok(response) => after.push(response.status),
                Err(status) => {
                    assert!(watch.next().await.is_none(), "nothing after the status");
                    return (after, Some(status.code()));
                }
            }
        }
        (after, None)
    }

    #[tokio::test]
    async fn a_watcher_is_told_not_serving_once_then_unavailable() {
        let not_serving = ServingStatus::NotServing as i32;
        assert_eq!(
            farewell(vec![ServingStatus::Serving]).await,
            (vec![not_serving], Some(tonic::Code::Unavailable))
        );
        assert_eq!(
            farewell(vec![ServingStatus::Serving, ServingStatus::NotServing]).await,
            (vec![], Some(tonic::Code::Unavailable))
        );
    }

    #[tokio::test]
    async fn a_stream_that_ends_by_itself_just_ends() {
        let shutdown = CancellationToken::new();
        let statuses = futures::stream::iter([response(ServingStatus::Serving)]);
        let mut watch = ending(statuses, shutdown);
        assert!(watch.next().await.is_some());
        assert!(watch.next().await.is_none());
    }
}
