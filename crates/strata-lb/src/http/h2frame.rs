//! HTTP/2 frames (RFC 9113 §4 and §6), read and written as bytes: the framing layer of Strata's
//! own HTTP/2, under the connection's state (streams, flow control) and beside HPACK
//! (`hpack`). Reading checks everything a single frame can get wrong, and says whether the
//! fault ends the connection or only its stream; what needs the connection's state (a stream
//! that should be idle, a CONTINUATION expected, a window overflow) is the connection's to
//! check.

use thiserror::Error;

/// What a client sends before its first frame (RFC 9113 §3.4).
pub(crate) const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// The frame header's size.
pub(crate) const HEADER: usize = 9;
/// SETTINGS_MAX_FRAME_SIZE's initial value, and the least it may be set to.
pub(crate) const MIN_MAX_FRAME: u32 = 16_384;
/// The largest SETTINGS_MAX_FRAME_SIZE.
pub(crate) const MAX_MAX_FRAME: u32 = (1 << 24) - 1;
/// The largest flow-control window.
pub(crate) const MAX_WINDOW: u32 = (1 << 31) - 1;

/// Frame types (RFC 9113 §6).
mod kind {
    pub(super) const DATA: u8 = 0x0;
    pub(super) const HEADERS: u8 = 0x1;
    pub(super) const PRIORITY: u8 = 0x2;
    pub(super) const RST_STREAM: u8 = 0x3;
    pub(super) const SETTINGS: u8 = 0x4;
    pub(super) const PUSH_PROMISE: u8 = 0x5;
    pub(super) const PING: u8 = 0x6;
    pub(super) const GOAWAY: u8 = 0x7;
    pub(super) const WINDOW_UPDATE: u8 = 0x8;
    pub(super) const CONTINUATION: u8 = 0x9;
}

/// Frame flags.
mod flag {
    pub(super) const END_STREAM: u8 = 0x1;
    pub(super) const ACK: u8 = 0x1;
    pub(super) const END_HEADERS: u8 = 0x4;
    pub(super) const PADDED: u8 = 0x8;
    pub(super) const PRIORITY: u8 = 0x20;
}

/// Error codes (RFC 9113 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Code(pub(crate) u32);

impl Code {
    pub(crate) const NO_ERROR: Code = Code(0x0);
    pub(crate) const PROTOCOL_ERROR: Code = Code(0x1);
    pub(crate) const INTERNAL_ERROR: Code = Code(0x2);
    pub(crate) const FLOW_CONTROL_ERROR: Code = Code(0x3);
    pub(crate) const STREAM_CLOSED: Code = Code(0x5);
    pub(crate) const FRAME_SIZE_ERROR: Code = Code(0x6);
    pub(crate) const REFUSED_STREAM: Code = Code(0x7);
    pub(crate) const CANCEL: Code = Code(0x8);
    pub(crate) const COMPRESSION_ERROR: Code = Code(0x9);
    pub(crate) const ENHANCE_YOUR_CALM: Code = Code(0xb);
}

/// A frame that can't be taken, and what it ends.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub(crate) enum FrameError {
    /// The connection goes: GOAWAY with this code.
    #[error("connection error {0:?}: {1}")]
    Connection(Code, &'static str),
    /// Only the stream goes: RST_STREAM with this code; the frame's bytes are consumed.
    #[error("stream {0} error {1:?}: {2}")]
    Stream(u32, Code, &'static str),
}

/// A stream's priority as HEADERS and PRIORITY frames carry it (RFC 9113 §5.3.2 deprecates
/// acting on it; it is read to be checked and skipped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Priority {
    pub(crate) exclusive: bool,
    pub(crate) depends_on: u32,
    pub(crate) weight: u8,
}

/// One SETTINGS parameter (RFC 9113 §6.5.2), its value checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Setting {
    HeaderTableSize(u32),
    EnablePush(bool),
    MaxConcurrentStreams(u32),
    InitialWindowSize(u32),
    MaxFrameSize(u32),
    MaxHeaderListSize(u32),
    EnableConnectProtocol(bool),
    /// An identifier this endpoint does not know: ignored (§6.5.2).
    Unknown(u16, u32),
}

/// A frame read off the wire; its payloads borrow the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Frame<'a> {
    Data {
        stream: u32,
        end_stream: bool,
        data: &'a [u8],
        /// The whole payload's length, padding included: what flow control counts.
        flow: u32,
    },
    Headers {
        stream: u32,
        end_stream: bool,
        end_headers: bool,
        priority: Option<Priority>,
        block: &'a [u8],
    },
    Priority {
        stream: u32,
        priority: Priority,
    },
    RstStream {
        stream: u32,
        code: Code,
    },
    Settings {
        ack: bool,
        /// Six bytes per parameter; [`settings`] reads them.
        params: &'a [u8],
    },
    Ping {
        ack: bool,
        data: [u8; 8],
    },
    GoAway {
        last_stream: u32,
        code: Code,
        debug: &'a [u8],
    },
    WindowUpdate {
        stream: u32,
        increment: u32,
    },
    Continuation {
        stream: u32,
        end_headers: bool,
        block: &'a [u8],
    },
    /// A type this endpoint does not know: ignored (§5.5), unless it sits inside a header
    /// block, which the connection refuses.
    Unknown {
        kind: u8,
        stream: u32,
    },
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// A stream identifier, its reserved bit dropped (§4.1).
fn stream_id(b: &[u8], at: usize) -> u32 {
    u32_at(b, at) & MAX_WINDOW
}

/// Takes one frame off the front of `buf`, a server's view: no frame may be longer than
/// `max_frame` (the SETTINGS_MAX_FRAME_SIZE this side advertised). `Ok(None)` until a whole
/// frame is in; otherwise the frame and the bytes it took. A [`FrameError::Stream`] also took
/// the frame's bytes: the caller skips `HEADER + length` (see [`frame_len`]).
pub(crate) fn read(buf: &[u8], max_frame: u32) -> Result<Option<(Frame<'_>, usize)>, FrameError> {
    let Some(len) = frame_len(buf, max_frame)? else {
        return Ok(None);
    };
    let total = HEADER + len;
    if buf.len() < total {
        return Ok(None);
    }
    let (kind, flags, stream) = (buf[3], buf[4], stream_id(buf, 5));
    let p = &buf[HEADER..total];
    let conn = |why| Err(FrameError::Connection(Code::PROTOCOL_ERROR, why));
    let size = |why| Err(FrameError::Connection(Code::FRAME_SIZE_ERROR, why));
    let frame = match kind {
        kind::DATA => {
            if stream == 0 {
                return conn("DATA on stream 0");
            }
            let data = unpad(p, flags)?;
            Frame::Data {
                stream,
                end_stream: flags & flag::END_STREAM != 0,
                data,
                flow: len as u32,
            }
        }
        kind::HEADERS => {
            if stream == 0 {
                return conn("HEADERS on stream 0");
            }
            let mut block = unpad(p, flags)?;
            let mut priority = None;
            if flags & flag::PRIORITY != 0 {
                if block.len() < 5 {
                    return size("HEADERS too short for its priority");
                }
                let p = read_priority(block);
                if p.depends_on == stream {
                    return Err(FrameError::Stream(
                        stream,
                        Code::PROTOCOL_ERROR,
                        "a stream depends on itself",
                    ));
                }
                priority = Some(p);
                block = &block[5..];
            }
            Frame::Headers {
                stream,
                end_stream: flags & flag::END_STREAM != 0,
                end_headers: flags & flag::END_HEADERS != 0,
                priority,
                block,
            }
        }
        kind::PRIORITY => {
            if stream == 0 {
                return conn("PRIORITY on stream 0");
            }
            if p.len() != 5 {
                return Err(FrameError::Stream(
                    stream,
                    Code::FRAME_SIZE_ERROR,
                    "PRIORITY is not 5 bytes",
                ));
            }
            let priority = read_priority(p);
            if priority.depends_on == stream {
                return Err(FrameError::Stream(
                    stream,
                    Code::PROTOCOL_ERROR,
                    "a stream depends on itself",
                ));
            }
            Frame::Priority { stream, priority }
        }
        kind::RST_STREAM => {
            if stream == 0 {
                return conn("RST_STREAM on stream 0");
            }
            if p.len() != 4 {
                return size("RST_STREAM is not 4 bytes");
            }
            Frame::RstStream {
                stream,
                code: Code(u32_at(p, 0)),
            }
        }
        kind::SETTINGS => {
            if stream != 0 {
                return conn("SETTINGS on a stream");
            }
            let ack = flags & flag::ACK != 0;
            if ack && !p.is_empty() {
                return size("a SETTINGS acknowledgement with a payload");
            }
            if !p.len().is_multiple_of(6) {
                return size("SETTINGS not a multiple of 6 bytes");
            }
            for s in settings(p) {
                s?;
            }
            Frame::Settings { ack, params: p }
        }
        kind::PUSH_PROMISE => return conn("PUSH_PROMISE from a client"),
        kind::PING => {
            if stream != 0 {
                return conn("PING on a stream");
            }
            let Ok(data) = <[u8; 8]>::try_from(p) else {
                return size("PING is not 8 bytes");
            };
            Frame::Ping {
                ack: flags & flag::ACK != 0,
                data,
            }
        }
        kind::GOAWAY => {
            if stream != 0 {
                return conn("GOAWAY on a stream");
            }
            if p.len() < 8 {
                return size("GOAWAY shorter than 8 bytes");
            }
            Frame::GoAway {
                last_stream: stream_id(p, 0),
                code: Code(u32_at(p, 4)),
                debug: &p[8..],
            }
        }
        kind::WINDOW_UPDATE => {
            if p.len() != 4 {
                return size("WINDOW_UPDATE is not 4 bytes");
            }
            let increment = u32_at(p, 0) & MAX_WINDOW;
            if increment == 0 {
                let why = "a WINDOW_UPDATE of 0";
                return Err(if stream == 0 {
                    FrameError::Connection(Code::PROTOCOL_ERROR, why)
                } else {
                    FrameError::Stream(stream, Code::PROTOCOL_ERROR, why)
                });
            }
            Frame::WindowUpdate { stream, increment }
        }
        kind::CONTINUATION => {
            if stream == 0 {
                return conn("CONTINUATION on stream 0");
            }
            Frame::Continuation {
                stream,
                end_headers: flags & flag::END_HEADERS != 0,
                block: p,
            }
        }
        kind => Frame::Unknown { kind, stream },
    };
    Ok(Some((frame, total)))
}

/// The payload length of the frame at the front of `buf`, once its header is in; a frame
/// longer than `max_frame` ends the connection (§4.2).
pub(crate) fn frame_len(buf: &[u8], max_frame: u32) -> Result<Option<usize>, FrameError> {
    if buf.len() < HEADER {
        return Ok(None);
    }
    let len = u32::from_be_bytes([0, buf[0], buf[1], buf[2]]);
    if len > max_frame {
        return Err(FrameError::Connection(
            Code::FRAME_SIZE_ERROR,
            "a frame longer than SETTINGS_MAX_FRAME_SIZE",
        ));
    }
    Ok(Some(len as usize))
}

/// A DATA or HEADERS payload without its padding (§6.1): padding as long as the payload or
/// longer ends the connection.
fn unpad(p: &[u8], flags: u8) -> Result<&[u8], FrameError> {
    if flags & flag::PADDED == 0 {
        return Ok(p);
    }
    let Some((&pad, rest)) = p.split_first() else {
        return Err(FrameError::Connection(
            Code::FRAME_SIZE_ERROR,
            "a padded frame without its pad length",
        ));
    };
    if pad as usize > rest.len() {
        return Err(FrameError::Connection(
            Code::PROTOCOL_ERROR,
            "padding as long as the frame",
        ));
    }
    Ok(&rest[..rest.len() - pad as usize])
}

fn read_priority(p: &[u8]) -> Priority {
    Priority {
        exclusive: p[0] & 0x80 != 0,
        depends_on: stream_id(p, 0),
        weight: p[4],
    }
}

/// The parameters of a SETTINGS payload (a multiple of 6 bytes), each checked (§6.5.2).
pub(crate) fn settings(params: &[u8]) -> impl Iterator<Item = Result<Setting, FrameError>> + '_ {
    params.chunks_exact(6).map(|p| {
        let (id, value) = (u16::from_be_bytes([p[0], p[1]]), u32_at(p, 2));
        let bad = |code, why| Err(FrameError::Connection(code, why));
        Ok(match id {
            0x1 => Setting::HeaderTableSize(value),
            0x2 if value > 1 => {
                return bad(Code::PROTOCOL_ERROR, "SETTINGS_ENABLE_PUSH not 0 or 1")
            }
            0x2 => Setting::EnablePush(value == 1),
            0x3 => Setting::MaxConcurrentStreams(value),
            0x4 if value > MAX_WINDOW => {
                return bad(
                    Code::FLOW_CONTROL_ERROR,
                    "SETTINGS_INITIAL_WINDOW_SIZE past 2^31-1",
                )
            }
            0x4 => Setting::InitialWindowSize(value),
            0x5 if !(MIN_MAX_FRAME..=MAX_MAX_FRAME).contains(&value) => {
                return bad(Code::PROTOCOL_ERROR, "SETTINGS_MAX_FRAME_SIZE out of range")
            }
            0x5 => Setting::MaxFrameSize(value),
            0x6 => Setting::MaxHeaderListSize(value),
            0x8 if value > 1 => {
                return bad(
                    Code::PROTOCOL_ERROR,
                    "SETTINGS_ENABLE_CONNECT_PROTOCOL not 0 or 1",
                )
            }
            0x8 => Setting::EnableConnectProtocol(value == 1),
            id => Setting::Unknown(id, value),
        })
    })
}

/// Writes a frame header.
fn header(out: &mut Vec<u8>, len: usize, kind: u8, flags: u8, stream: u32) {
    debug_assert!(len <= MAX_MAX_FRAME as usize);
    out.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&(stream & MAX_WINDOW).to_be_bytes());
}

/// Writes a DATA frame (no padding); `data` must fit the peer's SETTINGS_MAX_FRAME_SIZE.
pub(crate) fn put_data(out: &mut Vec<u8>, stream: u32, data: &[u8], end_stream: bool) {
    let flags = if end_stream { flag::END_STREAM } else { 0 };
    header(out, data.len(), kind::DATA, flags, stream);
    out.extend_from_slice(data);
}

/// Writes a header block as a HEADERS frame and as many CONTINUATION frames as the peer's
/// `max_frame` needs (§4.3: nothing may come between them).
pub(crate) fn put_headers(
    out: &mut Vec<u8>,
    stream: u32,
    block: &[u8],
    end_stream: bool,
    max_frame: u32,
) {
    let max = max_frame as usize;
    let mut pieces = block.chunks(max).peekable();
    let first = pieces.next().unwrap_or(&[]);
    let mut flags = if end_stream { flag::END_STREAM } else { 0 };
    if pieces.peek().is_none() {
        flags |= flag::END_HEADERS;
    }
    header(out, first.len(), kind::HEADERS, flags, stream);
    out.extend_from_slice(first);
    while let Some(piece) = pieces.next() {
        let flags = if pieces.peek().is_none() {
            flag::END_HEADERS
        } else {
            0
        };
        header(out, piece.len(), kind::CONTINUATION, flags, stream);
        out.extend_from_slice(piece);
    }
}

/// Writes a SETTINGS frame with `params`, or its acknowledgement when `params` is `None`.
pub(crate) fn put_settings(out: &mut Vec<u8>, params: Option<&[(u16, u32)]>) {
    match params {
        None => header(out, 0, kind::SETTINGS, flag::ACK, 0),
        Some(params) => {
            header(out, params.len() * 6, kind::SETTINGS, 0, 0);
            for &(id, value) in params {
                out.extend_from_slice(&id.to_be_bytes());
                out.extend_from_slice(&value.to_be_bytes());
            }
        }
    }
}

/// Writes a PING (or its acknowledgement).
pub(crate) fn put_ping(out: &mut Vec<u8>, data: [u8; 8], ack: bool) {
    header(out, 8, kind::PING, if ack { flag::ACK } else { 0 }, 0);
    out.extend_from_slice(&data);
}

/// Writes a RST_STREAM.
pub(crate) fn put_rst(out: &mut Vec<u8>, stream: u32, code: Code) {
    header(out, 4, kind::RST_STREAM, 0, stream);
    out.extend_from_slice(&code.0.to_be_bytes());
}

/// Writes a GOAWAY naming the last stream this side will act on.
pub(crate) fn put_goaway(out: &mut Vec<u8>, last_stream: u32, code: Code, debug: &[u8]) {
    header(out, 8 + debug.len(), kind::GOAWAY, 0, 0);
    out.extend_from_slice(&(last_stream & MAX_WINDOW).to_be_bytes());
    out.extend_from_slice(&code.0.to_be_bytes());
    out.extend_from_slice(debug);
}

/// Writes a WINDOW_UPDATE (stream 0: the connection's window); `increment` is 1 to 2^31-1.
pub(crate) fn put_window_update(out: &mut Vec<u8>, stream: u32, increment: u32) {
    debug_assert!((1..=MAX_WINDOW).contains(&increment));
    header(out, 4, kind::WINDOW_UPDATE, 0, stream);
    out.extend_from_slice(&increment.to_be_bytes());
}

#[cfg(test)]
mod tests;
