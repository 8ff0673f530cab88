//! A client's request body as the request path reads it: the DATA frames the connection
//! queued for the stream, then its trailers. Each piece taken opens the client's flow-control
//! windows again by as much, so what waits unread is bounded by the windows.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::Shared;

/// One stream's request body.
pub(crate) struct ReqBody {
    shared: Arc<Shared>,
    stream: u32,
    /// The stream ended before any DATA: nothing to ask the connection.
    empty: bool,
}

impl ReqBody {
    pub(super) fn new(shared: Arc<Shared>, stream: u32, empty: bool) -> Self {
        ReqBody {
            shared,
            stream,
            empty,
        }
    }
}

fn reset() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::ConnectionReset,
        "the client reset the stream, or its DATA did not add up to its content-length",
    )
}

impl Body for ReqBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if self.empty {
            return Poll::Ready(None);
        }
        let mut inner = self.shared.lock();
        let inner = &mut *inner;
        let Some(s) = inner.streams.get_mut(&self.stream) else {
            return Poll::Ready(Some(Err(reset())));
        };
        if s.failed {
            return Poll::Ready(Some(Err(reset())));
        }
        if let Some(data) = s.queue.pop_front() {
            let n = data.len();
            s.queued -= n;
            inner.consumed(self.stream, n);
            return Poll::Ready(Some(Ok(Frame::data(data.freeze()))));
        }
        if let Some(t) = s.trailers.take() {
            return Poll::Ready(Some(Ok(Frame::trailers(t))));
        }
        if s.remote_end {
            return Poll::Ready(None);
        }
        if !s.reader.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            s.reader = Some(cx.waker().clone());
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        if self.empty {
            return true;
        }
        let inner = self.shared.lock();
        inner.streams.get(&self.stream).is_some_and(|s| {
            s.remote_end && s.queue.is_empty() && s.trailers.is_none() && !s.failed
        })
    }

    fn size_hint(&self) -> SizeHint {
        if self.empty {
            SizeHint::with_exact(0)
        } else {
            SizeHint::default()
        }
    }
}

impl Drop for ReqBody {
    fn drop(&mut self) {
        if !self.empty {
            self.shared.lock().body_dropped(self.stream);
        }
    }
}
