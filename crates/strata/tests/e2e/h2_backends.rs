//! `backend_protocol = "h2c"`: HTTP/1.1 and HTTP/2 clients' requests reach backends that speak
//! only HTTP/2, bodies and trailers both ways, health checks over HTTP/2.

use crate::common;

use std::time::Duration;

use common::*;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::Request;
use tokio::net::TcpStream;

fn config(backends: &[&Backend], extra: &str) -> String {
    let list: Vec<String> = backends.iter().map(|b| format!("\"{}\"", b.addr)).collect();
    format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n\n[[http]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\nbackend_protocol = \"h2c\"\nbackends = [{}]\n{extra}\n",
        list.join(", ")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_clients_reach_http2_backends() {
    let a = Backend::start_h2("a").await;
    let strata = Strata::start(&config(&[&a], ""));
    let addr = strata.addr("http:web");
    let mut client = Client::connect(addr).await;
    let reply = client.get("/headers").await.unwrap();
    assert_eq!(reply.status, 200);
    // the request's own Via and forwarding headers, as HTTP/1.1 backends get them
    assert!(reply.body.contains("via: 1.1 strata"), "{}", reply.body);
    assert!(
        reply.body.contains("x-forwarded-for: 127.0.0.1"),
        "{}",
        reply.body
    );
    // the answer came over HTTP/2
    assert_eq!(reply.headers["via"], "2 strata");
    // a body with a length, then one chunked, on the same client connection
    let body = "x".repeat(200_000);
    let req = Request::post("/echo")
        .header("host", "localhost")
        .body(Full::new(Bytes::from(body.clone())))
        .unwrap();
    let reply = client.request(req).await.unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body.len(), body.len());
    let raw = raw_exchange(
        addr,
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    assert!(raw.ends_with("hello world"), "{raw}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_clients_reach_http2_backends_with_bodies() {
    let a = Backend::start_h2("a").await;
    let b = Backend::start_h2("b").await;
    let strata = Strata::start(&config(&[&a, &b], ""));
    let mut h2 = h2_handshake(TcpStream::connect(strata.addr("http:web")).await.unwrap()).await;
    let reply = h2_send(&mut h2, h2_get("http://h2.example/headers")).await;
    assert_eq!(reply.status, 200);
    assert!(
        reply.body.contains("host: h2.example")
            || reply.body.contains("x-forwarded-host: h2.example"),
        "{}",
        reply.body
    );
    assert!(reply.body.contains("via: 2 strata"), "{}", reply.body);
    // many requests at once, multiplexed on the backend connections
    let body = "y".repeat(100_000);
    let mut calls = Vec::new();
    for _ in 0..40 {
        let mut h2 = h2.clone();
        let req = Request::post("http://h2.example/echo")
            .body(Full::new(Bytes::from(body.clone())).boxed())
            .unwrap();
        calls.push(tokio::spawn(async move { h2_send(&mut h2, req).await }));
    }
    for call in calls {
        let reply = call.await.unwrap();
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body.len(), body.len());
    }
    assert!(a.hits.load(std::sync::atomic::Ordering::SeqCst) > 0);
    assert!(b.hits.load(std::sync::atomic::Ordering::SeqCst) > 0);
}

/// An HTTP check (`path`) on HTTP/2 backends is made over HTTP/2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_checks_are_made_over_http2() {
    let a = Backend::start_h2("a").await;
    let b = Backend::start_h2("b").await;
    let strata = Strata::start(&config(
        &[&a, &b],
        "health = { path = \"/healthz\", interval = \"100ms\", rise = 1, fall = 1 }",
    ));
    a.healthy.store(false, std::sync::atomic::Ordering::SeqCst);
    eventually(Duration::from_secs(10), "a down, b up", || async {
        let status = admin_get(&strata, "/status").await.body;
        let v: serde_json::Value = serde_json::from_str(&status).unwrap();
        let states: Vec<String> = v["http"][0]["backends"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["state"].as_str().unwrap().to_string())
            .collect();
        states == ["down", "up"]
    })
    .await;
    let mut client = Client::connect(strata.addr("http:web")).await;
    for _ in 0..4 {
        assert_eq!(client.get("/").await.unwrap().body, "backend b");
    }
}

/// A backend's GOAWAY drains that connection: the requests already on it finish, and the
/// requests that come after go out on a new connection, none of them failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backends_goaway_drains_its_connection_without_errors() {
    let a = Backend::start_h2("a").await;
    let strata = Strata::start(&config(&[&a], ""));
    let h2 = h2_handshake(TcpStream::connect(strata.addr("http:web")).await.unwrap()).await;
    let send = |path: &'static str| {
        let mut h2 = h2.clone();
        tokio::spawn(async move { h2_send(&mut h2, h2_get(&format!("http://x{path}"))).await })
    };
    let slow: Vec<_> = (0..8).map(|_| send("/slow/400")).collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    a.go_away();
    // while the old connection drains, and after
    let mut quick = Vec::new();
    for _ in 0..20 {
        quick.push(send("/"));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for call in slow.into_iter().chain(quick) {
        let reply = call.await.unwrap();
        assert_eq!(reply.status, 200, "{}\n{}", reply.body, strata.logs());
    }
    let metrics = admin_get(&strata, "/metrics").await.body;
    assert_eq!(
        metric(&metrics, "strata_http_responses_total", "class=\"5xx\""),
        Some(0.0),
        "{metrics}"
    );
}

/// `backend_protocol = "h2"`: HTTP/2 over TLS to a backend whose certificate is verified
/// against `backend_ca`, by `backend_sni` or by the backend's IP address. The backend here is
/// another Strata terminating TLS (ALPN h2) in front of an app server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_over_tls_to_backends_is_verified() {
    let app = Backend::start("app").await;
    let dir = TempDir::new();
    self_signed(dir.path(), "api", &["api.internal", "127.0.0.1"]);
    let front = format!(
        "[[http]]\nname = \"tls\"\nlisten = \"127.0.0.1:0\"\nbackends = [\"{}\"]\ntls = [{{ cert = \"api.pem\", key = \"api.key\" }}]\n",
        app.addr
    );
    let tls_backend = Strata::start_in(dir, &front);
    let ca = tls_backend.dir.path().join("api.pem");
    let proxy = |sni: &str| {
        let sni = if sni.is_empty() {
            String::new()
        } else {
            format!("backend_sni = \"{sni}\"\n")
        };
        format!(
            "[[http]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\nbackend_protocol = \"h2\"\nbackend_ca = \"{}\"\n{sni}backends = [\"{}\"]\nretries = 0\n",
            ca.display(),
            tls_backend.addr("http:tls")
        )
    };
    for sni in ["api.internal", ""] {
        let strata = Strata::start(&proxy(sni));
        let mut client = Client::connect(strata.addr("http:web")).await;
        let reply = client.get("/").await.unwrap();
        assert_eq!(reply.status, 200, "{}", strata.logs());
        assert_eq!(reply.body, "backend app");
        // the hop to the TLS backend was HTTP/2
        let reply = client.get("/headers").await.unwrap();
        assert!(
            reply.body.contains("via: 1.1 strata, 2 strata"),
            "{}",
            reply.body
        );
    }
    // a name the certificate does not carry: no request goes out
    let strata = Strata::start(&proxy("other.internal"));
    let mut client = Client::connect(strata.addr("http:web")).await;
    let reply = client.get("/").await.unwrap();
    assert_eq!(reply.status, 502);
    strata.wait_log("certificate", Duration::from_secs(5)).await;
}

/// A backend that allows 2 streams at once per connection gets no more: 12 slow requests at
/// once go out on more connections (or wait), none is refused, none retried, none fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backends_stream_limit_is_kept() {
    let a = Backend::start_h2_limited("a", 2).await;
    let strata = Strata::start(&config(&[&a], ""));
    let h2 = h2_handshake(TcpStream::connect(strata.addr("http:web")).await.unwrap()).await;
    let calls: Vec<_> = (0..12)
        .map(|_| {
            let mut h2 = h2.clone();
            tokio::spawn(async move { h2_send(&mut h2, h2_get("http://x/slow/300")).await })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap().status, 200);
    }
    assert_eq!(a.hits.load(std::sync::atomic::Ordering::SeqCst), 12);
    let metrics = admin_get(&strata, "/metrics").await.body;
    assert_eq!(
        metric(&metrics, "strata_http_retries_total", "web"),
        Some(0.0),
        "{metrics}"
    );
}
