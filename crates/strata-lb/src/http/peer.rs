//! The client connection a request came in on, as every part of the request path sees it.

use std::io::Write;
use std::net::SocketAddr;

/// The client connection a request came in on.
pub(crate) struct Peer {
    pub(crate) addr: SocketAddr,
    /// The client's IP as text, for the forwarding headers and the access log: kept inline
    /// (the longest IPv6 text is 45 bytes), so making a peer per request allocates nothing.
    ip: [u8; 46],
    ip_len: u8,
    pub(crate) tls: bool,
}

impl Peer {
    pub(crate) fn new(addr: SocketAddr, tls: bool) -> Self {
        let mut ip = [0u8; 46];
        let mut w = &mut ip[..];
        // fits: an IP's text is at most 45 bytes
        let _ = write!(w, "{}", addr.ip());
        let ip_len = (46 - w.len()) as u8;
        Peer {
            addr,
            ip,
            ip_len,
            tls,
        }
    }

    /// The client's IP as text.
    pub(crate) fn ip(&self) -> &str {
        // written from an IP's Display, so ASCII
        std::str::from_utf8(&self.ip[..self.ip_len as usize]).unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_texts_are_the_addresses_display_the_longest_too() {
        for addr in [
            "[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255]:1",
            "[::ffff:255.255.255.255]:1",
            "[2001:db8::1]:443",
            "255.255.255.255:65535",
            "10.0.0.1:80",
        ] {
            let addr: SocketAddr = addr.parse().unwrap();
            assert_eq!(Peer::new(addr, false).ip(), addr.ip().to_string());
        }
    }
}
