//! Reading a TCP socket the way event-driven proxies do: a read that comes back short means the
//! kernel's queue is empty, so readiness is cleared at once instead of by a second `recv` that
//! would only return EAGAIN. That saves a syscall per message on each side of the proxy; a
//! new arrival raises a fresh edge event, and tokio's readiness tick keeps the clear race-free.

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use socket2::SockRef;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

/// Reads what is queued on `stream` into `buf`; returns how many bytes (0 at end of stream).
#[allow(unsafe_code)] // recv(2) straight into the unfilled part of `buf`, no zeroing first
pub fn poll_recv(
    stream: &TcpStream,
    cx: &mut Context<'_>,
    buf: &mut ReadBuf<'_>,
) -> Poll<io::Result<usize>> {
    loop {
        ready!(stream.poll_read_ready(cx))?;
        let wanted = buf.remaining();
        // SAFETY: recv writes only initialised bytes and returns how many; exactly those are
        // marked filled below.
        let unfilled: &mut [MaybeUninit<u8>] = unsafe { buf.unfilled_mut() };
        let mut got = 0;
        let result = stream.try_io(Interest::READABLE, || {
            got = SockRef::from(stream).recv(unfilled)?;
            if got > 0 && got < wanted {
                // drained: report WouldBlock to try_io so it clears readiness, keep the bytes
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(got)
        });
        match result {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && got > 0 => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Poll::Ready(Err(e)),
        }
        // SAFETY: the kernel initialised `got` bytes.
        unsafe { buf.assume_init(got) };
        buf.advance(got);
        return Poll::Ready(Ok(got));
    }
}

/// Why no connection to a backend could be had.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The connect failed: refused, unreachable, out of descriptors.
    #[error("connect to {addr}: {source}")]
    Io {
        /// The backend.
        addr: std::net::SocketAddr,
        /// What the operating system said.
        source: io::Error,
    },
    /// The backend did not complete the handshake within `timeout`.
    #[error("connect to {addr}: no answer within {timeout:?}")]
    Timeout {
        /// The backend.
        addr: std::net::SocketAddr,
        /// The connect timeout that ran out.
        timeout: std::time::Duration,
    },
}

/// Connects to a backend within `timeout`, with Nagle off.
pub async fn connect(
    addr: std::net::SocketAddr,
    timeout: std::time::Duration,
) -> Result<TcpStream, ConnectError> {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            Ok(stream)
        }
        Ok(Err(source)) => Err(ConnectError::Io { addr, source }),
        Err(_) => Err(ConnectError::Timeout { addr, timeout }),
    }
}

/// A stream that can tell that bytes arrived without reading them, so a connection waiting
/// for its next message holds no read buffer: one is taken only when there is something to
/// read into it.
pub trait Arrival {
    /// False for a stream that cannot tell: it reads into a buffer straight away.
    const TELLS_ARRIVAL: bool = true;
    /// Ready once a read might not wait: bytes arrived, or readiness is stale and the next
    /// read will clear it.
    fn poll_arrival(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;

    /// Whether a read would return at once (bytes, or the end of the stream) rather than wait;
    /// when it would wait, stale readiness is cleared, so [`Arrival::poll_arrival`] waits for
    /// real bytes. Costs a syscall: for the one check a connection makes as it goes idle. A
    /// stream that cannot tell says true.
    fn queued(&self) -> io::Result<bool> {
        Ok(true)
    }
}

/// [`Arrival::queued`] for a TCP socket: a non-blocking one-byte peek, through tokio so that
/// "would block" clears the readiness.
pub fn queued(stream: &TcpStream) -> io::Result<bool> {
    let mut byte = [MaybeUninit::<u8>::uninit()];
    match stream.try_io(Interest::READABLE, || SockRef::from(stream).peek(&mut byte)) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
        Err(e) => Err(e),
    }
}

impl<T: Arrival + ?Sized> Arrival for &mut T {
    const TELLS_ARRIVAL: bool = T::TELLS_ARRIVAL;
    fn poll_arrival(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        (**self).poll_arrival(cx)
    }
    fn queued(&self) -> io::Result<bool> {
        (**self).queued()
    }
}

/// TLS can't tell: rustls may hold decrypted bytes that the socket no longer shows, so a TLS
/// connection reads into a buffer straight away.
impl<IO> Arrival for tokio_rustls::server::TlsStream<IO> {
    const TELLS_ARRIVAL: bool = false;
    fn poll_arrival(&self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A TCP connection (to a backend, or a client's in the TCP layer): reads with [`poll_recv`],
/// writes straight to the socket.
pub struct UpstreamIo(pub TcpStream);

impl AsyncRead for UpstreamIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        poll_recv(&self.0, cx, buf).map_ok(|_| ())
    }
}

impl Arrival for UpstreamIo {
    fn poll_arrival(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.poll_read_ready(cx)
    }
    fn queued(&self) -> io::Result<bool> {
        queued(&self.0)
    }
}

impl AsyncWrite for UpstreamIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        true
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
