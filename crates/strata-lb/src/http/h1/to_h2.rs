//! HTTP/1.x clients' requests to backends that speak HTTP/2: the request body is pumped off the
//! client connection onto the stream while the answer is awaited; the answer's head goes
//! through the same HTTP/1.1 head rules as an HTTP/1.1 backend's (Via, hop-by-hop fields,
//! keep-alive, framing for the client's version), its data is re-chunked as it arrives, and its
//! trailers reach a client that said `TE: trailers`.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use super::body::{BodyError, BodyReader};
use super::codec::{
    chunk_header, parse_response, Asked, Framing, ParseError, RequestHead, Version, LAST_CHUNK,
};
use super::rewrite::{response_head, takes_trailers, Relay};
use super::server::{answer, body_piece, Next};
use crate::http::h2_backend::{self, backend_head, BoxError, Pool, Replay};
use crate::http::proxy::{error_text, key, status};
use crate::http::{HttpService, Peer, Site};
use strata_config::BackendProtocol;
use strata_net::{write_all_parts_within, Parts};
use strata_upstream::{Failure, Kind, Retry, Stage};

/// A piece of the request body on its way from the client connection to the stream.
enum Piece {
    Data(Bytes),
    /// The body ended where its framing said, with these trailers, if any.
    End(Option<HeaderMap>),
}

/// The request body as the HTTP/2 stream takes it, and whether it has ended. A channel closed
/// without [`Piece::End`] is a body cut short: an error, so that the backend never sees a
/// truncated body end cleanly.
struct Pumped(mpsc::Receiver<Piece>, bool);

impl Body for Pumped {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.1 {
            return Poll::Ready(None);
        }
        match self.0.poll_recv(cx) {
            Poll::Ready(Some(Piece::Data(d))) => Poll::Ready(Some(Ok(Frame::data(d)))),
            Poll::Ready(Some(Piece::End(trailers))) => {
                self.1 = true;
                self.0.close();
                Poll::Ready(trailers.map(|t| Ok(Frame::trailers(t))))
            }
            Poll::Ready(None) => Poll::Ready(Some(Err("the client's body was cut short".into()))),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Proxies one HTTP/1.x request to HTTP/2 backends. `head` is the request as rewritten for
/// backends; `keep` whether the client connection may carry on (not draining).
#[allow(clippy::too_many_arguments)]
pub(super) async fn proxy<'s, S>(
    svc: &HttpService,
    site: &'s Site,
    pool: &Pool,
    req: &RequestHead,
    head: &[u8],
    io: &mut S,
    buf: &mut BytesMut,
    peer: &Peer,
    keep: bool,
    started: Instant,
) -> (u16, Option<&'s str>, Next)
where
    S: AsyncRead + AsyncWrite + Send + Unpin,
{
    let cfg = &site.config;
    let framing = req.head.framing;
    let te_trailers = takes_trailers(&req.head);
    let tls = matches!(cfg.backend_protocol, BackendProtocol::H2(_));
    let can_keep = keep && req.head.keep_alive && framing == Framing::Empty;
    let Some(out) = backend_head(head, tls, te_trailers) else {
        let f = Failure::new(Stage::Client, Kind::BadRequest, Retry::Never);
        let code = status(&f).as_u16();
        return (
            code,
            None,
            answer(
                io,
                cfg.idle_timeout,
                code,
                &error_text(&f, &svc.name),
                false,
                &[],
            )
            .await,
        );
    };
    let method = http::Method::from_bytes(req.method()).unwrap_or(http::Method::POST);
    let key = key(site, req, peer.addr.ip());

    let (tx, rx) = mpsc::channel(2);
    let origin = if framing == Framing::Empty {
        Replay::new(http_body_util::Empty::<Bytes>::new(), 0)
    } else {
        Replay::new(Pumped(rx, false), u64::MAX)
    };
    let mut reader = BodyReader::new(framing);
    let (limit, idle) = (cfg.max_body_size, cfg.idle_timeout);
    let (answered, pumped) = {
        let pump = pump(&mut reader, &mut *io, &mut *buf, tx, limit, idle);
        let exchange = h2_backend::exchange(svc, site, pool, &out, &origin, &method, key, started);
        tokio::pin!(pump, exchange);
        let mut pumped = framing == Framing::Empty;
        let answered = loop {
            tokio::select! {
                answered = &mut exchange => break answered,
                done = &mut pump, if !pumped => match done {
                    Ok(()) => pumped = true,
                    // the client's body is unreadable or too large: the request stops here
                    Err(f) => break Err((f, None)),
                },
            }
        };
        // an answer before the whole body: the rest is still read (the backend may want
        // it), for as long as the client keeps sending
        if answered.is_ok() && !pumped {
            pumped = matches!(tokio::time::timeout(idle, &mut pump).await, Ok(Ok(())));
        }
        (answered, pumped)
    };
    let a = match answered {
        Ok(a) => a,
        Err((failure, backend)) => {
            let code = status(&failure).as_u16();
            let text = error_text(&failure, &svc.name);
            let next = answer(io, idle, code, &text, can_keep, &[]).await;
            return (code, backend.map(|b| b.name.as_str()), next);
        }
    };
    let name = a.backend.name.as_str();
    let code = a.resp.status().as_u16();
    let asked = if method == http::Method::HEAD {
        Asked::Head
    } else {
        Asked::Other
    };
    let (parts, mut body) = a.resp.into_parts();
    let Some(mut resp) = h1_response(&parts, body.is_end_stream(), asked) else {
        tracing::debug!(listener = %svc.name, backend = %name, "an HTTP/2 answer could not be written as HTTP/1.1");
        let f = Failure::new(Stage::Request, Kind::Protocol, Retry::Never);
        let next = answer(io, idle, 502, &error_text(&f, &svc.name), false, &[]).await;
        return (502, Some(name), next);
    };
    resp.head.version = Version::Http2;
    let keep = keep && pumped && req.head.keep_alive;
    let mut out = Vec::with_capacity(512);
    let (mode, client_keep) = response_head(&resp, &req.head, keep, &mut out);
    let trailers_ok = te_trailers && mode == Relay::Chunked;
    // what the head framed is all the client may get: data after a 204, a 304 or a HEAD's
    // answer, or past a Content-Length, would be read as the next response
    let allowed = match resp.head.framing {
        Framing::Empty => Some(0),
        Framing::Length(n) => Some(n),
        Framing::Chunked | Framing::Close => None,
    };
    let relayed = relay(io, &mut body, out, (mode, allowed), trailers_ok, idle).await;
    drop((a.stream, a.in_flight));
    match relayed {
        Ok(()) if client_keep => (code, Some(name), Next::KeepAlive),
        Ok(()) => (code, Some(name), Next::Close),
        Err(e) => {
            tracing::debug!(listener = %svc.name, backend = %name, error = %e, "response relay ended early");
            (code, Some(name), Next::Close)
        }
    }
}

/// Moves the client's request body onto the stream; Ok once it has all gone. Stops quietly
/// when the stream no longer takes it (the backend answered, or the try failed and the next
/// one reads what was kept).
async fn pump<R: AsyncRead + Unpin>(
    reader: &mut BodyReader,
    io: &mut R,
    buf: &mut BytesMut,
    tx: mpsc::Sender<Piece>,
    limit: u64,
    idle: Duration,
) -> Result<(), Failure> {
    let mut sent = 0u64;
    loop {
        let piece = body_piece(reader, io, buf, idle)
            .await
            .map_err(|e| Failure::new(Stage::Client, Kind::BadRequest, Retry::Never).because(e))?;
        let piece = match piece {
            Some(p) => {
                sent += p.len() as u64;
                if sent > limit {
                    return Err(Failure::new(Stage::Client, Kind::TooLarge, Retry::Never));
                }
                Piece::Data(p)
            }
            None => Piece::End(crate::http::trailers::to_map(&reader.take_trailers())),
        };
        let end = matches!(piece, Piece::End(_));
        if tx.send(piece).await.is_err() || end {
            return Ok(());
        }
    }
}

/// The HTTP/2 answer's head as an HTTP/1.1 backend would have written it, read back by the
/// codec so that the client gets it through the one set of head rules. A body of unknown
/// length is marked chunked.
fn h1_response(
    parts: &http::response::Parts,
    ended: bool,
    asked: Asked,
) -> Option<super::codec::ResponseHead> {
    let mut raw = BytesMut::with_capacity(256);
    raw.extend_from_slice(b"HTTP/1.1 ");
    raw.extend_from_slice(parts.status.as_str().as_bytes());
    raw.extend_from_slice(b" ");
    raw.extend_from_slice(parts.status.canonical_reason().unwrap_or("").as_bytes());
    raw.extend_from_slice(b"\r\n");
    let mut headers = parts.headers.clone();
    h2_backend::strip_hop(&mut headers);
    fields(&headers, &mut raw);
    let bodiless = ended || parts.status.as_u16() == 204 || parts.status.as_u16() == 304;
    if !headers.contains_key(http::header::CONTENT_LENGTH) && !bodiless {
        raw.extend_from_slice(b"transfer-encoding: chunked\r\n");
    } else if ended && !headers.contains_key(http::header::CONTENT_LENGTH) && asked != Asked::Head {
        raw.extend_from_slice(b"content-length: 0\r\n");
    }
    raw.extend_from_slice(b"\r\n");
    let max = raw.len();
    parse_response(&mut raw, max, asked).ok().flatten()
}

fn fields(headers: &HeaderMap, out: &mut BytesMut) {
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// Writes `head`, then the answer's data as `mode` frames it, and its trailers in the last
/// chunk when the client takes them.
async fn relay<S: AsyncWrite + Unpin>(
    io: &mut S,
    body: &mut hyper::body::Incoming,
    head: Vec<u8>,
    (mode, allowed): (Relay, Option<u64>),
    trailers_ok: bool,
    idle: Duration,
) -> Result<(), BodyError> {
    let mut head = Some(head);
    let mut sent = 0u64;
    let mut line = Vec::new();
    let mut tail = BytesMut::new();
    loop {
        let frame = if body.is_end_stream() {
            None
        } else {
            match tokio::time::timeout(idle, body.frame()).await {
                Ok(Some(Ok(frame))) => Some(frame),
                Ok(Some(Err(e))) => return Err(BodyError::Io(std::io::Error::other(e))),
                Ok(None) => None,
                Err(_) => return Err(BodyError::quiet(idle)),
            }
        };
        let mut parts = Parts::default();
        if let Some(h) = &head {
            parts.push(h);
        }
        line.clear();
        let mut done = frame.is_none();
        let data = match frame.map(Frame::into_data) {
            Some(Ok(data)) => {
                sent += data.len() as u64;
                if allowed.is_some_and(|n| sent > n) {
                    return Err(BodyError::Framing(ParseError::Malformed(
                        "the backend sent data its answer's head did not frame",
                    )));
                }
                Some(data)
            }
            Some(Err(frame)) => {
                // trailers end the body
                done = true;
                if let (Ok(t), true) = (frame.into_trailers(), trailers_ok) {
                    tail.extend_from_slice(b"0\r\n");
                    tail.extend_from_slice(&crate::http::trailers::to_lines(&t));
                    tail.extend_from_slice(b"\r\n");
                }
                None
            }
            None => None,
        };
        match (&data, mode) {
            (Some(d), Relay::Chunked) if !d.is_empty() => {
                chunk_header(d.len(), &mut line);
                parts.push(&line);
                parts.push(d);
                parts.push(b"\r\n");
            }
            (Some(d), _) => parts.push(d),
            (None, _) => {}
        }
        if done && mode == Relay::Chunked {
            parts.push(if tail.is_empty() { LAST_CHUNK } else { &tail });
        }
        if !parts.is_empty() {
            write_all_parts_within(io, &parts, idle).await?;
        }
        head = None;
        if done {
            return Ok(());
        }
    }
}
