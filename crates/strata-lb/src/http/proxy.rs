//! The request path: choose a backend, send, retry what is safe to retry, answer.

use std::net::SocketAddr;
use std::time::Instant;

use http::{header, HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use http_body::Body as _;
use hyper::body::Incoming;
use strata_config::{Balance, HashKey};

use super::body::{ReqBody, RespBody};
use super::headers::{add_forwarding, add_via, cookie, strip_hop_by_hop};
use super::pool::Checkin;
use super::{HttpService, Site};
use crate::balance::{hash_value, Key};
use crate::upstream::Tries;

/// What went wrong on the way to a response, and so what the client is told.
#[derive(Debug)]
pub(crate) enum Failure {
    NoBackend,
    Connect(String),
    Timeout,
    Upstream(String),
    BodyTooLarge,
}

impl Failure {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Failure::NoBackend => StatusCode::SERVICE_UNAVAILABLE,
            Failure::Connect(_) | Failure::Upstream(_) => StatusCode::BAD_GATEWAY,
            Failure::Timeout => StatusCode::GATEWAY_TIMEOUT,
            Failure::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        }
    }

    /// The body of the response, one line.
    pub(crate) fn text(&self, listener: &str) -> String {
        match self {
            Failure::NoBackend => {
                format!("strata: no healthy backend for listener \"{listener}\"\n")
            }
            Failure::Connect(why) => format!("strata: could not connect to a backend: {why}\n"),
            Failure::Timeout => "strata: the backend did not answer in time\n".to_string(),
            Failure::Upstream(why) => format!("strata: the backend failed: {why}\n"),
            Failure::BodyTooLarge => {
                "strata: request body is larger than max_body_size\n".to_string()
            }
        }
    }

    fn response(&self, listener: &str) -> Response<RespBody> {
        local(self.status(), self.text(listener))
    }
}

/// A response made by the proxy itself.
pub(crate) fn local(status: StatusCode, text: String) -> Response<RespBody> {
    let mut resp = Response::new(RespBody::local(text));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// Serves one client request.
pub(crate) async fn handle(
    svc: &HttpService,
    req: Request<Incoming>,
    client: SocketAddr,
    tls: bool,
) -> Response<RespBody> {
    let started = Instant::now();
    let site = svc.site.load_full();
    svc.stats.requests.inc();
    let log = site
        .config
        .access_log
        .then(|| (req.method().clone(), req.uri().clone(), req.version()));
    let (resp, backend) = if site.config.redirect_https {
        (redirect(&req), None)
    } else {
        proxy(svc, &site, req, client, tls, started).await
    };
    let status = resp.status().as_u16();
    svc.stats.responses[(status / 100).clamp(1, 5) as usize - 1].inc();
    svc.stats.latency.observe(started.elapsed());
    if let Some((method, uri, version)) = log {
        tracing::info!(
            target: "strata::access",
            listener = %svc.name,
            client = %client.ip(),
            method = %method,
            uri = %uri,
            version = ?version,
            status,
            backend = backend.as_deref().unwrap_or("-"),
            ms = started.elapsed().as_secs_f64() * 1000.0,
        );
    }
    resp
}

fn redirect(req: &Request<Incoming>) -> Response<RespBody> {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().host())
        .unwrap_or("localhost");
    let host = host.rsplit_once(':').map_or(host, |(h, _)| {
        if h.ends_with(']') || !h.contains(':') {
            h
        } else {
            host
        }
    });
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let mut resp = local(
        StatusCode::MOVED_PERMANENTLY,
        "strata: this site is served over https\n".into(),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("https://{host}{path}")) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

pub(crate) fn idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn hash_key(site: &Site, headers: &http::HeaderMap) -> Option<u32> {
    match &site.upstream.config.balance {
        Balance::Hash(HashKey::Header(name)) => {
            headers.get(name.as_str()).map(|v| hash_value(v.as_bytes()))
        }
        Balance::Hash(HashKey::Cookie(name)) => {
            cookie(headers, name).map(|v| hash_value(v.as_bytes()))
        }
        _ => None,
    }
}

async fn proxy(
    svc: &HttpService,
    site: &std::sync::Arc<Site>,
    req: Request<Incoming>,
    client: SocketAddr,
    tls: bool,
    started: Instant,
) -> (Response<RespBody>, Option<String>) {
    let (mut parts, body) = req.into_parts();
    let cfg = &site.config;
    if content_length(&parts.headers).is_some_and(|n| n > cfg.max_body_size) {
        return (Failure::BodyTooLarge.response(&svc.name), None);
    }
    let key = Key {
        client: client.ip(),
        value: hash_key(site, &parts.headers),
    };

    // HTTP/2 carries the host in :authority; HTTP/1.1 backends want it in Host
    let host = parts.headers.get(header::HOST).cloned().or_else(|| {
        parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    if let Some(h) = &host {
        parts.headers.insert(header::HOST, h.clone());
    }
    strip_hop_by_hop(&mut parts.headers);
    parts.headers.remove(header::EXPECT); // answered here already when the body is read
    add_forwarding(
        &mut parts.headers,
        cfg.forwarded,
        client,
        tls,
        host.as_ref(),
        parts.version,
    );
    parts.uri = parts
        .uri
        .path_and_query()
        .map_or_else(|| Uri::from_static("/"), |p| Uri::from(p.clone()));
    parts.version = Version::HTTP_11;

    let up = &site.upstream;
    let replayable = body.is_end_stream() && idempotent(&parts.method);
    let mut body = Some(ReqBody::new(body, cfg.max_body_size));
    // the request head: cloned for a try only when another try could still need it
    let mut head = Some(parts);
    let mut tries = Tries::new(up, key);
    let mut failure = Failure::NoBackend;
    while let Some((index, backend)) = tries.next(&svc.stats.retries) {
        let in_flight = backend.start();
        let conn = match site
            .pool
            .checkout(index, backend.addr, up.config.connect_timeout)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                // nothing reached the backend: any request may go elsewhere
                let why = e.to_string();
                tracing::debug!(listener = %svc.name, backend = %backend.name, "{why}");
                up.failed(backend, &why);
                failure = Failure::Connect(why);
                continue;
            }
        };
        let this_head = if replayable && tries.more() {
            head.clone()
        } else {
            head.take()
        };
        let Some(this_head) = this_head else {
            break;
        };
        let this_body = if replayable {
            ReqBody::Empty
        } else {
            body.take().unwrap_or(ReqBody::Empty)
        };
        let request = Request::from_parts(this_head, this_body);
        let mut sender = conn.sender;
        let sent =
            tokio::time::timeout(cfg.response_timeout, sender.try_send_request(request)).await;
        match sent {
            Ok(Ok(resp)) => {
                let status = resp.status();
                let elapsed = started.elapsed();
                backend.stats.latency.observe(elapsed);
                backend.stats.responses[(status.as_u16() / 100).clamp(1, 5) as usize - 1].inc();
                if status.is_server_error() {
                    up.group
                        .report_failure(backend, &format!("HTTP {}", status.as_u16()));
                } else {
                    backend.report_success();
                }
                let (mut rparts, rbody) = resp.into_parts();
                strip_hop_by_hop(&mut rparts.headers);
                add_via(&mut rparts.headers, Version::HTTP_11);
                let checkin = Checkin {
                    pool: site.pool.clone(),
                    index,
                    sender,
                    _in_flight: in_flight,
                };
                return (
                    Response::from_parts(rparts, RespBody::upstream(rbody, checkin)),
                    Some(backend.name.clone()),
                );
            }
            Ok(Err(mut e)) => {
                let why = e.error().to_string();
                if let Some(unsent) = e.take_message() {
                    // a pooled connection the backend had closed: the request never left
                    let (unsent_head, unsent_body) = unsent.into_parts();
                    head = Some(unsent_head);
                    body = Some(unsent_body);
                    if conn.reused && tries.stale() {
                        tracing::debug!(backend = %backend.name, "stale pooled connection: {why}");
                        continue;
                    }
                }
                if is_too_large(e.error()) {
                    return (
                        Failure::BodyTooLarge.response(&svc.name),
                        Some(backend.name.clone()),
                    );
                }
                up.failed(backend, &why);
                failure = Failure::Upstream(why);
                if !(replayable || body.is_some()) || head.is_none() {
                    break;
                }
            }
            Err(_) => {
                up.failed(backend, "response timeout");
                failure = Failure::Timeout;
                if !replayable {
                    break;
                }
            }
        }
    }
    let backend = tries.last().map(|b| b.name.clone());
    if matches!(failure, Failure::NoBackend) {
        svc.stats.no_backend.inc();
    }
    (failure.response(&svc.name), backend)
}

fn is_too_large(e: &hyper::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(super::body::BodyError::TooLarge(_)) = s.downcast_ref() {
            return true;
        }
        source = s.source();
    }
    false
}
