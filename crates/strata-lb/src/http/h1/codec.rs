//! HTTP/1.x message heads and body framing (RFC 9112) over byte buffers: no I/O here. A head
//! that is not all in yet is `Ok(None)`, not an error. Parsing is strict where requests can be
//! smuggled past a proxy: Transfer-Encoding with Content-Length, a Transfer-Encoding that does
//! not end in chunked, and conflicting Content-Lengths are rejected.

use std::mem::MaybeUninit;

use bytes::{Buf, Bytes, BytesMut};

/// Headers in one response head, at most.
pub(crate) const MAX_HEADERS: usize = 128;
/// Headers in one request head, at most (HAProxy's default `tune.http.maxhdr`): fewer than a
/// response may have, so the request stays within limits after the proxy adds its own.
pub(crate) const MAX_REQUEST_HEADERS: usize = 101;
// the proxy adds at most X-Forwarded-For/-Proto/-Host, Via, Host, Transfer-Encoding,
// Connection and Upgrade
const _: () = assert!(MAX_REQUEST_HEADERS + 8 <= MAX_HEADERS);
/// Bytes of a chunk-size line (size and extensions).
const MAX_CHUNK_LINE: usize = 1024;
/// Bytes of trailer section accepted after a chunked body.
const MAX_TRAILERS: usize = 8 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Version {
    Http10,
    Http11,
    /// Never parsed: set on the HTTP/1.1 head made from an HTTP/2 client's request.
    Http2,
}

/// How the body that follows a head is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body.
    Empty,
    Length(u64),
    Chunked,
    /// Until the connection closes (responses only).
    Close,
}

/// Why a head or body could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ParseError {
    #[error("malformed message: {0}")]
    Malformed(&'static str),
    #[error("head larger than {0} bytes")]
    TooLarge(usize),
    #[error("too many headers")]
    TooManyHeaders,
}

/// Where a header's name and value sit in the head's bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Field {
    name: (u32, u32),
    value: (u32, u32),
}

/// A parsed head: its bytes, and offsets into them.
#[derive(Debug)]
pub(crate) struct Head {
    pub(crate) raw: Bytes,
    fields: Vec<Field>,
    pub(crate) version: Version,
    pub(crate) framing: Framing,
    /// After this message the connection may carry another.
    pub(crate) keep_alive: bool,
    /// `Connection: upgrade` with an `Upgrade` header.
    pub(crate) upgrade: bool,
    /// Whether a Connection header names more than close, keep-alive and upgrade (those are
    /// hop-by-hop anyway): almost never, so the hop-by-hop check can skip a scan per header.
    connection_extra: bool,
}

#[derive(Debug)]
pub(crate) struct RequestHead {
    pub(crate) head: Head,
    method: (u32, u32),
    target: (u32, u32),
    pub(crate) expect_continue: bool,
}

#[derive(Debug)]
pub(crate) struct ResponseHead {
    pub(crate) head: Head,
    pub(crate) status: u16,
    reason: (u32, u32),
}

impl Head {
    fn slice(&self, (start, end): (u32, u32)) -> &[u8] {
        &self.raw[start as usize..end as usize]
    }

    /// Every header as (name, value), in order.
    pub(crate) fn fields(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.fields
            .iter()
            .map(|f| (self.slice(f.name), self.slice(f.value)))
    }

    /// The first value of header `name` (ASCII case-insensitive).
    pub(crate) fn get(&self, name: &str) -> Option<&[u8]> {
        self.fields()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }

    /// Every value of header `name`.
    pub(crate) fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.fields()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }

    /// Header names listed in Connection: they describe this hop only.
    pub(crate) fn connection_tokens(&self) -> impl Iterator<Item = &[u8]> {
        self.get_all("connection")
            .flat_map(|v| v.split(|&b| b == b','))
            .map(|t| t.trim_ascii())
            .filter(|t| !t.is_empty())
    }

    /// Whether the Connection header names `name`, other than the hop-by-hop close, keep-alive
    /// and upgrade (checked without allocating: this runs for every header of every message).
    pub(crate) fn connection_names(&self, name: &[u8]) -> bool {
        self.connection_extra
            && self
                .connection_tokens()
                .any(|t| t.eq_ignore_ascii_case(name))
    }
}

impl ResponseHead {
    /// The reason phrase as the backend sent it.
    pub(crate) fn reason(&self) -> &[u8] {
        self.head.slice(self.reason)
    }
}

impl RequestHead {
    pub(crate) fn method(&self) -> &[u8] {
        self.head.slice(self.method)
    }
    pub(crate) fn target(&self) -> &[u8] {
        self.head.slice(self.target)
    }
}

/// Where `part`, a slice of `base`, sits in it; an empty range for anything outside it (such
/// as the `""` used for an absent reason phrase).
fn offsets(base: &[u8], part: &[u8]) -> (u32, u32) {
    let start = (part.as_ptr() as usize).wrapping_sub(base.as_ptr() as usize);
    if start > base.len() || start + part.len() > base.len() {
        return (0, 0);
    }
    (start as u32, (start + part.len()) as u32)
}

fn version(v: Option<u8>) -> Version {
    if v == Some(0) {
        Version::Http10
    } else {
        Version::Http11
    }
}

/// What the framing headers of a message say.
struct Framed {
    length: Option<u64>,
    chunked: bool,
    transfer_encoding: bool,
    close: bool,
    keep_alive_token: bool,
    upgrade_token: bool,
    has_upgrade: bool,
    expect_continue: bool,
    hosts: u32,
    connection_extra: bool,
}

fn scan(headers: &[httparse::Header<'_>]) -> Result<Framed, ParseError> {
    let mut f = Framed {
        length: None,
        chunked: false,
        transfer_encoding: false,
        close: false,
        keep_alive_token: false,
        upgrade_token: false,
        has_upgrade: false,
        expect_continue: false,
        hosts: 0,
        connection_extra: false,
    };
    for h in headers {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            // "5" or the same value repeated ("5, 5") is fine; anything else is not
            for part in h.value.split(|&b| b == b',') {
                let part = part.trim_ascii();
                if part.is_empty() || !part.iter().all(u8::is_ascii_digit) || part.len() > 18 {
                    return Err(ParseError::Malformed("invalid Content-Length"));
                }
                let n: u64 = std::str::from_utf8(part)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or(ParseError::Malformed("invalid Content-Length"))?;
                if f.length.is_some_and(|l| l != n) {
                    return Err(ParseError::Malformed("conflicting Content-Length"));
                }
                f.length = Some(n);
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            f.transfer_encoding = true;
            // the last coding listed decides whether the body is chunked
            let last = h
                .value
                .rsplit(|&b| b == b',')
                .map(|t| t.trim_ascii())
                .find(|t| !t.is_empty());
            f.chunked = last.is_some_and(|t| t.eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in h.value.split(|&b| b == b',').map(|t| t.trim_ascii()) {
                if token.eq_ignore_ascii_case(b"close") {
                    f.close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    f.keep_alive_token = true;
                } else if token.eq_ignore_ascii_case(b"upgrade") {
                    f.upgrade_token = true;
                } else if !token.is_empty() {
                    f.connection_extra = true;
                }
            }
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            f.has_upgrade = true;
        } else if name.eq_ignore_ascii_case(b"host") {
            f.hosts += 1;
        } else if name.eq_ignore_ascii_case(b"expect") {
            f.expect_continue = h.value.trim_ascii().eq_ignore_ascii_case(b"100-continue");
        }
    }
    Ok(f)
}

fn keep_alive(v: Version, f: &Framed) -> bool {
    match v {
        Version::Http11 | Version::Http2 => !f.close,
        Version::Http10 => f.keep_alive_token && !f.close,
    }
}

fn fields(base: &[u8], headers: &[httparse::Header<'_>]) -> Vec<Field> {
    headers
        .iter()
        .map(|h| Field {
            name: offsets(base, h.name.as_bytes()),
            value: offsets(base, h.value),
        })
        .collect()
}

/// What httparse's verdict means here: the head's length, `None` for "not all in yet", or why
/// the head is refused.
fn head_len(
    parsed: httparse::Result<usize>,
    buffered: usize,
    max_head: usize,
    invalid: &'static str,
) -> Result<Option<usize>, ParseError> {
    match parsed {
        Ok(httparse::Status::Complete(len)) if len > max_head => {
            Err(ParseError::TooLarge(max_head))
        }
        Ok(httparse::Status::Complete(len)) => Ok(Some(len)),
        Ok(httparse::Status::Partial) if buffered >= max_head => {
            Err(ParseError::TooLarge(max_head))
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(ParseError::TooManyHeaders),
        Err(_) => Err(ParseError::Malformed(invalid)),
    }
}

/// Takes one request head off the front of `buf`. `Ok(None)`: not all in yet (and shorter
/// than `max_head`).
pub(crate) fn parse_request(
    buf: &mut BytesMut,
    max_head: usize,
) -> Result<Option<RequestHead>, ParseError> {
    parse_request_with::<MAX_REQUEST_HEADERS>(buf, max_head)
}

/// [`parse_request`] with room for `N` headers (a backend's view of a request the proxy
/// forwarded).
pub(crate) fn parse_request_with<const N: usize>(
    buf: &mut BytesMut,
    max_head: usize,
) -> Result<Option<RequestHead>, ParseError> {
    // left uninitialised: httparse writes only the headers it finds (zeroing 3 KiB per
    // request would cost more than parsing a short head)
    let mut storage = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; N];
    let mut req = httparse::Request::new(&mut []);
    let parsed = req.parse_with_uninit_headers(buf, &mut storage);
    let Some(len) = head_len(parsed, buf.len(), max_head, "invalid request head")? else {
        return Ok(None);
    };
    let version = version(req.version);
    let f = scan(req.headers)?;
    // RFC 9112 3.2: exactly one Host in HTTP/1.1; two could point the proxy and the backend at
    // different sites
    if f.hosts > 1 {
        return Err(ParseError::Malformed("more than one Host header"));
    }
    if f.hosts == 0 && version == Version::Http11 {
        return Err(ParseError::Malformed("HTTP/1.1 request without Host"));
    }
    let framing = if f.transfer_encoding {
        if f.length.is_some() {
            return Err(ParseError::Malformed(
                "both Transfer-Encoding and Content-Length",
            ));
        }
        if !f.chunked || version == Version::Http10 {
            return Err(ParseError::Malformed(
                "Transfer-Encoding without a final chunked",
            ));
        }
        Framing::Chunked
    } else {
        match f.length {
            Some(0) | None => Framing::Empty,
            Some(n) => Framing::Length(n),
        }
    };
    let base: &[u8] = buf;
    let method = offsets(base, req.method.unwrap_or("").as_bytes());
    let target = offsets(base, req.path.unwrap_or("").as_bytes());
    let fields = fields(base, req.headers);
    let keep_alive = keep_alive(version, &f);
    let upgrade = f.upgrade_token && f.has_upgrade && version == Version::Http11;
    let expect_continue = f.expect_continue && version == Version::Http11;
    let raw = buf.split_to(len).freeze();
    Ok(Some(RequestHead {
        head: Head {
            raw,
            fields,
            version,
            framing,
            keep_alive,
            upgrade,
            connection_extra: f.connection_extra,
        },
        method,
        target,
        expect_continue,
    }))
}

/// Takes one response head off the front of `buf`. `head_request`: the request was HEAD, so no
/// body follows whatever the headers say.
pub(crate) fn parse_response(
    buf: &mut BytesMut,
    max_head: usize,
    head_request: bool,
) -> Result<Option<ResponseHead>, ParseError> {
    let mut storage = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut resp,
        buf,
        &mut storage,
    );
    let Some(len) = head_len(parsed, buf.len(), max_head, "invalid response head")? else {
        return Ok(None);
    };
    let status = resp.code.unwrap_or(0);
    let version = version(resp.version);
    let f = scan(resp.headers)?;
    let no_body = head_request || (100..200).contains(&status) || status == 204 || status == 304;
    let mut keep_alive = keep_alive(version, &f);
    let framing = if no_body {
        Framing::Empty
    } else if f.transfer_encoding {
        if f.length.is_some() {
            // Transfer-Encoding wins (RFC 9112 6.3); the connection can't be trusted after
            keep_alive = false;
        }
        if f.chunked {
            Framing::Chunked
        } else {
            Framing::Close
        }
    } else {
        match f.length {
            Some(0) => Framing::Empty,
            Some(n) => Framing::Length(n),
            None => Framing::Close,
        }
    };
    if framing == Framing::Close {
        keep_alive = false;
    }
    let base: &[u8] = buf;
    let fields = fields(base, resp.headers);
    let reason = offsets(base, resp.reason.unwrap_or("").as_bytes());
    let upgrade = status == 101;
    let raw = buf.split_to(len).freeze();
    Ok(Some(ResponseHead {
        head: Head {
            raw,
            fields,
            version,
            framing,
            keep_alive,
            upgrade,
            connection_extra: f.connection_extra,
        },
        status,
        reason,
    }))
}

/// Decodes a chunked body into its data, dropping extensions and trailers.
#[derive(Debug, Default)]
pub(crate) struct ChunkedDecoder {
    state: ChunkState,
    remaining: u64,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Size,
    Data,
    DataEnd,
    Trailers,
    Done,
}

impl ChunkedDecoder {
    pub(crate) fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// The next piece of data from the front of `buf`. `Ok(None)` with `is_done()` false: read
    /// more; with `is_done()` true: the body is complete and `buf` holds what follows it.
    pub(crate) fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, ParseError> {
        loop {
            match self.state {
                ChunkState::Size => match httparse::parse_chunk_size(buf) {
                    Ok(httparse::Status::Complete((used, _))) if used > MAX_CHUNK_LINE => {
                        return Err(ParseError::Malformed("chunk size line too long"));
                    }
                    Ok(httparse::Status::Complete((used, size))) => {
                        buf.advance(used);
                        self.remaining = size;
                        self.state = if size == 0 {
                            ChunkState::Trailers
                        } else {
                            ChunkState::Data
                        };
                    }
                    Ok(httparse::Status::Partial) if buf.len() > MAX_CHUNK_LINE => {
                        return Err(ParseError::Malformed("chunk size line too long"))
                    }
                    Ok(httparse::Status::Partial) => return Ok(None),
                    Err(_) => return Err(ParseError::Malformed("invalid chunk size")),
                },
                ChunkState::Data => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let n = (buf.len() as u64).min(self.remaining) as usize;
                    self.remaining -= n as u64;
                    if self.remaining == 0 {
                        self.state = ChunkState::DataEnd;
                    }
                    return Ok(Some(buf.split_to(n).freeze()));
                }
                ChunkState::DataEnd => {
                    // CRLF after the data (a bare LF is tolerated, as for header lines)
                    match (buf.first(), buf.get(1)) {
                        (None, _) | (Some(b'\r'), None) => return Ok(None),
                        (Some(b'\n'), _) => buf.advance(1),
                        (Some(b'\r'), Some(b'\n')) => buf.advance(2),
                        _ => return Err(ParseError::Malformed("chunk data not followed by CRLF")),
                    }
                    self.state = ChunkState::Size;
                }
                ChunkState::Trailers => {
                    // trailer lines until an empty one
                    let Some(end) = buf.iter().position(|&b| b == b'\n') else {
                        if buf.len() > MAX_TRAILERS {
                            return Err(ParseError::Malformed("trailers too large"));
                        }
                        return Ok(None);
                    };
                    let line = &buf[..end];
                    let empty = line.is_empty() || line == b"\r";
                    buf.advance(end + 1);
                    if empty {
                        self.state = ChunkState::Done;
                    }
                }
                ChunkState::Done => return Ok(None),
            }
        }
    }
}

/// Writes the framing line before `len` bytes of chunk data.
pub(crate) fn chunk_header(len: usize, out: &mut Vec<u8>) {
    use std::io::Write;
    let _ = write!(out, "{len:x}\r\n");
}

/// The end of a chunked body: the zero chunk and an empty trailer section.
pub(crate) const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

#[cfg(test)]
mod tests;
