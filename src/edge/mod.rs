//! What every edge shares (gRPC in `api`, OTLP in `otlp`, HTTP/SSE in
//! `http`): request validation and limits, the contract's entry and session
//! messages checked into the rules' types and back, bearer tokens, the
//! count of open streams, and the one choice of error code per domain
//! error. Nothing here knows a transport: the contract's messages (`pb`)
//! appear, tonic's services and axum do not.

pub mod entry;
pub mod error;
pub mod failure;
pub mod limits;
pub mod raw_entry;
pub mod request;
pub mod session;
pub mod streams;
pub mod tokens;

pub use error::RequestError;
pub use failure::{Code, Failure};
pub use limits::Limits;
pub use streams::{StreamCounter, StreamPermit};
pub use tokens::TokenAuth;
