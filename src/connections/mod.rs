//! How every listener accepts: at most `max_connections` open connections
//! per listener (more are closed as soon as they are accepted, never
//! queued), a deadline for a new connection's first bytes (the HTTP/2
//! preface, or the start of an HTTP/1 request), TCP keepalive on accepted
//! sockets, and an accept loop that backs off instead of spinning when the
//! process is out of descriptors. `serve_http` serves an axum router over
//! such connections with a header-read timeout and HTTP/2 keepalive pings.
//! Nothing here knows the layers above; `server` wires it.

mod guarded;
mod http;
mod limit;

use std::time::Duration;

pub(crate) use guarded::{Guarded, incoming};
pub(crate) use http::serve_http;
pub(crate) use limit::{ListenerGate, default_max_connections, raise_open_file_limit};

/// How connections are accepted and kept, for every listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionSettings {
    /// The most open connections on one listener; `None`: derived from the
    /// open-file limit, so that connections on all listeners together leave
    /// descriptors for the store.
    pub max_connections: Option<usize>,
    /// How long a new connection has to send its first bytes (the HTTP/2
    /// preface) and, with TLS, to finish the handshake.
    pub handshake_timeout: Duration,
    /// How long an HTTP/1 client has to send a request's headers, counted
    /// from when the server starts waiting for them (also between
    /// requests on a kept-alive connection).
    pub header_read_timeout: Duration,
    /// Idle time before TCP keepalive probes start; `None`: no probes.
    pub tcp_keepalive: Option<Duration>,
    /// How often an HTTP/2 connection is pinged; `None`: no pings.
    pub http2_keepalive_interval: Option<Duration>,
    /// How long a ping may go unanswered before its connection is closed.
    pub http2_keepalive_timeout: Duration,
}

impl Default for ConnectionSettings {
    fn default() -> Self {
        Self {
            max_connections: None,
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            tcp_keepalive: Some(Duration::from_secs(60)),
            http2_keepalive_interval: Some(Duration::from_secs(60)),
            http2_keepalive_timeout: Duration::from_secs(20),
        }
    }
}
