//! The generated wire types and service code of `sessionlog.v1`, and the
//! OTLP logs service stub (its messages come from `opentelemetry-proto`).
#![allow(missing_docs, unreachable_pub, clippy::all)]

include!(concat!(env!("OUT_DIR"), "/sessionlog.v1.rs"));

/// The server side of `sessionlog.v1.SessionLog`, whose `Follow` streams
/// `api::wire::EncodedFollowResponse` (see `build.rs`).
mod server {
    include!(concat!(env!("OUT_DIR"), "/server/sessionlog.v1.rs"));
}
pub use server::session_log_server;

/// The encoded descriptor set of every proto, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/sessionlog_descriptor.bin"));

/// `opentelemetry.proto.collector.logs.v1.LogsService`, with our codec.
pub mod otlp_logs {
    include!(concat!(
        env!("OUT_DIR"),
        "/opentelemetry.proto.collector.logs.v1.LogsService.rs"
    ));
}

/// The server side of `LogsService` that the OTLP intake serves: its
/// `Export` takes the request undecoded (`api::wire::EncodedExport`, see
/// `build.rs`).
pub(crate) mod otlp_intake {
    include!(concat!(
        env!("OUT_DIR"),
        "/server/opentelemetry.proto.collector.logs.v1.LogsService.rs"
    ));
}
