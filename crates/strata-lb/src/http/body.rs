//! Request and response bodies as they pass through the proxy.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::pool::Checkin;

/// A request body on its way to a backend, cut off past `max_body_size`.
pub(crate) enum ReqBody {
    Empty,
    Stream {
        inner: Incoming,
        seen: u64,
        limit: u64,
    },
}

/// Why a request body could not be forwarded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    #[error("request body larger than {0} bytes")]
    TooLarge(u64),
    #[error("reading the request body: {0}")]
    Client(#[from] hyper::Error),
}

impl ReqBody {
    pub(crate) fn new(inner: Incoming, limit: u64) -> Self {
        if inner.is_end_stream() {
            ReqBody::Empty
        } else {
            ReqBody::Stream {
                inner,
                seen: 0,
                limit,
            }
        }
    }
}

impl Body for ReqBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            ReqBody::Empty => Poll::Ready(None),
            ReqBody::Stream { inner, seen, limit } => match Pin::new(inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(data) = frame.data_ref() {
                        *seen += data.len() as u64;
                        if *seen > *limit {
                            return Poll::Ready(Some(Err(BodyError::TooLarge(*limit))));
                        }
                    }
                    Poll::Ready(Some(Ok(frame)))
                }
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ReqBody::Empty => true,
            ReqBody::Stream { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ReqBody::Empty => SizeHint::with_exact(0),
            ReqBody::Stream { inner, .. } => inner.size_hint(),
        }
    }
}

/// A response body for the client: one the proxy made itself, or a backend's, which hands its
/// connection back to the pool once it has been read to the end.
pub(crate) enum RespBody {
    Local(Option<Bytes>),
    Upstream(UpstreamBody),
}

pub(crate) struct UpstreamBody {
    pub(crate) inner: Incoming,
    pub(crate) checkin: Option<Checkin>,
}

impl RespBody {
    pub(crate) fn local(text: impl Into<Bytes>) -> Self {
        RespBody::Local(Some(text.into()))
    }

    pub(crate) fn upstream(inner: Incoming, checkin: Checkin) -> Self {
        RespBody::Upstream(UpstreamBody {
            inner,
            checkin: Some(checkin),
        })
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        // read to the end (or empty from the start): the connection can serve another request;
        // dropped half-way, it must be closed, which dropping the checkin does
        if self.inner.is_end_stream() {
            if let Some(c) = self.checkin.take() {
                c.give_back();
            }
        }
    }
}

impl Body for RespBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            RespBody::Local(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            RespBody::Upstream(up) => {
                let polled = Pin::new(&mut up.inner).poll_frame(cx);
                match &polled {
                    Poll::Ready(None) => {
                        if let Some(c) = up.checkin.take() {
                            c.give_back();
                        }
                    }
                    Poll::Ready(Some(Err(_))) => drop(up.checkin.take()),
                    _ => {}
                }
                polled
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RespBody::Local(data) => data.is_none(),
            RespBody::Upstream(up) => up.inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RespBody::Local(Some(d)) => SizeHint::with_exact(d.len() as u64),
            RespBody::Local(None) => SizeHint::with_exact(0),
            RespBody::Upstream(up) => up.inner.size_hint(),
        }
    }
}
