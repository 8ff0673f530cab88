//! HTTP/2 clients: each request is turned into an HTTP/1.1 head and goes through the same
//! request path, head rewriting and backend connections as HTTP/1.x clients' requests; the
//! answer streams back as HTTP/2. The framing is `h2server`'s.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, HeaderName, HeaderValue, Response};
use http_body::Body as _;
use http_body_util::BodyExt;
use std::sync::Arc;

use super::body::{Progress, RespBody};
use super::h1::body::{BodyError, BodyReader};
use super::h1::codec::{parse_request, ParseError, RequestHead, Version};
use super::h1::rewrite::{is_framing, is_hop, request_head, response_length, via_hop};
use super::h2_backend::{self, Pool, Replay};
use super::h2server::{NewRequest, ReqBody};
use super::proxy::{
    answer_first, error_text, forward, key, record, refusal, status, Answer, BodySource, Local,
    Outbound,
};
use super::trailers;
use super::Peer;
use super::{HttpService, Site};
use strata_config::BackendProtocol;
use strata_health::Backend;
use strata_net::Deadline;
use strata_upstream::{Failure, Kind, Retry, Stage};

/// Serves one HTTP/2 request.
pub(crate) async fn handle(
    svc: &HttpService,
    req: NewRequest,
    body: ReqBody,
    peer: &Peer,
    progress: &Arc<Progress>,
) -> Response<RespBody> {
    answer(svc, req, body, peer)
        .await
        .map(|body| body.watched(progress))
}

async fn answer(
    svc: &HttpService,
    req: NewRequest,
    body: ReqBody,
    peer: &Peer,
) -> Response<RespBody> {
    let started = strata_net::clock::now();
    let site = svc.site.load_full();
    svc.stats.requests.inc();
    let head = req.raw.and_then(|mut raw| {
        parse_request(&mut raw, site.config.max_header_size as usize)?
            .ok_or(ParseError::TooLarge(site.config.max_header_size as usize))
    });
    let head = match head {
        Ok(mut head) => {
            head.head.version = Version::Http2;
            head
        }
        Err(e) => {
            tracing::debug!(listener = %svc.name, client = %peer.addr, error = %e, "bad HTTP/2 request");
            svc.stats.responses[3].inc();
            let (status, text) = refusal(&e);
            let local = Local {
                status,
                text: text.into(),
                location: None,
            };
            return match req.grpc {
                Some(kind) => grpc_local(&local, kind),
                None => local.response(),
            };
        }
    };
    let (status, backend, resp) =
        proxy(svc, &site, &head, req.te_trailers, body, peer, started).await;
    record(svc, &site, peer, &head, status, backend, started);
    match (resp, req.grpc) {
        (Ok(resp), _) => resp,
        (Err(local), Some(kind)) => grpc_local(&local, kind),
        (Err(local), None) => local.response(),
    }
}

/// The proxy's own answer to a gRPC call: a trailers-only response (RFC: gRPC over HTTP/2,
/// "Trailers-Only"), status 200 with `grpc-status` and `grpc-message` in its only HEADERS
/// frame, mapped from the HTTP status as gRPC's own table maps them.
/// A timeout is DEADLINE_EXCEEDED rather than the table's UNAVAILABLE: the backend may have run
/// the call, and gRPC clients retry UNAVAILABLE.
fn grpc_local(local: &Local, content_type: &'static str) -> Response<RespBody> {
    let code = match local.status {
        400 => 13,             // INTERNAL
        401 => 16,             // UNAUTHENTICATED
        403 => 7,              // PERMISSION_DENIED
        404 | 405 | 501 => 12, // UNIMPLEMENTED
        413 | 431 => 8,        // RESOURCE_EXHAUSTED
        504 => 4,              // DEADLINE_EXCEEDED
        429 | 502 | 503 => 14, // UNAVAILABLE
        _ => 2,                // UNKNOWN
    };
    let mut message = String::new();
    for b in local.text.trim_end().bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            message.push(b as char);
        } else {
            message.push_str(&format!("%{b:02X}"));
        }
    }
    let mut resp = Response::new(RespBody::empty());
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert("grpc-status", HeaderValue::from(code));
    if let Ok(v) = HeaderValue::from_str(&message) {
        headers.insert("grpc-message", v);
    }
    resp
}

/// What a request came to: its status, the backend that answered, and the answer, or the
/// proxy's own answer when no backend gave one.
type Outcome<'s> = (u16, Option<&'s str>, Result<Response<RespBody>, Local>);

async fn proxy<'s>(
    svc: &HttpService,
    site: &'s Arc<Site>,
    req: &RequestHead,
    te_trailers: bool,
    body: ReqBody,
    peer: &Peer,
    started: Instant,
) -> Outcome<'s> {
    if let Some(l) = answer_first(svc, site, req) {
        return (l.status, None, Err(l));
    }
    let cfg = &site.config;
    let mut head = Vec::with_capacity(req.head.raw.len() + 160);
    request_head(req, cfg.forwarded, peer, &mut head);
    if let Some(pool) = &site.h2_pool {
        // boxed: the HTTP/2 backend path's state is several times the HTTP/1.1 one's, and
        // every request's future would otherwise be as large as the larger of the two
        return Box::pin(to_h2(
            svc,
            site,
            pool,
            req,
            &head,
            te_trailers,
            body,
            peer,
            started,
        ))
        .await;
    }
    let body = H2Request {
        body,
        trailers: Vec::new(),
    };
    let mut request = Outbound::new(req, &head, body, cfg);
    let key = key(site, req, peer.addr.ip());
    let mut deadline = Deadline::new(
        &site.timers,
        tokio::time::Instant::now() + cfg.response_timeout,
    );
    let answered = forward(svc, site, key, started, &mut deadline, &mut request).await;
    match answered {
        Ok(a) => (
            a.resp.status,
            Some(a.backend.name.as_str()),
            Ok(respond(site, a)),
        ),
        Err((failure, backend)) => failed(svc, &failure, backend),
    }
}

/// The proxy's answer to a request that no backend answered.
fn failed<'s>(
    svc: &HttpService,
    failure: &Failure,
    backend: Option<&'s Arc<Backend>>,
) -> Outcome<'s> {
    let status = status(failure).as_u16();
    (
        status,
        backend.map(|b| b.name.as_str()),
        Err(Local {
            status,
            text: error_text(failure, &svc.name),
            location: None,
        }),
    )
}

/// A request to backends that speak HTTP/2: the head as rewritten for HTTP/1.1 backends (the
/// same forwarding headers and hop-by-hop rules), turned into HTTP/2; the body and its
/// trailers streamed, kept while small so that a try the backend refused can go elsewhere;
/// the answer's data and trailers streamed back.
#[allow(clippy::too_many_arguments)]
async fn to_h2<'s>(
    svc: &HttpService,
    site: &'s Arc<Site>,
    pool: &Pool,
    req: &RequestHead,
    head: &[u8],
    trailers: bool,
    body: ReqBody,
    peer: &Peer,
    started: Instant,
) -> Outcome<'s> {
    let cfg = &site.config;
    let Ok(method) = http::Method::from_bytes(req.method()) else {
        let f = Failure::new(Stage::Client, Kind::BadRequest, Retry::Never);
        return failed(svc, &f, None);
    };
    let tls = matches!(cfg.backend_protocol, BackendProtocol::H2(_));
    let Some(out) = h2_backend::backend_head(head, tls, trailers) else {
        let f = Failure::new(Stage::Client, Kind::BadRequest, Retry::Never);
        return failed(svc, &f, None);
    };
    let origin = Replay::new(body, cfg.max_body_size);
    let key = key(site, req, peer.addr.ip());
    let answer = h2_backend::exchange(svc, site, pool, &out, &origin, &method, key, started);
    match answer.await {
        Ok(a) => {
            let status = a.resp.status().as_u16();
            let (mut head, body) = a.resp.into_parts();
            h2_backend::strip_hop(&mut head.headers);
            let mut via = head
                .headers
                .get_all(header::VIA)
                .iter()
                .flat_map(|v| [v.as_bytes(), b", "])
                .flatten()
                .copied()
                .collect::<Vec<u8>>();
            via.extend_from_slice(via_hop(Version::Http2));
            if let Ok(v) = HeaderValue::from_bytes(&via) {
                head.headers.insert(header::VIA, v);
            }
            let body = RespBody::h2(site.clone(), body, a.stream, a.in_flight);
            (
                status,
                Some(a.backend.name.as_str()),
                Ok(Response::from_parts(head, body)),
            )
        }
        Err((failure, backend)) => failed(svc, &failure, backend),
    }
}

/// An HTTP/2 client's request body on its way to an HTTP/1.1 backend: its DATA frames, and
/// its trailers for the last chunk (a body sent with a Content-Length has no place for them).
pub(crate) struct H2Request {
    body: ReqBody,
    trailers: Vec<u8>,
}

impl BodySource for H2Request {
    fn buffered(&self) -> bool {
        false
    }

    fn is_done(&self) -> bool {
        self.body.is_end_stream()
    }

    async fn next_piece(&mut self, idle: Duration) -> Result<Option<Bytes>, BodyError> {
        loop {
            let frame = match tokio::time::timeout(idle, self.body.frame()).await {
                Ok(None) => return Ok(None),
                Ok(Some(Ok(frame))) => frame,
                Ok(Some(Err(e))) => return Err(BodyError::Io(e)),
                Err(_) => return Err(BodyError::quiet(idle)),
            };
            match frame.into_data() {
                Ok(data) if !data.is_empty() => return Ok(Some(data)),
                Ok(_) => {}
                Err(frame) => {
                    if let Ok(t) = frame.into_trailers() {
                        self.trailers = trailers::to_lines(&t);
                    }
                }
            }
        }
    }

    fn trailers(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.trailers)
    }
}

/// The backend's answer for the HTTP/2 client: its end-to-end headers, this hop in Via, and
/// the body streamed off the backend connection.
fn respond(site: &Arc<Site>, a: Answer<'_>) -> Response<RespBody> {
    let Answer {
        index,
        conn,
        buf,
        resp,
        in_flight,
        ..
    } = a;
    let mut out = Response::builder().status(resp.status);
    let mut via: Vec<u8> = Vec::new();
    if let Some(headers) = out.headers_mut() {
        for (name, value) in resp.head.fields() {
            if name.eq_ignore_ascii_case(b"via") {
                via.extend_from_slice(value);
                via.extend_from_slice(b", ");
            } else if !is_framing(name) && !is_hop(name, &resp.head) {
                // httparse let through nothing HTTP/2 would refuse; skip rather than fail
                if let (Ok(n), Ok(v)) =
                    (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
                {
                    headers.append(n, v);
                }
            }
        }
        via.extend_from_slice(via_hop(resp.head.version));
        if let Ok(v) = HeaderValue::from_bytes(&via) {
            headers.insert(header::VIA, v);
        }
        if let Some(n) = response_length(&resp) {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
        }
    }
    let reader = BodyReader::new(resp.head.framing);
    let keep_alive = resp.head.keep_alive;
    drop(resp);
    let body = RespBody::backend(
        site.clone(),
        index,
        conn,
        buf,
        reader,
        keep_alive,
        in_flight,
    );
    out.body(body).unwrap_or_else(|_| {
        local(
            502,
            "strata: the backend's answer could not be relayed\n".into(),
            None,
        )
    })
}

impl Local {
    /// The answer as an HTTP/2 response.
    fn response(self) -> Response<RespBody> {
        local(self.status, self.text, self.location)
    }
}

/// An answer the proxy made itself.
fn local(status: u16, text: String, location: Option<String>) -> Response<RespBody> {
    let mut resp = Response::new(RespBody::local(text));
    *resp.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_GATEWAY);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Some(v) = location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}
