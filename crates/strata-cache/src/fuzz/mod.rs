//! Entry points for the cargo-fuzz targets `resp_command` and `resp_reply` in `fuzz/` (feature
//! "fuzz"), also run by the unit tests on hostile inputs. Both are differential: the codec in
//! [`crate::resp`] is checked against [`oracle`], a second RESP parser that reads bytes as
//! redis-server (commands) and a client library (replies) read them.

pub mod memcache;
pub mod oracle;
#[cfg(test)]
mod tests;

use bytes::{Bytes, BytesMut};

use crate::resp::{encode_command, reply_len, take_command, ProtocolError, Value, Values};
use oracle::{Mode, Node, Stop};

/// The listener's default `max_bulk_size`.
pub const MAX_BULK: u64 = 64 << 20;

/// One command the proxy accepted from a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// Its arguments, the name first.
    pub args: Vec<Vec<u8>>,
    /// The bytes the proxy forwards to a server for it (`Command::to_frame`).
    pub frame: Bytes,
    /// The offset in the client's stream just after it.
    pub end: usize,
}

/// What the proxy reads from a client's byte stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyRead {
    /// The commands it accepted, in order.
    pub commands: Vec<Accepted>,
    /// Why it stopped: `None` when it waits for more bytes, else the error the client gets
    /// before it is closed.
    pub error: Option<ProtocolError>,
}

/// Reads `data` with `take_command` as the client connection does, the bytes arriving in
/// pieces of the sizes `pieces` gives (what is left after them arrives at once).
pub fn proxy_read(data: &[u8], pieces: impl IntoIterator<Item = usize>) -> ProxyRead {
    let mut buf = BytesMut::new();
    let mut partial = None;
    let mut fed = 0;
    let mut commands = Vec::new();
    let mut pieces = pieces.into_iter();
    while fed < data.len() {
        let n = pieces
            .next()
            .unwrap_or(data.len())
            .clamp(1, data.len() - fed);
        buf.extend_from_slice(&data[fed..fed + n]);
        fed += n;
        loop {
            match take_command(&mut buf, MAX_BULK, &mut partial) {
                Ok(Some(cmd)) => commands.push(Accepted {
                    args: (0..cmd.len()).map(|i| cmd.arg(i).to_vec()).collect(),
                    frame: cmd.to_frame(),
                    end: fed - buf.len(),
                }),
                Ok(None) => break,
                Err(e) => {
                    return ProxyRead {
                        commands,
                        error: Some(e),
                    }
                }
            }
        }
    }
    ProxyRead {
        commands,
        error: None,
    }
}

/// One byte at a time; past 4 KiB (only the unit tests' long lines; `take_command` starts
/// over on each byte, so it is quadratic) all at once but for the last KiB, which holds the
/// limit being tested.
fn bytewise(data: &[u8]) -> impl Iterator<Item = usize> {
    let first = if data.len() <= 4096 {
        1
    } else {
        data.len() - 1024
    };
    std::iter::once(first).chain(std::iter::repeat(1))
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

/// Pieces that end right after each CR, so every CRLF arrives split in two.
fn cr_pieces(data: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut last = 0;
    for (i, &b) in data.iter().enumerate() {
        if b == b'\r' {
            out.push(i + 1 - last);
            last = i + 1;
        }
    }
    out
}

fn show(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

/// Differential check of the command path on a client's byte stream `data`.
///
/// - The proxy reads the same commands and stops the same way however the bytes arrive:
///   at once, one byte at a time, in pieces derived from the data, split after every CR.
/// - What it forwards (each command's `to_frame`), read by the oracle as a strict Redis
///   reads it, is exactly the commands it accepted, one per frame, nothing left over: the
///   server executes what the proxy routed and nothing else, and a frame can't desynchronise
///   a server connection other clients share.
/// - A frame is the client's own bytes or the canonical multibulk of the arguments.
/// - Each accepted command is what Redis itself would read from the client's original bytes
///   at that point, ending at the same offset: the proxy never accepts bytes a Redis would
///   read differently. Where the proxy refuses or waits, Redis's reading doesn't matter: an
///   error closes the client, and waiting forwards nothing.
pub fn command_stream(data: &[u8]) {
    let read = proxy_read(data, [data.len()]);
    for (how, other) in [
        ("byte by byte", proxy_read(data, bytewise(data))),
        ("in seeded pieces", proxy_read(data, seeded_pieces(data))),
        ("split after every CR", proxy_read(data, cr_pieces(data))),
    ] {
        assert_eq!(read, other, "read whole vs {how}: {}", show(data));
    }
    if let Some(e) = &read.error {
        assert!(
            command_error(e),
            "not a command error: {e:?} on {}",
            show(data)
        );
    }
    let accepted = &read.commands[..];

    // what the servers receive
    let mut wire = Vec::new();
    let mut start = 0;
    for c in accepted {
        let seen = oracle::commands(&c.frame, Mode::Strict);
        assert_eq!(
            (seen.commands, seen.stop),
            (vec![(c.args.clone(), c.frame.len())], Stop::End),
            "Redis reads the forwarded frame {} differently; client bytes {}",
            show(&c.frame),
            show(data)
        );
        let mut canonical = BytesMut::new();
        encode_command(&mut canonical, c.args.iter().map(|a| &a[..]));
        assert!(
            c.frame[..] == data[start..c.end] || c.frame[..] == canonical[..],
            "the frame {} is neither the client's bytes nor the arguments",
            show(&c.frame)
        );
        wire.extend_from_slice(&c.frame);
        start = c.end;
    }
    let seen = oracle::commands(&wire, Mode::Strict);
    assert_eq!(seen.stop, Stop::End, "forwarded {}", show(&wire));
    assert!(
        seen.commands
            .iter()
            .map(|(a, _)| a)
            .eq(accepted.iter().map(|c| &c.args)),
        "forwarded {}",
        show(&wire)
    );

    // what a Redis would have read from the client itself
    let redis = oracle::commands(data, Mode::Real);
    for (i, c) in accepted.iter().enumerate() {
        let Some((args, end)) = redis.commands.get(i) else {
            panic!(
                "the proxy accepted command {i} {:?}, Redis reads no such command ({:?}) from {}",
                c.args.iter().map(|a| show(a)).collect::<Vec<_>>(),
                redis.stop,
                show(data)
            );
        };
        assert_eq!(
            (args, *end),
            (&c.args, c.end),
            "command {i}: Redis reads {:?}, the proxy {:?}, from {}",
            args.iter().map(|a| show(a)).collect::<Vec<_>>(),
            c.args.iter().map(|a| show(a)).collect::<Vec<_>>(),
            show(data)
        );
    }
}

/// Whether `e` is one `take_command` may return (the reply variants are not).
fn command_error(e: &ProtocolError) -> bool {
    match e {
        ProtocolError::BulkTooLarge(len, max) => *max == MAX_BULK && len > max,
        ProtocolError::MultibulkLength
        | ProtocolError::ExpectedBulk(_)
        | ProtocolError::BulkLength
        | ProtocolError::MissingCrlf
        | ProtocolError::LineTooLong
        | ProtocolError::BadLine => true,
        ProtocolError::ReplyType(_) | ProtocolError::ReplyDepth => false,
    }
}

/// Differential check of the reply path on bytes a server sends, `data`.
///
/// - `reply_len` on `data` and on its prefixes agrees: a prefix shorter than the reply is
///   `Ok(None)` or the same error, never a length; a longer one gives the same length.
/// - A reply the oracle reads strictly (well-formed RESP2 or RESP3) is measured to the same
///   length (unless it is over the proxy's own limits on nesting and line length); bytes the
///   oracle reads as the start of a well-formed reply are never measured as a whole one.
/// - A reply the proxy measures is read by a client library (the oracle in hiredis's lenient
///   form) to the same length or refused, never to another end: the replies that follow
///   reach every client in order.
/// - `Values` walks a measured reply without panicking and without reading past it, reads
///   the same values the oracle does, and `whole` steps over exactly the reply.
pub fn reply_stream(data: &[u8]) {
    let whole = reply_len(data);
    prefixes_agree(data, &whole);
    if let Err(e) = &whole {
        assert!(
            !matches!(
                e,
                ProtocolError::BulkTooLarge(..) | ProtocolError::ExpectedBulk(_)
            ),
            "not a reply error: {e:?} on {}",
            show(data)
        );
    }

    let strict = oracle::reply(data, Mode::Strict);
    if let Ok(Some((len, _))) = strict {
        let limit = matches!(
            whole,
            Err(ProtocolError::ReplyDepth | ProtocolError::LineTooLong)
        );
        assert!(
            whole == Ok(Some(len)) || limit,
            "a well-formed reply of {len} bytes, measured as {whole:?}: {}",
            show(data)
        );
    }
    if let (Ok(None), Ok(Some(len))) = (&strict, &whole) {
        panic!(
            "the start of a well-formed reply, measured as a whole one of {len} bytes: {}",
            show(data)
        );
    }
    let Ok(Some(len)) = whole else {
        return;
    };
    match oracle::reply(data, Mode::Real) {
        Ok(Some((n, _))) if n == len => {}
        Err(_) => {}
        other => panic!(
            "the proxy measures {len} bytes, a client library reads {other:?}: {}",
            show(data)
        ),
    }

    let reply = &data[..len];
    let mut values = Values::new(reply);
    let mut walked = Vec::new();
    while let Some(v) = values.next() {
        assert!(
            values.offset() <= len,
            "Values read past the reply: {}",
            show(data)
        );
        walked.push(v);
    }
    assert_eq!(values.offset(), len, "Values stopped short: {}", show(data));
    if let Ok(Some((_, nodes))) = &strict {
        let expected: Vec<Value> = nodes.iter().map(value).collect();
        assert_eq!(walked, expected, "{}", show(data));
    }
    // the bytes after a reply change nothing about it
    let mut beyond = Values::new(data);
    for v in &walked {
        assert_eq!(beyond.next().as_ref(), Some(v), "{}", show(data));
    }
    assert_eq!(beyond.offset(), len);
    assert_eq!(Values::new(data).whole(), Some(reply));
}

fn value(node: &Node) -> Value<'_> {
    match node {
        Node::Simple(s) => Value::Simple(s),
        Node::Error(s) => Value::Error(s),
        Node::Int(n) => Value::Int(*n),
        Node::Bulk(b) => Value::Bulk(b.as_deref()),
        Node::Array(n) => Value::Array(*n),
        Node::Null => Value::Null,
        Node::Bool(true) => Value::Scalar(b'#', b"t"),
        Node::Bool(false) => Value::Scalar(b'#', b"f"),
        Node::Double(s) => Value::Scalar(b',', s),
        Node::BigNumber(s) => Value::Scalar(b'(', s),
        Node::BlobError(s) => Value::Error(s),
        Node::Verbatim(s) => Value::Bulk(Some(s)),
        Node::Map(n) => Value::Aggregate(b'%', *n),
        Node::Set(n) => Value::Aggregate(b'~', *n),
        Node::Attribute(n) => Value::Aggregate(b'|', *n),
        Node::Push(n) => Value::Push(*n),
    }
}

/// `reply_len` on prefixes of `data` agrees with `whole`, its verdict on all of it: every
/// prefix for short inputs, else a spread of them and those around each CR and LF.
fn prefixes_agree(data: &[u8], whole: &Result<Option<usize>, ProtocolError>) {
    let cuts: Vec<usize> = if data.len() <= 512 {
        (0..data.len()).collect()
    } else {
        let step = data.len() / 256;
        let mut cuts: Vec<usize> = (0..data.len()).step_by(step).collect();
        cuts.extend(
            data.iter()
                .enumerate()
                .filter(|(_, &b)| b == b'\r' || b == b'\n')
                .flat_map(|(i, _)| [i, i + 1])
                .filter(|&i| i < data.len())
                .take(512),
        );
        cuts
    };
    for &cut in &cuts {
        let part = reply_len(&data[..cut]);
        let ok = match (whole, &part) {
            (_, Ok(None)) => match whole {
                Ok(Some(len)) => cut < *len,
                _ => true,
            },
            (Ok(Some(len)), Ok(Some(n))) => n == len && cut >= *len,
            (Err(e), Err(p)) => e == p,
            _ => false,
        };
        assert!(
            ok,
            "{} bytes of {} measure {part:?}, all of them {whole:?}: {}",
            cut,
            data.len(),
            show(data)
        );
    }
    resumed_agrees(data, cuts, whole);
}

/// A scan resumed as the bytes come (the cuts in order, then all of them) ends where one scan
/// of the whole does: the same length, or the same error.
fn resumed_agrees(data: &[u8], mut cuts: Vec<usize>, whole: &Result<Option<usize>, ProtocolError>) {
    cuts.sort_unstable();
    cuts.dedup();
    cuts.push(data.len());
    let mut scan = crate::resp::ReplyScan::default();
    let mut resumed = Ok(None);
    for cut in cuts {
        resumed = crate::resp::reply_len_from(&data[..cut], &mut scan);
        if !matches!(resumed, Ok(None)) {
            break;
        }
    }
    assert_eq!(&resumed, whole, "resumed scan of {}", show(data));
}
