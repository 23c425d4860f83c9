//! The gRPC edge: the only place tonic's services appear
//! (`sessionlog.v1.SessionLog` in `service`, OTLP's `LogsService` in
//! `otlp`, health's `Watch` ending at shutdown in `health`). Requests are
//! converted here (with the checks every edge shares in `edge`), the rules
//! are called, and errors become statuses in exactly one place (`status`).

mod auth;
pub(crate) mod codec;
pub(crate) mod convert;
mod guard;
mod health;
mod otlp;
mod service;
mod status;
pub(crate) mod wire;

pub(crate) use crate::edge::TokenAuth;
pub(crate) use guard::GuardLayer;
pub(crate) use health::health_service;
pub(crate) use otlp::OtlpService;
pub(crate) use service::SessionLogService;
