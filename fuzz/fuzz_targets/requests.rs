//! What a hostile gRPC client controls: the same bytes decoded as every
//! request message and checked as the server checks it, and as a stored
//! entry and a stored log value, decoded as the store reads them back.
//! Any panic is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sessionlog::testing;

fuzz_target!(|data: &[u8]| {
    testing::append_request(data);
    testing::start_session_request(data);
    testing::read_request(data);
    testing::follow_request(data);
    testing::list_request(data);
    testing::watch_request(data);
    testing::decode_stored_entry(data);
    testing::decode_stored_value(data);
});
