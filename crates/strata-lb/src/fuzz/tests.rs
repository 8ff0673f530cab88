//! The differential checks on the attacks that motivated them, and on shapes the fuzzer should
//! keep finding harmless.

use super::*;

const ATTACKS: &[&[u8]] = &[
    // Connection naming the framing header: the body must still be read as a body
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 56\r\nConnection: content-length\r\n\r\nPOST /CAPTURE HTTP/1.1\r\nHost: x\r\nContent-Length: 150\r\n\r\nGET /victim HTTP/1.1\r\nHost: a\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: transfer-encoding\r\n\r\n38\r\nPOST /CAPTURE HTTP/1.1\r\nHost: x\r\nContent-Length: 150\r\n\r\n\r\n0\r\n\r\nGET /victim HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nConnection: host\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 005\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\r\nGET /x HTTP/1.1\r\nHost: a\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX: y\r\nGET /x HTTP/1.1\r\n\r\n",
    b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET http://user@evil/ HTTP/1.1\r\nHost: a\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    // found in review: a CONNECT body read by the backend as the next request
    b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\nContent-Length: 66\r\n\r\nPOST /admin/delete HTTP/1.1\r\nHost: internal\r\nContent-Length: 0\r\n\r\n",
    b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\nGET /tunnelled HTTP/1.1\r\nHost: a\r\n\r\n",
    // trailers are passed on now: none that frames, routes or carries credentials
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTE: trailers\r\n\r\n5\r\nhello\r\n0\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\nHost: evil\r\nCookie: a=b\r\nX-Sum: 5\r\n\r\nGET /next HTTP/1.1\r\nHost: a\r\n\r\n",
];

#[test]
fn trailers_pass_on_without_the_fields_that_belong_in_a_head() {
    let (readings, wire) = request_path(
        ATTACKS[ATTACKS.len() - 1],
        strata_config::Forwarded::XForwarded,
        false,
    );
    assert_eq!(readings.len(), 2);
    let text = String::from_utf8_lossy(&wire);
    assert!(
        text.contains("\r\n0\r\nX-Sum: 5\r\n\r\nGET /next"),
        "{text}"
    );
    assert!(text.contains("te: trailers\r\n"), "{text}");
    assert!(!text.contains("evil") && !text.contains("Cookie"), "{text}");
}

#[test]
fn attacks_reach_the_backend_as_the_proxy_read_them() {
    for attack in ATTACKS {
        request(attack);
    }
}

#[test]
fn a_length_named_in_connection_still_frames_the_body() {
    let (readings, wire) = request_path(ATTACKS[0], strata_config::Forwarded::XForwarded, false);
    let methods: Vec<&[u8]> = readings.iter().map(|r| &r.target[..]).collect();
    assert_eq!(methods, [&b"/"[..], b"/victim"]);
    assert_eq!(readings[0].body.len(), 56);
    let text = String::from_utf8_lossy(&wire);
    assert!(text.contains("content-length: 56\r\n"), "{text}");
}

#[test]
fn an_upgrade_the_listener_does_not_allow_is_a_plain_request() {
    let (readings, wire) = request_path(ATTACKS[6], strata_config::Forwarded::None, false);
    assert_eq!(
        readings.len(),
        2,
        "keep-alive carries on past a dropped upgrade"
    );
    let text = String::from_utf8_lossy(&wire).to_lowercase();
    assert!(!text.contains("upgrade"), "{text}");
}

#[test]
fn responses_reach_the_client_framed_by_the_proxy() {
    let shapes: &[&[u8]] = &[
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: content-length\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 002, 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: transfer-encoding\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n\r\nuntil close",
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    ];
    for shape in shapes {
        for pick in 0..4u8 {
            let mut data = vec![pick];
            data.extend_from_slice(shape);
            response(&data);
        }
    }
}

#[test]
fn http2_fields_cannot_inject_into_the_http1_head() {
    let cases: &[&[u8]] = &[
        b"\x00shop.example\n/a?b\nx-a:1\ncookie:a=1\ncookie:b=2",
        b"\x09shop.example\n/up\ncontent-length:5",
        b"\x09shop.example\n/up",
        b"\x00shop.example\n/\nhost:other.example",
        b"\x00shop.example\n/\nx-a:1\r\nx-b: 2",
        b"\x05shop.example:443\n/",
    ];
    for case in cases {
        h2_request(case);
    }
}

#[test]
fn frames_written_and_hostile_read_as_the_h2_frame_target_expects() {
    use crate::http::h2frame::{put_data, put_headers, put_settings, Code};
    let mut wire = vec![0u8];
    put_settings(&mut wire, Some(&[(0x3, 100), (0xff, 1)]));
    put_headers(&mut wire, 1, &[0x82; 40_000], true, 16_384);
    put_data(&mut wire, 3, b"body", false);
    crate::http::h2frame::put_rst(&mut wire, 3, Code::CANCEL);
    h2_frame(&wire);
    // a PRIORITY of the wrong size is a stream error: the frames after it are still read
    let mut wire = vec![0u8, 0, 0, 4, 2, 0, 0, 0, 0, 1, 0, 0, 0, 0];
    put_data(&mut wire, 1, b"x", true);
    h2_frame(&wire);
    // every prefix of these, and the frames alone
    for n in 0..wire.len() {
        h2_frame(&wire[..n]);
    }
}
