//! Helpers of the real-binary suite: child processes of `sessionlog`, and
//! the in-process `TestServer` and calls shared with the in-process suite,
//! for tests whose child is a client.

#[path = "../../shared/access.rs"]
pub(crate) mod access;
pub(crate) mod process;
#[path = "../../shared/rpc.rs"]
mod rpc;
// This suite starts it as a plain server; the in-process suite also uses
// the white-box parts (the session rules, the HTTP edge, chosen data dirs).
#[path = "../../shared/test_server.rs"]
#[expect(
    dead_code,
    reason = "white-box parts of the shared TestServer only the in-process suite uses"
)]
mod test_server;

pub(crate) use rpc::{append, end_session, entry, get_session, read_all, start_session};
pub(crate) use test_server::{Client, TestServer};
