//! Entry points for the cargo-fuzz targets `pg_frontend` and `pg_backend` in `fuzz/` (feature
//! "fuzz"), also run by the unit tests on hostile inputs. Both are differential: the codec in
//! [`crate::proto`] is checked against [`oracle`], a second reader of the protocol written
//! from PostgreSQL's documentation alone.

pub mod oracle;
mod shard;
#[cfg(test)]
mod tests;

pub use shard::{bind_oracle, lookup3_oracle, pg_shard};

use bytes::BytesMut;

use crate::proto::{self, ProtoError, Sqlstate, Startup};
use oracle::{Backend, First, Reading, Refusal, Stop};

/// Which side's bytes a stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// A client's: first packets (`proto::startup`), then tagged messages.
    Frontend,
    /// A server's, after the startup packet: tagged messages only.
    Backend,
}

/// How the pooler's reading of a stream ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyStop {
    /// Everything whole was taken; `held` bytes wait in the buffer.
    Waiting {
        /// Bytes left in the buffer.
        held: usize,
    },
    /// The codec refused the packet or message that starts at `at`.
    Refused {
        /// Its error.
        error: ProtoError,
        /// Where the refused bytes start in the stream.
        at: usize,
    },
    /// A CancelRequest was taken: the client connection reads nothing more.
    Cancel,
}

/// What the pooler reads from a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyRead {
    /// First packets, with the offset just after each.
    pub first: Vec<(Startup, usize)>,
    /// Tagged messages (type, body), with the offset just after each.
    pub messages: Vec<(u8, Vec<u8>, usize)>,
    /// Why it stopped.
    pub stop: ProxyStop,
}

/// Reads `data` with `proto` as the client and server connections do (`startup` until the
/// parameters, a cancel ending it; then `message_len` and `message`, after
/// `client_message_len` on the client's side), the bytes arriving in
/// pieces of the sizes `pieces` gives (what is left after them arrives at once). Along the way
/// it checks that `message_len` and `message` agree, and that a verdict of "incomplete"
/// leaves the buffer as it was.
pub fn proxy_read(data: &[u8], side: Side, pieces: impl IntoIterator<Item = usize>) -> ProxyRead {
    let mut buf = BytesMut::new();
    let mut fed = 0;
    let mut first = Vec::new();
    let mut messages = Vec::new();
    let mut tagged = side == Side::Backend;
    let mut pieces = pieces.into_iter();
    while fed < data.len() {
        let n = pieces
            .next()
            .unwrap_or(data.len())
            .clamp(1, data.len() - fed);
        buf.extend_from_slice(&data[fed..fed + n]);
        fed += n;
        loop {
            let before = buf.len();
            let at = fed - before;
            let refused = |error| ProxyRead {
                first: first.clone(),
                messages: messages.clone(),
                stop: ProxyStop::Refused { error, at },
            };
            if !tagged {
                match proto::startup(&mut buf) {
                    Ok(Some(s)) => {
                        let cancel = matches!(s, Startup::Cancel { .. });
                        tagged = matches!(s, Startup::Params(_));
                        first.push((s, fed - buf.len()));
                        if cancel {
                            return ProxyRead {
                                first,
                                messages,
                                stop: ProxyStop::Cancel,
                            };
                        }
                    }
                    Ok(None) => {
                        assert_eq!(buf.len(), before, "startup took bytes and said incomplete");
                        break;
                    }
                    Err(e) => return refused(e),
                }
                continue;
            }
            // the client connection measures with the client's limits first
            if side == Side::Frontend {
                if let Err(e) = proto::client_message_len(&buf) {
                    return refused(e);
                }
            }
            let measured = proto::message_len(&buf);
            match proto::message(&mut buf) {
                Ok(Some((tag, body))) => {
                    let took = before - buf.len();
                    assert_eq!(measured, Ok(Some(took)), "message_len and message disagree");
                    assert_eq!(body.len() + 5, took, "the body is not the message less 5");
                    messages.push((tag, body.to_vec(), fed - buf.len()));
                }
                Ok(None) => {
                    assert_eq!(measured, Ok(None), "message_len and message disagree");
                    assert_eq!(buf.len(), before, "message took bytes and said incomplete");
                    break;
                }
                Err(e) => {
                    assert_eq!(measured, Err(e.clone()), "message_len and message disagree");
                    return refused(e);
                }
            }
        }
    }
    ProxyRead {
        first,
        messages,
        stop: ProxyStop::Waiting { held: buf.len() },
    }
}

/// One byte at a time (the codec reads a length word and waits, and looks at what it announces
/// once, when the last byte has come: this stays linear).
fn bytewise() -> impl Iterator<Item = usize> {
    std::iter::repeat(1)
}

/// Piece sizes that follow from the data (an xorshift seeded with its FNV-1a hash), so a fuzz
/// input is always cut the same way: 1 to 16 bytes, up to a 256th of longer inputs.
fn seeded_pieces(data: &[u8]) -> impl Iterator<Item = usize> {
    let most = (data.len() / 256).max(16) as u64;
    let mut x = data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    }) | 1;
    std::iter::from_fn(move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        Some((x % most) as usize + 1)
    })
}

/// Pieces of 1, 2, 3 and 4 bytes in turn: every message header arrives in two reads or more,
/// split at a point that moves from one to the next.
fn short_pieces(data: &[u8]) -> impl Iterator<Item = usize> {
    [1usize, 2, 3, 4].into_iter().cycle().take(data.len())
}

fn show(bytes: &[u8]) -> String {
    if bytes.len() > 256 {
        let head = bytes[..200].escape_ascii();
        let tail = bytes[bytes.len() - 40..].escape_ascii();
        return format!("{head}...({} bytes)...{tail}", bytes.len());
    }
    bytes.escape_ascii().to_string()
}

/// The fuzz target `pg_frontend`: `data` is a first byte choosing how to shape the stream
/// (see [`shape_frontend`]), then the client's bytes, checked by [`frontend_stream`]; all of
/// `data` also gives the text [`encoders`] writes.
pub fn pg_frontend(data: &[u8]) {
    encoders(data);
    match data.split_first() {
        Some((&how, rest)) => frontend_stream(&shape_frontend(how, rest)),
        None => frontend_stream(data),
    }
}

/// The fuzz target `pg_backend`: a first byte choosing how to shape the stream (bit 0: length
/// fields sealed, see [`seal`]), then a server's bytes, checked by [`backend_stream`].
pub fn pg_backend(data: &[u8]) {
    if let Some((&how, rest)) = data.split_first() {
        let mut stream = rest.to_vec();
        if how & 1 != 0 {
            seal(&mut stream);
        }
        backend_stream(&stream);
    }
}

/// The fuzz target `pg_ssl_answer`: a first byte choosing the shape (bit 0: a length word
/// put first that says the whole input, so that the rest is read as an ErrorResponse), then
/// bytes as what a server sends after the 'E' it answered an SSLRequest with, checked by
/// [`ssl_answer`].
pub fn pg_ssl_answer(data: &[u8]) {
    if let Some((&how, rest)) = data.split_first() {
        let mut bytes = rest.to_vec();
        if how & 1 != 0 {
            let len = (bytes.len() + 4) as u32;
            bytes.splice(0..0, len.to_be_bytes());
        }
        ssl_answer(&bytes);
    }
}

/// `proto::ssl_refusal` on a server's error answering an SSLRequest: once the bytes so far
/// give an answer, more bytes (or the server closing) change nothing; with the server closed
/// there is always an answer, and never more than `SSL_REFUSAL_MAX` bytes are waited for.
/// What it reads: an ErrorResponse (a length word of 8 to the limit, the body whole) read by
/// the oracle gives the same message, as [`look_into`] checks it, and the SQLSTATE of its
/// last 'C' field; else the old protocol's text up to its first NUL.
pub fn ssl_answer(bytes: &[u8]) {
    let whole = proto::ssl_refusal(bytes, true).expect("an answer once the server closed");
    let mut first = None;
    for k in 0..=bytes.len() {
        let part = proto::ssl_refusal(&bytes[..k], false);
        if k >= proto::SSL_REFUSAL_MAX {
            assert!(
                part.is_some(),
                "waiting past the limit at {k}: {}",
                show(bytes)
            );
        }
        match (&first, part) {
            (None, Some(answer)) => {
                assert_eq!(
                    proto::ssl_refusal(&bytes[..k], true).as_ref(),
                    Some(&answer),
                    "closed at {k}: {}",
                    show(bytes)
                );
                first = Some(answer);
            }
            (Some(was), now) => {
                assert_eq!(now.as_ref(), Some(was), "changed at {k}: {}", show(bytes))
            }
            (None, None) => {}
        }
    }
    if let Some(answer) = &first {
        assert_eq!(answer, &whole, "{}", show(bytes));
    }
    let len = bytes
        .first_chunk::<4>()
        .map_or(0, |w| u32::from_be_bytes(*w) as usize);
    let framed = (8..=proto::SSL_REFUSAL_MAX).contains(&len);
    match bytes.get(4..len).filter(|_| framed) {
        Some(body) => {
            look_into(b'E', body);
            if let Ok(Backend::Fields(fields)) = oracle::backend_message(b'E', body) {
                let code = fields.iter().rev().find(|(c, _)| *c == b'C');
                let code = code.map(|(_, v)| String::from_utf8_lossy(v).into_owned());
                assert_eq!(whole.0, code, "the code of {}", show(bytes));
            }
        }
        None if framed => assert_eq!(whole, (None, "an error cut short".to_string())),
        None => {
            let most = &bytes[..bytes.len().min(proto::SSL_REFUSAL_MAX)];
            let text = most.split(|&b| b == 0).next().unwrap_or_default();
            let text = String::from_utf8_lossy(text).trim_end().to_string();
            assert_eq!(whole, (None, text), "{}", show(bytes));
        }
    }
}

/// Shapes the fuzz input so that it reaches the tagged messages, which random bytes rarely
/// do: bit 0 puts an SSLRequest first, bit 1 a StartupMessage (user, database,
/// application_name) before `rest`, bit 2 seals the length fields of `rest` (see [`seal`]).
/// The packets are written out here by hand, not by `proto`.
pub fn shape_frontend(how: u8, rest: &[u8]) -> Vec<u8> {
    let mut stream = Vec::new();
    if how & 1 != 0 {
        stream.extend_from_slice(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);
    }
    if how & 2 != 0 {
        stream.extend_from_slice(&startup_bytes(&[
            ("user", "app"),
            ("database", "app"),
            ("application_name", "fuzz"),
        ]));
    }
    let at = stream.len();
    stream.extend_from_slice(rest);
    if how & 4 != 0 {
        seal(&mut stream[at..]);
    }
    stream
}

/// A protocol 3.0 StartupMessage with `pairs`, written out by hand.
pub fn startup_bytes(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut contents = vec![0, 3, 0, 0];
    for (name, value) in pairs {
        for s in [name, value] {
            contents.extend_from_slice(s.as_bytes());
            contents.push(0);
        }
    }
    contents.push(0);
    let mut packet = ((contents.len() + 4) as u32).to_be_bytes().to_vec();
    packet.extend_from_slice(&contents);
    packet
}

/// A tagged message of type `tag` with `contents`, written out by hand.
pub fn message_bytes(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&((contents.len() + 4) as u32).to_be_bytes());
    m.extend_from_slice(contents);
    m
}

/// Makes `bytes` a run of whole tagged messages: each type byte is followed by a length
/// field rewritten to give it the next `b % 64` bytes as contents (`b` the length field's
/// first byte before), or what is left, if less; a tail of fewer than 5 bytes stays.
pub fn seal(bytes: &mut [u8]) {
    let mut at = 0;
    while at + 5 <= bytes.len() {
        let contents = usize::from(bytes[at + 1] % 64).min(bytes.len() - at - 5);
        bytes[at + 1..at + 5].copy_from_slice(&((contents + 4) as u32).to_be_bytes());
        at += 5 + contents;
    }
}

/// Differential check of the codec on a client's byte stream `data`.
///
/// - The pooler reads the same first packets and messages and stops the same way however the
///   bytes arrive: at once, one byte at a time, in pieces derived from the data, in pieces of
///   1 to 4 bytes.
/// - The oracle reads the same: the same packets (the same request codes, cancel keys and
///   parameters, in order), the same messages (type and contents), each ending at the same
///   offset, and the same end: waiting with the same number of bytes held, a cancel, or a
///   refusal of the packet or message at the same offset, for the same reason (a length
///   names the same length, an unknown protocol the same version).
/// - Nothing is read past a packet or message: each, taken alone, reads the same and leaves
///   nothing; less one byte it is incomplete. So what the pooler forwards of a message is
///   exactly the client's bytes of it. A refusal needs the bytes the oracle looked at
///   and no more: a length out of range is refused on the length word alone, without waiting
///   for the bytes it announces.
/// - The limits hold: no first packet over `MAX_STARTUP` bytes or under 8, no message
///   announcing more than `MAX_MESSAGE`.
///
/// And the batch the tagged messages begin with is judged alike by the pooler
/// (`client::shared_batch`, whether it may go on a connection other clients' reads share) and
/// by [`may_share`], written from the protocol's documentation, for a client that prepared
/// `s1` and `P0_0` by name: the same answer, the same length, the same named statements.
pub fn frontend_stream(data: &[u8]) {
    let read = stream(data, Side::Frontend);
    let mut tagged = Vec::new();
    for (tag, body, _) in &read.messages {
        tagged.push(*tag);
        tagged.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        tagged.extend_from_slice(body);
    }
    let mut statements = crate::prepared::ClientStatements::default();
    for name in KNOWN {
        statements.remember(format!("{name}\0select 1\0\0\0").as_bytes());
    }
    let ours = crate::client::Batch::read(&tagged)
        .and_then(|b| crate::client::shared_batch(&b, &statements))
        .map(|(len, named)| {
            let names: Vec<Vec<u8>> = named
                .iter()
                .map(|p| p.split(|&b| b == 0).next().unwrap_or_default().to_vec())
                .collect();
            (len, names)
        });
    assert_eq!(ours, may_share(&read.messages), "{}", show(data));
}

/// The statements the client of [`frontend_stream`]'s batch check prepared by name.
const KNOWN: [&str; 2] = ["s1", "P0_0"];

/// Whether the messages begin with a batch that may go on a shared connection, read from the
/// protocol's documentation: messages up to a Sync (a Flush, or none, and it may not), each a
/// Parse of the unnamed statement (a first field, the name, empty), a Bind of the unnamed
/// portal (first field empty) to the unnamed statement parsed before it in the batch or to a
/// statement in [`KNOWN`] (its second field), a Describe of the unnamed portal (`P` and an
/// empty name, nothing after) or of such a statement (`S`, its name, nothing after), an
/// Execute of the unnamed portal, or the Sync. Its length (with the 5 header bytes of each
/// message), and the known statements it names, each once, in order.
pub fn may_share(messages: &[(u8, Vec<u8>, usize)]) -> Option<(usize, Vec<Vec<u8>>)> {
    let field = |b: &[u8]| -> Option<(Vec<u8>, usize)> {
        let end = b.iter().position(|&c| c == 0)?;
        Some((b[..end].to_vec(), end + 1))
    };
    let mut len = 0;
    let mut parsed = false;
    let mut names: Vec<Vec<u8>> = Vec::new();
    let mut statement = |name: Vec<u8>, parsed: bool| -> bool {
        if name.is_empty() {
            return parsed;
        }
        if !KNOWN.iter().any(|k| k.as_bytes() == name.as_slice()) {
            return false;
        }
        if !names.contains(&name) {
            names.push(name);
        }
        true
    };
    for (tag, body, _) in messages {
        len += 5 + body.len();
        let ok = match tag {
            b'S' => return Some((len, names)),
            b'P' => {
                parsed = true;
                field(body).is_some_and(|(name, _)| name.is_empty())
            }
            b'B' => match field(body) {
                Some((portal, at)) if portal.is_empty() => {
                    field(&body[at..]).is_some_and(|(name, _)| statement(name, parsed))
                }
                _ => false,
            },
            b'D' if body.first() == Some(&b'P') => body.len() == 2 && body[1] == 0,
            b'D' if body.first() == Some(&b'S') => field(&body[1..])
                .is_some_and(|(name, used)| used == body.len() - 1 && statement(name, parsed)),
            b'E' => field(body).is_some_and(|(portal, _)| portal.is_empty()),
            _ => false,
        };
        if !ok {
            return None;
        }
    }
    None
}

/// Differential check of the codec on a server's byte stream `data`: the checks of
/// [`frontend_stream`] on tagged messages; and the messages the pooler looks into, read by the
/// oracle by their documented format, say the same to the pooler: a well-formed
/// ParameterStatus gives `cstr` the same name and value (or, as the oracle finds a string that
/// is not UTF-8, nothing the pooler keeps); a well-formed ErrorResponse or
/// NoticeResponse gives `error_message` its last message and code; a malformed one is read
/// without a panic.
pub fn backend_stream(data: &[u8]) {
    let read = stream(data, Side::Backend);
    for (tag, body, _) in &read.messages {
        look_into(*tag, body);
    }
}

fn stream(data: &[u8], side: Side) -> ProxyRead {
    let read = proxy_read(data, side, [data.len()]);
    for (how, other) in [
        ("byte by byte", proxy_read(data, side, bytewise())),
        (
            "in seeded pieces",
            proxy_read(data, side, seeded_pieces(data)),
        ),
        (
            "in short pieces",
            proxy_read(data, side, short_pieces(data)),
        ),
    ] {
        assert_eq!(read, other, "read whole vs {how}: {}", show(data));
    }
    let theirs = match side {
        Side::Frontend => oracle::frontend(data),
        Side::Backend => oracle::backend(data),
    };
    agree(&read, &theirs, data);
    alone(&read, &theirs, side, data);
    for pair in read.first.windows(2) {
        assert!(
            !matches!(pair[0].0, Startup::Params(_) | Startup::Cancel { .. }),
            "a first packet after {:?}: {}",
            pair[0].0,
            show(data)
        );
    }
    read
}

/// The pooler's reading and the oracle's are the same.
fn agree(read: &ProxyRead, theirs: &oracle::Stream, data: &[u8]) {
    let ours: Vec<(First, usize)> = read.first.iter().map(|(s, end)| (first(s), *end)).collect();
    assert_eq!(ours, theirs.first, "first packets: {}", show(data));
    assert_eq!(read.messages, theirs.messages, "messages: {}", show(data));
    let same = match (&read.stop, &theirs.stop) {
        (ProxyStop::Waiting { held }, Stop::Waiting { held: h }) => held == h,
        (ProxyStop::Cancel, Stop::Cancel) => true,
        (ProxyStop::Refused { error, at }, Stop::Refused { why, at: a, .. }) => {
            at == a && same_refusal(error, *why)
        }
        _ => false,
    };
    assert!(
        same,
        "the codec stops with {:?}, the oracle with {:?}: {}",
        read.stop,
        theirs.stop,
        show(data)
    );
}

/// The oracle's reading of a packet the codec took.
fn first(s: &Startup) -> First {
    match s {
        Startup::Ssl => First::SslRequest,
        Startup::Gss => First::GssEncRequest,
        Startup::Cancel { pid, secret } => First::CancelRequest {
            process_id: *pid,
            secret_key: *secret,
        },
        Startup::Params(p) => First::StartupMessage(p.clone()),
    }
}

/// Whether the codec's error names what the oracle refused for.
fn same_refusal(e: &ProtoError, why: Refusal) -> bool {
    match (e, why) {
        (ProtoError::ShortLength(n), Refusal::ShortLength(m)) => *n as u64 == u64::from(m),
        (ProtoError::TooLong(n), Refusal::LongLength(m)) => *n as u64 == u64::from(m),
        // the length word read unsigned, as the codec reports it
        (ProtoError::TooLong(n), Refusal::NegativeLength(m)) => *n as u64 == u64::from(m as u32),
        (ProtoError::Protocol { major, minor }, Refusal::Code(a, b))
        | (ProtoError::Protocol { major, minor }, Refusal::RequestLength(a, b)) => {
            (*major, *minor) == (a, b)
        }
        (
            ProtoError::Startup,
            Refusal::NoTerminator
            | Refusal::NameWithoutValue
            | Refusal::AfterTerminator
            | Refusal::NotUtf8,
        ) => true,
        _ => false,
    }
}

/// Each packet and message, and the refusal, judged on its own bytes: the same verdict, and
/// one byte less is incomplete.
fn alone(read: &ProxyRead, theirs: &oracle::Stream, side: Side, data: &[u8]) {
    let mut start = 0;
    for (s, end) in &read.first {
        let mut b = BytesMut::from(&data[start..*end]);
        assert_eq!(
            proto::startup(&mut b),
            Ok(Some(s.clone())),
            "the packet alone: {}",
            show(&data[start..*end])
        );
        assert!(b.is_empty(), "left {}", show(&b));
        let mut short = BytesMut::from(&data[start..end - 1]);
        assert_eq!(
            proto::startup(&mut short),
            Ok(None),
            "the packet less its last byte: {}",
            show(&data[start..*end])
        );
        let len = end - start;
        assert!(
            (8..=proto::MAX_STARTUP).contains(&len),
            "a first packet of {len} bytes: {}",
            show(data)
        );
        start = *end;
    }
    for (tag, body, end) in &read.messages {
        let whole = &data[start..*end];
        assert_eq!(proto::message_len(whole), Ok(Some(whole.len())));
        let mut b = BytesMut::from(whole);
        let taken = proto::message(&mut b).map(|m| m.map(|(t, body)| (t, body.to_vec())));
        assert_eq!(taken, Ok(Some((*tag, body.clone()))), "{}", show(whole));
        assert!(b.is_empty(), "left {}", show(&b));
        assert_eq!(
            proto::message_len(&whole[..whole.len() - 1]),
            Ok(None),
            "the message less its last byte: {}",
            show(whole)
        );
        assert!(
            body.len() + 4 <= proto::MAX_MESSAGE,
            "a message announcing {} bytes: {}",
            body.len() + 4,
            show(whole)
        );
        start = *end;
    }
    let (ProxyStop::Refused { error, at }, Stop::Refused { looked, .. }) =
        (&read.stop, &theirs.stop)
    else {
        return;
    };
    let in_messages = side == Side::Backend
        || read
            .first
            .iter()
            .any(|(s, _)| matches!(s, Startup::Params(_)));
    let verdict = |n: usize| -> Result<bool, ProtoError> {
        let mut b = BytesMut::from(&data[*at..at + n]);
        if in_messages && side == Side::Frontend {
            proto::client_message_len(&b)?;
            proto::message(&mut b).map(|m| m.is_some())
        } else if in_messages {
            proto::message(&mut b).map(|m| m.is_some())
        } else {
            proto::startup(&mut b).map(|s| s.is_some())
        }
    };
    assert_eq!(
        verdict(*looked),
        Err(error.clone()),
        "refused on the {looked} bytes the verdict needs: {}",
        show(data)
    );
    assert_eq!(
        verdict(looked - 1),
        Ok(false),
        "refused before the bytes the verdict needs: {}",
        show(data)
    );
}

/// A server message the pooler looks into, read by the pooler's functions and by the oracle.
fn look_into(tag: u8, body: &[u8]) {
    let theirs = oracle::backend_message(tag, body);
    match tag {
        b'S' => {
            // as client.rs and server.rs take it: both strings, or nothing
            let mut b = BytesMut::from(body);
            let name = proto::cstr(&mut b, "ParameterStatus");
            let value = proto::cstr(&mut b, "ParameterStatus");
            let ours = name.and_then(|n| value.map(|v| (n, v))).ok();
            if let Ok(Backend::ParameterStatus(n, v)) = &theirs {
                let text = |s: &[u8]| String::from_utf8(s.to_vec()).ok();
                let expected = text(n).zip(text(v));
                assert_eq!(ours, expected, "ParameterStatus {}", show(body));
            }
        }
        b'E' | b'N' => {
            let said = proto::error_message(body);
            if let Ok(Backend::Fields(fields)) = &theirs {
                let last = |code: u8| {
                    fields
                        .iter()
                        .rev()
                        .find(|(c, _)| *c == code)
                        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                };
                let expected = match (last(b'M').unwrap_or_default(), last(b'C')) {
                    (m, Some(c)) if !c.is_empty() => format!("{m} ({c})"),
                    (m, _) => m,
                };
                assert_eq!(said, expected, "ErrorResponse {}", show(body));
            }
        }
        _ => {}
    }
}

/// What the pooler writes itself, read back by the oracle: a StartupMessage of any parameters
/// (non-empty names, no NUL: the pooler's come from a client's NUL-terminated strings) is
/// exactly those parameters; an ErrorResponse is the four fields S, V, C, M and
/// `error_message` reads its message and code; a Query is its text and a NUL; a CancelRequest
/// is its key; any tagged message is its type and body. Texts and numbers come from `data`.
pub fn encoders(data: &[u8]) {
    let text = String::from_utf8_lossy(data).replace('\0', "");
    let words: Vec<&str> = text.split('\u{1}').collect();
    let pairs: Vec<(&str, &str)> = words
        .chunks(2)
        .filter_map(|c| match c {
            [k, v] if !k.is_empty() => Some((*k, *v)),
            _ => None,
        })
        .collect();
    let packet = proto::startup_packet(&pairs);
    if packet.len() <= proto::MAX_STARTUP {
        let owned = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(
            oracle::first_packet(&packet),
            Reading::Whole {
                item: First::StartupMessage(owned),
                used: packet.len()
            },
            "startup_packet({pairs:?})"
        );
    }

    for fatal in [true, false] {
        let mut out = BytesMut::new();
        proto::put_error(&mut out, fatal, Sqlstate::PROTOCOL, &text);
        let Reading::Whole {
            item: (b'E', contents),
            used,
        } = oracle::tagged(&out)
        else {
            panic!("put_error wrote {}", show(&out));
        };
        assert_eq!(used, out.len(), "{}", show(&out));
        let severity = if fatal { &b"FATAL"[..] } else { b"ERROR" };
        assert_eq!(
            oracle::backend_message(b'E', &contents),
            Ok(Backend::Fields(vec![
                (b'S', severity.to_vec()),
                (b'V', severity.to_vec()),
                (b'C', b"08P01".to_vec()),
                (b'M', text.as_bytes().to_vec()),
            ])),
            "{}",
            show(&out)
        );
        assert_eq!(proto::error_message(&contents), format!("{text} (08P01)"));
    }

    let mut out = BytesMut::new();
    proto::put_query(&mut out, &text);
    let mut sql = text.as_bytes().to_vec();
    sql.push(0);
    assert_eq!(
        oracle::tagged(&out),
        Reading::Whole {
            item: (b'Q', sql),
            used: out.len()
        }
    );

    let word = |at: usize| {
        let mut w = [0u8; 4];
        for (i, b) in w.iter_mut().enumerate() {
            *b = data.get(at + i).copied().unwrap_or(0);
        }
        u32::from_be_bytes(w)
    };
    let (pid, secret) = (word(0), word(4));
    assert_eq!(
        oracle::first_packet(&proto::cancel_packet(pid, secret)),
        Reading::Whole {
            item: First::CancelRequest {
                process_id: pid,
                secret_key: secret
            },
            used: 16
        }
    );

    if let Some((&tag, body)) = data.split_first() {
        let mut out = BytesMut::new();
        proto::put(&mut out, tag, |b| b.extend_from_slice(body));
        assert_eq!(
            oracle::tagged(&out),
            Reading::Whole {
                item: (tag, body.to_vec()),
                used: out.len()
            }
        );
    }
}
