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
        let ip_len = match addr.ip() {
            // by hand: this runs once per request, and formatting machinery costs hundreds of
            // instructions for four numbers
            std::net::IpAddr::V4(v4) => {
                let mut n = 0;
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        ip[n] = b'.';
                        n += 1;
                    }
                    if octet >= 100 {
                        ip[n] = b'0' + octet / 100;
                        n += 1;
                    }
                    if octet >= 10 {
                        ip[n] = b'0' + octet / 10 % 10;
                        n += 1;
                    }
                    ip[n] = b'0' + octet % 10;
                    n += 1;
                }
                n as u8
            }
            v6 => {
                let mut w = &mut ip[..];
                // fits: an IPv6 address's text is at most 45 bytes
                let _ = write!(w, "{v6}");
                (46 - w.len()) as u8
            }
        };
        Peer {
            addr,
            ip,
            ip_len,
            tls,
        }
    }

    /// The client's IP as text, as bytes (for a head).
    pub(crate) fn ip_bytes(&self) -> &[u8] {
        &self.ip[..self.ip_len as usize]
    }

    /// The client's IP as text (validated: for the log, not the hot path).
    pub(crate) fn ip(&self) -> &str {
        // written by hand from digits or from an IP's Display, so ASCII
        std::str::from_utf8(self.ip_bytes()).unwrap_or("")
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
            "0.0.0.0:1",
            "1.20.100.255:2",
            "192.168.7.9:3",
        ] {
            let addr: SocketAddr = addr.parse().unwrap();
            assert_eq!(Peer::new(addr, false).ip(), addr.ip().to_string());
        }
    }
}
