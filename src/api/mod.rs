//! The gRPC edge: the only place tonic and `pb` types appear. Requests are
//! validated and converted here, the rules are called, and errors become
//! statuses in exactly one place (`status`).

mod auth;
pub mod codec;
pub mod convert;
mod guard;
mod limits;
mod service;
mod status;
mod streams;
pub mod wire;

pub use auth::TokenAuth;
pub use convert::{MAX_BATCH_ID_LEN, RequestError};
pub use guard::GuardLayer;
pub use limits::Limits;
pub use service::SessionLogService;
