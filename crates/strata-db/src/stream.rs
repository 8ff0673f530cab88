//! A client's connection as its session reads and writes it: the TCP socket itself, or, for
//! a client that asked for TLS, one end of a socket pair whose other end a relay task joins
//! to the TLS connection (so that the session's readiness-driven reads and writes work the
//! same on both, and a plain client pays nothing for TLS being there).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::TlsAcceptor;

use strata_net::Timers;

/// A client's connection: in clear, or TLS through a relay.
pub(crate) enum ClientStream {
    Tcp(TcpStream),
    Tls(UnixStream),
}

/// A TLS client's relay closes the connection after this long with nothing moving either way
/// (about 49 days: the relay's longest limit; `client_idle_timeout` is the limit to set).
const TLS_QUIET: Duration = Duration::from_millis(u32::MAX as u64);

/// Answers a client's SSLRequest with 'S', takes the TLS handshake on `tcp`, and starts the
/// relay between the TLS connection and the stream it returns.
pub(crate) async fn upgrade(
    mut tcp: TcpStream,
    acceptor: TlsAcceptor,
    timers: Arc<Timers>,
) -> io::Result<ClientStream> {
    tcp.write_all(b"S").await?;
    let tls = acceptor.accept(tcp).await?;
    let (near, far) = UnixStream::pair()?;
    tokio::spawn(async move {
        if let Err(e) = strata_net::relay(tls, far, &timers, TLS_QUIET).await {
            tracing::debug!("TLS client connection: {e}");
        }
    });
    Ok(ClientStream::Tls(near))
}

impl ClientStream {
    /// Whether the client is on TLS.
    pub(crate) fn is_tls(&self) -> bool {
        matches!(self, ClientStream::Tls(_))
    }

    pub(crate) fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            ClientStream::Tcp(s) => s.poll_read_ready(cx),
            ClientStream::Tls(s) => s.poll_read_ready(cx),
        }
    }

    pub(crate) async fn readable(&self) -> io::Result<()> {
        match self {
            ClientStream::Tcp(s) => s.readable().await,
            ClientStream::Tls(s) => s.readable().await,
        }
    }

    pub(crate) async fn writable(&self) -> io::Result<()> {
        match self {
            ClientStream::Tcp(s) => s.writable().await,
            ClientStream::Tls(s) => s.writable().await,
        }
    }

    pub(crate) fn try_write(&self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            ClientStream::Tcp(s) => s.try_write(bytes),
            ClientStream::Tls(s) => s.try_write(bytes),
        }
    }

    /// Reads what is there into `buf`'s spare room, or WouldBlock.
    pub(crate) fn try_recv_buf(&self, buf: &mut BytesMut) -> io::Result<usize> {
        match self {
            ClientStream::Tcp(s) => strata_net::try_recv_buf(s, buf),
            ClientStream::Tls(s) => {
                if buf.len() == buf.capacity() {
                    buf.reserve(64);
                }
                s.try_read_buf(buf)
            }
        }
    }
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            ClientStream::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Tcp(s) => Pin::new(s).poll_write(cx, bytes),
            ClientStream::Tls(s) => Pin::new(s).poll_write(cx, bytes),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Tcp(s) => Pin::new(s).poll_flush(cx),
            ClientStream::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            ClientStream::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
