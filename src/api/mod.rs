//! The gRPC edge: the only place tonic's services appear. Requests are
//! converted here (with the checks every edge shares in `edge`), the rules
//! are called, and errors become statuses in exactly one place (`status`).

mod auth;
pub mod codec;
pub(crate) mod convert;
mod guard;
mod service;
mod status;
pub mod wire;

pub use crate::edge::{Limits, RequestError, TokenAuth};
pub use guard::GuardLayer;
pub use service::SessionLogService;
