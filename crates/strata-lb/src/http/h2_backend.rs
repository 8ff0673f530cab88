//! HTTP/2 to backends (`backend_protocol = "h2c"` or `"h2"`): a few connections per backend
//! with requests multiplexed on them as streams, a new connection only when every open one is
//! at the backend's concurrent-stream limit; request bodies kept while small so that a request
//! the backend refused unprocessed can go to another backend; the gRPC health check.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http::{HeaderValue, Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use hyper::client::conn::http2::{Builder, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use strata_config::{BackendProtocol, CheckKind, HealthCheck, HttpListener};
use strata_health::Probe;
use strata_net::{connect, lock};
use strata_upstream::{Failure, Kind, Retry, Stage};
use tokio_rustls::TlsConnector;

use super::proxy::{idempotent, Attempts};
use super::{HttpService, Site};
use crate::LbError;
use http::{header, HeaderName};
use strata_health::{Backend, InFlight};
use strata_upstream::Key;

/// Connections opened to one backend at most; past this, a request waits on the least busy
/// one for a free stream.
const MAX_CONNS: usize = 16;
/// A request body is kept for a retry up to this many bytes; a longer one can't be sent again.
const REPLAY_LIMIT: usize = 64 * 1024;

/// Any error a body may end with.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One connection to a backend.
struct Conn {
    send: SendRequest<Replay>,
    /// One clone per stream open on the connection (see [`Stream`]).
    streams: Arc<()>,
    /// The backend's SETTINGS_MAX_CONCURRENT_STREAMS, as the connection last saw it.
    limit: Arc<AtomicUsize>,
}

impl Conn {
    fn busy(&self) -> usize {
        Arc::strong_count(&self.streams) - 1
    }
}

/// A stream on a backend connection, held until its response ends: what counts the
/// connection's open streams.
pub(crate) struct Stream(Arc<()>);

/// The HTTP/2 connections of one listener, indexed like its backends.
pub(crate) struct Pool {
    conns: Vec<Mutex<Vec<Conn>>>,
    /// Held while a connection to the backend is being opened; when the last try failed.
    opening: Vec<tokio::sync::Mutex<Option<std::time::Instant>>>,
    tls: Option<Connector>,
    builder: Builder<TokioExecutor>,
}

/// How TLS connections to the backends are made (`backend_protocol = "h2"`): the CA to trust
/// and the name to ask for.
pub(crate) type Connector = (TlsConnector, Option<ServerName<'static>>);

/// The TLS connector for `config`'s backends; `None` when it speaks to them in clear. Fails
/// when the CA file can't be read, which `strata check` (and a reload's check) reports before
/// anything is started.
pub(crate) fn connector(config: &HttpListener) -> Result<Option<Connector>, LbError> {
    let BackendProtocol::H2(tls) = &config.backend_protocol else {
        return Ok(None);
    };
    let err = |why: String| {
        LbError::Tls(strata_net::tls::TlsError {
            listener: config.name.clone(),
            path: tls.ca.clone(),
            why,
        })
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&tls.ca).map_err(|e| err(e.to_string()))? {
        roots
            .add(cert.map_err(|e| err(e.to_string()))?)
            .map_err(|e| err(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(err("no CERTIFICATE block in the file".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| err(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = vec![b"h2".to_vec()];
    let name = match &tls.sni {
        Some(n) => Some(
            ServerName::try_from(n.clone())
                .map_err(|e| err(format!("backend_sni \"{n}\": {e}")))?,
        ),
        None => None,
    };
    Ok(Some((TlsConnector::from(Arc::new(client)), name)))
}

impl Pool {
    /// The pool for `config`'s backends; `None` when it speaks HTTP/1.1 to them. Fails when
    /// the CA file can't be read.
    pub(crate) fn new(config: &HttpListener) -> Result<Option<Self>, LbError> {
        if config.backend_protocol == BackendProtocol::Http1 {
            return Ok(None);
        }
        let tls = connector(config)?;
        let mut builder = Builder::new(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .max_header_list_size(config.max_header_size as u32)
            // one stream until the backend's SETTINGS say how many it takes: a burst on a new
            // connection waits for them rather than being refused past the limit
            .initial_max_send_streams(1);
        Ok(Some(Pool {
            conns: (0..config.upstream.backends.len())
                .map(|_| Mutex::new(Vec::new()))
                .collect(),
            opening: (0..config.upstream.backends.len())
                .map(|_| tokio::sync::Mutex::new(None))
                .collect(),
            tls,
            builder,
        }))
    }

    /// A connection to backend `index` with a stream free, opened if none has one. One
    /// connection is opened at a time per backend: requests that arrive meanwhile wait for it
    /// rather than open one each.
    pub(crate) async fn checkout(
        &self,
        index: usize,
        addr: SocketAddr,
        connect_timeout: Duration,
    ) -> Result<(SendRequest<Replay>, Stream), Failure> {
        if let Some(free) = self.free(index) {
            return Ok(free);
        }
        let asked = std::time::Instant::now();
        let mut opening = self.opening[index].lock().await;
        if let Some(free) = self.free(index) {
            return Ok(free);
        }
        // the connection this request waited for could not be made: no use trying again at
        // once (a backend that drops SYNs would make each waiter wait a connect timeout)
        if opening.is_some_and(|failed| failed >= asked) {
            let e = std::io::Error::other(format!("connect to {addr} failed just now"));
            return Err(Failure::new(Stage::Connect, Kind::Connect, Retry::Always).because(e));
        }
        let conn = match self.open(addr, connect_timeout).await {
            Ok(conn) => conn,
            Err(f) => {
                *opening = Some(std::time::Instant::now());
                return Err(f);
            }
        };
        let out = (conn.send.clone(), Stream(conn.streams.clone()));
        lock(&self.conns[index]).push(conn);
        Ok(out)
    }

    /// The open connection to backend `index` with the fewest streams, if one has a stream
    /// free (or if no more may be opened).
    fn free(&self, index: usize) -> Option<(SendRequest<Replay>, Stream)> {
        let mut conns = lock(&self.conns[index]);
        conns.retain(|c| !c.send.is_closed());
        let c = conns
            .iter()
            .filter(|c| c.send.is_ready())
            .min_by_key(|c| c.busy())?;
        (c.busy() < c.limit.load(Ordering::Relaxed) || conns.len() >= MAX_CONNS)
            .then(|| (c.send.clone(), Stream(c.streams.clone())))
    }

    /// Takes the connection of `stream` out of use: it is going away (a GOAWAY, a close), so
    /// no further request may be put on it; the streams already on it finish.
    fn retire(&self, index: usize, stream: &Stream) {
        lock(&self.conns[index]).retain(|c| !Arc::ptr_eq(&c.streams, &stream.0));
    }

    async fn open(&self, addr: SocketAddr, timeout: Duration) -> Result<Conn, Failure> {
        let tcp = connect(addr, timeout).await.map_err(Failure::connect)?;
        let failed = |why: String| {
            Failure::new(Stage::Connect, Kind::Connect, Retry::Always)
                .because(std::io::Error::other(why))
        };
        match &self.tls {
            None => self.handshake(TokioIo::new(tcp)).await,
            Some((connector, name)) => {
                let name = name
                    .clone()
                    .unwrap_or_else(|| ServerName::IpAddress(addr.ip().into()));
                let tls = match tokio::time::timeout(timeout, connector.connect(name, tcp)).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => return Err(failed(format!("TLS to {addr}: {e}"))),
                    Err(_) => {
                        return Err(failed(format!(
                            "TLS to {addr}: no handshake within {timeout:?}"
                        )))
                    }
                };
                if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
                    return Err(failed(format!("{addr} did not agree to HTTP/2 (ALPN)")));
                }
                self.handshake(TokioIo::new(tls)).await
            }
        }
    }

    async fn handshake<T>(&self, io: T) -> Result<Conn, Failure>
    where
        T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let (send, conn) =
            self.builder.handshake::<T, Replay>(io).await.map_err(|e| {
                Failure::new(Stage::Connect, Kind::Connect, Retry::Always).because(e)
            })?;
        // as `initial_max_send_streams`, until the backend's SETTINGS say otherwise
        let limit = Arc::new(AtomicUsize::new(1));
        let seen = limit.clone();
        let mut conn = Box::pin(conn);
        tokio::spawn(std::future::poll_fn(move |cx| {
            let done = conn.as_mut().poll(cx);
            seen.store(conn.current_max_send_streams(), Ordering::Relaxed);
            match done {
                Poll::Ready(Err(e)) => {
                    tracing::debug!(error = %e, "HTTP/2 backend connection ended");
                    Poll::Ready(())
                }
                Poll::Ready(Ok(())) => Poll::Ready(()),
                Poll::Pending => Poll::Pending,
            }
        }));
        Ok(Conn {
            send,
            streams: Arc::new(()),
            limit,
        })
    }
}

/// The answer of an HTTP/2 backend: its head, the body to come, the stream it came on.
pub(crate) struct H2Answer<'s> {
    pub(crate) backend: &'s Arc<Backend>,
    pub(crate) in_flight: InFlight,
    pub(crate) resp: Response<Incoming>,
    pub(crate) stream: Stream,
}

/// Sends a request to backends that speak HTTP/2 in turn until one answers with a head, each
/// try within `response_timeout`, with the body `origin` records. A try the backend refused
/// unprocessed goes to another backend; one it may have acted on only when `method` is
/// idempotent and the body is still kept whole.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn exchange<'s>(
    svc: &HttpService,
    site: &'s Site,
    pool: &Pool,
    out: &BackendHead,
    origin: &Replay,
    method: &http::Method,
    key: Key,
    started: std::time::Instant,
) -> Result<H2Answer<'s>, (Failure, Option<&'s Arc<Backend>>)> {
    let replayable = idempotent(method);
    let mut tries = Attempts::new(svc, site, key);
    loop {
        // a body no longer kept whole can't go again: that is no backend's fault
        let Some(body) = origin.again() else {
            let f = Failure::new(Stage::Client, Kind::Closed, Retry::Never);
            tries.failed(f, false);
            break;
        };
        let Some((index, backend, in_flight)) = tries.next().await else {
            break;
        };
        let attempt = async {
            let (mut send, stream) = pool
                .checkout(index, backend.addr, site.upstream.config.connect_timeout)
                .await?;
            let mut request = Request::new(body);
            *request.method_mut() = out.method.clone();
            *request.uri_mut() = out.uri.clone();
            *request.headers_mut() = out.headers.clone();
            let timeout = site.config.response_timeout;
            let sent = self::send(&mut send, request);
            tokio::pin!(sent);
            // response_timeout counts from the end of the request body, or from the last of
            // it while it still moves
            let answered = loop {
                match tokio::time::timeout(timeout, &mut sent).await {
                    Err(_) if origin.still_sending(timeout) => continue,
                    done => break done,
                }
            };
            match answered {
                Ok(Ok(resp)) => Ok((resp, stream)),
                Ok(Err(f)) => {
                    if going_away(&f) {
                        pool.retire(index, &stream);
                    }
                    Err(f)
                }
                Err(_) => Err(Failure::new(
                    Stage::Request,
                    Kind::Timeout,
                    Retry::IfIdempotent,
                )),
            }
        };
        match attempt.await {
            Ok((resp, stream)) => {
                tries.answered(index, resp.status().as_u16(), started);
                return Ok(H2Answer {
                    backend,
                    in_flight,
                    resp,
                    stream,
                });
            }
            Err(f) => {
                if !tries.failed(f, replayable) {
                    break;
                }
            }
        }
    }
    Err(tries.give_up())
}

/// A request as an HTTP/2 backend gets it.
pub(crate) struct BackendHead {
    method: http::Method,
    uri: http::Uri,
    headers: http::HeaderMap,
}

/// `head`, an HTTP/1.1 request head the proxy wrote for backends, as HTTP/2: Host becomes the
/// authority, the fields HTTP/2 forbids go (RFC 9113 8.2.2), `te: trailers` goes when the
/// client sent it (gRPC servers want it). `None` if it can't be expressed.
pub(crate) fn backend_head(head: &[u8], tls: bool, te_trailers: bool) -> Option<BackendHead> {
    let lines = head.iter().filter(|&&b| b == b'\n').count();
    let mut fields = vec![httparse::EMPTY_HEADER; lines];
    let mut parsed = httparse::Request::new(&mut fields);
    if !matches!(parsed.parse(head), Ok(httparse::Status::Complete(_))) {
        return None;
    }
    let method = http::Method::from_bytes(parsed.method?.as_bytes()).ok()?;
    let mut authority = None;
    let mut headers = http::HeaderMap::with_capacity(parsed.headers.len() + 1);
    for field in parsed.headers.iter() {
        let name = HeaderName::from_bytes(field.name.as_bytes()).ok()?;
        if name == header::HOST {
            authority = Some(field.value);
            continue;
        }
        if is_connection_specific(&name) {
            continue;
        }
        headers.append(name, HeaderValue::from_bytes(field.value).ok()?);
    }
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    let uri = http::Uri::builder()
        .scheme(if tls { "https" } else { "http" })
        .authority(authority?)
        .path_and_query(parsed.path?)
        .build()
        .ok()?;
    Some(BackendHead {
        method,
        uri,
        headers,
    })
}

/// Fields of a request that HTTP/2 forbids (`te` is put back as `trailers` where it belongs).
fn is_connection_specific(name: &HeaderName) -> bool {
    name == header::TE || super::connection_specific(name.as_str().as_bytes())
}

/// Drops the connection-specific fields of an answer.
pub(crate) fn strip_hop(headers: &mut http::HeaderMap) {
    for name in super::CONNECTION_SPECIFIC {
        headers.remove(name);
    }
}

/// Sends `req` on `send` and waits for the response head. The failure says whether the backend
/// can have acted on the request: a stream it refused (REFUSED_STREAM, or above the last stream
/// of its GOAWAY) or a request that never left is safe to send elsewhere.
pub(crate) async fn send(
    send: &mut SendRequest<Replay>,
    req: Request<Replay>,
) -> Result<Response<Incoming>, Failure> {
    match send.try_send_request(req).await {
        Ok(resp) => Ok(resp),
        Err(mut e) => {
            let unsent = e.take_message().is_some();
            Err(failure(e.into_error(), unsent))
        }
    }
}

/// The connection a failure met is going away (closed, or a GOAWAY), rather than having
/// refused one stream: no further request may go on it.
fn going_away(f: &Failure) -> bool {
    let h2 = std::error::Error::source(f)
        .and_then(|s| s.downcast_ref::<hyper::Error>())
        .and_then(|e| std::error::Error::source(e))
        .and_then(|s| s.downcast_ref::<h2::Error>());
    f.kind == Kind::Closed
        && h2.is_none_or(|h2| h2.reason() != Some(h2::Reason::REFUSED_STREAM) || h2.is_go_away())
}

/// What a failed HTTP/2 exchange means for the request.
fn failure(e: hyper::Error, unsent: bool) -> Failure {
    let h2 = std::error::Error::source(&e).and_then(|s| s.downcast_ref::<h2::Error>());
    let refused = h2.is_some_and(|h2| {
        h2.reason() == Some(h2::Reason::REFUSED_STREAM)
            || (h2.is_go_away() && h2.is_remote() && h2.reason() == Some(h2::Reason::NO_ERROR))
    });
    let (kind, retry) = if unsent || refused {
        // the connection was closing (a GOAWAY, a close) before the request went on it, or
        // the backend refused the stream unprocessed (its stream limit, before its SETTINGS
        // were known; a GOAWAY): no harm done, and no fault of the backend's
        (Kind::Closed, Retry::Free)
    } else if h2.is_some_and(|h2| h2.is_io())
        || std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>())
        || e.is_closed()
        || e.is_canceled()
    {
        (Kind::Closed, Retry::IfIdempotent)
    } else {
        (Kind::Protocol, Retry::IfIdempotent)
    };
    Failure::new(Stage::Request, kind, retry).because(e)
}

/// What is recorded of a request body for a retry.
struct Recorded {
    source: UnsyncBoxBody<Bytes, BoxError>,
    /// Data bytes taken from `source`, and the most it may give (`max_body_size`).
    data: u64,
    limit: u64,
    /// When `source` last gave a frame.
    last: std::time::Instant,
    /// The frames taken from `source` so far; emptied once they pass [`REPLAY_LIMIT`].
    frames: Vec<Frame<Bytes>>,
    taken: usize,
    bytes: usize,
    overflow: bool,
    ended: bool,
}

/// A request body as one try sends it: the frames recorded so far, then the rest from the
/// client, recorded too while the body is small. Each try of a request gets its own.
pub(crate) struct Replay {
    shared: Arc<Mutex<Recorded>>,
    /// Frames this try has sent.
    at: usize,
}

impl Replay {
    /// `limit`: the most data the body may have (`max_body_size`).
    pub(crate) fn new<B>(source: B, limit: u64) -> Self
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let ended = source.is_end_stream();
        Replay {
            shared: Arc::new(Mutex::new(Recorded {
                data: 0,
                limit,
                last: std::time::Instant::now(),
                source: UnsyncBoxBody::new(http_body_util::BodyExt::map_err(source, Into::into)),
                frames: Vec::new(),
                taken: 0,
                bytes: 0,
                overflow: false,
                ended,
            })),
            at: 0,
        }
    }

    /// Whether the client is still sending the body, and has within `within`: the answer may
    /// wait for the end of an upload (a client-streaming call) as long as it moves.
    pub(crate) fn still_sending(&self, within: Duration) -> bool {
        let rec = lock(&self.shared);
        !rec.ended && rec.last.elapsed() < within
    }

    /// The body for another try, from its start; `None` when what was sent is no longer kept.
    pub(crate) fn again(&self) -> Option<Replay> {
        let shared = lock(&self.shared);
        (!shared.overflow).then(|| Replay {
            shared: self.shared.clone(),
            at: 0,
        })
    }
}

fn copy(frame: &Frame<Bytes>) -> Frame<Bytes> {
    match (frame.data_ref(), frame.trailers_ref()) {
        (Some(d), _) => Frame::data(d.clone()),
        (None, Some(t)) => Frame::trailers(t.clone()),
        (None, None) => Frame::data(Bytes::new()),
    }
}

impl Body for Replay {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let mut rec = lock(&this.shared);
        if this.at < rec.taken {
            if rec.overflow {
                return Poll::Ready(Some(Err(
                    "the request body is too long to send again".into()
                )));
            }
            let frame = copy(&rec.frames[this.at]);
            this.at += 1;
            return Poll::Ready(Some(Ok(frame)));
        }
        if rec.ended {
            return Poll::Ready(None);
        }
        match Pin::new(&mut rec.source).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                // a client's trailers lose the fields no trailer may carry
                let frame = match frame.into_trailers() {
                    Ok(mut t) => {
                        super::trailers::filter(&mut t);
                        Frame::trailers(t)
                    }
                    Err(frame) => frame,
                };
                let len = frame.data_ref().map_or(0, Buf::remaining);
                rec.data += len as u64;
                rec.last = std::time::Instant::now();
                if rec.data > rec.limit {
                    rec.overflow = true;
                    return Poll::Ready(Some(Err(
                        "the request body is larger than max_body_size".into()
                    )));
                }
                rec.taken += 1;
                this.at += 1;
                if !rec.overflow {
                    // each frame kept costs its bookkeeping too, however small its data
                    rec.bytes += len.max(64);
                    if rec.bytes > REPLAY_LIMIT {
                        rec.overflow = true;
                        rec.frames = Vec::new();
                    } else {
                        rec.frames.push(copy(&frame));
                    }
                }
                if rec.source.is_end_stream() {
                    rec.ended = true;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => {
                rec.ended = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                // whatever the client sent is not whole: no try may use it
                rec.overflow = true;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        let rec = lock(&self.shared);
        rec.ended && self.at >= rec.taken
    }

    fn size_hint(&self) -> SizeHint {
        // the length, when the client gave one, goes in its content-length field
        let rec = lock(&self.shared);
        if rec.ended && self.at >= rec.taken {
            SizeHint::with_exact(0)
        } else {
            SizeHint::default()
        }
    }
}

/// The active check of the listener's backends over HTTP/2: the standard gRPC health check
/// (`grpc.health.v1.Health/Check`), or a GET whose status must lie in the expected range, each
/// on a connection of its own. `None` for a plain connect check, which needs no HTTP.
pub(crate) fn probe(pool: Arc<Pool>, check: &HealthCheck) -> Option<Probe> {
    let kind = check.kind.clone();
    let timeout = check.timeout;
    if kind == CheckKind::Connect {
        return None;
    }
    Some(Arc::new(move |addr| {
        let (pool, kind) = (pool.clone(), kind.clone());
        Box::pin(async move {
            match &kind {
                CheckKind::Grpc { service } => grpc_check(&pool, addr, service, timeout).await,
                CheckKind::Http { path, host, expect } => {
                    get_check(&pool, addr, path, host.as_deref(), *expect, timeout).await
                }
                CheckKind::Connect => Ok("connected".into()),
            }
        })
    }))
}

async fn get_check(
    pool: &Pool,
    addr: SocketAddr,
    path: &str,
    host: Option<&str>,
    expect: (u16, u16),
    timeout: Duration,
) -> Result<String, String> {
    let mut conn = pool.open(addr, timeout).await.map_err(|f| f.to_string())?;
    let scheme = if pool.tls.is_some() { "https" } else { "http" };
    let authority = host.map_or_else(|| addr.to_string(), str::to_string);
    let req = Request::get(format!("{scheme}://{authority}{path}"))
        .header("user-agent", "strata-health")
        .body(Replay::new(http_body_util::Empty::<Bytes>::new(), 0))
        .map_err(|e| e.to_string())?;
    let status = send(&mut conn.send, req)
        .await
        .map_err(|f| f.to_string())?
        .status()
        .as_u16();
    if (expect.0..=expect.1).contains(&status) {
        Ok(format!("HTTP {status}"))
    } else {
        Err(format!("HTTP {status}, expected {}-{}", expect.0, expect.1))
    }
}

async fn grpc_check(
    pool: &Pool,
    addr: SocketAddr,
    service: &str,
    timeout: Duration,
) -> Result<String, String> {
    let mut conn = pool.open(addr, timeout).await.map_err(|f| f.to_string())?;
    // HealthCheckRequest { string service = 1; } in a gRPC message: uncompressed, its length
    let mut message = vec![0u8];
    let mut proto = Vec::new();
    if !service.is_empty() {
        proto.push(0x0a);
        varint(service.len() as u64, &mut proto);
        proto.extend_from_slice(service.as_bytes());
    }
    message.extend_from_slice(&(proto.len() as u32).to_be_bytes());
    message.extend_from_slice(&proto);
    let scheme = if pool.tls.is_some() { "https" } else { "http" };
    let req = Request::post(format!("{scheme}://{addr}/grpc.health.v1.Health/Check"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("user-agent", "strata-health")
        .body(Replay::new(
            http_body_util::Full::new(Bytes::from(message)),
            u64::MAX,
        ))
        .map_err(|e| e.to_string())?;
    let resp = send(&mut conn.send, req).await.map_err(|f| f.to_string())?;
    if resp.status() != http::StatusCode::OK {
        return Err(format!("HTTP {}", resp.status()));
    }
    let headers_status = resp.headers().get("grpc-status").cloned();
    let collected = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .map_err(|e| e.to_string())?;
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let grpc = trailers.get("grpc-status").cloned().or(headers_status);
    if grpc.as_ref() != Some(&HeaderValue::from_static("0")) {
        let why = trailers
            .get("grpc-message")
            .and_then(|m| m.to_str().ok())
            .unwrap_or("");
        return Err(format!(
            "grpc-status {} {why}",
            grpc.as_ref()
                .and_then(|g| g.to_str().ok())
                .unwrap_or("missing")
        ));
    }
    match serving_status(&collected.to_bytes()) {
        Some(1) => Ok("SERVING".into()),
        Some(2) => Err("NOT_SERVING".into()),
        Some(3) => Err("SERVICE_UNKNOWN".into()),
        Some(n) => Err(format!("status {n}")),
        None => Err("unreadable HealthCheckResponse".into()),
    }
}

/// `status` (field 1, an enum) of a HealthCheckResponse in one gRPC message; absent means 0
/// (UNKNOWN).
fn serving_status(body: &[u8]) -> Option<u64> {
    let (&compressed, rest) = body.split_first()?;
    if compressed != 0 || rest.len() < 4 {
        return None;
    }
    let len = u32::from_be_bytes(rest[..4].try_into().ok()?) as usize;
    let mut msg = rest.get(4..4 + len)?;
    let mut status = 0;
    while !msg.is_empty() {
        let (tag, n) = read_varint(msg)?;
        msg = &msg[n..];
        match tag & 7 {
            0 => {
                let (v, n) = read_varint(msg)?;
                msg = &msg[n..];
                if tag >> 3 == 1 {
                    status = v;
                }
            }
            2 => {
                let (l, n) = read_varint(msg)?;
                msg = msg.get(n.checked_add(usize::try_from(l).ok()?)?..)?;
            }
            1 => msg = msg.get(8..)?,
            5 => msg = msg.get(4..)?,
            _ => return None,
        }
    }
    Some(status)
}

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn read_varint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, &byte) in b.iter().enumerate().take(10) {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_responses_are_read_field_by_field() {
        // SERVING, with an unknown field before it
        let msg = [0x12, 0x01, b'x', 0x08, 0x01];
        let mut body = vec![0, 0, 0, 0, msg.len() as u8];
        body.extend_from_slice(&msg);
        assert_eq!(serving_status(&body), Some(1));
        // an empty message is UNKNOWN
        assert_eq!(serving_status(&[0, 0, 0, 0, 0]), Some(0));
        // compressed, cut short, or a length past the end
        assert_eq!(serving_status(&[1, 0, 0, 0, 0]), None);
        assert_eq!(serving_status(&[0, 0, 0, 0, 9, 8]), None);
        assert_eq!(serving_status(&[0, 0, 0, 0, 2, 0x12, 0x7f]), None);
        assert_eq!(serving_status(&[]), None);
    }

    #[test]
    fn varints_round_trip() {
        for v in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut out = Vec::new();
            varint(v, &mut out);
            assert_eq!(read_varint(&out), Some((v, out.len())));
        }
        assert_eq!(read_varint(&[0x80; 11]), None);
    }
}
