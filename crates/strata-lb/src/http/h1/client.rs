//! Backend connections for HTTP/1.1: raw sockets kept alive per backend, checked before reuse
//! without a syscall when nothing has arrived on them since their last response.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use strata_net::{connect, ConnectError, UpstreamIo};

/// A connection to a backend.
pub(crate) struct Conn {
    pub(crate) io: UpstreamIo,
    /// Came from the pool: the backend may have closed it just now.
    pub(crate) reused: bool,
}

struct Idle {
    stream: TcpStream,
    since: Instant,
}

/// Idle backend connections of one listener, indexed like its backends, most recent first.
pub(crate) struct Pool {
    idle: Vec<Mutex<Vec<Idle>>>,
    max_idle: usize,
    idle_timeout: Duration,
}

impl Pool {
    pub(crate) fn new(backends: usize, max_idle: usize, idle_timeout: Duration) -> Self {
        Pool {
            idle: (0..backends).map(|_| Mutex::new(Vec::new())).collect(),
            max_idle,
            idle_timeout,
        }
    }

    /// Keeps `conn` for the next request to backend `index`; its last response must be complete.
    /// `now` is the time of the exchange that used it (one clock read serves the exchange).
    pub(crate) fn put(&self, index: usize, conn: Conn, now: Instant) {
        if self.max_idle == 0 {
            return;
        }
        let mut idle = self.idle[index].lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < self.max_idle {
            idle.push(Idle {
                stream: conn.io.0,
                since: now,
            });
        }
    }

    /// A pooled connection that still looks open, or a new one.
    pub(crate) async fn checkout(
        &self,
        index: usize,
        addr: SocketAddr,
        connect_timeout: Duration,
        now: Instant,
    ) -> Result<Conn, ConnectError> {
        loop {
            let idle = self.idle[index]
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop();
            let Some(idle) = idle else { break };
            if now.saturating_duration_since(idle.since) <= self.idle_timeout && quiet(&idle.stream)
            {
                return Ok(Conn {
                    io: UpstreamIo(idle.stream),
                    reused: true,
                });
            }
        }
        let stream = connect(addr, connect_timeout).await?;
        Ok(Conn {
            io: UpstreamIo(stream),
            reused: false,
        })
    }
}

/// An idle connection is usable when nothing arrived on it: a FIN, a reset or stray bytes all
/// make it readable. Readiness is asked without a syscall; only when it says "readable" does a
/// non-blocking read settle it.
fn quiet(stream: &TcpStream) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    match stream.poll_read_ready(&mut cx) {
        Poll::Pending => true,
        Poll::Ready(Err(_)) => false,
        Poll::Ready(Ok(())) => {
            let mut byte = [0u8; 1];
            matches!(stream.try_read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn a_connection_the_backend_closed_is_not_reused() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let pool = Pool::new(1, 4, Duration::from_secs(60));
        let conn = pool
            .checkout(0, addr, Duration::from_secs(1), Instant::now())
            .await
            .unwrap();
        assert!(!conn.reused);
        let (mut server_side, _) = listener.accept().await.unwrap();
        pool.put(0, conn, Instant::now());
        // still open: reused
        let conn = pool
            .checkout(0, addr, Duration::from_secs(1), Instant::now())
            .await
            .unwrap();
        assert!(conn.reused);
        // the backend closes it: a new connection is made instead
        server_side.shutdown().await.unwrap();
        drop(server_side);
        // the close has reached our side once the socket turns readable
        conn.io.0.readable().await.unwrap();
        pool.put(0, conn, Instant::now());
        let conn = pool
            .checkout(0, addr, Duration::from_secs(1), Instant::now())
            .await
            .unwrap();
        assert!(!conn.reused);
    }
}
