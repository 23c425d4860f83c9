//! The in-place check of an appended entry's bytes (`raw_entry::vouch`),
//! which decides whether the store keeps a client's bytes as they came:
//! whatever it vouches for must decode, pass `stored_entry`, and read back
//! as the entry stored from its decoded fields (`testing::vouch_entry`
//! panics otherwise). Any panic is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sessionlog::testing::vouch_entry(data);
});
