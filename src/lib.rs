//! sessionlog: sessions of structured log entries over gRPC, stored in sled.
//!
//! ```text
//! client ─► api (tonic edge: convert, validate, map errors)
//!             └─► sessions (rules: lifecycle, seqs, dedupe, reads, events)
//!                   ├─► store (sled: a record tree, one log tree per session)
//!                   └─► follow (progress signal ─► followers read the store)
//! ```
//!
//! - [`pb`]: generated wire types.
//! - [`api`]: the gRPC service; the only place tonic and `pb` appear.
//! - [`otlp`]: OpenTelemetry logs in, a second edge beside `api`.
//! - [`http`]: the HTTP read API, SSE streams and the web console, a third
//!   edge.
//! - [`edge`]: what the edges share: validation, limits, tokens, stream
//!   counts, and the one choice of error code per domain error.
//! - [`forward`]: entries out to OTLP endpoints, resumable from cursors.
//! - [`sessions`]: the rules.
//! - [`store`]: sled trees, keys, codecs, filtered scans, flush policy.
//! - [`follow`]: fan-out to followers: a progress signal per followed
//!   session; followers read the store, then wait for the signal.
//! - [`metrics`]: Prometheus instruments every layer reports to, and the
//!   `/metrics` HTTP server.
//! - [`server`]: wires the layers on listeners and owns shutdown.
//! - [`config`]: `serve` settings; [`units`]: durations and sizes.
//! - [`render`]: contract values as text and JSON (CLI and HTTP share it).
//! - [`client`], [`cli`]: the Rust client and the command line.
//! - [`tracing_layer`]: ships a Rust program's `tracing` events into a session.
//! - `testing` (feature `testing`): internals for the fuzz targets and tests.

pub mod api;
pub mod cli;
pub mod client;
pub mod config;
pub mod edge;
pub mod follow;
pub mod forward;
pub mod http;
pub mod metrics;
pub mod otlp;
pub mod pb;
pub mod render;
pub mod server;
pub mod sessions;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tracing_layer;
pub mod units;
