//! The HTTP edge (`--http-listen`): a JSON read API under `/api/v1`, SSE
//! follow and watch streams, the web console at `/`, and OTLP/HTTP logs in
//! at `/v1/logs` (through the `otlp` edge's intake). A third edge
//! beside `api` (gRPC) and `otlp`: it calls `sessions` as they do and
//! shares their validation, limits, tokens and stream counts (`edge`).
//! Errors become HTTP statuses in exactly one place (`error`). No tonic
//! here; OTLP's generated messages only in `otlp`, which decodes them.

mod assets;
mod auth;
mod error;
mod export;
mod host;
mod json;
mod otlp;
pub(crate) mod query;
mod routes;
mod search;
mod sse;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};

use crate::edge::{Limits, StreamCounter, TokenAuth};
use crate::otlp::OtlpIntake;
use crate::sessions::SessionManager;
pub(crate) use host::AllowedHosts;

/// How often an idle SSE stream gets a `:keep-alive` comment.
pub(crate) const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(15);

/// What the HTTP handlers share.
#[derive(Debug, Clone)]
pub(crate) struct HttpEdge {
    sessions: SessionManager,
    limits: Arc<Limits>,
    streams: Arc<StreamCounter>,
    auth: TokenAuth,
    keep_alive: Duration,
    allowed_hosts: AllowedHosts,
    /// `POST /v1/logs` goes here; without it the route answers 404.
    otlp: Option<OtlpIntake>,
}

impl HttpEdge {
    /// The edge over `sessions`, with the limits, stream count and tokens
    /// the gRPC edge uses.
    pub(crate) fn new(
        sessions: SessionManager,
        limits: Arc<Limits>,
        streams: Arc<StreamCounter>,
        auth: TokenAuth,
    ) -> Self {
        Self {
            sessions,
            limits,
            streams,
            auth,
            keep_alive: DEFAULT_KEEP_ALIVE,
            allowed_hosts: AllowedHosts::new(None, &[]),
            otlp: None,
        }
    }

    /// Idle SSE streams get a comment this often.
    pub(crate) fn with_keep_alive(mut self, keep_alive: Duration) -> Self {
        self.keep_alive = keep_alive;
        self
    }

    /// Without tokens, requests must name one of `allowed_hosts` in `Host`.
    pub(crate) fn with_allowed_hosts(mut self, allowed_hosts: AllowedHosts) -> Self {
        self.allowed_hosts = allowed_hosts;
        self
    }

    /// OTLP/HTTP exports (`POST /v1/logs`) go to `intake`, the gRPC
    /// `LogsService`'s own.
    pub(crate) fn with_otlp(mut self, intake: OtlpIntake) -> Self {
        self.otlp = Some(intake);
        self
    }

    /// Every route: the console's files without a token, `/api/...` with
    /// one when the server has tokens; without tokens, every request must
    /// name an allowed host.
    pub(crate) fn router(self) -> Router {
        let auth = self.auth.clone();
        let hosts = (self.allowed_hosts.clone(), auth.clone());
        let reads = Router::new()
            .route("/api/v1/sessions", get(routes::list))
            .route("/api/v1/sessions/{id}", get(routes::get))
            .route("/api/v1/sessions/{id}/entries", get(routes::entries))
            .route("/api/v1/search", get(search::search))
            .route_layer(from_fn_with_state(auth.clone(), auth::header_token));
        let streams = Router::new()
            .route("/api/v1/sessions/{id}/follow", get(sse::follow))
            .route("/api/v1/watch", get(sse::watch))
            // A download link cannot send a header: `?access_token=` too.
            .route("/api/v1/sessions/{id}/export", get(export::export))
            .route_layer(from_fn_with_state(auth, auth::header_or_query_token));
        Router::new()
            .route("/", get(assets::index))
            .route("/assets/console.js", get(assets::script))
            .route("/assets/console.css", get(assets::style))
            .route("/v1/logs", post(otlp::export))
            .merge(streams)
            .merge(reads)
            .fallback(routes::unknown_route)
            .layer(from_fn_with_state(hosts, host::check))
            .with_state(self)
    }
}
