//! Response bodies for HTTP/2 clients: one the proxy made itself, or a backend's, read off its
//! HTTP/1.1 connection as the client takes it; the connection goes back to the pool when the
//! body ended cleanly.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use strata_health::InFlight;
use tokio::time::Instant;

use super::h1::body::{BodyError, BodyReader};
use super::h1::client::Conn;
use super::h2_backend::Stream;
use super::trailers;
use super::Site;
use hyper::body::Incoming;
use strata_net::Deadline;
use strata_net::{buffers, now_ms};

/// An answer's body for an HTTP/2 client: where it comes from, and the connection's progress
/// it reports to.
pub(crate) struct RespBody {
    source: Source,
    /// The client connection's progress, and whether this body waits for the client to take
    /// what it last gave.
    progress: Option<(Arc<Progress>, bool)>,
}

enum Source {
    Local(Option<Bytes>),
    Backend(Box<BackendBody>),
    /// A backend's answer over HTTP/2: data and trailers as they come.
    H2(Box<H2Body>),
}

/// What an HTTP/2 client connection knows of its answers' progress, to find a client that
/// takes no data (a zero flow-control window, or a socket it does not read): how many answers
/// wait for the client to take what they gave, and when data was last taken from any of them.
#[derive(Debug)]
pub(crate) struct Progress {
    waiting: AtomicUsize,
    last_ms: AtomicU64,
}

impl Progress {
    pub(crate) fn new() -> Self {
        Progress {
            waiting: AtomicUsize::new(0),
            last_ms: AtomicU64::new(now_ms()),
        }
    }

    /// Answers wait for the client, and it has taken nothing from any answer for `limit`.
    pub(crate) fn stalled(&self, limit: Duration) -> bool {
        self.waiting.load(Ordering::Relaxed) > 0
            && now_ms().saturating_sub(self.last_ms.load(Ordering::Relaxed))
                > limit.as_millis() as u64
    }
}

/// The rest of a backend's answer over HTTP/2.
pub(crate) struct H2Body {
    body: Incoming,
    site: Arc<Site>,
    /// How long the backend may go quiet in the middle of the body.
    idle: Duration,
    quiet: Option<Deadline>,
    /// The stream's place on its connection and the request's in-flight count, held until the
    /// body ends or the client drops it.
    held: Option<(Stream, InFlight)>,
}

/// The rest of a backend's answer.
pub(crate) struct BackendBody {
    site: Arc<Site>,
    index: usize,
    /// `None` once the body ended or failed.
    conn: Option<Conn>,
    buf: BytesMut,
    reader: BodyReader,
    /// The connection may carry another request after this body.
    keep_alive: bool,
    /// How long the backend may go quiet in the middle of the body.
    idle: Duration,
    /// Armed the first time the backend makes the client wait.
    quiet: Option<Deadline>,
    /// Counts the request as in flight until the body ends or the client drops it.
    in_flight: Option<InFlight>,
}

impl RespBody {
    fn of(source: Source) -> Self {
        RespBody {
            source,
            progress: None,
        }
    }

    pub(crate) fn local(text: impl Into<Bytes>) -> Self {
        RespBody::of(Source::Local(Some(text.into())))
    }

    /// No body at all: the answer ends with its headers.
    pub(crate) fn empty() -> Self {
        RespBody::of(Source::Local(None))
    }

    /// Reports this body's progress to its client connection's. Until hyper first takes from
    /// it, the body waits for the client (hyper takes nothing while the client's window is
    /// shut).
    pub(crate) fn watched(mut self, progress: &Arc<Progress>) -> Self {
        progress.last_ms.store(now_ms(), Ordering::Relaxed);
        let waiting = !self.source.ended();
        if waiting {
            progress.waiting.fetch_add(1, Ordering::Relaxed);
        }
        self.progress = Some((progress.clone(), waiting));
        self
    }

    /// The body that follows a backend's head; `buf` holds what was read past the head.
    pub(crate) fn backend(
        site: Arc<Site>,
        index: usize,
        conn: Conn,
        buf: BytesMut,
        reader: BodyReader,
        keep_alive: bool,
        in_flight: InFlight,
    ) -> Self {
        let idle = site.config.idle_timeout;
        let mut body = BackendBody {
            site,
            index,
            conn: Some(conn),
            buf,
            reader,
            keep_alive,
            idle,
            quiet: None,
            in_flight: Some(in_flight),
        };
        if body.reader.is_done() {
            body.finish();
        }
        RespBody::of(Source::Backend(Box::new(body)))
    }
}

/// A body that has to wait: whether the backend has now been quiet for `idle` (the deadline is
/// armed the first time it makes the client wait, and moved on by each piece).
fn quiet_too_long(
    quiet: &mut Option<Deadline>,
    site: &Site,
    idle: Duration,
    cx: &mut Context<'_>,
) -> bool {
    quiet
        .get_or_insert_with(|| {
            Deadline::new(
                &site.timers,
                Instant::from_std(strata_net::clock::now()) + idle,
            )
        })
        .poll_expired(cx)
        .is_ready()
}

impl RespBody {
    /// The body of a backend's HTTP/2 answer.
    pub(crate) fn h2(site: Arc<Site>, body: Incoming, stream: Stream, in_flight: InFlight) -> Self {
        let idle = site.config.idle_timeout;
        let ended = body.is_end_stream();
        RespBody::of(Source::H2(Box::new(H2Body {
            body,
            site,
            idle,
            quiet: None,
            held: (!ended).then_some((stream, in_flight)),
        })))
    }
}

impl H2Body {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if self.held.is_none() {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(quiet) = &mut self.quiet {
                    quiet.set(Instant::from_std(strata_net::clock::now()) + self.idle);
                }
                if self.body.is_end_stream() {
                    self.held = None;
                }
                // a backend's trailers lose the fields no trailer may carry
                let frame = match frame.into_trailers() {
                    Ok(mut t) => {
                        trailers::filter(&mut t);
                        Frame::trailers(t)
                    }
                    Err(frame) => frame,
                };
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => {
                self.held = None;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                self.held = None;
                Poll::Ready(Some(Err(BodyError::Io(std::io::Error::other(e)))))
            }
            Poll::Pending => {
                if quiet_too_long(&mut self.quiet, &self.site, self.idle, cx) {
                    self.held = None;
                    return Poll::Ready(Some(Err(BodyError::quiet(self.idle))));
                }
                Poll::Pending
            }
        }
    }
}

impl BackendBody {
    /// The body ended where its framing said: the connection is reused if nothing followed.
    fn finish(&mut self) {
        if let Some(conn) = self.conn.take() {
            if self.keep_alive && self.buf.is_empty() {
                self.site
                    .h1_pool
                    .put(self.index, conn, strata_net::clock::now());
            }
        }
        buffers::give(std::mem::take(&mut self.buf));
        self.in_flight = None;
    }
}

impl Body for RespBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        if let Some((progress, waiting)) = &mut this.progress {
            progress.last_ms.store(now_ms(), Ordering::Relaxed);
            if std::mem::take(waiting) {
                progress.waiting.fetch_sub(1, Ordering::Relaxed);
            }
        }
        let polled = this.source.poll(cx);
        if let (Some((progress, waiting)), Poll::Ready(Some(Ok(_)))) = (&mut this.progress, &polled)
        {
            if !this.source.ended() {
                *waiting = true;
                progress.waiting.fetch_add(1, Ordering::Relaxed);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.source.ended()
    }

    fn size_hint(&self) -> SizeHint {
        self.source.size_hint()
    }
}

impl Drop for RespBody {
    fn drop(&mut self) {
        if let Some((progress, true)) = &self.progress {
            progress.waiting.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Source {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let up = match self {
            Source::Local(data) => return Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            Source::Backend(up) => up,
            Source::H2(h2) => return h2.poll(cx),
        };
        let Some(conn) = up.conn.as_mut() else {
            return Poll::Ready(None);
        };
        match up.reader.poll_next(cx, &mut conn.io, &mut up.buf) {
            Poll::Ready(Ok(Some(data))) => {
                if let Some(quiet) = &mut up.quiet {
                    quiet.set(Instant::from_std(strata_net::clock::now()) + up.idle);
                }
                Poll::Ready(Some(Ok(Frame::data(data))))
            }
            Poll::Ready(Ok(None)) => {
                // a chunked answer's trailers end the stream as a HEADERS frame
                let trailers = trailers::to_map(&up.reader.take_trailers());
                up.finish();
                Poll::Ready(trailers.map(|t| Ok(Frame::trailers(t))))
            }
            Poll::Ready(Err(e)) => {
                up.conn = None;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Pending => {
                if quiet_too_long(&mut up.quiet, &up.site, up.idle, cx) {
                    up.conn = None;
                    return Poll::Ready(Some(Err(BodyError::quiet(up.idle))));
                }
                Poll::Pending
            }
        }
    }

    fn ended(&self) -> bool {
        match self {
            Source::Local(data) => data.is_none(),
            Source::Backend(up) => up.conn.is_none(),
            Source::H2(h2) => h2.held.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Source::Local(Some(d)) => SizeHint::with_exact(d.len() as u64),
            Source::Local(None) => SizeHint::with_exact(0),
            Source::Backend(up) => match up.reader.remaining() {
                Some(n) if up.conn.is_some() => SizeHint::with_exact(n),
                Some(_) => SizeHint::with_exact(0),
                None => SizeHint::default(),
            },
            Source::H2(h2) if h2.held.is_none() => SizeHint::with_exact(0),
            Source::H2(h2) => h2.body.size_hint(),
        }
    }
}
