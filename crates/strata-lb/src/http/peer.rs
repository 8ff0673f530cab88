//! The client connection a request came in on, as every part of the request path sees it.

use std::net::SocketAddr;

/// The client connection a request came in on.
pub(crate) struct Peer {
    pub(crate) addr: SocketAddr,
    /// The client's IP as text, made once per connection for the forwarding headers.
    pub(crate) ip: String,
    pub(crate) tls: bool,
}

impl Peer {
    pub(crate) fn new(addr: SocketAddr, tls: bool) -> Self {
        Peer {
            addr,
            ip: addr.ip().to_string(),
            tls,
        }
    }
}
