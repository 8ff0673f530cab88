//! Entry points for the cargo-fuzz targets in `fuzz/` (feature "fuzz"): each checks a property
//! of the HTTP/1 codec, not just that it does not panic.

use bytes::BytesMut;

use crate::http::h1::codec::{
    parse_request, parse_request_with, parse_response, ChunkedDecoder, Framing, MAX_HEADERS,
};
use crate::http::h1::rewrite::{request_head, response_head, Peer};

/// Any request head the codec accepts, once rewritten for a backend, parses again with the same
/// method, target (origin-form) and framing.
pub fn request(data: &[u8]) {
    let mut buf = BytesMut::from(data);
    let Ok(Some(req)) = parse_request(&mut buf, 64 * 1024) else {
        return;
    };
    let _ = (
        req.method(),
        req.target(),
        req.head.fields().count(),
        req.head.connection_tokens().count(),
    );
    for mode in [
        strata_config::Forwarded::XForwarded,
        strata_config::Forwarded::Rfc7239,
        strata_config::Forwarded::None,
    ] {
        let peer = Peer::new("192.0.2.1:1234".parse().expect("literal"), false);
        let mut out = Vec::new();
        request_head(&req, mode, &peer, &mut out);
        let mut again = BytesMut::from(&out[..]);
        let parsed = parse_request_with::<MAX_HEADERS>(&mut again, 1 << 20);
        let Ok(Some(back)) = parsed else {
            panic!(
                "rewritten head does not parse: {parsed:?}\n{}",
                String::from_utf8_lossy(&out)
            );
        };
        assert_eq!(back.method(), req.method());
        if req.target().starts_with(b"/") {
            assert_eq!(back.target(), req.target());
        }
        assert_eq!(back.head.framing, req.head.framing);
        assert!(again.is_empty());
    }
}

/// Any response head the codec accepts can be rewritten for a client; its body, if chunked,
/// decodes the same whether it arrives whole or a byte at a time.
pub fn response(data: &[u8]) {
    let mut buf = BytesMut::from(data);
    let Ok(Some(resp)) = parse_response(&mut buf, 64 * 1024, false) else {
        return;
    };
    let mut q = BytesMut::from(&b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..]);
    let Ok(Some(client)) = parse_request(&mut q, 1024) else {
        return;
    };
    let mut out = Vec::new();
    let _ = response_head(&resp, &client.head, true, &mut out);
    if resp.head.framing == Framing::Chunked {
        chunked(&buf);
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
