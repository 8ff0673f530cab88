//! Writes of one message in pieces (a head, a chunk line, data, its CRLF, the last chunk), in
//! as few syscalls as the socket allows: one piece as it is and small pieces joined, written at
//! once (one `send` on a plain socket); large pieces by vectored writes, without being copied
//! together.

use std::io::IoSlice;

use tokio::io::{AsyncWrite, AsyncWriteExt};

/// The pieces of one write: at most a head, a chunk line, data, its CRLF and the last chunk.
#[derive(Default)]
pub struct Parts<'a> {
    items: [&'a [u8]; 5],
    len: usize,
}

impl<'a> Parts<'a> {
    /// Adds `part`, unless it is empty; five non-empty parts at most (a sixth panics).
    pub fn push(&mut self, part: &'a [u8]) {
        if !part.is_empty() {
            self.items[self.len] = part;
            self.len += 1;
        }
    }

    /// Whether no part was pushed (or every one was empty).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Writes every part, in as few syscalls as the socket allows.
pub async fn write_all_parts<W: AsyncWrite + Unpin>(
    w: &mut W,
    parts: &Parts<'_>,
) -> std::io::Result<()> {
    write_parts(w, parts, None).await
}

/// [`write_all_parts`], failing with `TimedOut` when the peer takes nothing for `idle` (a
/// client that stops reading a response, a backend that stops reading an upload: nginx's
/// `send_timeout`, between two successive writes). A write the socket takes at once, as most
/// do, sets no timer.
pub async fn write_all_parts_within<W: AsyncWrite + Unpin>(
    w: &mut W,
    parts: &Parts<'_>,
    idle: std::time::Duration,
) -> std::io::Result<()> {
    write_parts(w, parts, Some(idle)).await
}

/// [`write_all_parts_within`] for bytes already in one piece (a response made by the proxy).
pub async fn write_all_within<W: AsyncWrite + Unpin>(
    w: &mut W,
    bytes: &[u8],
    idle: std::time::Duration,
) -> std::io::Result<()> {
    let mut parts = Parts::default();
    parts.push(bytes);
    write_parts(w, &parts, Some(idle)).await
}

async fn write_parts<W: AsyncWrite + Unpin>(
    w: &mut W,
    parts: &Parts<'_>,
    idle: Option<std::time::Duration>,
) -> std::io::Result<()> {
    let items = &parts.items[..parts.len];
    let total: usize = items.iter().map(|p| p.len()).sum();
    let mut done = 0;
    while done < total {
        let n = within(
            idle,
            std::future::poll_fn(|cx| write_some(w, items, done, cx)),
        )
        .await??;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        done += n;
    }
    within(idle, w.flush()).await?
}

/// Pieces left of up to this many bytes in all are joined into one buffer and written by one
/// send; more go by one vectored write.
const JOIN: usize = 4096;

thread_local! {
    /// Where small pieces are joined, one per thread (a write is made within one poll).
    static JOINED: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(Vec::with_capacity(JOIN));
}

/// One write of `items` from byte `from` on: one piece left as it is; several joined in the
/// thread's buffer when they are small (the kernel's writev takes a third more work than a
/// send for the same bytes: the vectors copied in, the file layer's checks; more than copying
/// a few KiB costs here), else one vectored write.
fn write_some<W: AsyncWrite + Unpin>(
    w: &mut W,
    items: &[&[u8]],
    mut from: usize,
    cx: &mut std::task::Context<'_>,
) -> std::task::Poll<std::io::Result<usize>> {
    // the piece byte `from` is in, and where in it
    let mut i = 0;
    while i < items.len() && from >= items[i].len() {
        from -= items[i].len();
        i += 1;
    }
    let Some(first) = items.get(i) else {
        return std::task::Poll::Ready(Ok(0));
    };
    let first = &first[from..];
    let rest = &items[i + 1..];
    if rest.is_empty() {
        return std::pin::Pin::new(w).poll_write(cx, first);
    }
    let left = first.len() + rest.iter().map(|p| p.len()).sum::<usize>();
    if left > JOIN {
        let mut slices = [IoSlice::new(&[]); 5];
        slices[0] = IoSlice::new(first);
        for (slice, part) in slices[1..].iter_mut().zip(rest) {
            *slice = IoSlice::new(part);
        }
        return std::pin::Pin::new(w).poll_write_vectored(cx, &slices[..=rest.len()]);
    }
    JOINED.with_borrow_mut(|buf| {
        buf.clear();
        buf.extend_from_slice(first);
        for p in rest {
            buf.extend_from_slice(p);
        }
        std::pin::Pin::new(w).poll_write(cx, buf)
    })
}

/// `step`, failing with `TimedOut` when it is not done within `idle` (no limit: `None`); a
/// step that is done at its first poll sets no timer.
async fn within<F: std::future::Future>(
    idle: Option<std::time::Duration>,
    step: F,
) -> std::io::Result<F::Output> {
    let Some(idle) = idle else {
        return Ok(step.await);
    };
    let mut step = std::pin::pin!(step);
    let first = std::future::poll_fn(|cx| {
        std::task::Poll::Ready(std::future::Future::poll(step.as_mut(), cx))
    })
    .await;
    if let std::task::Poll::Ready(done) = first {
        return Ok(done);
    }
    tokio::time::timeout(idle, step)
        .await
        .map_err(|_| std::io::ErrorKind::TimedOut.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn parts_arrive_whole_and_in_order_however_the_peer_takes_them() {
        let head = b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\n";
        let big = vec![b'x'; JOIN];
        // small (joined, written three bytes at a time) and large (vectored)
        for body in [&b"ok\n"[..], &big] {
            let (mut near, mut far) = tokio::io::duplex(3);
            let mut parts = Parts::default();
            parts.push(head);
            parts.push(body);
            parts.push(b"\r\n");
            let reader = tokio::spawn(async move {
                let mut got = Vec::new();
                tokio::io::AsyncReadExt::read_to_end(&mut far, &mut got)
                    .await
                    .map(|_| got)
            });
            write_all_parts(&mut near, &parts).await.unwrap();
            drop(near);
            let want = [&head[..], body, b"\r\n"].concat();
            assert_eq!(reader.await.unwrap().unwrap(), want);
        }
    }

    #[tokio::test]
    async fn a_peer_that_takes_nothing_times_the_write_out() {
        let (mut near, _far) = tokio::io::duplex(16);
        let mut parts = Parts::default();
        parts.push(b"more than sixteen bytes, which the peer never reads");
        let idle = std::time::Duration::from_millis(50);
        let written = write_all_parts_within(&mut near, &parts, idle).await;
        assert_eq!(written.unwrap_err().kind(), std::io::ErrorKind::TimedOut);
        let (mut near, mut far) = tokio::io::duplex(64);
        write_all_parts_within(&mut near, &parts, idle)
            .await
            .unwrap();
        let mut got = vec![0; 51];
        tokio::io::AsyncReadExt::read_exact(&mut far, &mut got)
            .await
            .unwrap();
        assert_eq!(&got, b"more than sixteen bytes, which the peer never reads");
    }

    #[tokio::test]
    async fn a_peer_that_reads_slowly_but_steadily_is_not_timed_out() {
        let (mut near, mut far) = tokio::io::duplex(16);
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut piece = [0u8; 16];
            while let Ok(n) = tokio::io::AsyncReadExt::read(&mut far, &mut piece).await {
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&piece[..n]);
                // pacing, not waiting: the peer takes 16 bytes every 20 ms on purpose
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            got
        });
        let body = vec![b'x'; 320];
        let idle = std::time::Duration::from_millis(100);
        write_all_within(&mut near, &body, idle).await.unwrap();
        drop(near);
        assert_eq!(reader.await.unwrap(), body);
    }
}
