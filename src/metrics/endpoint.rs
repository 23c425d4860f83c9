//! The routes of the `--metrics-listen` HTTP server: `GET /metrics` (OpenMetrics text)
//! and `GET /healthz` (200 while serving; 503 once shutdown began, or while
//! the store takes no writes). It reads state through functions it is
//! given, so it depends on no layer.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use super::Snapshot;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type SnapshotFn = Arc<dyn Fn() -> Snapshot + Send + Sync>;
type TroubleFn = Arc<dyn Fn() -> Option<String> + Send + Sync>;

#[derive(Clone)]
struct Shared {
    snapshot: SnapshotFn,
    stopping: CancellationToken,
    trouble: TroubleFn,
}

/// The routes; `/healthz` fails from when `stopping` is cancelled
/// (shutdown began) so load balancers move away while calls drain, and
/// while `trouble` names a reason (a failed store: the same moments gRPC
/// health says NOT_SERVING). `snapshot` runs on a blocking thread at each
/// scrape (it may read the disk); `trouble` must not block.
pub(crate) fn router(
    snapshot: impl Fn() -> Snapshot + Send + Sync + 'static,
    stopping: CancellationToken,
    trouble: impl Fn() -> Option<String> + Send + Sync + 'static,
) -> Router {
    let shared = Shared {
        snapshot: Arc::new(snapshot),
        stopping,
        trouble: Arc::new(trouble),
    };
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .with_state(shared)
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
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting down\n".to_owned(),
        );
    }
    match (shared.trouble)() {
        Some(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")),
        None => (StatusCode::OK, "ok\n".to_owned()),
    }
}
