//! The gRPC edge: the only place tonic and `pb` types appear. Requests are
//! validated and converted here, the rules are called, and errors become
//! statuses in exactly one place (`status`).

mod auth;
pub mod codec;
pub mod convert;
mod guard;
mod raw_entry;
mod service;
mod status;
pub mod wire;

pub use crate::edge::{Limits, RequestError, TokenAuth};
pub use convert::MAX_BATCH_ID_LEN;
pub use guard::GuardLayer;
pub use service::SessionLogService;
