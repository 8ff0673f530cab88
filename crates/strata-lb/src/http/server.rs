//! Accepting client connections: limits, TLS handshakes, telling HTTP/2 from HTTP/1.x, and
//! graceful draining. HTTP/1.x is served by `h1`, HTTP/2 by hyper.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use strata_net::accept_loop;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::h1::rewrite::local_response;
use super::io::{sniff, ClientIo, Sniff};
use super::Peer;
use super::{h1, h2, HttpService, Site};

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
    if let Some(acceptor) = &site.tls {
        // boxed: the handshake state is large, and plain connections never need it
        let io = ClientIo {
            stream,
            prefix: Bytes::new(),
        };
        Box::pin(tls_connection(svc, &site, acceptor, io, client, &drain)).await;
        return;
    }
    // boxed like the protocols below: the task keeps only what lives as long as the connection
    match Box::pin(sniff(&stream, site.config.header_timeout)).await {
        Sniff::Ready { h2: false, prefix } => {
            let io = ClientIo {
                stream,
                prefix: Bytes::new(),
            };
            Box::pin(h1::server::serve(svc, io, prefix, client, false, &drain)).await;
        }
        Sniff::Ready { h2: true, prefix } => {
            let io = ClientIo { stream, prefix };
            Box::pin(serve_h2(
                svc,
                &site,
                TokioIo::new(io),
                client,
                false,
                &drain,
            ))
            .await;
        }
        Sniff::Closed | Sniff::Idle => {}
        Sniff::Partial => {
            // bytes that could have been the start of an HTTP/2 preface, then nothing
            svc.stats.header_timeouts.inc();
            let _ = stream.try_write(&local_response(
                408,
                "strata: the request head took too long\n",
                false,
                &[],
            ));
        }
    }
}

/// A TLS connection: the handshake, then HTTP/1.1 or HTTP/2 as ALPN chose.
async fn tls_connection(
    svc: &Arc<HttpService>,
    site: &Site,
    acceptor: &tokio_rustls::TlsAcceptor,
    io: ClientIo,
    client: SocketAddr,
    drain: &CancellationToken,
) {
    let stream = match tokio::time::timeout(site.config.header_timeout, acceptor.accept(io)).await {
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
    if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
        serve_h2(svc, site, TokioIo::new(stream), client, true, drain).await;
    } else {
        h1::server::serve(svc, stream, Bytes::new(), client, true, drain).await;
    }
}

/// Serves HTTP/2 with hyper. When `drain` fires it sends GOAWAY and finishes open streams.
async fn serve_h2<I>(
    svc: &Arc<HttpService>,
    site: &Site,
    io: I,
    client: SocketAddr,
    tls: bool,
    drain: &CancellationToken,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = {
        let svc = svc.clone();
        // made once per connection: the forwarding headers need the client's address as text
        let peer = Arc::new(Peer::new(client, tls));
        service_fn(move |req| {
            let (svc, peer) = (svc.clone(), peer.clone());
            async move { Ok::<_, Infallible>(h2::handle(&svc, req, &peer).await) }
        })
    };
    let conn = site.h2.serve_connection(io, service);
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        _ = drain.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(listener = %svc.name, %client, error = %e, "HTTP/2 connection ended with an error");
    }
}
