//! Where the server accepts: `--listen` addresses, bound before anything
//! serves (port 0 works), and the HTTP listeners beside them. A Unix
//! listener replaces only a stale socket at its path (never a file,
//! directory or symlink) and removes its own socket when it goes, if the
//! path still holds that socket.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::Context as _;
use tokio::net::{TcpListener, UnixListener};

use super::settings::DEFAULT_UNIX_SOCKET_MODE;

/// One `--listen` address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    /// `host:port`, resolved when bound.
    Tcp(String),
    /// `unix:/path/to.sock`.
    Unix(PathBuf),
}

impl FromStr for ListenAddr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if let Some(path) = text.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(
                    "`unix:` needs a socket path, e.g. unix:/run/sessionlog.sock".to_owned(),
                );
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        match text.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                Ok(Self::Tcp(text.to_owned()))
            }
            _ => Err(format!("`{text}` is not `host:port` or `unix:/path`")),
        }
    }
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tcp(addr) => f.write_str(addr),
            Self::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// A bound listener: bind first (port 0 works), then serve.
#[derive(Debug)]
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, SocketFile),
}

/// The socket file of a bound Unix listener, removed when this is dropped
/// unless something else has taken its path since.
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    /// The socket's device and inode, as bound.
    identity: (u64, u64),
}

impl SocketFile {
    /// Where the socket is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        let ours = std::fs::symlink_metadata(&self.path).is_ok_and(|metadata| {
            metadata.file_type().is_socket() && (metadata.dev(), metadata.ino()) == self.identity
        });
        if ours && let Err(err) = std::fs::remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %err, "cannot remove the socket file");
        }
    }
}

impl Listener {
    /// Binds `addr`. A Unix socket left by a dead server is replaced; one
    /// a live server answers on is not, and anything else at the path (a
    /// file, a directory, a symlink) is an error.
    pub async fn bind(addr: &ListenAddr) -> anyhow::Result<Self> {
        Self::bind_with_mode(addr, DEFAULT_UNIX_SOCKET_MODE).await
    }

    /// Binds `addr`; a Unix socket gets `unix_mode` (e.g. `0o660`: owner
    /// and group may connect, others may not).
    pub async fn bind_with_mode(addr: &ListenAddr, unix_mode: u32) -> anyhow::Result<Self> {
        match addr {
            ListenAddr::Tcp(host_port) => {
                let listener = TcpListener::bind(host_port)
                    .await
                    .with_context(|| format!("cannot listen on {host_port}"))?;
                Ok(Self::Tcp(listener))
            }
            ListenAddr::Unix(path) => {
                remove_stale_socket(path).await?;
                let listener = UnixListener::bind(path)
                    .with_context(|| format!("cannot listen on unix:{}", path.display()))?;
                let metadata = std::fs::symlink_metadata(path)
                    .with_context(|| format!("cannot inspect unix:{}", path.display()))?;
                // From here on, dropping it removes the socket.
                let socket = SocketFile {
                    path: path.clone(),
                    identity: (metadata.dev(), metadata.ino()),
                };
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(unix_mode))
                    .with_context(|| format!("cannot set the mode of unix:{}", path.display()))?;
                Ok(Self::Unix(listener, socket))
            }
        }
    }

    /// Where this listener accepts, for logs and for tests.
    pub fn local_addr(&self) -> String {
        match self {
            Self::Tcp(listener) => listener.local_addr().map_or_else(
                |err| format!("tcp (unknown: {err})"),
                |addr| addr.to_string(),
            ),
            Self::Unix(_, socket) => format!("unix:{}", socket.path.display()),
        }
    }
}

/// Removes a socket nothing answers on at `path`; refuses to touch
/// anything that is not a socket (the path itself, not a symlink's target).
async fn remove_stale_socket(path: &Path) -> anyhow::Result<()> {
    let metadata = match tokio::fs::symlink_metadata(path).await {
        Ok(metadata) => metadata,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(err) => {
            return Err(err).with_context(|| format!("cannot inspect unix:{}", path.display()));
        }
    };
    let kind = metadata.file_type();
    if !kind.is_socket() {
        let what = if kind.is_symlink() {
            "a symlink"
        } else if kind.is_dir() {
            "a directory"
        } else if kind.is_file() {
            "a regular file"
        } else {
            "not a socket"
        };
        anyhow::bail!(
            "unix:{} is {what}; refusing to replace it with a socket (remove it or choose another path)",
            path.display()
        );
    }
    if tokio::net::UnixStream::connect(path).await.is_ok() {
        anyhow::bail!("unix:{} is in use by a running server", path.display());
    }
    tokio::fs::remove_file(path)
        .await
        .with_context(|| format!("cannot replace the stale socket {}", path.display()))
}

/// Every listener of one server: the gRPC ones (`--listen`, at least one
/// in practice) and the optional HTTP ones.
#[derive(Debug, Default)]
pub struct Listeners {
    /// gRPC and OTLP (`--listen`).
    pub grpc: Vec<Listener>,
    /// `/metrics` and `/healthz` (`--metrics-listen`).
    pub metrics: Option<TcpListener>,
    /// The HTTP read API, SSE streams and the console (`--http-listen`).
    pub http: Option<TcpListener>,
}

impl Listeners {
    /// Only these gRPC listeners.
    pub fn grpc(grpc: Vec<Listener>) -> Self {
        Self {
            grpc,
            ..Self::default()
        }
    }
}

/// A listener's address for the log.
pub(super) fn display_addr(listener: &TcpListener) -> String {
    listener
        .local_addr()
        .map_or_else(|err| format!("(unknown: {err})"), |addr| addr.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_parse() {
        assert_eq!(
            "127.0.0.1:50051".parse(),
            Ok(ListenAddr::Tcp("127.0.0.1:50051".into()))
        );
        assert_eq!("[::1]:0".parse(), Ok(ListenAddr::Tcp("[::1]:0".into())));
        assert_eq!(
            "unix:/tmp/s.sock".parse(),
            Ok(ListenAddr::Unix("/tmp/s.sock".into()))
        );
        assert!("unix:".parse::<ListenAddr>().is_err());
        assert!("localhost".parse::<ListenAddr>().is_err());
        assert!(":80".parse::<ListenAddr>().is_err());
    }
}
