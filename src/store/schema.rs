//! The on-disk record types, generated from `proto/sessionlog/storage/v1`.
//! Only the store and the rules above it use them; the API converts.
#![allow(missing_docs, unreachable_pub)]
// `StoredBlock` documents the block format, which `block` writes by hand
// and only its tests decode as the message.
#![cfg_attr(not(test), allow(dead_code))]

include!(concat!(env!("OUT_DIR"), "/sessionlog.storage.v1.rs"));
