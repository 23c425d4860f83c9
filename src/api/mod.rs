//! The gRPC edge: the only place tonic's services appear. Requests are
//! converted here (with the checks every edge shares in `edge`), the rules
//! are called, and errors become statuses in exactly one place (`status`).

mod auth;
pub(crate) mod codec;
mod convert;
mod guard;
mod service;
mod status;
pub(crate) mod wire;

pub(crate) use crate::edge::TokenAuth;
pub(crate) use guard::GuardLayer;
pub(crate) use service::SessionLogService;
