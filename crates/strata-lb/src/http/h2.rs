//! HTTP/2 clients: each request is turned into an HTTP/1.1 head and goes through the same
//! request path, head rewriting and backend connections as HTTP/1.x clients' requests; the
//! answer streams back as HTTP/2. hyper handles the HTTP/2 framing.

use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use http::{header, HeaderName, HeaderValue, Request, Response};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::sync::Arc;

use super::body::RespBody;
use super::h1::body::{BodyError, BodyReader};
use super::h1::codec::{parse_request, ParseError, RequestHead, Version};
use super::h1::rewrite::{is_framing, is_hop, request_head, response_length, via_hop};
use super::proxy::{
    answer_first, error_text, forward, key, record, refusal, status, Answer, BodySource, Outbound,
};
use super::Peer;
use super::{HttpService, Site};
use strata_net::Deadline;

/// Serves one HTTP/2 request.
pub(crate) async fn handle(
    svc: &HttpService,
    req: Request<Incoming>,
    peer: &Peer,
) -> Response<RespBody> {
    let started = Instant::now();
    let site = svc.site.load_full();
    svc.stats.requests.inc();
    let (parts, body) = req.into_parts();
    let head = h1_head(&parts, !body.is_end_stream()).and_then(|mut raw| {
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
            return local(status, text.into(), None);
        }
    };
    let (status, backend, resp) = proxy(svc, &site, &head, body, peer, started).await;
    record(svc, &site, peer, &head, status, backend, started);
    resp
}

/// The request as an HTTP/1.1 head, the way an HTTP/1.1 client would have sent it:
/// `:authority` as Host, cookies in one header (RFC 9113 8.2.3), and a body of unknown length
/// chunked. A `host` header that names another site than `:authority` is refused (RFC 9113
/// 8.3.1): the proxy and the backend could otherwise route the request to different sites.
pub(crate) fn h1_head(
    parts: &http::request::Parts,
    has_body: bool,
) -> Result<BytesMut, ParseError> {
    if let (Some(authority), Some(host)) = (parts.uri.authority(), parts.headers.get(header::HOST))
    {
        if !authority
            .as_str()
            .as_bytes()
            .eq_ignore_ascii_case(host.as_bytes())
        {
            return Err(ParseError::Malformed(":authority and host differ"));
        }
    }
    let mut out = BytesMut::with_capacity(512);
    out.put_slice(parts.method.as_str().as_bytes());
    out.put_u8(b' ');
    let target = if parts.method == http::Method::CONNECT {
        // authority-form, so that the request gets the 405 every listener gives it over HTTP/2
        parts.uri.authority().map_or("", |a| a.as_str())
    } else {
        parts.uri.path_and_query().map_or("/", |p| p.as_str())
    };
    out.put_slice(target.as_bytes());
    out.put_slice(b" HTTP/1.1\r\n");
    let field = |out: &mut BytesMut, name: &[u8], value: &[u8]| {
        out.put_slice(name);
        out.put_slice(b": ");
        out.put_slice(value);
        out.put_slice(b"\r\n");
    };
    if !parts.headers.contains_key(header::HOST) {
        if let Some(authority) = parts.uri.authority() {
            field(&mut out, b"host", authority.as_str().as_bytes());
        }
    }
    let mut cookies = parts.headers.get_all(header::COOKIE).iter();
    if let Some(first) = cookies.next() {
        out.put_slice(b"cookie: ");
        out.put_slice(first.as_bytes());
        for more in cookies {
            out.put_slice(b"; ");
            out.put_slice(more.as_bytes());
        }
        out.put_slice(b"\r\n");
    }
    for (name, value) in &parts.headers {
        if name != header::COOKIE {
            field(&mut out, name.as_str().as_bytes(), value.as_bytes());
        }
    }
    if has_body && !parts.headers.contains_key(header::CONTENT_LENGTH) {
        field(&mut out, b"transfer-encoding", b"chunked");
    }
    out.put_slice(b"\r\n");
    Ok(out)
}

async fn proxy<'s>(
    svc: &HttpService,
    site: &'s Arc<Site>,
    req: &RequestHead,
    body: Incoming,
    peer: &Peer,
    started: Instant,
) -> (u16, Option<&'s str>, Response<RespBody>) {
    if let Some(l) = answer_first(svc, site, req) {
        return (l.status, None, local(l.status, l.text, l.location));
    }
    let cfg = &site.config;
    let mut head = Vec::with_capacity(req.head.raw.len() + 160);
    request_head(req, cfg.forwarded, peer, &mut head);
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
            respond(site, a),
        ),
        Err((failure, backend)) => {
            let status = status(&failure).as_u16();
            (
                status,
                backend.map(|b| b.name.as_str()),
                local(status, error_text(&failure, &svc.name), None),
            )
        }
    }
}

/// An HTTP/2 client's request body: its DATA frames (trailers are dropped, as for HTTP/1.x).
impl BodySource for Incoming {
    fn buffered(&self) -> bool {
        false
    }

    fn is_done(&self) -> bool {
        self.is_end_stream()
    }

    async fn next_piece(&mut self, idle: Duration) -> Result<Option<Bytes>, BodyError> {
        loop {
            let frame = match tokio::time::timeout(idle, self.frame()).await {
                Ok(None) => return Ok(None),
                Ok(Some(Ok(frame))) => frame,
                Ok(Some(Err(e))) => return Err(BodyError::Io(std::io::Error::other(e))),
                Err(_) => return Err(BodyError::quiet(idle)),
            };
            match frame.into_data() {
                Ok(data) if !data.is_empty() => return Ok(Some(data)),
                _ => {}
            }
        }
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
