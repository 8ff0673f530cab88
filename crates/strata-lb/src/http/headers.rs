//! Header rewriting between client and backend: hop-by-hop removal, forwarding headers, Via.

use std::net::{IpAddr, SocketAddr};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::Version;
use strata_config::Forwarded;

static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Removes the headers that describe one connection only (RFC 9110 7.6.1), including any that
/// the Connection header names.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
        headers.remove(header::CONNECTION);
    }
    for name in [
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
        &header::TE,
        &header::TRAILER,
        &header::TRANSFER_ENCODING,
        &header::UPGRADE,
    ] {
        if headers.contains_key(name) {
            headers.remove(name);
        }
    }
}

/// Adds the forwarding headers a backend needs to know the real client, and Via.
pub(crate) fn add_forwarding(
    headers: &mut HeaderMap,
    mode: Forwarded,
    client: SocketAddr,
    tls: bool,
    host: Option<&HeaderValue>,
    version: Version,
) {
    let proto = if tls { "https" } else { "http" };
    match mode {
        Forwarded::XForwarded => {
            let ip = client.ip().to_string();
            let xff = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
                Some(prior) => format!("{prior}, {ip}"),
                None => ip,
            };
            if let Ok(v) = HeaderValue::from_str(&xff) {
                headers.insert(&X_FORWARDED_FOR, v);
            }
            headers.insert(&X_FORWARDED_PROTO, HeaderValue::from_static(proto));
            if let Some(host) = host {
                headers.insert(&X_FORWARDED_HOST, host.clone());
            }
        }
        Forwarded::Rfc7239 => {
            let node = match client.ip() {
                IpAddr::V4(ip) => ip.to_string(),
                IpAddr::V6(ip) => format!("\"[{ip}]\""),
            };
            let mut element = format!("for={node};proto={proto}");
            if let Some(host) = host.and_then(|h| h.to_str().ok()) {
                element.push_str(&format!(";host=\"{host}\""));
            }
            let value = match headers.get(header::FORWARDED).and_then(|v| v.to_str().ok()) {
                Some(prior) => format!("{prior}, {element}"),
                None => element,
            };
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.insert(header::FORWARDED, v);
            }
        }
        Forwarded::None => {}
    }
    add_via(headers, version);
}

/// Appends this hop to Via (RFC 9110 7.6.3), naming the protocol version it received.
pub(crate) fn add_via(headers: &mut HeaderMap, version: Version) {
    let hop = match version {
        Version::HTTP_2 => "2 strata",
        Version::HTTP_10 => "1.0 strata",
        _ => "1.1 strata",
    };
    let value = match headers.get(header::VIA).and_then(|v| v.to_str().ok()) {
        Some(prior) => HeaderValue::from_str(&format!("{prior}, {hop}")).ok(),
        None => Some(HeaderValue::from_static(hop)),
    };
    if let Some(v) = value {
        headers.insert(header::VIA, v);
    }
}

/// The value of cookie `name` in the request's Cookie headers.
pub(crate) fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_named_ones_go() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, X-Secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key(header::ACCEPT));
    }

    #[test]
    fn forwarded_for_appends() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.9"));
        let host = HeaderValue::from_static("example.com");
        add_forwarding(
            &mut h,
            Forwarded::XForwarded,
            "10.1.2.3:5555".parse().unwrap(),
            true,
            Some(&host),
            Version::HTTP_11,
        );
        assert_eq!(h["x-forwarded-for"], "203.0.113.9, 10.1.2.3");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "example.com");
        assert_eq!(h["via"], "1.1 strata");

        let mut h = HeaderMap::new();
        add_forwarding(
            &mut h,
            Forwarded::Rfc7239,
            "[::1]:5555".parse().unwrap(),
            false,
            Some(&host),
            Version::HTTP_2,
        );
        assert_eq!(
            h["forwarded"],
            "for=\"[::1]\";proto=http;host=\"example.com\""
        );
        assert_eq!(h["via"], "2 strata");
    }

    #[test]
    fn cookies() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; sid=xyz; b=2"),
        );
        assert_eq!(cookie(&h, "sid"), Some("xyz"));
        assert_eq!(cookie(&h, "nope"), None);
    }
}
