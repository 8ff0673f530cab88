//! Entry points for the cargo-fuzz targets in `fuzz/` (feature "fuzz"), also run by the unit
//! tests on known attacks. Each checks a property, not just that nothing panics: the request
//! and response paths are differential, checked against [`oracle`], a second parser written
//! only for this.

mod h2frame;
pub mod hpack_oracle;
pub mod oracle;
#[cfg(test)]
mod tests;

pub use h2frame::h2_frame;

use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};

use crate::http::h1::body::BodyReader;
use crate::http::h1::codec::{
    chunk_header, last_chunk, parse_request, parse_response, Asked, ChunkedDecoder, Framing,
    RequestHead, LAST_CHUNK,
};
use crate::http::h1::rewrite::{request_head, response_head, Relay};
use crate::http::hpack::{self, DynamicTable, HpackError};
use crate::http::proxy::allow_upgrade;
use crate::http::Peer;

/// A request as the proxy read it from the client.
#[derive(Debug)]
pub struct Reading {
    pub method: Vec<u8>,
    pub target: Vec<u8>,
    pub body: Vec<u8>,
}

/// What the request path makes of a client's byte stream: the requests it reads and forwards,
/// and the bytes that go to the backend connection, as `h1::server` and `proxy::send` write
/// them (the head rewritten, the body re-framed).
pub fn request_path(
    data: &[u8],
    mode: strata_config::Forwarded,
    allow_connect: bool,
) -> (Vec<Reading>, Vec<u8>) {
    let peer = Peer::new("192.0.2.1:1234".parse().expect("literal"), false);
    let allowed = ["websocket".to_string()];
    let mut buf = BytesMut::from(data);
    let mut readings = Vec::new();
    let mut wire = Vec::new();
    // a request refused, answered by the proxy, cut short, or an upgrade ends the stream
    while let Ok(Some(mut req)) = parse_request(&mut buf, 64 * 1024) {
        allow_upgrade(&mut req, &allowed);
        let connect = req.method() == b"CONNECT";
        if connect && !allow_connect {
            break; // answered 405 by the proxy
        }
        let mut out = Vec::new();
        request_head(&req, mode, &peer, &mut out);
        let Some(body) = body(req.head.framing, &mut buf, Some(&mut out)) else {
            break; // the backend connection is dropped with the request incomplete
        };
        wire.extend_from_slice(&out);
        readings.push(Reading {
            method: req.method().to_vec(),
            target: origin_form(&req),
            body,
        });
        // after a CONNECT or an upgrade the bytes are a tunnel's, or the connection closes
        if !req.head.keep_alive || req.head.upgrade || connect {
            break;
        }
    }
    (readings, wire)
}

/// The target as the backend should get it: origin-form.
fn origin_form(req: &RequestHead) -> Vec<u8> {
    let t = req.target();
    if t.starts_with(b"/") || t == b"*" || req.method() == b"CONNECT" {
        return t.to_vec();
    }
    let rest = &t[t.iter().position(|&b| b == b'/').map_or(t.len(), |i| i + 2)..];
    match rest.iter().position(|&b| b == b'/' || b == b'?') {
        Some(i) if rest[i] == b'/' => rest[i..].to_vec(),
        Some(i) => [&b"/"[..], &rest[i..]].concat(),
        None => b"/".to_vec(),
    }
}

/// Reads a whole body off `buf` the way the proxy does (the peer has sent everything it will:
/// a body cut short is `None`); with `rechunk`, writes it as the proxy sends it on.
fn body(framing: Framing, buf: &mut BytesMut, rechunk: Option<&mut Vec<u8>>) -> Option<Vec<u8>> {
    let mut reader = BodyReader::new(framing);
    let mut io: &[u8] = &[];
    let mut cx = Context::from_waker(Waker::noop());
    let mut data = Vec::new();
    let mut pieces: Vec<Bytes> = Vec::new();
    loop {
        match reader.poll_next(&mut cx, &mut io, buf) {
            Poll::Ready(Ok(Some(p))) => {
                data.extend_from_slice(&p);
                pieces.push(p);
            }
            Poll::Ready(Ok(None)) => break,
            Poll::Ready(Err(_)) | Poll::Pending => return None,
        }
    }
    if let Some(out) = rechunk {
        for p in &pieces {
            if framing == Framing::Chunked {
                chunk_header(p.len(), out);
                out.extend_from_slice(p);
                out.extend_from_slice(b"\r\n");
            } else {
                out.extend_from_slice(p);
            }
        }
        if framing == Framing::Chunked {
            // as the request path ends a chunked body: with the trailers it may pass on
            last_chunk(&reader.take_trailers(), out);
        }
    }
    Some(data)
}

/// Differential check of the request path: the bytes the proxy sends a backend, read by the
/// oracle, are exactly the requests the proxy read, each with the same body, nothing left
/// over, one Host, one framing header at most, and the proxy's own forwarding headers.
pub fn request(data: &[u8]) {
    use strata_config::Forwarded;
    let modes = [
        (Forwarded::XForwarded, false),
        (Forwarded::Rfc7239, false),
        (Forwarded::None, true),
    ];
    for (mode, allow_connect) in modes {
        let (readings, wire) = request_path(data, mode, allow_connect);
        let seen = oracle::requests(&wire).unwrap_or_else(|e| {
            panic!(
                "the backend can't read what the proxy sent: {e:?}\n{}",
                String::from_utf8_lossy(&wire)
            )
        });
        assert_eq!(
            seen.len(),
            readings.len(),
            "the backend sees another number of requests\n{}",
            String::from_utf8_lossy(&wire)
        );
        for (r, m) in readings.iter().zip(&seen) {
            let line = [&r.method[..], b" ", &r.target, b" HTTP/1.1"].concat();
            if r.method == b"CONNECT" {
                assert!(m.body.is_empty() && m.values("content-length").count() == 0);
            }
            assert_eq!(m.start, line, "{}", String::from_utf8_lossy(&wire));
            assert_eq!(m.body, r.body, "{}", String::from_utf8_lossy(&wire));
            assert_eq!(m.values("host").count(), 1);
            assert_eq!(m.values("via").count(), 1);
            let framing =
                m.values("content-length").count() + m.values("transfer-encoding").count();
            assert!(framing <= 1, "{}", String::from_utf8_lossy(&wire));
            match mode {
                Forwarded::XForwarded => assert_eq!(m.values("x-forwarded-for").count(), 1),
                Forwarded::Rfc7239 => assert_eq!(m.values("forwarded").count(), 1),
                Forwarded::None => {}
            }
        }
    }
}

/// Differential check of the response path. The first byte picks the request (GET or HEAD,
/// from an HTTP/1.1 or HTTP/1.0 client); the rest is what the backend sends. What the client
/// gets, read by the oracle, is one response with the body the proxy read and nothing after
/// it, and a response the connection outlives is delimited by its own framing.
pub fn response(data: &[u8]) {
    let Some((&pick, backend)) = data.split_first() else {
        return;
    };
    let head_request = pick & 1 == 1;
    let request: &[u8] = match (head_request, pick & 2 == 2) {
        (false, false) => b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        (true, false) => b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n",
        (false, true) => b"GET / HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n",
        (true, true) => b"HEAD / HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n",
    };
    let mut q = BytesMut::from(request);
    let Ok(Some(client)) = parse_request(&mut q, 1024) else {
        panic!("the fixed request does not parse");
    };
    let mut buf = BytesMut::from(backend);
    let asked = if head_request {
        Asked::Head
    } else {
        Asked::Other
    };
    // interim answers are dropped; a 101 to a request that did not ask is refused
    let resp = loop {
        match parse_response(&mut buf, 64 * 1024, asked) {
            Ok(Some(r)) if r.head.upgrade => return,
            Ok(Some(r)) if (100..200).contains(&r.status) => continue,
            Ok(Some(r)) => break r,
            _ => return,
        }
    };
    let mut out = Vec::new();
    let (relay, keep_alive) = response_head(&resp, &client.head, true, &mut out);
    let body_bytes = buf.clone();
    let Some(data) = body(resp.head.framing, &mut buf, None) else {
        return; // cut short: the client connection closes mid-body
    };
    match relay {
        Relay::Chunked => {
            if !data.is_empty() {
                chunk_header(data.len(), &mut out);
                out.extend_from_slice(&data);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(LAST_CHUNK);
        }
        Relay::AsIs | Relay::UntilClose => out.extend_from_slice(&data),
    }
    let text = || String::from_utf8_lossy(&out).into_owned();
    let (seen, rest) = oracle::response(&out, head_request)
        .unwrap_or_else(|e| panic!("the client can't read the response: {e:?}\n{}", text()));
    assert_eq!(seen.body, data, "{}", text());
    assert!(rest.is_empty(), "bytes after the response\n{}", text());
    let closes = seen
        .values("connection")
        .any(|v| v.eq_ignore_ascii_case(b"close"));
    if keep_alive {
        assert!(!seen.until_close && !closes, "{}", text());
    } else {
        assert!(closes, "{}", text());
    }
    if resp.head.framing == Framing::Chunked {
        chunked(&body_bytes);
    }
}

/// Decoding a chunked body whole and a byte at a time agree on the data and on the verdict.
pub fn chunked(data: &[u8]) {
    let whole = decode(data, data.len().max(1));
    let bytewise = decode(data, 1);
    assert_eq!(whole, bytewise);
}

fn decode(data: &[u8], step: usize) -> (Vec<u8>, bool, bool) {
    let mut d = ChunkedDecoder::default();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in data.chunks(step) {
        buf.extend_from_slice(piece);
        loop {
            match d.decode(&mut buf) {
                Ok(Some(p)) => out.extend_from_slice(&p),
                Ok(None) => break,
                Err(_) => return (out, false, true),
            }
        }
        if d.is_done() {
            break;
        }
    }
    (out, d.is_done(), false)
}

/// The HTTP/2 request path up to the backend: an HTTP/2 request's fields as HPACK hands them
/// over (`name:value` lines from `data`, pseudo-fields included, any bytes) turned into the
/// HTTP/1.1 head the request path reads. Differential: whatever the fields hold, a request that
/// is not refused, read back by the HTTP/1.1 parser, is one request (nothing rides on it) whose
/// fields are exactly the regular fields handed over, in order and byte for byte, with cookies
/// joined into one, one Host (the `:authority`, when there is one), and the framing the
/// HTTP/2 request had: nothing can be injected into the HTTP/1.1 stream, nor lost.
pub fn h2_request(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let has_body = pick & 1 != 0;
    let mut fields = crate::http::h2server::Fields::new();
    let mut authority = None;
    let mut regular: Vec<(&[u8], &[u8])> = Vec::new();
    let mut cookies: Vec<&[u8]> = Vec::new();
    for line in rest.split(|&b| b == b'\n') {
        // the first colon after the first byte: pseudo-field names start with one
        let Some(colon) = line.iter().skip(1).position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon + 1], &line[colon + 2..]);
        fields.field(name, value);
        match name {
            b":authority" => authority = Some(value),
            // an empty crumb is no cookie
            b"cookie" if value.is_empty() => {}
            b"cookie" => cookies.push(value),
            n if !n.starts_with(b":") => regular.push((name, value)),
            _ => {}
        }
    }
    let Ok(req) = fields.finish(has_body) else {
        return; // malformed: the stream is reset
    };
    let Ok(mut raw) = req.raw else {
        return; // refused with a 4xx, nothing forwarded
    };
    let text = String::from_utf8_lossy(&raw).into_owned();
    let Ok(Some(head)) = parse_request(&mut raw, 1 << 20) else {
        return; // refused with a 4xx, nothing forwarded
    };
    assert!(raw.is_empty(), "a second request rode on the first: {text}");
    // what the head holds beyond the fields handed over: Host from :authority (a host field
    // beside it names the same site and is not written again), chunked framing for a body of
    // unknown length, `te: trailers` (an HTTP/2 client always takes trailers), cookies joined
    let mut got: Vec<(&[u8], &[u8])> = head.head.fields().collect();
    if let Some(a) = authority {
        regular.retain(|(n, _)| *n != b"host");
        let hosts: Vec<_> = got.iter().filter(|(n, _)| *n == b"host").collect();
        assert_eq!(hosts, [&(b"host".as_slice(), a)], "{text}");
        got.retain(|(n, _)| *n != b"host");
    }
    // the writer adds, after the fields: cookie, transfer-encoding, te; taken off the end
    let te = (b"te".as_slice(), b"trailers".as_slice());
    if got.last() == Some(&te) && !regular.contains(&te) {
        got.pop();
    }
    let chunked = (b"transfer-encoding".as_slice(), b"chunked".as_slice());
    if got.last() == Some(&chunked) {
        assert!(has_body && req.length.is_none(), "{text}");
        got.pop();
    }
    if !cookies.is_empty() {
        let joined = cookies.join(b"; ".as_slice());
        let last = got.pop();
        assert_eq!(
            last,
            Some((b"cookie".as_slice(), joined.as_slice())),
            "{text}"
        );
    }
    assert_eq!(got, regular, "fields appeared, vanished or changed: {text}");
    match head.head.framing {
        Framing::Chunked => assert!(has_body, "{text}"),
        Framing::Length(n) => {
            assert_eq!(req.length, Some(n), "{text}");
            assert_eq!(head.head.content_length, Some(n));
        }
        Framing::Empty | Framing::Close => {}
    }
}

/// The table limits (SETTINGS_HEADER_TABLE_SIZE) the `hpack` target picks from.
const HPACK_TABLE_LIMITS: [usize; 8] = [0, 1, 64, 256, 4096, 4097, 16384, 65536];
/// The header list limits it picks from.
const HPACK_LIST_LIMITS: [usize; 8] = [usize::MAX, 0, 40, 100, 300, 1000, 4096, 16384];
/// Names the round trip also sends each decoded value under, so that the encoder takes each
/// of its ways: static fields and names, `:status`, fields it indexes, never-indexed ones and
/// names of its own.
const HPACK_NAMES: [&[u8]; 12] = [
    b":status",
    b":path",
    b"content-length",
    b"server",
    b"date",
    b"content-type",
    b"authorization",
    b"cookie",
    b"x-custom",
    b"accept-encoding",
    b":method",
    b"vary",
];

/// HPACK on one connection's header blocks. The first byte picks the table limit the decoder
/// advertises (bits 0-2) and the header list limit (bits 3-5); then each block comes after a
/// control byte and a 2-byte big-endian length. Checked on each block:
/// - **differential**: [`hpack::Decoder`] and [`hpack_oracle`] emit the same fields, end the
///   same way (whole, oversize, or refused for the same reason: then the connection ends),
///   and leave the same dynamic table (entries, size, maximum size);
/// - the table's size stays within its maximum, and that within the advertised limit (or the
///   initial 4096 before the peer's first size update);
/// - the fields emitted hold no more than the list limit, counted as RFC 9113 does;
/// - a round trip: the fields emitted, and their values under other names, encoded by one
///   [`hpack::Encoder`] for the whole connection (its table limit changed by the control byte:
///   bit 7 sets the limit in bits 0-2, bit 6 then the one in bits 3-5) and decoded by a
///   [`hpack::Decoder`] and the oracle, are the same fields, and the encoder's table is the
///   decoders'.
pub fn hpack(data: &[u8]) {
    let Some((&shape, mut rest)) = data.split_first() else {
        return;
    };
    let limit = HPACK_TABLE_LIMITS[usize::from(shape & 7)];
    let max_list = HPACK_LIST_LIMITS[usize::from(shape >> 3 & 7)];
    let mut decoder = hpack::Decoder::new(limit);
    let mut oracle = hpack_oracle::Decoder::new(limit);
    let mut encoder = hpack::Encoder::new();
    let mut peer = hpack::Decoder::new(usize::MAX);
    let mut peer_oracle = hpack_oracle::Decoder::new(usize::MAX);
    while let [control, hi, lo, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(tail.len());
        let (block, next) = tail.split_at(len);
        rest = next;

        let mut fields = Vec::new();
        let result = decoder.decode(block, max_list, |n, v| {
            fields.push((n.to_vec(), v.to_vec()))
        });
        let (expected, outcome) = oracle.decode(block, max_list);
        assert_eq!(
            fields, expected,
            "the oracle emits other fields ({result:?}, {outcome:?})"
        );
        match (result, outcome) {
            (Ok(()), hpack_oracle::Outcome::Whole) => {}
            (Err(HpackError::Oversize), hpack_oracle::Outcome::Oversize) => {}
            (Err(e), hpack_oracle::Outcome::Refused(why)) if hpack_why(e) == Some(why) => {
                assert!(e.is_compression_error());
                return; // the connection ends
            }
            (r, o) => panic!("the decoder ends {r:?}, the oracle {o:?}"),
        }
        same_table(decoder.table(), &oracle);
        let table = decoder.table();
        assert!(table.size() <= table.max_size());
        assert!(table.max_size() <= limit.max(hpack::DEFAULT_TABLE_SIZE));
        let held: usize = fields.iter().map(|(n, v)| n.len() + v.len() + 32).sum();
        assert!(
            held <= max_list,
            "{held} bytes emitted, the limit is {max_list}"
        );

        if control & 0x80 != 0 {
            encoder.set_table_limit(HPACK_TABLE_LIMITS[usize::from(control & 7)]);
        }
        if control & 0x40 != 0 {
            encoder.set_table_limit(HPACK_TABLE_LIMITS[usize::from(control >> 3 & 7)]);
        }
        let renamed = fields.iter().enumerate().map(|(i, (_, v))| {
            let name = HPACK_NAMES[(i + usize::from(*control)) % HPACK_NAMES.len()];
            (name.to_vec(), v.clone())
        });
        let list: Vec<_> = fields.iter().cloned().chain(renamed).collect();
        let mut wire = Vec::new();
        encoder.encode(list.iter().map(|(n, v)| (&n[..], &v[..])), &mut wire);
        let mut back = Vec::new();
        peer.decode(&wire, usize::MAX, |n, v| {
            back.push((n.to_vec(), v.to_vec()))
        })
        .unwrap_or_else(|e| panic!("our own block is refused: {e}"));
        assert_eq!(back, list, "the round trip changed the fields");
        let (seen, outcome) = peer_oracle.decode(&wire, usize::MAX);
        assert_eq!(
            outcome,
            hpack_oracle::Outcome::Whole,
            "the oracle refuses our block"
        );
        assert_eq!(seen, list, "the oracle reads our block otherwise");
        same_table(encoder.table(), &peer_oracle);
        same_table(peer.table(), &peer_oracle);
    }
}

/// The oracle's reason for a refusal the decoder gives as `e`.
fn hpack_why(e: HpackError) -> Option<hpack_oracle::Why> {
    use hpack_oracle::Why;
    Some(match e {
        HpackError::Oversize => return None,
        HpackError::Truncated => Why::Truncated,
        HpackError::Integer => Why::Integer,
        HpackError::Index(i) => Why::Index(i),
        HpackError::Huffman(hpack::HuffmanError::Eos) => Why::Eos,
        HpackError::Huffman(hpack::HuffmanError::Padding) => Why::Padding,
        HpackError::TableSize { size, .. } => Why::TableSize(size),
        HpackError::LateTableSize => Why::LateTableSize,
    })
}

fn same_table(table: &DynamicTable, oracle: &hpack_oracle::Decoder) {
    let entries: Vec<_> = table
        .iter()
        .map(|(n, v)| (n.to_vec(), v.to_vec()))
        .collect();
    assert_eq!(entries, oracle.table, "the dynamic tables differ");
    assert_eq!(table.size(), oracle.size());
    assert_eq!(table.max_size(), oracle.max_size);
}
