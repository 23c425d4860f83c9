//! The HTTP edge's query parsers on any text: `{id}?{query}`, and after a
//! first newline a `Last-Event-ID` value (a header cannot hold one), run
//! through every route's parser. Any panic is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &str| {
    let (path_and_query, last_event_id) = match input.split_once('\n') {
        Some((path_and_query, last_event_id)) => (path_and_query, Some(last_event_id)),
        None => (input, None),
    };
    sessionlog::testing::http_query(path_and_query, last_event_id);
});
