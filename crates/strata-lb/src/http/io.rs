//! The client socket as hyper sees it, shared with the connection task so that a slow client
//! can still be sent a 408 after hyper's header timer gives up on it.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};

use crate::socket::poll_recv;
use socket2::SockRef;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A client connection's socket and whether it holds request bytes not yet answered.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What the first bytes of a plain connection said.
pub(crate) enum Sniff {
    Ready { h2: bool, prefix: Bytes },
    Closed,
    Idle,
    Partial,
}

pub(crate) struct Shared {
    pub(crate) stream: TcpStream,
    /// Bytes were read since the last write: a request is (partly) in.
    unanswered: AtomicBool,
}

impl Shared {
    pub(crate) fn new(stream: TcpStream) -> Arc<Self> {
        Arc::new(Shared {
            stream,
            unanswered: AtomicBool::new(false),
        })
    }

    /// True when the client started a request that got no answer yet (not just an idle
    /// keep-alive connection).
    pub(crate) fn has_partial_request(&self) -> bool {
        self.unanswered.load(Relaxed)
    }

    /// Reads the first bytes of a connection, up to `limit`, to tell HTTP/2 prior knowledge
    /// (its fixed preface) from HTTP/1.x. Nothing in `limit`: `Sniff::Idle`; some bytes but
    /// not enough to tell: `Sniff::Partial`.
    pub(crate) async fn sniff(&self, limit: std::time::Duration) -> Sniff {
        let mut buf = BytesMut::with_capacity(1024);
        let read = async {
            loop {
                if self.stream.readable().await.is_err() {
                    return None;
                }
                match self.stream.try_read_buf(&mut buf) {
                    Ok(0) => return None,
                    Ok(_) => {
                        self.unanswered.store(true, Relaxed);
                        let n = buf.len().min(H2_PREFACE.len());
                        if buf[..n] != H2_PREFACE[..n] {
                            return Some(false);
                        }
                        if n == H2_PREFACE.len() {
                            return Some(true);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(_) => return None,
                }
            }
        };
        match tokio::time::timeout(limit, read).await {
            Ok(Some(h2)) => Sniff::Ready {
                h2,
                prefix: buf.freeze(),
            },
            Ok(None) => Sniff::Closed,
            Err(_) if buf.is_empty() => Sniff::Idle,
            Err(_) => Sniff::Partial,
        }
    }

    /// Best effort: the socket buffer takes a short response whole, or it is not sent.
    pub(crate) fn send_final(&self, response: &[u8]) {
        let _ = self.stream.try_write(response);
    }
}

/// The socket as hyper reads it: first the bytes read while sniffing the protocol, then the
/// socket itself.
pub(crate) struct ClientIo {
    pub(crate) shared: Arc<Shared>,
    pub(crate) prefix: Bytes,
}

impl AsyncRead for ClientIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix.split_to(n));
            if self.prefix.is_empty() {
                self.prefix = Bytes::new();
            }
            return Poll::Ready(Ok(()));
        }
        let shared = &*self.shared;
        let n = ready!(poll_recv(&shared.stream, cx, buf))?;
        if n > 0 {
            shared.unanswered.store(true, Relaxed);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for ClientIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let shared = &*self.shared;
        loop {
            ready!(shared.stream.poll_write_ready(cx))?;
            match shared.stream.try_write(buf) {
                Ok(n) => {
                    shared.unanswered.store(false, Relaxed);
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let shared = &*self.shared;
        loop {
            ready!(shared.stream.poll_write_ready(cx))?;
            match shared.stream.try_write_vectored(bufs) {
                Ok(n) => {
                    shared.unanswered.store(false, Relaxed);
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match SockRef::from(&self.shared.stream).shutdown(std::net::Shutdown::Write) {
            Err(e) if e.kind() != io::ErrorKind::NotConnected => Poll::Ready(Err(e)),
            _ => Poll::Ready(Ok(())),
        }
    }
}
