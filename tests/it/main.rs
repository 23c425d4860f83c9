//! The in-process suite: each module starts the server inside the test
//! process (`common::TestServer`) and talks to it through the generated
//! client. One binary, so the suite links once; a test that measures the
//! whole process runs alone in a process of its own
//! (`common::own_process`).

mod common;

mod append_stream;
mod auth;
mod budget;
mod client;
mod compression;
mod concurrency;
mod connections;
mod dedupe;
mod disk_full;
mod durability;
mod follow;
mod follow_fanout;
mod follow_model;
mod follow_slow;
mod forward;
mod hostile;
mod http;
mod http_search;
mod layout;
mod lifecycle;
mod liveness;
mod log_check;
mod model;
mod otlp;
mod otlp_http;
mod paging;
mod restart;
mod retention;
mod search;
mod standard_services;
mod tls;
mod tracing_layer;
mod unix_socket;
mod watch;
