//! memcached's text protocol as bytes: a client's commands in, a server's replies measured to
//! their end. "Incomplete" is `Ok(None)`, never an error.
//!
//! Strict where memcached is lenient, for the same reason as the RESP codec: the proxy forwards
//! what it parsed, so anything a server could read differently is refused. A key is 1 to 250
//! bytes with no control characters or spaces; a storage command's data must be followed by
//! CRLF; numbers are digits only. A line goes out with its words one space apart, whatever
//! padding it came with.

use bytes::{BufMut, Bytes, BytesMut};

/// memcached's own limit on a key.
pub const MAX_KEY: usize = 250;
/// The longest command line (memcached refuses lines over 2048 bytes, except multi-key gets,
/// which it reads in pieces; this allows gets of a few dozen long keys).
pub const MAX_LINE: usize = 16 * 1024;

/// Why a client's bytes are not a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum McError {
    /// The line is not a command memcached knows: the client gets `ERROR` and carries on.
    #[error("unknown command")]
    Unknown,
    /// The command's arguments are wrong: `CLIENT_ERROR bad command line format`; the client
    /// carries on (the line has been consumed).
    #[error("bad command line format")]
    Format,
    /// A storage command's data is not followed by CRLF, or is over the limit: the stream
    /// can't be re-synchronised, so the client is closed after `CLIENT_ERROR`.
    #[error("bad data chunk")]
    DataChunk,
    /// A line over [`MAX_LINE`] without its end: closed after `CLIENT_ERROR`.
    #[error("line too long")]
    LineTooLong,
    /// A server's reply is not one the text protocol has.
    #[error("invalid reply")]
    Reply,
}

impl McError {
    /// Whether the stream can go on after this error (the bad line was consumed whole).
    pub fn recoverable(&self) -> bool {
        matches!(self, McError::Unknown | McError::Format)
    }
}

/// What a command does, as the proxy routes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// get / gets: values of one or more keys.
    Get,
    /// set, add, replace, append, prepend, cas: one key and a data block.
    Store,
    /// delete, incr, decr, touch: one key.
    Key,
    /// version: answered by the proxy.
    Version,
    /// quit: the connection closes.
    Quit,
}

/// One command from a client.
#[derive(Debug, Clone)]
pub struct McCommand {
    /// What it does.
    pub kind: Kind,
    /// The command's name as sent ("get", "set", ...).
    pub name: Bytes,
    /// Its keys: one, or several for a get.
    pub keys: Vec<Bytes>,
    /// The command as the server is sent it: the client's bytes, without `noreply` (the proxy
    /// always takes the server's reply, so replies stay in step with commands, and drops it
    /// when the client asked for none).
    pub frame: Bytes,
    /// The client asked for no reply.
    pub noreply: bool,
}

/// Splits the next command off `buf`: `Ok(None)` when more bytes are needed. After a
/// recoverable error the bad line has been consumed.
pub fn take_command(buf: &mut BytesMut, max_value: u64) -> Result<Option<McCommand>, McError> {
    let Some(lf) = buf.iter().take(MAX_LINE + 2).position(|&b| b == b'\n') else {
        return if buf.len() > MAX_LINE {
            Err(McError::LineTooLong)
        } else {
            Ok(None)
        };
    };
    if lf == 0 || buf[lf - 1] != b'\r' {
        // a storage command's data block follows: where it ends can't be trusted now
        let storage = [
            &b"set "[..],
            b"add ",
            b"replace ",
            b"append ",
            b"prepend ",
            b"cas ",
        ];
        if storage.iter().any(|v| buf.starts_with(v)) {
            return Err(McError::DataChunk);
        }
        buf.advance_to(lf + 1);
        return Err(McError::Format);
    }
    let line = buf[..lf - 1].to_vec();
    let words: Vec<&[u8]> = line
        .split(|&b| b == b' ')
        .filter(|w| !w.is_empty())
        .collect();
    let Some(&name) = words.first() else {
        buf.advance_to(lf + 1);
        return Err(McError::Unknown);
    };
    let kind = match name {
        b"get" | b"gets" => Kind::Get,
        b"set" | b"add" | b"replace" | b"append" | b"prepend" | b"cas" => Kind::Store,
        b"delete" | b"incr" | b"decr" | b"touch" => Kind::Key,
        b"version" => Kind::Version,
        b"quit" => Kind::Quit,
        _ => {
            buf.advance_to(lf + 1);
            return Err(McError::Unknown);
        }
    };
    let args = &words[1..];
    let noreply = args.last() == Some(&&b"noreply"[..]) && kind != Kind::Get;
    let args = if noreply {
        &args[..args.len() - 1]
    } else {
        args
    };
    let fits = match (kind, name) {
        (Kind::Get, _) => !args.is_empty(),
        (Kind::Store, b"cas") => args.len() == 5,
        (Kind::Store, _) => args.len() == 4,
        (Kind::Key, b"delete") => args.len() == 1,
        (Kind::Key, _) => args.len() == 2,
        _ => args.is_empty(),
    };
    let keys: &[&[u8]] = match kind {
        Kind::Get => args,
        Kind::Store | Kind::Key if !args.is_empty() => &args[..1],
        _ => &[],
    };
    if kind == Kind::Store && !(fits && numbers_ok(kind, name, args)) {
        // where its data block ends can't be known: the stream is lost
        return Err(McError::DataChunk);
    }
    if !fits || !keys.iter().all(|k| valid_key(k)) || !numbers_ok(kind, name, args) {
        buf.advance_to(lf + 1);
        return Err(McError::Format);
    }
    let mut end = lf + 1;
    if kind == Kind::Store {
        let Some(len) = number(args[3]).filter(|n| *n <= max_value) else {
            return Err(McError::DataChunk);
        };
        let data_end = end + len as usize;
        if buf.len() < data_end + 2 {
            return Ok(None);
        }
        if &buf[data_end..data_end + 2] != b"\r\n" {
            return Err(McError::DataChunk);
        }
        end = data_end + 2;
    }
    let keys: Vec<Bytes> = keys.iter().map(|k| Bytes::copy_from_slice(k)).collect();
    let name = Bytes::copy_from_slice(name);
    let whole = buf.split_to(end).freeze();
    // a line padded with spaces (before, after or between its words) goes out with single
    // spaces: what a server reads is what was parsed, whatever its tokenizer does
    let padded =
        line.first() == Some(&b' ') || line.ends_with(b" ") || line.windows(2).any(|w| w == b"  ");
    let frame = if noreply || padded {
        // the words parsed (without noreply) one space apart, then the data block as it came
        let mut f = BytesMut::with_capacity(whole.len());
        let mut first = true;
        for w in std::iter::once(&name[..]).chain(args.iter().copied()) {
            if !first {
                f.put_u8(b' ');
            }
            f.put_slice(w);
            first = false;
        }
        f.put_slice(b"\r\n");
        f.put_slice(&whole[lf + 1..]);
        f.freeze()
    } else {
        whole
    };
    Ok(Some(McCommand {
        kind,
        name,
        keys,
        frame,
        noreply,
    }))
}

trait Advance {
    fn advance_to(&mut self, n: usize);
}

impl Advance for BytesMut {
    fn advance_to(&mut self, n: usize) {
        let _ = self.split_to(n.min(self.len()));
    }
}

fn valid_key(k: &[u8]) -> bool {
    !k.is_empty() && k.len() <= MAX_KEY && k.iter().all(|&b| b > b' ' && b != 0x7f)
}

/// The numeric arguments: flags (32-bit), exptime (may be negative), bytes, cas unique, and
/// incr/decr's value (64-bit unsigned).
fn numbers_ok(kind: Kind, name: &[u8], args: &[&[u8]]) -> bool {
    match kind {
        Kind::Store => {
            number(args[1]).is_some_and(|f| f <= u32::MAX as u64)
                && signed(args[2])
                && number(args[3]).is_some()
                && (name != b"cas" || number(args[4]).is_some())
        }
        Kind::Key => match name {
            b"incr" | b"decr" => number(args[1]).is_some(),
            b"touch" => signed(args[1]),
            _ => true,
        },
        _ => true,
    }
}

fn number(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse().ok()
}

fn signed(s: &[u8]) -> bool {
    number(s.strip_prefix(b"-").unwrap_or(s)).is_some()
}

/// The length of the complete reply at the front of `buf`: `VALUE` blocks up to `END`, or one
/// line (STORED, DELETED, a number, an error, ...).
pub fn reply_len(buf: &[u8]) -> Result<Option<usize>, McError> {
    reply_len_from(buf, &mut 0)
}

/// [`reply_len`] from `*from`, where a scan of `buf` with fewer bytes stopped (the start of
/// the first value block not whole then); leaves `*from` where it stops, and 0 again once
/// the reply is whole, so a large multi-get costs its length once, not once per read.
pub fn reply_len_from(buf: &[u8], from: &mut usize) -> Result<Option<usize>, McError> {
    let whole = scan_reply(buf, from);
    if !matches!(whole, Ok(None)) {
        *from = 0;
    }
    whole
}

fn scan_reply(buf: &[u8], from: &mut usize) -> Result<Option<usize>, McError> {
    let mut at = *from;
    loop {
        *from = at;
        let Some(lf) = buf[at..].iter().take(MAX_LINE).position(|&b| b == b'\n') else {
            return if buf.len() - at >= MAX_LINE {
                Err(McError::Reply)
            } else {
                Ok(None)
            };
        };
        let line = &buf[at..at + lf + 1];
        if lf == 0 || line[lf - 1] != b'\r' {
            return Err(McError::Reply);
        }
        if let Some(rest) = line.strip_prefix(b"VALUE ") {
            // VALUE <key> <flags> <bytes> [<cas unique>]
            let words: Vec<&[u8]> = rest[..rest.len() - 2].split(|&b| b == b' ').collect();
            let len = words.get(2).and_then(|w| number(w)).ok_or(McError::Reply)? as usize;
            let data = at + lf + 1;
            let Some(end) = data.checked_add(len).and_then(|e| e.checked_add(2)) else {
                return Err(McError::Reply);
            };
            if buf.len() < end {
                return Ok(None);
            }
            if &buf[data + len..data + len + 2] != b"\r\n" {
                return Err(McError::Reply);
            }
            at = data + len + 2;
            continue;
        }
        if at == 0 {
            if let Some(rest) = line.strip_prefix(b"VA ") {
                // a meta get's value (read-through asks for one): VA <bytes> <flags>*, the
                // data, and nothing after it
                let size = rest[..rest.len() - 2].split(|&b| b == b' ').next();
                let len = size.and_then(number).ok_or(McError::Reply)? as usize;
                let data = lf + 1;
                let Some(end) = data.checked_add(len).and_then(|e| e.checked_add(2)) else {
                    return Err(McError::Reply);
                };
                if buf.len() < end {
                    return Ok(None);
                }
                if &buf[data + len..end] != b"\r\n" {
                    return Err(McError::Reply);
                }
                return Ok(Some(end));
            }
        }
        if at > 0 && line != b"END\r\n" {
            // only END may follow VALUE blocks
            return Err(McError::Reply);
        }
        return Ok(Some(at + lf + 1));
    }
}

/// The `VALUE` blocks of a complete get reply, each as (key, whole block bytes); `None` when
/// the reply is not a get's (an error line).
pub fn values(reply: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        let lf = reply[at..].iter().position(|&b| b == b'\n')? + at;
        let line = &reply[at..=lf];
        if line == b"END\r\n" {
            return Some(out);
        }
        let rest = line.strip_prefix(b"VALUE ")?;
        let words: Vec<&[u8]> = rest[..rest.len() - 2].split(|&b| b == b' ').collect();
        let len = usize::try_from(number(words.get(2)?)?).ok()?;
        let end = (lf + 1).checked_add(len)?.checked_add(2)?;
        out.push((*words.first()?, reply.get(at..end)?));
        at = end;
    }
}

/// Appends a get's key list for `keys`, as one command to one server.
pub fn encode_get(out: &mut BytesMut, name: &[u8], keys: impl Iterator<Item = Bytes>) {
    out.put_slice(name);
    for k in keys {
        out.put_u8(b' ');
        out.put_slice(&k);
    }
    out.put_slice(b"\r\n");
}

#[cfg(test)]
mod tests;
