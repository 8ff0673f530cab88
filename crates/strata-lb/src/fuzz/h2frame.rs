//! The `h2_frame` target: HTTP/2 frames as a client sends them, read by `http::h2frame`.

use crate::http::h2frame::{
    frame_len, put_data, put_goaway, put_headers, put_ping, put_rst, put_settings,
    put_window_update, read, settings, Frame, FrameError, Setting, HEADER, MAX_MAX_FRAME,
    MIN_MAX_FRAME,
};

/// The SETTINGS_MAX_FRAME_SIZE values the first byte picks from.
const MAX_FRAMES: [u32; 4] = [MIN_MAX_FRAME, MIN_MAX_FRAME + 1, 65_535, MAX_MAX_FRAME];

/// Reads the bytes after the first (which picks the frame size limit) as a client's frames,
/// until one ends the connection or the bytes end. Each frame read takes exactly its header
/// and announced length, and nothing less than all of it is read as a frame; a larger limit
/// reads it the same; what this side would write of the same frame reads back as it.
pub fn h2_frame(data: &[u8]) {
    let Some((&pick, wire)) = data.split_first() else {
        return;
    };
    let max = MAX_FRAMES[pick as usize % MAX_FRAMES.len()];
    let mut at = 0;
    while at < wire.len() {
        let rest = &wire[at..];
        let read_one = read(rest, max);
        let len = match frame_len(rest, max) {
            Ok(Some(len)) => len,
            Ok(None) => {
                assert_eq!(read_one, Ok(None), "a frame from less than its header");
                return;
            }
            Err(e) => {
                assert_eq!(read_one.map(|_| ()), Err(e));
                return;
            }
        };
        // a frame is read whole or not at all
        if rest.len() < HEADER + len {
            assert_eq!(read_one, Ok(None), "a frame read before all of it arrived");
            return;
        }
        for cut in [HEADER, HEADER + len / 2, HEADER + len.saturating_sub(1)] {
            if cut < HEADER + len {
                assert_eq!(read(&rest[..cut], max), Ok(None));
            }
        }
        assert_eq!(
            read(rest, MAX_MAX_FRAME),
            read_one,
            "a larger limit reads the frame otherwise"
        );
        match read_one {
            Ok(Some((frame, used))) => {
                assert_eq!(used, HEADER + len);
                round_trip(&frame, max);
            }
            Ok(None) => unreachable!("a whole frame was there"),
            // the stream goes, the connection reads on
            Err(FrameError::Stream(..)) => {}
            Err(FrameError::Connection(..)) => return,
        }
        at += HEADER + len;
    }
}

/// What this side writes of `frame` reads back as `frame`.
fn round_trip(frame: &Frame<'_>, max: u32) {
    let mut out = Vec::new();
    match *frame {
        Frame::Data {
            stream,
            end_stream,
            data,
            ..
        } => put_data(&mut out, stream, data, end_stream),
        Frame::Headers {
            stream,
            end_stream,
            end_headers: true,
            priority: None,
            block,
        } => put_headers(&mut out, stream, block, end_stream, max),
        Frame::Settings { ack, params } => {
            let pairs: Vec<(u16, u32)> = settings(params)
                .map(|s| match s.expect("a SETTINGS frame read is checked") {
                    Setting::HeaderTableSize(v) => (0x1, v),
                    Setting::EnablePush(v) => (0x2, u32::from(v)),
                    Setting::MaxConcurrentStreams(v) => (0x3, v),
                    Setting::InitialWindowSize(v) => (0x4, v),
                    Setting::MaxFrameSize(v) => (0x5, v),
                    Setting::MaxHeaderListSize(v) => (0x6, v),
                    Setting::EnableConnectProtocol(v) => (0x8, u32::from(v)),
                    Setting::Unknown(id, v) => (id, v),
                })
                .collect();
            put_settings(&mut out, if ack { None } else { Some(&pairs) });
        }
        Frame::Ping { ack, data } => put_ping(&mut out, data, ack),
        Frame::RstStream { stream, code } => put_rst(&mut out, stream, code),
        Frame::GoAway {
            last_stream,
            code,
            debug,
        } => put_goaway(&mut out, last_stream, code, debug),
        Frame::WindowUpdate { stream, increment } => put_window_update(&mut out, stream, increment),
        _ => return,
    }
    let (again, used) = read(&out, max)
        .expect("what this side writes reads")
        .expect("what this side writes is whole");
    match (frame, &again) {
        // the flow-control length counts padding, which this side does not write
        (
            Frame::Data {
                stream,
                end_stream,
                data,
                ..
            },
            Frame::Data {
                stream: s,
                end_stream: e,
                data: d,
                ..
            },
        ) => assert_eq!((stream, end_stream, data), (s, e, d)),
        // a block longer than a frame goes on in CONTINUATION frames
        (Frame::Headers { block, .. }, Frame::Headers { block: b, .. }) if used < out.len() => {
            assert!(block.starts_with(b));
        }
        _ => assert_eq!(frame, &again),
    }
}
