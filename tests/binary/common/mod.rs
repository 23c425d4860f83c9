//! Helpers of the real-binary suite: child processes of `sessionlog`, and
//! the in-process `TestServer` and calls shared with the in-process suite,
//! for tests whose child is a client.

#[path = "../../shared/access.rs"]
pub(crate) mod access;
#[path = "../../shared/http.rs"]
#[expect(
    dead_code,
    reason = "this suite reads whole answers from the metrics listener; SSE and headers are the in-process suite's"
)]
pub(crate) mod http;
pub(crate) mod ledger;
pub(crate) mod process;
#[path = "../../shared/rpc.rs"]
mod rpc;
#[path = "../../shared/test_server.rs"]
#[expect(
    dead_code,
    reason = "this suite starts plain servers; the white-box parts (session rules, HTTP edge, chosen data dirs) are the in-process suite's"
)]
mod test_server;

pub(crate) use rpc::{append, end_session, entry, get_session, read_all, start_session};
pub(crate) use test_server::{Client, TestServer};
