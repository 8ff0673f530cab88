//! Writing the heads that leave the proxy, straight from the parsed bytes: the request to the
//! backend (hop-by-hop headers out, forwarding headers and Via in) and the response to the
//! client. The framing headers that leave (Content-Length, Transfer-Encoding) are always
//! written from the framing the proxy decided on, never copied from the other side.

use std::io::Write;
use std::net::IpAddr;

use strata_config::Forwarded;

use super::codec::{cgi_name_is, Framing, Head, RequestHead, ResponseHead, Version};
use crate::http::Peer;

/// Headers that describe one connection only (RFC 9110 7.6.1), never forwarded.
const HOP_BY_HOP: &[&[u8]] = &[
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"te",
    b"trailer",
    b"transfer-encoding",
    b"upgrade",
];

pub(crate) fn is_hop(name: &[u8], head: &Head) -> bool {
    HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h)) || head.connection_names(name)
}

/// Names that CGI-style backends (PHP, WSGI, Rack) read as a header the proxy owns once `_`
/// turns into `-`: `Content_Length`, `X_Forwarded_For`. Dropped, as nginx drops names with
/// underscores.
fn shadows(name: &[u8]) -> bool {
    const OWNED: &[&[u8]] = &[
        b"content-length",
        b"transfer-encoding",
        b"host",
        b"connection",
        b"forwarded",
        b"via",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"x-real-ip",
    ];
    name.contains(&b'_') && OWNED.iter().any(|owned| cgi_name_is(name, owned))
}

/// Content-Length and Transfer-Encoding: the proxy writes its own.
pub(crate) fn is_framing(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"transfer-encoding")
}

/// The Content-Length a response goes on with: its body's length, or for the answer to a HEAD
/// or a 304, the length it declares for the representation. None for a chunked or
/// close-delimited body, and for 1xx and 204, which never carry one (RFC 9110 8.6).
pub(crate) fn response_length(resp: &ResponseHead) -> Option<u64> {
    match resp.head.framing {
        Framing::Length(n) => Some(n),
        Framing::Empty if resp.status >= 200 && resp.status != 204 => resp.head.content_length,
        _ => None,
    }
}

fn header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Appends `hop` to the values of a list header seen earlier in the message.
fn list_header(out: &mut Vec<u8>, name: &[u8], prior: &[&[u8]], hop: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    for p in prior {
        out.extend_from_slice(p);
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(hop);
    out.extend_from_slice(b"\r\n");
}

/// Whether a client said it takes trailer fields (`TE: trailers`; HTTP/2 clients' `te` can
/// say nothing else).
pub(crate) fn takes_trailers(head: &Head) -> bool {
    head.get_all("te").any(|v| {
        v.split(|&b| b == b',').any(|t| {
            t.split(|&b| b == b';')
                .next()
                .unwrap_or(b"")
                .trim_ascii()
                .eq_ignore_ascii_case(b"trailers")
        })
    })
}

/// The request head for the backend, HTTP/1.1, into `out`.
pub(crate) fn request_head(req: &RequestHead, mode: Forwarded, peer: &Peer, out: &mut Vec<u8>) {
    let head = &req.head;
    out.extend_from_slice(req.method());
    out.push(b' ');
    let origin = req.origin();
    if !origin.starts_with(b"/") && req.authority().is_some() {
        out.push(b'/');
    }
    out.extend_from_slice(origin);
    // absolute-form (RFC 9112 3.2.2): its authority is the Host
    let host_from_target = req.authority();
    out.extend_from_slice(b" HTTP/1.1\r\n");

    let mut host: Option<&[u8]> = None;
    let mut xff: Vec<&[u8]> = Vec::new();
    let mut via: Vec<&[u8]> = Vec::new();
    let mut forwarded: Vec<&[u8]> = Vec::new();
    for (name, value) in head.fields() {
        // before the hop-by-hop check: a Connection header may never remove these
        if is_framing(name) {
            continue;
        }
        if name.eq_ignore_ascii_case(b"host") {
            if host.is_none() {
                host = Some(host_from_target.unwrap_or(value));
                header(out, b"host", host.unwrap_or(value));
            }
            continue;
        }
        if is_hop(name, head) || name.eq_ignore_ascii_case(b"expect") {
            continue;
        }
        if name.eq_ignore_ascii_case(b"via") {
            via.push(value);
            continue;
        }
        if shadows(name) {
            continue;
        }
        let x_forwarded = name.len() > 12 && name[..12].eq_ignore_ascii_case(b"x-forwarded-");
        match mode {
            Forwarded::XForwarded if name.eq_ignore_ascii_case(b"x-forwarded-for") => {
                xff.push(value);
                continue;
            }
            // the proxy writes these itself; the other family could be taken for its word
            Forwarded::XForwarded if x_forwarded || name.eq_ignore_ascii_case(b"forwarded") => {
                continue
            }
            Forwarded::Rfc7239 if name.eq_ignore_ascii_case(b"forwarded") => {
                forwarded.push(value);
                continue;
            }
            Forwarded::Rfc7239 if x_forwarded => continue,
            _ => {}
        }
        header(out, name, value);
    }
    if host.is_none() {
        // an absolute-form target without a Host header (the codec refuses any other request
        // without one)
        host = host_from_target;
        if let Some(h) = host {
            header(out, b"host", h);
        }
    }
    let proto: &[u8] = if peer.tls { b"https" } else { b"http" };
    let ip = peer.ip_bytes();
    match mode {
        Forwarded::XForwarded => {
            list_header(out, b"x-forwarded-for", &xff, ip);
            header(out, b"x-forwarded-proto", proto);
            if let Some(h) = host {
                header(out, b"x-forwarded-host", h);
            }
        }
        Forwarded::Rfc7239 => {
            let mut element = Vec::with_capacity(64);
            match peer.addr.ip() {
                IpAddr::V4(_) => {
                    element.extend_from_slice(b"for=");
                    element.extend_from_slice(ip);
                }
                IpAddr::V6(_) => {
                    element.extend_from_slice(b"for=\"[");
                    element.extend_from_slice(ip);
                    element.extend_from_slice(b"]\"");
                }
            }
            element.extend_from_slice(b";proto=");
            element.extend_from_slice(proto);
            if let Some(h) = host {
                element.extend_from_slice(b";host=\"");
                element.extend_from_slice(h);
                element.push(b'"');
            }
            list_header(out, b"forwarded", &forwarded, &element);
        }
        Forwarded::None => {}
    }
    list_header(out, b"via", &via, via_hop(head.version));
    // TE is this hop's: the backend is told trailers are welcome when the client said so, as
    // they reach it
    if takes_trailers(head) {
        header(out, b"te", b"trailers");
    }
    match head.framing {
        Framing::Chunked => header(out, b"transfer-encoding", b"chunked"),
        Framing::Length(n) => length_header(out, n),
        // an explicit zero goes on: some backends want a length on every POST
        Framing::Empty if head.content_length == Some(0) => length_header(out, 0),
        Framing::Empty | Framing::Close => {}
    }
    if head.upgrade {
        header(out, b"connection", b"upgrade");
        if let Some(u) = head.get("upgrade") {
            header(out, b"upgrade", u);
        }
    }
    out.extend_from_slice(b"\r\n");
}

fn length_header(out: &mut Vec<u8>, mut n: u64) {
    // by hand: this runs for most responses, and fmt costs more than the digits
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(b"content-length: ");
    out.extend_from_slice(&digits[i..]);
    out.extend_from_slice(b"\r\n");
}

/// This hop's entry in Via: the protocol the message came in with (RFC 9110 7.6.3).
pub(crate) fn via_hop(version: Version) -> &'static [u8] {
    match version {
        Version::Http10 => b"1.0 strata",
        Version::Http11 => b"1.1 strata",
        Version::Http2 => b"2 strata",
    }
}

/// How the response body goes to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Relay {
    /// As the backend framed it (nothing, or Content-Length).
    AsIs,
    /// Chunked to an HTTP/1.1 client (the data is re-chunked as it arrives).
    Chunked,
    /// Until the connection closes.
    UntilClose,
}

/// `HTTP/1.1 NNN ` for a status the codec accepted (100-599), without the
/// formatting machinery: this runs once per response.
fn status_line_start(out: &mut Vec<u8>, status: u16) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(&[
        b'0' + (status / 100 % 10) as u8,
        b'0' + (status / 10 % 10) as u8,
        b'0' + (status % 10) as u8,
        b' ',
    ]);
}

/// The response head for the client into `out`; returns how the body is relayed and whether
/// the client connection stays open after it.
pub(crate) fn response_head(
    resp: &ResponseHead,
    client: &Head,
    keep_alive: bool,
    out: &mut Vec<u8>,
) -> (Relay, bool) {
    let head = &resp.head;
    let relay = match head.framing {
        Framing::Empty | Framing::Length(_) => Relay::AsIs,
        Framing::Chunked if client.version == Version::Http11 => Relay::Chunked,
        Framing::Chunked | Framing::Close => Relay::UntilClose,
    };
    let tunnel = head.upgrade;
    let keep_alive = keep_alive && client.keep_alive && relay != Relay::UntilClose && !tunnel;
    status_line_start(out, resp.status);
    out.extend_from_slice(resp.reason());
    out.extend_from_slice(b"\r\n");
    let mut via: Vec<&[u8]> = Vec::new();
    for (name, value) in head.fields() {
        if name.eq_ignore_ascii_case(b"via") {
            via.push(value);
        } else if !is_framing(name) && !is_hop(name, head) {
            header(out, name, value);
        }
    }
    list_header(out, b"via", &via, via_hop(head.version));
    match relay {
        Relay::Chunked => header(out, b"transfer-encoding", b"chunked"),
        Relay::AsIs => {
            if let Some(n) = response_length(resp) {
                length_header(out, n);
            }
        }
        Relay::UntilClose => {}
    }
    if resp.status == 101 {
        header(out, b"connection", b"upgrade");
        if let Some(u) = head.get("upgrade") {
            header(out, b"upgrade", u);
        }
    } else if tunnel {
        // CONNECT established: the connection is the tunnel now
    } else if !keep_alive {
        header(out, b"connection", b"close");
    } else if client.version == Version::Http10 {
        header(out, b"connection", b"keep-alive");
    }
    out.extend_from_slice(b"\r\n");
    (relay, keep_alive)
}

/// A complete small response made by the proxy itself.
pub(crate) fn local_response(
    status: u16,
    text: &str,
    keep_alive: bool,
    extra: &[(&str, &str)],
) -> Vec<u8> {
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    let mut out = Vec::with_capacity(160 + text.len());
    let _ = write!(out, "HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\n", text.len());
    for (name, value) in extra {
        let _ = write!(out, "{name}: {value}\r\n");
    }
    if !keep_alive {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(text.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    use crate::http::h1::codec::{parse_request, parse_response, Asked};

    fn request(text: &str, mode: Forwarded) -> String {
        let mut buf = BytesMut::from(text);
        let req = parse_request(&mut buf, 8192).unwrap().unwrap();
        let peer = Peer::new("10.1.2.3:5555".parse().unwrap(), false);
        let mut out = Vec::new();
        request_head(&req, mode, &peer, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn request_to_backend() {
        let out = request(
            "GET /a HTTP/1.1\r\nHost: shop\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\nX-Forwarded-For: 203.0.113.7\r\nAccept: */*\r\nExpect: 100-continue\r\n\r\n",
            Forwarded::XForwarded,
        );
        assert_eq!(
            out,
            "GET /a HTTP/1.1\r\nhost: shop\r\nAccept: */*\r\nx-forwarded-for: 203.0.113.7, 10.1.2.3\r\nx-forwarded-proto: http\r\nx-forwarded-host: shop\r\nvia: 1.1 strata\r\n\r\n"
        );
        let out = request(
            "POST http://api.example:8080/v1?x=1 HTTP/1.1\r\nHost: ignored\r\nTransfer-Encoding: chunked\r\n\r\n",
            Forwarded::Rfc7239,
        );
        assert_eq!(
            out,
            "POST /v1?x=1 HTTP/1.1\r\nhost: api.example:8080\r\nforwarded: for=10.1.2.3;proto=http;host=\"api.example:8080\"\r\nvia: 1.1 strata\r\ntransfer-encoding: chunked\r\n\r\n"
        );
        let out = request(
            "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            Forwarded::None,
        );
        assert_eq!(out, "GET /ws HTTP/1.1\r\nhost: h\r\nvia: 1.1 strata\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n");
    }

    #[test]
    fn response_to_client() {
        let mut rbuf = BytesMut::from("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nKeep-Alive: timeout=5\r\nVia: 1.1 cdn\r\nX-App: 1\r\n\r\n");
        let resp = parse_response(&mut rbuf, 8192, Asked::Other)
            .unwrap()
            .unwrap();
        let mut qbuf =
            BytesMut::from("GET / HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n");
        let old_client = parse_request(&mut qbuf, 8192).unwrap().unwrap();
        let mut out = Vec::new();
        let (relay, keep) = response_head(&resp, &old_client.head, true, &mut out);
        // an HTTP/1.0 client can't take chunks: the body runs until the connection closes
        assert_eq!((relay, keep), (Relay::UntilClose, false));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\nX-App: 1\r\nvia: 1.1 cdn, 1.1 strata\r\nconnection: close\r\n\r\n"
        );
    }

    #[test]
    fn framing_is_written_from_what_the_proxy_read() {
        // named in Connection, listed twice, with leading zeros: one length, as read
        let out = request(
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 005, 5\r\nConnection: content-length, host\r\n\r\n",
            Forwarded::None,
        );
        assert_eq!(
            out,
            "POST / HTTP/1.1\r\nhost: a\r\nvia: 1.1 strata\r\ncontent-length: 5\r\n\r\n"
        );
        let out = request(
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
            Forwarded::None,
        );
        assert!(out.ends_with("content-length: 0\r\n\r\n"), "{out}");

        let mut qbuf = BytesMut::from("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        let client = parse_request(&mut qbuf, 8192).unwrap().unwrap();
        let respond = |text: &str| {
            let mut rbuf = BytesMut::from(text);
            let resp = parse_response(&mut rbuf, 8192, Asked::Other)
                .unwrap()
                .unwrap();
            let mut out = Vec::new();
            let (relay, keep) = response_head(&resp, &client.head, true, &mut out);
            (String::from_utf8(out).unwrap(), relay, keep)
        };
        let (out, relay, keep) =
            respond("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: content-length\r\n\r\n");
        assert_eq!((relay, keep), (Relay::AsIs, true));
        assert_eq!(
            out,
            "HTTP/1.1 200 OK\r\nvia: 1.1 strata\r\ncontent-length: 2\r\n\r\n"
        );
        // both: chunked wins and the length goes (RFC 9112 6.3)
        let (out, relay, _) =
            respond("HTTP/1.1 200 OK\r\nContent-Length: 9\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(relay, Relay::Chunked);
        assert_eq!(
            out,
            "HTTP/1.1 200 OK\r\nvia: 1.1 strata\r\ntransfer-encoding: chunked\r\n\r\n"
        );
        // a 304 keeps the length of what it stands for; a 204 never has one
        let (out, ..) = respond("HTTP/1.1 304 Not Modified\r\nContent-Length: 0012\r\n\r\n");
        assert!(out.contains("content-length: 12\r\n"), "{out}");
        let (out, ..) = respond("HTTP/1.1 204 No Content\r\nContent-Length: 3\r\n\r\n");
        assert!(!out.contains("content-length"), "{out}");
    }

    #[test]
    fn look_alikes_and_the_other_forwarding_family_are_dropped() {
        let out = request(
            "GET / HTTP/1.1\r\nHost: a\r\nX_Forwarded_For: 1.1.1.1\r\nContent_Length: 9\r\nForwarded: for=1.1.1.1\r\nX-Forwarded-Port: 1\r\nX_Custom: ok\r\n\r\n",
            Forwarded::XForwarded,
        );
        assert_eq!(out, "GET / HTTP/1.1\r\nhost: a\r\nX_Custom: ok\r\nx-forwarded-for: 10.1.2.3\r\nx-forwarded-proto: http\r\nx-forwarded-host: a\r\nvia: 1.1 strata\r\n\r\n");
        let out = request(
            "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.1.1.1\r\n\r\n",
            Forwarded::Rfc7239,
        );
        assert!(!out.contains("1.1.1.1"), "{out}");
        // with forwarding off, the proxy is transparent
        let out = request(
            "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.1.1.1\r\n\r\n",
            Forwarded::None,
        );
        assert!(out.contains("X-Forwarded-For: 1.1.1.1"), "{out}");
    }

    #[test]
    fn absolute_targets_become_origin_form() {
        let go = |target: &str| {
            let out = request(
                &format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n"),
                Forwarded::None,
            );
            out[..out.find("\r\nvia").unwrap()].to_string()
        };
        assert_eq!(go("http://h:1/p?q"), "GET /p?q HTTP/1.1\r\nhost: h:1");
        // found by fuzzing: the query of a target with an empty path was dropped
        assert_eq!(go("http://h?q=1"), "GET /?q=1 HTTP/1.1\r\nhost: h");
        assert_eq!(go("HTTPS://h"), "GET / HTTP/1.1\r\nhost: h");
    }
}
