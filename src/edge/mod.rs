//! What every edge shares (gRPC in `api`, OTLP in `otlp`, HTTP/SSE in
//! `http`): request validation and limits, bearer tokens, the count of open
//! streams, and the one choice of error code per domain error. Nothing here
//! knows a protocol: no tonic, no axum, no generated wire types.

pub mod failure;
pub mod limits;
pub mod request;
pub mod streams;
pub mod tokens;

pub use failure::{Code, Failure};
pub use limits::Limits;
pub use request::RequestError;
pub use streams::{StreamCounter, StreamPermit};
pub use tokens::TokenAuth;
