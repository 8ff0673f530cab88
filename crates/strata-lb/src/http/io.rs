//! The client socket: telling HTTP/2 prior knowledge from HTTP/1.x by the first bytes, and the
//! stream hyper reads for HTTP/2 (those bytes first, then the socket).

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use socket2::SockRef;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use strata_net::{buffers, poll_recv, Arrival};

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What the first bytes of a plain connection said.
pub(crate) enum Sniff {
    /// `read`: the bytes read so far, in a buffer of the per-thread pool that the connection
    /// goes on reading into.
    Ready { h2: bool, read: BytesMut },
    /// The client closed, or the socket failed.
    Closed,
    /// Nothing arrived within the limit.
    Idle,
    /// Some bytes arrived, not enough to tell, then nothing more within the limit.
    Partial,
}

/// Reads the first bytes of a connection, for up to `limit`, until they tell HTTP/2's fixed
/// preface from anything else (HTTP/1.x).
pub(crate) async fn sniff(stream: &TcpStream, limit: Duration) -> Sniff {
    let mut buf = BytesMut::new();
    let read = async {
        loop {
            if stream.readable().await.is_err() {
                return None;
            }
            if buf.capacity() == 0 {
                buf = buffers::take();
            }
            match strata_net::try_recv_buf(stream, &mut buf) {
                Ok(0) => return None,
                Ok(_) => {
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
    let told = tokio::time::timeout(limit, read).await;
    let not_told = match told {
        Ok(Some(h2)) => return Sniff::Ready { h2, read: buf },
        Ok(None) => Sniff::Closed,
        Err(_) if buf.is_empty() => Sniff::Idle,
        Err(_) => Sniff::Partial,
    };
    buffers::give(buf);
    not_told
}

/// A client connection's socket, with bytes already read from it served first.
pub(crate) struct ClientIo {
    pub(crate) stream: TcpStream,
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
        ready!(poll_recv(&self.stream, cx, buf))?;
        Poll::Ready(Ok(()))
    }
}

impl Arrival for ClientIo {
    fn poll_arrival(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            return Poll::Ready(Ok(()));
        }
        self.stream.poll_read_ready(cx)
    }
    fn queued(&self) -> io::Result<bool> {
        if !self.prefix.is_empty() {
            return Ok(true);
        }
        strata_net::queued(&self.stream)
    }
}

impl AsyncWrite for ClientIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match SockRef::from(&self.stream).shutdown(std::net::Shutdown::Write) {
            Err(e) if e.kind() != io::ErrorKind::NotConnected => Poll::Ready(Err(e)),
            _ => Poll::Ready(Ok(())),
        }
    }
}
