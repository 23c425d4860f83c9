//! What `Server::open` needs besides its listeners: every setting with the
//! `serve` defaults, and the TLS files.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::connections::ConnectionSettings;
use crate::edge::Limits;
use crate::forward::ForwardSettings;
use crate::http;
use crate::sessions::RetentionPolicy;
use crate::store::durability::FsyncPolicy;
use crate::store::{ForeignOwner, StoreOptions};

/// Unix sockets are owner and group only unless configured otherwise.
pub const DEFAULT_UNIX_SOCKET_MODE: u32 = 0o660;

/// What `serve` needs besides its listeners.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub store: StoreOptions,
    /// Whether a data dir owned by another user may be used.
    pub foreign_store_owner: ForeignOwner,
    /// The longest a flush may take: an append waiting on it fails with
    /// UNAVAILABLE after that, and so does the final flush at shutdown.
    pub flush_timeout: Duration,
    pub fsync: FsyncPolicy,
    pub shutdown_grace: Duration,
    pub liveness_interval: Duration,
    /// The lease of sessions an OTLP export starts; `None`: no lease.
    pub otlp_lease: Option<Duration>,
    /// The attributes that name the session of an OTLP record whose
    /// resource has no `session.id` (`--otlp-session-from`); empty: such
    /// records go by `service.instance.id`, or are rejected.
    pub otlp_session_from: Vec<String>,
    pub retention: RetentionPolicy,
    pub retention_interval: Duration,
    /// Seal an active session's log once this many bytes of its entries
    /// are unsealed (ended sessions are sealed whole when they end).
    pub seal_active_after: u64,
    pub limits: Limits,
    /// Bearer tokens, one per line; `None` serves without tokens.
    pub auth_token_file: Option<PathBuf>,
    /// The mode of Unix sockets this server creates.
    pub unix_socket_mode: u32,
    /// Connection caps, deadlines and keepalive, for every listener.
    pub connections: ConnectionSettings,
    /// Names besides `localhost` and the listener's address that HTTP
    /// requests may give in `Host` when the server has no tokens.
    pub http_allowed_hosts: Vec<String>,
    /// TLS for TCP listeners; `None` serves plaintext.
    pub tls: Option<TlsFiles>,
    /// OTLP endpoints every entry is forwarded to (none by default).
    pub forward: ForwardSettings,
    /// How often an idle SSE stream of the HTTP edge gets a comment.
    pub sse_keep_alive: Duration,
}

/// PEM files for TLS.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// When set, clients must present a certificate signed by this CA.
    pub client_ca: Option<PathBuf>,
}

impl TlsFiles {
    /// Reads the files into tonic's TLS settings.
    pub(super) fn load(&self) -> anyhow::Result<ServerTlsConfig> {
        let read = |path: &Path, what: &str| {
            std::fs::read(path)
                .with_context(|| format!("cannot read the {what} {}", path.display()))
        };
        let identity = Identity::from_pem(
            read(&self.cert, "TLS certificate")?,
            read(&self.key, "TLS key")?,
        );
        let mut config = ServerTlsConfig::new().identity(identity);
        if let Some(client_ca) = &self.client_ca {
            config = config.client_ca_root(Certificate::from_pem(read(client_ca, "client CA")?));
        }
        Ok(config)
    }
}

impl ServerSettings {
    /// Settings with the `serve` defaults for everything but the store.
    pub fn new(store: StoreOptions, fsync: FsyncPolicy) -> Self {
        Self {
            store,
            foreign_store_owner: ForeignOwner::Refuse,
            flush_timeout: crate::store::durability::DEFAULT_FLUSH_TIMEOUT,
            fsync,
            shutdown_grace: Duration::from_secs(10),
            liveness_interval: Duration::from_secs(5),
            otlp_lease: Some(Duration::from_secs(600)),
            otlp_session_from: Vec::new(),
            retention: RetentionPolicy::default(),
            retention_interval: Duration::from_secs(60),
            seal_active_after: crate::sessions::DEFAULT_SEAL_ACTIVE_AFTER,
            limits: Limits::default(),
            auth_token_file: None,
            unix_socket_mode: DEFAULT_UNIX_SOCKET_MODE,
            connections: ConnectionSettings::default(),
            http_allowed_hosts: Vec::new(),
            tls: None,
            forward: ForwardSettings::default(),
            sse_keep_alive: http::DEFAULT_KEEP_ALIVE,
        }
    }
}
