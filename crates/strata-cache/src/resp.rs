//! RESP2, the Redis protocol, as bytes: a client's commands in (multibulk or inline) and a
//! server's replies scanned to their end. "Incomplete" is `Ok(None)`, never an error: the
//! caller reads more and asks again.
//!
//! The command parser is strict where Redis is lenient (a bulk must end in CRLF, numbers are
//! digits only), because the proxy forwards a command's bytes as it received them: anything
//! Redis could read differently from the proxy is refused instead.

use std::fmt::Write as _;
use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};

/// Redis's own limit on the elements of one command (`*<n>`).
pub const MAX_ARGS: usize = 1024 * 1024;
/// Redis's limit on an inline command line, and on any header line here.
pub const MAX_LINE: usize = 64 * 1024;
/// The most bytes one command may take (Redis's `client-query-buffer-limit` default is 1 GiB;
/// argument offsets are 32-bit).
pub const MAX_COMMAND: usize = 512 << 20;
/// Nesting a reply may have; Redis's own replies nest a few levels at most.
const MAX_REPLY_DEPTH: usize = 64;

/// Why a client's bytes are not a command: the client gets `-ERR Protocol error: ...` and is
/// closed, since the stream can't be re-synchronised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// `*<n>` is not a number, or n is over [`MAX_ARGS`].
    #[error("invalid multibulk length")]
    MultibulkLength,
    /// An element of a multibulk is not a bulk string.
    #[error("expected '$', got '{}'", char::from(*.0))]
    ExpectedBulk(u8),
    /// `$<n>` is not a number, or is negative.
    #[error("invalid bulk length")]
    BulkLength,
    /// A bulk is over the listener's `max_bulk_size`.
    #[error("bulk of {0} bytes is over the limit of {1}")]
    BulkTooLarge(u64, u64),
    /// A bulk's data is not followed by CRLF.
    #[error("bulk not followed by CRLF")]
    MissingCrlf,
    /// A header or inline line is over [`MAX_LINE`] without its CRLF.
    #[error("line too long")]
    LineTooLong,
    /// A line ends in a bare LF, or an inline command has an unbalanced quote.
    #[error("invalid line")]
    BadLine,
    /// A reply starts with a byte that is no RESP2 or RESP3 type.
    #[error("unknown reply type '{}'", char::from(*.0))]
    ReplyType(u8),
    /// A reply nests arrays deeper than [`MAX_REPLY_DEPTH`].
    #[error("reply nested too deep")]
    ReplyDepth,
}

/// One command from a client: its bytes and where each argument lies in them.
#[derive(Debug, Clone)]
pub struct Command {
    frame: Bytes,
    args: Vec<Range<u32>>,
    inline: bool,
}

impl Command {
    /// Argument `i` (the command's name is 0).
    pub fn arg(&self, i: usize) -> &[u8] {
        let r = &self.args[i];
        &self.frame[r.start as usize..r.end as usize]
    }

    /// How many arguments, the name included.
    pub fn len(&self) -> usize {
        self.args.len()
    }

    /// Whether the command has no arguments at all (never true for a parsed command).
    pub fn is_empty(&self) -> bool {
        self.args.is_empty()
    }

    /// The command as a server reads it: the bytes the client sent, or for an inline command,
    /// the same arguments as a multibulk.
    pub fn to_frame(&self) -> Bytes {
        if self.inline {
            let mut out = BytesMut::new();
            encode_command(&mut out, (0..self.len()).map(|i| self.arg(i)));
            out.freeze()
        } else {
            self.frame.clone()
        }
    }

    /// The command's name, upper-cased into `buf` (names longer than `buf` come back
    /// truncated, which matches no command).
    pub fn name<'b>(&self, buf: &'b mut [u8; 24]) -> &'b [u8] {
        let name = self.arg(0);
        let n = name.len().min(buf.len());
        for (d, s) in buf.iter_mut().zip(&name[..n]) {
            *d = s.to_ascii_uppercase();
        }
        &buf[..n]
    }
}

/// Parses one command from the front of `buf`: `Ok(Some((command, consumed)))`, `Ok(None)`
/// when more bytes are needed. An empty command (`*0`, `*-1`, an empty inline line) is
/// consumed and skipped, as Redis skips it.
pub fn parse_command(buf: &[u8], max_bulk: u64) -> Result<Parsed, ProtocolError> {
    parse_command_resuming(buf, max_bulk, &mut None).map(|(parsed, _)| parsed)
}

/// How far a multibulk command was read when its bytes ran out: the arguments found and where
/// the next one starts. Kept by the caller with the buffer (whose front does not move until the
/// command is whole), so that a command arriving over many reads is read once, not again from
/// its start on every read (a million arguments would otherwise cost a million steps per read).
#[derive(Debug)]
pub struct Partial {
    /// Where the command starts in the buffer (after empty commands skipped before it).
    base: usize,
    args: Vec<Range<u32>>,
    /// The next argument's offset from `base`.
    at: usize,
    count: usize,
}

/// [`parse_command`], resuming from `partial` (left by the previous call on the same buffer,
/// which must not have lost bytes from its front since, but the empty commands this call
/// reports) and leaving one there when the command is not whole yet; and how many bytes of
/// empty commands lead the buffer.
pub fn parse_command_resuming(
    buf: &[u8],
    max_bulk: u64,
    partial: &mut Option<Box<Partial>>,
) -> Result<(Parsed, usize), ProtocolError> {
    let mut at = 0;
    loop {
        if at == buf.len() {
            return Ok((None, at));
        }
        let parsed = if buf[at] == b'*' {
            // a Partial is for the command at its base: empty commands before it are skipped
            // again, and it is taken only there
            let resume = if partial.as_ref().is_some_and(|p| p.base == at) {
                partial.take()
            } else {
                None
            };
            match multibulk(&buf[at..], max_bulk, resume)? {
                Bulk::Whole(parsed) => Some(parsed),
                Bulk::Short(mut p) => {
                    p.base = at;
                    *partial = Some(p);
                    None
                }
                Bulk::Empty => None,
            }
        } else {
            inline(&buf[at..])?
        };
        let Some((args, inline, used)) = parsed else {
            return Ok((None, at));
        };
        if args.is_empty() {
            at += used;
            continue;
        }
        let args = args
            .into_iter()
            .map(|r| r.start + at as u32..r.end + at as u32)
            .collect();
        return Ok((Some((args, inline, at + used)), at));
    }
}

/// Splits the next command off `buf` (see [`parse_command_resuming`]; `partial` lives with
/// `buf`).
pub fn take_command(
    buf: &mut BytesMut,
    max_bulk: u64,
    partial: &mut Option<Box<Partial>>,
) -> Result<Option<Command>, ProtocolError> {
    let (parsed, empty) = parse_command_resuming(buf, max_bulk, partial)?;
    // empty commands are dropped here, not forwarded: nor can endless ones pile up in the
    // buffer ahead of an incomplete command
    if empty > 0 {
        bytes::Buf::advance(buf, empty);
        if let Some(p) = partial {
            p.base -= empty;
        }
    }
    let Some((args, inline, used)) = parsed else {
        return Ok(None);
    };
    let shift = empty as u32;
    let args = args
        .into_iter()
        .map(|r| r.start - shift..r.end - shift)
        .collect();
    let frame = buf.split_to(used - empty).freeze();
    Ok(Some(Command {
        frame,
        args,
        inline,
    }))
}

/// A parsed command: where its arguments lie, whether it was inline, and the bytes it took;
/// `None` when it is not all there yet.
pub type Parsed = Option<(Vec<Range<u32>>, bool, usize)>;

/// A multibulk command read, or how far it was read.
enum Bulk {
    Whole((Vec<Range<u32>>, bool, usize)),
    Short(Box<Partial>),
    /// Not even its header is in.
    Empty,
}

fn multibulk(
    buf: &[u8],
    max_bulk: u64,
    resume: Option<Box<Partial>>,
) -> Result<Bulk, ProtocolError> {
    let (mut args, mut at, n) = match resume {
        Some(p) => (p.args, p.at, p.count),
        None => {
            let Some((header, at)) = line(buf, 1)? else {
                return Ok(Bulk::Empty);
            };
            let n = number(header).ok_or(ProtocolError::MultibulkLength)?;
            if n <= 0 {
                return Ok(Bulk::Whole((Vec::new(), false, at)));
            }
            if n as usize > MAX_ARGS {
                return Err(ProtocolError::MultibulkLength);
            }
            (Vec::with_capacity((n as usize).min(64)), at, n as usize)
        }
    };
    let short = |args, at| {
        Ok(Bulk::Short(Box::new(Partial {
            base: 0,
            args,
            at,
            count: n,
        })))
    };
    while args.len() < n {
        let Some(&first) = buf.get(at) else {
            return short(args, at);
        };
        if first != b'$' {
            return Err(ProtocolError::ExpectedBulk(first));
        }
        let Some((header, data)) = line(&buf[at..], 1)? else {
            return short(args, at);
        };
        let len = number(header)
            .filter(|n| *n >= 0)
            .ok_or(ProtocolError::BulkLength)? as u64;
        if len > max_bulk {
            return Err(ProtocolError::BulkTooLarge(len, max_bulk));
        }
        let start = at + data;
        let end = start + len as usize;
        if end > MAX_COMMAND {
            return Err(ProtocolError::BulkTooLarge(end as u64, MAX_COMMAND as u64));
        }
        if buf.len() < end + 2 {
            return short(args, at);
        }
        if &buf[end..end + 2] != b"\r\n" {
            return Err(ProtocolError::MissingCrlf);
        }
        args.push(start as u32..end as u32);
        at = end + 2;
    }
    Ok(Bulk::Whole((args, false, at)))
}

/// An inline command: a line of arguments separated by spaces, as users type them over telnet.
/// Redis would read quotes, escapes and control characters in its own way: a line with any of
/// them is refused rather than read differently.
fn inline(buf: &[u8]) -> Result<Parsed, ProtocolError> {
    let Some(lf) = buf.iter().position(|&b| b == b'\n') else {
        return if buf.len() > MAX_LINE {
            Err(ProtocolError::LineTooLong)
        } else {
            Ok(None)
        };
    };
    if lf > MAX_LINE {
        return Err(ProtocolError::LineTooLong);
    }
    // Redis accepts a bare LF at the end of an inline line (telnet clients send CRLF)
    let end = if lf > 0 && buf[lf - 1] == b'\r' {
        lf - 1
    } else {
        lf
    };
    let line = &buf[..end];
    // Redis splits an inline line with sdssplitargs: quotes and escapes, every C whitespace
    // character, and a NUL that ends the line early. Only lines that read the same either way
    // are taken: words of printable bytes separated by spaces and tabs.
    let blank = |b: u8| b == b' ' || b == b'\t';
    if line
        .iter()
        .any(|&b| b == b'"' || b == b'\'' || (b < 0x20 && !blank(b)) || b == 0x7f)
    {
        return Err(ProtocolError::BadLine);
    }
    let mut args = Vec::new();
    let mut i = 0;
    while i < line.len() {
        if blank(line[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < line.len() && !blank(line[i]) {
            i += 1;
        }
        args.push(start as u32..i as u32);
    }
    Ok(Some((args, true, lf + 1)))
}

/// The line after a type byte: `(line, offset after its CRLF)`; lines end in CRLF exactly.
fn line(buf: &[u8], from: usize) -> Result<Option<(&[u8], usize)>, ProtocolError> {
    let window = &buf[from.min(buf.len())..buf.len().min(from + MAX_LINE + 2)];
    match window.iter().position(|&b| b == b'\n') {
        Some(lf) => {
            if lf == 0 || window[lf - 1] != b'\r' {
                return Err(ProtocolError::BadLine);
            }
            Ok(Some((&window[..lf - 1], from + lf + 1)))
        }
        None if window.len() >= MAX_LINE + 2 => Err(ProtocolError::LineTooLong),
        None => Ok(None),
    }
}

/// A decimal integer as Redis's `string2ll` reads one: an optional '-', then "0" or digits
/// without a leading zero, within `i64`; nothing else ("01", "-0", "+1", " 1" are refused, as
/// Redis refuses them in a multibulk header).
fn number(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    match digits {
        [] => return None,
        [b'0'] if neg => return None,
        [b'0', _, ..] => return None,
        _ => {}
    }
    if digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // accumulate negatively, so that i64::MIN fits
    let mut n: i64 = 0;
    for d in digits {
        n = n.checked_mul(10)?.checked_sub(i64::from(d - b'0'))?;
    }
    if neg {
        Some(n)
    } else {
        n.checked_neg()
    }
}

/// The length of the complete reply at the front of `buf`, `Ok(None)` if it isn't all there.
/// Arrays nest; no recursion is needed to find the end, only a count of what is still owed.
pub fn reply_len(buf: &[u8]) -> Result<Option<usize>, ProtocolError> {
    reply_len_from(buf, &mut ReplyScan::default())
}

/// How far [`reply_len_from`] got into a reply that is not whole yet, so that the next
/// bytes are scanned from there and a large reply costs its length once, not once per read.
#[derive(Debug, Default)]
pub struct ReplyScan {
    /// Where the first element not scanned yet starts.
    pub(crate) at: usize,
    /// Elements still owed at each open array level.
    owed: Vec<i64>,
}

/// [`reply_len`] from where `scan` stopped in `buf` (which holds what it held then, and
/// more); leaves `scan` where it stops, and empty again once the reply is whole.
pub fn reply_len_from(buf: &[u8], scan: &mut ReplyScan) -> Result<Option<usize>, ProtocolError> {
    let whole = scan_reply(buf, scan);
    if !matches!(whole, Ok(None)) {
        *scan = ReplyScan::default();
    }
    whole
}

fn scan_reply(buf: &[u8], scan: &mut ReplyScan) -> Result<Option<usize>, ProtocolError> {
    let ReplyScan { at: start, owed } = scan;
    let mut at = *start;
    let mut top_done = false;
    while !top_done {
        // an element not whole yet is scanned again from its start when more comes
        *start = at;
        let Some(&kind) = buf.get(at) else {
            return Ok(None);
        };
        let Some((line, next)) = line(&buf[at..], 1)? else {
            return Ok(None);
        };
        at += next;
        let mut array = 0;
        match kind {
            b'+' | b'-' => {}
            b':' => {
                number(line).ok_or(ProtocolError::ReplyType(kind))?;
            }
            // RESP3's simple types, for clients that said HELLO 3: null, boolean, double, big
            // number
            b'_' if line.is_empty() => {}
            b'#' if line == b"t" || line == b"f" => {}
            b',' if !line.is_empty() => {}
            b'(' if line
                .strip_prefix(b"-")
                .unwrap_or(line)
                .iter()
                .all(u8::is_ascii_digit)
                && !line.is_empty() => {}
            // a bulk string; RESP3's blob error and verbatim string are framed alike
            b'$' | b'!' | b'=' => {
                let n = number(line).ok_or(ProtocolError::BulkLength)?;
                if n < 0 && kind != b'$' {
                    return Err(ProtocolError::BulkLength);
                }
                if n >= 0 {
                    let end = at + n as usize;
                    if buf.len() < end + 2 {
                        return Ok(None);
                    }
                    if &buf[end..end + 2] != b"\r\n" {
                        return Err(ProtocolError::MissingCrlf);
                    }
                    at = end + 2;
                }
            }
            // arrays; RESP3's set and push are framed alike, a map holds two values per entry,
            // and an attribute's entries come before the value it describes
            b'*' | b'~' | b'>' | b'%' | b'|' => {
                let n = number(line).ok_or(ProtocolError::MultibulkLength)?;
                if n < 0 && kind != b'*' {
                    return Err(ProtocolError::MultibulkLength);
                }
                // no reply has billions of elements: a count past 2^32 is refused rather than
                // doubled into an overflow
                if n > 1 << 32 {
                    return Err(ProtocolError::MultibulkLength);
                }
                array = match kind {
                    b'%' => n.max(0) * 2,
                    b'|' => n.max(0) * 2 + 1,
                    _ => n.max(0),
                };
            }
            other => return Err(ProtocolError::ReplyType(other)),
        }
        if array > 0 {
            if owed.len() >= MAX_REPLY_DEPTH {
                return Err(ProtocolError::ReplyDepth);
            }
            owed.push(array);
            continue;
        }
        // one element done: close every array it completes
        loop {
            match owed.last_mut() {
                None => {
                    top_done = true;
                    break;
                }
                Some(n) => {
                    *n -= 1;
                    if *n > 0 {
                        break;
                    }
                    owed.pop();
                }
            }
        }
    }
    Ok(Some(at))
}

/// One value of a complete reply, as [`Values`] reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value<'a> {
    /// `+OK`
    Simple(&'a [u8]),
    /// `-ERR ...`, without the '-'.
    Error(&'a [u8]),
    /// `:42`
    Int(i64),
    /// `$3\r\nfoo`, or `None` for `$-1`.
    Bulk(Option<&'a [u8]>),
    /// `*n`: the next `n` values are its elements; `None` for `*-1`.
    Array(Option<usize>),
    /// RESP3 `_`.
    Null,
    /// RESP3 `>n`: a push (a pub/sub message, a confirmation); the next `n` values.
    Push(usize),
    /// RESP3 `%n` (the next `2n` values), `~n` (`n`), `|n` (`2n`, then the value it describes).
    Aggregate(u8, usize),
    /// RESP3 `#`, `,`, `(`: the line as it is.
    Scalar(u8, &'a [u8]),
}

/// Reads the values of a complete reply (one that [`reply_len`] measured) in order, arrays
/// flattened: an `Array(n)` is followed by its n elements.
pub struct Values<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Values<'a> {
    /// Reads `buf`, which holds one or more complete replies.
    pub fn new(buf: &'a [u8]) -> Self {
        Values { buf, at: 0 }
    }

    /// The offset of the next value.
    pub fn offset(&self) -> usize {
        self.at
    }

    /// Steps over the next value and everything inside it; its bytes.
    pub fn whole(&mut self) -> Option<&'a [u8]> {
        let start = self.at;
        let len = reply_len(&self.buf[start..]).ok()??;
        self.at += len;
        Some(&self.buf[start..start + len])
    }
}

impl<'a> Iterator for Values<'a> {
    type Item = Value<'a>;

    fn next(&mut self) -> Option<Value<'a>> {
        let kind = *self.buf.get(self.at)?;
        let (line, next) = line(&self.buf[self.at..], 1).ok()??;
        self.at += next;
        Some(match kind {
            b'+' => Value::Simple(line),
            b'-' => Value::Error(line),
            b':' => Value::Int(number(line)?),
            b'$' => {
                let n = number(line)?;
                if n < 0 {
                    Value::Bulk(None)
                } else {
                    let start = self.at;
                    self.at += n as usize + 2;
                    Value::Bulk(Some(self.buf.get(start..start + n as usize)?))
                }
            }
            b'*' => {
                let n = number(line)?;
                Value::Array((n >= 0).then_some(n as usize))
            }
            b'_' => Value::Null,
            b'>' => Value::Push(usize::try_from(number(line)?).ok()?),
            b'%' | b'~' | b'|' => Value::Aggregate(kind, usize::try_from(number(line)?).ok()?),
            b'#' | b',' | b'(' => Value::Scalar(kind, line),
            b'!' | b'=' => {
                let n = usize::try_from(number(line)?).ok()?;
                let start = self.at;
                self.at += n + 2;
                let data = self.buf.get(start..start + n)?;
                if kind == b'!' {
                    Value::Error(data)
                } else {
                    Value::Bulk(Some(data))
                }
            }
            _ => return None,
        })
    }
}

/// Appends a command (a multibulk of bulk strings).
pub fn encode_command<'a>(out: &mut BytesMut, args: impl ExactSizeIterator<Item = &'a [u8]>) {
    array_header(out, args.len());
    for a in args {
        bulk(out, Some(a));
    }
}

/// The part of a multi-key command for some of its keys: the command's name, then each key at
/// `positions` with the `step - 1` arguments after it (MSET's value).
pub fn sub_command(cmd: &Command, positions: &[usize], step: usize) -> Bytes {
    let mut frame = BytesMut::new();
    array_header(&mut frame, 1 + positions.len() * step);
    bulk(&mut frame, Some(cmd.arg(0)));
    for &k in positions {
        for i in k..k + step {
            bulk(&mut frame, Some(cmd.arg(i)));
        }
    }
    frame.freeze()
}

/// Appends `*n`.
pub fn array_header(out: &mut BytesMut, n: usize) {
    header(out, b'*', n as i64);
}

/// Appends a bulk string, or `$-1` for `None`.
pub fn bulk(out: &mut BytesMut, data: Option<&[u8]>) {
    match data {
        Some(d) => {
            header(out, b'$', d.len() as i64);
            out.put_slice(d);
            out.put_slice(b"\r\n");
        }
        None => out.put_slice(b"$-1\r\n"),
    }
}

/// Appends `:n`.
pub fn integer(out: &mut BytesMut, n: i64) {
    header(out, b':', n);
}

/// Appends `+text`.
pub fn simple(out: &mut BytesMut, text: &str) {
    out.put_u8(b'+');
    out.put_slice(text.as_bytes());
    out.put_slice(b"\r\n");
}

/// Appends `-text`; line breaks in `text` become spaces, so the reply stays one line.
pub fn error(out: &mut BytesMut, text: &str) {
    out.put_u8(b'-');
    for b in text.bytes() {
        out.put_u8(if b == b'\r' || b == b'\n' { b' ' } else { b });
    }
    out.put_slice(b"\r\n");
}

/// An error reply as one frame.
pub fn error_frame(text: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(text.len() + 3);
    error(&mut out, text);
    out.freeze()
}

fn header(out: &mut BytesMut, kind: u8, n: i64) {
    let mut s = String::with_capacity(24);
    let _ = write!(s, "{n}");
    out.reserve(s.len() + 3);
    out.put_u8(kind);
    out.put_slice(s.as_bytes());
    out.put_slice(b"\r\n");
}

#[cfg(test)]
mod tests;
