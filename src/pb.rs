//! The generated wire types and service code of `sessionlog.v1`, nothing else.
#![allow(missing_docs, unreachable_pub, clippy::all)]

include!(concat!(env!("OUT_DIR"), "/sessionlog.v1.rs"));

/// The encoded descriptor set of every proto, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/sessionlog_descriptor.bin"));
