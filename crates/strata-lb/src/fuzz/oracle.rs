//! A second HTTP/1.1 parser, written only to check the first: strict RFC 9112, no shared code
//! with the codec, no httparse. It reads what the proxy sends (requests to a backend, responses
//! to a client) and says how many messages that is, with which bodies, and what is left over.

/// One message as the oracle reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The request line or status line, without CRLF.
    pub start: Vec<u8>,
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
    pub body: Vec<u8>,
    /// The body runs until the connection closes (responses only).
    pub until_close: bool,
}

impl Message {
    /// Every value of the header `name`.
    pub fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.fields
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v.as_slice())
    }
}

/// Why the oracle could not read the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable(pub &'static str, pub usize);

/// What a request is read as: the bytes after the head are a body only if it has framing.
pub fn requests(mut wire: &[u8]) -> Result<Vec<Message>, Unreadable> {
    let mut out = Vec::new();
    while !wire.is_empty() {
        let (msg, used) = message(wire, Kind::Request)?;
        out.push(msg);
        wire = &wire[used..];
    }
    Ok(out)
}

/// One response to a request (`head_request`: a HEAD, so no body) and what follows it.
pub fn response(wire: &[u8], head_request: bool) -> Result<(Message, &[u8]), Unreadable> {
    let (msg, used) = message(wire, Kind::Response { head_request })?;
    Ok((msg, &wire[used..]))
}

#[derive(Clone, Copy)]
enum Kind {
    Request,
    Response { head_request: bool },
}

fn token(b: u8) -> bool {
    matches!(
        b,
        b'!' | b'#'
            | b'$'
            | b'%'
            | b'&'
            | b'\''
            | b'*'
            | b'+'
            | b'-'
            | b'.'
            | b'^'
            | b'_'
            | b'`'
            | b'|'
            | b'~'
    ) || b.is_ascii_alphanumeric()
}

/// The next CRLF-terminated line at `at`: its content and where the following line starts.
fn line(wire: &[u8], at: usize) -> Result<(&[u8], usize), Unreadable> {
    let rest = &wire[at..];
    let lf = rest
        .iter()
        .position(|&b| b == b'\n')
        .ok_or(Unreadable("line without LF", at))?;
    if lf == 0 || rest[lf - 1] != b'\r' {
        return Err(Unreadable("bare LF", at));
    }
    let content = &rest[..lf - 1];
    if content.contains(&b'\r') {
        return Err(Unreadable("bare CR", at));
    }
    Ok((content, at + lf + 1))
}

fn message(wire: &[u8], kind: Kind) -> Result<(Message, usize), Unreadable> {
    let (start, mut at) = line(wire, 0)?;
    let status = match kind {
        Kind::Request => {
            let parts: Vec<&[u8]> = start.split(|&b| b == b' ').collect();
            let ok = parts.len() == 3
                && !parts[0].is_empty()
                && parts[0].iter().all(|&b| token(b))
                && !parts[1].is_empty()
                && parts[1].iter().all(|&b| (0x21..0x7f).contains(&b))
                && parts[2] == b"HTTP/1.1";
            if !ok {
                return Err(Unreadable("request line", 0));
            }
            None
        }
        Kind::Response { .. } => {
            let ok = start.len() >= 12
                && (start.starts_with(b"HTTP/1.1 ") || start.starts_with(b"HTTP/1.0 "))
                && start[9..12].iter().all(u8::is_ascii_digit)
                && (start.len() == 12 || start[12] == b' ');
            if !ok {
                return Err(Unreadable("status line", 0));
            }
            Some(
                start[9..12]
                    .iter()
                    .fold(0u16, |n, &d| n * 10 + u16::from(d - b'0')),
            )
        }
    };
    let mut fields = Vec::new();
    loop {
        let (l, next) = line(wire, at)?;
        if l.is_empty() {
            at = next;
            break;
        }
        let colon = l
            .iter()
            .position(|&b| b == b':')
            .ok_or(Unreadable("field without colon", at))?;
        let (name, value) = (&l[..colon], &l[colon + 1..]);
        if name.is_empty() || !name.iter().all(|&b| token(b)) {
            return Err(Unreadable("field name", at));
        }
        let value = value.trim_ascii();
        if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err(Unreadable("field value", at));
        }
        fields.push((name.to_vec(), value.to_vec()));
        at = next;
    }
    let mut msg = Message {
        start: start.to_vec(),
        fields,
        body: Vec::new(),
        until_close: false,
    };
    let lengths: Vec<&[u8]> = msg.values("content-length").collect();
    let codings: Vec<&[u8]> = msg.values("transfer-encoding").collect();
    if lengths.len() > 1 {
        return Err(Unreadable("more than one Content-Length", at));
    }
    if !lengths.is_empty() && !codings.is_empty() {
        return Err(Unreadable("Content-Length and Transfer-Encoding", at));
    }
    let no_body = match (kind, status) {
        (Kind::Response { head_request }, Some(s)) => {
            head_request || (100..200).contains(&s) || s == 204 || s == 304
        }
        _ => false,
    };
    if no_body {
        return Ok((msg, at));
    }
    if let Some(&coding) = codings.first() {
        if codings.len() != 1 || !coding.eq_ignore_ascii_case(b"chunked") {
            return Err(Unreadable("a coding other than one chunked", at));
        }
        at = chunked(wire, at, &mut msg.body)?;
    } else if let Some(&len) = lengths.first() {
        if len.is_empty() || len.len() > 18 || !len.iter().all(u8::is_ascii_digit) {
            return Err(Unreadable("Content-Length value", at));
        }
        let n = len
            .iter()
            .fold(0usize, |n, &d| n * 10 + usize::from(d - b'0'));
        if wire.len() - at < n {
            return Err(Unreadable("body shorter than Content-Length", at));
        }
        msg.body = wire[at..at + n].to_vec();
        at += n;
    } else if matches!(kind, Kind::Response { .. }) {
        msg.body = wire[at..].to_vec();
        msg.until_close = true;
        at = wire.len();
    }
    Ok((msg, at))
}

fn chunked(wire: &[u8], mut at: usize, body: &mut Vec<u8>) -> Result<usize, Unreadable> {
    loop {
        let (l, next) = line(wire, at)?;
        if l.is_empty() || l.len() > 16 || !l.iter().all(u8::is_ascii_hexdigit) {
            return Err(Unreadable("chunk size", at));
        }
        let size = usize::from_str_radix(std::str::from_utf8(l).unwrap_or("x"), 16)
            .map_err(|_| Unreadable("chunk size", at))?;
        at = next;
        if size == 0 {
            break;
        }
        if wire.len() - at < size + 2 || &wire[at + size..at + size + 2] != b"\r\n" {
            return Err(Unreadable("chunk data", at));
        }
        body.extend_from_slice(&wire[at..at + size]);
        at += size + 2;
    }
    // trailer fields, each `token ":" value` (RFC 9112 7.1.2, RFC 9110 5.5), none that could
    // frame, route or carry the message another way (RFC 9110 6.5.1), up to an empty line
    loop {
        let (l, next) = line(wire, at)?;
        if l.is_empty() {
            return Ok(next);
        }
        let colon = l
            .iter()
            .position(|&b| b == b':')
            .ok_or(Unreadable("trailer", at))?;
        let (name, value) = (&l[..colon], &l[colon + 1..]);
        let token = |b: &u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b);
        if name.is_empty()
            || !name.iter().all(token)
            || value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f)
        {
            return Err(Unreadable("trailer", at));
        }
        let lower = name.to_ascii_lowercase();
        if [
            &b"content-length"[..],
            b"transfer-encoding",
            b"host",
            b"connection",
            b"te",
            b"trailer",
            b"upgrade",
            b"authorization",
            b"cookie",
        ]
        .contains(&&lower[..])
        {
            return Err(Unreadable("a trailer field that belongs in the head", at));
        }
        at = next;
    }
}
