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
        // SAFETY: recv writes only initialised bytes and returns how many; exactly those are
        // marked filled below.
        let unfilled: &mut [MaybeUninit<u8>] = unsafe { buf.unfilled_mut() };
        // read first: a proxy reads a socket when it was told bytes are there, and asking
        // for readiness first would cost a second look at it (and the task budget) for nothing
        match recv_drained(stream, unfilled) {
            Ok(got) => {
                // SAFETY: the kernel initialised `got` bytes.
                unsafe { buf.assume_init(got) };
                buf.advance(got);
                return Poll::Ready(Ok(got));
            }
            // not ready (no syscall made), or the readiness was stale: wait for the next
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => ready!(stream.poll_read_ready(cx))?,
            Err(e) => return Poll::Ready(Err(e)),
        }
    }
}

/// A connected stream socket tokio drives: a TCP connection, or one end of a socket pair.
pub trait StreamSocket: std::os::fd::AsFd {
    /// tokio's `try_io`: runs `f` if the socket is ready for `interest`, and clears that
    /// readiness when `f` says WouldBlock.
    fn try_io<R>(&self, interest: Interest, f: impl FnOnce() -> io::Result<R>) -> io::Result<R>;
}

impl StreamSocket for TcpStream {
    fn try_io<R>(&self, interest: Interest, f: impl FnOnce() -> io::Result<R>) -> io::Result<R> {
        TcpStream::try_io(self, interest, f)
    }
}

impl StreamSocket for tokio::net::UnixStream {
    fn try_io<R>(&self, interest: Interest, f: impl FnOnce() -> io::Result<R>) -> io::Result<R> {
        tokio::net::UnixStream::try_io(self, interest, f)
    }
}

/// Reads what is queued on `stream` into the spare capacity of `buf` (growing it when full)
/// without waiting, as `TcpStream::try_read_buf` does, but a short read clears readiness: the
/// next `readable()` waits for new bytes instead of returning at once for a `recv` that could
/// only say EAGAIN. For loops that wait with `readable()` and then read.
#[allow(unsafe_code)] // recv(2) straight into the spare capacity of `buf`, no zeroing first
pub fn try_recv_buf(stream: &impl StreamSocket, buf: &mut bytes::BytesMut) -> io::Result<usize> {
    if buf.len() == buf.capacity() {
        buf.reserve(64);
    }
    let got = recv_drained(stream, buf.spare_capacity_mut())?;
    // SAFETY: the kernel initialised `got` bytes of the spare capacity, which follows `len`.
    unsafe { buf.set_len(buf.len() + got) };
    Ok(got)
}

/// One `recv` into `into` if the socket is ready, else WouldBlock; a read shorter than `into`
/// (the queue drained) also clears the socket's readiness.
fn recv_drained<S: StreamSocket>(stream: &S, into: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
    let wanted = into.len();
    let mut got = 0;
    let result = stream.try_io(Interest::READABLE, || {
        got = SockRef::from(stream).recv(into)?;
        if got > 0 && got < wanted {
            // drained: report WouldBlock to try_io so it clears readiness, keep the bytes
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(got)
    });
    if got > 0 {
        crate::busy::arrived();
    }
    match result {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock && got > 0 => Ok(got),
        other => other,
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

/// The same, for TLS Strata dialled (the database layer's connections to its servers).
impl<IO> Arrival for tokio_rustls::client::TlsStream<IO> {
    const TELLS_ARRIVAL: bool = false;
    fn poll_arrival(&self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// One end of a socket pair (the database layer's TLS clients are relayed through one).
impl Arrival for tokio::net::UnixStream {
    fn poll_arrival(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_read_ready(cx)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use tokio::io::AsyncWriteExt;

    /// Whether `stream` says it is readable without waiting.
    fn readable_now(stream: &TcpStream) -> bool {
        let mut ready = std::pin::pin!(stream.readable());
        let mut cx = Context::from_waker(std::task::Waker::noop());
        ready.as_mut().poll(&mut cx).is_ready()
    }

    #[tokio::test]
    async fn a_short_read_leaves_the_socket_waiting_for_new_bytes() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut writer = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (reader, _) = listener.accept().await.unwrap();
        writer.write_all(b"hello").await.unwrap();
        reader.readable().await.unwrap();
        let mut buf = bytes::BytesMut::with_capacity(64);
        assert_eq!(try_recv_buf(&reader, &mut buf).unwrap(), 5);
        assert_eq!(&buf[..], b"hello");
        // tokio's try_read_buf would leave it readable, for a recv that says EAGAIN
        assert!(!readable_now(&reader));
        writer.write_all(b" again").await.unwrap();
        reader.readable().await.unwrap();
        assert_eq!(try_recv_buf(&reader, &mut buf).unwrap(), 6);
        assert_eq!(&buf[..], b"hello again");
        // a full buffer grows rather than reading nothing
        let mut full = bytes::BytesMut::new();
        writer.write_all(b"x").await.unwrap();
        reader.readable().await.unwrap();
        assert_eq!(try_recv_buf(&reader, &mut full).unwrap(), 1);
        drop(writer);
        reader.readable().await.unwrap();
        assert_eq!(try_recv_buf(&reader, &mut full).unwrap(), 0);
    }
}
