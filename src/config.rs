//! `sessionlog serve` settings. Every flag can also be set from the
//! environment as `SESSIONLOG_<FLAG>`; the doc comments are the `--help`.

use std::path::PathBuf;
use std::time::Duration;

use crate::edge::Limits;
use crate::http;
use crate::server::{ConnectionSettings, ForeignOwner, ListenAddr, ServerSettings, TlsFiles};
use crate::sessions::RetentionPolicy;
use crate::store::StoreOptions;
use crate::store::durability::FsyncPolicy;
use crate::units::{parse_duration, parse_size};

/// Flags of `sessionlog serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeConfig {
    /// Where to listen: TCP `host:port`, or `unix:/path/to.sock`. Repeatable;
    /// the environment variable takes a comma-separated list.
    #[arg(
        long,
        env = "SESSIONLOG_LISTEN",
        value_delimiter = ',',
        default_value = "127.0.0.1:50051"
    )]
    pub listen: Vec<ListenAddr>,

    /// Serve Prometheus `/metrics` and `/healthz` over HTTP on this TCP
    /// `host:port` (off when unset).
    #[arg(long, env = "SESSIONLOG_METRICS_LISTEN")]
    pub metrics_listen: Option<std::net::SocketAddr>,

    /// Serve the web console at `/` and the HTTP read API (JSON, and SSE
    /// follow/watch streams) under `/api/v1` on this TCP `host:port` (off
    /// when unset). Same tokens and limits as gRPC.
    #[arg(long, env = "SESSIONLOG_HTTP_LISTEN")]
    pub http_listen: Option<std::net::SocketAddr>,

    /// The sled database directory (created owner-only when missing).
    #[arg(long, env = "SESSIONLOG_DATA_DIR", default_value = "./sessionlog-data")]
    pub data_dir: PathBuf,

    /// Use a data dir owned by another user (refused otherwise). Its
    /// directories then get a default ACL so the owner can read and write
    /// every file this server creates there; without ACL support (or
    /// without the right to set one) the dir is refused all the same.
    #[arg(long, env = "SESSIONLOG_ALLOW_FOREIGN_STORE_OWNER")]
    pub allow_foreign_store_owner: bool,

    /// How long a flush may take: an append waiting on it (`--fsync
    /// always`) fails with UNAVAILABLE after that, and shutdown gives up on
    /// the final flush (and exits non-zero).
    #[arg(long, env = "SESSIONLOG_FLUSH_TIMEOUT", default_value = "30s", value_parser = parse_flush_timeout)]
    pub flush_timeout: Duration,

    /// When appends reach the disk: `always` (Append returns after its batch
    /// is flushed; concurrent appends share one flush), `interval` (flushed
    /// every --flush-interval) or `never` (left to sled and the OS).
    #[arg(long, env = "SESSIONLOG_FSYNC", value_enum, default_value_t = FsyncMode::Interval)]
    pub fsync: FsyncMode,

    /// The flush period for `--fsync interval`.
    #[arg(long, env = "SESSIONLOG_FLUSH_INTERVAL", default_value = "200ms", value_parser = parse_duration)]
    pub flush_interval: Duration,

    /// sled's page cache size.
    #[arg(long, env = "SESSIONLOG_CACHE_SIZE", default_value = "16MiB", value_parser = parse_size)]
    pub cache_size: u64,

    /// How long open streams may drain after SIGTERM or SIGINT.
    #[arg(long, env = "SESSIONLOG_SHUTDOWN_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,

    /// How often leases and client pids are checked.
    #[arg(long, env = "SESSIONLOG_LIVENESS_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub liveness_interval: Duration,

    /// Prune ended sessions that ended longer ago than this.
    #[arg(long, env = "SESSIONLOG_RETENTION_MAX_AGE", value_parser = parse_duration)]
    pub retention_max_age: Option<Duration>,

    /// Keep at most this many sessions (active ones are never pruned).
    #[arg(long, env = "SESSIONLOG_RETENTION_MAX_SESSIONS")]
    pub retention_max_sessions: Option<usize>,

    /// Prune the oldest ended sessions while all sessions' entries take more than this.
    #[arg(long, env = "SESSIONLOG_RETENTION_MAX_BYTES", value_parser = parse_size)]
    pub retention_max_bytes: Option<u64>,

    /// How often retention runs.
    #[arg(long, env = "SESSIONLOG_RETENTION_INTERVAL", default_value = "1m", value_parser = parse_duration)]
    pub retention_interval: Duration,

    /// Compress an active session's stored entries once this much of them
    /// is not compressed yet (ended sessions are compressed when they end).
    #[arg(long, env = "SESSIONLOG_SEAL_ACTIVE_AFTER", default_value = "1MiB", value_parser = parse_size)]
    pub seal_active_after: u64,

    /// A file of bearer tokens, one per line; when set, every call but
    /// health needs `authorization: Bearer <token>`. Re-read when it changes.
    #[arg(long, env = "SESSIONLOG_AUTH_TOKEN_FILE")]
    pub auth_token_file: Option<PathBuf>,

    /// The mode of Unix sockets, in octal.
    #[arg(long, env = "SESSIONLOG_UNIX_SOCKET_MODE", default_value = "660", value_parser = parse_mode)]
    pub unix_socket_mode: u32,

    /// The most open connections on each listener (gRPC, HTTP, metrics);
    /// more are closed as soon as they are accepted. Unset: the open-file
    /// limit (raised to its hard limit at start-up) less a reserve for the
    /// store, shared evenly by the listeners.
    #[arg(long, env = "SESSIONLOG_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,

    /// How long a new connection has to send its first bytes (the HTTP/2
    /// preface, an HTTP/1 request line) and, with TLS, to finish the
    /// handshake; then it is closed.
    #[arg(long, env = "SESSIONLOG_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub handshake_timeout: Duration,

    /// How long an HTTP/1 client of the HTTP listeners has to send a
    /// request's headers (also the idle time allowed between requests).
    #[arg(long, env = "SESSIONLOG_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,

    /// TCP keepalive: idle time before probes start on accepted TCP
    /// connections (`0s`: off). A peer that answers none of 4 probes, a
    /// quarter of this apart, is dropped.
    #[arg(long, env = "SESSIONLOG_TCP_KEEPALIVE", default_value = "60s", value_parser = parse_duration)]
    pub tcp_keepalive: Duration,

    /// How often the server pings each HTTP/2 connection (gRPC, and HTTP/2
    /// on the HTTP listeners); `0s`: no pings.
    #[arg(long, env = "SESSIONLOG_HTTP2_KEEPALIVE_INTERVAL", default_value = "60s", value_parser = parse_duration)]
    pub http2_keepalive_interval: Duration,

    /// How long a ping may go unanswered before its connection is closed.
    #[arg(long, env = "SESSIONLOG_HTTP2_KEEPALIVE_TIMEOUT", default_value = "20s", value_parser = parse_duration)]
    pub http2_keepalive_timeout: Duration,

    /// A host name HTTP requests may give in `Host` besides `localhost` and
    /// the HTTP listener's address (checked only without
    /// --auth-token-file: it stops DNS rebinding). Repeatable; the
    /// environment variable takes a comma-separated list.
    #[arg(
        long = "http-allowed-host",
        env = "SESSIONLOG_HTTP_ALLOWED_HOSTS",
        value_delimiter = ','
    )]
    pub http_allowed_hosts: Vec<String>,

    /// Serve TLS on TCP listeners with this PEM certificate (chain).
    #[arg(long, env = "SESSIONLOG_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The PEM private key of --tls-cert.
    #[arg(long, env = "SESSIONLOG_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Require client certificates signed by this PEM CA (mutual TLS).
    #[arg(long, env = "SESSIONLOG_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,

    /// The largest request message, decoded.
    #[arg(long, env = "SESSIONLOG_MAX_MESSAGE_SIZE", default_value = "16MiB", value_parser = parse_size)]
    pub max_message_size: u64,

    /// The most entries in one Append.
    #[arg(long, env = "SESSIONLOG_MAX_BATCH_ENTRIES", default_value_t = 10_000)]
    pub max_batch_entries: usize,

    /// The largest entry, encoded.
    #[arg(long, env = "SESSIONLOG_MAX_ENTRY_SIZE", default_value = "1MiB", value_parser = parse_size)]
    pub max_entry_size: u64,

    /// The longest name (app, mode, platform, job id, logger), in bytes.
    #[arg(long, env = "SESSIONLOG_MAX_NAME_LENGTH", default_value_t = 256)]
    pub max_name_length: usize,

    /// The longest text (format template, end reason, filter text), in bytes.
    #[arg(long, env = "SESSIONLOG_MAX_TEXT_LENGTH", default_value_t = 65_536)]
    pub max_text_length: usize,

    /// The deepest nesting of entry fields and session metadata.
    #[arg(long, env = "SESSIONLOG_MAX_STRUCT_DEPTH", default_value_t = 16)]
    pub max_struct_depth: usize,

    /// The most values in one entry's fields or a session's metadata.
    #[arg(long, env = "SESSIONLOG_MAX_STRUCT_VALUES", default_value_t = 1_000)]
    pub max_struct_values: usize,

    /// The most open Follow streams on one session.
    #[arg(
        long,
        env = "SESSIONLOG_MAX_FOLLOWS_PER_SESSION",
        default_value_t = 4_096
    )]
    pub max_follows_per_session: usize,

    /// The most open Follow and WatchSessions streams in all.
    #[arg(long, env = "SESSIONLOG_MAX_STREAMS", default_value_t = 16_384)]
    pub max_streams: usize,

    /// The most bytes of entries or sessions in one response: a `Read` or
    /// `ListSessions` page, a `Follow` batch, an SSE event or an HTTP page
    /// (encoded protobuf for gRPC, JSON for HTTP) stops here, with at least
    /// one item. It counts the items; the response around them adds well
    /// under 1 KiB. Keep it below clients' receive limit (4 MiB by default)
    /// by more than that, and more than one `--max-entry-size`.
    #[arg(long, env = "SESSIONLOG_MAX_RESPONSE_SIZE", default_value = "2MiB", value_parser = parse_size)]
    pub max_response_size: u64,

    /// The most log records in one OTLP export.
    #[arg(long, env = "SESSIONLOG_MAX_OTLP_RECORDS", default_value_t = 10_000)]
    pub max_otlp_records: usize,

    /// The largest session metadata, encoded (after an update's merge).
    #[arg(long, env = "SESSIONLOG_MAX_METADATA_SIZE", default_value = "64KiB", value_parser = parse_size)]
    pub max_metadata_size: u64,

    /// The lease of a session an OTLP export starts: renewed by each export
    /// to it, so a session whose exporter goes quiet this long ends with
    /// `lease expired`. `0s` keeps such sessions active until ended.
    #[arg(long, env = "SESSIONLOG_OTLP_LEASE", default_value = "10m", value_parser = parse_duration)]
    pub otlp_lease: Duration,

    /// For OTLP records whose resource has no `session.id` (a Collector
    /// tailing log files sends none): the resource or record attributes
    /// whose values make the session, comma-separated, e.g.
    /// `k8s.pod.uid,k8s.container.name` (one session per pod container) or
    /// `log.file.path` (one per file). The app name is `service.name`,
    /// else `k8s.container.name`. Unset: such records take their session
    /// from `service.instance.id`, and are rejected without one.
    #[arg(long, env = "SESSIONLOG_OTLP_SESSION_FROM", value_delimiter = ',')]
    pub otlp_session_from: Vec<String>,

    /// Forward every session's start, entries and end to this OTLP/gRPC
    /// endpoint (`http://host:port` or `https://host:port`: a Collector, or
    /// another sessionlog), at least once and in order per session.
    /// Repeatable; the environment variable takes a comma-separated list.
    #[arg(
        long = "forward-otlp",
        env = "SESSIONLOG_FORWARD_OTLP",
        value_delimiter = ','
    )]
    pub forward_otlp: Vec<String>,

    /// A header for every forwarded export, `name=value` (for example
    /// `authorization=Bearer <token>`). Repeatable.
    #[arg(
        long = "forward-header",
        env = "SESSIONLOG_FORWARD_HEADERS",
        value_delimiter = ',',
        value_parser = crate::forward::parse_header
    )]
    pub forward_headers: Vec<(String, String)>,

    /// The most records in one forwarded export.
    #[arg(long, env = "SESSIONLOG_FORWARD_BATCH", default_value_t = 1_000)]
    pub forward_batch: usize,

    /// How long new records gather before a forwarder exports fewer than
    /// --forward-batch.
    #[arg(long, env = "SESSIONLOG_FORWARD_LINGER", default_value = "200ms", value_parser = parse_duration)]
    pub forward_linger: Duration,

    /// For https:// forwarding targets: a PEM CA to trust instead of the
    /// system's roots.
    #[arg(long, env = "SESSIONLOG_FORWARD_CA_FILE")]
    pub forward_ca_file: Option<PathBuf>,

    /// For forwarding targets that require client certificates (mutual
    /// TLS): a PEM certificate, with --forward-key-file.
    #[arg(
        long,
        env = "SESSIONLOG_FORWARD_CERT_FILE",
        requires = "forward_key_file"
    )]
    pub forward_cert_file: Option<PathBuf>,

    /// The PEM private key of --forward-cert-file.
    #[arg(
        long,
        env = "SESSIONLOG_FORWARD_KEY_FILE",
        requires = "forward_cert_file"
    )]
    pub forward_key_file: Option<PathBuf>,

    /// How forwarded exports are compressed: gzip (as the OpenTelemetry
    /// Collector's exporter sends by default), zstd, or none.
    #[arg(
        long,
        env = "SESSIONLOG_FORWARD_COMPRESSION",
        value_enum,
        default_value_t = crate::server::ForwardCompression::Gzip
    )]
    pub forward_compression: crate::server::ForwardCompression,

    /// The server's own log format on stderr (`RUST_LOG` filters it).
    #[arg(long, env = "SESSIONLOG_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

impl ServeConfig {
    pub fn forward_settings(&self) -> crate::forward::ForwardSettings {
        crate::forward::ForwardSettings {
            targets: self.forward_otlp.clone(),
            headers: self.forward_headers.clone(),
            max_records: self.forward_batch,
            linger: self.forward_linger,
            ca_file: self.forward_ca_file.clone(),
            cert_file: self.forward_cert_file.clone(),
            key_file: self.forward_key_file.clone(),
            compression: self.forward_compression,
        }
    }

    pub fn store_options(&self) -> StoreOptions {
        StoreOptions {
            path: self.data_dir.clone(),
            cache_bytes: self.cache_size,
        }
    }

    pub fn tls_files(&self) -> Option<TlsFiles> {
        Some(TlsFiles {
            cert: self.tls_cert.clone()?,
            key: self.tls_key.clone()?,
            client_ca: self.tls_client_ca.clone(),
        })
    }

    pub fn connection_settings(&self) -> ConnectionSettings {
        let nonzero = |duration: Duration| Some(duration).filter(|value| !value.is_zero());
        ConnectionSettings {
            max_connections: self.max_connections,
            handshake_timeout: self.handshake_timeout,
            header_read_timeout: self.header_read_timeout,
            tcp_keepalive: nonzero(self.tcp_keepalive),
            http2_keepalive_interval: nonzero(self.http2_keepalive_interval),
            http2_keepalive_timeout: self.http2_keepalive_timeout,
        }
    }

    pub fn limits(&self) -> Limits {
        Limits {
            max_message_bytes: usize::try_from(self.max_message_size).unwrap_or(usize::MAX),
            max_batch_entries: self.max_batch_entries,
            max_entry_bytes: usize::try_from(self.max_entry_size).unwrap_or(usize::MAX),
            max_name_bytes: self.max_name_length,
            max_text_bytes: self.max_text_length,
            max_struct_depth: self.max_struct_depth,
            max_struct_values: self.max_struct_values,
            max_follows_per_session: self.max_follows_per_session,
            max_streams: self.max_streams,
            // 0 would mean "the default" further down; the least is one item.
            max_response_bytes: usize::try_from(self.max_response_size)
                .unwrap_or(usize::MAX)
                .max(1),
            max_otlp_records: self.max_otlp_records,
            max_metadata_bytes: usize::try_from(self.max_metadata_size).unwrap_or(usize::MAX),
            ..Limits::default()
        }
    }

    pub fn retention_policy(&self) -> RetentionPolicy {
        RetentionPolicy {
            max_age: self.retention_max_age,
            max_sessions: self.retention_max_sessions,
            max_bytes: self.retention_max_bytes,
        }
    }

    pub fn fsync_policy(&self) -> FsyncPolicy {
        match self.fsync {
            FsyncMode::Always => FsyncPolicy::Always,
            FsyncMode::Interval => FsyncPolicy::Interval(self.flush_interval),
            FsyncMode::Never => FsyncPolicy::Never,
        }
    }
}

/// A flush timeout: zero would time every flush out and stall the store.
fn parse_flush_timeout(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        Duration::ZERO => Err(format!("`{text}`: a flush needs some time; use 1s or more")),
        timeout => Ok(timeout),
    }
}

fn parse_mode(text: &str) -> Result<u32, String> {
    u32::from_str_radix(text.trim_start_matches("0o"), 8)
        .ok()
        .filter(|mode| *mode <= 0o777)
        .ok_or_else(|| format!("`{text}` is not an octal file mode like 660"))
}

/// `--fsync` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FsyncMode {
    Always,
    Interval,
    Never,
}

/// `--log-format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl From<&ServeConfig> for ServerSettings {
    fn from(config: &ServeConfig) -> Self {
        Self {
            store: config.store_options(),
            foreign_store_owner: if config.allow_foreign_store_owner {
                ForeignOwner::Allow
            } else {
                ForeignOwner::Refuse
            },
            flush_timeout: config.flush_timeout,
            fsync: config.fsync_policy(),
            shutdown_grace: config.shutdown_grace,
            liveness_interval: config.liveness_interval,
            otlp_lease: Some(config.otlp_lease).filter(|lease| !lease.is_zero()),
            otlp_session_from: config.otlp_session_from.clone(),
            retention: config.retention_policy(),
            retention_interval: config.retention_interval,
            seal_active_after: config.seal_active_after,
            limits: config.limits(),
            auth_token_file: config.auth_token_file.clone(),
            unix_socket_mode: config.unix_socket_mode,
            connections: config.connection_settings(),
            http_allowed_hosts: config.http_allowed_hosts.clone(),
            tls: config.tls_files(),
            forward: config.forward_settings(),
            sse_keep_alive: http::DEFAULT_KEEP_ALIVE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::ForwardCompression;
    use clap::Parser as _;

    #[derive(Debug, clap::Parser)]
    struct Serve {
        #[command(flatten)]
        config: ServeConfig,
    }

    fn forward_compression(args: &[&str]) -> Result<ForwardCompression, clap::Error> {
        let args = std::iter::once("serve").chain(args.iter().copied());
        Serve::try_parse_from(args).map(|serve| serve.config.forward_settings().compression)
    }

    #[test]
    fn forwarding_compresses_with_gzip_unless_told_otherwise() {
        assert_eq!(
            forward_compression(&[]).ok(),
            Some(ForwardCompression::Gzip)
        );
        assert_eq!(
            forward_compression(&["--forward-compression", "zstd"]).ok(),
            Some(ForwardCompression::Zstd)
        );
        assert_eq!(
            forward_compression(&["--forward-compression", "none"]).ok(),
            Some(ForwardCompression::None)
        );
        assert!(forward_compression(&["--forward-compression", "brotli"]).is_err());
    }
}
