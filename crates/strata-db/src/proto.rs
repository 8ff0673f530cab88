//! PostgreSQL protocol 3.0 framing: the untagged startup packets, tagged messages (one type
//! byte, a length that counts itself), and the few messages the pooler writes itself.

use bytes::{Buf, BufMut, BytesMut};

/// The largest length a tagged message may announce, from either side: PostgreSQL's own
/// `PQ_LARGE_MESSAGE_LIMIT` (`MaxAllocSize - 1`), past which a server closes the connection.
pub const MAX_MESSAGE: usize = 0x3fff_fffe;
/// The largest startup packet accepted (PostgreSQL refuses more than 10,000 bytes).
pub const MAX_STARTUP: usize = 10_000;

/// Protocol 3.0.
pub const PROTOCOL_3: u32 = 196_608;
/// The request code of an SSLRequest.
pub const SSL_REQUEST: u32 = 80_877_103;
/// The request code of a GSSENCRequest.
pub const GSSENC_REQUEST: u32 = 80_877_104;
/// The request code of a CancelRequest.
pub const CANCEL_REQUEST: u32 = 80_877_102;

/// Why bytes are not the protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    /// A length below the minimum (4, or 8 for a startup packet).
    #[error("message length {0} is too short")]
    ShortLength(usize),
    /// A length above the limit.
    #[error("message length {0} is over the limit")]
    TooLong(usize),
    /// A startup packet that is not protocol 3.0, SSL, GSS or cancel.
    #[error("unsupported protocol {major}.{minor}")]
    Protocol {
        /// Major version.
        major: u16,
        /// Minor version.
        minor: u16,
    },
    /// A startup packet whose parameters are not NUL-terminated pairs ending with a NUL.
    #[error("malformed startup parameters")]
    Startup,
    /// A message body that does not hold what its type says.
    #[error("malformed {0} message")]
    Malformed(&'static str),
    /// A message where the protocol has none (bytes behind an SSLRequest, a second one).
    #[error("{0}")]
    Unexpected(&'static str),
}

/// The first packet of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Startup {
    /// Asks for TLS.
    Ssl,
    /// Asks for GSSAPI encryption.
    Gss,
    /// Cancels the query of the backend with this key.
    Cancel {
        /// Backend process id.
        pid: u32,
        /// Its secret.
        secret: u32,
    },
    /// Protocol 3.0, with its parameters in order (`user`, `database`, ...).
    Params(Vec<(String, String)>),
}

/// Takes one startup packet off the front of `buf`, if all of it is there.
pub fn startup(buf: &mut BytesMut) -> Result<Option<Startup>, ProtoError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len < 8 {
        return Err(ProtoError::ShortLength(len));
    }
    if len > MAX_STARTUP {
        return Err(ProtoError::TooLong(len));
    }
    if buf.len() < len {
        return Ok(None);
    }
    let mut packet = buf.split_to(len);
    packet.advance(4);
    let code = packet.get_u32();
    match code {
        SSL_REQUEST if packet.is_empty() => Ok(Some(Startup::Ssl)),
        GSSENC_REQUEST if packet.is_empty() => Ok(Some(Startup::Gss)),
        CANCEL_REQUEST if packet.len() == 8 => Ok(Some(Startup::Cancel {
            pid: packet.get_u32(),
            secret: packet.get_u32(),
        })),
        PROTOCOL_3 => {
            let mut params = Vec::new();
            let mut fields = packet[..].split(|b| *b == 0);
            loop {
                let Some(name) = fields.next() else {
                    return Err(ProtoError::Startup);
                };
                if name.is_empty() {
                    // the terminating NUL, and nothing after it
                    if fields.next().is_some_and(|rest| rest.is_empty()) && fields.next().is_none()
                    {
                        return Ok(Some(Startup::Params(params)));
                    }
                    return Err(ProtoError::Startup);
                }
                let Some(value) = fields.next() else {
                    return Err(ProtoError::Startup);
                };
                let text =
                    |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| ProtoError::Startup);
                params.push((text(name)?, text(value)?));
            }
        }
        _ => Err(ProtoError::Protocol {
            major: (code >> 16) as u16,
            minor: code as u16,
        }),
    }
}

/// Measures the tagged message at the front of `buf`: `Some(total length with the type
/// byte)` when all of it is there.
pub fn message_len(buf: &[u8]) -> Result<Option<usize>, ProtoError> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    if len < 4 {
        return Err(ProtoError::ShortLength(len));
    }
    if len > MAX_MESSAGE {
        return Err(ProtoError::TooLong(len));
    }
    Ok((buf.len() > len).then_some(len + 1))
}

/// The largest length PostgreSQL accepts from a client for a message that carries no SQL and
/// no data (`PQ_SMALL_MESSAGE_LIMIT`).
pub const MAX_SMALL_MESSAGE: usize = 10_000;

/// [`message_len`] for what a client sends: Sync, Flush, Close, Describe, Execute, Terminate,
/// CopyDone and CopyFail may announce at most [`MAX_SMALL_MESSAGE`] bytes, as PostgreSQL
/// allows them, so that a client can't have the proxy buffer a gigabyte for a Sync; a
/// message that can carry SQL or data (Query, Parse, Bind, FunctionCall, CopyData) has the
/// large limit.
pub fn client_message_len(buf: &[u8]) -> Result<Option<usize>, ProtoError> {
    if buf.len() >= 5
        && matches!(
            buf[0],
            b'S' | b'H' | b'C' | b'D' | b'E' | b'X' | b'c' | b'f'
        )
    {
        let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
        if len > MAX_SMALL_MESSAGE {
            return Err(ProtoError::TooLong(len));
        }
    }
    message_len(buf)
}

/// Checks the header of every message in `buf` whose header has arrived, with the limits of
/// [`client_message_len`]: a length out of range behind messages that wait (a Parse held for
/// its Sync) is refused when its header comes, not once the bytes it announces are all in.
pub fn check_client_headers(buf: &[u8]) -> Result<(), ProtoError> {
    let mut at = 0;
    while buf.len().saturating_sub(at) >= 5 {
        match client_message_len(&buf[at..])? {
            Some(total) => at += total,
            None => {
                let len = u32::from_be_bytes([buf[at + 1], buf[at + 2], buf[at + 3], buf[at + 4]]);
                at = at.saturating_add(1 + len as usize);
            }
        }
    }
    Ok(())
}

/// Takes one whole tagged message off the front of `buf`: (type, body).
pub fn message(buf: &mut BytesMut) -> Result<Option<(u8, BytesMut)>, ProtoError> {
    let Some(total) = message_len(buf)? else {
        return Ok(None);
    };
    let mut m = buf.split_to(total);
    let tag = m[0];
    m.advance(5);
    Ok(Some((tag, m)))
}

/// Appends a message of type `tag` whose body `body` writes.
pub fn put(out: &mut BytesMut, tag: u8, body: impl FnOnce(&mut BytesMut)) {
    out.put_u8(tag);
    let at = out.len();
    out.put_u32(0);
    body(out);
    let len = (out.len() - at) as u32;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

/// Appends a NUL-terminated string.
pub fn put_cstr(out: &mut BytesMut, s: &str) {
    out.put_slice(s.as_bytes());
    out.put_u8(0);
}

/// Reads a NUL-terminated string off the front of `body`.
pub fn cstr(body: &mut BytesMut, what: &'static str) -> Result<String, ProtoError> {
    let end = body
        .iter()
        .position(|b| *b == 0)
        .ok_or(ProtoError::Malformed(what))?;
    let s = String::from_utf8(body[..end].to_vec()).map_err(|_| ProtoError::Malformed(what))?;
    body.advance(end + 1);
    Ok(s)
}

/// A startup packet for protocol 3.0 with `params`.
pub fn startup_packet(params: &[(&str, &str)]) -> BytesMut {
    let mut out = BytesMut::new();
    out.put_u32(0);
    out.put_u32(PROTOCOL_3);
    for (k, v) in params {
        put_cstr(&mut out, k);
        put_cstr(&mut out, v);
    }
    out.put_u8(0);
    let len = out.len() as u32;
    out[..4].copy_from_slice(&len.to_be_bytes());
    out
}

/// A CancelRequest for the backend with `pid` and `secret`.
pub fn cancel_packet(pid: u32, secret: u32) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..4].copy_from_slice(&16u32.to_be_bytes());
    out[4..8].copy_from_slice(&CANCEL_REQUEST.to_be_bytes());
    out[8..12].copy_from_slice(&pid.to_be_bytes());
    out[12..].copy_from_slice(&secret.to_be_bytes());
    out
}

/// Severity and SQLSTATE of an error the pooler sends itself.
#[derive(Debug, Clone, Copy)]
pub struct Sqlstate(pub &'static str);

impl Sqlstate {
    /// protocol_violation
    pub const PROTOCOL: Sqlstate = Sqlstate("08P01");
    /// invalid_password
    pub const INVALID_PASSWORD: Sqlstate = Sqlstate("28P01");
    /// invalid_authorization_specification
    pub const INVALID_AUTHORIZATION: Sqlstate = Sqlstate("28000");
    /// too_many_connections
    pub const TOO_MANY_CONNECTIONS: Sqlstate = Sqlstate("53300");
    /// cannot_connect_now
    pub const CANNOT_CONNECT_NOW: Sqlstate = Sqlstate("57P03");
    /// connection_failure
    pub const CONNECTION_FAILURE: Sqlstate = Sqlstate("08006");
    /// feature_not_supported
    pub const FEATURE_NOT_SUPPORTED: Sqlstate = Sqlstate("0A000");
    /// admin_shutdown: the session is ended by the server side (clients reconnect on it)
    pub const ADMIN_SHUTDOWN: Sqlstate = Sqlstate("57P01");
    /// idle_in_transaction_session_timeout
    pub const IDLE_IN_TRANSACTION_TIMEOUT: Sqlstate = Sqlstate("25P03");
    /// idle_session_timeout
    pub const IDLE_SESSION_TIMEOUT: Sqlstate = Sqlstate("57P05");
    /// in_failed_sql_transaction
    pub const IN_FAILED_TRANSACTION: Sqlstate = Sqlstate("25P02");
    /// program_limit_exceeded
    pub const PROGRAM_LIMIT_EXCEEDED: Sqlstate = Sqlstate("54000");
}

/// Appends an ErrorResponse (severity FATAL or ERROR) with `code` and `message`.
pub fn put_error(out: &mut BytesMut, fatal: bool, code: Sqlstate, message: &str) {
    put_error_code(out, fatal, code.0, message);
}

/// [`put_error`] with a SQLSTATE as text (a server's, passed on).
pub fn put_error_code(out: &mut BytesMut, fatal: bool, code: &str, message: &str) {
    put(out, b'E', |b| {
        let severity = if fatal { "FATAL" } else { "ERROR" };
        b.put_u8(b'S');
        put_cstr(b, severity);
        b.put_u8(b'V');
        put_cstr(b, severity);
        b.put_u8(b'C');
        put_cstr(b, code);
        b.put_u8(b'M');
        put_cstr(b, message);
        b.put_u8(0);
    });
}

/// Appends `sql` with `value` bound to its `$1`, in the extended protocol's messages, through
/// to a Sync.
pub fn put_one_param_query(out: &mut BytesMut, sql: &str, value: &str) {
    // Parse (unnamed, no types given), Bind (one text parameter, text results), Describe
    // nothing, Execute (all rows), Sync
    put(out, b'P', |b| {
        put_cstr(b, "");
        put_cstr(b, sql);
        b.put_u16(0);
    });
    put(out, b'B', |b| {
        put_cstr(b, "");
        put_cstr(b, "");
        b.put_u16(0);
        b.put_u16(1);
        b.put_i32(value.len() as i32);
        b.put_slice(value.as_bytes());
        b.put_u16(0);
    });
    put(out, b'E', |b| {
        put_cstr(b, "");
        b.put_u32(0);
    });
    put(out, b'S', |_| {});
}

/// Appends a simple Query.
pub fn put_query(out: &mut BytesMut, sql: &str) {
    put(out, b'Q', |b| put_cstr(b, sql));
}

/// The most of a server's error answering an SSLRequest that is read.
pub const SSL_REFUSAL_MAX: usize = 8192;

/// A server's error in answer to an SSLRequest, from the bytes after its 'E' (`ended`: no
/// more will come): its SQLSTATE if it gives one, and its message. PostgreSQL answers so when
/// it can't start a backend, in the old protocol's form (text up to a NUL); an ErrorResponse
/// is taken too, the two told apart by what a length word would say, as libpq tells them.
/// `None`: more bytes are needed. At most [`SSL_REFUSAL_MAX`] bytes are ever needed.
pub fn ssl_refusal(bytes: &[u8], ended: bool) -> Option<(Option<String>, String)> {
    let text = |b: &[u8]| String::from_utf8_lossy(b).trim_end().to_string();
    // which form it is shows only with four bytes (a length word begins with NULs)
    if bytes.len() < 4 && !ended {
        return None;
    }
    if let Some(word) = bytes.first_chunk::<4>() {
        let len = u32::from_be_bytes(*word) as usize;
        if (8..=SSL_REFUSAL_MAX).contains(&len) {
            return match bytes.get(4..len) {
                Some(body) => Some((error_code(body), error_message(body))),
                None if ended => Some((None, "an error cut short".to_string())),
                None => None,
            };
        }
    }
    let most = &bytes[..bytes.len().min(SSL_REFUSAL_MAX)];
    match most.iter().position(|&b| b == 0) {
        Some(end) => Some((None, text(&most[..end]))),
        None if ended || most.len() == SSL_REFUSAL_MAX => Some((None, text(most))),
        None => None,
    }
}

/// The SQLSTATE of an ErrorResponse or NoticeResponse body (its last 'C' field, as libpq
/// keeps it), if it has one.
pub fn error_code(body: &[u8]) -> Option<String> {
    let mut field = body;
    let mut code = None;
    while let [kind, rest @ ..] = field {
        if *kind == 0 {
            break;
        }
        let end = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
        if *kind == b'C' {
            code = Some(String::from_utf8_lossy(&rest[..end]).into_owned());
        }
        field = rest.get(end + 1..).unwrap_or(&[]);
    }
    code
}

/// The message of an ErrorResponse or NoticeResponse body (its 'M' field), for logs.
pub fn error_message(body: &[u8]) -> String {
    let mut field = body;
    let mut code = String::new();
    let mut message = String::new();
    while let [kind, rest @ ..] = field {
        if *kind == 0 {
            break;
        }
        let end = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
        let text = String::from_utf8_lossy(&rest[..end]).into_owned();
        match kind {
            b'C' => code = text,
            b'M' => message = text,
            _ => {}
        }
        field = rest.get(end + 1..).unwrap_or(&[]);
    }
    if code.is_empty() {
        message
    } else {
        format!("{message} ({code})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_packets() {
        let mut b = startup_packet(&[("user", "app"), ("database", "db")]);
        assert_eq!(
            startup(&mut b).unwrap(),
            Some(Startup::Params(vec![
                ("user".into(), "app".into()),
                ("database".into(), "db".into())
            ]))
        );
        assert!(b.is_empty());
        let mut b = BytesMut::from(&cancel_packet(7, 9)[..]);
        assert_eq!(
            startup(&mut b).unwrap(),
            Some(Startup::Cancel { pid: 7, secret: 9 })
        );
        let mut b = BytesMut::from(&[0u8, 0, 0, 8, 4, 0xd2, 0x16, 0x2f][..]);
        assert_eq!(startup(&mut b).unwrap(), Some(Startup::Ssl));
        // a parameter without a value, and one with junk after the terminator
        let mut bad = BytesMut::from(&b"\0\0\0\x0d\0\x03\0\0user\0"[..]);
        assert_eq!(startup(&mut bad), Err(ProtoError::Startup));
        let mut bad = BytesMut::from(&b"\0\0\0\x0b\0\x03\0\0\0x\0"[..]);
        assert_eq!(startup(&mut bad), Err(ProtoError::Startup));
        let mut v2 = BytesMut::from(&b"\0\0\0\x08\0\x02\0\0"[..]);
        assert_eq!(
            startup(&mut v2),
            Err(ProtoError::Protocol { major: 2, minor: 0 })
        );
    }

    #[test]
    fn tagged_messages() {
        let mut b = BytesMut::new();
        put_query(&mut b, "select 1");
        let whole = b.clone();
        for cut in 0..whole.len() {
            let mut part = BytesMut::from(&whole[..cut]);
            assert_eq!(message(&mut part).unwrap(), None);
        }
        let (tag, mut body) = message(&mut b).unwrap().unwrap();
        assert_eq!(tag, b'Q');
        assert_eq!(cstr(&mut body, "Query").unwrap(), "select 1");
        let mut short = BytesMut::from(&b"Q\0\0\0\x03"[..]);
        assert_eq!(message(&mut short), Err(ProtoError::ShortLength(3)));
    }

    /// Found by the pg_frontend check's unit tests: a length of 0x3fff_ffff (MaxAllocSize) was
    /// taken, and the pooler held up to a GiB from the client for a message PostgreSQL refuses
    /// ("invalid message length") by closing the connection.
    #[test]
    fn a_length_postgresql_refuses_is_refused_on_the_header() {
        let mut most = BytesMut::from(&b"d\x3f\xff\xff\xfe"[..]);
        assert_eq!(message(&mut most), Ok(None));
        let mut over = BytesMut::from(&b"d\x3f\xff\xff\xff"[..]);
        assert_eq!(message(&mut over), Err(ProtoError::TooLong(0x3fff_ffff)));
    }

    #[test]
    fn every_header_that_came_is_checked() {
        // a whole message, then a Query announcing a megabyte, of which 3 bytes came
        let mut buf = b"P\0\0\0\x08s1\0\0".to_vec();
        assert_eq!(check_client_headers(&buf), Ok(()));
        buf.extend_from_slice(b"Q\0\x10\0\0sel");
        assert_eq!(check_client_headers(&buf), Ok(()));
        // a Sync announcing more than 10,000 behind the whole message
        buf.truncate(9);
        buf.extend_from_slice(b"S\0\0\x27\x11");
        assert_eq!(check_client_headers(&buf), Err(ProtoError::TooLong(10_001)));
        assert_eq!(check_client_headers(&buf[..12]), Ok(()), "not whole yet");
    }

    #[test]
    fn a_client_message_without_sql_or_data_is_small() {
        for tag in *b"SHCDEXcf" {
            assert_eq!(client_message_len(&[tag, 0, 0, 0x27, 0x10]), Ok(None));
            let over = client_message_len(&[tag, 0, 0, 0x27, 0x11]);
            assert_eq!(over, Err(ProtoError::TooLong(10_001)), "{}", tag as char);
        }
        for tag in *b"QPBFd" {
            assert_eq!(client_message_len(&[tag, 0x3f, 0xff, 0xff, 0xfe]), Ok(None));
        }
    }
}
