//! One HTTP/1.x client connection: read a head, proxy the exchange, repeat while keep-alive
//! holds. Buffers exist only while a request is in progress, so an idle keep-alive connection
//! costs little more than its socket.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::body::{BodyError, BodyReader};
use super::client::Conn;
use super::codec::{
    chunk_header, last_chunk, parse_request, Framing, RequestHead, ResponseHead, LAST_CHUNK,
};
use super::rewrite::{local_response, request_head, response_head, takes_trailers, Relay};
use crate::http::proxy::{
    allow_upgrade, answer_first, error_text, forward, key, record, refusal, status, Answer,
    BodySource, Outbound,
};
use crate::http::Peer;
use crate::http::{HttpService, Open, Site};
use strata_net::buffers::{self, fill};
use strata_net::relay;
use strata_net::Arrival;
use strata_net::{write_all_parts_within, write_all_within, Parts};
use strata_net::{Admitted, Deadline};

/// Whether the client connection carries on after an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    KeepAlive,
    Close,
    /// Closed while waiting for a request's first bytes (timeout or drain): nothing was
    /// sent, so there is nothing to linger for.
    Quit,
}

/// What an HTTP/1.x connection keeps between requests, and nothing more: its socket, its
/// client, its deadline (the head's limit, then the backend's), the drain it watches, its place
/// in the listener's limit. Everything a request needs beyond that (its head, the config
/// generation, the exchange's state, the read buffer) lives in a box made when the request's
/// first bytes arrive.
pub(crate) struct Kept<S> {
    pub(crate) open: Open,
    pub(crate) io: S,
    pub(crate) client: SocketAddr,
    pub(crate) tls: bool,
    pub(crate) deadline: Deadline,
    pub(crate) drain: CancellationToken,
    pub(crate) _admitted: Admitted,
}

impl<S> Kept<S> {
    /// A new connection's, its deadline the head's limit from now.
    pub(crate) fn new(
        open: Open,
        io: S,
        client: SocketAddr,
        tls: bool,
        drain: CancellationToken,
        admitted: Admitted,
    ) -> Self {
        let deadline = {
            let site = open.service().site.load();
            let at = tokio::time::Instant::from_std(strata_net::clock::now())
                + site.config.header_timeout;
            Deadline::new(&site.timers, at)
        };
        Kept {
            open,
            io,
            client,
            tls,
            deadline,
            drain,
            _admitted: admitted,
        }
    }
}

/// Serves HTTP/1.x on a connection until the client closes, keep-alive ends, or the drain
/// fires between requests: read a head, proxy the exchange, repeat.
///
/// Written as a state machine rather than an async fn, so that an idle keep-alive connection's
/// task holds exactly [`Kept`] (an async fn keeps its arguments for its whole life, and each
/// awaited call its own copies): its task is 256 bytes.
pub(crate) enum Serve<S> {
    /// Waiting for the next request's first bytes.
    Idle {
        kept: Kept<S>,
        checked: bool,
    },
    Busy(Request<S>),
    Closing(Pin<Box<dyn Future<Output = ()> + Send>>),
    Done,
}

/// A request in progress: it hands back the connection, the bytes read past it, and what next.
type Request<S> = Pin<Box<dyn Future<Output = (Kept<S>, BytesMut, Next)> + Send>>;

impl<S> Serve<S>
where
    S: AsyncRead + AsyncWrite + Arrival + Send + Unpin + 'static,
{
    /// Serves `kept`'s connection; `buf` holds bytes already read from it.
    pub(crate) fn new(kept: Kept<S>, buf: BytesMut) -> Self {
        if buf.is_empty() {
            buffers::give(buf);
            Serve::Idle {
                kept,
                checked: false,
            }
        } else {
            Serve::Busy(Box::pin(request_owned(kept, buf)))
        }
    }

    /// What follows a request.
    fn after(mut kept: Kept<S>, buf: BytesMut, next: Next) -> Self {
        match next {
            Next::Quit => Serve::Done,
            Next::KeepAlive if !strata_net::drain::is_cancelled(&kept.drain) => {
                // the next head's limit (the deadline was the backend's until now)
                let header_timeout = kept.open.service().site.load().config.header_timeout;
                kept.deadline
                    .set(tokio::time::Instant::from_std(strata_net::clock::now()) + header_timeout);
                Serve::new(kept, buf)
            }
            Next::KeepAlive | Next::Close => Serve::Closing(Box::pin(close(kept))),
        }
    }
}

impl<S> Future for Serve<S>
where
    S: AsyncRead + AsyncWrite + Arrival + Send + Unpin + 'static,
{
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        loop {
            match this {
                Serve::Idle { kept, checked } => match idle(kept, checked, cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(false) => *this = Serve::Done,
                    Poll::Ready(true) => {
                        let Serve::Idle { kept, .. } = std::mem::replace(this, Serve::Done) else {
                            unreachable!()
                        };
                        // bytes are there: the request reads them into a buffer at once, without
                        // asking the socket again whether they arrived
                        *this = Serve::Busy(Box::pin(request_owned(kept, buffers::take())));
                    }
                },
                Serve::Busy(request) => {
                    let (kept, buf, next) = ready!(request.as_mut().poll(cx));
                    *this = Serve::after(kept, buf, next);
                }
                Serve::Closing(closing) => {
                    ready!(closing.as_mut().poll(cx));
                    *this = Serve::Done;
                }
                Serve::Done => return Poll::Ready(()),
            }
        }
    }
}

/// Waits for a keep-alive connection's next request to start arriving: true when it does;
/// false when its deadline passes first, the client leaves, or the listener drains.
fn idle<S: Arrival>(kept: &mut Kept<S>, checked: &mut bool, cx: &mut Context<'_>) -> Poll<bool> {
    strata_net::poll_idle(&kept.io, checked, &mut kept.deadline, &kept.drain, cx)
}

/// One request on a connection, owning what the connection keeps until it is done.
async fn request_owned<S>(mut kept: Kept<S>, mut buf: BytesMut) -> (Kept<S>, BytesMut, Next)
where
    S: AsyncRead + AsyncWrite + Arrival + Send + Unpin,
{
    let peer = Peer::new(kept.client, kept.tls);
    let Kept {
        open,
        io,
        deadline,
        drain,
        ..
    } = &mut kept;
    let next = request(open.service(), io, &mut buf, &peer, drain, deadline).await;
    (kept, buf, next)
}

/// Reads one request head (by `deadline`, set to the head's limit) and proxies the request.
async fn request<S>(
    svc: &Arc<HttpService>,
    io: &mut S,
    buf: &mut BytesMut,
    peer: &Peer,
    drain: &CancellationToken,
    deadline: &mut Deadline,
) -> Next
where
    S: AsyncRead + AsyncWrite + Arrival + Send + Unpin,
{
    let site = svc.site.load_full();
    let max_head = site.config.max_header_size as usize;
    let req = loop {
        match parse_request(buf, max_head) {
            Ok(Some(mut req)) => {
                allow_upgrade(&mut req, &site.config.upgrades);
                break req;
            }
            Ok(None) => {}
            Err(e) => {
                let (status, text) = refusal(&e);
                tracing::debug!(listener = %svc.name, client = %peer.addr, error = %e, "bad request head");
                svc.stats.responses[3].inc();
                let response = local_response(status, text, false, &[]);
                let _ = write_all_within(io, &response, site.config.idle_timeout).await;
                return Next::Close;
            }
        }
        // nothing of a head yet (a TLS connection can't tell arrival from bytes): a drain
        // closes it like an idle one
        let waiting = buf.is_empty();
        let read = tokio::select! {
            biased;
            r = fill(io, buf) => Ok(r),
            _ = deadline.expired() => Err(()),
            _ = drain.cancelled(), if waiting => return Next::Quit,
        };
        match read {
            Ok(Ok(0)) | Ok(Err(_)) => return Next::Close,
            Ok(Ok(_)) => {}
            // bytes arrived and then nothing: the client gets told
            Err(_) if !buf.is_empty() => {
                svc.stats.header_timeouts.inc();
                let text = "strata: the request head took too long\n";
                let response = local_response(408, text, false, &[]);
                let _ = write_all_within(io, &response, site.config.idle_timeout).await;
                return Next::Close;
            }
            Err(_) => return Next::Quit,
        }
    };
    exchange(svc, &site, &req, io, buf, peer, drain, deadline).await
}

/// Ends the connection: what was written goes out, then a lingering close. The connection
/// counts as open until it is done.
async fn close<S: AsyncRead + AsyncWrite + Unpin>(mut kept: Kept<S>) {
    strata_net::close_lingering(&mut kept.io).await;
}

/// Proxies one request and records it.
#[allow(clippy::too_many_arguments)]
async fn exchange<S>(
    svc: &HttpService,
    site: &Site,
    req: &RequestHead,
    io: &mut S,
    buf: &mut BytesMut,
    peer: &Peer,
    drain: &CancellationToken,
    deadline: &mut Deadline,
) -> Next
where
    S: AsyncRead + AsyncWrite + Arrival + Send + Unpin,
{
    let started = strata_net::clock::now();
    svc.stats.requests.inc();
    let (status, backend, next) =
        proxy(svc, site, req, io, buf, peer, drain, deadline, started).await;
    record(svc, site, peer, req, status, backend, started);
    next
}

/// Writes a response the proxy made; answers the status for the records.
pub(super) async fn answer<S: AsyncWrite + Unpin>(
    io: &mut S,
    idle: std::time::Duration,
    status: u16,
    text: &str,
    keep_alive: bool,
    extra: &[(&str, &str)],
) -> Next {
    // a client that reads none of it (a pipeline of refused requests) is let go
    let response = local_response(status, text, keep_alive, extra);
    let ok = write_all_within(io, &response, idle).await.is_ok();
    if ok && keep_alive {
        Next::KeepAlive
    } else {
        Next::Close
    }
}

#[allow(clippy::too_many_arguments)]
async fn proxy<'s, S>(
    svc: &HttpService,
    site: &'s Site,
    req: &RequestHead,
    io: &mut S,
    buf: &mut BytesMut,
    peer: &Peer,
    drain: &CancellationToken,
    deadline: &mut Deadline,
    started: Instant,
) -> (u16, Option<&'s str>, Next)
where
    S: AsyncRead + AsyncWrite + Arrival + Send + Unpin,
{
    let cfg = &site.config;
    let framing = req.head.framing;
    // a body we don't read leaves the connection unusable for another request; so do the tunnel
    // bytes that may follow a CONNECT
    let can_keep = framing == Framing::Empty && req.head.keep_alive && req.method() != b"CONNECT";
    if let Some(local) = answer_first(svc, site, req) {
        let location = local.location.as_deref().map(|l| ("location", l));
        let extra: &[(&str, &str)] = location.as_slice();
        let idle = site.config.idle_timeout;
        let next = answer(io, idle, local.status, &local.text, can_keep, extra).await;
        return (local.status, None, next);
    }
    if req.expect_continue
        && framing != Framing::Empty
        && io
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await
            .is_err()
    {
        return (499, None, Next::Close);
    }

    let mut head = Vec::with_capacity(req.head.raw.len() + 160);
    request_head(req, cfg.forwarded, peer, &mut head);
    if let Some(pool) = &site.h2_pool {
        let keep = !strata_net::drain::is_cancelled(drain);
        // boxed: its state is several times the HTTP/1.1 path's (see h2.rs)
        let to_h2 = super::to_h2::proxy(svc, site, pool, req, &head, io, buf, peer, keep, started);
        return Box::pin(to_h2).await;
    }
    let body = ClientBody {
        reader: BodyReader::new(framing),
        io: &mut *io,
        buf: &mut *buf,
    };
    let mut request = Outbound::new(req, &head, body, cfg);
    let key = key(site, req, peer.addr.ip());
    let answered = forward(svc, site, key, started, deadline, &mut request).await;
    let Answer {
        index,
        backend,
        mut conn,
        buf: mut up_buf,
        resp,
        in_flight: _in_flight,
    } = match answered {
        Ok(a) => a,
        Err((failure, backend)) => {
            let status = status(&failure).as_u16();
            let keep = can_keep && !strata_net::drain::is_cancelled(drain);
            let text = error_text(&failure, &svc.name);
            let next = answer(io, site.config.idle_timeout, status, &text, keep, &[]).await;
            return (status, backend.map(|b| b.name.as_str()), next);
        }
    };
    let status = resp.status;
    let name = backend.name.as_str();
    if resp.head.upgrade {
        let next = upgrade(io, buf, conn, up_buf, &resp, req, site).await;
        return (status, Some(name), next);
    }
    // after a CONNECT that did not open a tunnel, what the client sends next may be meant for
    // the tunnel: close rather than read it as requests
    let connect = req.method() == b"CONNECT";
    let keep = !strata_net::drain::is_cancelled(drain) && req.head.keep_alive && !connect;
    // the request head's memory takes the response head
    let mut out = head;
    out.clear();
    let (relay_mode, client_keep) = response_head(&resp, &req.head, keep, &mut out);
    let relayed = relay_body(
        io,
        &mut conn,
        &mut up_buf,
        &resp,
        (relay_mode, takes_trailers(&req.head)),
        out,
        cfg.idle_timeout,
    )
    .await;
    // the head shares the buffer's memory: drop it first so the buffer can be reused
    drop(resp);
    buffers::give(up_buf);
    match relayed {
        Ok(reusable) => {
            if reusable && !connect {
                site.h1_pool.put(index, conn, started);
            }
            let next = if client_keep {
                Next::KeepAlive
            } else {
                Next::Close
            };
            (status, Some(name), next)
        }
        Err(e) => {
            tracing::debug!(listener = %svc.name, backend = %name, error = %e, "response relay ended early");
            (status, Some(name), Next::Close)
        }
    }
}

/// The body of an HTTP/1.x client's request, still on its connection (some of it perhaps
/// already in `buf`).
struct ClientBody<'x, S> {
    reader: BodyReader,
    io: &'x mut S,
    buf: &'x mut BytesMut,
}

impl<S: AsyncRead + Send + Unpin> BodySource for ClientBody<'_, S> {
    fn buffered(&self) -> bool {
        !self.buf.is_empty() || self.reader.is_done()
    }

    fn is_done(&self) -> bool {
        self.reader.is_done()
    }

    fn next_piece(
        &mut self,
        idle: std::time::Duration,
    ) -> impl std::future::Future<Output = Result<Option<Bytes>, BodyError>> + Send + '_ {
        body_piece(&mut self.reader, &mut *self.io, &mut *self.buf, idle)
    }

    fn trailers(&mut self) -> Vec<u8> {
        self.reader.take_trailers()
    }
}

/// Writes the response head and relays the body; true when the backend connection can be
/// reused (the body ended where its framing said and nothing followed it). A chunked body's
/// trailer fields go on in the last chunk when `mode` re-chunks it for a client that takes
/// them.
async fn relay_body<S>(
    io: &mut S,
    conn: &mut Conn,
    up_buf: &mut BytesMut,
    resp: &ResponseHead,
    (mode, trailers_ok): (Relay, bool),
    head: Vec<u8>,
    idle: std::time::Duration,
) -> Result<bool, BodyError>
where
    S: AsyncWrite + Unpin,
{
    let mut body = BodyReader::new(resp.head.framing);
    let mut head = Some(head);
    let mut line = Vec::new(); // a chunk-size line, only when re-chunking
    loop {
        // the first piece: only what was read with the head, so the head goes out at once
        let piece = if head.is_some() && up_buf.is_empty() && !body.is_done() {
            None
        } else {
            body_piece(&mut body, &mut conn.io, up_buf, idle).await?
        };
        let done = body.is_done();
        let mut parts = Parts::default();
        if let Some(h) = &head {
            parts.push(h);
        }
        line.clear();
        match (&piece, mode) {
            (Some(p), Relay::Chunked) if !p.is_empty() => {
                chunk_header(p.len(), &mut line);
                parts.push(&line);
                parts.push(p);
                parts.push(b"\r\n");
            }
            (Some(p), _) => parts.push(p),
            (None, _) => {}
        }
        let mut tail = Vec::new();
        if done && mode == Relay::Chunked {
            let trailers = body.take_trailers();
            if trailers_ok && !trailers.is_empty() {
                last_chunk(&trailers, &mut tail);
                parts.push(&tail);
            } else {
                parts.push(LAST_CHUNK);
            }
        }
        if !parts.is_empty() {
            write_all_parts_within(io, &parts, idle).await?;
        }
        head = None;
        if done {
            return Ok(resp.head.keep_alive && up_buf.is_empty());
        }
    }
}

/// After a 101, or a 2xx to CONNECT: the response goes to the client, then bytes flow both
/// ways.
async fn upgrade<S>(
    io: &mut S,
    buf: &mut BytesMut,
    mut conn: Conn,
    up_buf: BytesMut,
    resp: &ResponseHead,
    req: &RequestHead,
    site: &Site,
) -> Next
where
    S: AsyncRead + AsyncWrite + Arrival + Send + Unpin,
{
    let mut out = Vec::with_capacity(resp.head.raw.len() + 64);
    response_head(resp, &req.head, false, &mut out);
    let mut parts = Parts::default();
    parts.push(&out);
    parts.push(&up_buf);
    if write_all_parts_within(io, &parts, site.config.idle_timeout)
        .await
        .is_err()
    {
        return Next::Close;
    }
    if !buf.is_empty() && conn.io.write_all(&buf.split()).await.is_err() {
        return Next::Close;
    }
    if let Err(e) = relay(
        &mut *io,
        &mut conn.io,
        &site.timers,
        site.config.idle_timeout,
    )
    .await
    {
        tracing::debug!(error = %e, "upgraded connection ended");
    }
    Next::Close
}

/// The next piece of a body, failing when the sender goes quiet for `idle` in the middle of it
/// (a timer is only armed when a read has to wait).
pub(super) async fn body_piece<R: AsyncRead + Unpin>(
    body: &mut BodyReader,
    io: &mut R,
    buf: &mut BytesMut,
    idle: std::time::Duration,
) -> Result<Option<Bytes>, BodyError> {
    // the deadline from the turn's clock (strata_net::clock): no clock read of its own
    let at = tokio::time::Instant::from_std(strata_net::clock::now()) + idle;
    match tokio::time::timeout_at(at, body.next(io, buf)).await {
        Ok(piece) => piece,
        Err(_) => Err(BodyError::quiet(idle)),
    }
}
