//! HTTP/1.x message heads and body framing (RFC 9112) over byte buffers: no I/O here. A head
//! that is not all in yet is `Ok(None)`, not an error. Parsing is strict wherever a request
//! could be read two ways by two parsers (docs/SECURITY.md lists the rules): Transfer-Encoding
//! with Content-Length, any transfer coding but a single `chunked`, conflicting Content-Lengths,
//! a Host that is not `uri-host [":" port]`, a target with a fragment, userinfo or raw
//! non-ASCII, and chunk lines or trailers that are not exactly as RFC 9112 writes them.

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
    /// Well formed, but asks for something the proxy does not do (a transfer coding other than
    /// chunked): 501.
    #[error("not implemented: {0}")]
    Unsupported(&'static str),
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
    /// The Content-Length the message declared (equal values folded into one), unless
    /// Transfer-Encoding overrides it: for a body this is also in `framing`; for the answer to
    /// a HEAD or a 304 it describes the representation and is passed on.
    pub(crate) content_length: Option<u64>,
    /// A request: `Connection: upgrade` with an `Upgrade` header. A response: the connection
    /// becomes a tunnel after it (a 101, or a 2xx to CONNECT).
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
    /// For an absolute-form target, its authority (`host[:port]`).
    authority: Option<(u32, u32)>,
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

    /// Header names listed in Connection: they describe this hop only (but see
    /// [`Head::connection_names`] for the ones that never count).
    pub(crate) fn connection_tokens(&self) -> impl Iterator<Item = &[u8]> {
        self.get_all("connection")
            .flat_map(|v| v.split(|&b| b == b','))
            .map(|t| t.trim_ascii())
            .filter(|t| !t.is_empty())
    }

    /// Whether the Connection header names `name`, other than the hop-by-hop close, keep-alive
    /// and upgrade (checked without allocating: this runs for every header of every message).
    /// Never true for Content-Length, Transfer-Encoding or Host: framing and the site belong to
    /// the proxy, and a peer that names them in Connection must not make them disappear.
    pub(crate) fn connection_names(&self, name: &[u8]) -> bool {
        self.connection_extra
            && !is_protected(name)
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
    /// The authority of an absolute-form target: the Host the backend gets (RFC 9112 3.2.2).
    pub(crate) fn authority(&self) -> Option<&[u8]> {
        self.authority.map(|a| self.head.slice(a))
    }
    /// The target as a backend gets it: origin-form for an absolute-form target (without its
    /// leading "/" when the path is empty: `http://h?q` gives `?q`), else as sent.
    pub(crate) fn origin(&self) -> &[u8] {
        match self.authority {
            Some((_, end)) => self.head.slice((end, self.target.1)),
            None => self.target(),
        }
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

/// Headers that a Connection header can never make hop-by-hop.
fn is_protected(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"content-length")
        || name.eq_ignore_ascii_case(b"transfer-encoding")
        || name.eq_ignore_ascii_case(b"host")
}

/// The transfer codings a message lists, over all its Transfer-Encoding headers.
#[derive(Default)]
struct Codings {
    present: bool,
    /// Codings listed, `chunked` among them.
    count: u32,
    chunked: u32,
    last_chunked: bool,
    /// A value that is not a list of tokens.
    invalid: bool,
}

impl Codings {
    fn add(&mut self, value: &[u8]) {
        self.present = true;
        for coding in value.split(|&b| b == b',').map(|t| t.trim_ascii()) {
            if coding.is_empty() {
                continue; // empty list elements are allowed (RFC 9110 5.6.1)
            }
            self.count += 1;
            self.last_chunked = coding.eq_ignore_ascii_case(b"chunked");
            if self.last_chunked {
                self.chunked += 1;
            } else if !coding
                .iter()
                .all(|&b| is_tchar(b) || b == b';' || b == b'=' || b == b' ')
            {
                self.invalid = true;
            }
        }
    }

    /// Exactly one coding, and it is `chunked`.
    fn only_chunked(&self) -> bool {
        self.count == 1 && self.chunked == 1 && !self.invalid
    }
}

/// What the framing headers of a message say.
#[derive(Default)]
struct Framed {
    length: Option<u64>,
    codings: Codings,
    close: bool,
    keep_alive_token: bool,
    upgrade_token: bool,
    has_upgrade: bool,
    expect_continue: bool,
    hosts: u32,
    bad_host: bool,
    connection_extra: bool,
}

fn scan(headers: &[httparse::Header<'_>]) -> Result<Framed, ParseError> {
    let mut f = Framed::default();
    for h in headers {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            // "5", "005" or the same value repeated ("5, 5", or in two headers) is one length;
            // anything else is not
            for part in h.value.split(|&b| b == b',') {
                let part = part.trim_ascii();
                if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
                    return Err(ParseError::Malformed("invalid Content-Length"));
                }
                let digits = match part.iter().position(|&b| b != b'0') {
                    Some(i) => &part[i..],
                    None => b"0",
                };
                if digits.len() > 18 {
                    return Err(ParseError::Malformed("invalid Content-Length"));
                }
                let n = digits
                    .iter()
                    .fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'));
                if f.length.is_some_and(|l| l != n) {
                    return Err(ParseError::Malformed("conflicting Content-Length"));
                }
                f.length = Some(n);
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            f.codings.add(h.value);
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in h.value.split(|&b| b == b',').map(|t| t.trim_ascii()) {
                if token.eq_ignore_ascii_case(b"close") {
                    f.close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    f.keep_alive_token = true;
                } else if token.eq_ignore_ascii_case(b"upgrade") {
                    f.upgrade_token = true;
                } else if !token.is_empty() && !is_protected(token) {
                    f.connection_extra = true;
                }
            }
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            f.has_upgrade = true;
        } else if name.eq_ignore_ascii_case(b"host") {
            f.hosts += 1;
            f.bad_host |= !valid_host(h.value);
        } else if name.eq_ignore_ascii_case(b"expect") {
            f.expect_continue = h.value.trim_ascii().eq_ignore_ascii_case(b"100-continue");
        }
    }
    Ok(f)
}

/// `tchar` (RFC 9110 5.6.2): the characters of a token.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `uri-host [":" port]` (RFC 9110 7.2): an IP literal in brackets, or a name of unreserved
/// characters, percent-escapes and sub-delimiters other than the comma (a list separator to
/// every other parser); the port, if there is a colon, one to five digits. No userinfo, no
/// spaces, not empty.
pub(crate) fn valid_host(value: &[u8]) -> bool {
    let (host, port) = if value.first() == Some(&b'[') {
        let Some(close) = value.iter().position(|&b| b == b']') else {
            return false;
        };
        let literal = &value[1..close];
        if literal.is_empty()
            || !literal
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return false;
        }
        (&value[..=close], &value[close + 1..])
    } else {
        match value.iter().position(|&b| b == b':') {
            Some(i) => (&value[..i], &value[i..]),
            None => (value, &b""[..]),
        }
    };
    if host.is_empty() {
        return false;
    }
    if host[0] != b'[' {
        let mut i = 0;
        while i < host.len() {
            match host[i] {
                b'%' if host.len() > i + 2
                    && host[i + 1].is_ascii_hexdigit()
                    && host[i + 2].is_ascii_hexdigit() =>
                {
                    i += 3;
                    continue;
                }
                b if b.is_ascii_alphanumeric() || b"-._~!$&'()*+;=".contains(&b) => {}
                _ => return false,
            }
            i += 1;
        }
    }
    match port {
        [] => true,
        [b':', digits @ ..] => {
            (1..=5).contains(&digits.len()) && digits.iter().all(u8::is_ascii_digit)
        }
        _ => false,
    }
}

/// The request target (RFC 9112 3.2) in one of the forms its method allows: origin-form
/// (`/path?query`), absolute-form (`http://host/path`, no userinfo), `*` for OPTIONS, or
/// authority-form (`host:port`) for CONNECT. Never a fragment (`#`) or a raw non-ASCII byte:
/// parsers disagree about both. For absolute-form, where its authority starts and ends.
fn check_target(method: &[u8], target: &[u8]) -> Result<Option<(usize, usize)>, ParseError> {
    if target
        .iter()
        .any(|&b| b == b'#' || !(0x21..0x7f).contains(&b))
    {
        return Err(ParseError::Malformed("invalid request target"));
    }
    if method == b"CONNECT" {
        let ok = valid_host(target) && target.contains(&b':') && !target.ends_with(b"]");
        return if ok {
            Ok(None)
        } else {
            Err(ParseError::Malformed("CONNECT needs host:port"))
        };
    }
    if target.starts_with(b"/") {
        return Ok(None);
    }
    if target == b"*" {
        return if method == b"OPTIONS" {
            Ok(None)
        } else {
            Err(ParseError::Malformed("* is a target for OPTIONS only"))
        };
    }
    let start = if target.len() > 7 && target[..7].eq_ignore_ascii_case(b"http://") {
        7
    } else if target.len() > 8 && target[..8].eq_ignore_ascii_case(b"https://") {
        8
    } else {
        return Err(ParseError::Malformed("invalid request target"));
    };
    let end = target[start..]
        .iter()
        .position(|&b| b == b'/' || b == b'?')
        .map_or(target.len(), |i| start + i);
    if valid_host(&target[start..end]) {
        Ok(Some((start, end)))
    } else {
        Err(ParseError::Malformed(
            "invalid authority in the request target",
        ))
    }
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
    let method_bytes = req.method.unwrap_or("").as_bytes();
    let absolute = check_target(method_bytes, req.path.unwrap_or("").as_bytes())?;
    // RFC 9110 9.3.6: CONNECT content has no meaning; a body would reach the backend as
    // whatever it reads after the head
    if method_bytes == b"CONNECT" && (f.codings.present || f.length.is_some()) {
        return Err(ParseError::Malformed("CONNECT with a body"));
    }
    // RFC 9112 3.2: exactly one Host in HTTP/1.1; two could point the proxy and the backend at
    // different sites
    if f.hosts > 1 {
        return Err(ParseError::Malformed("more than one Host header"));
    }
    // HTTP/1.0 too: a proxy can't guess the site, and a made-up name (localhost) could reach
    // a virtual host that trusts it
    if f.hosts == 0 && absolute.is_none() {
        return Err(ParseError::Malformed("request without Host"));
    }
    if f.bad_host {
        return Err(ParseError::Malformed("invalid Host"));
    }
    let framing = if f.codings.present {
        if f.length.is_some() {
            return Err(ParseError::Malformed(
                "both Transfer-Encoding and Content-Length",
            ));
        }
        // RFC 9112 6.1: a request whose last coding is not chunked has no way to end
        if version == Version::Http10 || !f.codings.last_chunked || f.codings.invalid {
            return Err(ParseError::Malformed(
                "Transfer-Encoding without a final chunked",
            ));
        }
        if f.codings.chunked > 1 {
            return Err(ParseError::Malformed("chunked applied twice"));
        }
        if !f.codings.only_chunked() {
            return Err(ParseError::Unsupported(
                "transfer codings other than chunked",
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
    let authority = absolute.map(|(a, b)| (target.0 + a as u32, target.0 + b as u32));
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
            content_length: f.length.filter(|_| !f.codings.present),
            keep_alive,
            upgrade,
            connection_extra: f.connection_extra,
        },
        method,
        target,
        authority,
        expect_continue,
    }))
}

/// What the request was, as far as reading its answer goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Asked {
    /// A HEAD: no body follows the answer's head, whatever it says.
    Head,
    /// A CONNECT: a 2xx answer has no body and turns the connection into a tunnel.
    Connect,
    Other,
}

/// Takes one response head off the front of `buf`, the answer to an `asked` request.
pub(crate) fn parse_response(
    buf: &mut BytesMut,
    max_head: usize,
    asked: Asked,
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
    // three digits, but 000-099 and 600-999 mean nothing (RFC 9110 15); found by fuzzing: "004"
    // went to the client as "HTTP/1.1 4"
    if !(100..=599).contains(&status) {
        return Err(ParseError::Malformed("status code outside 100-599"));
    }
    let version = version(resp.version);
    let f = scan(resp.headers)?;
    // after a 101, or a 2xx to CONNECT, the connection carries another protocol
    let tunnel = status == 101 || (asked == Asked::Connect && (200..300).contains(&status));
    let no_body = asked == Asked::Head
        || tunnel
        || (100..200).contains(&status)
        || status == 204
        || status == 304;
    let mut keep_alive = keep_alive(version, &f);
    if f.codings.present {
        // only chunked is relayed: a body in another coding would reach the client without
        // the header that says how to read it (nginx answers 502 here too); and an HTTP/1.0
        // message with Transfer-Encoding has faulty framing (RFC 9112 6.1)
        if !f.codings.only_chunked() || version == Version::Http10 {
            return Err(ParseError::Malformed("unsupported Transfer-Encoding"));
        }
        if f.length.is_some() {
            // Transfer-Encoding wins (RFC 9112 6.3); the connection can't be trusted after
            keep_alive = false;
        }
    }
    let framing = if no_body {
        Framing::Empty
    } else if f.codings.present {
        Framing::Chunked
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
    let raw = buf.split_to(len).freeze();
    Ok(Some(ResponseHead {
        head: Head {
            raw,
            fields,
            version,
            framing,
            // a tunnel's answer has no length to pass on (RFC 9110 9.3.6)
            content_length: f.length.filter(|_| !f.codings.present && !tunnel),
            keep_alive,
            upgrade: tunnel,
            connection_extra: f.connection_extra,
        },
        status,
        reason,
    }))
}

/// Decodes a chunked body into its data, dropping extensions, and keeping the trailer fields
/// a proxy may pass on. Strict: every line ends in CRLF, a chunk size is hex digits and nothing
/// else before its extensions, and a trailer line is a field (a name, a colon, a value without
/// control characters).
#[derive(Debug, Default)]
pub(crate) struct ChunkedDecoder {
    state: ChunkState,
    remaining: u64,
    /// Bytes of trailer section read so far.
    trailers: usize,
    /// The trailer fields kept, each line with its CRLF (see [`may_pass_trailer`]).
    kept: Vec<u8>,
}

/// Fields that must not be taken from a trailer section (RFC 9110 6.5.1): framing, routing,
/// connection handling, authentication, and what describes or controls the content. A
/// recipient that merged trailers into the header section could otherwise be told a length,
/// a host or a credential after the fact; they are dropped, the others passed on.
const NOT_IN_TRAILERS: &[&[u8]] = &[
    b"content-length",
    b"transfer-encoding",
    b"host",
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"te",
    b"trailer",
    b"upgrade",
    b"expect",
    b"max-forwards",
    b"range",
    b"if-match",
    b"if-none-match",
    b"if-modified-since",
    b"if-unmodified-since",
    b"if-range",
    b"authorization",
    b"proxy-authorization",
    b"www-authenticate",
    b"proxy-authenticate",
    b"cookie",
    b"set-cookie",
    b"content-encoding",
    b"content-type",
    b"content-range",
    b"cache-control",
    b"pragma",
    b"age",
    b"expires",
    b"date",
    b"location",
    b"retry-after",
    b"vary",
    // the proxy writes these in the head itself: a trailer could pass for its word
    b"x-forwarded-for",
    b"x-forwarded-proto",
    b"x-forwarded-host",
    b"x-real-ip",
    b"forwarded",
    b"via",
];

/// Whether a trailer field named `name` is passed on (see [`NOT_IN_TRAILERS`]); an underscore
/// counts as a dash, as CGI-style backends read names (`content_length` is Content-Length to
/// them).
pub(crate) fn may_pass_trailer(name: &[u8]) -> bool {
    !NOT_IN_TRAILERS.iter().any(|n| cgi_name_is(name, n))
}

/// Whether `name` is `lower` (a lowercase field name) as CGI-style backends (PHP, WSGI, Rack)
/// read names: case aside, and with `_` for `-`.
pub(crate) fn cgi_name_is(name: &[u8], lower: &[u8]) -> bool {
    lower.len() == name.len()
        && lower.iter().zip(name).all(|(&o, &n)| {
            let n = if n == b'_' {
                b'-'
            } else {
                n.to_ascii_lowercase()
            };
            o == n
        })
}

/// The end of a chunked body with `trailers` (lines with their CRLFs) in its trailer section.
pub(crate) fn last_chunk(trailers: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b"0\r\n");
    out.extend_from_slice(trailers);
    out.extend_from_slice(b"\r\n");
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

/// `chunk-size [chunk-ext] CRLF` at the front of `buf`: the bytes it takes and the size;
/// `Ok(None)` until the line is all in.
fn chunk_size_line(buf: &[u8]) -> Result<Option<(usize, u64)>, ParseError> {
    let invalid = ParseError::Malformed("invalid chunk size");
    let digits = buf.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    let mut size: u64 = 0;
    for &b in &buf[..digits] {
        if size >> 60 != 0 {
            return Err(ParseError::Malformed("chunk size too large"));
        }
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => b - b'A' + 10,
        };
        size = size << 4 | u64::from(d);
    }
    // an extension may follow, after optional whitespace: dropped, but it must be text
    let mut i = digits;
    let mut in_ext = false;
    while i < buf.len() {
        match buf[i] {
            b'\r' => {
                if digits == 0 {
                    return Err(invalid);
                }
                return match buf.get(i + 1) {
                    None => Ok(None),
                    Some(b'\n') => Ok(Some((i + 2, size))),
                    Some(_) => Err(ParseError::Malformed("chunk size line not ended by CRLF")),
                };
            }
            b' ' | b'\t' => {}
            b';' => in_ext = true,
            b if in_ext && (b >= 0x21 && b != 0x7f) => {}
            _ => return Err(invalid),
        }
        i += 1;
    }
    Ok(None)
}

/// One trailer line without its CRLF: `field-name ":" field-value`.
fn valid_trailer(line: &[u8]) -> bool {
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        return false;
    };
    colon > 0
        && line[..colon].iter().all(|&b| is_tchar(b))
        && line[colon + 1..]
            .iter()
            .all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

impl ChunkedDecoder {
    pub(crate) fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// The trailer fields read and kept, each line with its CRLF; empty for none.
    pub(crate) fn take_trailers(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.kept)
    }

    /// The next piece of data from the front of `buf`. `Ok(None)` with `is_done()` false: read
    /// more; with `is_done()` true: the body is complete and `buf` holds what follows it.
    pub(crate) fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, ParseError> {
        loop {
            match self.state {
                ChunkState::Size => match chunk_size_line(buf)? {
                    Some((used, _)) if used > MAX_CHUNK_LINE => {
                        return Err(ParseError::Malformed("chunk size line too long"));
                    }
                    Some((used, size)) => {
                        buf.advance(used);
                        self.remaining = size;
                        self.state = if size == 0 {
                            ChunkState::Trailers
                        } else {
                            ChunkState::Data
                        };
                    }
                    None if buf.len() > MAX_CHUNK_LINE => {
                        return Err(ParseError::Malformed("chunk size line too long"))
                    }
                    None => return Ok(None),
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
                    match (buf.first(), buf.get(1)) {
                        (None, _) | (Some(b'\r'), None) => return Ok(None),
                        (Some(b'\r'), Some(b'\n')) => buf.advance(2),
                        _ => return Err(ParseError::Malformed("chunk data not followed by CRLF")),
                    }
                    self.state = ChunkState::Size;
                }
                ChunkState::Trailers => {
                    // trailer lines until an empty one
                    let Some(end) = buf.iter().position(|&b| b == b'\n') else {
                        if self.trailers + buf.len() > MAX_TRAILERS {
                            return Err(ParseError::Malformed("trailers too large"));
                        }
                        return Ok(None);
                    };
                    let Some(line) = buf[..end].strip_suffix(b"\r") else {
                        return Err(ParseError::Malformed("trailer line not ended by CRLF"));
                    };
                    if !line.is_empty() && !valid_trailer(line) {
                        return Err(ParseError::Malformed("invalid trailer"));
                    }
                    let empty = line.is_empty();
                    self.trailers += end + 1;
                    if self.trailers > MAX_TRAILERS {
                        return Err(ParseError::Malformed("trailers too large"));
                    }
                    let name = line.split(|&b| b == b':').next().unwrap_or(b"");
                    if !empty && may_pass_trailer(name) {
                        self.kept.extend_from_slice(&buf[..end + 1]);
                    }
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
