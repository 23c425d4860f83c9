//! The `--metrics-listen` HTTP server: `GET /metrics` (OpenMetrics text)
//! and `GET /healthz` (200 while serving, 503 once shutdown began). It
//! reads state through a snapshot function, so it depends on no layer.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::Snapshot;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type SnapshotFn = Arc<dyn Fn() -> Snapshot + Send + Sync>;

#[derive(Clone)]
struct Shared {
    snapshot: SnapshotFn,
    stopping: CancellationToken,
}

/// Serves until `stop` is cancelled; `/healthz` fails from when `stopping`
/// is (shutdown began) so load balancers move away while calls drain.
/// `snapshot` runs on a blocking thread at each scrape (it may read the disk).
pub(crate) async fn serve(
    listener: TcpListener,
    snapshot: impl Fn() -> Snapshot + Send + Sync + 'static,
    stopping: CancellationToken,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let shared = Shared {
        snapshot: Arc::new(snapshot),
        stopping,
    };
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .with_state(shared);
    axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
}

async fn metrics(State(shared): State<Shared>) -> impl IntoResponse {
    let snapshot = shared.snapshot.clone();
    match tokio::task::spawn_blocking(move || super::get().render(&snapshot())).await {
        Ok(text) => (StatusCode::OK, [(header::CONTENT_TYPE, OPENMETRICS)], text),
        Err(err) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("cannot read the metrics: {err}\n"),
        ),
    }
}

async fn healthz(State(shared): State<Shared>) -> impl IntoResponse {
    if shared.stopping.is_cancelled() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
    } else {
        (StatusCode::OK, "ok\n")
    }
}
