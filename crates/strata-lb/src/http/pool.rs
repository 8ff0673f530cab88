//! Keep-alive connections to backends, per backend, most recently used first.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use strata_health::InFlight;

use super::body::ReqBody;
use crate::socket::{self, ConnectError, UpstreamIo};

struct Idle {
    sender: http1::SendRequest<ReqBody>,
    since: Instant,
}

/// Idle connections of each backend of one listener, indexed like its backends.
pub(crate) struct Pool {
    idle: Vec<Mutex<Vec<Idle>>>,
    max_idle: usize,
    idle_timeout: Duration,
}

/// A connection taken from the pool or newly made.
pub(crate) struct Conn {
    pub(crate) sender: http1::SendRequest<ReqBody>,
    /// Came from the pool: the backend may have closed it meanwhile.
    pub(crate) reused: bool,
}

/// Gives a connection back when the response using it is complete.
pub(crate) struct Checkin {
    pub(crate) pool: Arc<Pool>,
    pub(crate) index: usize,
    pub(crate) sender: http1::SendRequest<ReqBody>,
    /// Counts the request as in flight until its response body ends.
    pub(crate) _in_flight: InFlight,
}

impl Checkin {
    pub(crate) fn give_back(self) {
        self.pool.put(self.index, self.sender);
    }
}

impl Pool {
    pub(crate) fn new(backends: usize, max_idle: usize, idle_timeout: Duration) -> Self {
        Pool {
            idle: (0..backends).map(|_| Mutex::new(Vec::new())).collect(),
            max_idle,
            idle_timeout,
        }
    }

    fn put(&self, index: usize, sender: http1::SendRequest<ReqBody>) {
        if self.max_idle == 0 || sender.is_closed() {
            return;
        }
        let mut idle = self.idle[index].lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < self.max_idle {
            idle.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }

    /// A ready connection to backend `index`: a pooled one if any is still good, else a new one.
    pub(crate) async fn checkout(
        &self,
        index: usize,
        addr: SocketAddr,
        connect_timeout: Duration,
    ) -> Result<Conn, ConnectError> {
        loop {
            let idle = self.idle[index]
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop();
            let Some(mut idle) = idle else { break };
            if idle.sender.is_closed() || idle.since.elapsed() > self.idle_timeout {
                continue;
            }
            // the previous response may have only just ended; readiness follows at once
            if idle.sender.ready().await.is_ok() {
                return Ok(Conn {
                    sender: idle.sender,
                    reused: true,
                });
            }
        }
        let sender = connect(addr, connect_timeout).await?;
        Ok(Conn {
            sender,
            reused: false,
        })
    }
}

/// Opens a new HTTP/1.1 connection to `addr` driven by hyper (for requests that came over HTTP/2).
pub(crate) async fn connect(
    addr: SocketAddr,
    timeout: Duration,
) -> Result<http1::SendRequest<ReqBody>, ConnectError> {
    let stream = socket::connect(addr, timeout).await?;
    // a client handshake does no I/O; an error here is hyper refusing the connection
    let (sender, conn) = http1::Builder::new()
        .handshake(TokioIo::new(UpstreamIo(stream)))
        .await
        .map_err(|e| ConnectError::Io {
            addr,
            source: std::io::Error::other(e),
        })?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(backend = %addr, error = %e, "upstream connection ended");
        }
    });
    Ok(sender)
}
