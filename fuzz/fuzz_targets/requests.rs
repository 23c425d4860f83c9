//! Fuzzes what a hostile client controls: request bytes decoded as every
//! request message and validated exactly as the server does, and stored
//! entry bytes decoded as the store does. Any panic is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use sessionlog::api::{Limits, convert};
use sessionlog::pb;

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    if let Ok(request) = pb::AppendRequest::decode(data) {
        let _ = convert::append_batch(request, &limits);
    }
    if let Ok(request) = pb::StartSessionRequest::decode(data) {
        let _ = convert::new_session(request, &limits);
    }
    if let Ok(request) = pb::ReadRequest::decode(data) {
        let _ = convert::read_query(request, &limits);
    }
    if let Ok(request) = pb::FollowRequest::decode(data) {
        let _ = convert::follow_query(request, &limits);
    }
    if let Ok(request) = pb::ListSessionsRequest::decode(data) {
        let _ = convert::list_query(request, &limits);
    }
    if let Ok(request) = pb::WatchSessionsRequest::decode(data) {
        let _ = convert::watch_query(request, &limits);
    }
    let _ = sessionlog::store::decode_entry(data);
});
