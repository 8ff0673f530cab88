//! HTTP/1.x details a proxy must get right, spoken as raw bytes: body framing both ways,
//! pipelining, interim responses, HEAD, and request smuggling shapes.

use crate::common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;

fn config(backend: &Backend) -> String {
    format!(
        "[[http]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\nbackends = [\"{}\"]\n",
        backend.addr
    )
}

const LIMIT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn a_chunked_request_body_reaches_the_backend() {
    let a = Backend::start("a").await;
    let strata = Strata::start(&config(&a));
    let out = raw_exchange(
        strata.addr("http:web"),
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n",
        LIMIT,
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out:?}");
    assert!(out.ends_with("\r\n\r\nhello, world"), "{out:?}");
}

#[tokio::test]
async fn a_chunked_response_is_rechunked_for_1_1_and_close_delimited_for_1_0() {
    let a = Backend::start("a").await;
    let strata = Strata::start(&config(&a));
    let out = raw_exchange(
        strata.addr("http:web"),
        b"GET /chunked HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        LIMIT,
    )
    .await;
    let lower = out.to_lowercase();
    assert!(lower.contains("transfer-encoding: chunked\r\n"), "{out:?}");
    let body = &out[out.find("\r\n\r\n").unwrap() + 4..];
    let decoded: String = body
        .split("\r\n")
        .collect::<Vec<_>>()
        .chunks(2)
        .filter_map(|c| c.get(1).copied())
        .collect();
    assert_eq!(decoded, "first,second,third", "{body:?}");

    let out = raw_exchange(
        strata.addr("http:web"),
        b"GET /chunked HTTP/1.0\r\nHost: x\r\n\r\n",
        LIMIT,
    )
    .await;
    let lower = out.to_lowercase();
    assert!(
        !lower.contains("transfer-encoding"),
        "HTTP/1.0 can't take chunks: {out:?}"
    );
    assert!(lower.contains("connection: close\r\n"), "{out:?}");
    assert!(out.ends_with("\r\n\r\nfirst,second,third"), "{out:?}");
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let a = Backend::start("a").await;
    let strata = Strata::start(&config(&a));
    let out = raw_exchange(
        strata.addr("http:web"),
        b"GET /status/201 HTTP/1.1\r\nHost: x\r\n\r\nGET /status/202 HTTP/1.1\r\nHost: x\r\n\r\nGET /status/203 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        LIMIT,
    )
    .await;
    let statuses: Vec<&str> = out
        .match_indices("HTTP/1.1 20")
        .map(|(i, _)| &out[i + 9..i + 12])
        .collect();
    assert_eq!(statuses, ["201", "202", "203"], "{out:?}");
}

#[tokio::test]
async fn smuggling_shapes_get_400_and_never_reach_a_backend() {
    let a = Backend::start("a").await;
    let strata = Strata::start(&config(&a));
    let attacks: [&[u8]; 4] = [
        b"GET / HTTP/1.1\r\nHost: public.example\r\nHost: internal.example\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 30\r\n\r\nabc",
    ];
    for attack in attacks {
        let out = raw_exchange(strata.addr("http:web"), attack, LIMIT).await;
        assert!(out.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{out:?}");
        assert!(out.to_lowercase().contains("connection: close"), "{out:?}");
    }
    assert_eq!(a.hits.load(Ordering::SeqCst), 0);
    // and the listener still serves everyone else
    assert_eq!(
        get_once(strata.addr("http:web"), "/").await.body,
        "backend a"
    );
}

#[tokio::test]
async fn expect_100_continue_gets_an_interim_answer() {
    let a = Backend::start("a").await;
    let strata = Strata::start(&config(&a));
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(strata.addr("http:web"))
        .await
        .unwrap();
    s.write_all(b"PUT /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut interim = [0u8; 25];
    tokio::time::timeout(LIMIT, s.read_exact(&mut interim))
        .await
        .expect("100 Continue in time")
        .unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(b"data").await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(LIMIT, s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let out = String::from_utf8_lossy(&out);
    assert!(
        out.starts_with("HTTP/1.1 200 OK\r\n") && out.ends_with("data"),
        "{out:?}"
    );
}

#[tokio::test]
async fn head_keeps_the_length_and_sends_no_body() {
    let a = Backend::start("a").await;
    let strata = Strata::start(&config(&a));
    let out = raw_exchange(
        strata.addr("http:web"),
        b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET /status/204 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        LIMIT,
    )
    .await;
    let lower = out.to_lowercase();
    assert!(lower.starts_with("http/1.1 200 ok\r\n"), "{out:?}");
    assert!(lower.contains("content-length: 9\r\n"), "{out:?}");
    // the HEAD answer has no body: the next thing on the wire is the second response
    let second = out.find("\r\n\r\n").unwrap() + 4;
    assert!(out[second..].starts_with("HTTP/1.1 204"), "{out:?}");
}

#[tokio::test]
async fn a_backend_stalled_mid_body_does_not_hold_the_client() {
    let a = Backend::start("a").await;
    let strata = Strata::start(&format!("{}idle_timeout = \"300ms\"\n", config(&a)));
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(strata.addr("http:web"))
        .await
        .unwrap();
    s.write_all(b"GET /stall HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(LIMIT, s.read_to_end(&mut out))
        .await
        .expect("strata closes the client connection when the backend stalls")
        .unwrap();
    let out = String::from_utf8_lossy(&out);
    assert!(
        out.starts_with("HTTP/1.1 200 OK\r\n") && out.contains("partial"),
        "{out:?}"
    );
    assert!(
        !out.ends_with("0\r\n\r\n"),
        "a cut response must not look complete: {out:?}"
    );
}
