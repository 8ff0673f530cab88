//! Read buffers kept per thread: an HTTP/1 exchange takes one for the client side and one for
//! the backend side, a byte relay one per direction while bytes are on their way, and each
//! gives it back when done, so neither a request nor a message costs an allocation for them.
//! Idle connections hold none.

use std::cell::RefCell;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::BytesMut;
use tokio::io::AsyncRead;

use crate::socket::Arrival;

/// The size a buffer starts at; heads and bodies that need more make it grow.
pub const BUFFER: usize = 4096;
/// Buffers kept per thread; more are freed.
const KEEP: usize = 256;

thread_local! {
    static FREE: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
}

/// An empty buffer with room for at least [`BUFFER`] bytes.
pub fn take() -> BytesMut {
    FREE.with(|f| f.borrow_mut().pop())
        .unwrap_or_else(|| BytesMut::with_capacity(BUFFER))
}

/// Returns a buffer whose contents are no longer needed. Its memory is reused only when no
/// `Bytes` split off it is still alive (else `reserve` would have to allocate anyway).
pub fn give(mut buf: BytesMut) {
    buf.clear();
    // reclaims the whole allocation when this is its only owner; never allocates here
    if !buf.try_reclaim(BUFFER) || buf.capacity() > 4 * BUFFER {
        return;
    }
    FREE.with(|f| {
        let mut free = f.borrow_mut();
        if free.len() < KEEP {
            free.push(buf);
        }
    });
}

/// Reads more of a message into `buf`. A buffer that holds nothing and owns no memory (a
/// connection between messages) gets some only once bytes arrived, so waiting costs none.
pub async fn fill<S: AsyncRead + Arrival + Unpin>(
    io: &mut S,
    buf: &mut BytesMut,
) -> std::io::Result<usize> {
    std::future::poll_fn(|cx| poll_fill(io, cx, buf)).await
}

/// [`fill`], polled.
pub fn poll_fill<S: AsyncRead + Arrival + Unpin>(
    io: &mut S,
    cx: &mut Context<'_>,
    buf: &mut BytesMut,
) -> Poll<std::io::Result<usize>> {
    loop {
        if buf.capacity() == 0 {
            ready!(io.poll_arrival(cx))?;
            *buf = take();
        } else if buf.capacity() - buf.len() < 1024 {
            buf.reserve(BUFFER.max(buf.len()));
        }
        match tokio_util::io::poll_read_buf(Pin::new(&mut *io), cx, buf) {
            // the readiness was stale (the last read took everything): the read cleared it,
            // so wait for the next bytes without the buffer
            Poll::Pending if S::TELLS_ARRIVAL && buf.is_empty() => give(std::mem::take(buf)),
            other => return other,
        }
    }
}
