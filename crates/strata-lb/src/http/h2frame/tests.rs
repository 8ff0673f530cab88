use super::*;

fn raw(len: usize, kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    header(&mut out, len, kind, flags, stream);
    out.extend_from_slice(payload);
    out
}

fn one(bytes: &[u8]) -> Result<Frame<'_>, FrameError> {
    match read(bytes, MIN_MAX_FRAME)? {
        Some((frame, used)) => {
            assert_eq!(used, bytes.len());
            Ok(frame)
        }
        None => panic!("incomplete"),
    }
}

fn conn_code(r: Result<Frame<'_>, FrameError>) -> Code {
    match r {
        Err(FrameError::Connection(code, _)) => code,
        other => panic!("not a connection error: {other:?}"),
    }
}

#[test]
fn what_this_side_writes_reads_back() {
    let mut out = Vec::new();
    put_data(&mut out, 1, b"hello", true);
    put_settings(&mut out, Some(&[(0x3, 100), (0x4, 65_535)]));
    put_settings(&mut out, None);
    put_ping(&mut out, *b"12345678", true);
    put_rst(&mut out, 3, Code::CANCEL);
    put_goaway(&mut out, 7, Code::NO_ERROR, b"bye");
    put_window_update(&mut out, 0, 1 << 20);
    let mut at = 0;
    let mut frames = Vec::new();
    while let Some((f, used)) = read(&out[at..], MIN_MAX_FRAME).unwrap() {
        frames.push(format!("{f:?}"));
        at += used;
    }
    assert_eq!(at, out.len());
    assert_eq!(frames.len(), 7);
    assert!(frames[0].starts_with("Data { stream: 1, end_stream: true, data: [104"));
    assert_eq!(
        read(&out[14..], MIN_MAX_FRAME).unwrap().unwrap().0,
        Frame::Settings {
            ack: false,
            params: &out[23..35]
        }
    );
    let params: Vec<_> = settings(&out[23..35]).map(Result::unwrap).collect();
    assert_eq!(
        params,
        [
            Setting::MaxConcurrentStreams(100),
            Setting::InitialWindowSize(65_535)
        ]
    );
}

#[test]
fn a_header_block_longer_than_a_frame_goes_on_in_continuations() {
    let block: Vec<u8> = (0..40_000u32).map(|i| i as u8).collect();
    let mut out = Vec::new();
    put_headers(&mut out, 5, &block, true, MIN_MAX_FRAME);
    let mut at = 0;
    let mut joined = Vec::new();
    let mut kinds = Vec::new();
    while let Some((f, used)) = read(&out[at..], MIN_MAX_FRAME).unwrap() {
        match f {
            Frame::Headers {
                stream: 5,
                end_stream: true,
                end_headers,
                block,
                priority: None,
            } => {
                kinds.push(("HEADERS", end_headers));
                joined.extend_from_slice(block);
            }
            Frame::Continuation {
                stream: 5,
                end_headers,
                block,
            } => {
                kinds.push(("CONTINUATION", end_headers));
                joined.extend_from_slice(block);
            }
            f => panic!("{f:?}"),
        }
        at += used;
    }
    assert_eq!(joined, block);
    assert_eq!(
        kinds,
        [
            ("HEADERS", false),
            ("CONTINUATION", false),
            ("CONTINUATION", true)
        ]
    );
    // a block that fits: one HEADERS with END_HEADERS; an empty one too
    for block in [&b"abc"[..], b""] {
        let mut out = Vec::new();
        put_headers(&mut out, 1, block, false, MIN_MAX_FRAME);
        let (f, used) = read(&out, MIN_MAX_FRAME).unwrap().unwrap();
        assert_eq!(used, out.len());
        assert!(matches!(
            f,
            Frame::Headers {
                end_headers: true,
                end_stream: false,
                ..
            }
        ));
    }
}

#[test]
fn frames_are_whole_or_waited_for() {
    let mut out = Vec::new();
    put_data(&mut out, 1, b"hello", false);
    for cut in 0..out.len() {
        assert_eq!(read(&out[..cut], MIN_MAX_FRAME), Ok(None), "cut at {cut}");
    }
    // a frame past SETTINGS_MAX_FRAME_SIZE is refused on its header alone
    let big = raw(MIN_MAX_FRAME as usize + 1, kind::DATA, 0, 1, b"");
    assert_eq!(
        read(&big, MIN_MAX_FRAME).map(|_| ()),
        Err(FrameError::Connection(
            Code::FRAME_SIZE_ERROR,
            "a frame longer than SETTINGS_MAX_FRAME_SIZE"
        ))
    );
    assert!(read(&big, MIN_MAX_FRAME + 1).unwrap().is_none());
}

#[test]
fn padding_is_removed_and_checked() {
    let f = raw(
        8,
        kind::DATA,
        flag::PADDED,
        1,
        &[2, b'a', b'b', b'c', b'd', b'e', 0, 0],
    );
    assert_eq!(
        one(&f),
        Ok(Frame::Data {
            stream: 1,
            end_stream: false,
            data: b"abcde",
            flow: 8
        })
    );
    // padding as long as the rest, or the pad length missing
    let f = raw(3, kind::DATA, flag::PADDED, 1, &[2, 0, 0]);
    assert_eq!(one(&f).map(|_| ()), Ok(()));
    let f = raw(3, kind::DATA, flag::PADDED, 1, &[3, 0, 0]);
    assert_eq!(conn_code(one(&f)), Code::PROTOCOL_ERROR);
    let f = raw(0, kind::DATA, flag::PADDED, 1, &[]);
    assert_eq!(conn_code(one(&f)), Code::FRAME_SIZE_ERROR);
    // HEADERS: padding, then the priority, then the block
    let f = raw(
        9,
        kind::HEADERS,
        flag::PADDED | flag::PRIORITY | flag::END_HEADERS,
        3,
        &[1, 0x80, 0, 0, 1, 15, 0xaa, 0xbb, 0],
    );
    assert_eq!(
        one(&f),
        Ok(Frame::Headers {
            stream: 3,
            end_stream: false,
            end_headers: true,
            priority: Some(Priority {
                exclusive: true,
                depends_on: 1,
                weight: 15
            }),
            block: &[0xaa, 0xbb],
        })
    );
    let f = raw(3, kind::HEADERS, flag::PRIORITY, 3, &[0, 0, 0]);
    assert_eq!(conn_code(one(&f)), Code::FRAME_SIZE_ERROR);
}

#[test]
fn frames_on_the_wrong_stream_end_the_connection() {
    for (kind, len) in [
        (kind::DATA, 0),
        (kind::HEADERS, 0),
        (kind::PRIORITY, 5),
        (kind::RST_STREAM, 4),
        (kind::CONTINUATION, 0),
    ] {
        let f = raw(len, kind, 0, 0, &vec![0; len]);
        assert_eq!(conn_code(one(&f)), Code::PROTOCOL_ERROR, "type {kind}");
    }
    for (kind, len) in [(kind::SETTINGS, 0), (kind::PING, 8), (kind::GOAWAY, 8)] {
        let f = raw(len, kind, 0, 1, &vec![0; len]);
        assert_eq!(conn_code(one(&f)), Code::PROTOCOL_ERROR, "type {kind}");
    }
    let f = raw(4, kind::PUSH_PROMISE, 0, 1, &[0, 0, 0, 2]);
    assert_eq!(conn_code(one(&f)), Code::PROTOCOL_ERROR);
}

#[test]
fn fixed_sizes_are_checked() {
    let f = raw(4, kind::PRIORITY, 0, 1, &[0; 4]);
    assert_eq!(
        one(&f),
        Err(FrameError::Stream(
            1,
            Code::FRAME_SIZE_ERROR,
            "PRIORITY is not 5 bytes"
        ))
    );
    for (kind, len) in [
        (kind::RST_STREAM, 3),
        (kind::PING, 7),
        (kind::PING, 9),
        (kind::GOAWAY, 7),
        (kind::WINDOW_UPDATE, 5),
        (kind::SETTINGS, 5),
    ] {
        let stream = if kind == kind::RST_STREAM { 1 } else { 0 };
        let f = raw(len, kind, 0, stream, &vec![0; len]);
        assert_eq!(
            conn_code(one(&f)),
            Code::FRAME_SIZE_ERROR,
            "type {kind} len {len}"
        );
    }
    let f = raw(6, kind::SETTINGS, flag::ACK, 0, &[0, 3, 0, 0, 0, 1]);
    assert_eq!(conn_code(one(&f)), Code::FRAME_SIZE_ERROR);
}

#[test]
fn settings_values_are_checked() {
    let setting = |id: u16, value: u32| {
        let mut p = id.to_be_bytes().to_vec();
        p.extend_from_slice(&value.to_be_bytes());
        raw(6, kind::SETTINGS, 0, 0, &p)
    };
    assert_eq!(conn_code(one(&setting(0x2, 2))), Code::PROTOCOL_ERROR);
    assert_eq!(
        conn_code(one(&setting(0x4, MAX_WINDOW + 1))),
        Code::FLOW_CONTROL_ERROR
    );
    assert!(one(&setting(0x4, MAX_WINDOW)).is_ok());
    assert_eq!(
        conn_code(one(&setting(0x5, MIN_MAX_FRAME - 1))),
        Code::PROTOCOL_ERROR
    );
    assert_eq!(
        conn_code(one(&setting(0x5, MAX_MAX_FRAME + 1))),
        Code::PROTOCOL_ERROR
    );
    assert_eq!(conn_code(one(&setting(0x8, 2))), Code::PROTOCOL_ERROR);
    // unknown identifiers are ignored
    let f = setting(0xff, 7);
    let Ok(Frame::Settings { params, .. }) = one(&f) else {
        panic!()
    };
    assert_eq!(
        settings(params).collect::<Vec<_>>(),
        [Ok(Setting::Unknown(0xff, 7))]
    );
}

#[test]
fn window_updates_of_zero_and_streams_depending_on_themselves() {
    let f = raw(4, kind::WINDOW_UPDATE, 0, 0, &[0, 0, 0, 0]);
    assert_eq!(conn_code(one(&f)), Code::PROTOCOL_ERROR);
    let f = raw(4, kind::WINDOW_UPDATE, 0, 5, &[0x80, 0, 0, 0]);
    assert_eq!(
        one(&f),
        Err(FrameError::Stream(
            5,
            Code::PROTOCOL_ERROR,
            "a WINDOW_UPDATE of 0"
        ))
    );
    // the reserved bit is not part of the increment
    let f = raw(4, kind::WINDOW_UPDATE, 0, 5, &[0x80, 0, 0, 9]);
    assert_eq!(
        one(&f),
        Ok(Frame::WindowUpdate {
            stream: 5,
            increment: 9
        })
    );
    let f = raw(5, kind::PRIORITY, 0, 5, &[0, 0, 0, 5, 16]);
    assert!(matches!(
        one(&f),
        Err(FrameError::Stream(5, Code::PROTOCOL_ERROR, _))
    ));
    let f = raw(6, kind::HEADERS, flag::PRIORITY, 5, &[0, 0, 0, 5, 16, 0x82]);
    assert!(matches!(
        one(&f),
        Err(FrameError::Stream(5, Code::PROTOCOL_ERROR, _))
    ));
}

#[test]
fn unknown_types_are_read_and_skipped() {
    let f = raw(3, 0xfa, 0xff, 9, b"xyz");
    assert_eq!(
        one(&f),
        Ok(Frame::Unknown {
            kind: 0xfa,
            stream: 9
        })
    );
    // the reserved bit of the stream identifier is ignored
    let f = [0, 0, 0, kind::DATA, flag::END_STREAM, 0x80, 0, 0, 1];
    assert!(matches!(one(&f), Ok(Frame::Data { stream: 1, .. })));
}

#[test]
fn the_preface_is_the_rfcs() {
    assert_eq!(PREFACE.len(), 24);
    assert_eq!(&PREFACE[..3], b"PRI");
}
