//! Relaying bytes both ways between two streams with an inactivity limit: the TCP layer and
//! upgraded HTTP connections (WebSocket) both use it.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use strata_health::now_ms;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Copies `a` <-> `b` until both sides close, either fails, or nothing moves for `idle`.
/// Returns the bytes sent a -> b and b -> a.
pub(crate) async fn relay<A, B>(a: A, b: B, idle: Duration) -> io::Result<(u64, u64)>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let last = Arc::new(AtomicU64::new(now_ms()));
    let mut a = Tracked {
        inner: a,
        last: last.clone(),
    };
    let mut b = Tracked {
        inner: b,
        last: last.clone(),
    };
    let copy = tokio::io::copy_bidirectional(&mut a, &mut b);
    tokio::pin!(copy);
    let idle_ms = idle.as_millis() as u64;
    let mut wait = idle;
    loop {
        tokio::select! {
            result = &mut copy => return result,
            _ = tokio::time::sleep(wait) => {
                let quiet = now_ms().saturating_sub(last.load(Relaxed));
                if quiet >= idle_ms {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, format!("idle for {idle:?}")));
                }
                wait = Duration::from_millis(idle_ms - quiet);
            }
        }
    }
}

/// Notes the time of every read that returns data; the timer above only wakes once per `idle`.
struct Tracked<T> {
    inner: T,
    last: Arc<AtomicU64>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.last.store(now_ms(), Relaxed);
        }
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
