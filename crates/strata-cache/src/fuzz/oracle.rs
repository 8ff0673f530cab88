//! A second RESP parser, written only to check the first: no shared code with `resp.rs`.
//! Commands are read as redis-server reads them (`processInputBuffer`, `processMultibulkBuffer`,
//! `processInlineBuffer`, `sdssplitargs` and `string2ll` in Redis's `networking.c`, `sds.c`,
//! `util.c`), replies as a client library reads them (hiredis's `read.c`). Each has a strict
//! form that refuses whatever the real parser only reads by leniency.

/// Redis's `PROTO_INLINE_MAX_SIZE`: the most it buffers while looking for a line's end.
const INLINE_MAX: usize = 64 * 1024;
/// Redis's default `proto-max-bulk-len`.
const PROTO_MAX_BULK_LEN: i64 = 512 * 1024 * 1024;
/// Redis's `LONG_STR_SIZE`: a number of this many characters or more is refused.
const LONG_STR_SIZE: usize = 21;

/// The arguments of one command, its name first.
pub type Args = Vec<Vec<u8>>;

/// How closely to follow the real parser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Exactly what the real parser does, leniencies included: Redis skips the two bytes after
    /// a bulk and the byte after a header's CR unchecked; hiredis does the same after a bulk,
    /// and ends a line at the first CRLF (then refuses a simple string holding CR or LF).
    Real,
    /// The real parser, but whatever it reads only by leniency is refused: a bulk not followed
    /// by CRLF, a CR not followed by LF, a line Redis stalls on because it holds a NUL byte
    /// (Redis looks for line ends with `strchr`), a bare CR or LF inside a reply line.
    Strict,
}

/// Where reading a command stream stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// Every byte was read.
    End,
    /// The command starting at this offset is not all there (or, for a line holding a NUL
    /// byte, never will be: Redis waits until it has buffered too much, then refuses).
    Waiting(usize),
    /// Redis answers `-ERR Protocol error` and closes the connection: why, and the offset of
    /// the command it could not read.
    Refused(&'static str, usize),
}

/// What Redis reads from a byte stream: its commands in order, each with the offset just after
/// it, and where it stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commands {
    /// The commands Redis would execute; empty commands (`*0`, blank lines) are not in it.
    pub commands: Vec<(Args, usize)>,
    /// Why reading stopped.
    pub stop: Stop,
}

/// Reads `wire` as a redis-server reads a client connection's bytes.
pub fn commands(wire: &[u8], mode: Mode) -> Commands {
    let mut out = Vec::new();
    let mut at = 0;
    let stop = loop {
        if at == wire.len() {
            break Stop::End;
        }
        // processInputBuffer: '*' starts a multibulk, anything else an inline command
        let step = if wire[at] == b'*' {
            multibulk(wire, at, mode)
        } else {
            inline(wire, at, mode)
        };
        match step {
            Step::Command(args, next) => {
                out.push((args, next));
                at = next;
            }
            Step::Empty(next) => at = next,
            Step::Waiting => break Stop::Waiting(at),
            Step::Refused(why) => break Stop::Refused(why, at),
        }
    };
    Commands {
        commands: out,
        stop,
    }
}

enum Step {
    Command(Args, usize),
    Empty(usize),
    Waiting,
    Refused(&'static str),
}

/// `strchr(querybuf + from, c)`: the query buffer is NUL-terminated and searched as a C
/// string, so a NUL byte ends the search as the end of the buffer does. The flag says a NUL
/// byte stopped it.
fn strchr(wire: &[u8], from: usize, c: u8) -> (Option<usize>, bool) {
    for (i, &b) in wire[from..].iter().enumerate() {
        if b == c {
            return (Some(from + i), false);
        }
        if b == 0 {
            return (None, true);
        }
    }
    (None, false)
}

/// The first CR of a header line from `from`, as `processMultibulkBuffer` finds it; `Err` is
/// the step to take when there is none yet.
fn header_cr(wire: &[u8], from: usize, mode: Mode, too_big: &'static str) -> Result<usize, Step> {
    let (cr, nul) = strchr(wire, from, b'\r');
    let Some(cr) = cr else {
        if wire.len() - from > INLINE_MAX {
            return Err(Step::Refused(too_big));
        }
        if nul && mode == Mode::Strict {
            return Err(Step::Refused("NUL byte before the header's end"));
        }
        return Err(Step::Waiting);
    };
    // "Buffer should also contain \n": one more byte, whatever it is
    if cr + 2 > wire.len() {
        return Err(Step::Waiting);
    }
    if mode == Mode::Strict && wire[cr + 1] != b'\n' {
        return Err(Step::Refused("CR not followed by LF"));
    }
    Ok(cr)
}

fn multibulk(wire: &[u8], start: usize, mode: Mode) -> Step {
    let cr = match header_cr(wire, start, mode, "too big mbulk count string") {
        Ok(cr) => cr,
        Err(step) => return step,
    };
    let count = match string2ll(&wire[start + 1..cr]) {
        Some(n) if n <= i64::from(i32::MAX) => n,
        _ => return Step::Refused("invalid multibulk length"),
    };
    let mut at = cr + 2;
    if count <= 0 {
        return Step::Empty(at);
    }
    let mut args = Vec::new();
    for _ in 0..count {
        let cr = match header_cr(wire, at, mode, "too big bulk count string") {
            Ok(cr) => cr,
            Err(step) => return step,
        };
        if wire[at] != b'$' {
            return Step::Refused("expected '$'");
        }
        let len = match string2ll(&wire[at + 1..cr]) {
            Some(n) if (0..=PROTO_MAX_BULK_LEN).contains(&n) => n as usize,
            _ => return Step::Refused("invalid bulk length"),
        };
        at = cr + 2;
        if wire.len() - at < len + 2 {
            return Step::Waiting;
        }
        if mode == Mode::Strict && &wire[at + len..at + len + 2] != b"\r\n" {
            return Step::Refused("bulk not followed by CRLF");
        }
        args.push(wire[at..at + len].to_vec());
        // the two bytes after the data are skipped, not checked
        at += len + 2;
    }
    Step::Command(args, at)
}

fn inline(wire: &[u8], start: usize, mode: Mode) -> Step {
    let (lf, nul) = strchr(wire, start, b'\n');
    let Some(lf) = lf else {
        if wire.len() - start > INLINE_MAX {
            return Step::Refused("too big inline request");
        }
        if nul && mode == Mode::Strict {
            return Step::Refused("NUL byte before the line's end");
        }
        return Step::Waiting;
    };
    let end = if lf > start && wire[lf - 1] == b'\r' {
        lf - 1
    } else {
        lf
    };
    match split_args(&wire[start..end]) {
        None => Step::Refused("unbalanced quotes in request"),
        Some(args) if args.is_empty() => Step::Empty(lf + 1),
        Some(args) => Step::Command(args, lf + 1),
    }
}

/// C's `isspace` in the "C" locale (Redis never sets `LC_CTYPE`).
fn c_isspace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// `sdssplitargs`: blanks (`isspace`) between arguments; inside an unquoted argument only
/// space, `\n`, `\r`, `\t` end it; `"..."` with `\xHH` and backslash escapes; `'...'` with
/// `\'`; a closing quote must be followed by a blank or the end. `None`: unbalanced quotes.
/// `line` holds no NUL byte (the line's end was found by `strchr`), so its end is the C
/// string's terminator.
pub fn split_args(line: &[u8]) -> Option<Args> {
    let at = |i: usize| line.get(i).copied().unwrap_or(0);
    let mut p = 0;
    let mut out = Vec::new();
    loop {
        while at(p) != 0 && c_isspace(at(p)) {
            p += 1;
        }
        if at(p) == 0 {
            return Some(out);
        }
        let mut current = Vec::new();
        let (mut in_double, mut in_single, mut done) = (false, false, false);
        while !done {
            let c = at(p);
            if in_double {
                if let (b'\\', b'x', Some(h), Some(l)) =
                    (c, at(p + 1), hex(at(p + 2)), hex(at(p + 3)))
                {
                    current.push(h * 16 + l);
                    p += 3;
                } else if c == b'\\' && at(p + 1) != 0 {
                    p += 1;
                    current.push(match at(p) {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 0x08,
                        b'a' => 0x07,
                        other => other,
                    });
                } else if c == b'"' {
                    if at(p + 1) != 0 && !c_isspace(at(p + 1)) {
                        return None;
                    }
                    done = true;
                } else if c == 0 {
                    return None;
                } else {
                    current.push(c);
                }
            } else if in_single {
                if c == b'\\' && at(p + 1) == b'\'' {
                    p += 1;
                    current.push(b'\'');
                } else if c == b'\'' {
                    if at(p + 1) != 0 && !c_isspace(at(p + 1)) {
                        return None;
                    }
                    done = true;
                } else if c == 0 {
                    return None;
                } else {
                    current.push(c);
                }
            } else {
                match c {
                    b' ' | b'\n' | b'\r' | b'\t' | 0 => done = true,
                    b'"' => in_double = true,
                    b'\'' => in_single = true,
                    _ => current.push(c),
                }
            }
            if at(p) != 0 {
                p += 1;
            }
        }
        out.push(current);
    }
}

/// `string2ll` (Redis's `util.c`, hiredis's `read.c` alike): an optional '-', then "0" alone
/// or a digit 1-9 and more digits, in range of an i64; nothing else (no '+', no spaces, no
/// leading zeros, no "-0").
pub fn string2ll(s: &[u8]) -> Option<i64> {
    if s.is_empty() || s.len() >= LONG_STR_SIZE {
        return None;
    }
    if s == b"0" {
        return Some(0);
    }
    let (negative, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    match digits.first() {
        Some(b'1'..=b'9') => {}
        _ => return None,
    }
    let mut v: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    if negative {
        if v > i64::MIN.unsigned_abs() {
            return None;
        }
        Some(0i64.wrapping_sub_unsigned(v))
    } else {
        i64::try_from(v).ok()
    }
}

/// One value of a reply, aggregates flattened: an aggregate is followed by its elements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// `+...`
    Simple(Vec<u8>),
    /// `-...`, without the '-'.
    Error(Vec<u8>),
    /// `:n`
    Int(i64),
    /// `$n` and its data, `None` for `$-1`.
    Bulk(Option<Vec<u8>>),
    /// `*n`, `None` for `*-1`.
    Array(Option<usize>),
    /// RESP3 `_`, and (hiredis) any other type's `-1`.
    Null,
    /// RESP3 `#t`, `#f`.
    Bool(bool),
    /// RESP3 `,` and its text.
    Double(Vec<u8>),
    /// RESP3 `(` and its digits.
    BigNumber(Vec<u8>),
    /// RESP3 `!n` and its data.
    BlobError(Vec<u8>),
    /// RESP3 `=n` and its data, the format and ':' included.
    Verbatim(Vec<u8>),
    /// RESP3 `%n`: n entries of two values follow.
    Map(usize),
    /// RESP3 `~n`.
    Set(usize),
    /// RESP3 `>n`.
    Push(usize),
    /// RESP3 `|n`: n entries of two values follow, then the value they describe.
    Attribute(usize),
}

/// One reply at the front of `wire`, as a client reads it: `Ok(Some((length, values)))`,
/// `Ok(None)` when it is not all there, `Err` when the client library refuses it. RESP2 and
/// RESP3 (a client that said `HELLO 3`), read by the RESP3 specification; [`Mode::Real`] is
/// hiredis, which also knows no blob error (`!`), reads `-1` of any type as null, and checks a
/// double and a verbatim string's format. One difference is not modelled: hiredis hands an
/// attribute back as a reply of its own, where the specification (and `resp.rs`) make it
/// part of the reply it describes.
pub fn reply(wire: &[u8], mode: Mode) -> Result<Option<(usize, Vec<Node>)>, &'static str> {
    let strict = mode == Mode::Strict;
    let mut at = 0;
    let mut nodes = Vec::new();
    // values still owed by each open aggregate
    let mut owed: Vec<usize> = Vec::new();
    loop {
        let Some(&kind) = wire.get(at) else {
            return Ok(None);
        };
        // the type byte is judged before its line is looked for
        let known = match kind {
            b'+' | b'-' | b':' | b'$' | b'*' => true,
            b'_' | b'#' | b',' | b'(' | b'=' | b'%' | b'~' | b'>' | b'|' => true,
            b'!' => strict,
            _ => false,
        };
        if !known {
            return Err("protocol error, got an unknown type byte");
        }
        let Some((line, next)) = reply_line(wire, at + 1, mode)? else {
            return Ok(None);
        };
        at = next;
        let mut open = 0;
        match kind {
            // hiredis refuses a CR or LF inside a simple string or error, found or not by
            // its search for the first CRLF
            b'+' | b'-' if line.iter().any(|&b| b == b'\r' || b == b'\n') => {
                return Err("bad simple string value")
            }
            b'+' => nodes.push(Node::Simple(line.to_vec())),
            b'-' => nodes.push(Node::Error(line.to_vec())),
            b':' => nodes.push(Node::Int(string2ll(line).ok_or("bad integer value")?)),
            b'_' if line.is_empty() => nodes.push(Node::Null),
            b'_' => return Err("bad nil value"),
            b'#' => match line {
                b"t" => nodes.push(Node::Bool(true)),
                b"f" => nodes.push(Node::Bool(false)),
                b"T" | b"F" if !strict => nodes.push(Node::Bool(line == b"T")),
                _ => return Err("bad bool value"),
            },
            b',' if double(line, strict) => nodes.push(Node::Double(line.to_vec())),
            b',' => return Err("bad double value"),
            b'(' => {
                let digits = line.strip_prefix(b"-").unwrap_or(line);
                // hiredis takes no digits at all
                if (strict && digits.is_empty()) || !digits.iter().all(u8::is_ascii_digit) {
                    return Err("bad bignum value");
                }
                nodes.push(Node::BigNumber(line.to_vec()));
            }
            b'$' | b'!' | b'=' => {
                let n = string2ll(line).ok_or("bad bulk string length")?;
                let null = if kind == b'$' || !strict { -1 } else { 0 };
                if n < null {
                    return Err("bulk string length out of range");
                }
                if n == -1 {
                    nodes.push(if kind == b'$' {
                        Node::Bulk(None)
                    } else {
                        Node::Null
                    });
                } else {
                    let n = usize::try_from(n).map_err(|_| "bulk string length out of range")?;
                    let Some(end) = at.checked_add(n).filter(|e| e + 2 <= wire.len()) else {
                        return Ok(None);
                    };
                    if strict && &wire[end..end + 2] != b"\r\n" {
                        return Err("bulk not followed by CRLF");
                    }
                    let data = wire[at..end].to_vec();
                    if kind == b'=' && data.get(3) != Some(&b':') {
                        return Err("verbatim string without its format");
                    }
                    nodes.push(match kind {
                        b'$' => Node::Bulk(Some(data)),
                        b'!' => Node::BlobError(data),
                        _ => Node::Verbatim(data),
                    });
                    at = end + 2;
                }
            }
            _ => {
                // '*', '%', '~', '>', '|'
                let n = string2ll(line).ok_or("bad multi-bulk length")?;
                let null = if kind == b'*' || !strict { -1 } else { 0 };
                if n < null {
                    return Err("multi-bulk length out of range");
                }
                if n == -1 {
                    nodes.push(if kind == b'*' {
                        Node::Array(None)
                    } else {
                        Node::Null
                    });
                } else {
                    let n = usize::try_from(n).map_err(|_| "multi-bulk length out of range")?;
                    // hiredis refuses more than LLONG_MAX / 2 entries; the specification
                    // sets no bound (n * 2 + 1 fits a u64 for any n of an i64)
                    let pairs = || match n.checked_mul(2) {
                        Some(v) if strict || n <= (i64::MAX / 2) as usize => Ok(v),
                        _ => Err("multi-bulk length out of range"),
                    };
                    (open, nodes) = match kind {
                        b'*' => (n, push(nodes, Node::Array(Some(n)))),
                        b'%' => (pairs()?, push(nodes, Node::Map(n))),
                        b'~' => (n, push(nodes, Node::Set(n))),
                        b'>' => (n, push(nodes, Node::Push(n))),
                        _ => (pairs()? + 1, push(nodes, Node::Attribute(n))),
                    };
                }
            }
        }
        if open > 0 {
            owed.push(open);
            continue;
        }
        // a value done: it completes every aggregate whose last value it was
        loop {
            match owed.last_mut() {
                None => return Ok(Some((at, nodes))),
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
}

fn push(mut nodes: Vec<Node>, node: Node) -> Vec<Node> {
    nodes.push(node);
    nodes
}

/// A RESP3 double: strictly `[-+]digits[.digits][e[-+]digits]`, `inf`, `-inf` or `nan`;
/// as hiredis reads one, whatever `strtod` reads whole to a finite value, or those three
/// (and `-nan`) in any case.
fn double(line: &[u8], strict: bool) -> bool {
    let Ok(text) = std::str::from_utf8(line) else {
        return false;
    };
    if !strict {
        let lower = text.to_ascii_lowercase();
        return matches!(lower.as_str(), "inf" | "-inf" | "nan" | "-nan")
            || (text.parse::<f64>().is_ok_and(f64::is_finite)
                && !text
                    .bytes()
                    .any(|b| b.is_ascii_alphabetic() && b != b'e' && b != b'E'));
    }
    if matches!(text, "inf" | "-inf" | "nan") {
        return true;
    }
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e.strip_prefix(['-', '+']).unwrap_or(e))),
        None => (unsigned, None),
    };
    let mantissa_ok = match mantissa.split_once('.') {
        Some((i, f)) => digits(i) && digits(f),
        None => digits(mantissa),
    };
    mantissa_ok && exponent.is_none_or(digits)
}

/// A reply line from `from`: its content and the offset after its CRLF. hiredis ends it at
/// the first CR that is followed by LF; strictly, a line holds neither CR nor LF.
fn reply_line(
    wire: &[u8],
    from: usize,
    mode: Mode,
) -> Result<Option<(&[u8], usize)>, &'static str> {
    let rest = wire.get(from..).unwrap_or_default();
    match mode {
        Mode::Real => Ok(rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .map(|i| (&rest[..i], from + i + 2))),
        Mode::Strict => match rest.iter().position(|&b| b == b'\r' || b == b'\n') {
            None => Ok(None),
            Some(i) if rest[i] == b'\n' => Err("bare LF in a line"),
            Some(i) => match rest.get(i + 1) {
                None => Ok(None),
                Some(b'\n') => Ok(Some((&rest[..i], from + i + 2))),
                Some(_) => Err("bare CR in a line"),
            },
        },
    }
}
