//! Watching a connection for inactivity when its reads and writes happen inside someone else's
//! state machine (hyper's): the stream notes when bytes last moved, and a timer reads that.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{sleep_until, Instant};

/// When bytes last moved on one connection, in either direction.
#[derive(Debug)]
pub struct Activity {
    origin: Instant,
    /// Milliseconds from `origin` to the last read or write that moved bytes.
    last: AtomicU64,
}

impl Activity {
    /// Starts counting now, as if bytes had just moved.
    pub fn new() -> Arc<Self> {
        Arc::new(Activity {
            origin: Instant::now(),
            last: AtomicU64::new(0),
        })
    }

    fn touch(&self) {
        let ms = self.origin.elapsed().as_millis() as u64;
        self.last.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.origin + Duration::from_millis(self.last.load(Ordering::Relaxed))
    }

    /// Resolves once no bytes have moved for `limit`. The timer is armed for the earliest
    /// moment that could be it and armed again only when bytes moved meanwhile, so traffic
    /// costs one clock read per read or write and no timer work.
    pub async fn idle(&self, limit: Duration) {
        loop {
            let at = self.last() + limit;
            if Instant::now() >= at {
                return;
            }
            sleep_until(at).await;
        }
    }
}

/// A stream that notes in its [`Activity`] every read and write that moves bytes.
#[derive(Debug)]
pub struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> Watched<S> {
    /// Wraps `inner`, noting its traffic in `activity`.
    pub fn new(inner: S, activity: Arc<Activity>) -> Self {
        Watched { inner, activity }
    }

    fn note(&self, written: &Poll<io::Result<usize>>) {
        if matches!(written, Poll::Ready(Ok(n)) if *n > 0) {
            self.activity.touch();
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.note(&polled);
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.note(&polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn idle_counts_from_the_last_bytes_moved_either_way() {
        let (near, mut far) = tokio::io::duplex(64);
        let activity = Activity::new();
        let mut watched = Watched::new(near, activity.clone());
        let start = Instant::now();
        let limit = Duration::from_secs(1);
        let watch = tokio::spawn({
            let activity = activity.clone();
            async move { activity.idle(limit).await }
        });

        // the clock is paused: these sleeps move the test's time, they wait for nothing
        tokio::time::sleep(Duration::from_millis(600)).await;
        watched.write_all(b"out").await.unwrap();
        tokio::time::sleep(Duration::from_millis(600)).await;
        far.write_all(b"in").await.unwrap();
        let mut got = [0u8; 2];
        watched.read_exact(&mut got).await.unwrap();
        assert!(!watch.is_finished());

        watch.await.unwrap();
        assert_eq!(Instant::now() - start, Duration::from_millis(2200));
    }
}
