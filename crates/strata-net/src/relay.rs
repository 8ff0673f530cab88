//! Relaying bytes both ways between two streams with an inactivity limit: the TCP layer and
//! upgraded HTTP connections (WebSocket) both use it. A direction holds a buffer only while
//! bytes are on their way through it, so a quiet connection costs its sockets and little more.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use crate::buffers;
use crate::deadline::Deadline;
use crate::socket::Arrival;

/// Copies `a` <-> `b` until both sides close, either fails, or nothing moves for `idle`.
/// Returns the bytes sent a -> b and b -> a.
pub async fn relay<A, B>(mut a: A, mut b: B, idle: Duration) -> io::Result<(u64, u64)>
where
    A: AsyncRead + AsyncWrite + Arrival + Unpin,
    B: AsyncRead + AsyncWrite + Arrival + Unpin,
{
    let mut there = Half::default();
    let mut back = Half::default();
    let mut deadline = Deadline::new(Instant::now() + idle);
    let result = poll_fn(|cx| {
        let mut moved = false;
        let there_done = there.poll(cx, &mut a, &mut b, &mut moved)?.is_ready();
        let back_done = back.poll(cx, &mut b, &mut a, &mut moved)?.is_ready();
        if there_done && back_done {
            return Poll::Ready(Ok((there.total, back.total)));
        }
        if moved {
            deadline.set(Instant::now() + idle);
        }
        ready!(deadline.poll_expired(cx));
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("idle for {idle:?}"),
        )))
    })
    .await;
    buffers::give(there.buf);
    buffers::give(back.buf);
    result
}

/// One direction: bytes read from one side and not yet written to the other.
#[derive(Default)]
struct Half {
    buf: BytesMut,
    /// The reader reached its end; the writer was (or is being) shut down.
    eof: bool,
    finished: bool,
    total: u64,
}

impl Half {
    fn poll<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        from: &mut R,
        to: &mut W,
        moved: &mut bool,
    ) -> Poll<io::Result<()>>
    where
        R: AsyncRead + Arrival + Unpin,
        W: AsyncWrite + Unpin,
    {
        loop {
            if self.finished {
                return Poll::Ready(Ok(()));
            }
            if !self.buf.is_empty() {
                let n = ready!(Pin::new(&mut *to).poll_write(cx, &self.buf))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                self.buf.advance(n);
                self.total += n as u64;
                *moved = true;
                continue;
            }
            // everything read so far went out (TLS keeps records until flushed)
            ready!(Pin::new(&mut *to).poll_flush(cx))?;
            if self.eof {
                ready!(Pin::new(&mut *to).poll_shutdown(cx))?;
                self.finished = true;
                continue;
            }
            // nothing in flight: the buffer goes back until bytes arrive
            if self.buf.capacity() > 0 {
                buffers::give(std::mem::take(&mut self.buf));
            }
            match ready!(buffers::poll_fill(from, cx, &mut self.buf))? {
                0 => self.eof = true,
                _ => *moved = true,
            }
        }
    }
}
