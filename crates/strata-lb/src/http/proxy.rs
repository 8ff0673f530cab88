//! The request path both client protocols share: answers the proxy gives itself, choosing a
//! backend, sending, retrying what is safe to retry, reading the answer's head, and the
//! records. HTTP/1.x clients (`h1::server`) and HTTP/2 clients (`h2`) differ only in where the
//! body comes from and where the answer goes.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::{Method, StatusCode};
use strata_config::{Balance, HashKey, HttpListener};
use strata_health::{Backend, InFlight};
use tokio::io::AsyncWriteExt;

use super::h1::body::BodyError;
use super::h1::client::Conn;
use super::h1::codec::{
    chunk_header, last_chunk, parse_response, Asked, Framing, ParseError, RequestHead,
    ResponseHead, Version, LAST_CHUNK,
};
use super::Peer;
use super::{BackendStats, HttpService, Site};
use strata_net::buffers::fill;
use strata_net::Deadline;
use strata_net::{write_all_parts_within, Parts};
use strata_upstream::{hash_value, Failure, Go, Key, Kind, Retry, Stage, Tries};

/// The status a client gets for a failed request.
pub(crate) fn status(f: &Failure) -> StatusCode {
    match f.kind {
        Kind::NoBackend | Kind::QueueTimeout | Kind::QueueFull => StatusCode::SERVICE_UNAVAILABLE,
        Kind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        Kind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        Kind::BadRequest => StatusCode::BAD_REQUEST,
        Kind::Connect | Kind::Refused | Kind::Closed | Kind::Protocol | Kind::Io => {
            StatusCode::BAD_GATEWAY
        }
    }
}

/// The body a client gets for a failed request, one line: the listener and the kind of
/// failure, never a backend's address or an OS error (those go to the log and to `/status`).
pub(crate) fn error_text(f: &Failure, listener: &str) -> String {
    match f.kind {
        Kind::NoBackend => format!("strata: no healthy backend for listener \"{listener}\"\n"),
        Kind::TooLarge => "strata: request body is larger than max_body_size\n".to_string(),
        kind => format!("strata: listener \"{listener}\": {kind}\n"),
    }
}

/// The status and text a client gets for a request head that can't be read.
pub(crate) fn refusal(e: &ParseError) -> (u16, &'static str) {
    match e {
        ParseError::TooLarge(_) | ParseError::TooManyHeaders => {
            (431, "strata: request header fields too large\n")
        }
        ParseError::Malformed(_) => (400, "strata: bad request\n"),
        ParseError::Unsupported(_) => (501, "strata: transfer coding not implemented\n"),
    }
}

/// An answer the proxy gives without asking a backend.
pub(crate) struct Local {
    pub(crate) status: u16,
    pub(crate) text: String,
    /// Where a redirect points.
    pub(crate) location: Option<String>,
}

/// The answers given before any backend is asked: 405 for CONNECT unless the listener allows
/// it (a reverse proxy is not a tunnel to wherever the client names; over HTTP/2, never), the
/// redirect to https, and 413 for a body whose declared length is over the limit.
pub(crate) fn answer_first(svc: &HttpService, site: &Site, req: &RequestHead) -> Option<Local> {
    let cfg = &site.config;
    if req.method() == b"CONNECT" && (!cfg.allow_connect || req.head.version == Version::Http2) {
        return Some(Local {
            status: 405,
            text: "strata: CONNECT is not allowed here\n".into(),
            location: None,
        });
    }
    if cfg.redirect_https {
        let host = req
            .authority()
            .or_else(|| req.head.get("host"))
            .map(|h| String::from_utf8_lossy(h).into_owned())
            .unwrap_or_default();
        // drop a port; a bracketed IPv6 address keeps its colons
        let host = match host.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !h.is_empty() => h,
            _ => host.as_str(),
        };
        return Some(Local {
            status: 301,
            text: "strata: this site is served over https\n".into(),
            location: Some(format!(
                "https://{host}{}{}",
                if req.origin().starts_with(b"/") {
                    ""
                } else {
                    "/"
                },
                String::from_utf8_lossy(req.origin())
            )),
        });
    }
    if let Framing::Length(n) = req.head.framing {
        if n > cfg.max_body_size {
            let f = Failure::new(Stage::Client, Kind::TooLarge, Retry::Never);
            return Some(Local {
                status: status(&f).as_u16(),
                text: error_text(&f, &svc.name),
                location: None,
            });
        }
    }
    None
}

/// Keeps an upgrade only when the listener allows the protocol asked for (its name before any
/// `/version`, one protocol only); otherwise the request goes on as a plain request, its
/// Upgrade header dropped like every hop-by-hop header. `h2c` is never allowed: a tunnelled
/// HTTP/2 connection would carry requests the proxy never sees. Nor is an upgrade of a request
/// with a body.
pub(crate) fn allow_upgrade(req: &mut RequestHead, allowed: &[String]) {
    if !req.head.upgrade {
        return;
    }
    // a body before the switch would reach the backend as the first bytes of the new protocol
    if req.head.framing != Framing::Empty {
        req.head.upgrade = false;
        return;
    }
    let asked = req.head.get("upgrade").unwrap_or(b"").trim_ascii();
    let name = asked.split(|&b| b == b'/').next().unwrap_or(b"");
    req.head.upgrade = !asked.contains(&b',')
        && !name.eq_ignore_ascii_case(b"h2c")
        && allowed
            .iter()
            .any(|a| name.eq_ignore_ascii_case(a.as_bytes()));
}

pub(crate) fn idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// The balancing key of a request: the client address, and the header or cookie value when
/// the listener hashes on one.
pub(crate) fn key(site: &Site, req: &RequestHead, client: std::net::IpAddr) -> Key {
    let value = match &site.upstream.config.balance {
        Balance::Hash(HashKey::Header(name)) => req.head.get(name).map(hash_value),
        Balance::Hash(HashKey::Cookie(name)) => req
            .head
            .get_all("cookie")
            .flat_map(|v| v.split(|&b| b == b';'))
            .filter_map(|pair| {
                let pair = pair.trim_ascii();
                let eq = pair.iter().position(|&b| b == b'=')?;
                (&pair[..eq] == name.as_bytes()).then(|| &pair[eq + 1..])
            })
            .next()
            .map(hash_value),
        _ => None,
    };
    Key { client, value }
}

/// Where a request's body comes from: the client's HTTP/1.x connection, or an HTTP/2 stream.
pub(crate) trait BodySource: Send {
    /// Some of the body is already here: it goes out with the head.
    fn buffered(&self) -> bool;
    /// Every byte of the body has been handed out.
    fn is_done(&self) -> bool;
    /// The next piece of the body, `None` at its end; fails when the client is quiet for `idle`.
    fn next_piece(
        &mut self,
        idle: Duration,
    ) -> impl Future<Output = Result<Option<Bytes>, BodyError>> + Send + '_;
    /// Once the body is done: its trailer fields that may be passed on, each line with its
    /// CRLF; empty for none.
    fn trailers(&mut self) -> Vec<u8>;
}

/// A request on its way to the backends: its head as rewritten for them, its body, and what
/// decides whether it may be tried again.
pub(crate) struct Outbound<'x, B> {
    head: &'x [u8],
    framing: Framing,
    body: B,
    /// May be sent again after it may have reached a backend (idempotent, no body).
    replayable: bool,
    /// What the request was, as far as reading the answer goes.
    asked: Asked,
    /// An upgrade the listener allows (the protocol asked for), or a CONNECT (empty): only then
    /// may the answer open a tunnel.
    tunnel: Option<&'x [u8]>,
    /// `max_body_size`.
    limit: u64,
    /// `idle_timeout`, the longest pause in the middle of the body.
    idle: Duration,
}

impl<'x, B: BodySource> Outbound<'x, B> {
    /// `req` with `head`, its head as rewritten for the backends, and its body.
    pub(crate) fn new(req: &'x RequestHead, head: &'x [u8], body: B, cfg: &HttpListener) -> Self {
        let method = Method::from_bytes(req.method()).unwrap_or(Method::POST);
        let framing = req.head.framing;
        Outbound {
            head,
            framing,
            body,
            replayable: framing == Framing::Empty && idempotent(&method),
            asked: match method {
                Method::HEAD => Asked::Head,
                Method::CONNECT => Asked::Connect,
                _ => Asked::Other,
            },
            tunnel: if req.head.upgrade {
                req.head.get("upgrade").map(<[u8]>::trim_ascii)
            } else if method == Method::CONNECT {
                Some(b"")
            } else {
                None
            },
            limit: cfg.max_body_size,
            idle: cfg.idle_timeout,
        }
    }
}

/// Sends the head and the body (chunked again when it came chunked, or with no length) on
/// `conn`; the first body bytes go out in the same write as the head.
async fn send<B: BodySource>(conn: &mut Conn, req: &mut Outbound<'_, B>) -> Result<(), Failure> {
    // a write that fails before any of the body went is no harm to the request: it can go to
    // another backend, for free when the pooled connection had been closed by the backend
    let reused = conn.reused;
    let backend = |error: std::io::Error, body_started: bool| {
        let retry = match (body_started, reused) {
            (true, _) => Retry::Never,
            (false, true) => Retry::Free,
            (false, false) => Retry::Always,
        };
        Failure::new(Stage::Request, Kind::Io, retry).because(error)
    };
    if req.framing == Framing::Empty {
        return conn
            .io
            .write_all(req.head)
            .await
            .map_err(|e| backend(e, false));
    }
    let chunked = req.framing == Framing::Chunked;
    let mut sent = 0u64;
    let mut first = true;
    let mut line = Vec::new();
    loop {
        let piece = if first && !req.body.buffered() {
            None
        } else {
            req.body.next_piece(req.idle).await.map_err(|e| {
                Failure::new(Stage::Client, Kind::BadRequest, Retry::Never).because(e)
            })?
        };
        if let Some(p) = &piece {
            sent += p.len() as u64;
            if sent > req.limit {
                return Err(Failure::new(Stage::Client, Kind::TooLarge, Retry::Never));
            }
        }
        let done = req.body.is_done() || (!first && piece.is_none());
        // the head promised this many bytes: never more, and not fewer at the end (HTTP/2
        // bodies are checked by their framing too; this does not rely on it)
        if let Framing::Length(n) = req.framing {
            if sent > n || (done && sent != n) {
                let e = ParseError::Malformed("body length differs from Content-Length");
                return Err(Failure::new(Stage::Client, Kind::BadRequest, Retry::Never).because(e));
            }
        }
        let mut parts = Parts::default();
        if first {
            parts.push(req.head);
        }
        match &piece {
            Some(p) if chunked => {
                line.clear();
                chunk_header(p.len(), &mut line);
                parts.push(&line);
                parts.push(p);
                parts.push(b"\r\n");
            }
            Some(p) => parts.push(p),
            None => {}
        }
        let mut tail = Vec::new();
        if chunked && done {
            let trailers = req.body.trailers();
            if trailers.is_empty() {
                parts.push(LAST_CHUNK);
            } else {
                last_chunk(&trailers, &mut tail);
                parts.push(&tail);
            }
        }
        write_all_parts_within(&mut conn.io, &parts, req.idle)
            .await
            .map_err(|e| backend(e, !first || piece.is_some()))?;
        first = false;
        if done {
            return Ok(());
        }
    }
}

/// A backend's answer: its head, and what is needed to relay the rest.
pub(crate) struct Answer<'s> {
    pub(crate) index: usize,
    pub(crate) backend: &'s Arc<Backend>,
    pub(crate) conn: Conn,
    /// What was read past the head: the start of the body.
    pub(crate) buf: BytesMut,
    pub(crate) resp: ResponseHead,
    /// Counts the request as in flight on the backend while it lives.
    pub(crate) in_flight: InFlight,
}

/// Sends a request to backends in turn until one answers with a head, each within
/// `response_timeout` (kept by `deadline`). Each failed try is a [`Failure`] that says whether
/// another backend may be tried, which [`Tries`] weighs against the retries and the retry
/// budget. Otherwise: why the request failed, and the backend tried last.
pub(crate) async fn forward<'s>(
    svc: &HttpService,
    site: &'s Site,
    key: Key,
    started: Instant,
    deadline: &mut Deadline,
    request: &mut Outbound<'_, impl BodySource>,
) -> Result<Answer<'s>, (Failure, Option<&'s Arc<Backend>>)> {
    let mut tries = Attempts::new(svc, site, key);
    while let Some((index, backend, in_flight)) = tries.next().await {
        match attempt(site, index, started, deadline, request).await {
            Ok((conn, buf, resp)) => {
                tries.answered(index, resp.status, started);
                return Ok(Answer {
                    index,
                    backend,
                    conn,
                    buf,
                    resp,
                    in_flight,
                });
            }
            Err(f) => {
                if !tries.failed(f, request.replayable) {
                    break;
                }
            }
        }
    }
    Err(tries.give_up())
}

/// The tries of one request over the listener's backends, whatever the protocol spoken to
/// them: the caller makes each try on the backend [`Attempts::next`] gives and reports how it
/// went; this keeps the counts, the passive checks and the log.
pub(crate) struct Attempts<'s, 'v> {
    svc: &'v HttpService,
    site: &'s Site,
    tries: Tries<'s, BackendStats>,
    failure: Failure,
}

impl<'s, 'v> Attempts<'s, 'v> {
    pub(crate) fn new(svc: &'v HttpService, site: &'s Site, key: Key) -> Self {
        Attempts {
            svc,
            site,
            tries: Tries::new(&site.upstream, key),
            failure: Failure::no_backend(),
        }
    }

    /// The backend for the next try, counted in flight there, while tries are left (waiting
    /// in the listener's queue while every backend is at its `max_conns`).
    pub(crate) async fn next(&mut self) -> Option<Go<'s>> {
        match self.tries.next(&self.svc.stats.retries).await {
            Ok(go) => go,
            Err(failure) => {
                self.failure = failure;
                None
            }
        }
    }

    /// Backend `index` answered with `status`.
    pub(crate) fn answered(&mut self, index: usize, status: u16, started: Instant) {
        let up = &self.site.upstream;
        let stats = &up.extra[index];
        stats.latency.observe(strata_net::clock::since(started));
        stats.responses[(status / 100).clamp(1, 5) as usize - 1].inc();
        let backend = &up.group.backends[index];
        if status >= 500 {
            up.group.report_failure(backend, &format!("HTTP {status}"));
        } else {
            backend.report_success();
        }
    }

    /// The last try failed: whether another may be made. `replayable` says whether the
    /// request may go again once a backend may have acted on it.
    pub(crate) fn failed(&mut self, failure: Failure, replayable: bool) -> bool {
        self.failure = failure;
        match self.tries.last() {
            Some(backend) => self.tries.failed(backend, &self.failure, replayable),
            None => false,
        }
    }

    /// No try succeeded: why, and the backend tried last.
    pub(crate) fn give_up(self) -> (Failure, Option<&'s Arc<Backend>>) {
        let Attempts {
            svc,
            tries,
            failure,
            ..
        } = self;
        if failure.kind == Kind::NoBackend {
            svc.stats.no_backend.inc();
        }
        let last = tries.last();
        match (failure.stage, last) {
            (Stage::Client, _) => {
                tracing::debug!(listener = %svc.name, error = %failure, "unreadable request")
            }
            // the client's answer names neither the backend nor the OS error: they go here
            (_, Some(b)) => {
                tracing::info!(listener = %svc.name, backend = %b.name, error = %failure, "request failed")
            }
            (_, None) => {
                failure.log_from_queue(&svc.name, "request failed");
            }
        }
        (failure, last)
    }
}

/// One try on backend `index`: a connection, the request sent, the answer's head read.
async fn attempt(
    site: &Site,
    index: usize,
    started: Instant,
    deadline: &mut Deadline,
    request: &mut Outbound<'_, impl BodySource>,
) -> Result<(Conn, BytesMut, ResponseHead), Failure> {
    let cfg = &site.config;
    let up = &site.upstream;
    let addr = up.group.backends[index].addr;
    let mut conn = site
        .h1_pool
        .checkout(index, addr, up.config.connect_timeout, started)
        .await
        .map_err(Failure::connect)?;
    send(&mut conn, request).await?;
    // a buffer is taken when the answer starts to arrive, not while waiting for it
    let mut buf = BytesMut::new();
    deadline.set(tokio::time::Instant::from_std(strata_net::clock::now()) + cfg.response_timeout);
    let max = cfg.max_header_size as usize;
    let read = tokio::select! {
        biased;
        r = read_head(&mut conn, &mut buf, max, request.asked, request.tunnel) => r,
        _ = deadline.expired() => Err(Failure::new(Stage::Request, Kind::Timeout, Retry::IfIdempotent)),
    };
    match read {
        Ok(resp) => Ok((conn, buf, resp)),
        // a reused connection the backend closed just before our request: no harm done
        Err(mut f)
            if f.kind == Kind::Closed && conn.reused && buf.is_empty() && request.replayable =>
        {
            f.retry = Retry::Free;
            Err(f)
        }
        Err(f) => Err(f),
    }
}

/// A backend switched protocols on a request that did not ask it to, or to another protocol.
#[derive(Debug, thiserror::Error)]
#[error("the backend switched protocols unasked")]
struct UnaskedUpgrade;

/// Reads the final response head; interim 1xx responses other than 101 are dropped. An answer
/// that opens a tunnel is an error unless the request asked for one the listener allows, and a
/// 101 must switch to the protocol that was asked for: a backend can't turn a WebSocket request
/// into, say, h2c.
async fn read_head(
    conn: &mut Conn,
    buf: &mut BytesMut,
    max: usize,
    asked: Asked,
    tunnel: Option<&[u8]>,
) -> Result<ResponseHead, Failure> {
    let fail = |kind| Failure::new(Stage::Request, kind, Retry::IfIdempotent);
    loop {
        let parsed =
            parse_response(buf, max, asked).map_err(|e| fail(Kind::Protocol).because(e))?;
        if let Some(resp) = parsed {
            if resp.head.upgrade {
                let unasked = match tunnel {
                    None => true,
                    Some(protocol) => {
                        let switched = resp.head.get("upgrade").unwrap_or(b"").trim_ascii();
                        resp.status == 101 && !switched.eq_ignore_ascii_case(protocol)
                    }
                };
                if unasked {
                    return Err(fail(Kind::Protocol).because(UnaskedUpgrade));
                }
            }
            if (100..200).contains(&resp.status) && resp.status != 101 {
                continue;
            }
            return Ok(resp);
        }
        match fill(&mut conn.io, buf).await {
            Ok(0) => return Err(fail(Kind::Closed)),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
                ) =>
            {
                return Err(fail(Kind::Closed).because(e))
            }
            Err(e) => return Err(fail(Kind::Io).because(e)),
        }
    }
}

/// Counts a finished request and writes its access log line when the listener keeps one.
pub(crate) fn record(
    svc: &HttpService,
    site: &Site,
    peer: &Peer,
    req: &RequestHead,
    status: u16,
    backend: Option<&str>,
    started: Instant,
) {
    svc.stats.responses[(status / 100).clamp(1, 5) as usize - 1].inc();
    let took = strata_net::clock::since(started);
    svc.stats.latency.observe(took);
    if site.config.access_log {
        tracing::info!(
            target: "strata::access",
            listener = %svc.name,
            client = peer.ip(),
            method = %String::from_utf8_lossy(req.method()),
            uri = %String::from_utf8_lossy(req.target()),
            version = match req.head.version {
                Version::Http10 => "HTTP/1.0",
                Version::Http11 => "HTTP/1.1",
                Version::Http2 => "HTTP/2",
            },
            status,
            backend = backend.unwrap_or("-"),
            // whole microseconds, as milliseconds: 0.14, not 0.13988299999999998
            ms = (took.as_micros() as f64 / 10.0).round() / 100.0,
        );
    }
}
