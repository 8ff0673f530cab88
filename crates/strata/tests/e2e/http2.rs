//! HTTP/2 clients (h2c with prior knowledge) end to end: their requests go to HTTP/1.1
//! backends through the same backend connections as HTTP/1.1 clients' requests.

use crate::common;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use common::*;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Frame};
use hyper::client::conn::http2::SendRequest;
use hyper::Request;
use tokio::net::TcpStream;

fn config(backends: &[&Backend], extra: &str) -> String {
    let list: Vec<String> = backends.iter().map(|b| format!("\"{}\"", b.addr)).collect();
    format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n\n[[http]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\nbackends = [{}]\n{extra}\n",
        list.join(", ")
    )
}

async fn h2c(strata: &Strata) -> SendRequest<H2Body> {
    h2_handshake(TcpStream::connect(strata.addr("http:web")).await.unwrap()).await
}

/// A body sent as several DATA frames with no length known up front.
struct Frames(VecDeque<Bytes>);

impl hyper::body::Body for Frames {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn http2_prior_knowledge_is_proxied_to_http1_backends() {
    let a = Backend::start("a").await;
    let strata = Strata::start(&config(&[&a], ""));
    let mut sender = h2c(&strata).await;
    let reply = h2_send(&mut sender, h2_get("http://h2.example/headers")).await;
    assert_eq!(reply.status, 200);
    assert!(reply.body.contains("host: h2.example"), "{}", reply.body);
    assert!(reply.body.contains("via: 2 strata"), "{}", reply.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_of_unknown_length_stream_both_ways() {
    let a = Backend::start("a").await;
    let strata = Strata::start(&config(&[&a], ""));
    let mut sender = h2c(&strata).await;
    // request: three DATA frames, no content-length; the backend echoes what it got
    let parts: VecDeque<Bytes> = ["one,", "two,", "three"]
        .into_iter()
        .map(|s| Bytes::from_static(s.as_bytes()))
        .collect();
    let req = Request::post("http://h2.example/echo")
        .body(Frames(parts).boxed())
        .unwrap();
    let reply = h2_send(&mut sender, req).await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "one,two,three"));
    // response: chunked by the backend, DATA frames to the client
    let req = h2_get("http://h2.example/chunked");
    let reply = h2_send(&mut sender, req).await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (200, "first,second,third")
    );
    assert!(reply.headers.get("transfer-encoding").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_large_body_goes_through_intact() {
    let a = Backend::start("a").await;
    let strata = Strata::start(&config(&[&a], ""));
    let mut sender = h2c(&strata).await;
    let big: String = (0..200_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let req = Request::post("http://h2.example/echo")
        .body(Full::new(Bytes::from(big.clone())).boxed())
        .unwrap();
    let reply = h2_send(&mut sender, req).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body.len(), big.len());
    assert!(reply.body == big, "the echoed body differs");
}

#[tokio::test(flavor = "multi_thread")]
async fn many_streams_share_pooled_backend_connections_and_survive_a_dead_backend() {
    let a = Backend::start("a").await;
    let dead = Backend::start("dead").await;
    dead.kill();
    // a budget as large as the traffic: this test is about the retries, not their limit
    let strata = Strata::start(&config(&[&a, &dead], "retries = 2\nretry_budget = 1.0"));
    let mut sender = h2c(&strata).await;
    // concurrent streams on one client connection; a retry takes each one off the dead backend
    let mut streams = Vec::new();
    for _ in 0..40 {
        let mut s = sender.clone();
        streams.push(tokio::spawn(async move {
            let req = h2_get("http://h2.example/");
            h2_send(&mut s, req).await
        }));
    }
    for s in streams {
        let reply = s.await.unwrap();
        assert_eq!((reply.status, reply.body.as_str()), (200, "backend a"));
    }
    let req = h2_get("http://h2.example/");
    assert_eq!(h2_send(&mut sender, req).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backend_error_page_and_a_head_request_pass_through() {
    let a = Backend::start("a").await;
    let strata = Strata::start(&config(&[&a], ""));
    let mut sender = h2c(&strata).await;
    let req = h2_get("http://h2.example/status/404");
    let reply = h2_send(&mut sender, req).await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (404, "backend a says 404")
    );
    let req = Request::head("http://h2.example/")
        .body(Full::new(Bytes::new()).boxed())
        .unwrap();
    let reply = h2_send(&mut sender, req).await;
    assert_eq!((reply.status, reply.body.as_str()), (200, ""));
    assert_eq!(
        reply
            .headers
            .get("content-length")
            .map(|v| v.to_str().unwrap()),
        Some("9"),
        "HEAD keeps the length of the GET answer"
    );
    // the connection to the backend is still good after a HEAD
    let req = h2_get("http://h2.example/");
    assert_eq!(h2_send(&mut sender, req).await.body, "backend a");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_connection_is_a_502_that_names_no_internals() {
    let dead = Backend::start("dead").await;
    dead.kill();
    let strata = Strata::start(&config(&[&dead], "retries = 0"));
    let mut sender = h2c(&strata).await;
    let req = h2_get("http://h2.example/");
    let reply = h2_send(&mut sender, req).await;
    assert_eq!(reply.status, 502);
    assert_eq!(
        reply.body, "strata: listener \"web\": could not connect to a backend\n",
        "the listener and the kind of failure; never the address or the OS error"
    );
    // those go to the log and to /status
    strata
        .wait_log("Connection refused", Duration::from_secs(5))
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cookies_reach_the_backend_in_one_header() {
    let a = Backend::start("a").await;
    let strata = Strata::start(&config(&[&a], ""));
    let mut sender = h2c(&strata).await;
    // HTTP/2 clients may split cookies into several fields; HTTP/1.1 wants one
    let req = Request::get("http://h2.example/headers")
        .header("cookie", "a=1")
        .header("cookie", "b=2")
        .body(Full::new(Bytes::new()).boxed())
        .unwrap();
    let reply = h2_send(&mut sender, req).await;
    let cookies: Vec<&str> = reply
        .body
        .lines()
        .filter(|l| l.starts_with("cookie:"))
        .collect();
    assert_eq!(cookies, ["cookie: a=1; b=2"], "{}", reply.body);
    assert!(
        reply.body.contains("x-forwarded-proto: http"),
        "{}",
        reply.body
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backend_stalled_mid_body_ends_that_stream_only() {
    let a = Backend::start("a").await;
    let strata = Strata::start(&config(&[&a], "idle_timeout = \"300ms\""));
    let mut sender = h2c(&strata).await;
    let req = h2_get("http://h2.example/stall");
    sender.ready().await.unwrap();
    let resp = sender.send_request(req).await.expect("head arrives");
    assert_eq!(resp.status(), 200);
    let body = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        resp.into_body().collect(),
    )
    .await
    .expect("the stream ends instead of hanging");
    assert!(body.is_err(), "a cut-off body must not look complete");
    // the connection and its other streams carry on
    let req = h2_get("http://h2.example/");
    assert_eq!(h2_send(&mut sender, req).await.body, "backend a");
}

/// On SIGHUP an HTTP/2 client gets GOAWAY: the stream in flight finishes, the connection then
/// closes, and the client's next request goes out on a new connection without an error.
#[tokio::test(flavor = "multi_thread")]
async fn a_reload_sends_goaway_and_lets_streams_finish() {
    let a = Backend::start("a").await;
    let strata = Strata::start(&config(&[&a], ""));
    let h2 = h2c(&strata).await;
    let slow = {
        let mut h2 = h2.clone();
        tokio::spawn(async move { h2_send(&mut h2, h2_get("http://x/slow/500")).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    strata.signal(libc::SIGHUP);
    strata
        .wait_log("SIGHUP: reloaded", Duration::from_secs(5))
        .await;
    let reply = slow.await.unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, "backend a");
    eventually(Duration::from_secs(5), "the old connection closed", || {
        let closed = h2.is_closed();
        async move { closed }
    })
    .await;
    let mut fresh = h2c(&strata).await;
    assert_eq!(h2_send(&mut fresh, h2_get("http://x/")).await.status, 200);
}

/// An HTTP/2 connection with no streams and no frames for idle_timeout is closed (GOAWAY
/// first), as an idle HTTP/1.1 keep-alive connection is; one that keeps asking stays.
#[tokio::test(flavor = "multi_thread")]
async fn an_idle_connection_is_closed_after_idle_timeout() {
    let a = Backend::start("a").await;
    let strata = Strata::start(&config(&[&a], "idle_timeout = \"1s\""));
    let mut idle = h2c(&strata).await;
    let mut busy = h2c(&strata).await;
    assert_eq!(h2_send(&mut idle, h2_get("http://x/")).await.status, 200);
    // the busy connection asks at every probe, the idle one never
    eventually(
        Duration::from_secs(10),
        "the idle connection closed",
        || {
            let closed = idle.is_closed();
            let mut busy = busy.clone();
            async move {
                assert_eq!(h2_send(&mut busy, h2_get("http://x/")).await.status, 200);
                closed
            }
        },
    )
    .await;
    assert!(!busy.is_closed());
    assert_eq!(h2_send(&mut busy, h2_get("http://x/")).await.status, 200);
}

/// A client that closes its sending side in the middle of a request body: the request is given
/// up at once (the rest of the body can't come), not left waiting for it until a timeout
/// holding the client connection and a backend connection; the connection then closes.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_gone_mid_upload_frees_its_request_at_once() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let a = Backend::start("a").await;
    let strata = Strata::start(&config(&[&a], ""));
    let mut raw = TcpStream::connect(strata.addr("http:web")).await.unwrap();
    let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    bytes.extend_from_slice(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]); // SETTINGS
                                                             // HEADERS, END_HEADERS only: POST http://x/echo, from the static table and one literal
    let block = [
        0x83, 0x86, 0x44, 0x05, b'/', b'e', b'c', b'h', b'o', 0x41, 0x01, b'x',
    ];
    bytes.extend_from_slice(&[0, 0, block.len() as u8, 0x1, 0x4, 0, 0, 0, 1]);
    bytes.extend_from_slice(&block);
    bytes.extend_from_slice(&[0, 0, 5, 0x0, 0, 0, 0, 0, 1]); // DATA, not the end
    bytes.extend_from_slice(b"hello");
    raw.write_all(&bytes).await.unwrap();
    let open = || async {
        let text = admin_get(&strata, "/metrics").await.body;
        metric(&text, "strata_http_open_connections", "web").unwrap_or(-1.0)
    };
    eventually(
        Duration::from_secs(5),
        "the client connection counted",
        || async { open().await == 1.0 },
    )
    .await;
    raw.shutdown().await.unwrap();
    // idle_timeout is 60 s: only giving the request up ends it within a few
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the connection stayed open");
    // the count drops as the connection's task ends, a moment after the socket closes
    eventually(
        Duration::from_secs(5),
        "the client connection no longer counted",
        || async { open().await == 0.0 },
    )
    .await;
}
