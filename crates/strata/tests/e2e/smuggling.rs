//! Request smuggling and the edges around it, tried as an attacker would: raw bytes from the
//! client, and a raw-socket backend that records exactly what reaches it.

use crate::common;

use std::time::Duration;

use common::recorder::{Recorded, Recorder};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LIMIT: Duration = Duration::from_secs(5);

fn config(backend: &Recorder, extra: &str) -> String {
    format!(
        "[[http]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\nbackends = [\"{}\"]\n{extra}",
        backend.addr
    )
}

/// Reads one response with a Content-Length or chunked body off `s`: head and decoded body.
async fn read_response(s: &mut TcpStream) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let read = async {
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                let rest = buf[end + 4..].to_vec();
                if let Some(len) = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                {
                    if rest.len() >= len {
                        return (head, rest[..len].to_vec());
                    }
                } else if head.contains("transfer-encoding: chunked") {
                    if let Some(body) = dechunk(&rest) {
                        return (head, body);
                    }
                } else {
                    return (head, rest);
                }
            }
            let n = s.read(&mut chunk).await.expect("read");
            assert!(
                n > 0,
                "closed mid-response: {:?}",
                String::from_utf8_lossy(&buf)
            );
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(LIMIT, read)
        .await
        .expect("a response in time")
}

fn dechunk(mut wire: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let eol = wire.windows(2).position(|w| w == b"\r\n")?;
        let size = usize::from_str_radix(std::str::from_utf8(&wire[..eol]).ok()?, 16).ok()?;
        wire = &wire[eol + 2..];
        if size == 0 {
            return wire.starts_with(b"\r\n").then_some(body);
        }
        if wire.len() < size + 2 {
            return None;
        }
        body.extend_from_slice(&wire[..size]);
        wire = &wire[size + 2..];
    }
}

fn lines(reqs: &[Recorded]) -> Vec<&str> {
    reqs.iter().map(|r| r.line.as_str()).collect()
}

/// Each request the backend framed carries exactly one Host and the proxy's own headers.
fn assert_forwarded_by_strata(reqs: &[Recorded]) {
    for r in reqs {
        assert_eq!(r.values("host").len(), 1, "{r:?}");
        assert_eq!(r.values("x-forwarded-for"), ["127.0.0.1"], "{r:?}");
        assert_eq!(r.values("via"), ["1.1 strata"], "{r:?}");
        let framing = r.values("content-length").len() + r.values("transfer-encoding").len();
        assert!(framing <= 1, "{r:?}");
    }
}

/// The attack from the report: a framing header named in Connection. The backend must see one
/// request with its 56-byte body, and the next client on the same pooled connection must get
/// its own answer.
async fn smuggle_then_victim(attack: &[u8], expect_body: &[u8]) {
    let backend = Recorder::start().await;
    let strata = Strata::start(&config(&backend, ""));
    let addr = strata.addr("http:web");

    let mut attacker = TcpStream::connect(addr).await.unwrap();
    attacker.write_all(attack).await.unwrap();
    let (head, _) = read_response(&mut attacker).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");

    let mut victim = TcpStream::connect(addr).await.unwrap();
    victim
        .write_all(b"GET /victim HTTP/1.1\r\nHost: a\r\nCookie: session=secret\r\n\r\n")
        .await
        .unwrap();
    let (head, body) = read_response(&mut victim).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(body, b"GET /victim", "the victim gets its own answer");

    let reqs = backend.requests();
    assert_eq!(lines(&reqs), ["POST / HTTP/1.1", "GET /victim HTTP/1.1"]);
    assert_eq!(reqs[0].body, expect_body, "the whole body, read as a body");
    assert_eq!(reqs[1].values("cookie"), ["session=secret"]);
    assert_forwarded_by_strata(&reqs);
    assert_eq!(
        backend.received().len(),
        1,
        "both went over one pooled connection"
    );
}

const SMUGGLED: &[u8] = b"POST /CAPTURE HTTP/1.1\r\nHost: x\r\nContent-Length: 150\r\n\r\n";

#[tokio::test]
async fn connection_naming_content_length_does_not_unframe_the_body() {
    let mut attack =
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 56\r\nConnection: content-length\r\n\r\n"
            .to_vec();
    attack.extend_from_slice(SMUGGLED);
    assert_eq!(SMUGGLED.len(), 56);
    smuggle_then_victim(&attack, SMUGGLED).await;
}

#[tokio::test]
async fn connection_naming_transfer_encoding_does_not_unframe_the_body() {
    let mut attack = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: transfer-encoding\r\n\r\n38\r\n".to_vec();
    attack.extend_from_slice(SMUGGLED);
    attack.extend_from_slice(b"\r\n0\r\n\r\n");
    smuggle_then_victim(&attack, SMUGGLED).await;
}

#[tokio::test]
async fn connection_naming_host_keeps_the_host() {
    let backend = Recorder::start().await;
    let strata = Strata::start(&config(&backend, ""));
    let out = raw_exchange(
        strata.addr("http:web"),
        b"GET / HTTP/1.1\r\nHost: shop.example\r\nConnection: host, close\r\n\r\n",
        LIMIT,
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let reqs = backend.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].values("host"), ["shop.example"]);
    assert_forwarded_by_strata(&reqs);
}

#[tokio::test]
async fn responses_are_framed_by_strata_whatever_the_backend_names_in_connection() {
    let backend = Recorder::start().await;
    let strata = Strata::start(&config(&backend, ""));
    let mut client = TcpStream::connect(strata.addr("http:web")).await.unwrap();
    for path in ["/resp/conn-cl", "/resp/conn-te", "/resp/cl-te"] {
        client
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let (head, body) = read_response(&mut client).await;
        assert_eq!(body, b"ok", "{path}: {head}");
        let framing =
            head.matches("content-length:").count() + head.matches("transfer-encoding:").count();
        assert_eq!(framing, 1, "{path}: one framing header\n{head}");
        if path == "/resp/conn-cl" {
            assert!(head.lines().any(|l| l == "content-length: 2"), "{head}");
        }
        if path == "/resp/cl-te" {
            // RFC 9112 6.3: chunked wins, and the length goes
            assert!(head.contains("transfer-encoding: chunked"), "{head}");
        }
    }
    // the client connection is still in step: a last request gets its own answer
    client
        .write_all(b"GET /last HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_response(&mut client).await.1, b"GET /last");
}

#[tokio::test]
async fn content_length_lists_and_leading_zeros_reach_the_backend_as_one_value() {
    let backend = Recorder::start().await;
    let strata = Strata::start(&config(&backend, ""));
    let mut client = TcpStream::connect(strata.addr("http:web")).await.unwrap();
    for lengths in [
        "Content-Length: 5, 5",
        "Content-Length: 5\r\nContent-Length: 5",
        "Content-Length: 0005",
    ] {
        client
            .write_all(format!("POST /p HTTP/1.1\r\nHost: a\r\n{lengths}\r\n\r\nhello").as_bytes())
            .await
            .unwrap();
        assert_eq!(read_response(&mut client).await.1, b"POST /p");
    }
    let reqs = backend.requests();
    assert_eq!(reqs.len(), 3);
    for r in &reqs {
        assert_eq!(r.values("content-length"), ["5"], "{r:?}");
        assert_eq!(r.body, b"hello");
    }
    assert_forwarded_by_strata(&reqs);
}

#[tokio::test]
async fn malformed_heads_are_refused_before_any_backend() {
    let backend = Recorder::start().await;
    let strata = Strata::start(&config(&backend, ""));
    let cases: &[(&[u8], &str)] = &[
        (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", "400"),
        (b"GET / HTTP/1.1\r\nHost: user@a\r\n\r\n", "400"),
        (b"GET / HTTP/1.1\r\nHost: a,b\r\n\r\n", "400"),
        (b"GET / HTTP/1.1\r\nHost: \r\n\r\n", "400"),
        (b"GET http://user:pw@a/ HTTP/1.1\r\nHost: a\r\n\r\n", "400"),
        (b"GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n", "400"),
        (b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", "400"),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
            "501",
        ),
        (
            b"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n",
            "405",
        ),
    ];
    for (request, status) in cases {
        let out = raw_exchange(strata.addr("http:web"), request, LIMIT).await;
        assert!(
            out.starts_with(&format!("HTTP/1.1 {status} ")),
            "{:?} -> {out:?}",
            String::from_utf8_lossy(request)
        );
    }
    assert!(backend.received().is_empty(), "{:?}", backend.received());
}

#[tokio::test]
async fn a_bad_chunk_line_or_trailer_ends_the_request_and_nothing_rides_on_it() {
    let backend = Recorder::start().await;
    let strata = Strata::start(&config(&backend, ""));
    let cases: &[&[u8]] = &[
        // an empty chunk-size line is not the last chunk
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nno colon here\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-A: a\x00b\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
    ];
    for request in cases {
        let out = raw_exchange(strata.addr("http:web"), request, LIMIT).await;
        assert!(out.starts_with("HTTP/1.1 400 "), "{out:?}");
        assert!(!out.contains("smuggled"), "{out:?}");
    }
    // the backend got at most the start of each request, never a complete one
    assert!(backend.requests().is_empty(), "{:?}", backend.requests());
    for bytes in backend.received() {
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains("smuggled"), "{text}");
        assert!(
            !text.contains("\r\n0\r\n"),
            "no last chunk was sent: {text}"
        );
    }
}

#[tokio::test]
async fn upgrades_pass_only_for_allowed_protocols_and_h2c_never() {
    let backend = Recorder::start().await;
    let strata = Strata::start(&config(&backend, ""));
    // h2c: stripped, answered as a plain request; what follows is parsed as HTTP/1.1 again
    let out = raw_exchange(
        strata.addr("http:web"),
        b"GET /up HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\nGET /next HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        LIMIT,
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    assert!(out.ends_with("GET /next"), "{out}");
    let reqs = backend.requests();
    assert_eq!(lines(&reqs), ["GET /up HTTP/1.1", "GET /next HTTP/1.1"]);
    for r in &reqs {
        assert!(r.values("upgrade").is_empty(), "{r:?}");
        assert!(r.values("connection").is_empty(), "{r:?}");
        assert!(r.values("http2-settings").is_empty(), "{r:?}");
    }
    assert_forwarded_by_strata(&reqs);

    // websocket on a listener that allows no upgrades: a plain request too
    let backend = Recorder::start().await;
    let strata = Strata::start(&config(&backend, "upgrades = []\n"));
    let out = raw_exchange(
        strata.addr("http:web"),
        b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade, close\r\nUpgrade: websocket\r\n\r\n",
        LIMIT,
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    assert!(backend.requests()[0].values("upgrade").is_empty());
}

#[tokio::test]
async fn http2_authority_and_a_different_host_are_refused() {
    let backend = Recorder::start().await;
    let strata = Strata::start(&config(&backend, ""));
    let io = TcpStream::connect(strata.addr("http:web")).await.unwrap();
    let mut h2 = h2_handshake(io).await;
    let mut req = h2_get("http://shop.example/a");
    req.headers_mut()
        .insert("host", "internal.example".parse().unwrap());
    assert_eq!(h2_send(&mut h2, req).await.status, 400);
    let mut req = h2_get("http://shop.example/b");
    req.headers_mut()
        .insert("host", "shop.example".parse().unwrap());
    assert_eq!(h2_send(&mut h2, req).await.status, 200);
    let reqs = backend.requests();
    assert_eq!(lines(&reqs), ["GET /b HTTP/1.1"]);
    assert_eq!(reqs[0].values("host"), ["shop.example"]);
}

#[tokio::test]
async fn connect_tunnels_only_where_the_listener_allows_it() {
    // a forward proxy behind strata: answers CONNECT with 200, then echoes
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let seen2 = seen.clone();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut b = [0u8; 1];
            if s.read(&mut b).await.unwrap() == 0 {
                return;
            }
            head.push(b[0]);
        }
        *seen2.lock().unwrap() = String::from_utf8_lossy(&head).into_owned();
        s.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await
            .unwrap();
        let (mut r, mut w) = s.split();
        let _ = tokio::io::copy(&mut r, &mut w).await;
    });
    let strata = Strata::start(&format!(
        "[[http]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\nbackends = [\"{addr}\"]\nallow_connect = true\n"
    ));
    let mut client = TcpStream::connect(strata.addr("http:web")).await.unwrap();
    client
        .write_all(b"CONNECT db.internal:5432 HTTP/1.1\r\nHost: db.internal:5432\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        assert_eq!(
            tokio::time::timeout(LIMIT, client.read(&mut b))
                .await
                .unwrap()
                .unwrap(),
            1
        );
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(
        head.starts_with("http/1.1 200 connection established\r\n"),
        "{head}"
    );
    assert!(
        !head.contains("content-length") && !head.contains("connection:"),
        "{head}"
    );
    client.write_all(b"ping").await.unwrap();
    let mut echo = [0u8; 4];
    tokio::time::timeout(LIMIT, client.read_exact(&mut echo))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&echo, b"ping");
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.starts_with("CONNECT db.internal:5432 HTTP/1.1\r\n"),
        "{seen}"
    );
    assert!(seen.contains("x-forwarded-for: 127.0.0.1\r\n"), "{seen}");
}

#[tokio::test]
async fn a_connect_body_never_reaches_a_backend_and_a_refused_connect_closes() {
    let backend = Recorder::start().await;
    let strata = Strata::start(&config(&backend, "allow_connect = true\n"));
    // a body on CONNECT would be read by the backend as the next request
    let mut attack =
        b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\nContent-Length: 66\r\n\r\n".to_vec();
    attack.extend_from_slice(
        b"POST /admin/delete HTTP/1.1\r\nHost: internal\r\nContent-Length: 0\r\n\r\n",
    );
    let out = raw_exchange(strata.addr("http:web"), &attack, LIMIT).await;
    assert!(out.starts_with("HTTP/1.1 400 "), "{out}");
    assert!(backend.received().is_empty(), "{:?}", backend.received());
    // a CONNECT the backend refuses: the answer, then the connection closes, so what the
    // client meant for the tunnel is never read as requests
    let out = raw_exchange(
        strata.addr("http:web"),
        b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\nGET /tunnelled HTTP/1.1\r\nHost: a\r\n\r\n",
        LIMIT,
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{out}");
    assert!(out.ends_with("\r\n\r\nno"), "exactly one answer: {out}");
    assert_eq!(lines(&backend.requests()), ["CONNECT a:443 HTTP/1.1"]);
}

#[tokio::test]
async fn a_backend_cannot_switch_protocols_unasked_or_to_another_protocol() {
    let backend = Recorder::start().await;
    let strata = Strata::start(&config(&backend, ""));
    for request in [
        &b"GET /resp/h2c HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"[..],
        b"GET /resp/h2c HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
    ] {
        let out = raw_exchange(strata.addr("http:web"), request, LIMIT).await;
        assert!(out.starts_with("HTTP/1.1 502 "), "{out}");
        assert!(!out.to_lowercase().contains("upgrade"), "{out}");
    }
}

#[tokio::test]
async fn head_and_304_answers_have_no_body_and_the_connection_stays_in_step() {
    let backend = Recorder::start().await;
    let strata = Strata::start(&config(&backend, ""));
    let out = raw_exchange(
        strata.addr("http:web"),
        b"HEAD /resp/conn-cl HTTP/1.1\r\nHost: a\r\n\r\nGET /resp/304 HTTP/1.1\r\nHost: a\r\n\r\nGET /last HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        LIMIT,
    )
    .await;
    let answers: Vec<&str> = out.split("HTTP/1.1 ").skip(1).collect();
    assert_eq!(answers.len(), 3, "{out}");
    assert!(
        answers[0].starts_with("200")
            && answers[0].to_lowercase().contains("content-length: 2\r\n"),
        "{out}"
    );
    assert!(answers[0].ends_with("\r\n\r\n"), "HEAD: no body: {out}");
    assert!(
        answers[1].starts_with("304")
            && answers[1].to_lowercase().contains("content-length: 10\r\n"),
        "{out}"
    );
    assert!(answers[1].ends_with("\r\n\r\n"), "304: no body: {out}");
    assert!(answers[2].ends_with("GET /last"), "{out}");
}

#[tokio::test]
async fn names_that_shadow_the_proxys_headers_are_dropped() {
    let backend = Recorder::start().await;
    let strata = Strata::start(&config(&backend, ""));
    let out = raw_exchange(
        strata.addr("http:web"),
        b"GET / HTTP/1.1\r\nHost: a\r\nX_Forwarded_For: 10.9.9.9\r\nContent_Length: 5\r\nForwarded: for=10.9.9.9\r\nConnection: close\r\n\r\n",
        LIMIT,
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let text = String::from_utf8_lossy(&backend.received()[0]).to_string();
    assert!(
        !text.contains("10.9.9.9") && !text.contains("Content_Length"),
        "{text}"
    );
    assert_forwarded_by_strata(&backend.requests());
}
