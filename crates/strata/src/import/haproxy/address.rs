//! Addresses as HAProxy reads them (`str2sa_range`): a `bind` address with its port or port
//! range, a `server` address with a port that may be missing or relative, each after an optional
//! family prefix such as `ipv4@` or `unix@`; and how Strata writes the ones it can take.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Where an address is, host-wise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Host {
    Ip(IpAddr),
    /// `localhost`, which Strata takes as HAProxy does.
    Localhost,
    /// A name HAProxy resolves when it starts, and Strata does not.
    Name(String),
}

impl Host {
    /// `text` after its family prefix; `*` or nothing is the family's any-address.
    fn read(text: &str, v6: bool) -> Host {
        let text = text
            .strip_prefix('[')
            .and_then(|t| t.strip_suffix(']'))
            .unwrap_or(text);
        if text.is_empty() || text == "*" {
            return Host::Ip(if v6 {
                IpAddr::V6(Ipv6Addr::UNSPECIFIED)
            } else {
                IpAddr::V4(Ipv4Addr::UNSPECIFIED)
            });
        }
        if text == "localhost" {
            return Host::Localhost;
        }
        match text.parse::<IpAddr>() {
            Ok(ip) => Host::Ip(ip),
            Err(_) => Host::Name(text.to_string()),
        }
    }

    /// With `port`, as Strata writes an address: `10.0.0.1:80`, `[::1]:80`; `None` for a name.
    pub(super) fn with_port(&self, port: u16) -> Option<String> {
        match self {
            Host::Ip(IpAddr::V6(ip)) => Some(format!("[{ip}]:{port}")),
            Host::Ip(ip) => Some(format!("{ip}:{port}")),
            Host::Localhost => Some(format!("localhost:{port}")),
            Host::Name(_) => None,
        }
    }
}

/// What kind of socket an address is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Socket {
    /// A TCP address; IPv6 when the family says so.
    Tcp { v6: bool },
    /// A unix socket, abstract socket, inherited file descriptor or socket pair.
    Local,
    /// QUIC or UDP.
    Datagram,
}

/// A `bind` address: a host and a range of ports, or a socket Strata can't listen on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Bind {
    Tcp { host: Host, ports: (u16, u16) },
    Other(Socket),
}

/// A `server` address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Server {
    Tcp { host: Host, port: Port },
    Other(Socket),
}

/// A server's port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Port {
    Fixed(u16),
    /// None written: the port the client connected to.
    Same,
    /// `+N` or `-N`: that far from the port the client connected to.
    Offset(i32),
}

impl Port {
    /// The port for a client that connected to `listen`, when it is one.
    pub(super) fn for_listen(self, listen: u16) -> Option<u16> {
        match self {
            Port::Fixed(p) => Some(p),
            Port::Same => Some(listen),
            Port::Offset(d) => u16::try_from(i32::from(listen) + d)
                .ok()
                .filter(|p| *p != 0),
        }
    }
}

/// The family prefix of `text`, and what follows it.
fn family(text: &str) -> Result<(Socket, &str), String> {
    if text.starts_with('/') {
        return Ok((Socket::Local, text));
    }
    let Some((prefix, rest)) = text.split_once('@') else {
        return Ok((Socket::Tcp { v6: false }, text));
    };
    let tcp = |v6| Ok((Socket::Tcp { v6 }, rest));
    match prefix {
        "ip" | "ipv4" | "tcp" | "tcp4" | "stream+ip" | "stream+ipv4" | "mptcp" | "mptcp4" => {
            tcp(false)
        }
        "ipv6" | "tcp6" | "stream+ipv6" | "mptcp6" => tcp(true),
        "unix" | "uxst" | "abns" | "abnsz" | "fd" | "sockpair" | "stream+unix" | "stream+fd" => {
            Ok((Socket::Local, rest))
        }
        "quic4" | "quic6" | "quic+ipv4" | "quic+ipv6" | "udp" | "udp4" | "udp6" | "uxdg"
        | "dgram+ip" | "dgram+ipv4" | "dgram+ipv6" | "dgram+unix" => Ok((Socket::Datagram, rest)),
        _ => Err(format!(
            "`{prefix}@` is not an address family HAProxy has (such as ipv4@, ipv6@, unix@)"
        )),
    }
}

/// `text` split into its host and what follows the host's last `:` (IPv6 addresses in
/// brackets, or without them, as HAProxy reads them: the port is after the last colon).
fn host_port(text: &str) -> Option<(&str, &str)> {
    if text.starts_with('[') {
        let end = text.find(']')?;
        let rest = &text[end + 1..];
        return Some((&text[..=end], rest.strip_prefix(':').unwrap_or(rest)))
            .filter(|_| rest.is_empty() || rest.starts_with(':'));
    }
    text.rsplit_once(':')
}

fn port(text: &str) -> Option<u16> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// One address of a `bind` list, as HAProxy reads it.
pub(super) fn bind(text: &str) -> Result<Bind, String> {
    let (socket, rest) = family(text)?;
    let Socket::Tcp { v6 } = socket else {
        return Ok(Bind::Other(socket));
    };
    let Some((host, ports)) = host_port(rest).filter(|(_, p)| !p.is_empty()) else {
        return Err(format!(
            "{text:?} has no port (HAProxy refuses a `bind` without one)"
        ));
    };
    let (first, last) = ports.split_once('-').unwrap_or((ports, ports));
    match (port(first), port(last)) {
        (Some(a), Some(b)) if a >= 1 && a <= b => Ok(Bind::Tcp {
            host: Host::read(host, v6),
            ports: (a, b),
        }),
        _ => Err(format!(
            "{ports:?} is not a port or a range of ports (1 to 65535, such as 80 or 8000-8003)"
        )),
    }
}

/// A `server` address, as HAProxy reads it.
pub(super) fn server(text: &str) -> Result<Server, String> {
    let (socket, rest) = family(text)?;
    let Socket::Tcp { v6 } = socket else {
        return Ok(Server::Other(socket));
    };
    let (host, port_text) = match host_port(rest) {
        // a bare IPv6 address has colons and no port
        Some(_) if !rest.starts_with('[') && rest.parse::<Ipv6Addr>().is_ok() && v6 => (rest, ""),
        Some(split) => split,
        None => (rest, ""),
    };
    let port = if port_text.is_empty() {
        Port::Same
    } else if let Some(offset) = port_text.strip_prefix('+') {
        Port::Offset(offset_of(offset, text)?)
    } else if let Some(offset) = port_text.strip_prefix('-') {
        Port::Offset(-offset_of(offset, text)?)
    } else {
        match port(port_text) {
            Some(0) => Port::Same,
            Some(p) => Port::Fixed(p),
            None => return Err(format!("{port_text:?} in {text:?} is not a port")),
        }
    };
    Ok(Server::Tcp {
        host: Host::read(host, v6),
        port,
    })
}

fn offset_of(digits: &str, text: &str) -> Result<i32, String> {
    port(digits)
        .map(i32::from)
        .ok_or_else(|| format!("{digits:?} in {text:?} is not a port offset"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> Host {
        Host::Ip(text.parse().unwrap())
    }

    #[test]
    fn import_haproxy_reads_bind_addresses_as_haproxy_does() {
        let tcp = |host, a, b| {
            Ok(Bind::Tcp {
                host,
                ports: (a, b),
            })
        };
        assert_eq!(bind(":80"), tcp(ip("0.0.0.0"), 80, 80));
        assert_eq!(bind("*:80"), tcp(ip("0.0.0.0"), 80, 80));
        assert_eq!(bind("0.0.0.0:8000-8003"), tcp(ip("0.0.0.0"), 8000, 8003));
        assert_eq!(bind("[::]:443"), tcp(ip("::"), 443, 443));
        assert_eq!(bind(":::443"), tcp(ip("::"), 443, 443));
        assert_eq!(bind("ipv6@:444"), tcp(ip("::"), 444, 444));
        assert_eq!(bind("ipv4@*:445"), tcp(ip("0.0.0.0"), 445, 445));
        assert_eq!(bind("10.0.0.1:80"), tcp(ip("10.0.0.1"), 80, 80));
        assert_eq!(bind("localhost:80"), tcp(Host::Localhost, 80, 80));
        assert_eq!(
            bind("lb.internal:80"),
            tcp(Host::Name("lb.internal".into()), 80, 80)
        );
        assert_eq!(bind("/run/haproxy.sock"), Ok(Bind::Other(Socket::Local)));
        assert_eq!(bind("unix@haproxy.sock"), Ok(Bind::Other(Socket::Local)));
        assert_eq!(bind("fd@${FD}"), Ok(Bind::Other(Socket::Local)));
        assert_eq!(bind("quic4@:443"), Ok(Bind::Other(Socket::Datagram)));
        assert!(bind("10.0.0.1").unwrap_err().contains("has no port"));
        assert!(bind(":0").unwrap_err().contains("not a port"));
        assert!(bind(":81-80").unwrap_err().contains("not a port"));
        assert!(bind(":http").unwrap_err().contains("not a port"));
        assert!(bind("sctp@:80")
            .unwrap_err()
            .contains("not an address family"));
    }

    #[test]
    fn import_haproxy_reads_server_addresses_as_haproxy_does() {
        let tcp = |host, port| Ok(Server::Tcp { host, port });
        assert_eq!(server("10.0.0.1:80"), tcp(ip("10.0.0.1"), Port::Fixed(80)));
        assert_eq!(server("10.0.0.1"), tcp(ip("10.0.0.1"), Port::Same));
        assert_eq!(server("10.0.0.1:+1"), tcp(ip("10.0.0.1"), Port::Offset(1)));
        assert_eq!(
            server("10.0.0.1:-80"),
            tcp(ip("10.0.0.1"), Port::Offset(-80))
        );
        assert_eq!(server("[::1]:81"), tcp(ip("::1"), Port::Fixed(81)));
        assert_eq!(server("::1:80"), tcp(ip("::1"), Port::Fixed(80)));
        assert_eq!(server("ipv6@::1"), tcp(ip("::1"), Port::Same));
        assert_eq!(server("[::1]"), tcp(ip("::1"), Port::Same));
        assert_eq!(server("0.0.0.0"), tcp(ip("0.0.0.0"), Port::Same));
        assert_eq!(
            server("app-1.internal:8080"),
            tcp(Host::Name("app-1.internal".into()), Port::Fixed(8080))
        );
        assert_eq!(server("/run/app.sock"), Ok(Server::Other(Socket::Local)));
        assert!(server("10.0.0.1:x").unwrap_err().contains("not a port"));
        assert_eq!(Port::Offset(1).for_listen(80), Some(81));
        assert_eq!(Port::Offset(-80).for_listen(80), None);
        assert_eq!(Port::Same.for_listen(443), Some(443));
        assert_eq!(ip("::1").with_port(80).as_deref(), Some("[::1]:80"));
        assert_eq!(Host::Name("x".into()).with_port(80), None);
    }
}
