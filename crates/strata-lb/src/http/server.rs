//! Accepting client connections: limits, TLS handshakes, telling HTTP/2 from HTTP/1.x, and
//! graceful draining. HTTP/1.x is served by `h1`, HTTP/2 by `h2server`.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use strata_net::{accept_loop, Admitted, UpstreamIo};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::h1::rewrite::local_response;
use super::h1::server::{Kept, Serve};
use super::io::{sniff, ClientIo, Sniff};
use super::{h2server, HttpService, Open};

/// Accepts on `listener` until `shutdown`, then lets open connections finish their requests
/// (keep-alive connections close after the current one) and returns when all are done.
/// `shutdown` is cancelled through [`strata_net::drain::cancel`], which the connections look
/// for between requests.
pub async fn serve(svc: Arc<HttpService>, listener: TcpListener, shutdown: CancellationToken) {
    let name = svc.name.clone();
    let timers = svc.site.load().timers.clone();
    let limit = svc.site.load().conn_limit.clone();
    let draining = accept_loop(
        &name,
        listener,
        &shutdown,
        limit,
        |stream, client, admitted| {
            let open = Open::new(svc.clone());
            let start = Box::pin(start(open, stream, client, shutdown.clone(), admitted));
            tokio::spawn(Connection::Start(start));
        },
    )
    .await;
    draining.finished_waking(&timers).await;
}

/// One client connection, the whole of its task: its first steps (a TLS handshake, telling
/// HTTP/2 from HTTP/1.x) in a box, then plain HTTP/1.x as [`Serve`], whose idle state is all
/// that an idle keep-alive connection's task holds.
enum Connection {
    Start(Pin<Box<dyn Future<Output = Option<Serve<UpstreamIo>>> + Send>>),
    H1(Serve<UpstreamIo>),
}

impl Future for Connection {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // one clock read serves everything this poll does (see strata_net::clock)
        let _turn = strata_net::clock::Turn::begin();
        loop {
            match &mut *self {
                Connection::Start(start) => match ready!(start.as_mut().poll(cx)) {
                    Some(h1) => *self = Connection::H1(h1),
                    None => return Poll::Ready(()),
                },
                Connection::H1(h1) => return Pin::new(h1).poll(cx),
            }
        }
    }
}

/// A connection's first steps: TLS and HTTP/2 connections are served here to the end; a
/// plain HTTP/1.x connection comes back to be served outside the box.
async fn start(
    open: Open,
    stream: TcpStream,
    client: SocketAddr,
    drain: CancellationToken,
    admitted: Admitted,
) -> Option<Serve<UpstreamIo>> {
    let (tls, header_timeout) = {
        let site = open.service().site.load();
        (site.tls.clone(), site.config.header_timeout)
    };
    if let Some(acceptor) = tls {
        // boxed in a statement of its own, here and below: TLS and HTTP/2 states are large,
        // and the box this runs in is what every plain connection pays while it starts
        let tls = tls_connection(
            open,
            acceptor,
            stream,
            client,
            header_timeout,
            drain,
            admitted,
        );
        let tls = Box::pin(tls);
        tls.await;
        return None;
    }
    match sniff(&stream, header_timeout).await {
        Sniff::Ready { h2: false, read } => {
            let kept = Kept::new(open, UpstreamIo(stream), client, false, drain, admitted);
            Some(Serve::new(kept, read))
        }
        Sniff::Ready { h2: true, read } => {
            let h2 = Box::pin(h2server::serve(
                open.service(),
                stream,
                read,
                client,
                false,
                &drain,
            ));
            h2.await;
            None
        }
        Sniff::Closed | Sniff::Idle => None,
        Sniff::Partial => {
            // bytes that could have been the start of an HTTP/2 preface, then nothing
            open.service().stats.header_timeouts.inc();
            let _ = stream.try_write(&local_response(
                408,
                "strata: the request head took too long\n",
                false,
                &[],
            ));
            None
        }
    }
}

/// A TLS connection: the handshake, then HTTP/1.1 or HTTP/2 as ALPN chose.
async fn tls_connection(
    open: Open,
    acceptor: tokio_rustls::TlsAcceptor,
    stream: TcpStream,
    client: SocketAddr,
    header_timeout: std::time::Duration,
    drain: CancellationToken,
    admitted: Admitted,
) {
    let io = ClientIo {
        stream,
        prefix: Bytes::new(),
    };
    let svc = open.service().clone();
    match tls_handshake(&svc, acceptor, io, client, header_timeout).await {
        Some(stream) if stream.get_ref().1.alpn_protocol() == Some(b"h2") => {
            h2server::serve(&svc, stream, BytesMut::new(), client, true, &drain).await;
        }
        Some(stream) => {
            let kept = Kept::new(open, stream, client, true, drain, admitted);
            Serve::new(kept, BytesMut::new()).await
        }
        None => {}
    }
}

/// A TLS handshake within the head's time limit.
async fn tls_handshake(
    svc: &HttpService,
    acceptor: tokio_rustls::TlsAcceptor,
    io: ClientIo,
    client: SocketAddr,
    limit: std::time::Duration,
) -> Option<tokio_rustls::server::TlsStream<ClientIo>> {
    match tokio::time::timeout(limit, acceptor.accept(io)).await {
        Ok(Ok(s)) => Some(s),
        Ok(Err(e)) => {
            svc.stats.tls_failures.inc();
            tracing::debug!(listener = %svc.name, %client, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            svc.stats.tls_failures.inc();
            None
        }
    }
}

#[cfg(test)]
mod tests {
    /// tokio puts a task's future in a cell with about 96 bytes of header and trailer, aligned
    /// to 128 bytes: at most 160 bytes of future make a 256-byte task.
    #[test]
    fn a_plain_connection_task_is_256_bytes() {
        let size = std::mem::size_of::<super::Connection>();
        assert!(size <= 160, "the connection future is {size} bytes");
    }
}
