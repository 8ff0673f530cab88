//! An HTTP/2 request's header fields, as HPACK decodes them, turned into the HTTP/1.1 head
//! the request path reads: checked as RFC 9113 §8.2–8.3 asks on the way, so that nothing a
//! peer may not send in HTTP/2 (uppercase or connection-specific fields, CR or LF in a value,
//! pseudo-fields out of place) becomes something else in HTTP/1.1.

use bytes::{BufMut, BytesMut};

use crate::http::h1::codec::ParseError;

/// Why a request is malformed (RFC 9113 §8.1.1): the stream is reset with PROTOCOL_ERROR.
pub(crate) type Malformed = &'static str;

/// A request the connection hands to the request path.
pub(crate) struct NewRequest {
    /// The request as an HTTP/1.1 head, or why it gets a 4xx answer instead (a header list
    /// over the limit, a `host` that is not `:authority`).
    pub(crate) raw: Result<BytesMut, ParseError>,
    /// For a gRPC call, the content type the proxy's own answers carry.
    pub(crate) grpc: Option<&'static str>,
    /// The client sent `te: trailers`.
    pub(crate) te_trailers: bool,
    /// The body's length as `content-length` declared it: its DATA must add up to it.
    pub(crate) length: Option<u64>,
}

/// The pseudo-fields of a request (§8.3.1), kept until the first regular field (or the end)
/// writes the request line.
#[derive(Default)]
struct Pseudo {
    method: Option<(usize, usize)>,
    scheme: Option<(usize, usize)>,
    authority: Option<(usize, usize)>,
    path: Option<(usize, usize)>,
    /// Their values, one after another.
    bytes: Vec<u8>,
}

/// Builds one request's head field by field.
pub(crate) struct Fields {
    pseudo: Pseudo,
    /// The head so far: empty until the request line is written.
    out: BytesMut,
    cookies: Vec<u8>,
    length: Option<u64>,
    saw_te: bool,
    grpc: Option<&'static str>,
    /// The first thing found wrong; the fields after it are not looked at.
    error: Option<Malformed>,
    /// A `host` that names another site than `:authority`.
    host_differs: bool,
}

impl Fields {
    pub(crate) fn new() -> Self {
        Fields {
            pseudo: Pseudo::default(),
            out: BytesMut::new(),
            cookies: Vec::new(),
            length: None,
            saw_te: false,
            grpc: None,
            error: None,
            host_differs: false,
        }
    }

    /// Takes the next field of the block.
    pub(crate) fn field(&mut self, name: &[u8], value: &[u8]) {
        if self.error.is_some() {
            return;
        }
        if let Err(e) = self.take(name, value) {
            self.error = Some(e);
        }
    }

    fn take(&mut self, name: &[u8], value: &[u8]) -> Result<(), Malformed> {
        check_value(value)?;
        if let Some(pseudo) = name.strip_prefix(b":") {
            if !self.out.is_empty() {
                return Err("a pseudo-field after a regular field");
            }
            let slot = match pseudo {
                b"method" => &mut self.pseudo.method,
                b"scheme" => &mut self.pseudo.scheme,
                b"authority" => &mut self.pseudo.authority,
                b"path" => &mut self.pseudo.path,
                _ => return Err("an unknown pseudo-field"),
            };
            if slot.is_some() {
                return Err("a pseudo-field twice");
            }
            let at = self.pseudo.bytes.len();
            *slot = Some((at, at + value.len()));
            self.pseudo.bytes.extend_from_slice(value);
            return Ok(());
        }
        check_name(name)?;
        if self.out.is_empty() {
            self.request_line()?;
        }
        match name {
            n if crate::http::connection_specific(n) => return Err("a connection-specific field"),
            b"te" => {
                if value != b"trailers" {
                    return Err("te other than trailers");
                }
                self.saw_te = true;
            }
            b"cookie" => {
                // one header, as HTTP/1.1 sends it (§8.2.3); an empty crumb is no cookie
                if value.is_empty() {
                    return Ok(());
                }
                if !self.cookies.is_empty() {
                    self.cookies.extend_from_slice(b"; ");
                }
                self.cookies.extend_from_slice(value);
                return Ok(());
            }
            b"host" => {
                if let Some(a) = self.pseudo.authority {
                    // written from :authority already (§8.3.1: they must name the same site)
                    if !self.pseudo.bytes[a.0..a.1].eq_ignore_ascii_case(value) {
                        self.host_differs = true;
                    }
                    return Ok(());
                }
            }
            b"content-length" => {
                let n = (!value.is_empty()
                    && value.len() <= 19
                    && value.iter().all(u8::is_ascii_digit))
                .then(|| value.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
                .ok_or("a content-length that is not a number")?;
                if self.length.is_some_and(|l| l != n) {
                    return Err("two content-lengths");
                }
                self.length = Some(n);
            }
            b"content-type" => {
                if value.starts_with(b"application/grpc-web") {
                    self.grpc = Some("application/grpc-web");
                } else if value.starts_with(b"application/grpc") {
                    self.grpc = Some("application/grpc");
                }
            }
            _ => {}
        }
        put_field(&mut self.out, name, value);
        Ok(())
    }

    /// Writes the request line, and Host from `:authority`.
    fn request_line(&mut self) -> Result<(), Malformed> {
        let p = &self.pseudo;
        let get = |r: Option<(usize, usize)>| r.map(|(s, e)| &p.bytes[s..e]);
        let method = get(p.method).ok_or("no :method")?;
        if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
            return Err("a :method that is not a token");
        }
        let authority = get(p.authority);
        if let Some(a) = authority {
            // reg-name, IP literal and port characters; no userinfo (§8.3.1)
            if a.is_empty() || a.iter().any(|&b| !(0x21..0x7f).contains(&b) || b == b'@') {
                return Err("an :authority that is not host[:port]");
            }
        }
        let target = if method == b"CONNECT" {
            if p.scheme.is_some() || p.path.is_some() {
                return Err("CONNECT with :scheme or :path");
            }
            authority.ok_or("CONNECT without :authority")?
        } else {
            let scheme = get(p.scheme).ok_or("no :scheme")?;
            let path = get(p.path).ok_or("no :path")?;
            if !scheme.first().is_some_and(u8::is_ascii_alphabetic)
                || !scheme
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
            {
                return Err("a :scheme that is not a scheme");
            }
            let asterisk = path == b"*" && method == b"OPTIONS";
            if !(path.starts_with(b"/") || asterisk) {
                return Err("a :path that is neither absolute nor * for OPTIONS");
            }
            if path.iter().any(|&b| !(0x21..0x7f).contains(&b)) {
                return Err("a :path with a space or a byte outside visible ASCII");
            }
            path
        };
        let out = &mut self.out;
        out.reserve(256 + p.bytes.len());
        out.put_slice(method);
        out.put_u8(b' ');
        out.put_slice(target);
        out.put_slice(b" HTTP/1.1\r\n");
        if let Some(a) = authority {
            put_field(out, b"host", a);
        }
        Ok(())
    }

    /// The request as a head, once the block ended; `has_body`: the HEADERS frame did not end
    /// the stream.
    pub(crate) fn finish(mut self, has_body: bool) -> Result<NewRequest, Malformed> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if !has_body && self.length.is_some_and(|n| n > 0) {
            return Err("a content-length above 0 on a request without DATA");
        }
        if self.out.is_empty() {
            self.request_line()?;
        }
        let raw = if self.host_differs {
            Err(ParseError::Malformed(":authority and host differ"))
        } else {
            let out = &mut self.out;
            if !self.cookies.is_empty() {
                put_field(out, b"cookie", &self.cookies);
            }
            if has_body && self.length.is_none() {
                put_field(out, b"transfer-encoding", b"chunked");
            }
            // an HTTP/2 client always takes trailers: the backend may send them
            if !self.saw_te {
                put_field(out, b"te", b"trailers");
            }
            out.put_slice(b"\r\n");
            Ok(self.out)
        };
        Ok(NewRequest {
            raw,
            grpc: self.grpc,
            te_trailers: self.saw_te,
            length: self.length,
        })
    }
}

/// A trailer field of a request (§8.1): a regular field, checked as in the head.
pub(crate) fn check_trailer(name: &[u8], value: &[u8]) -> Result<(), Malformed> {
    if name.starts_with(b":") {
        return Err("a pseudo-field in trailers");
    }
    check_name(name)?;
    check_value(value)
}

fn put_field(out: &mut BytesMut, name: &[u8], value: &[u8]) {
    out.put_slice(name);
    out.put_slice(b": ");
    out.put_slice(value);
    out.put_slice(b"\r\n");
}

/// RFC 9110 5.6.2's tchar.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A regular field's name: a token, in lowercase (§8.2.1).
fn check_name(name: &[u8]) -> Result<(), Malformed> {
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return Err("a field name that is not a token");
    }
    if name.iter().any(u8::is_ascii_uppercase) {
        return Err("an uppercase field name");
    }
    Ok(())
}

/// A value: no NUL, CR or LF, and no whitespace at either end (§8.2.1).
fn check_value(value: &[u8]) -> Result<(), Malformed> {
    if value.iter().any(|&b| b == 0 || b == b'\r' || b == b'\n') {
        return Err("NUL, CR or LF in a field value");
    }
    let ws = |b: Option<&u8>| matches!(b, Some(b' ' | b'\t'));
    if ws(value.first()) || ws(value.last()) {
        return Err("whitespace at the edge of a field value");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(fields: &[(&str, &str)], has_body: bool) -> Result<NewRequest, Malformed> {
        let mut f = Fields::new();
        for (n, v) in fields {
            f.field(n.as_bytes(), v.as_bytes());
        }
        f.finish(has_body)
    }

    fn head(fields: &[(&str, &str)], has_body: bool) -> String {
        let r = build(fields, has_body).unwrap();
        String::from_utf8(r.raw.unwrap().to_vec()).unwrap()
    }

    const GET: [(&str, &str); 4] = [
        (":method", "GET"),
        (":scheme", "https"),
        (":authority", "example.com"),
        (":path", "/a?b"),
    ];

    #[test]
    fn a_request_becomes_an_http1_head() {
        let mut fields = GET.to_vec();
        fields.extend([("cookie", "a=1"), ("accept", "*/*"), ("cookie", "b=2")]);
        assert_eq!(
            head(&fields, false),
            "GET /a?b HTTP/1.1\r\nhost: example.com\r\naccept: */*\r\ncookie: a=1; b=2\r\nte: trailers\r\n\r\n"
        );
        let mut post = GET.to_vec();
        post[0].1 = "POST";
        assert!(head(&post, true).contains("transfer-encoding: chunked\r\n"));
        post.push(("content-length", "3"));
        assert!(!head(&post, true).contains("transfer-encoding"));
        let r = build(
            &[
                GET.as_slice(),
                &[
                    ("te", "trailers"),
                    ("content-type", "application/grpc+proto"),
                ],
            ]
            .concat(),
            true,
        )
        .unwrap();
        assert!(r.te_trailers);
        assert_eq!(r.grpc, Some("application/grpc"));
    }

    #[test]
    fn what_http2_forbids_is_malformed() {
        let bad: &[&[(&str, &str)]] = &[
            &[(":method", "GET"), (":scheme", "http"), (":path", "/")][..2],
            &[(":method", "GET"), (":path", "/")],
            &[(":method", "GET"), (":scheme", "http"), (":path", "")],
            &[(":method", "GET"), (":scheme", "http"), (":path", "/a b")],
            &[(":method", "GET"), (":scheme", "http"), (":path", "*")],
            &[(":method", "G T"), (":scheme", "http"), (":path", "/")],
            &[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":path", "/"),
            ],
            &[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":status", "200"),
            ],
            &[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                ("a", "1"),
                (":authority", "x"),
            ],
            &[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                ("X-Up", "1"),
            ],
            &[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                ("connection", "close"),
            ],
            &[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                ("transfer-encoding", "chunked"),
            ],
            &[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                ("te", "gzip"),
            ],
            &[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                ("a", "x\r\nb: y"),
            ],
            &[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                ("a", " x"),
            ],
            &[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                ("a:b", "x"),
            ],
            &[
                (":method", "GET"),
                (":scheme", "http"),
                (":authority", "u@h"),
                (":path", "/"),
            ],
            &[
                (":method", "CONNECT"),
                (":authority", "h:1"),
                (":path", "/"),
            ],
            &[(":method", "CONNECT")],
        ];
        for fields in bad {
            assert!(build(fields, false).is_err(), "{fields:?}");
        }
        assert!(check_trailer(b":path", b"/").is_err());
        assert!(check_trailer(b"grpc-status", b"0").is_ok());
    }

    #[test]
    fn host_must_name_the_authority() {
        let mut fields = GET.to_vec();
        fields.push(("host", "EXAMPLE.com"));
        assert_eq!(head(&fields, false).matches("host:").count(), 1);
        fields.push(("host", "other"));
        assert!(build(&fields, false).unwrap().raw.is_err());
        let no_authority = [
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            ("host", "h"),
        ];
        assert!(head(&no_authority, false).contains("\r\nhost: h\r\n"));
        assert_eq!(
            head(&[(":method", "CONNECT"), (":authority", "h:443")], false),
            "CONNECT h:443 HTTP/1.1\r\nhost: h:443\r\nte: trailers\r\n\r\n"
        );
    }
}
