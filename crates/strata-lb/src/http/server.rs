//! Accepting client connections: limits, TLS handshakes, telling HTTP/2 from HTTP/1.x, and
//! graceful draining. HTTP/1.x is served by `h1`, HTTP/2 by hyper.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use strata_net::{accept_loop, UpstreamIo};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::h1::rewrite::local_response;
use super::io::{sniff, ClientIo, Sniff};
use super::Peer;
use super::{h1, h2, HttpService};

/// Accepts on `listener` until `shutdown`, then lets open connections finish their requests
/// (keep-alive connections close after the current one) and returns when all are done.
pub async fn serve(svc: Arc<HttpService>, listener: TcpListener, shutdown: CancellationToken) {
    let name = svc.name.clone();
    let limit = || svc.site.load().conn_limit.clone();
    accept_loop(&name, listener, &shutdown, limit, |stream, client| {
        connection(svc.clone(), stream, client, shutdown.clone())
    })
    .await;
}

/// One client connection, the whole of its task: nothing wraps it, so its state between
/// requests is all a connection's task holds.
async fn connection(
    svc: Arc<HttpService>,
    stream: TcpStream,
    client: SocketAddr,
    drain: CancellationToken,
) {
    svc.stats.open.inc();
    let _open = Open(&svc);
    let svc = &svc;
    let (tls, header_timeout) = {
        let site = svc.site.load();
        (site.tls.clone(), site.config.header_timeout)
    };
    if let Some(acceptor) = tls {
        // boxed in a statement of its own: the handshake state is large, plain connections
        // never need it, and a temporary in the awaiting statement would keep its full size in
        // this future too
        let io = ClientIo {
            stream,
            prefix: Bytes::new(),
        };
        let tls = Box::pin(tls_connection(svc, acceptor, io, client, &drain));
        tls.await;
        return;
    }
    let sniffing = Box::pin(sniff(&stream, header_timeout));
    match sniffing.await {
        Sniff::Ready { h2: false, prefix } => {
            // not boxed: its state between requests is small, and it is most of a
            // connection's life
            let buf = BytesMut::from(&prefix[..]);
            drop(prefix);
            let peer = Peer::new(client, false);
            h1::server::serve(svc, UpstreamIo(stream), buf, peer, &drain).await;
        }
        Sniff::Ready { h2: true, prefix } => {
            let io = ClientIo { stream, prefix };
            let h2 = Box::pin(serve_h2(svc, TokioIo::new(io), client, false, &drain));
            h2.await;
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

/// Counts the connection as open while it lives, however it ends.
struct Open<'a>(&'a HttpService);

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.stats.open.dec();
    }
}

/// A TLS connection: the handshake, then HTTP/1.1 or HTTP/2 as ALPN chose.
async fn tls_connection(
    svc: &Arc<HttpService>,
    acceptor: tokio_rustls::TlsAcceptor,
    io: ClientIo,
    client: SocketAddr,
    drain: &CancellationToken,
) {
    let header_timeout = svc.site.load().config.header_timeout;
    let stream = match tokio::time::timeout(header_timeout, acceptor.accept(io)).await {
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
        serve_h2(svc, TokioIo::new(stream), client, true, drain).await;
    } else {
        let peer = Peer::new(client, true);
        h1::server::serve(svc, stream, BytesMut::new(), peer, drain).await;
    }
}

/// Serves HTTP/2 with hyper. When `drain` fires it sends GOAWAY and finishes open streams.
async fn serve_h2<I>(
    svc: &Arc<HttpService>,
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
    let site = svc.site.load_full();
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
