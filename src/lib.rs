//! sessionlog: sessions of structured log entries over gRPC, stored in sled.
//!
//! ```text
//! gRPC clients, OTLP exporters ─► api ──┐   (tonic services)
//! browsers, curl -N ────────────► http ─┤   (axum)
//!                          otlp mapping ┤   each edge checks requests with edge
//!                                       ▼
//!                  sessions (the rules: lifecycle, seqs, dedupe, reads, events)
//!                      ├─► store (sled: a record tree, one log tree per session)
//!                      └─► fanout (progress signal, live window ─► followers)
//!        forward ─► reads the store, exports over OTLP (a client of its target)
//! ```
//!
//! The public surface: [`server`] (open a [`server::Server`] on listeners,
//! serve until a shutdown future), [`config`] (the `serve` flags),
//! [`client`] and [`tracing_layer`] (the Rust client), [`pb`] (the
//! contract's types), [`units`], and [`cli::main`] for the binary.
//! Everything else is private; tests and fuzz targets reach what they need
//! through `testing` (the `testing` feature).
//!
//! Private, along the data path:
//! - `api`: the gRPC edge, the only place tonic's services appear
//!   (`sessionlog.v1.SessionLog` and OTLP's `LogsService`).
//! - `http`: the HTTP read API, SSE streams and the web console.
//! - `otlp`: OpenTelemetry logs in (the intake) and the one mapping between
//!   OTLP records and sessions, both ways.
//! - `edge`: what the edges share: one entry's and one session's rules,
//!   the in-place entry check, limits, tokens, stream counts, and the one
//!   choice of error code per domain error.
//! - `sessions`: the rules. `store`: sled trees, keys, codecs, filtered
//!   scans, flush policy. `fanout`: a progress signal and a live window of
//!   the last batches per followed session; followers take live batches
//!   from the window, read history from the store, then wait for it.
//! - `forward`: entries out to OTLP endpoints, resumable from cursors.
//! - `metrics`: instruments every layer reports to, and `/metrics`.
//! - `connections`: how every listener accepts: caps, deadlines, keepalive.
//! - `display`: contract values as text and JSON (the CLI and HTTP share it).

// Built without `testing`, what only the tests reach (through `testing`)
// looks unreachable or unused. Lints are checked with it: the crate's
// tests, and so clippy's `--all-targets`, build it so.
#![cfg_attr(
    not(feature = "testing"),
    allow(unreachable_pub, dead_code, unused_imports)
)]

mod api;
pub mod cli;
pub mod client;
pub mod config;
mod connections;
mod display;
mod edge;
mod fanout;
mod forward;
mod http;
mod metrics;
mod otlp;
pub mod pb;
pub mod server;
mod sessions;
mod store;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tracing_layer;
pub mod units;
