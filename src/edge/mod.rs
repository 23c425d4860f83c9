//! What every edge shares (gRPC in `api`, OTLP in `otlp`, HTTP/SSE in
//! `http`): request validation and limits, the contract's entry and session
//! messages checked into the rules' types and back, the byte budget of a
//! response, bearer tokens, the
//! count of open streams, and the one choice of error code per domain
//! error. Nothing here knows a transport: the contract's messages (`pb`)
//! appear, tonic's services and axum do not.

pub(crate) mod budget;
pub(crate) mod entry;
pub(crate) mod error;
pub(crate) mod failure;
pub(crate) mod limits;
pub(crate) mod raw_entry;
pub(crate) mod request;
pub(crate) mod session;
pub(crate) mod streams;
pub(crate) mod tokens;

pub(crate) use error::RequestError;
pub(crate) use failure::{Code, Failure};
pub use limits::Limits;
pub(crate) use streams::StreamCounter;
pub(crate) use tokens::TokenAuth;
