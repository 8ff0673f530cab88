//! Trailer fields between HTTP/1.1's form (lines in a chunked body's last chunk) and HTTP/2's
//! (a HEADERS frame after the data), with the fields no trailer may carry left out both ways.

use http::{HeaderMap, HeaderName, HeaderValue};

use super::h1::codec::may_pass_trailer;

/// HTTP/1.1 trailer lines (`name: value` CRLF each, as the chunked decoder kept them) as a map;
/// `None` for none.
pub(crate) fn to_map(lines: &[u8]) -> Option<HeaderMap> {
    let mut map = HeaderMap::new();
    for line in lines.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            map.append(n, v);
        }
    }
    (!map.is_empty()).then_some(map)
}

/// Drops from HTTP/2 trailers the fields no trailer section may carry.
pub(crate) fn filter(map: &mut HeaderMap) {
    let denied: Vec<HeaderName> = map
        .keys()
        .filter(|n| !may_pass_trailer(n.as_str().as_bytes()))
        .cloned()
        .collect();
    for name in denied {
        map.remove(name);
    }
}

/// HTTP/2 trailers as HTTP/1.1 trailer lines, each with its CRLF.
pub(crate) fn to_lines(map: &HeaderMap) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in map {
        if may_pass_trailer(name.as_str().as_bytes()) {
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailers_cross_between_forms_without_forbidden_fields() {
        let map = to_map(b"X-Checksum: abc\r\ngrpc-status:0\r\n").unwrap();
        assert_eq!(map["x-checksum"], "abc");
        assert_eq!(map["grpc-status"], "0");
        assert_eq!(to_map(b""), None);
        let mut map = HeaderMap::new();
        map.insert("x-checksum", HeaderValue::from_static("abc"));
        map.insert("content-length", HeaderValue::from_static("5"));
        map.insert("host", HeaderValue::from_static("evil"));
        assert_eq!(to_lines(&map), b"x-checksum: abc\r\n");
        // what the proxy writes in the head, and names a CGI backend reads as those
        for name in [
            "x-forwarded-for",
            "x_forwarded_for",
            "via",
            "content_length",
            "forwarded",
        ] {
            assert!(!may_pass_trailer(name.as_bytes()), "{name}");
        }
        assert!(may_pass_trailer(b"x-forwarded"));
        map.insert("x_forwarded_for", HeaderValue::from_static("1.2.3.4"));
        map.insert("set-cookie", HeaderValue::from_static("a=b"));
        filter(&mut map);
        assert_eq!(map.len(), 1);
        assert_eq!(map["x-checksum"], "abc");
    }
}
