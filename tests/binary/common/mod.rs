//! Helpers of the real-binary suite; `TestServer` and the RPC helpers are
//! the in-process suite's.

#[path = "../../it/common/mod.rs"]
mod shared;
pub(crate) use shared::*;

pub(crate) mod process;
