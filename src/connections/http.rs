//! An axum router served over guarded connections, HTTP/1.1 and HTTP/2
//! (prior knowledge), in place of `axum::serve`, which sets neither a
//! header-read timeout nor keepalive pings.

use std::io;
use std::pin::pin;

use axum::Router;
use futures::{Stream, StreamExt};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{ConnectionSettings, Guarded};

/// Serves `router` on the connections of `incoming` until `stop`; then
/// stops accepting (`incoming` is dropped, closing its listener), asks
/// every connection to finish (idle ones close, requests in flight
/// complete) and returns once they all have. The connections are tasks of
/// this future's own: aborting it (a drain that ran out of time) aborts
/// them too, so none outlives the server.
pub(crate) async fn serve_http<IO>(
    incoming: impl Stream<Item = io::Result<Guarded<IO>>> + Send,
    router: Router,
    settings: &ConnectionSettings,
    stop: CancellationToken,
) -> io::Result<()>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(settings.http2_keepalive_interval)
        .keep_alive_timeout(settings.http2_keepalive_timeout);
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    {
        let mut incoming = pin!(incoming);
        loop {
            let io = tokio::select! {
                () = stop.cancelled() => break,
                next = incoming.next() => match next {
                    Some(Ok(io)) => io,
                    Some(Err(_)) => continue,
                    None => break,
                },
            };
            let service = TowerToHyperService::new(router.clone());
            let connection = builder
                .serve_connection(TokioIo::new(io), service)
                .into_owned();
            let connection = graceful.watch(connection);
            // Reap the finished, so the set holds only open connections.
            while connections.try_join_next().is_some() {}
            connections.spawn(async move {
                if let Err(err) = connection.await {
                    tracing::debug!(error = %err, "an http connection ended with an error");
                }
            });
        }
    }
    graceful.shutdown().await;
    connections.join_all().await;
    Ok(())
}
