//! A PostgreSQL connection as a session reads and writes it, a client's or a server's: the
//! TCP socket itself, or, where the connection is on TLS, one end of a socket pair whose
//! other end a relay task joins to the TLS connection (so that the session's
//! readiness-driven reads and writes work the same on both, and a connection in clear pays
//! nothing for TLS being there).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::oneshot;
use tokio_rustls::TlsAcceptor;

use strata_net::{Admitted, Timers};

/// A connection: in clear, or TLS through a relay.
pub(crate) enum PgStream {
    Tcp(TcpStream),
    Tls(Box<Relayed>),
}

/// The session's side of the socket pair of a TLS connection.
pub(crate) struct Relayed {
    near: UnixStream,
    /// Dropped with the session's side (however the session ends): from then on the relay
    /// has [`RELAY_LINGER`] to pass on the rest.
    _ended: oneshot::Sender<()>,
}

/// The relay's idle limit: none in effect (about 49 days, the longest it takes). The session
/// has the limits (`client_idle_timeout`, `idle_transaction_timeout`, the drain), and its end
/// ends the relay.
const RELAY_QUIET: Duration = Duration::from_millis(u32::MAX as u64);

/// How long a TLS peer that reads nothing may hold up the last bytes of a session that
/// ended (an error, the TLS close_notify) before its connection is dropped.
const RELAY_LINGER: Duration = Duration::from_secs(10);

/// Answers a client's SSLRequest with 'S', takes the TLS handshake on `tcp`, and starts the
/// relay between the TLS connection and the stream it returns. The relay holds the
/// connection's place in the listener's limit (`admitted`, which a drain waits for) until the
/// socket is closed.
pub(crate) async fn upgrade(
    mut tcp: TcpStream,
    acceptor: TlsAcceptor,
    timers: Arc<Timers>,
    admitted: Option<Admitted>,
) -> io::Result<PgStream> {
    tcp.write_all(b"S").await?;
    let tls = acceptor.accept(tcp).await?;
    relayed(tls, timers, admitted)
}

/// Starts the relay between a TLS connection, a client's or a server's, and the stream it
/// returns; the relay ends when that stream is dropped (after passing on what is left, for
/// at most [`RELAY_LINGER`]), or when the peer closes.
pub(crate) fn relayed(
    tls: impl AsyncRead + AsyncWrite + strata_net::Arrival + Unpin + Send + 'static,
    timers: Arc<Timers>,
    admitted: Option<Admitted>,
) -> io::Result<PgStream> {
    let (near, far) = UnixStream::pair()?;
    let (ended, session_gone) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let _admitted = admitted;
        let relaying = strata_net::relay_until_b_ends(tls, far, &timers, RELAY_QUIET);
        let lingered = async {
            let _ = session_gone.await;
            // boxed: a timer only once the session is gone, not in every relay's state
            Box::pin(tokio::time::sleep(RELAY_LINGER)).await;
        };
        tokio::select! {
            r = relaying => {
                if let Err(e) = r {
                    tracing::debug!("TLS connection: {e}");
                }
            }
            () = lingered => tracing::debug!(
                "TLS connection: closed {RELAY_LINGER:?} after its session ended, the peer not taking its last bytes"
            ),
        }
    });
    Ok(PgStream::Tls(Box::new(Relayed {
        near,
        _ended: ended,
    })))
}

impl From<TcpStream> for PgStream {
    fn from(tcp: TcpStream) -> PgStream {
        PgStream::Tcp(tcp)
    }
}

impl PgStream {
    /// Whether the connection is on TLS.
    pub(crate) fn is_tls(&self) -> bool {
        matches!(self, PgStream::Tls(_))
    }

    pub(crate) fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            PgStream::Tcp(s) => s.poll_read_ready(cx),
            PgStream::Tls(s) => s.near.poll_read_ready(cx),
        }
    }

    pub(crate) async fn readable(&self) -> io::Result<()> {
        match self {
            PgStream::Tcp(s) => s.readable().await,
            PgStream::Tls(s) => s.near.readable().await,
        }
    }

    pub(crate) async fn writable(&self) -> io::Result<()> {
        match self {
            PgStream::Tcp(s) => s.writable().await,
            PgStream::Tls(s) => s.near.writable().await,
        }
    }

    pub(crate) fn try_read(&self, bytes: &mut [u8]) -> io::Result<usize> {
        match self {
            PgStream::Tcp(s) => s.try_read(bytes),
            PgStream::Tls(s) => s.near.try_read(bytes),
        }
    }

    pub(crate) fn try_write(&self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            PgStream::Tcp(s) => s.try_write(bytes),
            PgStream::Tls(s) => s.near.try_write(bytes),
        }
    }

    /// Reads what is there into `buf`'s spare room, or WouldBlock (a short read clears the
    /// readiness: see [`strata_net::try_recv_buf`]).
    pub(crate) fn try_recv_buf(&self, buf: &mut BytesMut) -> io::Result<usize> {
        match self {
            PgStream::Tcp(s) => strata_net::try_recv_buf(s, buf),
            PgStream::Tls(s) => strata_net::try_recv_buf(&s.near, buf),
        }
    }
}

impl AsyncRead for PgStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            PgStream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            PgStream::Tls(s) => Pin::new(&mut s.near).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for PgStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            PgStream::Tcp(s) => Pin::new(s).poll_write(cx, bytes),
            PgStream::Tls(s) => Pin::new(&mut s.near).poll_write(cx, bytes),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            PgStream::Tcp(s) => Pin::new(s).poll_flush(cx),
            PgStream::Tls(s) => Pin::new(&mut s.near).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            PgStream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            PgStream::Tls(s) => Pin::new(&mut s.near).poll_shutdown(cx),
        }
    }
}
