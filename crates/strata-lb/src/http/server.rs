//! Accepting client connections: limits, TLS handshakes, HTTP/1.1 and HTTP/2 serving,
//! graceful draining, and the 408 for clients too slow to send a request head.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use bytes::Bytes;
use hyper::body::Incoming;

use super::body::RespBody;
use super::io::{ClientIo, Shared, Sniff};
use super::{proxy, HttpService, Site};
use crate::listener::accept_loop;

const REQUEST_TIMEOUT: &[u8] =
    b"HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain\r\nContent-Length: 43\r\nConnection: close\r\n\r\nstrata: the request head took too long\r\n\r\n";

/// Accepts on `listener` until `shutdown`, then lets open connections finish their requests
/// (keep-alive connections close after the current one) and returns when all are done.
pub async fn serve(svc: Arc<HttpService>, listener: TcpListener, shutdown: CancellationToken) {
    let name = svc.name.clone();
    let limit = || svc.site.load().conn_limit.clone();
    accept_loop(&name, listener, &shutdown, limit, |stream, client| {
        let svc = svc.clone();
        let drain = shutdown.clone();
        async move {
            svc.stats.open.inc();
            connection(&svc, stream, client, drain).await;
            svc.stats.open.dec();
        }
    })
    .await;
}

async fn connection(
    svc: &Arc<HttpService>,
    stream: TcpStream,
    client: SocketAddr,
    drain: CancellationToken,
) {
    let site = svc.site.load_full();
    let shared = Shared::new(stream);
    let service = |tls: bool| {
        let svc = svc.clone();
        service_fn(move |req| {
            let svc = svc.clone();
            async move { Ok::<_, Infallible>(proxy::handle(&svc, req, client, tls).await) }
        })
    };
    let result = match &site.tls {
        Some(acceptor) => {
            let io = ClientIo {
                shared: shared.clone(),
                prefix: Bytes::new(),
            };
            let stream = match tokio::time::timeout(site.config.header_timeout, acceptor.accept(io))
                .await
            {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    svc.stats.tls_failures.inc();
                    tracing::debug!(listener = %svc.name, %client, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    svc.stats.tls_failures.inc();
                    return;
                }
            };
            let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
            serve_io(&site, TokioIo::new(stream), h2, service(true), &drain).await
        }
        None => match shared.sniff(site.config.header_timeout).await {
            Sniff::Ready { h2, prefix } => {
                let io = ClientIo {
                    shared: shared.clone(),
                    prefix,
                };
                serve_io(&site, TokioIo::new(io), h2, service(false), &drain).await
            }
            Sniff::Closed | Sniff::Idle => return,
            Sniff::Partial => {
                svc.stats.header_timeouts.inc();
                shared.send_final(REQUEST_TIMEOUT);
                return;
            }
        },
    };
    if let Err(e) = result {
        if e.is_timeout() {
            // hyper closes silently; a client that had started a request is told why
            if shared.has_partial_request() && site.tls.is_none() {
                svc.stats.header_timeouts.inc();
                shared.send_final(REQUEST_TIMEOUT);
            }
        } else {
            tracing::debug!(listener = %svc.name, %client, error = %e, "client connection ended with an error");
        }
    }
}

/// Serves one connection with the HTTP version it speaks. When `drain` fires, HTTP/1.1 finishes
/// the request in progress and closes; HTTP/2 sends GOAWAY and finishes its open streams.
async fn serve_io<I, S>(
    site: &Site,
    io: I,
    h2: bool,
    service: S,
    drain: &CancellationToken,
) -> Result<(), hyper::Error>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming, ResBody = RespBody> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if h2 {
        let conn = site.h2.serve_connection(io, service);
        tokio::pin!(conn);
        tokio::select! {
            result = conn.as_mut() => return result,
            _ = drain.cancelled() => conn.as_mut().graceful_shutdown(),
        }
        conn.await
    } else {
        let conn = site.h1.serve_connection(io, service).with_upgrades();
        tokio::pin!(conn);
        tokio::select! {
            result = conn.as_mut() => return result,
            _ = drain.cancelled() => conn.as_mut().graceful_shutdown(),
        }
        conn.await
    }
}
