//! The gRPC edge: the only place tonic and `pb` types appear. Requests are
//! validated and converted here, the rules are called, and errors become
//! statuses in exactly one place (`status`).

mod convert;
mod service;
mod status;

pub use convert::{MAX_BATCH_ENTRIES, MAX_BATCH_ID_LEN, RequestError};
pub use service::SessionLogService;
