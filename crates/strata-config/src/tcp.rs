//! `[[tcp]]`: the L4 load-balanced listener.

use std::net::SocketAddr;
use std::time::Duration;

use crate::error::Report;
use crate::upstream::{require_backends, upstream, Layer, Upstream};
use crate::walk::Section;

/// One `[[tcp]]` listener: the L4 load balancer, relaying each connection's bytes to a backend.
#[derive(Debug, Clone, PartialEq)]
pub struct TcpListener {
    /// Unique among the TCP listeners; names the listener in metrics, `/status` and the admin API.
    pub name: String,
    /// Where to listen; port 0 takes a free port.
    pub listen: SocketAddr,
    /// The backends and how connections are spread over them.
    pub upstream: Upstream,
    /// A connection with no bytes in either direction for this long is closed.
    pub idle_timeout: Duration,
    /// Client connections open at once; further ones wait in the kernel's accept queue.
    pub max_connections: u32,
}

pub(crate) const KEYS: &[&str] = &[
    "backends",
    "balance",
    "hash_key",
    "health",
    "passive",
    "retries",
    "retry_budget",
    "connect_timeout",
    "slow_start",
    "queue_timeout",
    "queue_size",
    "name",
    "listen",
    "idle_timeout",
    "max_connections",
];

pub(crate) fn listener(report: &mut Report<'_>, s: &Section<'_, '_>) -> Option<TcpListener> {
    let (name, listen) = s.name_and_listen(report);
    let upstream = upstream(report, s, Layer::Tcp);
    require_backends(report, s, &upstream);
    Some(TcpListener {
        name: name?.to_string(),
        listen: listen?,
        idle_timeout: s.duration(report, "idle_timeout", Duration::from_secs(600)),
        max_connections: s.int(report, "max_connections", 1..=1_000_000, 10_000) as u32,
        upstream,
    })
}
