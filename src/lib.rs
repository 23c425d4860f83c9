//! sessionlog: sessions of structured log entries over gRPC, stored in sled.
//!
//! ```text
//! client ─► api (tonic edge: convert, validate, map errors)
//!             └─► sessions (rules: lifecycle, seqs, dedupe, reads)
//!                   └─► store (sled: a record tree, one log tree per session)
//! ```
//!
//! - [`pb`]: generated wire types.
//! - [`api`]: the gRPC service; the only place tonic and `pb` appear.
//! - [`sessions`]: the rules.
//! - [`store`]: sled trees, keys, codecs, flush policy.
//! - [`server`]: wires the layers on listeners and owns shutdown.
//! - [`config`]: `serve` settings; [`units`]: durations and sizes.
//! - [`client`], [`cli`]: the Rust client and the command line.

pub mod api;
pub mod cli;
pub mod client;
pub mod config;
pub mod pb;
pub mod server;
pub mod sessions;
pub mod store;
pub mod units;
