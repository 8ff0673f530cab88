//! A second reader of PostgreSQL's frontend/backend protocol 3.0, written only to check
//! `proto.rs`, from PostgreSQL's documentation (chapter "Frontend/Backend Protocol") and
//! sharing no code with it: "Messaging Overview" (a type byte, then an Int32 length that counts
//! itself but not the type byte; the very first message has no type byte), "Start-up", "SSL
//! Session Encryption" and "GSSAPI Session Encryption" (the first packets a client may send),
//! "Canceling Requests in Progress", "Message Data Types" (Int32 in network byte order;
//! String, a NUL-terminated string) and "Message Formats" (StartupMessage, SSLRequest,
//! GSSENCRequest, CancelRequest; and ParameterStatus, ReadyForQuery, BackendKeyData,
//! ErrorResponse and NoticeResponse, the server's messages a pooler looks into).
//!
//! Where the documentation leaves room, this reading decides (and `proto.rs` must agree):
//!
//! - **Judging.** "Both servers and clients typically read an entire message into a buffer
//!   (using the byte count) before attempting to process its contents": a packet's contents
//!   are judged once all of it is there, its length as soon as the length is.
//! - **Lengths** are Int32, read signed: a negative one is refused like any other out of range.
//! - **First packet length.** At least 8 (the length and a code); at most 10,000 bytes, the
//!   length included. The documentation gives no limit; PostgreSQL refuses a startup packet
//!   whose length less its own four bytes is over 10,000 (`MAX_STARTUP_PACKET_LENGTH`): this
//!   reading is 4 bytes stricter, and an honest client's packet is far below either.
//! - **Request codes.** SSLRequest (1234.5679) and GSSENCRequest (1234.5680) are exactly 8
//!   bytes, CancelRequest (1234.5678) exactly 16 (protocol 3.0's 4-byte secret key); any other
//!   length with these codes is refused (PostgreSQL ignores what follows an SSLRequest's code;
//!   a pooler has no use for it). Any other 1234.x is an unknown request: refused.
//! - **Protocol versions.** Only 3.0 (196608). The documentation has a server answer a newer
//!   3.x minor with NegotiateProtocolVersion; the pooler does not, so 3.1 and later are
//!   refused, as are 2.0 and every other major version.
//! - **StartupMessage parameters.** Name, value, name, value, ... each a String, then "a zero
//!   byte is required as a terminator after the last name/value pair": an empty name is the
//!   terminator, and it must be the packet's last byte (nothing may follow it). A name whose
//!   value is missing (the packet ends after the name, or the value has no NUL) is refused,
//!   and so is a packet that ends without the terminator. The documentation asks for "one or
//!   more pairs" with `user` among them; a packet with none, or without `user`, is still read
//!   here: whether a user was given is the login's business (PostgreSQL, too, reads such a
//!   packet and then refuses the login for want of a user name, 28000).
//! - **Text.** Names and values must be UTF-8: the pooler keeps them as text (PostgreSQL
//!   reads bytes and judges their encoding later). Names are kept in order; a name given
//!   twice is kept twice.
//! - **Tagged message length.** At least 4 (the length itself), at most 0x3fff_fffe: the
//!   documentation gives no limit; it is PostgreSQL's own `PQ_LARGE_MESSAGE_LIMIT`
//!   (`MaxAllocSize - 1`), the most any frontend message may announce before the server
//!   closes the connection. The same limit holds for the server's messages.
//! - **Message types** are not judged: any byte frames a message. The server refuses types it
//!   does not know; a pooler forwards what it does not look into. One exception, on what a
//!   client sends: the messages that carry no SQL text and no row data (Sync, Flush, Close,
//!   Describe, Execute, Terminate, CopyDone, CopyFail) may announce at most 10,000 bytes,
//!   PostgreSQL's `PQ_SMALL_MESSAGE_LIMIT` for them.
//! - **After a CancelRequest** nothing more is read: "the server ... closes the connection".
//! - **After SSLRequest or GSSENCRequest** (answered `N` by the pooler) the client sends its
//!   next first packet, in clear.

/// The largest first packet read, in bytes, the length included.
pub const FIRST_PACKET_MOST: u32 = 10_000;
/// The largest length a tagged message may announce.
pub const MESSAGE_MOST: u32 = 0x3fff_fffe;
/// The largest length a client's message without SQL or data may announce.
pub const SMALL_MESSAGE_MOST: u32 = 10_000;

/// The client's messages that carry neither SQL nor data, by their type bytes in the
/// documentation's "Message Formats": Close, Describe, Execute, Flush, Sync, Terminate,
/// CopyDone, CopyFail.
const SMALL_FROM_CLIENT: [u8; 8] = [b'C', b'D', b'E', b'H', b'S', b'X', b'c', b'f'];

const REQUEST_MAJOR: u16 = 1234;
const CANCEL_MINOR: u16 = 5678;
const SSL_MINOR: u16 = 5679;
const GSSENC_MINOR: u16 = 5680;

/// A first packet this reading accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum First {
    /// SSLRequest.
    SslRequest,
    /// GSSENCRequest.
    GssEncRequest,
    /// CancelRequest.
    CancelRequest {
        /// "The process ID of the target backend."
        process_id: u32,
        /// "The secret key for the target backend."
        secret_key: u32,
    },
    /// StartupMessage of protocol 3.0: its parameters in order.
    StartupMessage(Vec<(String, String)>),
}

/// Why this reading refuses bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A length below the least its packet can have (8 for a first packet, 4 for a tagged
    /// message).
    ShortLength(u32),
    /// A length above the limit.
    LongLength(u32),
    /// A negative Int32 length.
    NegativeLength(i32),
    /// A first packet whose code is neither a known request nor protocol 3.0: the code's
    /// halves, as major and minor.
    Code(u16, u16),
    /// A known request code in a packet of the wrong length.
    RequestLength(u16, u16),
    /// StartupMessage parameters that end without the terminating zero byte.
    NoTerminator,
    /// A parameter name without a value.
    NameWithoutValue,
    /// Bytes after the terminating zero byte.
    AfterTerminator,
    /// A parameter name or value that is not UTF-8.
    NotUtf8,
}

/// What reading from the front of some bytes found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reading<T> {
    /// Not enough bytes to decide: more must arrive.
    Partial,
    /// Refused, having looked at `looked` bytes (fewer bytes could not have decided it).
    Refused {
        /// Why.
        why: Refusal,
        /// How many bytes the verdict needed.
        looked: usize,
    },
    /// Accepted: `item`, taking `used` bytes.
    Whole {
        /// What was read.
        item: T,
        /// Its length in bytes.
        used: usize,
    },
}

/// How the reading of a stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Everything whole was read; `held` bytes wait for more.
    Waiting {
        /// Bytes of an incomplete packet or message.
        held: usize,
    },
    /// A packet or message was refused; it starts at `at`.
    Refused {
        /// Why.
        why: Refusal,
        /// Where the refused bytes start in the stream.
        at: usize,
        /// How many of its bytes the verdict needed.
        looked: usize,
    },
    /// A CancelRequest was read: the connection ends.
    Cancel,
}

/// A stream read to its end: the first packets, then the tagged messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stream {
    /// First packets, with the offset just after each.
    pub first: Vec<(First, usize)>,
    /// Tagged messages (type, contents), with the offset just after each.
    pub messages: Vec<(u8, Vec<u8>, usize)>,
    /// Why reading stopped.
    pub stop: Stop,
}

/// Int32 at `at`, in network byte order, as the signed number it is.
fn int32(bytes: &[u8], at: usize) -> i32 {
    let mut n: u32 = 0;
    for b in &bytes[at..at + 4] {
        n = (n << 8) | u32::from(*b);
    }
    n as i32
}

/// Reads the first packet a client sends (or the one after an `N`).
pub fn first_packet(bytes: &[u8]) -> Reading<First> {
    if bytes.len() < 4 {
        return Reading::Partial;
    }
    let length = int32(bytes, 0);
    let refused = |why| Reading::Refused { why, looked: 4 };
    if length < 0 {
        return refused(Refusal::NegativeLength(length));
    }
    let length = length as u32;
    if length < 8 {
        return refused(Refusal::ShortLength(length));
    }
    if length > FIRST_PACKET_MOST {
        return refused(Refusal::LongLength(length));
    }
    let used = length as usize;
    if bytes.len() < used {
        return Reading::Partial;
    }
    let packet = &bytes[..used];
    let code = int32(packet, 4) as u32;
    let (major, minor) = ((code / 65536) as u16, (code % 65536) as u16);
    let judged = |item: Result<First, Refusal>| match item {
        Ok(item) => Reading::Whole { item, used },
        Err(why) => Reading::Refused { why, looked: used },
    };
    if major == REQUEST_MAJOR {
        let wanted = match minor {
            SSL_MINOR | GSSENC_MINOR => 8,
            CANCEL_MINOR => 16,
            _ => return judged(Err(Refusal::Code(major, minor))),
        };
        if used != wanted {
            return judged(Err(Refusal::RequestLength(major, minor)));
        }
        return judged(Ok(match minor {
            SSL_MINOR => First::SslRequest,
            GSSENC_MINOR => First::GssEncRequest,
            _ => First::CancelRequest {
                process_id: int32(packet, 8) as u32,
                secret_key: int32(packet, 12) as u32,
            },
        }));
    }
    if (major, minor) != (3, 0) {
        return judged(Err(Refusal::Code(major, minor)));
    }
    judged(parameters(&packet[8..]).map(First::StartupMessage))
}

/// The name/value pairs of a StartupMessage after its version, up to the terminator.
fn parameters(mut rest: &[u8]) -> Result<Vec<(String, String)>, Refusal> {
    let mut pairs = Vec::new();
    loop {
        let Some((name, after_name)) = string(rest) else {
            return Err(Refusal::NoTerminator);
        };
        if name.is_empty() {
            return if after_name.is_empty() {
                Ok(pairs)
            } else {
                Err(Refusal::AfterTerminator)
            };
        }
        let Some((value, after_value)) = string(after_name) else {
            return Err(Refusal::NameWithoutValue);
        };
        let text = |b: &[u8]| std::str::from_utf8(b).map(str::to_owned);
        match (text(name), text(value)) {
            (Ok(n), Ok(v)) => pairs.push((n, v)),
            _ => return Err(Refusal::NotUtf8),
        }
        rest = after_value;
    }
}

/// A String at the front of `bytes`: its characters (without the NUL) and what follows the
/// NUL; `None` when there is no NUL.
fn string(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == 0 {
            return Some((&bytes[..i], &bytes[i + 1..]));
        }
        i += 1;
    }
    None
}

/// Reads one tagged message: its type and contents (what follows the length).
pub fn tagged(bytes: &[u8]) -> Reading<(u8, Vec<u8>)> {
    tagged_from(bytes, false)
}

/// Reads one tagged message; a client's (`from_client`) without SQL or data is small.
fn tagged_from(bytes: &[u8], from_client: bool) -> Reading<(u8, Vec<u8>)> {
    if bytes.len() < 5 {
        return Reading::Partial;
    }
    let length = int32(bytes, 1);
    let refused = |why| Reading::Refused { why, looked: 5 };
    if length < 0 {
        return refused(Refusal::NegativeLength(length));
    }
    let length = length as u32;
    if length < 4 {
        return refused(Refusal::ShortLength(length));
    }
    let most = match from_client && SMALL_FROM_CLIENT.contains(&bytes[0]) {
        true => SMALL_MESSAGE_MOST,
        false => MESSAGE_MOST,
    };
    if length > most {
        return refused(Refusal::LongLength(length));
    }
    // the type byte is not counted by the length
    let used = 1 + length as usize;
    if bytes.len() < used {
        return Reading::Partial;
    }
    Reading::Whole {
        item: (bytes[0], bytes[5..used].to_vec()),
        used,
    }
}

/// Reads what a client sends on one connection: first packets until a StartupMessage (or a
/// CancelRequest, which ends it), then tagged messages.
pub fn frontend(stream: &[u8]) -> Stream {
    let mut first = Vec::new();
    let mut at = 0;
    loop {
        match first_packet(&stream[at..]) {
            Reading::Partial => {
                return Stream {
                    first,
                    messages: Vec::new(),
                    stop: Stop::Waiting {
                        held: stream.len() - at,
                    },
                }
            }
            Reading::Refused { why, looked } => {
                return Stream {
                    first,
                    messages: Vec::new(),
                    stop: Stop::Refused { why, at, looked },
                }
            }
            Reading::Whole { item, used } => {
                at += used;
                let cancel = matches!(item, First::CancelRequest { .. });
                let startup = matches!(item, First::StartupMessage(_));
                first.push((item, at));
                if cancel {
                    return Stream {
                        first,
                        messages: Vec::new(),
                        stop: Stop::Cancel,
                    };
                }
                if startup {
                    break;
                }
            }
        }
    }
    let (messages, stop) = messages(stream, at, true);
    Stream {
        first,
        messages,
        stop,
    }
}

/// Reads what a server sends after the StartupMessage: tagged messages only.
pub fn backend(stream: &[u8]) -> Stream {
    let (messages, stop) = messages(stream, 0, false);
    Stream {
        first: Vec::new(),
        messages,
        stop,
    }
}

type Messages = Vec<(u8, Vec<u8>, usize)>;

fn messages(stream: &[u8], mut at: usize, from_client: bool) -> (Messages, Stop) {
    let mut out = Vec::new();
    loop {
        match tagged_from(&stream[at..], from_client) {
            Reading::Partial => {
                let held = stream.len() - at;
                return (out, Stop::Waiting { held });
            }
            Reading::Refused { why, looked } => {
                return (out, Stop::Refused { why, at, looked });
            }
            Reading::Whole {
                item: (tag, contents),
                used,
            } => {
                at += used;
                out.push((tag, contents, at));
            }
        }
    }
}

/// A server message the pooler looks into, read by its format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// ParameterStatus: "the name of the run-time parameter being reported" and "the current
    /// value of the parameter".
    ParameterStatus(Vec<u8>, Vec<u8>),
    /// ReadyForQuery: the transaction status indicator, `I`, `T` or `E`.
    ReadyForQuery(u8),
    /// BackendKeyData: process ID and secret key (protocol 3.0's 4 bytes).
    BackendKeyData(u32, u32),
    /// ErrorResponse or NoticeResponse: "one or more identified fields, followed by a zero
    /// byte as a terminator", each a field type byte and a String.
    Fields(Vec<(u8, Vec<u8>)>),
    /// Another type: not looked into.
    Other,
}

/// Why a server message's contents are not its format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

/// Reads the contents of a server message of type `tag` by the documented format; every
/// byte must be accounted for.
pub fn backend_message(tag: u8, contents: &[u8]) -> Result<Backend, Malformed> {
    match tag {
        b'S' => {
            let (name, rest) = string(contents).ok_or(Malformed)?;
            let (value, rest) = string(rest).ok_or(Malformed)?;
            if !rest.is_empty() {
                return Err(Malformed);
            }
            Ok(Backend::ParameterStatus(name.to_vec(), value.to_vec()))
        }
        b'Z' => match contents {
            [status @ (b'I' | b'T' | b'E')] => Ok(Backend::ReadyForQuery(*status)),
            _ => Err(Malformed),
        },
        b'K' => {
            if contents.len() != 8 {
                return Err(Malformed);
            }
            Ok(Backend::BackendKeyData(
                int32(contents, 0) as u32,
                int32(contents, 4) as u32,
            ))
        }
        b'E' | b'N' => {
            let mut fields = Vec::new();
            let mut rest = contents;
            loop {
                let Some((&code, after)) = rest.split_first() else {
                    return Err(Malformed);
                };
                if code == 0 {
                    if !after.is_empty() {
                        return Err(Malformed);
                    }
                    break;
                }
                let (value, after) = string(after).ok_or(Malformed)?;
                fields.push((code, value.to_vec()));
                rest = after;
            }
            // "one or more identified fields"
            if fields.is_empty() {
                return Err(Malformed);
            }
            Ok(Backend::Fields(fields))
        }
        _ => Ok(Backend::Other),
    }
}
