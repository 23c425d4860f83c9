//! The on-disk record types, generated from `proto/sessionlog/storage/v1`.
//! Only the store and the rules above it use them; the API converts.
#![allow(missing_docs, unreachable_pub)]

include!(concat!(env!("OUT_DIR"), "/sessionlog.storage.v1.rs"));
