//! Trailer fields through the proxy, both ways, whatever each side speaks: a chunked body's
//! last chunk for HTTP/1.1, a trailing HEADERS frame for HTTP/2; the fields that belong in a
//! head (framing, routing, credentials) never pass.

use crate::common;

use std::time::Duration;

use common::*;
use http_body_util::BodyExt;
use tokio::net::TcpStream;

fn config(backend: &Backend, extra: &str) -> String {
    format!(
        "[[http]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\nbackends = [\"{}\"]\n{extra}\n",
        backend.addr
    )
}

const CHUNKED_WITH_TRAILERS: &[u8] = b"POST /trailers-in HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\nX-Sum: 5\r\nContent-Length: 99\r\nHost: evil.example\r\nAuthorization: Basic eA==\r\n\r\n";

/// Response trailers from an HTTP/1.1 backend and from an HTTP/2 one reach an HTTP/1.1
/// client that said `TE: trailers` (in the last chunk) and every HTTP/2 client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_trailers_reach_clients_that_take_them() {
    for (backend, extra) in [
        (Backend::start("h1").await, ""),
        (Backend::start_h2("h2").await, "backend_protocol = \"h2c\""),
    ] {
        let strata = Strata::start(&config(&backend, extra));
        let addr = strata.addr("http:web");
        let raw = raw_exchange(
            addr,
            b"GET /trailers HTTP/1.1\r\nHost: x\r\nTE: trailers\r\nConnection: close\r\n\r\n",
            Duration::from_secs(5),
        )
        .await;
        assert!(
            raw.ends_with("0\r\nx-checksum: abc\r\n\r\n"),
            "{extra}: {raw:?}"
        );
        let raw = raw_exchange(
            addr,
            b"GET /trailers HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            Duration::from_secs(5),
        )
        .await;
        assert!(
            raw.ends_with("with trailers\r\n0\r\n\r\n"),
            "{extra}: {raw:?}"
        );
        let mut h2 = h2_handshake(TcpStream::connect(addr).await.unwrap()).await;
        h2.ready().await.unwrap();
        let resp = h2.send_request(h2_get("http://x/trailers")).await.unwrap();
        let collected = resp.into_body().collect().await.unwrap();
        assert_eq!(
            collected.trailers().unwrap()["x-checksum"],
            "abc",
            "{extra}"
        );
        assert_eq!(collected.to_bytes(), "with trailers");
    }
}

/// A chunked request's trailers reach the backend, HTTP/1.1 or HTTP/2, without the fields
/// that belong in a head: a Content-Length, Host or Authorization in a trailer section is
/// dropped, so no backend can be told a length, a host or a credential after the fact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_trailers_reach_backends_without_head_fields() {
    for (backend, extra) in [
        (Backend::start("h1").await, ""),
        (Backend::start_h2("h2").await, "backend_protocol = \"h2c\""),
    ] {
        let strata = Strata::start(&config(&backend, extra));
        let raw = raw_exchange(
            strata.addr("http:web"),
            CHUNKED_WITH_TRAILERS,
            Duration::from_secs(5),
        )
        .await;
        assert!(raw.starts_with("HTTP/1.1 200"), "{extra}: {raw}");
        assert!(
            raw.ends_with("\r\n\r\nx-sum=5") || raw.ends_with("\r\nx-sum=5\r\n0\r\n\r\n"),
            "{extra}: {raw:?}"
        );
    }
}

/// An HTTP/2 client's request trailers reach an HTTP/1.1 backend in the last chunk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_request_trailers_reach_http1_backends() {
    let backend = Backend::start("h1").await;
    let strata = Strata::start(&config(&backend, ""));
    let mut h2 = h2_handshake(TcpStream::connect(strata.addr("http:web")).await.unwrap()).await;
    let mut trailers = hyper::HeaderMap::new();
    trailers.insert("x-sum", hyper::header::HeaderValue::from_static("5"));
    trailers.insert(
        "content-length",
        hyper::header::HeaderValue::from_static("99"),
    );
    let body = Framed(
        vec![
            hyper::body::Frame::data(hyper::body::Bytes::from_static(b"hello")),
            hyper::body::Frame::trailers(trailers),
        ]
        .into(),
    )
    .boxed();
    let req = hyper::Request::post("http://x/trailers-in")
        .body(body)
        .unwrap();
    let reply = h2_send(&mut h2, req).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, "x-sum=5");
}

/// A body of the frames given, in order.
struct Framed(std::collections::VecDeque<hyper::body::Frame<hyper::body::Bytes>>);

impl hyper::body::Body for Framed {
    type Data = hyper::body::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<hyper::body::Bytes>, Self::Error>>> {
        std::task::Poll::Ready(self.0.pop_front().map(Ok))
    }
}
