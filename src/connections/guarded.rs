//! Accepted connections: the accept loop of one listener and the
//! connection it hands on, which holds its listener's permit until it is
//! dropped and fails its reads once the handshake deadline passes before
//! the peer sent its first bytes.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Sleep;

use super::ConnectionSettings;
use super::limit::ListenerGate;

/// How long the accept loop waits after the process ran out of
/// descriptors (or memory) before it tries again: without a pause it would
/// spin, since the waiting connection stays in the backlog.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The bytes a peer must send before its handshake deadline: the length of
/// the HTTP/2 client preface (`PRI * HTTP/2.0...`), which is also less
/// than the shortest HTTP/1.1 request line with its `Host` header.
const FIRST_BYTES: usize = 24;

/// A listener the accept loop can take connections from.
pub(crate) trait Accept: Send + 'static {
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    fn accept(&self) -> impl Future<Output = io::Result<Self::Io>> + Send;

    /// Socket options for a connection just accepted.
    fn configure(io: &Self::Io, settings: &ConnectionSettings) -> io::Result<()>;
}

impl Accept for TcpListener {
    type Io = TcpStream;

    async fn accept(&self) -> io::Result<TcpStream> {
        TcpListener::accept(self).await.map(|(stream, _)| stream)
    }

    fn configure(stream: &TcpStream, settings: &ConnectionSettings) -> io::Result<()> {
        // Small frames (a follower's batch) must not wait for Nagle.
        stream.set_nodelay(true)?;
        if let Some(idle) = settings.tcp_keepalive {
            use rustix::net::sockopt;
            // A peer that vanished (power loss, a dropped route) is found
            // after `idle` plus 4 unanswered probes a quarter of it apart.
            let interval = (idle / 4).max(Duration::from_secs(1));
            sockopt::set_socket_keepalive(stream, true)?;
            sockopt::set_tcp_keepidle(stream, idle.max(Duration::from_secs(1)))?;
            sockopt::set_tcp_keepintvl(stream, interval)?;
            sockopt::set_tcp_keepcnt(stream, 4)?;
        }
        Ok(())
    }
}

impl Accept for UnixListener {
    type Io = UnixStream;

    async fn accept(&self) -> io::Result<UnixStream> {
        UnixListener::accept(self).await.map(|(stream, _)| stream)
    }

    fn configure(_: &UnixStream, _: &ConnectionSettings) -> io::Result<()> {
        Ok(())
    }
}

/// The connections `listener` accepts, each admitted by `gate`: over the
/// cap a connection is closed as soon as it is accepted. The stream never
/// ends and never yields an error (a failed accept is retried, after a
/// pause when the process is out of descriptors); it stops when dropped.
pub(crate) fn incoming<L: Accept>(
    listener: L,
    gate: ListenerGate,
    settings: ConnectionSettings,
) -> impl Stream<Item = io::Result<Guarded<L::Io>>> + Send + 'static {
    let state = Acceptor {
        listener,
        gate,
        settings,
        exhausted: false,
    };
    futures::stream::unfold(state, |mut state| async move {
        let guarded = state.next().await;
        Some((Ok(guarded), state))
    })
}

struct Acceptor<L> {
    listener: L,
    gate: ListenerGate,
    settings: ConnectionSettings,
    /// Whether the last accept failed for want of descriptors or memory:
    /// logged once per such spell, not every pause.
    exhausted: bool,
}

impl<L: Accept> Acceptor<L> {
    /// The next connection admitted and set up.
    async fn next(&mut self) -> Guarded<L::Io> {
        loop {
            let io = match self.listener.accept().await {
                Ok(io) => io,
                Err(err) => {
                    self.accept_failed(&err).await;
                    continue;
                }
            };
            self.exhausted = false;
            let Some(permit) = self.gate.admit() else {
                continue;
            };
            if let Err(err) = L::configure(&io, &self.settings) {
                tracing::debug!(error = %err, "cannot set up a new connection; closed it");
                continue;
            }
            return Guarded::new(io, permit, self.settings.handshake_timeout);
        }
    }

    async fn accept_failed(&mut self, err: &io::Error) {
        use rustix::io::Errno;
        // The process or the system is out of something a connection
        // needs; it may come back when other connections close.
        let exhausted = matches!(
            Errno::from_io_error(err),
            Some(Errno::MFILE | Errno::NFILE | Errno::NOBUFS | Errno::NOMEM)
        );
        if !exhausted {
            // A peer that went away before it was accepted, and the like.
            tracing::debug!(listen = self.gate.name(), error = %err, "a connection failed to be accepted");
            return;
        }
        if !self.exhausted {
            self.exhausted = true;
            tracing::warn!(listen = self.gate.name(), error = %err, "cannot accept connections; retrying every 100 ms");
        }
        tokio::time::sleep(ACCEPT_BACKOFF).await;
    }
}

/// An accepted connection: holds its listener's permit while it lives,
/// and until the peer has sent its first bytes, fails a read that would
/// wait past the handshake deadline (hyper would otherwise wait for an
/// HTTP/2 preface or an HTTP/1 request forever).
#[derive(Debug)]
pub(crate) struct Guarded<IO> {
    io: IO,
    _permit: OwnedSemaphorePermit,
    handshake: Option<Handshake>,
}

#[derive(Debug)]
struct Handshake {
    deadline: Pin<Box<Sleep>>,
    bytes_missing: usize,
}

impl<IO> Guarded<IO> {
    fn new(io: IO, permit: OwnedSemaphorePermit, timeout: Duration) -> Self {
        Self {
            io,
            _permit: permit,
            handshake: Some(Handshake {
                deadline: Box::pin(tokio::time::sleep(timeout)),
                bytes_missing: FIRST_BYTES,
            }),
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Guarded<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let filled_before = buf.filled().len();
        let this = &mut *self;
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        let Some(handshake) = &mut this.handshake else {
            return polled;
        };
        match &polled {
            Poll::Ready(Ok(())) => {
                let read = buf.filled().len() - filled_before;
                handshake.bytes_missing = handshake.bytes_missing.saturating_sub(read);
                if handshake.bytes_missing == 0 {
                    this.handshake = None;
                }
            }
            Poll::Pending if handshake.deadline.as_mut().poll(cx).is_ready() => {
                crate::metrics::get().handshake_timed_out();
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the peer sent nothing usable within the handshake timeout",
                )));
            }
            _ => {}
        }
        polled
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Guarded<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

impl<IO: tonic::transport::server::Connected> tonic::transport::server::Connected for Guarded<IO> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}
