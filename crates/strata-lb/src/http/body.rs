//! Response bodies for HTTP/2 clients: one the proxy made itself, or a backend's, read off its
//! HTTP/1.1 connection as the client takes it; the connection goes back to the pool when the
//! body ended cleanly.

use std::pin::Pin;
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
use super::Site;
use hyper::body::Incoming;
use strata_net::buffers;
use strata_net::Deadline;

pub(crate) enum RespBody {
    Local(Option<Bytes>),
    Backend(Box<BackendBody>),
    /// A backend's answer over HTTP/2: data and trailers as they come.
    H2(Box<H2Body>),
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
    pub(crate) fn local(text: impl Into<Bytes>) -> Self {
        RespBody::Local(Some(text.into()))
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
        RespBody::Backend(Box::new(body))
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
        .get_or_insert_with(|| Deadline::new(&site.timers, Instant::now() + idle))
        .poll_expired(cx)
        .is_ready()
}

impl RespBody {
    /// The body of a backend's HTTP/2 answer.
    pub(crate) fn h2(site: Arc<Site>, body: Incoming, stream: Stream, in_flight: InFlight) -> Self {
        let idle = site.config.idle_timeout;
        let ended = body.is_end_stream();
        RespBody::H2(Box::new(H2Body {
            body,
            site,
            idle,
            quiet: None,
            held: (!ended).then_some((stream, in_flight)),
        }))
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
                    quiet.set(Instant::now() + self.idle);
                }
                if self.body.is_end_stream() {
                    self.held = None;
                }
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
                    .put(self.index, conn, std::time::Instant::now());
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
        let up = match self.get_mut() {
            RespBody::Local(data) => return Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            RespBody::Backend(up) => up,
            RespBody::H2(h2) => return h2.poll(cx),
        };
        let Some(conn) = up.conn.as_mut() else {
            return Poll::Ready(None);
        };
        match up.reader.poll_next(cx, &mut conn.io, &mut up.buf) {
            Poll::Ready(Ok(Some(data))) => {
                if let Some(quiet) = &mut up.quiet {
                    quiet.set(Instant::now() + up.idle);
                }
                Poll::Ready(Some(Ok(Frame::data(data))))
            }
            Poll::Ready(Ok(None)) => {
                up.finish();
                Poll::Ready(None)
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

    fn is_end_stream(&self) -> bool {
        match self {
            RespBody::Local(data) => data.is_none(),
            RespBody::Backend(up) => up.conn.is_none(),
            RespBody::H2(h2) => h2.held.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RespBody::Local(Some(d)) => SizeHint::with_exact(d.len() as u64),
            RespBody::Local(None) => SizeHint::with_exact(0),
            RespBody::Backend(up) => match up.reader.remaining() {
                Some(n) if up.conn.is_some() => SizeHint::with_exact(n),
                Some(_) => SizeHint::with_exact(0),
                None => SizeHint::default(),
            },
            RespBody::H2(h2) if h2.held.is_none() => SizeHint::with_exact(0),
            RespBody::H2(h2) => h2.body.size_hint(),
        }
    }
}
